"""Bone-length adjustment of a lifter's predictions and its honest evaluation (the logic of ``bone_adjust.py``).

Inputs
------
* Predictions, either layout:

  - third-party pickles (VideoPose3D/BLAPose layout): ``action_dict.pkl`` = ``{category: [(subject, action),
    ...]}`` and ``prediction.pkl`` = list of ``(T, 17, 3)`` arrays in that order, each (subject, action)
    expanding to its 4 cameras in order. Read with the restricted unpickler.
  - an npz with key ``predictions`` -> ``{subject: {action: [4 x (T, 17, 3)]}}``.

  Poses are camera frame, metres; they are made root-relative (pelvis subtracted) before comparison.
* Ground truth: ``data_3d_<dataset>.npz`` (world frame, 32 or 17 joints), transformed to each camera's frame
  with the Human3.6M extrinsics and made root-relative (as the paper's ``bone_adjust.py --gt`` does).
* Lengths: ``lengths_dict.npz`` key ``lengths`` -> ``{subject: {action: [4 x (16,)]}}`` metres, or per frame
  ``(T, 16)`` from the causal model (``--causal``).

Everything after loading runs on the concatenated frames of all sequences: one adjustment call
(:func:`common.core.bones.adjust_bone_lengths`) and batched metrics (:mod:`common.adjustment.evaluation`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from common.core.bones import adjust_bone_lengths, bone_lengths
from common.core.camera import load_cameras
from common.datasets.dataset import _positions_17
from common.utils.errors import UserError
from common.adjustment.evaluation import EvaluationResult, evaluate_arrays
from common.core.bones import median_lengths
from common.utils.fileio import atomic_write, check_array, load_nested, load_pickle, save_npz, save_pickle
from common.core.metrics import action_category
from common.output.plots import plot_bone_length_series, pyplot, save_figure
from common.core.skeleton import NUM_BONES, NUM_JOINTS, PARENTS
from common.utils.validation import check_length_units, check_pose_units

Key = tuple[str, str, int]  # (subject, action, camera index)
NUM_CAMERAS = 4
# Frames seen by the causal length model at which --plot_frame_error evaluates (the paper's grid).
FRAME_GRID = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500]
VARIANTS = ("unadjusted", "adjusted (pred. lengths)", "adjusted (own median lengths)", "adjusted (GT lengths)")


def _name(key: Key) -> str:
    return f"{key[0]}/{key[1]} camera {key[2]}"


@dataclass
class Predictions:
    """Loaded predictions: keys[i] names poses[i] (T_i, 17, 3) metres, camera frame."""

    keys: list[Key]
    poses: list[np.ndarray]


def _check_pairs(action_dict, path) -> list[tuple[str, str]]:
    if not isinstance(action_dict, dict):
        raise UserError(f"{path}: expected a dict category -> [(subject, action), ...], "
                        f"got {type(action_dict).__name__}")
    pairs = []
    for category, items in action_dict.items():
        if not isinstance(items, (list, tuple)) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in items):
            raise UserError(f"{path}: entry {category!r} must be a list of (subject, action) string pairs")
        pairs += [(str(s), str(a)) for s, a in items]
    return pairs


def load_predictions(pred_path: str | Path, act_path: str | Path | None = None) -> Predictions:
    """Read predictions in the pickle layout (``pred_path`` .pkl + ``act_path``) or the npz layout."""
    pred_path = Path(pred_path)
    if pred_path.suffix == ".npz":
        data = load_nested(pred_path, "predictions", "subject -> action -> [4 arrays]")
        keys, poses = [], []
        for subject, actions in data.items():
            if not isinstance(actions, dict):
                raise UserError(f"{pred_path}: predictions[{subject!r}] must be a dict action -> [4 arrays]")
            for action, views in actions.items():
                if not isinstance(views, (list, tuple)) or len(views) != NUM_CAMERAS:
                    raise UserError(f"{pred_path}: {subject}/{action} must hold a list of {NUM_CAMERAS} camera "
                                    "arrays")
                for cam, pose in enumerate(views):
                    keys.append((str(subject), str(action), cam))
                    poses.append(pose)
    else:
        if act_path is None:
            raise UserError("--act (action_dict.pkl) is needed with predictions in the pickle layout")
        pairs = _check_pairs(load_pickle(act_path), act_path)
        poses = load_pickle(pred_path)
        if not isinstance(poses, (list, tuple)):
            raise UserError(f"{pred_path}: expected a list of (T, 17, 3) arrays, got {type(poses).__name__}")
        keys = [(s, a, c) for s, a in pairs for c in range(NUM_CAMERAS)]
        if len(poses) != len(keys):
            raise UserError(f"{pred_path} holds {len(poses)} sequences but {act_path} lists {len(pairs)} "
                            f"(subject, action) pairs x {NUM_CAMERAS} cameras = {len(keys)}")
    poses = [check_array(f"prediction {_name(k)}", p, (None, NUM_JOINTS, 3)) for k, p in zip(keys, poses)]
    if not keys:
        raise UserError(f"{pred_path}: no predictions")
    for key, pose in zip(keys, poses):
        check_pose_units(f"{pred_path} prediction {_name(key)}", pose, PARENTS)
    return Predictions(keys, poses)


PREDICTION_FILES = ("prediction.pkl", "action_dict.pkl")  # the third-party layout's two files


def write_predictions(out: str | Path, predictions: Mapping[str, Mapping[str, Sequence[np.ndarray]]],
                      layout: str = "pkl") -> list[Path]:
    """Write a user's predictions so ``bone_adjust.py`` (and the paper's tools) can read them.

    predictions: ``{subject: {action: [4 x (T, 17, 3)]}}`` metres, camera frame (cameras in Human3.6M order
    54138969, 55011271, 58860488, 60457274), root-relative or not.
    layout ``'pkl'``: ``out`` is a folder; writes ``out/prediction.pkl`` and ``out/action_dict.pkl``
    (categories = action name up to the first space, in first-seen order).
    layout ``'npz'``: ``out`` is a file; writes key ``predictions`` with the dict as given.
    Returns the written paths.
    """
    checked: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, actions in predictions.items():
        checked[subject] = {}
        for action, views in actions.items():
            if len(views) != NUM_CAMERAS:
                raise UserError(f"{subject}/{action}: expected {NUM_CAMERAS} camera arrays, got {len(views)}")
            checked[subject][action] = [check_array(_name((subject, action, c)), v, (None, NUM_JOINTS, 3))
                                        for c, v in enumerate(views)]
    out = Path(out)
    if layout == "npz":
        save_npz(out, predictions=checked)
        return [out]
    if layout != "pkl":
        raise UserError(f"unknown predictions layout {layout!r}: use pkl or npz")
    action_dict: dict[str, list[tuple[str, str]]] = OrderedDict()
    for subject, actions in checked.items():
        for action in actions:
            action_dict.setdefault(action_category(action), []).append((subject, action))
    poses = [v for pairs in action_dict.values() for s, a in pairs for v in checked[s][a]]
    paths = [out / name for name in PREDICTION_FILES]
    save_pickle(paths[0], poses)
    save_pickle(paths[1], dict(action_dict))
    return paths


def load_ground_truth(gt_path: str | Path, keys: Sequence[Key], camera_file: str | Path | None = None
                      ) -> list[np.ndarray]:
    """Root-relative camera-frame ground truth (T, 17, 3) metres for every key, from ``data_3d_<d>.npz``."""
    gt_path = Path(gt_path)
    raw = load_nested(gt_path, "positions_3d", "subject -> action -> array")
    cameras = load_cameras(camera_file)
    world: dict[tuple[str, str], np.ndarray] = {}
    out = []
    for key in keys:
        subject, action, cam = key
        if subject not in raw or action not in raw[subject]:
            raise UserError(f"prediction {_name(key)}: {subject}/{action} is not in the ground truth {gt_path}")
        if subject not in cameras or cam >= len(cameras[subject]):
            raise UserError(f"prediction {_name(key)}: no camera parameters for it")
        if (subject, action) not in world:
            world[(subject, action)] = _positions_17(f"{gt_path.name} {subject}/{action}", raw[subject][action])
            check_pose_units(f"{gt_path} {subject}/{action}", world[(subject, action)], PARENTS)
        pose = cameras[subject][cam].world_to_camera(world[(subject, action)]).astype(np.float32)
        out.append(pose - pose[:, :1])
    return out


def load_lengths(bone_path: str | Path, keys: Sequence[Key], frames: Sequence[int], causal: bool
                 ) -> list[np.ndarray]:
    """Predicted bone lengths per key: (16,) metres, or (T, 16) per frame with ``causal``."""
    bone_path = Path(bone_path)
    table = load_nested(bone_path, "lengths", "subject -> action -> [4 arrays]")
    out = []
    for key, n in zip(keys, frames):
        subject, action, cam = key
        try:
            lengths = table[subject][action][cam]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{bone_path}: no lengths for {_name(key)} "
                            "(run length_model_inference.py for these subjects)") from None
        lengths = np.asarray(lengths)
        if causal:
            if lengths.shape == (NUM_BONES,):
                raise UserError(f"{bone_path}: lengths of {_name(key)} are one (16,) vector per sequence; "
                                "--causal needs per-frame lengths from length_model_inference.py --causal")
            out.append(check_array(f"{bone_path.name} {_name(key)}", lengths, (n, NUM_BONES)))
        else:
            if lengths.ndim == 2:
                raise UserError(f"{bone_path}: lengths of {_name(key)} are per frame {lengths.shape}; "
                                "pass --causal")
            out.append(check_array(f"{bone_path.name} {_name(key)}", lengths, (NUM_BONES,)))
        check_length_units(f"{bone_path} {_name(key)}", out[-1])
    return out


def _check_frame_counts(predictions: Predictions, ground_truth: Sequence[np.ndarray]) -> None:
    for key, pred, gt in zip(predictions.keys, predictions.poses, ground_truth):
        if len(pred) != len(gt):
            raise UserError(f"prediction {_name(key)} has {len(pred)} frames but the ground truth has {len(gt)} "
                            "(predictions must follow action_dict order, 4 cameras per action)")


# A prediction is mis-paired when another sequence's ground truth is this much closer than its own.
PAIRING_RATIO = 0.5


def check_pairing(predictions: Predictions, ground_truth: Sequence[np.ndarray], samples: int = 64) -> None:
    """Catch predictions paired with the wrong ground truth although the frame counts agree (an action_dict
    whose categories are in another order than prediction.pkl's, cameras swapped): among sequences of equal
    length, a prediction whose root-relative poses are closer than :data:`PAIRING_RATIO` x its own error to
    *another* sequence's ground truth, while its own ground truth is also that much closer to *another*
    prediction (RMS joint distance on ``samples`` evenly spaced frames), is a one-line error. A poor lifter
    (even one that outputs a constant pose) fails the second half; on the demo job's lifter the nearest
    other pairing is >= 1.1x its own error, a mis-ordered action_dict ~0.2x. ground_truth: root-relative
    (T, 17, 3) metres per key."""
    groups: dict[int, list[int]] = {}
    for i, pose in enumerate(predictions.poses):
        groups.setdefault(len(pose), []).append(i)
    for frames, members in groups.items():
        if len(members) < 2:
            continue
        pick = np.unique(np.linspace(0, frames - 1, min(frames, samples)).round().astype(np.int64))
        pred = np.stack([predictions.poses[i][pick] - predictions.poses[i][pick, :1] for i in members])
        gt = np.stack([ground_truth[i][pick] for i in members])
        dist = torch.cdist(torch.from_numpy(pred.reshape(len(members), -1)).double(),
                           torch.from_numpy(gt.reshape(len(members), -1)).double()) / np.sqrt(pick.size * NUM_JOINTS)
        own = dist.diagonal().clone()
        dist.fill_diagonal_(float("inf"))
        best, other = dist.min(dim=1)  # prediction i vs the other ground truths
        best_for_gt = dist.min(dim=0).values  # ground truth i vs the other predictions
        # both ways: a lifter that outputs nearly the same pose for everything fits some other ground truth
        # better, but then no other prediction fits its own ground truth better
        wrong = torch.nonzero((best < PAIRING_RATIO * own) & (best_for_gt < PAIRING_RATIO * own)).flatten()
        if len(wrong):
            i, j = int(wrong[0]), int(other[wrong[0]])
            raise UserError(
                f"prediction {_name(predictions.keys[members[i]])} is much closer to the ground truth of "
                f"{_name(predictions.keys[members[j]])} ({best[i] * 1000:.0f} mm RMS) than to its own "
                f"({own[i] * 1000:.0f} mm), as are {len(wrong) - 1} other(s): predictions and action_dict are "
                "paired in different orders (prediction.pkl must follow action_dict.pkl, 4 cameras per action)")


def check_against_ground_truth(predictions: Predictions, ground_truth: Sequence[np.ndarray]) -> None:
    """One-line error naming the first sequence whose frame count differs from its ground truth, or that is
    paired with the wrong ground truth (:func:`check_pairing`)."""
    _check_frame_counts(predictions, ground_truth)
    check_pairing(predictions, ground_truth)


@dataclass
class AdjustmentData:
    """Concatenated frames of all sequences. pred, gt: (N, 17, 3) root-relative metres; lengths,
    gt_lengths: (N, 16) metres per frame; offsets (S + 1,); actions (S,); keys (S,)."""

    keys: list[Key]
    actions: list[str]
    offsets: np.ndarray
    pred: torch.Tensor
    gt: torch.Tensor
    lengths: torch.Tensor | None
    own_lengths: torch.Tensor
    gt_lengths: torch.Tensor
    sequence_lengths: list[np.ndarray] | None  # per sequence: (16,) or (T, 16) as loaded


def prepare(predictions: Predictions, ground_truth: Sequence[np.ndarray],
            lengths: Sequence[np.ndarray] | None) -> AdjustmentData:
    """Concatenate everything; the ground-truth lengths of a sequence are the mean of its per-frame GT lengths
    (the best single length vector for it, hence the bound of what adjustment can give); the *own* lengths of a
    sequence are the lifter's own per-bone median over it, left/right averaged (the trivial length source that
    needs no model, :func:`common.core.bones.median_lengths`)."""
    _check_frame_counts(predictions, ground_truth)
    frames = np.array([len(p) for p in predictions.poses])
    offsets = np.concatenate([[0], np.cumsum(frames)]).astype(np.int64)
    pred = torch.from_numpy(np.concatenate(predictions.poses))
    pred = pred - pred[:, :1]
    gt = torch.from_numpy(np.concatenate(ground_truth))
    seq_index = torch.from_numpy(np.repeat(np.arange(len(frames)), frames))
    per_frame_gt = bone_lengths(gt)
    sums = torch.zeros(len(frames), NUM_BONES, dtype=torch.float64).index_add_(0, seq_index, per_frame_gt.double())
    gt_lengths = (sums / torch.from_numpy(frames)[:, None]).float()[seq_index]
    own = np.stack([median_lengths(p) for p in predictions.poses])  # one (16,) per sequence
    own_lengths = torch.from_numpy(own)[seq_index]
    per_frame = None
    if lengths is not None:
        per_frame = torch.from_numpy(np.concatenate([np.broadcast_to(np.asarray(l, np.float32), (n, NUM_BONES))
                                                     for l, n in zip(lengths, frames)]))
    return AdjustmentData(predictions.keys, [k[1] for k in predictions.keys], offsets, pred, gt, per_frame,
                          own_lengths, gt_lengths, list(lengths) if lengths is not None else None)


def evaluate_adjustment(data: AdjustmentData, device: torch.device | str = "cpu", progress: bool = True
                        ) -> dict[str, EvaluationResult]:
    """Metrics (with per-bone length errors) of the unadjusted poses, the poses adjusted with the predicted
    lengths (when given), with the lifter's own median lengths and with the ground-truth lengths. Keys:
    :data:`VARIANTS`."""
    pred = data.pred.to(device)
    gt = data.gt.to(device)
    variants = {VARIANTS[0]: pred}
    if data.lengths is not None:
        variants[VARIANTS[1]] = adjust_bone_lengths(pred, data.lengths.to(device))
    variants[VARIANTS[2]] = adjust_bone_lengths(pred, data.own_lengths.to(device))
    variants[VARIANTS[3]] = adjust_bone_lengths(pred, data.gt_lengths.to(device))
    return {name: evaluate_arrays(data.actions, poses, gt, data.offsets, per_bone=True)
            for name, poses in tqdm(variants.items(), desc="evaluate", leave=False, disable=not progress)}


def frame_error_curve(data: AdjustmentData, grid: Sequence[int] = FRAME_GRID,
                      device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Errors after adjusting every sequence with the causal model's lengths after f frames (f in ``grid``;
    sequences shorter than f use their last frame's lengths). Returns {'frames', metric: (len(grid),)}."""
    if data.sequence_lengths is None or data.sequence_lengths[0].ndim != 2:
        raise UserError("--plot_frame_error needs per-frame (causal) lengths")
    frames = np.diff(data.offsets)
    grid = [f for f in grid if f <= frames.max()] or [int(frames.max())]
    names = ("MPJPE", "P-MPJPE", "MPJVE", "BoneLenErr")
    curve: dict[str, list[float]] = {n: [] for n in names}
    stacked = torch.from_numpy(np.concatenate(data.sequence_lengths))
    pred, gt = data.pred.to(device), data.gt.to(device)
    seq_index = torch.from_numpy(np.repeat(np.arange(len(frames)), frames))
    for f in tqdm(grid, desc="frames seen", leave=False):
        pick = torch.from_numpy(data.offsets[:-1] + np.minimum(f, frames) - 1)
        lengths = stacked[pick][seq_index].to(device)
        result = evaluate_arrays(data.actions, adjust_bone_lengths(pred, lengths), gt, data.offsets, names)
        for n in names:
            curve[n].append(result.average[n])
    return {"frames": np.array(grid), **{n: np.array(v) for n, v in curve.items()}}


def save_frame_error(curve: Mapping[str, np.ndarray], png: str | Path, csv_path: str | Path) -> None:
    """Write the frame-error curve as CSV (frames, metrics) and a PNG with one panel per metric."""
    names = [n for n in curve if n != "frames"]
    lines = ["frames," + ",".join(names)] + [
        f"{int(f)}," + ",".join(f"{curve[n][i]:.3f}" for n in names) for i, f in enumerate(curve["frames"])]
    atomic_write(csv_path, lambda fh: fh.write(("\n".join(lines) + "\n").encode()))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5))
    for ax, n in zip(np.atleast_1d(axes), names):
        ax.plot(curve["frames"], curve[n], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("frames seen by the causal length model")
        ax.set_title(f"{n} ({'mm/frame' if n == 'MPJVE' else 'mm'})")
        ax.grid(alpha=0.3, which="both")
    save_figure(fig, png)


def parse_sequence(text: str) -> Key:
    """``'S9/Walking 1/0'`` -> ``('S9', 'Walking 1', 0)``."""
    parts = text.split("/")
    if len(parts) != 3 or not parts[2].strip().isdigit():
        raise UserError(f"--plot_sequence expects <subject>/<action>/<camera index>, got {text!r}")
    return parts[0], parts[1], int(parts[2])


def sequence_plot_name(key: Key) -> str:
    """File name of ``bone_adjust.py --plot_sequence``'s figure of one sequence."""
    return "bone_lengths_" + "_".join(str(x) for x in key).replace(" ", "-") + ".png"


def check_sequence_key(keys: Sequence[Key], key: Key) -> None:
    """UserError unless ``key`` is one of the predictions' (subject, action, camera) keys."""
    if key not in keys:
        actions = sorted({f"{s}/{a}" for s, a, _ in keys if s == key[0]}) or sorted({s for s, _, _ in keys})
        raise UserError(f"--plot_sequence {key[0]}/{key[1]}/{key[2]}: no such prediction (available: "
                        f"{', '.join(actions[:8])}{' ...' if len(actions) > 8 else ''}; cameras 0-3)")


def plot_sequence(data: AdjustmentData, key: Key, path: str | Path) -> Path:
    """Per-frame bone lengths (mm) of one sequence: unadjusted prediction, adjusted, ground truth; PNG."""
    check_sequence_key(data.keys, key)
    i = data.keys.index(key)
    frames = slice(int(data.offsets[i]), int(data.offsets[i + 1]))
    series = {"unadjusted": bone_lengths(data.pred[frames]).numpy(),
              "ground truth": bone_lengths(data.gt[frames]).numpy()}
    if data.lengths is not None:
        series["adjusted (pred. lengths)"] = bone_lengths(adjust_bone_lengths(
            data.pred[frames], data.lengths[frames])).numpy()
    return plot_bone_length_series(series, path, title=f"bone lengths per frame: {_name(key)}")
