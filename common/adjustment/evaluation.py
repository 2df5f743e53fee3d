"""Per-action evaluation of 3D pose predictions (Human3.6M protocol), shared by pose/mix training and
``bone_adjust.py``.

All metrics are computed for every frame of every sequence in a few batched calls over the concatenated
frames (Procrustes is one batched SVD per block of frames), then aggregated with
:func:`common.core.metrics.action_average`: frame-weighted within an action category, then the mean over categories.

Reported units: MPJPE, P-MPJPE, N-MPJPE, bone-length error in millimetres; MPJVE in millimetres per frame;
bone-direction error in degrees.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from common.core import metrics
from common.core.bones import bone_lengths
from common.utils.fileio import atomic_write
from common.core.skeleton import BONE_NAMES

# metric name -> (per-frame function of (pred, gt), scale to report units, unit)
METRICS = {
    "MPJPE": (metrics.mpjpe, 1000.0, "mm"),
    "P-MPJPE": (metrics.p_mpjpe, 1000.0, "mm"),
    "N-MPJPE": (metrics.n_mpjpe, 1000.0, "mm"),
    "MPJVE": (metrics.mpjve, 1000.0, "mm/frame"),
    "BoneLenErr": (metrics.bone_length_error, 1000.0, "mm"),
    "BoneDirErr": (metrics.bone_direction_error, 1.0, "deg"),
}
DEFAULT_METRICS = tuple(METRICS)
_BLOCK = 1 << 13  # frames per batched metric call (bounds memory; small enough to stay in cache)


@dataclass
class EvaluationResult:
    """Aggregated errors. per_action[metric][category] and average[metric] in report units;
    per_bone[category] (16,) and per_bone_average (16,): bone-length error of each bone, mm (when computed)."""

    per_action: dict[str, dict[str, float]]
    average: dict[str, float]
    per_bone: dict[str, np.ndarray] = field(default_factory=dict)
    per_bone_average: np.ndarray | None = None
    frames: int = 0

    @property
    def actions(self) -> list[str]:
        first = next(iter(self.per_action.values()), {})
        return list(first)


def _blocked(fn, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(pred[i:i + _BLOCK], gt[i:i + _BLOCK]) for i in range(0, len(pred), _BLOCK)])


def frame_errors(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, offsets: np.ndarray,
                 metric_names: Sequence[str] = DEFAULT_METRICS) -> dict[str, np.ndarray]:
    """Per-frame errors of concatenated sequences, in report units.

    pred, gt: (N, 17, 3) metres, same frame, root-relative; offsets: (S + 1,) sequence boundaries (0, ..., N).
    Returns {metric: (N,)}; MPJVE has one value per frame step inside each sequence, (N - S,).
    """
    p = torch.as_tensor(pred, dtype=torch.float32)
    g = torch.as_tensor(gt, dtype=torch.float32)
    out = {}
    for name in metric_names:
        fn, scale, _ = METRICS[name]
        if name == "MPJVE":
            steps = _blocked(metrics.mpjpe, torch.diff(p, dim=0), torch.diff(g, dim=0))
            keep = torch.ones(len(steps), dtype=torch.bool)
            keep[torch.as_tensor(offsets[1:-1] - 1, dtype=torch.long)] = False  # steps across sequences
            values = steps[keep]
        else:
            values = _blocked(fn, p, g)
        out[name] = values.double().numpy() * scale
    return out


def _split(values: np.ndarray, offsets: np.ndarray, velocity: bool) -> list[np.ndarray]:
    """Split concatenated per-frame values back into sequences (velocity values have T - 1 per sequence)."""
    lengths = np.diff(offsets) - (1 if velocity else 0)
    return np.split(values, np.cumsum(lengths)[:-1])


def evaluate_arrays(actions: Sequence[str], pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor,
                    offsets: np.ndarray, metric_names: Sequence[str] = DEFAULT_METRICS,
                    per_bone: bool = False) -> EvaluationResult:
    """Evaluate concatenated sequences: actions[i] names sequence i = frames offsets[i]:offsets[i + 1].

    pred, gt: (N, 17, 3) metres, camera frame, root-relative (joint 0 at the origin).
    """
    errors = frame_errors(pred, gt, offsets, metric_names)
    per_action: dict[str, dict[str, float]] = {}
    average: dict[str, float] = {}
    for name, values in errors.items():
        per_action[name], average[name] = metrics.action_average(
            zip(actions, _split(values, offsets, name == "MPJVE")))
    result = EvaluationResult(per_action, average, frames=int(offsets[-1]))
    if per_bone:
        diff = (bone_lengths(torch.as_tensor(pred, dtype=torch.float32))
                - bone_lengths(torch.as_tensor(gt, dtype=torch.float32))).abs().double().numpy() * 1000.0
        per_seq = _split(diff, offsets, False)
        bones = [metrics.action_average((a, d[:, b]) for a, d in zip(actions, per_seq)) for b in range(diff.shape[1])]
        result.per_bone = {cat: np.array([b[0][cat] for b in bones]) for cat in bones[0][0]}
        result.per_bone_average = np.array([b[1] for b in bones])
    return result


def evaluate(sequences: Sequence[tuple[str, np.ndarray, np.ndarray]], metric_names: Sequence[str] = DEFAULT_METRICS,
             per_bone: bool = False) -> EvaluationResult:
    """Evaluate ``[(action name, pred (T, 17, 3), gt (T, 17, 3)), ...]`` (metres, root-relative)."""
    actions = [s[0] for s in sequences]
    offsets = np.concatenate([[0], np.cumsum([len(s[1]) for s in sequences])]).astype(np.int64)
    pred = np.concatenate([np.asarray(s[1], dtype=np.float32) for s in sequences])
    gt = np.concatenate([np.asarray(s[2], dtype=np.float32) for s in sequences])
    return evaluate_arrays(actions, pred, gt, offsets, metric_names, per_bone)


def _unit(name: str) -> str:
    return METRICS[name][2]


def format_table(results: Mapping[str, EvaluationResult], per_action: bool = False,
                 title: str = "action-wise average") -> str:
    """A printable table: one row per result (e.g. unadjusted / adjusted), one column per metric.

    With ``per_action``, the same table is printed for each action category before the average."""
    first = next(iter(results.values()))
    names = list(first.average)
    label_width = max(12, max(len(k) for k in results))
    header = f"{'':{label_width}} " + " ".join(f"{n + ' (' + _unit(n) + ')':>18}" for n in names)

    def block(heading: str, pick) -> list[str]:
        lines = [f"-- {heading} --", header]
        for label, res in results.items():
            lines.append(f"{label:{label_width}} " + " ".join(f"{pick(res, n):18.1f}" for n in names))
        return lines

    lines: list[str] = []
    if per_action:
        for action in first.actions:
            lines += block(action, lambda r, n, a=action: r.per_action[n][a])
    lines += block(title, lambda r, n: r.average[n])
    return "\n".join(lines)


BONE_TABLE_TITLE = "bone-length error per bone (mm, action-wise average)"


def bone_columns(results: Mapping[str, EvaluationResult]) -> dict[str, np.ndarray]:
    """Name -> per-bone length error (16,) mm (action-wise average) of the results that computed it."""
    return {k: r.per_bone_average for k, r in results.items() if r.per_bone_average is not None}


def format_bone_table(columns: Mapping[str, np.ndarray], title: str | None = None) -> str:
    """Text table of per-bone values (e.g. errors in mm): one row per bone of :data:`common.core.skeleton.BONE_NAMES`
    and a final mean row, one column per name (each (16,)); an optional ``-- title --`` line first."""
    widths = [max(8, len(k) + 2) for k in columns]
    lines = [f"-- {title} --"] if title else []
    lines.append(f"{'bone':14}" + "".join(f"{k:>{w}}" for k, w in zip(columns, widths)))
    for b, name in enumerate(BONE_NAMES):
        lines.append(f"{name:14}" + "".join(f"{v[b]:{w}.1f}" for v, w in zip(columns.values(), widths)))
    lines.append(f"{'mean':14}" + "".join(f"{np.mean(v):{w}.1f}" for v, w in zip(columns.values(), widths)))
    return "\n".join(lines)


def write_csv(path: str | Path, results: Mapping[str, EvaluationResult]) -> None:
    """Write ``result.csv`` atomically: columns action, variant, then each metric (with unit); one row per
    (action category, variant) and the ``Average`` rows; per-bone columns when computed."""
    first = next(iter(results.values()))
    names = list(first.average)
    with_bones = all(r.per_bone_average is not None for r in results.values())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["action", "variant"] + [f"{n} ({_unit(n)})" for n in names]
                    + ([f"len_{b} (mm)" for b in BONE_NAMES] if with_bones else []))
    for action in first.actions + ["Average"]:
        for label, res in results.items():
            if action == "Average":
                row = [res.average[n] for n in names]
                bones = res.per_bone_average if with_bones else []
            else:
                row = [res.per_action[n][action] for n in names]
                bones = res.per_bone[action] if with_bones else []
            writer.writerow([action, label] + [f"{v:.2f}" for v in row] + [f"{v:.2f}" for v in bones])
    atomic_write(path, lambda fh: fh.write(buffer.getvalue().encode()))
