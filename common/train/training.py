"""Training scaffolding shared by the three trainers (``train.py -t length|pose|mix``).

* :func:`split_validation` — which training sequences are held out for model selection;
* :func:`seed_all` — seeding of python, numpy and torch per process (:func:`prepare_run`: seeding and the
  subject/action flags, every trainer's first step);
* :func:`gather_rng_states` / :func:`restore_rng_states` — every random stream in one checkpoint layout,
  ``random_state = {"ranks": [per-process state, ...]}``, each per-process state holding ``torch``, ``numpy``,
  ``python`` (and ``cuda``) plus the trainer's own named streams (objects with ``get_state``/``set_state``:
  ``torch.Generator``, :class:`common.datasets.generators.ChunkedGenerator`);
* :func:`make_optimizer` / :func:`decay_learning_rate` — Adam (AMSGrad) and the per-epoch exponential
  learning-rate decay with its floor :data:`LR_FLOOR`;
* :func:`resume_training` — optimizer, epoch, history, best value and random streams from a checkpoint;
* :func:`save_history` — ``<task>_history.json`` every epoch and the ``<task>_training_curves.png`` figure.

Per-epoch checkpoint files are written by :func:`common.utils.checkpoint.save_epoch_checkpoints`.
"""
from __future__ import annotations

import argparse
import math
import random
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, TypeVar

import numpy as np
import torch

from common.utils import distributed
from common.datasets.dataset import parse_action_filter, parse_subjects
from common.utils.errors import UserError
from common.utils.fileio import save_json

LR_FLOOR = 1e-6  # the learning rate stops decaying once below this


class RandomStream(Protocol):
    """A random generator whose state can be saved and restored (``torch.Generator`` has this interface)."""

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...


class _HasSequence(Protocol):
    subject: str
    action: str


View = TypeVar("View", bound=_HasSequence)


def split_validation(views: Sequence[View], fraction: float, seed: int) -> tuple[list[View], list[View]]:
    """Hold out ``round(fraction * n)`` (at least one) of the n (subject, action) pairs, with all their
    cameras, for model selection; returns (training views, held-out views), each in the input order.

    The pairs are sorted before a ``numpy.random.RandomState(seed)`` permutation picks the held-out ones, so
    the split depends only on the set of pairs and the seed (not on file order). ``fraction <= 0`` holds out
    nothing; a split that would leave no training pair is a UserError.
    """
    if fraction <= 0:
        return list(views), []
    pairs = sorted({(v.subject, v.action) for v in views})
    n_val = max(1, int(round(fraction * len(pairs))))
    if n_val >= len(pairs):
        raise UserError(f"--val_fraction {fraction} leaves no training sequences ({len(pairs)} (subject, action) "
                        "pairs); use --val_fraction 0 (and --select_on test)")
    held = {pairs[i] for i in np.random.RandomState(seed).permutation(len(pairs))[:n_val]}
    return ([v for v in views if (v.subject, v.action) not in held],
            [v for v in views if (v.subject, v.action) in held])


def seed_all(seed: int, rank: int = 0) -> None:
    """Seed python's and numpy's global generators with ``seed`` and torch's with ``seed + rank`` (under
    torchrun each process then draws different dropout masks and samples)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed + rank)


def prepare_run(args: argparse.Namespace, ctx: distributed.DistContext
                ) -> tuple[list[str], list[str], list[str] | None]:
    """Seed this process (:func:`seed_all` with ``--seed`` and its rank) and parse ``-str``, ``-ste`` and ``-a``:
    returns (training subjects, test subjects, action filter or None for every action)."""
    seed_all(args.seed, ctx.rank)
    return (parse_subjects(args.subjects_train), parse_subjects(args.subjects_test),
            parse_action_filter(args.actions))


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


_GLOBAL_STREAMS = ("torch", "cuda", "numpy", "python")


def rng_state(streams: Mapping[str, RandomStream]) -> dict[str, Any]:
    """This process's random state: torch (and CUDA), numpy, python and the named ``streams``."""
    clash = set(streams) & set(_GLOBAL_STREAMS)
    if clash:
        raise ValueError(f"stream names {sorted(clash)} are reserved")
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": numpy_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    state.update({name: stream.get_state() for name, stream in streams.items()})
    return state


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def set_rng_state(state: Mapping[str, Any], streams: Mapping[str, RandomStream]) -> None:
    """Restore what :func:`rng_state` saved; entries absent from ``state`` (older layouts) are left alone."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:
        set_numpy_state(state["numpy"])
    if "python" in state:
        random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for name, stream in streams.items():
        if name in state:
            value = state[name]
            stream.set_state(value.cpu() if isinstance(value, torch.Tensor) else value)


def gather_rng_states(streams: Mapping[str, RandomStream], ctx: distributed.DistContext) -> dict[str, Any]:
    """Every process's :func:`rng_state` in rank order: the checkpoint's ``random_state`` entry."""
    return {"ranks": distributed.gather_objects(rng_state(streams), ctx)}


def _per_rank_states(checkpoint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-process states of a checkpoint, also from the layout ``train.py -t pose`` wrote before this
    module (``random_state`` = the batch generator's numpy state, ``torch_random_state`` = one tensor or one
    per rank): those become ``[{"torch": ..., "generator": ...}, ...]``. Other layouts give ``[]``."""
    stored = checkpoint.get("random_state")
    if not isinstance(stored, Mapping):  # none, or another program's (VideoPose3D stores a RandomState)
        return []
    if "ranks" in stored:
        return list(stored["ranks"])
    if "keys" in stored:
        torch_states = checkpoint.get("torch_random_state")
        if not isinstance(torch_states, (list, tuple)):
            torch_states = [torch_states]
        return [{"generator": stored, **({"torch": t} if t is not None else {})} for t in torch_states]
    return []


def restore_rng_states(checkpoint: Mapping[str, Any], streams: Mapping[str, RandomStream],
                       ctx: distributed.DistContext, source: str) -> None:
    """Restore this rank's random streams from a checkpoint written by the same number of processes; with a
    different number, keep the seeded streams and say so (the run is then not an exact continuation)."""
    states = _per_rank_states(checkpoint)
    if len(states) == ctx.world_size:
        set_rng_state(states[ctx.rank], streams)
    elif ctx.is_main:
        print(f"WARNING: {source} was written by {len(states)} process(es), now {ctx.world_size}: "
              "random streams restart from the seed")


def make_optimizer(parameters, learning_rate: float) -> torch.optim.Optimizer:
    """The optimiser of every trainer (the authors' and VideoPose3D's): Adam with AMSGrad, no weight decay,
    torch's default betas (0.9, 0.999) and eps 1e-8."""
    return torch.optim.Adam(parameters, lr=learning_rate, amsgrad=True)


def decay_learning_rate(optimizer: torch.optim.Optimizer, factor: float, floor: float = LR_FLOOR) -> float:
    """End-of-epoch exponential decay: multiply every group's learning rate by ``factor`` unless the first
    group's is already below ``floor``. Returns the learning rate the epoch trained with (before the decay)."""
    lr = float(optimizer.param_groups[0]["lr"])
    if lr >= floor:
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * factor
    return lr


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the optimizer's first parameter group."""
    return float(optimizer.param_groups[0]["lr"])


def resume_training(checkpoint: Mapping[str, Any], source: str, optimizer: torch.optim.Optimizer,
                    streams: Mapping[str, RandomStream], ctx: distributed.DistContext,
                    history: dict[str, list[float]]) -> tuple[int, dict[str, list[float]], float]:
    """Continue a run from its checkpoint (the model weights are loaded by the caller): the optimizer state
    (with its decayed learning rate), the random streams, and returns (epochs done, history, best selection
    value or inf). A checkpoint without optimizer state (published weights) is a UserError."""
    if checkpoint.get("optimizer") is None or "epoch" not in checkpoint:
        raise UserError(f"{source} holds no optimizer state: it cannot be resumed (start from its weights, or "
                        "use it with --evaluate)")
    optimizer.load_state_dict(checkpoint["optimizer"])
    restore_rng_states(checkpoint, streams, ctx, source)
    history = {k: list(v) for k, v in checkpoint.get("history", history).items()}
    if ctx.is_main:
        print(f"Resuming from {source} at epoch {int(checkpoint['epoch'])}")
    return int(checkpoint["epoch"]), history, float(checkpoint.get("best", math.inf))


def is_improvement(value: float, best: float) -> bool:
    """Whether a model-selection value (lower is better; NaN when not evaluated) beats ``best``."""
    return not math.isnan(value) and value < best


def save_history(folder: str | Path, task: str, history: Mapping[str, Sequence[float]],
                 curves: Mapping[str, Sequence[float]] | None = None, ylabel: str = "error (mm)",
                 title: str = "") -> None:
    """Write ``<folder>/<task>_history.json`` (every per-epoch series) and, when ``curves`` is given (name ->
    series), the figure ``<folder>/<task>_training_curves.png`` of the curves that hold a value."""
    folder = Path(folder)
    save_json(folder / f"{task}_history.json", {k: list(v) for k, v in history.items()})
    if curves is not None:
        from common.output.plots import plot_training_curves

        shown = {k: v for k, v in curves.items() if len(v) and not np.all(np.isnan(np.asarray(v, float)))}
        plot_training_curves(shown, folder / f"{task}_training_curves.png", ylabel, title)
