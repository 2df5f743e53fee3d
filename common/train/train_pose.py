"""``train.py -t pose``: train / evaluate a VideoPose3D lifter and export its predictions.

Training follows VideoPose3D: single-frame targets (``-s 1``) with the strided model, padded 2D windows of one
receptive field, flip augmentation, Adam (amsgrad) with the learning rate multiplied by ``-lrd`` after every
epoch and BatchNorm momentum decayed exponentially from 0.1 to 0.001 over the run. Loss: MPJPE of the
root-relative pose (metres, camera frame). Each process's share of a batch is split into micro-batches
(``--micro_batch``/``--memory_budget``, :mod:`common.train.accumulation`) whose gradients accumulate into one
optimiser step; ``auto`` keeps the whole batch when it fits the budget, since BatchNorm then normalises each
micro-batch with its own statistics. ``--precision bf16`` runs the forward pass under autocast.

Checkpoints in ``-c`` (default ``checkpoint/``): ``epoch_<n>.bin`` every ``--checkpoint-frequency`` epochs,
``epoch_best.bin`` (lowest MPJPE on the held-out training sequences, or on the test subjects with
``--select_on test``), ``final.bin`` (rewritten every epoch, like the other trainers); each holds
``model_pos``, ``epoch``, ``lr``, ``optimizer``, ``history`` and ``random_state`` (every process's random streams,
:mod:`common.train.training`), so ``-r`` resumes exactly.
``pose_history.json`` holds the per-epoch MPJPEs (``--export-training-curves``: ``pose_training_curves.png``).

``--evaluate`` evaluates ``-r <ckpt>`` (default ``<checkpoint>/epoch_best.bin``, else ``final.bin``) on the
test subjects. ``--export_predictions <dir>`` writes ``<dir>/prediction.pkl`` + ``<dir>/action_dict.pkl`` of
the test subjects (camera frame, root-relative, metres) for ``bone_adjust.py``.
"""
from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from common.utils import distributed
from common.train.accumulation import autocast, lifter_step, optimizer_step
from common.adjustment.adjust import write_predictions
from common.utils.checkpoint import load_checkpoint, load_weights, model_state, resolve_checkpoint
from common.datasets.dataset import PoseDataset, Sequence3D, camera_space_root_relative, load_dataset
from common.utils.errors import UserError
from common.adjustment.evaluation import DEFAULT_METRICS, EvaluationResult, evaluate, format_table
from common.datasets.generators import Batch, ChunkedGenerator, UnchunkedGenerator, predict_poses
from common.core.metrics import mpjpe
from common.models.model import TemporalModel, build_lifter
from common.train.training import (EpochLoop, EpochRecord, Trainer, make_optimizer, prepare_run, save_history,
                                   split_validation)
from common.models.model_loading import CHECKPOINT_LIFTER, load_model

INITIAL_MOMENTUM, FINAL_MOMENTUM = 0.1, 0.001


def bn_momentum(epoch: int, epochs: int) -> float:
    """VideoPose3D's BatchNorm momentum after ``epoch`` of ``epochs`` epochs: 0.1 decaying to 0.001."""
    return INITIAL_MOMENTUM * math.exp(-epoch / max(epochs, 1) * math.log(INITIAL_MOMENTUM / FINAL_MOMENTUM))


def training_views(dataset: PoseDataset, subjects: list[str], action_filter: list[str] | None,
                   args: argparse.Namespace) -> list[Sequence3D]:
    """The training views of ``subjects``: the dataset's own cameras and 2D keypoints (``--cameras dataset``),
    or their 3D motion (plus the extra clips of :mod:`common.datasets.extra_motion` with ``--extra_motion``, performed by
    these subjects' bodies) filmed by random virtual cameras with detector-like 2D noise (``--cameras virtual``:
    ``--virtual_views`` cameras per ``--virtual_segment`` frames, seeded by ``--seed``)."""
    if args.cameras == "dataset":
        return dataset.fetch(subjects, action_filter, require_3d=True)
    from common.datasets.virtual_cameras import virtual_views, world_motions

    dataset.check_subjects(subjects)
    motions = world_motions(dataset.world_3d, subjects, action_filter)
    if args.extra_motion:
        from common.datasets.extra_motion import extra_motions

        motions += extra_motions(subjects)
    views = virtual_views(motions, args.virtual_views, args.virtual_segment, args.seed)
    if not views:
        raise UserError(f"no 3D motion for subjects {subjects} with actions {action_filter}")
    return views


def training_arrays(views: list[Sequence3D], subset: float, downsample: int, seed: int
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """2D inputs and root-relative 3D targets of the training views, optionally a contiguous random
    ``subset`` of each sequence and every ``downsample``-th frame."""
    rng = np.random.RandomState(seed)
    poses_2d, poses_3d = [], []
    for v in views:
        p2, p3 = v.poses_2d, camera_space_root_relative(v)
        if subset < 1:
            n = max(1, int(round(len(p2) * subset)))
            start = rng.randint(0, len(p2) - n + 1)
            p2, p3 = p2[start:start + n], p3[start:start + n]
        poses_2d.append(p2[::downsample])
        poses_3d.append(p3[::downsample])
    return poses_2d, poses_3d


def predict_lifter(model: TemporalModel, views: list[Sequence3D], tta: bool, device: torch.device,
                  progress: bool = False) -> list[np.ndarray]:
    """Root-relative predictions (T, 17, 3) metres, camera frame, for whole views (one receptive field of
    edge padding, optional flip test-time augmentation)."""
    pad = (model.receptive_field() - 1) // 2
    gen = UnchunkedGenerator([v.poses_2d for v in views], pad, model.total_causal_shift(), augment=tta)
    return [p - p[:, :1] for p in predict_poses(model, gen, device, progress)]


def evaluate_views(model: TemporalModel, views: list[Sequence3D], tta: bool, device: torch.device,
                   metric_names=DEFAULT_METRICS, progress: bool = False
                   ) -> tuple[EvaluationResult, list[np.ndarray]]:
    """Per-action metrics of the model on the views and the predictions themselves."""
    preds = predict_lifter(model, views, tta, device, progress)
    result = evaluate([(v.action, p, camera_space_root_relative(v)) for v, p in zip(views, preds)], metric_names)
    return result, preds


def export_predictions(out_dir: str | Path, views: list[Sequence3D], preds: list[np.ndarray]) -> None:
    """Write the third-party layout (prediction.pkl + action_dict.pkl) for complete (4-camera) actions."""
    table: dict[str, dict[str, list[np.ndarray]]] = {}
    for v, p in zip(views, preds):
        table.setdefault(v.subject, {}).setdefault(v.action, []).append(p)
    paths = write_predictions(out_dir, table)
    print(f"wrote {', '.join(str(p) for p in paths)} ({len(preds)} sequences, camera frame, root-relative, metres)")


def _architecture(args: argparse.Namespace) -> dict:
    return {"architecture": list(args.architecture), "channels": args.channels, "causal": bool(args.causal),
            "dense": bool(args.dense)}


def _evaluate_checkpoint(args, views, device) -> None:
    if args.resume:
        path = resolve_checkpoint(args.resume)
    else:
        best = Path(args.checkpoint) / "epoch_best.bin"
        path = best if best.is_file() else Path(args.checkpoint) / "final.bin"
    model = load_model(path, ("lifter",), **_architecture(args), device=device).model
    print(f"evaluating {path} (receptive field {model.receptive_field()} frames) on {len(views)} sequences")
    report(model, views, "VideoPose3D", args, device)


def report(model: TemporalModel, views: list[Sequence3D], label: str, args: argparse.Namespace,
           device: torch.device) -> None:
    """Print the per-action metrics of ``model`` on ``views`` under ``label`` and, with
    ``--export_predictions``, write its predictions in the third-party layout."""
    result, preds = evaluate_views(model, views, args.test_time_augmentation, device, progress=True)
    print(format_table({label: result}, per_action=True))
    if args.export_predictions:
        export_predictions(args.export_predictions, views, preds)


class PoseEpochs(Trainer):
    """``-t pose``'s pieces of the epoch loop (:class:`common.train.training.EpochLoop`): every process trains on
    its rows of each batch; the main process evaluates the MPJPE of the inference model (``eval_model``, the
    training weights) on the validation and test views."""

    train_keys = (("train", 1000.0),)  # MPJPE, metres -> mm
    eval_keys = ("val", "test")

    def __init__(self, args: argparse.Namespace, ctx: distributed.DistContext, train_model: TemporalModel,
                 eval_model: TemporalModel, optimizer: torch.optim.Optimizer, generator: ChunkedGenerator,
                 val_views: list[Sequence3D], test_views: list[Sequence3D], micro_batch: int,
                 precision: str) -> None:
        self.args, self.ctx, self.train_model, self.eval_model = args, ctx, train_model, eval_model
        self.optimizer, self.generator, self.micro_batch, self.precision = optimizer, generator, micro_batch, precision
        self.views = {"val": val_views, "test": test_views}
        self.select_on = args.select_on
        self.ddp_model = distributed.wrap_model(train_model, ctx)

    def batches(self, epoch: int) -> tuple[Iterable[Batch], int]:
        self.train_model.set_bn_momentum(bn_momentum(epoch, self.args.epochs))
        return self.generator.next_epoch_share(self.ctx.rank, self.ctx.world_size), self.generator.num_batches

    def step(self, batch: Batch) -> tuple[list[float], int]:
        device = self.ctx.device
        inputs, targets, _ = batch.tensors(device)

        def micro_loss(r: slice) -> torch.Tensor:
            with autocast(self.precision, device):
                predicted = self.ddp_model(inputs[r])
            return mpjpe(predicted.float(), targets[r]).mean()

        loss = optimizer_step(self.ddp_model, self.optimizer, len(inputs), self.micro_batch, micro_loss)
        return [loss], targets.shape[0] * targets.shape[1]

    def evaluate(self) -> dict[str, float]:
        self.eval_model.load_state_dict(self.train_model.state_dict())
        return {name: evaluate_views(self.eval_model, views, self.args.test_time_augmentation, self.ctx.device,
                                     ["MPJPE"])[0].average["MPJPE"]
                for name, views in self.views.items() if views}

    def log(self, record: EpochRecord, history: Mapping[str, Sequence[float]]) -> None:
        print(f"[{record.epoch:3d}] {record.seconds:6.1f}s lr {record.next_lr:.2e}  "
              f"train MPJPE {history['train'][-1]:7.1f} mm  "
              f"val {history['val'][-1]:7.1f} mm  test {history['test'][-1]:7.1f} mm"
              + ("  *" if record.improved else ""))

    def checkpoint_entries(self) -> dict[str, Any]:
        return {"lifter": CHECKPOINT_LIFTER, **_architecture(self.args)}

    def write_files(self, state: Mapping[str, Any], history: Mapping[str, Sequence[float]]) -> None:
        save_history(self.args.checkpoint, "pose", history, history if self.args.export_training_curves else None,
                     "MPJPE (mm)", "VideoPose3D lifter")


def train(args: argparse.Namespace, ctx: distributed.DistContext) -> None:
    """Train (or with ``--evaluate`` only evaluate) the lifter; see the module docstring. Under
    ``torchrun --nproc_per_node N`` every rank trains on its share of each batch (DistributedDataParallel);
    rank 0 evaluates, prints and writes files."""
    device = ctx.device
    train_subjects, test_subjects, action_filter = prepare_run(args, ctx)
    subjects = list(OrderedDict.fromkeys(test_subjects if args.evaluate else train_subjects + test_subjects))
    dataset = load_dataset(args.data_dir, args.dataset, args.keypoints, need_3d=True, subjects=subjects)
    test_views = dataset.fetch(test_subjects, action_filter, require_3d=True)
    if args.evaluate:
        if ctx.is_main:
            _evaluate_checkpoint(args, test_views, device)
        return

    optimized = args.stride == 1 and not args.disable_optimizations
    train_model, eval_model = build_lifter(args.architecture, args.channels, args.dropout, args.causal, args.dense,
                                           optimized=optimized)
    train_model.to(device)
    eval_model.to(device)
    rf = eval_model.receptive_field()
    train_views = training_views(dataset, train_subjects, action_filter, args)
    if args.select_on == "val":
        train_views, val_views = split_validation(train_views, args.val_fraction, args.seed)
    else:
        val_views = []
    poses_2d, poses_3d = training_arrays(train_views, args.subset, args.downsample, args.seed)
    generator = ChunkedGenerator(args.batch_size, poses_2d, poses_3d, chunk_length=args.stride, pad=(rf - 1) // 2,
                                 causal_shift=eval_model.total_causal_shift(), shuffle=True,
                                 augment=args.data_augmentation, random_seed=args.seed)
    optimizer = make_optimizer(train_model.parameters(), args.learning_rate)
    n_params = sum(p.numel() for p in train_model.parameters())
    _, micro_batch, precision, step_text = lifter_step(args, args.batch_size, ctx.world_size, device)
    say = print if ctx.is_main else (lambda *a, **k: None)
    say(f"lifter: -arc {','.join(map(str, args.architecture))} (receptive field {rf} frames), {n_params:,} "
          f"parameters; {len(train_views)} training sequences ({args.cameras} cameras; {generator.num_frames} "
          f"frames/epoch with augmentation), {len(val_views)} validation, {len(test_views)} test; {ctx.world_size} process(es)")
    say(f"INFO: {step_text}")

    epochs = PoseEpochs(args, ctx, train_model, eval_model, optimizer, generator, val_views, test_views,
                        micro_batch, precision)
    loop = EpochLoop(epochs, args, ctx, train_model, [optimizer], {"generator": generator})
    if args.resume:
        path = resolve_checkpoint(args.resume)
        state = load_checkpoint(path, device, kind="lifter")
        load_weights(train_model, model_state(state, source=str(path)), str(path))
        loop.resume(state, str(path))
    loop.run()
    if not ctx.is_main:
        return
    print(f"saved {Path(args.checkpoint) / 'final.bin'} (rewritten every epoch)")

    eval_model.load_state_dict(train_model.state_dict())
    report(eval_model, test_views, "VideoPose3D (final)", args, device)
