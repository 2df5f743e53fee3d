"""Checkpoints: ``.bin`` files holding ``torch.save`` of a dict (``model_pos``, ``epoch``, ``lr``, ``optimizer``,
``random_state``, ...), written atomically and loaded as data only (never code: see :func:`load_checkpoint`).

Bare file names (``biGRU_all.bin``) are looked up in ``checkpoint/`` as in the paper's README.
Random states go in as ``weights_only``-loadable dicts (:func:`numpy_state`, :func:`set_numpy_state`).
"""
from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from common.utils.errors import UserError
from common.utils.fileio import atomic_write, existing_file

CHECKPOINT_DIR = Path("checkpoint")


# What the scripts read when no checkpoint is named: the paper's published files for Human3.6M, and for the
# demo dataset the models that scripts/run_demo.sh trains (paths relative to checkpoint/).
DEFAULT_CHECKPOINTS = {
    "length": {"h36m": "biGRU_all.bin", "demo": "demo_length/epoch_best.bin"},
    "finetuned": {"h36m": "videopose_finetuned.bin", "demo": "demo_mix/final.bin"},
}


def default_checkpoint(kind: str, dataset: str) -> str:
    """Default checkpoint name of ``kind`` (``length`` or ``finetuned``) for a dataset (h36m names otherwise)."""
    names = DEFAULT_CHECKPOINTS[kind]
    return names.get(dataset, names["h36m"])


def resolve_checkpoint(name: str | Path, *directories: str | Path) -> Path:
    """The one resolver of checkpoint names: ``name`` as given if it exists; else ``<dir>/<name>`` for the first
    of ``directories`` (e.g. a trainer's ``-c``) and then ``checkpoint/`` where that exists; else, for a bare
    file name (the paper's README refers to checkpoints that way), ``<first directory>/<name>`` (``checkpoint/``
    when none is given), so that the "not found" error names where it was looked for; else ``name``."""
    path = Path(name)
    if path.exists():
        return path
    for directory in (*directories, CHECKPOINT_DIR):
        if (Path(directory) / path).exists():
            return Path(directory) / path
    return Path((*directories, CHECKPOINT_DIR)[0]) / path if path.parent == Path(".") else path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a checkpoint dict (temp file in the same folder, then rename)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


def save_epoch_checkpoints(folder: str | Path, state: dict[str, Any], epoch: int, frequency: int, best: bool,
                           final: bool = True) -> None:
    """Every trainer's per-epoch files, each written atomically: ``epoch_best.bin`` when ``best``,
    ``epoch_<n>.bin`` every ``frequency`` epochs (0 = never), and ``final.bin`` (the latest state, from which
    ``--resume`` continues exactly) unless ``final`` is False."""
    folder = Path(folder)
    if best:
        save_checkpoint(folder / "epoch_best.bin", state)
    if frequency > 0 and epoch % frequency == 0:
        save_checkpoint(folder / f"epoch_{epoch}.bin", state)
    if final:
        save_checkpoint(folder / "final.bin", state)


def _checkpoint_globals() -> list[tuple[Any, str]]:
    """The exact non-torch types a checkpoint may contain, as ``(object, "module.name")`` pairs for
    :func:`torch.serialization.safe_globals`: numpy arrays, dtypes and scalars (the pickled names of numpy 1.x and
    2.x), and numpy's legacy ``RandomState`` with its MT19937 bit generator (VideoPose3D-style checkpoints, the
    authors' included, store the batch generator's ``RandomState`` under ``random_state``). Rebuilding any of
    these runs no code but numpy's own constructors."""
    import numpy as np
    import numpy.dtypes
    from numpy.random import _pickle as random_pickle

    reconstruct = np.core.multiarray._reconstruct  # noqa: SLF001 - numpy's array unpickling entry point
    scalar = np.core.multiarray.scalar
    pairs: list[tuple[Any, str]] = [
        (np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype"),
        (np.random.RandomState, "numpy.random.mtrand.RandomState"),
        (np.random.MT19937, "numpy.random._mt19937.MT19937"),
        (getattr(random_pickle, "__randomstate_ctor"), "numpy.random._pickle.__randomstate_ctor"),
        (getattr(random_pickle, "__bit_generator_ctor"), "numpy.random._pickle.__bit_generator_ctor"),
    ]
    for core in ("numpy.core", "numpy._core"):
        pairs += [(reconstruct, f"{core}.multiarray._reconstruct"), (scalar, f"{core}.multiarray.scalar")]
    legacy = getattr(np.random, "__RandomState_ctor", None)  # pickles written by numpy < 1.17
    if legacy is not None:
        pairs += [(legacy, "numpy.random.__RandomState_ctor"), (legacy, "numpy.random.mtrand.__RandomState_ctor")]
    pairs += [(cls, f"numpy.dtypes.{name}") for name in dir(numpy.dtypes)
              if name.endswith("DType") and name != "ObjectDType"
              for cls in [getattr(numpy.dtypes, name)] if isinstance(cls, type)]
    return pairs


def _first_line(exc: BaseException) -> str:
    """First non-empty line of an exception's message, or its type name (never raises)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", kind: str | None = None
                    ) -> dict[str, Any]:
    """Load a checkpoint dict as *data only*: ``torch.load(weights_only=True)`` with an allow-list of the exact
    numpy types VideoPose3D-style checkpoints hold (:func:`_checkpoint_globals`). A file that names anything else
    (a function to call, an unknown class) is refused with one line naming the file and the type; nothing in it
    runs. ``kind`` (``lifter``, ``length`` or ``mix``): the model the caller expects under ``model_pos``; a
    checkpoint of another kind is named as such (:func:`expect_kind`)."""
    path = existing_file(path, "checkpoint")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file, not a checkpoint")
    try:
        with torch.serialization.safe_globals(_checkpoint_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        refused = re.search(r"GLOBAL ([\w.]+)|but got <class '([^']+)'>", message)
        if refused:
            name = refused.group(1) or refused.group(2)
            raise UserError(f"{path}: refused to load {name!r} (checkpoints are loaded as data only: tensors, "
                            "numbers, containers, numpy arrays and random states)") from None
        raise UserError(f"{path}: not a readable checkpoint (not a torch file: text, or cut off?)") from None
    except (KeyError, IndexError, EOFError):  # legacy-format reader on a text or cut-off file
        raise UserError(f"{path}: not a readable checkpoint (not a torch file: text, or cut off?)") from None
    except Exception as exc:  # noqa: BLE001 - any other failure (truncated zip, ...) is one line
        raise UserError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a checkpoint dict, got {type(state).__name__}")
    if kind is not None:
        expect_kind(state, kind, str(path))
    return state


KIND_NAMES = {"lifter": "VideoPose3D lifter", "length": "bone-length model", "mix": "mix (fine-tuned) model"}


def checkpoint_kind(state_dict: Any) -> str | None:
    """``'mix'``, ``'length'`` or ``'lifter'`` from a model state dict's parameter names (``module.`` prefixes
    ignored), or None when it is none of them."""
    if not isinstance(state_dict, dict):
        return None
    keys = {k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k for k in state_dict}
    keys = {k for k in keys if isinstance(k, str)}
    if any(k.startswith("length_model.") for k in keys) and any(k.startswith("direction_model.") for k in keys):
        return "mix"
    if any(k.startswith("gru.") for k in keys) and "fc.weight" in keys:
        return "length"
    if "log_mean" in keys and any(k.startswith("frame_mlp.") for k in keys):  # the proportion length model
        return "length"
    if "expand_conv.weight" in keys and any(k.startswith("shrink.") for k in keys):
        return "lifter"
    return None


def expect_kind(checkpoint: dict[str, Any], kind: str | Sequence[str], source: str = "checkpoint") -> str:
    """The kind of model ``checkpoint['model_pos']`` holds when it is ``kind`` (or one of the kinds ``kind``
    lists; see :data:`KIND_NAMES`); else a one-line UserError:
    ``x.bin is a VideoPose3D lifter checkpoint, not a bone-length model``."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    found = checkpoint_kind(checkpoint.get("model_pos"))
    if found in kinds:
        return found
    what = f"a {KIND_NAMES[found]} checkpoint" if found else (
        "not a model checkpoint (no 'model_pos' entry)" if "model_pos" not in checkpoint
        else "a checkpoint of an unknown model")
    raise UserError(f"{source} is {what}, not a " + " or a ".join(KIND_NAMES[k] for k in kinds))


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` prefix that DataParallel/DistributedDataParallel add to parameter names."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def load_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load a state dict strictly; a mismatch (missing/unexpected keys, shapes) becomes one UserError line."""
    state_dict = strip_module_prefix(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:2]}{'...' if len(shapes) > 2 else ''}")
        raise UserError(f"{source} does not match the {type(model).__name__} architecture "
                        f"({'; '.join(parts)}); check -arc/-ch/-bi/-layer")
    model.load_state_dict(state_dict)


def model_state(checkpoint: dict[str, Any], key: str = "model_pos", source: str = "checkpoint") -> dict:
    """The model state dict stored under ``key`` (published files use ``model_pos``)."""
    if key not in checkpoint:
        raise UserError(f"{source} has no '{key}' entry (keys: {sorted(checkpoint)})")
    return checkpoint[key]


def numpy_state(rng: np.random.RandomState | None = None) -> dict[str, Any]:
    """The state of ``rng`` (numpy's global generator when None) in a ``weights_only``-loadable dict."""
    name, keys, pos, has_gauss, cached = (rng or np.random).get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_numpy_state(state: Mapping[str, Any], rng: np.random.RandomState | None = None) -> None:
    """Inverse of :func:`numpy_state` (also reads states saved without ``name``)."""
    keys = state["keys"].numpy() if isinstance(state["keys"], torch.Tensor) else np.asarray(state["keys"])
    (rng or np.random).set_state((state.get("name", "MT19937"), keys.astype(np.uint32), int(state["pos"]),
                                  int(state["has_gauss"]), float(state["cached_gaussian"])))
