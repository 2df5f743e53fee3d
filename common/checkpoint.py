"""Checkpoints: ``.bin`` files holding ``torch.save`` of a dict (``model_pos``, ``epoch``, ``lr``, ``optimizer``,
``random_state``, ...), written atomically and loaded defensively.

Bare file names (``biGRU_all.bin``) are looked up in ``checkpoint/`` as in the paper's README.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from common.errors import UserError
from common.fileio import atomic_write

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


def resolve_checkpoint(name: str | Path, directory: str | Path = CHECKPOINT_DIR) -> Path:
    """``name`` as given if it exists; else ``<directory>/<name>`` if that exists or ``name`` is a bare file
    name (the paper's README refers to checkpoints that way); else ``name`` as given."""
    path = Path(name)
    inside = Path(directory) / path
    if path.exists() or (not inside.exists() and path.parent != Path(".")):
        return path
    return inside


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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; tries ``weights_only=True`` first, falls back only for files that hold
    plain python/numpy state the safe loader does not know (e.g. old numpy random states)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        try:
            state = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any failure is reported as unreadable
            raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a checkpoint dict, got {type(state).__name__}")
    return state


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
