"""``train.py -t length``: train the bone-length model on synthetic batches (:mod:`common.datasets.synthetic`).

Data: training subjects' 3D motion (camera frame) -> :class:`common.datasets.synthetic.SyntheticBatchBuilder`; lengths
from ``--bone_length_aug`` (``--length_aug_type smpl``) or from the subjects' lengths (``random_*``).
Validation every epoch (rank 0):

* ``val``: held-out training sequences (``--val_fraction`` of the training (subject, action) pairs, never
  used to build training chunks), their *real* 2D keypoints (``-k``) against the subject's lengths;
* ``test``: the test subjects from their real (detector-like) 2D keypoints against their lengths;
* ``synthetic test``: fixed synthetic chunks of *held-out people* (:data:`HELDOUT_PEOPLE` bank rows never used
  for training, :func:`split_heldout_people`) through the test subjects' motion and cameras;
* ``synthetic val``: the same held-out people through the ``val`` sequences' motion and cameras (training
  subjects, never used to build training chunks): a low-noise selection value that touches no test subject.

``--camera_input`` (proportion model): the size branch also reads each chunk's camera
(:func:`common.core.camera.camera_features`), withheld from :data:`CAMERA_DROPOUT` of the training chunks so that the
camera-unknown path learns the 2D-only size; the evaluation hands each view's calibrated camera to the model.
``--cameras virtual`` (``--extra_motion``) films the training chunks through random phone-like cameras
(:func:`common.train.train_pose.training_views`) instead of the dataset's; ``--extra_motion`` with the dataset's
cameras adds the extra clips filmed through them (:func:`extra_views`; training chunks only, the validation split
unchanged). ``--length_convention blazepose``: the
bank is in BlazePose's landmark convention (``data/bone_length/generate_blazepose_bank.py``) while the real
subjects' lengths are Human3.6M's, so ``val`` and ``test`` are not scored and ``synthetic test`` selects
``epoch_best.bin``; the checkpoint stores the convention (``length_convention``) for ``inference.py --lengths model``.

Every validation also prints and records (``length_history.json``, keys ``<set>_<source>_<mae|size_free|size_pct>``) the
model beside the training bank's mean and a linear probe on simple 2D statistics (:mod:`common.models.length_probe`,
fitted on training batches), each by its mean absolute error, its size-free error and its overall-size error (%), on the held-out people and on the
test subjects' real 2D; the checkpoints store the mean and the probe (``length_mean``, ``length_probe``) so that
``length_model_inference.py`` prints the same rows.

``epoch_best.bin`` is chosen on ``val`` (``--select_on synthetic_val``: on ``synthetic val``; ``--select_on test``:
on the test subjects, the paper's behaviour).
All errors are mean absolute bone-length errors in mm. Under torchrun every rank draws different chunks.

Each batch is split into micro-batches (``--micro_batch``/``--memory_budget``) whose gradients accumulate into
one optimiser step equal to the full batch's; ``--precision bf16`` runs the forward pass (GRU included) in
bfloat16. ``length_history.json`` records the cumulative wall time of every epoch (``wall_s``); with
``--export-training-curves`` ``length_time_to_accuracy.png`` plots the errors against it.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from common.core.bones import final_lengths
from common.core.camera import CAMERA_FEATURES, camera_features_of
from common.utils import distributed
from common.train.accumulation import (autocast, length_model_sample_bytes, optimizer_step, resolve_micro_batch,
                                       resolve_precision)
from common.utils.checkpoint import load_checkpoint, load_weights, model_state, resolve_checkpoint
from common.datasets.dataset import PoseDataset, Sequence3D, load_dataset
from common.utils.device import evaluation_mode
from common.utils.errors import UserError
from common.utils.validation import check_length_units
from common.adjustment.evaluation import format_bone_table
from common.utils.fileio import check_array, existing_file, load_npz
from common.models.length_model import BoneLengthModel, LengthModel, per_bone_error_mm, predict_sequences
from common.models.proportion_model import (EVIDENCE_LOSS_WEIGHT, ProportionLengthModel, person_readings,
                                            proportion_sample_bytes, reads_people)
from common.models.length_probe import (LinearProbe, error_row, pooled_lengths, probe_features,
                                        sequence_features, stored_references)
from common.models.model_loading import load_model
from common.output.plots import plot_series
from common.datasets.synthetic import DEFAULT_BANKS, LengthSampler, SyntheticBatch, SyntheticBatchBuilder, epoch_order
from common.train.train_pose import training_views
from common.train.training import (EpochLoop, EpochRecord, Trainer, make_optimizer, prepare_run, save_history,
                                   split_validation)

SYNTHETIC_TEST_CHUNKS = 256
HELDOUT_PEOPLE = 512  # bank rows never used for training (held-out people)
HELDOUT_SEED = 20260
PROBE_BATCHES = 16  # training batches the linear probe is fitted on
CAMERA_DROPOUT = 0.25  # --camera_input: the share of training chunks whose camera is withheld (camera unknown)


def subject_lengths(dataset: PoseDataset, subjects: list[str]) -> np.ndarray:
    """(S, 16) metres: each subject's ground-truth lengths (left/right averaged)."""
    return np.stack([dataset.gt_bone_lengths(s) for s in subjects])


def load_length_bank(path: str | Path) -> np.ndarray:
    """The synthetic bone-length file (key ``data``, (N, 16) metres)."""
    path = existing_file(path, "bone-length file",
                         "make it with data/bone_length/generate_bone_length.py, or pass --bone_length_aug")
    bank = check_array(str(path), load_npz(path, required=["data"])["data"], (None, 16))
    check_length_units(str(path), bank)
    return bank


def default_length_bank(args: argparse.Namespace) -> Path:
    """``--bone_length_aug`` or, when not given, the paper's SMPL file if present, else the Anny ``_train`` set."""
    if args.bone_length_aug:
        return Path(args.bone_length_aug)
    for name in DEFAULT_BANKS:
        if (Path(args.data_dir) / name).is_file():
            return Path(args.data_dir) / name
    return Path(args.data_dir) / DEFAULT_BANKS[-1]


def make_sampler(args: argparse.Namespace, dataset: PoseDataset, train_subjects: list[str],
                 device: torch.device) -> tuple[LengthSampler, LengthSampler]:
    """(training sampler, held-out people sampler). ``smpl``: :data:`HELDOUT_PEOPLE` bank rows (a fixed draw,
    the same on every rank and run) are set aside, never used for training, to measure the model on people it
    has not seen; the ``random_*`` kinds draw new people every time, so both samplers are the same.
    ``--proportion_spread``: the training rows' proportions spread (:meth:`LengthSampler.spread_proportions`)."""
    kind = args.length_aug_type
    if kind == "smpl":
        train_rows, heldout_rows = split_heldout_people(load_length_bank(default_length_bank(args)))
        train, heldout = LengthSampler(kind, device, bank=train_rows), LengthSampler(kind, device, bank=heldout_rows)
    else:
        subjects = list(dataset.world_3d) if kind == "random_norm_all" else train_subjects
        train = heldout = LengthSampler(kind, device, subject_lengths=subject_lengths(dataset, subjects))
    if args.proportion_spread != 1.0:
        train.spread_proportions(args.proportion_spread)  # a one-line error for the random_* kinds
    return train, heldout


def split_heldout_people(bank: np.ndarray, count: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a bank (N, 16) into (training rows, held-out rows): ``count`` rows (default
    :data:`HELDOUT_PEOPLE`, at most a tenth of the bank and at least one) drawn with a fixed seed."""
    count = count or HELDOUT_PEOPLE
    count = max(1, min(count, len(bank) // 10))
    order = np.random.default_rng(HELDOUT_SEED).permutation(len(bank))
    return bank[np.sort(order[count:])], bank[np.sort(order[:count])]


def fit_probe(builder: SyntheticBatchBuilder, sampler: LengthSampler, seed: int,
              batches: int = PROBE_BATCHES, batch_size: int = 64) -> LinearProbe:
    """The linear 2D probe (:class:`common.models.length_probe.LinearProbe`) fitted on ``batches`` training
    batches drawn with its own generator (the training streams are not touched)."""
    gen = torch.Generator(device=builder.device).manual_seed(seed + 104729)
    n = batches * batch_size
    ids = torch.randint(builder.num_chunks, (n,), generator=gen, device=builder.device)
    flips = torch.rand(n, generator=gen, device=builder.device) < 0.5
    features, lengths = [], []
    for rows in torch.arange(n, device=builder.device).split(batch_size):
        batch = builder.sample(ids[rows], flips[rows], sampler, gen, person_chunks=1)  # every chunk a new person
        features.append(probe_features(batch.keypoints_2d))
        lengths.append(batch.lengths)
    return LinearProbe().fit(torch.cat(features).cpu(), torch.cat(lengths).cpu())


class LengthEvaluator:
    """Per-epoch validation errors (mm) under :attr:`keys` (and the learning rows, see below). Holds the fixed
    validation inputs; see the module docstring.

    Besides the selection errors, :meth:`evaluate` scores three sources on the same data, each by its mean
    absolute and size-free error (:mod:`common.models.length_probe`): the model, the training bank's mean
    ``mean_lengths`` (16,) m, and the linear 2D ``probe`` (None: no probe row). The data: ``synthetic`` = held-out
    people (``heldout_sampler``) through the test subjects' motion and cameras; ``test`` = the test subjects'
    real 2D against their lengths.
    """

    keys = ("val", "test", "synthetic_test", "synthetic_val")  # the selection errors, NaN when not evaluated

    def __init__(self, dataset: PoseDataset, val_views: list[Sequence3D], test_views: list[Sequence3D],
                 train_subjects: list[str], heldout_sampler: LengthSampler, args: argparse.Namespace,
                 device: torch.device, mean_lengths: np.ndarray, probe: LinearProbe | None = None) -> None:
        real = args.length_convention == "h36m"  # the subjects' lengths are in the bank's convention
        self.val_views, self.test_views = (val_views if real else []), test_views
        self.val_targets = (subject_lengths(dataset, [v.subject for v in val_views]) if self.val_views
                            else np.zeros((0, 16)))
        test_3d = [v for v in test_views if v.poses_3d is not None]
        self.test_targets = (subject_lengths(dataset, [v.subject for v in test_views]) if test_3d and real
                             else None)
        self.baseline = subject_lengths(dataset, train_subjects).mean(axis=0)
        self.mean_lengths = np.asarray(mean_lengths, dtype=np.float64)
        self.probe = probe
        self.synthetic = heldout_chunks(test_3d, heldout_sampler, args, device, args.seed + 7919)
        self.synthetic_val = (heldout_chunks([v for v in val_views if v.poses_3d is not None], heldout_sampler,
                                             args, device, args.seed + 7927)
                              if selection_key(args) == "synthetic_val" else None)  # built only to select on
        self.test_features = (sequence_features([v.poses_2d for v in test_views])
                              if probe is not None and self.test_targets is not None else None)

    @property
    def heldout_frames(self) -> int | None:
        """Frames in each held-out people chunk (None: no synthetic test set)."""
        return None if self.synthetic is None else int(self.synthetic.keypoints_2d.shape[1])

    @staticmethod
    def _synthetic_predictions(model: LengthModel, batch: SyntheticBatch) -> np.ndarray:
        with evaluation_mode(model):
            pred = torch.cat([model(*model_inputs(model, x, camera))
                              for x, camera in zip(batch.keypoints_2d.split(32), batch.camera.split(32))])
        return (pred[:, -1] if pred.ndim == 3 else pred).float().cpu().numpy()

    def _final_predictions(self, model: LengthModel, views: list[Sequence3D]) -> np.ndarray:
        preds = predict_sequences(model, [v.poses_2d for v in views], cameras=view_cameras(views))
        return np.stack([final_lengths(p) for p in preds])

    def test_per_bone(self, model: LengthModel) -> np.ndarray | None:
        if self.test_targets is None:
            return None
        return per_bone_error_mm(self._final_predictions(model, self.test_views), self.test_targets)

    def baseline_per_bone(self) -> np.ndarray | None:
        if self.test_targets is None:
            return None
        return per_bone_error_mm(np.broadcast_to(self.baseline, self.test_targets.shape), self.test_targets)

    def _rows(self, model_pred: np.ndarray, target: np.ndarray, features: torch.Tensor | None,
              people: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """model / mean / probe error rows; ``people`` (N,): each row's person, the model's and the probe's lengths
        pooled per person first (:func:`common.models.length_probe.pooled_lengths`)."""
        probe_pred = self.probe.predict(features) if self.probe is not None and features is not None else None
        if people is not None:
            model_pred = pooled_lengths(model_pred, people)
            probe_pred = None if probe_pred is None else pooled_lengths(probe_pred, people)
        rows = {"model": error_row(model_pred, target),
                "mean": error_row(np.broadcast_to(self.mean_lengths, target.shape), target)}
        if probe_pred is not None:
            rows["probe"] = error_row(probe_pred, target)
        return rows

    @torch.no_grad()
    def evaluate(self, model: LengthModel) -> dict[str, float]:
        """``val``, ``test``, ``synthetic_test`` (the model's mean absolute errors, mm) and, per data set
        (``synthetic_heldout``, ``test``, ``test_per_subject``: the test subjects' lengths pooled per subject), source
        and error, ``<set>_<source>_<mae|size_free|size_pct>`` (mm, %)."""
        out = dict.fromkeys(self.keys, math.nan)
        if self.val_views:
            out["val"] = float(per_bone_error_mm(self._final_predictions(model, self.val_views),
                                                 self.val_targets).mean())
        tables = {}
        if self.test_targets is not None:
            pred = self._final_predictions(model, self.test_views)
            out["test"] = float(per_bone_error_mm(pred, self.test_targets).mean())
            tables["test"] = self._rows(pred, self.test_targets, self.test_features)
            with person_readings(model):
                person_pred = self._final_predictions(model, self.test_views) if reads_people(model) else pred
            tables["test_per_subject"] = self._rows(person_pred, self.test_targets, self.test_features,
                                                    [v.subject for v in self.test_views])
        if self.synthetic is not None:
            pred = self._synthetic_predictions(model, self.synthetic)
            target = self.synthetic.lengths.cpu().numpy()
            out["synthetic_test"] = float(np.abs(pred - target).mean() * 1000.0)
            tables["synthetic_heldout"] = self._rows(pred, target, probe_features(self.synthetic.keypoints_2d).cpu())
        if self.synthetic_val is not None:
            pred = self._synthetic_predictions(model, self.synthetic_val)
            out["synthetic_val"] = float(np.abs(pred - self.synthetic_val.lengths.cpu().numpy()).mean() * 1000.0)
        for name, rows in tables.items():
            for source, errors in rows.items():
                for metric, value in errors.items():
                    out[f"{name}_{source}_{metric}"] = value
        return out


def view_cameras(views: Sequence[Sequence3D]) -> np.ndarray:
    """(N, 8) each view's :func:`common.core.camera.camera_features` (its calibrated camera)."""
    return np.stack([camera_features_of(v.camera) for v in views]) if views else np.zeros((0, CAMERA_FEATURES))


def extra_views(dataset: PoseDataset, subjects: list[str], args: argparse.Namespace, verbose: bool = True
                ) -> list[Sequence3D]:
    """``--extra_motion`` through the dataset's own cameras: the extra clips performed by ``subjects``' bodies, in
    windows of ``--virtual_segment`` frames placed in each subject's capture volume and filmed by its cameras
    (:func:`common.datasets.extra_motion.dataset_camera_views`)."""
    from common.datasets.extra_motion import dataset_camera_views, extra_motions

    views, skipped = dataset_camera_views(extra_motions(subjects), dataset.cameras, args.virtual_segment, args.seed)
    if verbose:
        print(f"INFO: extra motion through the dataset's cameras: {len(views)} views of windows of "
              f"{args.virtual_segment} frames" + (f" ({skipped} windows skipped: no placement keeps them inside "
                                                  "every image)" if skipped else ""))
    return views


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The length model itself, out of its DistributedDataParallel wrapper if it has one."""
    return model.module if hasattr(model, "module") else model


def model_inputs(model: torch.nn.Module, keypoints_2d: torch.Tensor, camera: torch.Tensor | None
                 ) -> tuple[torch.Tensor, ...]:
    """The positional inputs of a length model's forward for a chunk batch: ``(keypoints_2d,)``, and for a
    proportion model ``(keypoints_2d, None, camera)`` (camera (B, 8) or None, read with camera inputs only)."""
    return (keypoints_2d, None, camera) if isinstance(unwrapped(model), ProportionLengthModel) else (keypoints_2d,)


def drop_cameras(camera: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """camera (B, 8) features with each row replaced by NaN (*unknown*) with ``probability``: the training of
    the camera-unknown path (:func:`common.models.proportion_model.camera_input`)."""
    drop = torch.rand(len(camera), generator=generator, device=camera.device) < probability
    return camera.masked_fill(drop[:, None], float("nan"))


def heldout_chunks(views: list[Sequence3D], heldout_sampler: LengthSampler, args: argparse.Namespace,
                   device: torch.device, seed: int) -> SyntheticBatch | None:
    """Fixed synthetic chunks (at most :data:`SYNTHETIC_TEST_CHUNKS`, unflipped, ``--chunk_len`` frames or the
    shortest view's length) of held-out people through ``views``' 3D motion and cameras, drawn with ``seed``;
    None without views."""
    if not views:
        return None
    chunk_len = min(args.chunk_len, min(len(v.poses_3d) for v in views))
    builder = SyntheticBatchBuilder(views, chunk_len, chunk_len, device, placement=synthetic_placement(args))
    gen = torch.Generator(device=device).manual_seed(seed)
    n = min(SYNTHETIC_TEST_CHUNKS, builder.num_chunks)
    ids = torch.randperm(builder.num_chunks, generator=gen, device=device)[:n]
    flips = torch.zeros(n, dtype=torch.bool, device=device)
    return builder.sample(ids, flips, heldout_sampler, gen)


def format_learning_rows(metrics: dict[str, float], heldout_frames: int | None = None) -> str:
    """The model / mean / probe rows of :meth:`LengthEvaluator.evaluate` as printed lines (mm); the held-out
    people's row names its chunks' length (``heldout_frames``, :attr:`LengthEvaluator.heldout_frames`): it is
    ``--chunk_len``, so runs with other ``-l`` are scored on other chunks (issue 17's target is on 128 frames)."""
    chunks = f"{heldout_frames}-frame chunks of " if heldout_frames else ""
    labels = {"synthetic_heldout": f"held-out people, {chunks}test motion+cameras (synthetic)",
              "test": "test subjects (real 2D)",
              "test_per_subject": "test subjects, each one length vector (per-bone median over their sequences)"}
    lines = []
    for name, label in labels.items():
        cells = [f"{source} {metrics[f'{name}_{source}_mae']:.2f} / {metrics[f'{name}_{source}_size_free']:.2f} / "
                 f"{metrics[f'{name}_{source}_size_pct']:.1f}%"
                 for source in ("model", "mean", "probe") if f"{name}_{source}_mae" in metrics]
        if cells:
            lines.append(f"    {label}: " + "   ".join(cells) + "  (absolute mm / size-free mm / size error)")
    return "\n".join(lines)


def reference_state(evaluator: LengthEvaluator | None) -> dict[str, Any]:
    """What a checkpoint stores so that later scripts print the same reference rows: ``length_mean`` (16,) m,
    the training bank's mean, and ``length_probe`` (the linear probe's ``weight`` (17, 16), ``bias`` (16,))."""
    if evaluator is None:
        return {}
    state: dict[str, Any] = {"length_mean": torch.as_tensor(evaluator.mean_lengths, dtype=torch.float32)}
    if evaluator.probe is not None:
        state["length_probe"] = {"weight": evaluator.probe.weight.cpu(), "bias": evaluator.probe.bias.cpu()}
    return state


def _print_final_report(evaluator: LengthEvaluator, model: LengthModel, label: str,
                        subjects: list[str], keypoints: str) -> None:
    rows = format_learning_rows(evaluator.evaluate(model), evaluator.heldout_frames)
    if rows:
        print(f"Model ({label}) against the training bank's mean and the linear 2D probe:\n{rows}")
    test = evaluator.test_per_bone(model)
    if test is None:
        return
    baseline = evaluator.baseline_per_bone()
    print(f"Bone-length error on {','.join(subjects)} from '{keypoints}' 2D keypoints (mm, per bone):")
    print(format_bone_table({label: test, "training-mean baseline": baseline}))
    print(f"SUMMARY length model ({label}) {test.mean():.1f} mm vs always-predict-training-mean "
          f"{baseline.mean():.1f} mm")


def selection_key(args: argparse.Namespace) -> str:
    """The evaluation value that picks ``epoch_best.bin``: ``--select_on`` (``val``, ``synthetic_val`` or
    ``test``), or for a
    BlazePose-convention bank the held-out synthetic people (``synthetic_test``; the real subjects' lengths are
    in another convention)."""
    return args.select_on if args.length_convention == "h36m" else "synthetic_test"


def length_arch(args: argparse.Namespace) -> str:
    """``--length_arch`` resolved: ``auto`` is the proportion model with ``-bi`` and the paper's causal GRU without
    (the proportion models have no per-frame form); ``evidence`` is the proportion model with per-frame evidence."""
    if args.length_arch == "auto":
        return "proportion" if args.bidirectional else "gru"
    if args.length_arch in ("proportion", "evidence") and not args.bidirectional:
        raise UserError(f"--length_arch {args.length_arch} gives one vector per sequence: add -bi (or "
                        "--length_arch gru for the causal GRU)")
    return args.length_arch


def synthetic_placement(args: argparse.Namespace) -> str:
    """``--synthetic_placement`` resolved (:mod:`common.datasets.synthetic`): ``auto`` keeps the proportion model's
    bodies on the floor and gives the paper's GRU the paper's recipe."""
    if args.synthetic_placement == "auto":
        return "paper" if length_arch(args) == "gru" else "floor"
    return args.synthetic_placement


def synthetic_yaw(args: argparse.Namespace) -> bool:
    """``--synthetic_yaw`` resolved (:mod:`common.datasets.synthetic`): ``auto`` turns the training chunks about
    the up direction for the evidence model only."""
    if args.synthetic_yaw == "auto":
        return length_arch(args) == "evidence"
    return args.synthetic_yaw == "on"


def new_length_model(args: argparse.Namespace, mean_lengths: torch.Tensor,
                     probe: LinearProbe | None = None) -> LengthModel:
    """The untrained model of ``--length_arch``: the proportion model (width ``--hidden``; it always starts at
    ``mean_lengths``, (16,) m; ``probe``, the fitted linear probe, is attached: its eval-mode output is the
    geometric mean of the network's and the probe's) or the paper's GRU (``--hidden``, ``-layer``, ``-drop``,
    ``--length_init``; no probe)."""
    if args.person_chunks > 1 and length_arch(args) != "evidence":
        raise UserError("--person_chunks trains the frames' measurements of the evidence model: it needs "
                        "--length_arch evidence")
    if length_arch(args) in ("proportion", "evidence"):
        model = ProportionLengthModel(width=args.hidden, mean_lengths=mean_lengths.cpu(),
                                      camera_inputs=args.camera_input,
                                      evidence_width=args.evidence_width if length_arch(args) == "evidence" else 0,
                                      evidence_acceleration=args.evidence_acceleration,
                                      evidence_measurements=args.person_chunks > 1)
        if probe is not None:
            model.attach_probe(probe.weight.cpu(), probe.bias.cpu())
        return model
    model = BoneLengthModel(hidden_size=args.hidden, num_layers=args.num_layers or 1, dropout=args.dropout,
                            bidirectional=args.bidirectional)
    if args.length_init == "mean":
        model.initialise_output(mean_lengths)
    return model


def training_sample_bytes(model: LengthModel, args: argparse.Namespace, precision: str) -> int:
    """Activation bytes one training chunk keeps for the backward pass (sizes the micro-batches)."""
    if isinstance(model, ProportionLengthModel):
        return proportion_sample_bytes(model, args.chunk_len, precision)
    return length_model_sample_bytes(args.hidden, args.num_layers or 1, args.bidirectional, args.chunk_len,
                                     precision=precision)


def length_loss(model: torch.nn.Module, keypoints_2d: torch.Tensor, lengths: torch.Tensor,
                precision: str = "fp32", camera: torch.Tensor | None = None,
                record: list[float] | None = None, frame_likelihood: torch.Tensor | None = None,
                person: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute bone-length error (metres, float32 scalar) of ``model`` on normalised 2D chunks
    ``(B, L, 17, 2)`` against ``lengths`` ``(B, 16)`` metres; a causal model is scored at every frame. The
    forward pass runs under :func:`common.train.accumulation.autocast` for ``precision``; the loss in float32.
    camera: (B, 8) camera features (NaN rows: unknown), for a proportion model. A model with per-frame evidence
    adds its proportions' loss (:data:`common.models.proportion_model.EVIDENCE_LOSS_WEIGHT` times) to what it
    returns (its per-frame likelihood over the ``frame_likelihood`` (B,) bool chunks only, None: all); ``record``,
    if given, receives the length error alone (metres, a float), what the log reports."""
    evidence = getattr(unwrapped(model), "evidence_width", 0)
    with autocast(precision, keypoints_2d.device):
        if evidence:
            pred, frame_loss = model(*model_inputs(model, keypoints_2d, camera), target=lengths,
                                     frame_likelihood=frame_likelihood, person=person)
        else:
            pred = model(*model_inputs(model, keypoints_2d, camera))
    target = lengths if pred.ndim == 2 else lengths[:, None, :]
    loss = (pred.float() - target).abs().mean()
    if record is not None:
        record.append(float(loss.detach()))
    return loss + EVIDENCE_LOSS_WEIGHT * frame_loss.float() if evidence else loss


def people_from(person: torch.Tensor) -> torch.Tensor:
    """(B,) person ids of a micro-batch's rows, renumbered 0..P-1 in order of first appearance (sorted ids)."""
    return torch.unique_consecutive(person, return_inverse=True)[1]


class LengthEpochs(Trainer):
    """``-t length``'s pieces of the epoch loop (:class:`common.train.training.EpochLoop`): every process samples
    its share of the epoch's synthetic chunks; the main process evaluates with :class:`LengthEvaluator` (the
    replaceable piece: its :meth:`LengthEvaluator.evaluate` values are the history's evaluation series)."""

    train_keys = (("train", 1000.0),)  # synthetic-batch length error (the evidence model optimises more), m -> mm
    eval_keys = LengthEvaluator.keys
    timed = True

    def __init__(self, args: argparse.Namespace, ctx: distributed.DistContext, model: LengthModel,
                 optimizer: torch.optim.Optimizer, builder: SyntheticBatchBuilder, sampler: LengthSampler,
                 evaluator: LengthEvaluator | None) -> None:
        self.args, self.ctx, self.model, self.optimizer = args, ctx, model, optimizer
        self.builder, self.sampler, self.evaluator = builder, sampler, evaluator
        self.select_on = selection_key(args)
        self.train_model = distributed.wrap_model(model, ctx)
        self.order_gen = torch.Generator(device=ctx.device).manual_seed(args.seed)  # same on every rank
        self.sample_gen = torch.Generator(device=ctx.device).manual_seed(args.seed * 1000 + 1 + ctx.rank)
        self.streams = {"order": self.order_gen, "sample": self.sample_gen}
        self.batch_size = max(1, args.batch_size // ctx.world_size)
        self.precision = resolve_precision(args.precision, ctx.device,
                                           bf16_checked=isinstance(model, BoneLengthModel))
        self.micro_batch = resolve_micro_batch(args.micro_batch, self.batch_size,
                                               training_sample_bytes(model, args, self.precision),
                                               args.memory_budget)

    def batches(self, epoch: int) -> tuple[Iterable[SyntheticBatch], int]:
        ctx = self.ctx
        ids, flips = epoch_order(self.builder.num_chunks, self.args.data_augmentation, self.order_gen, ctx.device)
        per_rank = len(ids) // ctx.world_size
        if per_rank == 0:
            raise UserError(f"{len(ids)} chunks cannot feed {ctx.world_size} processes")
        ids = ids[ctx.rank::ctx.world_size][:per_rank]
        flips = flips[ctx.rank::ctx.world_size][:per_rank]
        starts = range(0, per_rank, self.batch_size)
        return (self.builder.sample(ids[first:first + self.batch_size], flips[first:first + self.batch_size],
                                    self.sampler, self.sample_gen) for first in starts), len(starts)

    def step(self, batch: SyntheticBatch) -> tuple[list[float], int]:
        camera = (drop_cameras(batch.camera, CAMERA_DROPOUT, self.sample_gen) if self.args.camera_input
                  else None)
        errors: list[float] = []  # the length error of each micro-batch (the optimised loss may add more)
        sizes: list[int] = []

        def micro_loss(rows: slice) -> torch.Tensor:
            sizes.append(len(batch.lengths[rows]))
            return length_loss(self.train_model, batch.keypoints_2d[rows], batch.lengths[rows], self.precision,
                               None if camera is None else camera[rows], record=errors,
                               frame_likelihood=None if batch.jittered is None else ~batch.jittered[rows],
                               person=None if batch.person is None else people_from(batch.person[rows]))

        optimizer_step(self.train_model, self.optimizer, len(batch.lengths), self.micro_batch, micro_loss)
        return [float(np.average(errors, weights=sizes))], len(batch.lengths)

    def evaluate(self) -> dict[str, float]:
        return self.evaluator.evaluate(self.model) if self.evaluator is not None else {}

    def log(self, record: EpochRecord, history: Mapping[str, Sequence[float]]) -> None:
        m = record.metrics
        print(f"[{record.epoch}] time {record.seconds / 60:.2f} min lr {record.lr:.6f} "
              f"train {history['train'][-1]:.2f} mm  val {m['val']:.2f} mm  "
              f"test {m['test']:.2f} mm  "
              f"synthetic test {m['synthetic_test']:.2f} mm"
              + ("" if math.isnan(m["synthetic_val"]) else f"  synthetic val {m['synthetic_val']:.2f} mm"))
        rows = format_learning_rows(m, self.evaluator.heldout_frames if self.evaluator is not None else None)
        if rows:
            print(rows)

    def checkpoint_entries(self) -> dict[str, Any]:
        return {"length_model_config": self.model.config(), "select_on": self.select_on,
                "length_convention": self.args.length_convention,
                **reference_state(self.evaluator)}

    def write_files(self, state: Mapping[str, Any], history: Mapping[str, Sequence[float]]) -> None:
        checkpoint_dir = Path(self.args.checkpoint)
        curves = {"train (synthetic)": history["train"], "val (held-out real 2D)": history["val"],
                  "test (real 2D)": history["test"], "test (synthetic lengths)": history["synthetic_test"]}
        save_history(checkpoint_dir, "length", history, curves if self.args.export_training_curves else None,
                     "bone-length error (mm)", "Bone-length model")
        if self.args.export_training_curves:
            plot_series({k: v for k, v in curves.items() if k != "train (synthetic)"},
                        checkpoint_dir / "length_time_to_accuracy.png", "wall time (min)",
                        "bone-length error (mm)", "Bone-length model: error against wall time",
                        x=[t / 60.0 for t in history["wall_s"]])


def _evaluate(args: argparse.Namespace, ctx: distributed.DistContext, dataset: PoseDataset,
              test_views: list[Sequence3D], samplers: tuple[LengthSampler, LengthSampler],
              train_subjects: list[str], test_subjects: list[str]) -> None:
    """``--evaluate``: the report of ``--length_model`` (or ``-r``) on the test subjects, beside the mean and the
    probe it stores (``samplers``: training, held-out people)."""
    source = args.length_model or args.resume
    if not source:
        raise UserError("-t length --evaluate needs --length_model <checkpoint> (or -r)")
    loaded = load_model(source, ("length",), bidirectional=args.bidirectional, num_layers=args.num_layers,
                        search=(Path(args.checkpoint),), device=ctx.device)
    mean, probe = stored_references(loaded.checkpoint)
    sampler, heldout_sampler = samplers
    evaluator = LengthEvaluator(dataset, [], test_views, train_subjects, heldout_sampler, args, ctx.device,
                                sampler.mean_lengths.cpu().numpy() if mean is None else mean, probe)
    if ctx.is_main:
        _print_final_report(evaluator, loaded.model, loaded.path.name, test_subjects, dataset.keypoints)


def train(args: argparse.Namespace, ctx: distributed.DistContext) -> None:
    """Train (or with ``--evaluate`` evaluate) the bone-length model in this process (``train.py`` runs it
    through :func:`common.utils.distributed.launch`); rank 0 evaluates, prints and writes files."""
    device = ctx.device
    if args.camera_input and length_arch(args) == "gru":
        raise UserError("--camera_input is an input of the proportion model's size branch: drop it for the GRU")
    if args.evidence_acceleration and length_arch(args) != "evidence":
        raise UserError("--evidence_acceleration is an input of the per-frame evidence: it needs --length_arch evidence")
    train_subjects, test_subjects, actions = prepare_run(args, ctx)

    dataset = load_dataset(args.data_dir, args.dataset, args.keypoints, need_3d=True,
                           subjects=sorted(set(train_subjects + test_subjects)))
    test_views = dataset.fetch(test_subjects, actions) if test_subjects else []
    sampler, heldout_sampler = make_sampler(args, dataset, train_subjects, device)
    checkpoint_dir = Path(args.checkpoint)

    if args.evaluate:
        _evaluate(args, ctx, dataset, test_views, (sampler, heldout_sampler), train_subjects, test_subjects)
        return

    train_views = training_views(dataset, train_subjects, actions, args)
    fit_views, val_views = split_validation(train_views, args.val_fraction, args.seed)
    if args.extra_motion and args.cameras == "dataset":  # training chunks only: the validation split stays the same
        fit_views = fit_views + extra_views(dataset, train_subjects, args, verbose=ctx.is_main)
    if selection_key(args) in ("val", "synthetic_val") and not val_views and not args.no_eval:
        raise UserError(f"--select_on {args.select_on} needs --val_fraction > 0 (held-out training sequences)")
    builder = SyntheticBatchBuilder(fit_views, args.chunk_len, args.segment_shift, device,
                                    translation_std=args.translation_std, noise_2d_px=args.noise_2d_px,
                                    placement=synthetic_placement(args), yaw=synthetic_yaw(args),
                                    limb_mix=args.limb_mix, jitter_chunks=args.jitter_chunks,
                                    person_chunks=args.person_chunks)

    # the probe: the proportion model's ensemble partner (the same on every rank) and the evaluation's reference
    evaluating = ctx.is_main and not args.no_eval
    probe = fit_probe(builder, sampler, args.seed) if evaluating or length_arch(args) != "gru" else None
    model = new_length_model(args, sampler.mean_lengths, probe).to(device)
    optimizer = make_optimizer(model.parameters(), args.learning_rate)
    evaluator = None
    if evaluating:
        evaluator = LengthEvaluator(dataset, val_views, test_views, train_subjects, heldout_sampler, args, device,
                                    sampler.mean_lengths.cpu().numpy(), probe)
    epochs = LengthEpochs(args, ctx, model, optimizer, builder, sampler, evaluator)
    loop = EpochLoop(epochs, args, ctx, model, [optimizer], epochs.streams)
    if args.resume:
        path = resolve_checkpoint(args.resume, checkpoint_dir)
        ckpt = load_checkpoint(path, device, kind="length")
        load_weights(model, model_state(ckpt, source=str(path)), str(path))
        loop.resume(ckpt, str(path))
    if ctx.is_main:
        print(f"INFO: {builder.num_chunks} training chunks of {args.chunk_len} frames from {len(fit_views)} "
              f"sequences ({len(val_views)} held out for validation), {ctx.world_size} process(es), "
              f"batch {epochs.batch_size} per process in micro-batches of {epochs.micro_batch}, "
              f"{epochs.precision}, lengths: {args.length_aug_type} ({synthetic_placement(args)} placement"
              f"{', turned about the vertical' if synthetic_yaw(args) else ''}), "
              f"model: {length_arch(args)} "
              f"({sum(p.numel() for p in model.parameters())} parameters)")
        if evaluator is not None and evaluator.test_targets is not None:
            print(f"INFO: always-predict-training-mean baseline on {','.join(test_subjects)}: "
                  f"{evaluator.baseline_per_bone().mean():.1f} mm")
    loop.run()

    if ctx.is_main and evaluator is not None and (checkpoint_dir / "epoch_best.bin").is_file():
        best_ckpt = load_checkpoint(checkpoint_dir / "epoch_best.bin", device)
        load_weights(model, best_ckpt["model_pos"], "epoch_best.bin")
        _print_final_report(evaluator, model, f"epoch_best (epoch {best_ckpt['epoch']}, on {selection_key(args)})",
                            test_subjects, dataset.keypoints)
