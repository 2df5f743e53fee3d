"""Training scaffolding shared by the three trainers (``train.py -t length|pose|mix``).

* :func:`split_validation` — which training sequences are held out for model selection;
* :func:`seed_all` — seeding of python, numpy and torch per process (:func:`prepare_run`: seeding and the
  subject/action flags, every trainer's first step);
* :func:`gather_rng_states` / :func:`restore_rng_states` — every random stream in one checkpoint layout,
  ``random_state = {"ranks": [per-process state, ...]}``, each per-process state holding ``torch``, ``numpy``,
  ``python`` (and ``cuda``) plus the trainer's own named streams (objects with ``get_state``/``set_state``:
  ``torch.Generator``, :class:`common.datasets.generators.ChunkedGenerator`);
* :func:`make_optimizer` / :func:`decay_learning_rate` / :func:`cosine_learning_rate` — Adam (AMSGrad), the
  per-epoch cosine schedule (``--lr_schedule cosine``) and the per-epoch exponential
  learning-rate decay with its floor :data:`LR_FLOOR`;
* :func:`resume_training` — optimizer, epoch, history, best value and random streams from a checkpoint;
* :func:`save_history` — ``<task>_history.json`` every epoch and the ``<task>_training_curves.png`` figure;
* :class:`EpochLoop` — the epoch loop of every trainer (resume, train, decay, evaluate, select, save, history),
  calling the trainer's own pieces, a :class:`Trainer`.

Per-epoch checkpoint files are written by :func:`common.utils.checkpoint.save_epoch_checkpoints`.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence, TypeVar

import numpy as np
import torch

from tqdm import tqdm

from common.train.arguments import training_recipe
from common.utils import distributed
from common.utils.checkpoint import numpy_state, save_checkpoint, save_epoch_checkpoints, set_numpy_state
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


def cosine_learning_rate(optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
    """``--lr_schedule cosine``: every group's learning rate once ``epoch`` of ``epochs`` epochs are done (what the
    next epoch trains with) is its initial one (``initial_lr``, stored in the group, so it is resumed with the
    optimizer) times ``(1 + cos(pi epoch / epochs)) / 2``: the first epoch trains at ``-lr`` whatever ``-e`` is, so
    a run resumed with a larger ``-e`` after its first epoch continues as if started with it."""
    factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / max(epochs, 1)))
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the optimizer's first parameter group."""
    return float(optimizer.param_groups[0]["lr"])


def check_resumable(checkpoint: Mapping[str, Any], source: str) -> None:
    """UserError unless ``checkpoint`` holds what a resumed run needs (an optimizer state and its epoch):
    published weights, for example, do not."""
    if checkpoint.get("optimizer") is None or "epoch" not in checkpoint:
        raise UserError(f"{source} holds no optimizer state: it cannot be resumed (start from its weights, or "
                        "use it with --evaluate)")


def resume_training(checkpoint: Mapping[str, Any], source: str, optimizer: torch.optim.Optimizer,
                    streams: Mapping[str, RandomStream], ctx: distributed.DistContext,
                    history: dict[str, list[float]]) -> tuple[int, dict[str, list[float]], float]:
    """Continue a run from its checkpoint (the model weights are loaded by the caller): the optimizer state
    (with its decayed learning rate), the random streams, and returns (epochs done, history, best selection
    value or inf). A checkpoint without optimizer state (published weights) is a UserError."""
    check_resumable(checkpoint, source)
    optimizer.load_state_dict(checkpoint["optimizer"])
    restore_rng_states(checkpoint, streams, ctx, source)
    history = {k: list(v) for k, v in checkpoint.get("history", history).items()}
    if ctx.is_main:
        print(f"Resuming from {source} at epoch {int(checkpoint['epoch'])}")
    return int(checkpoint["epoch"]), history, float(checkpoint.get("best", math.inf))


def check_recipe(stored: Mapping[str, Any] | None, current: Mapping[str, Any], source: str, allow_change: bool,
                 say: bool = True) -> None:
    """A resumed run continues the checkpoint's recipe (:data:`common.train.arguments.RECIPE_FLAGS`): flags
    whose value differs from the one ``stored`` in the checkpoint are named in a one-line UserError, or, with
    ``--allow_recipe_change``, in a warning (``say``: this process prints). A checkpoint that stores no recipe
    (written before recipes were stored) is resumed with a note."""
    if not isinstance(stored, Mapping):
        if say:
            print(f"note: {source} stores no training recipe (an older checkpoint): the flags cannot be compared")
        return
    changed = [f"{flag} {_flag_value(stored[flag])} -> {_flag_value(value)}" for flag, value in current.items()
               if flag in stored and stored[flag] != value]
    if not changed:
        return
    if not allow_change:
        raise UserError(f"{source} was trained with another recipe ({'; '.join(changed)}): give its flags to "
                        "continue it, or --allow_recipe_change to continue under the new ones")
    if say:
        print(f"warning: resuming {source} under a changed recipe: {'; '.join(changed)}", file=sys.stderr)


def _flag_value(value: Any) -> str:
    """How a recipe value reads in a message: on/off for switches, (none) for an empty path."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return "(none)" if value in (None, "") else str(value)


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


@dataclass
class EpochRecord:
    """One finished epoch, as the trainer's :meth:`Trainer.log` prints it."""

    epoch: int  # epochs done, counting this one
    seconds: float  # wall time of this epoch's training and evaluation
    lr: float  # learning rate the epoch trained with
    next_lr: float  # learning rate after the end-of-epoch decay
    metrics: dict[str, float]  # the evaluation's values (``eval_keys``: NaN where not evaluated)
    improved: bool  # this epoch was saved as epoch_best.bin


class Trainer(ABC):
    """A trainer's own pieces of :class:`EpochLoop`: its batches, its optimiser step, its evaluation, its log
    line and its checkpoint entries and files.

    ``train_keys``: the history series of the values :meth:`step` returns, each with the factor applied to
    the epoch's mean (e.g. 1000: metres to mm); ``eval_keys``: the series :meth:`evaluate` fills, NaN in
    epochs it does not run (other values it returns become series from their first epoch on);
    ``select_on``: the evaluation value whose lowest value picks ``epoch_best.bin`` (None: no selection,
    no ``best`` entry); ``timed``: also record the cumulative wall time in ``history["wall_s"]`` (seconds).
    """

    train_keys: tuple[tuple[str, float], ...]
    eval_keys: tuple[str, ...] = ()
    select_on: str | None = None
    timed: bool = False

    @abstractmethod
    def batches(self, epoch: int) -> tuple[Iterable[Any], int]:
        """This process's batches of epoch ``epoch`` (0-based) and their number; also where per-epoch
        schedules (e.g. BatchNorm momentum) are set."""

    @abstractmethod
    def step(self, batch: Any) -> tuple[Sequence[float], int]:
        """One optimiser step on ``batch``: returns the batch's mean of each ``train_keys`` value and the
        batch's weight in the epoch's mean (samples or frames)."""

    def evaluate(self) -> dict[str, float]:
        """The ``eval_keys`` values of the current weights (main process only; not called with --no-eval)."""
        return {}

    @abstractmethod
    def log(self, record: EpochRecord, history: Mapping[str, Sequence[float]]) -> None:
        """Print the epoch's line (main process)."""

    @abstractmethod
    def checkpoint_entries(self) -> dict[str, Any]:
        """The trainer's own checkpoint entries (architecture, configuration, ...)."""

    def write_files(self, state: Mapping[str, Any], history: Mapping[str, Sequence[float]]) -> None:
        """Files written after the epoch's checkpoints (main process): the history and its figures."""


class EpochLoop:
    """The epoch loop of ``train.py``'s trainers. Every epoch, on every process: the trainer's batches go
    through :meth:`Trainer.step` (``model`` in training mode); the per-process means of its values are
    averaged over the processes into the history; every optimizer's learning rate decays by ``-lrd``. Then the
    main process evaluates (unless ``--no-eval``), selects (lowest ``select_on`` value; without evaluation
    the last epoch), prints and writes ``final.bin``, ``epoch_<n>.bin`` / ``epoch_best.bin``
    (:func:`common.utils.checkpoint.save_epoch_checkpoints`) and the trainer's files, with every process's
    random streams, so that :meth:`resume` continues a run bit-exactly. A run in which no epoch trains
    (``-e 0``, or resuming a finished run) writes ``final.bin`` of its state.

    ``model``: the trained module (put in training mode every epoch; its ``state_dict`` is saved; the trainer
    steps it, wrapped for DistributedDataParallel where distributed); ``optimizers``: the first is saved and
    resumed here, the others (e.g. the mix model's control) only decay; ``streams``: the trainer's own random
    streams (:func:`gather_rng_states`).
    """

    def __init__(self, trainer: Trainer, args: argparse.Namespace, ctx: distributed.DistContext,
                 model: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer],
                 streams: Mapping[str, RandomStream]) -> None:
        self.trainer, self.ctx, self.model = trainer, ctx, model
        self.optimizers, self.streams = list(optimizers), streams
        self.epochs, self.lr_decay, self.evaluating = args.epochs, args.lr_decay, not args.no_eval
        self.lr_schedule = args.lr_schedule
        self.checkpoint_dir, self.frequency = Path(args.checkpoint), args.checkpoint_frequency
        self.history: dict[str, list[float]] = {k: [] for k, _ in trainer.train_keys}
        self.history.update({k: [] for k in trainer.eval_keys})
        if trainer.timed:
            self.history["wall_s"] = []
        self.epoch, self.best = 0, math.inf
        self._clock_zero = time.time()
        self.recipe, self.allow_recipe_change = training_recipe(args), args.allow_recipe_change

    def resume(self, checkpoint: Mapping[str, Any], source: str) -> None:
        """Continue from ``checkpoint`` (its model weights already loaded by the trainer): see
        :func:`resume_training`; a checkpoint of another recipe is refused (:func:`check_recipe`)."""
        check_recipe(checkpoint.get("recipe"), self.recipe, source, self.allow_recipe_change, self.ctx.is_main)
        self.epoch, self.history, self.best = resume_training(checkpoint, source, self.optimizers[0],
                                                              self.streams, self.ctx, self.history)
        if self.trainer.timed:
            self.history.setdefault("wall_s", [])

    def run(self) -> None:
        """Train until ``-e`` epochs are done."""
        first = self.epoch
        # the wall clock of a run that had trained history["wall_s"][-1] seconds before now
        self._clock_zero = time.time() - (self.history["wall_s"][-1] if self.history.get("wall_s") else 0.0)
        while self.epoch < self.epochs:
            self._epoch()
        if self.epoch == first:
            random_states = gather_rng_states(self.streams, self.ctx)
            if self.ctx.is_main:
                save_checkpoint(self.checkpoint_dir / "final.bin", self._state(random_states))

    def _train_epoch(self) -> list[float]:
        """Every batch of the epoch through the trainer's step; the processes' mean of each value."""
        self.model.train()
        batches, count = self.trainer.batches(self.epoch)
        sums, weight = [0.0] * len(self.trainer.train_keys), 0
        for batch in tqdm(batches, total=count, desc=f"epoch {self.epoch + 1}", disable=not self.ctx.is_main,
                          leave=False):
            values, n = self.trainer.step(batch)
            sums = [s + v * n for s, v in zip(sums, values)]
            weight += n
        return [distributed.all_reduce_mean(s / max(weight, 1), self.ctx) for s in sums]

    def _epoch(self) -> None:
        start = time.time()
        if self.lr_schedule == "cosine":  # set before the epoch: a run resumed with a larger -e continues exactly
            for optimizer in self.optimizers:
                cosine_learning_rate(optimizer, self.epoch, self.epochs)
        for (key, scale), mean in zip(self.trainer.train_keys, self._train_epoch()):
            self.history[key].append(mean * scale)
        self.epoch += 1
        lr = current_lr(self.optimizers[0])
        if self.lr_schedule == "exponential":
            for optimizer in self.optimizers:
                decay_learning_rate(optimizer, self.lr_decay)
        metrics = self.trainer.evaluate() if self.evaluating and self.ctx.is_main else {}
        metrics = {**dict.fromkeys(self.trainer.eval_keys, math.nan), **metrics}
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)
        if self.trainer.timed:
            self.history["wall_s"].append(time.time() - self._clock_zero)
        random_states = gather_rng_states(self.streams, self.ctx)
        if self.ctx.is_main:
            improved = self._select(metrics)
            self.trainer.log(EpochRecord(self.epoch, time.time() - start, lr, current_lr(self.optimizers[0]),
                                         metrics, improved), self.history)
            state = self._state(random_states)
            save_epoch_checkpoints(self.checkpoint_dir, state, self.epoch, self.frequency, best=improved)
            self.trainer.write_files(state, self.history)
        distributed.barrier(self.ctx)

    def _select(self, metrics: Mapping[str, float]) -> bool:
        """Whether this epoch becomes epoch_best.bin (and ``best`` its value)."""
        if self.trainer.select_on is None:
            return False
        value = metrics[self.trainer.select_on]
        if is_improvement(value, self.best):
            self.best = value
            return True
        return not self.evaluating and self.epoch == self.epochs

    def _state(self, random_states: dict[str, Any]) -> dict[str, Any]:
        optimizer = self.optimizers[0]
        state = {"epoch": self.epoch, "lr": current_lr(optimizer), "optimizer": optimizer.state_dict(),
                 "model_pos": self.model.state_dict(), "random_state": random_states, "history": self.history}
        if self.trainer.select_on is not None:
            state["best"] = self.best
        return {**state, "recipe": self.recipe, **self.trainer.checkpoint_entries()}
