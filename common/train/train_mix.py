"""``train.py -t mix``: fine-tune the mix model (frozen bone-length model + VideoPose3D direction branch).

Start from ``--length_model <ckpt>`` (``-t length``) and ``--direction_model <ckpt>`` (a lifter: ours from
``-t pose`` or the published ``pretrained_h36m_cpn.bin``), or from ``--mix_model <ckpt>`` (weights only, or
resumed exactly when it holds an optimizer state; ``-r`` also resumes).

Training samples are VideoPose3D's chunks (:class:`common.datasets.generators.ChunkedGenerator`, flip augmentation
unless ``-no-da``; ``--subset``/``--downsample`` as for ``-t pose``); the lengths of every training sequence are the frozen model's prediction on the *whole*
2D sequence, read from ``--bone_length_list`` (``data/lengths_list.npz``, fetch order, as in the paper) or
computed once at start-up when that flag is absent. Loss = MPJPE of the recomposed pose + mean distance of
its unit bone directions to the ground truth's (:func:`common.core.metrics.direction_loss`), both in metres.

Evaluation (``--evaluate``, and at the end of training): every test sequence through the dilated branch
(test-time flip unless ``-no-tta``: directions merged, then recomposed), lengths from the frozen model on the
whole sequence; per action category and action-wise average of MPJPE, P-MPJPE, N-MPJPE, MPJVE, bone-length
and bone-direction error, each under its own name. ``--export_predictions <dir>`` writes ``prediction.pkl`` +
``action_dict.pkl`` (third-party layout, read by ``bone_adjust.py``).

Checkpoints in ``-c``: ``final.bin`` every epoch, ``epoch_<n>.bin`` every ``--checkpoint-frequency`` epochs;
``model_pos`` holds ``length_model.*`` + ``direction_model.*``; ``mix_history.json`` every epoch. Under
torchrun every rank trains on its share of each batch (DistributedDataParallel).
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from common.utils import distributed
from common.train.accumulation import autocast, lifter_step, optimizer_step
from common.core.bones import adjust_bone_lengths, final_lengths
from common.utils.checkpoint import resolve_checkpoint, save_checkpoint
from common.datasets.dataset import (PoseDataset, Sequence3D, camera_space_root_relative, load_dataset)
from common.utils.errors import UserError
from common.adjustment.evaluation import (BONE_TABLE_TITLE, METRICS, EvaluationResult, bone_columns, evaluate, format_bone_table,
                               format_table, write_csv)
from common.utils.fileio import check_array, load_npz
from common.utils.validation import check_length_units
from common.datasets.generators import Batch, ChunkedGenerator, UnchunkedGenerator
from common.models.length_model import predict_sequences
from common.core.metrics import direction_loss, mpjpe
from common.models.mix_model import MixModel
from common.models.model import build_lifter
from common.models.model_loading import CHECKPOINT_LIFTER, LIFTER_ARCHITECTURE_KEYS, load_model
from common.core.skeleton import NUM_BONES
from common.train.train_pose import export_predictions
from common.train.train_pose import predict_lifter
from common.train.train_pose import training_arrays, training_views
from common.train.training import (EpochLoop, EpochRecord, Trainer, check_resumable, make_optimizer, prepare_run,
                                   save_history)

BN_MOMENTUM = 0.001  # fine-tuning keeps the lifter's BatchNorm statistics nearly fixed (the paper's value)


def _lifters(args: argparse.Namespace, arch: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(training, inference) direction branches of architecture ``arch``; the strided one trains only
    single-frame chunks (-s 1)."""
    widths, channels, causal, dense = (arch[k] for k in LIFTER_ARCHITECTURE_KEYS)
    train_lifter, eval_lifter = build_lifter(widths, channels, args.dropout, causal, dense)
    if args.stride > 1 or args.disable_optimizations:
        train_lifter = build_lifter(widths, channels, args.dropout, causal, dense)[1]
    for lifter in (train_lifter, eval_lifter):
        lifter.set_bn_momentum(BN_MOMENTUM)
    return train_lifter, eval_lifter


def build_models(args: argparse.Namespace, device: torch.device
                 ) -> tuple[MixModel, MixModel, dict[str, Any], dict[str, Any]]:
    """(training mix model, inference mix model, loaded mix checkpoint or {}, lifter architecture) with weights
    from the flags, rebuilt by :func:`common.models.model_loading.load_model` (the stored architecture wins over
    -arc/-ch/--causal with a printed note).

    ``--mix_model`` (or ``-r``) wins; otherwise both ``--length_model`` and ``--direction_model`` are needed.
    The two mix models share the frozen length model; copy direction weights with ``load_state_dict``.
    """
    source = args.mix_model or args.resume
    flags = {"architecture": args.architecture, "channels": args.channels, "causal": args.causal,
             "dense": args.dense, "search": (args.checkpoint,)}
    checkpoint: dict[str, Any] = {}
    if source:
        loaded = load_model(source, ("mix",), bidirectional=args.bidirectional or None, num_layers=args.num_layers,
                            **flags)
        checkpoint, length_model, lifter = loaded.checkpoint, loaded.model.length_model, loaded.model.direction_model
    else:
        if not (args.length_model and args.direction_model):
            raise UserError("-t mix needs --length_model <ckpt> and --direction_model <ckpt>, or --mix_model <ckpt>")
        length_model = load_model(args.length_model, ("length",), bidirectional=args.bidirectional or None,
                                  num_layers=args.num_layers, search=(args.checkpoint,)).model
        loaded = load_model(args.direction_model, ("lifter",), **flags)
        lifter = loaded.model
    arch = loaded.architecture
    train_lifter, eval_lifter = _lifters(args, arch)
    train_lifter.load_state_dict(lifter.state_dict())
    model = MixModel(length_model, train_lifter)
    eval_model = MixModel(model.length_model, eval_lifter)
    eval_model.load_state_dict(model.state_dict())
    return model.to(device), eval_model.to(device), checkpoint, arch


def load_length_list(path: str | Path, dataset: PoseDataset, subject_orders: Sequence[Sequence[str]]
                     ) -> dict[tuple[str, str, int], np.ndarray]:
    """Per-view lengths from ``lengths_list.npz`` (key ``lengths``: list in fetch order, all actions).

    The list must cover the views of one of ``subject_orders`` (e.g. train + test subjects, as written by
    ``length_model_inference.py``; or the training subjects only). Entries are (16,) metres, or (T, 16)
    per frame from a causal model, of which the last row (the whole-sequence estimate) is used.
    """
    path = Path(path)
    lengths = load_npz(path, required=["lengths"])["lengths"]
    if isinstance(lengths, np.ndarray) and lengths.dtype != object:
        lengths = list(lengths)
    if not isinstance(lengths, (list, tuple)):
        raise UserError(f"{path}: 'lengths' must be a list of per-sequence arrays")
    for subjects in subject_orders:
        if not all(s in dataset.sequences for s in subjects):
            continue
        views = dataset.fetch(list(subjects))
        if len(views) == len(lengths):
            out = {}
            for view, value in zip(views, lengths):
                value = np.asarray(value, dtype=np.float32)
                value = final_lengths(value)
                name = f"{path.name} {view.subject}/{view.action} camera {view.camera_index}"
                out[view.key] = check_array(name, value, (NUM_BONES,))
                check_length_units(name, out[view.key])
            return out
    options = " or ".join(f"{','.join(s)} ({len(dataset.fetch(list(s)))})" for s in subject_orders
                          if all(x in dataset.sequences for x in s))
    raise UserError(f"{path} holds {len(lengths)} sequences, but the views of {options} differ: regenerate it "
                    "with length_model_inference.py for these subjects and keypoints")


def frozen_model_lengths(model: MixModel, views: Sequence[Sequence3D]) -> list[np.ndarray]:
    """The frozen model's lengths of whole 2D sequences: (16,) each, or (T, 16) per frame when causal."""
    return predict_sequences(model.length_model, [v.poses_2d for v in views])


def predict_mix(model: MixModel, views: Sequence[Sequence3D], lengths: Sequence[np.ndarray],
                  test_time_augmentation: bool, device: torch.device, progress: bool = False) -> list[np.ndarray]:
    """Mix-model poses (T, 17, 3) metres, camera frame, root-relative, for every view (eval mode)."""
    model.eval()
    rf = model.receptive_field()
    shift = model.direction_model.total_causal_shift()
    generator = UnchunkedGenerator([v.poses_2d for v in views], pad=(rf - 1) // 2, causal_shift=shift,
                                   augment=test_time_augmentation)
    out: list[np.ndarray] = [np.empty(0)] * len(views)
    for index, inputs in tqdm(generator, total=len(generator), desc="mix inference", disable=not progress,
                              leave=False):
        poses = model.predict_sequence(torch.from_numpy(inputs).to(device), torch.from_numpy(lengths[index]))
        out[index] = poses.cpu().numpy().astype(np.float32)
    return out


def evaluate_views(model: MixModel, views: Sequence[Sequence3D], lengths: Sequence[np.ndarray],
                   args: argparse.Namespace, device: torch.device, metric_names: Sequence[str] | None = None,
                   progress: bool = False) -> tuple[EvaluationResult, list[np.ndarray]]:
    """Per-action metrics of the mix model on ``views`` (which need 3D); also returns the predictions."""
    predictions = predict_mix(model, views, lengths, args.test_time_augmentation, device, progress)
    items = [(v.action, p, camera_space_root_relative(v)) for v, p in zip(views, predictions)]
    result = evaluate(items, metric_names) if metric_names else evaluate(items, per_bone=True)
    return result, predictions




def lifter_results(lifter: torch.nn.Module, views: Sequence[Sequence3D], lengths: Sequence[np.ndarray],
                   args: argparse.Namespace, device: torch.device, label: str,
                   adjusted_label: str) -> dict[str, EvaluationResult]:
    """A plain lifter (inference variant): its own poses (row ``label``), and those poses adjusted (BLAPose,
    :func:`common.core.bones.adjust_bone_lengths`) with the frozen model's lengths of each sequence (row
    ``adjusted_label``)."""
    predictions = predict_lifter(lifter, views, args.test_time_augmentation, device, True)
    adjusted = [adjust_bone_lengths(p, x) for p, x in zip(predictions, lengths)]
    out = {}
    for name, poses in ((label, predictions), (adjusted_label, adjusted)):
        out[name] = evaluate([(v.action, p, camera_space_root_relative(v)) for v, p in zip(views, poses)],
                             per_bone=True)
    return out


def starting_point_results(eval_model: MixModel, views: Sequence[Sequence3D], lengths: Sequence[np.ndarray],
                           args: argparse.Namespace, device: torch.device) -> dict[str, EvaluationResult]:
    """The lifter the fine-tuning starts from, before any update (rows ``lifter (start)`` and
    ``lifter + adjustment``)."""
    return lifter_results(eval_model.direction_model, views, lengths, args, device, "lifter (start)",
                          "lifter + adjustment")


CONTROL_FILE = "control_final.bin"


def control_label(epochs: int) -> str:
    return f"control: lifter fine-tuned {epochs} epochs without the length model"


def control_results(path: Path, views: Sequence[Sequence3D], lengths: Sequence[np.ndarray],
                    args: argparse.Namespace, device: torch.device) -> dict[str, EvaluationResult]:
    """Rows of the control lifter saved in ``path`` (``{}`` when there is none)."""
    if not path.is_file():
        return {}
    loaded = load_model(path, ("lifter",), device=device)
    label = control_label(int(loaded.checkpoint.get("epoch", 0)))
    return lifter_results(loaded.model, views, lengths, args, device, label, "control + adjustment")


def lifter_loss(lifter: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The fine-tuning loss on a plain lifter's own root-relative poses: MPJPE + bone-direction loss (metres)."""
    predicted = lifter(inputs)
    predicted = predicted - predicted[:, :, :1]
    return mpjpe(predicted, targets).mean() + direction_loss(predicted, targets)


def _final_evaluation(eval_model: MixModel, test_views: list[Sequence3D], test_lengths: list[np.ndarray],
                      args: argparse.Namespace, device: torch.device, label: str,
                      baselines: dict[str, EvaluationResult] | None = None) -> None:
    """Print the per-action table (with the starting lifter's rows when given), write result_mix.csv, and
    export the predictions when asked."""
    result, predictions = evaluate_views(eval_model, test_views, test_lengths, args, device, progress=True)
    results = {**(baselines or {}), label: result}
    print(format_table(results, per_action=True))
    print(format_bone_table(bone_columns(results), BONE_TABLE_TITLE))
    units = {name: unit for name, (_, _, unit) in METRICS.items()}
    for name, res in results.items():
        print(f"SUMMARY {name}: " + "  ".join(f"{k} {v:.1f} {units[k]}" for k, v in res.average.items()))
    write_csv(Path(args.checkpoint) / "result_mix.csv", results)
    if args.export_predictions:
        export_predictions(args.export_predictions, test_views, predictions)


class MixEpochs(Trainer):
    """``-t mix``'s pieces of the epoch loop (:class:`common.train.training.EpochLoop`): every process trains on its
    rows of each batch (and, with ``--control``, steps the control on the same rows); the main process evaluates
    the test MPJPE. No model selection: ``final.bin`` is the result."""

    train_keys = (("train_mpjpe", 1000.0), ("train_direction", 1.0))  # MPJPE metres -> mm; direction loss
    eval_keys = ("test_mpjpe",)

    def __init__(self, args: argparse.Namespace, ctx: distributed.DistContext, model: MixModel,
                 eval_model: MixModel, optimizer: torch.optim.Optimizer, generator: ChunkedGenerator,
                 control: "Control | None", test_views: list[Sequence3D], test_lengths: list[np.ndarray],
                 arch: dict[str, Any]) -> None:
        self.args, self.ctx, self.model, self.eval_model, self.optimizer = args, ctx, model, eval_model, optimizer
        self.generator, self.control, self.arch = generator, control, arch
        self.test_views, self.test_lengths = test_views, test_lengths
        self.train_model = distributed.wrap_model(model, ctx)
        _, self.micro_batch, self.precision, self.step_text = lifter_step(args, generator.batch_size,
                                                                          ctx.world_size, ctx.device)

    def batches(self, epoch: int) -> tuple[Iterable[Batch], int]:
        return self.generator.next_epoch_share(self.ctx.rank, self.ctx.world_size), self.generator.num_batches

    def step(self, batch: Batch) -> tuple[list[float], int]:
        device = self.ctx.device
        inputs, targets, lengths = batch.tensors(device)
        targets[:, :, 0] = 0
        parts = [0.0, 0.0]  # the batch's mean position and direction losses

        def micro_loss(r: slice) -> torch.Tensor:
            with autocast(self.precision, device):
                predicted, _ = self.train_model(inputs[r], lengths[r])
            predicted = predicted.float()
            loss_position = mpjpe(predicted, targets[r]).mean()
            loss_direction = direction_loss(predicted, targets[r])
            share = (r.stop - r.start) / len(inputs)
            parts[0] += loss_position.item() * share
            parts[1] += loss_direction.item() * share
            return loss_position + loss_direction

        optimizer_step(self.train_model, self.optimizer, len(inputs), self.micro_batch, micro_loss)
        if self.control is not None:
            self.control.step(inputs, targets, self.micro_batch, self.precision)
        return parts, targets.shape[0] * targets.shape[1]

    def evaluate(self) -> dict[str, float]:
        if not self.test_views:
            return {}
        self.eval_model.load_state_dict(self.model.state_dict())
        result, _ = evaluate_views(self.eval_model, self.test_views, self.test_lengths, self.args, self.ctx.device,
                                   ["MPJPE"])
        return {"test_mpjpe": result.average["MPJPE"]}

    def log(self, record: EpochRecord, history: Mapping[str, Sequence[float]]) -> None:
        print(f"[{record.epoch}] time {record.seconds / 60:.2f} min lr {record.lr:.7f} "
              f"train MPJPE {history['train_mpjpe'][-1]:.1f} mm  train direction loss "
              f"{history['train_direction'][-1]:.4f}  test MPJPE {record.metrics['test_mpjpe']:.1f} mm")

    def checkpoint_entries(self) -> dict[str, Any]:
        entries = {"length_model_config": self.model.length_model.config(), "mix_config": self.arch,
                   "lifter": CHECKPOINT_LIFTER}
        if self.control is not None:
            entries["control"] = self.control.state()
        return entries

    def write_files(self, state: Mapping[str, Any], history: Mapping[str, Sequence[float]]) -> None:
        checkpoint_dir = Path(self.args.checkpoint)
        if self.control is not None:
            save_checkpoint(checkpoint_dir / CONTROL_FILE, {**state["control"], "epoch": state["epoch"],
                                                             **self.arch, "lifter": CHECKPOINT_LIFTER})
        curves = {"train MPJPE": history["train_mpjpe"], "test MPJPE": history["test_mpjpe"]}
        save_history(checkpoint_dir, "mix", history, curves if self.args.export_training_curves else None,
                     "MPJPE (mm)", "Mix model fine-tuning")


def _evaluate(args: argparse.Namespace, ctx: distributed.DistContext, eval_model: MixModel,
              test_views: list[Sequence3D], test_lengths: list[np.ndarray], label: str) -> None:
    """``--evaluate``: the final evaluation of ``--mix_model`` (with its control's rows when saved beside it)."""
    if not (args.mix_model or args.resume):
        raise UserError("-t mix --evaluate needs --mix_model <checkpoint>")
    if not test_views:
        raise UserError("no test subjects to evaluate (-ste)")
    if ctx.is_main:
        source = resolve_checkpoint(args.mix_model or args.resume, args.checkpoint)
        control = control_results(source.parent / CONTROL_FILE, test_views, test_lengths, args, ctx.device)
        _final_evaluation(eval_model, test_views, test_lengths, args, ctx.device, label, control or None)


def training_lengths(args: argparse.Namespace, dataset: PoseDataset, model: MixModel,
                     train_views: list[Sequence3D], train_subjects: list[str], test_subjects: list[str]
                     ) -> tuple[list[np.ndarray], str]:
    """The (16,) metres lengths of every training view, from ``--bone_length_list`` or from the frozen length
    model on the whole view, and where they come from (for the start-up line)."""
    if args.bone_length_list and args.cameras == "virtual":
        raise UserError("--bone_length_list holds lengths of the dataset's camera views; with --cameras virtual "
                        "omit it (the frozen length model reads the virtual views at start-up)")
    if args.bone_length_list:
        table = load_length_list(args.bone_length_list, dataset, [train_subjects + test_subjects, train_subjects])
        return [table[v.key] for v in train_views], args.bone_length_list
    # the length model is frozen: its whole-sequence lengths are computed once, identically on all ranks
    return ([final_lengths(x) for x in frozen_model_lengths(model, train_views)],
            "the frozen length model (computed at start-up)")


def train(args: argparse.Namespace, ctx: distributed.DistContext) -> None:
    """Fine-tune (or with ``--evaluate`` evaluate) the mix model in this process (``train.py`` runs it through
    :func:`common.utils.distributed.launch`); rank 0 evaluates, prints and writes files."""
    device = ctx.device
    train_subjects, test_subjects, actions = prepare_run(args, ctx)
    needed = test_subjects if args.evaluate else list(dict.fromkeys(train_subjects + test_subjects))
    dataset = load_dataset(args.data_dir, args.dataset, args.keypoints, need_3d=True, subjects=needed)
    test_views = dataset.fetch(test_subjects, actions, require_3d=True) if test_subjects else []
    model, eval_model, checkpoint, arch = build_models(args, device)
    label = Path(args.mix_model or args.resume or "mix (from " + Path(args.direction_model).name + ")").name

    if ctx.is_main:
        print(f"INFO: receptive field {model.receptive_field()} frames; "
              f"{sum(p.numel() for p in model.trainable_parameters())} trainable parameters (direction branch), "
              f"{sum(p.numel() for p in model.length_model.parameters())} frozen (length model)")
    test_lengths = frozen_model_lengths(model, test_views) if ctx.is_main and test_views else []
    if args.evaluate:
        _evaluate(args, ctx, eval_model, test_views, test_lengths, label)
        return

    train_views = training_views(dataset, train_subjects, actions, args)
    train_lengths, source = training_lengths(args, dataset, model, train_views, train_subjects, test_subjects)
    poses_2d, poses_3d = training_arrays(train_views, args.subset, args.downsample, args.seed)
    generator = ChunkedGenerator(max(1, args.batch_size // args.stride), poses_2d, poses_3d,
                                 chunk_length=args.stride, pad=(model.receptive_field() - 1) // 2,
                                 causal_shift=model.direction_model.total_causal_shift(), shuffle=True,
                                 augment=args.data_augmentation, lengths=train_lengths, random_seed=args.seed)
    optimizer = make_optimizer(model.trainable_parameters(), args.learning_rate)
    resuming = bool(args.resume) or checkpoint.get("optimizer") is not None
    if resuming:  # the optimizer state holds the decayed learning rate too
        check_resumable(checkpoint, args.mix_model or args.resume)
    baselines = None
    if ctx.is_main and test_views and not resuming and args.direction_model and not args.mix_model:
        baselines = starting_point_results(eval_model, test_views, test_lengths, args, device)
    control = Control(model, args, checkpoint if resuming else None, ctx) if args.control else None
    epochs = MixEpochs(args, ctx, model, eval_model, optimizer, generator, control, test_views, test_lengths, arch)
    loop = EpochLoop(epochs, args, ctx, model, [optimizer] + ([control.optimizer] if control else []),
                     {"generator": generator})
    if resuming:
        loop.resume(checkpoint, args.mix_model or args.resume)
    if ctx.is_main:
        print(f"INFO: training on {generator.num_frames} frames ({len(train_views)} sequences, flip "
              f"{'on' if args.data_augmentation else 'off'}), {ctx.world_size} process(es); lengths from {source}; "
              f"{epochs.step_text}{'; with the control lifter' if control else ''}")
    loop.run()

    if ctx.is_main and test_views:
        eval_model.load_state_dict(model.state_dict())
        if control is not None:
            baselines = {**(baselines or {}),
                         **control_results(Path(args.checkpoint) / CONTROL_FILE, test_views, test_lengths, args,
                                           device)}
        _final_evaluation(eval_model, test_views, test_lengths, args, device, f"mix (epoch {loop.epoch})",
                          baselines)


class Control:
    """The mix model's control: a copy of its starting lifter fine-tuned on the same batches with the same
    optimiser, schedule and loss, on its own poses (no length model). Its dropout masks come from its own copy
    of the torch random stream taken at the start (the mix model's masks, and the mix model's training is the
    same with or without the control)."""

    def __init__(self, model: MixModel, args: argparse.Namespace, checkpoint: dict[str, Any] | None,
                 ctx: distributed.DistContext) -> None:
        self.lifter = copy.deepcopy(model.direction_model)
        self.optimizer = make_optimizer(self.lifter.parameters(), args.learning_rate)
        self.device = ctx.device
        self.rng = self._get_rng()
        if checkpoint is not None:
            if "control" not in checkpoint:
                raise UserError("--control: the checkpoint being resumed was trained without the control")
            saved = checkpoint["control"]
            self.lifter.load_state_dict(saved["model_pos"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.rng = saved["rng"]
        self.train_model = distributed.wrap_model(self.lifter, ctx)

    def _get_rng(self) -> list[torch.Tensor]:
        states = [torch.get_rng_state()]
        if self.device.type == "cuda":
            states.append(torch.cuda.get_rng_state(self.device))
        return states

    def step(self, inputs: torch.Tensor, targets: torch.Tensor, micro_batch: int, precision: str) -> None:
        """One optimiser step on the batch the mix model just trained on."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.rng[0])
            if devices:
                torch.cuda.set_rng_state(self.rng[1], self.device)
            self.train_model.train()

            def micro_loss(r: slice) -> torch.Tensor:
                with autocast(precision, self.device):
                    return lifter_loss(self.train_model, inputs[r], targets[r]).float()

            optimizer_step(self.train_model, self.optimizer, len(inputs), micro_batch, micro_loss)
            self.rng = self._get_rng()

    def state(self) -> dict[str, Any]:
        return {"model_pos": self.lifter.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": self.rng}
