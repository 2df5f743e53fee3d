"""Pose-estimation metrics, per frame, batched (torch or numpy in, same kind out).

Every function takes predicted and target poses ``(..., 17, 3)`` in the same units (metres inside; reports
multiply by 1000 for millimetres) and returns one value per frame, shape ``(...)``; averaging is the
caller's (see :func:`action_average` for the Human3.6M protocol: frame-weighted within an action category,
then the mean over categories).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np
import torch

from common.core.bones import bone_directions, bone_lengths
from common.core.skeleton import SYMMETRIC_BONES, Array


def _as_tensor(x: Array) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.from_numpy(np.asarray(x, dtype=np.float64)), True


def _numpy_out(t: torch.Tensor, was_numpy: bool) -> Array:
    return t.detach().cpu().numpy() if was_numpy else t


def mpjpe(pred: Array, target: Array) -> Array:
    """Protocol #1: mean Euclidean joint error per frame. (..., J, 3) x2 -> (...)."""
    p, np_in = _as_tensor(pred)
    t, _ = _as_tensor(target)
    return _numpy_out(torch.linalg.vector_norm(p - t.to(p.dtype), dim=-1).mean(dim=-1), np_in)


def procrustes_align(pred: Array, target: Array) -> Array:
    """Align ``pred`` to ``target`` per frame with the similarity transform (rotation, scale, translation)
    minimising the squared error; reflections are excluded. (..., J, 3) x2 -> aligned pred (..., J, 3).

    One batched SVD over all frames, computed in float64.
    """
    p, np_in = _as_tensor(pred)
    t, _ = _as_tensor(target)
    dtype = p.dtype
    p64, t64 = p.double(), t.double()
    mu_p, mu_t = p64.mean(dim=-2, keepdim=True), t64.mean(dim=-2, keepdim=True)
    p0, t0 = p64 - mu_p, t64 - mu_t
    norm_p = torch.linalg.vector_norm(p0, dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    norm_t = torch.linalg.vector_norm(t0, dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    p0, t0 = p0 / norm_p, t0 / norm_t
    h = t0.transpose(-1, -2) @ p0  # (..., 3, 3)
    u, s, vh = torch.linalg.svd(h)
    v = vh.transpose(-1, -2)
    # Correct a reflection: flip the axis of the smallest singular value when det(V U^T) < 0.
    sign = torch.sign(torch.linalg.det(v @ u.transpose(-1, -2)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    v = torch.cat([v[..., :2], v[..., 2:] * sign[..., None, None]], dim=-1)
    s = torch.cat([s[..., :2], s[..., 2:] * sign[..., None]], dim=-1)
    rot = v @ u.transpose(-1, -2)  # pred rows @ rot -> target frame
    scale = s.sum(dim=-1)[..., None, None] * norm_t / norm_p
    aligned = scale * (p64 - mu_p) @ rot + mu_t
    return _numpy_out(aligned.to(dtype), np_in)


def p_mpjpe(pred: Array, target: Array) -> Array:
    """Protocol #2: MPJPE after per-frame Procrustes alignment with scale. (..., J, 3) x2 -> (...)."""
    return mpjpe(procrustes_align(pred, target), target)


def n_mpjpe(pred: Array, target: Array) -> Array:
    """MPJPE after the per-frame least-squares scale of ``pred`` (no rotation, no translation)."""
    p, np_in = _as_tensor(pred)
    t, _ = _as_tensor(target)
    t = t.to(p.dtype)
    scale = (p * t).sum(dim=(-2, -1), keepdim=True) / (p * p).sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return _numpy_out(mpjpe(scale * p, t), np_in)


def mpjve(pred: Array, target: Array) -> Array:
    """Mean per-joint velocity error: MPJPE of first differences along time (axis -3), per frame step.

    (..., T, J, 3) x2 -> (..., T - 1), in the poses' units per frame (multiply by the frame rate for per second).
    """
    p, np_in = _as_tensor(pred)
    t, _ = _as_tensor(target)
    return _numpy_out(mpjpe(torch.diff(p, dim=-3), torch.diff(t.to(p.dtype), dim=-3)), np_in)


def bone_length_error(pred: Array, target: Array) -> Array:
    """Mean absolute bone-length difference over the 16 bones, per frame. Poses (..., 17, 3) x2 -> (...)."""
    return _mean_abs(bone_lengths(pred), bone_lengths(target))


def length_error(pred_lengths: Array, target_lengths: Array) -> Array:
    """Mean absolute difference of bone-length vectors ``(..., 16)`` -> ``(...)``."""
    return _mean_abs(pred_lengths, target_lengths)


def symmetry_error(lengths: np.ndarray) -> np.ndarray:
    """Mean |left - right| over the 6 symmetric bone pairs, per row of bone lengths (..., 16) -> (...)."""
    left, right = zip(*SYMMETRIC_BONES)
    return np.abs(lengths[..., list(left)] - lengths[..., list(right)]).mean(axis=-1)


def _mean_abs(a: Array, b: Array) -> Array:
    if isinstance(a, torch.Tensor):
        return (a - torch.as_tensor(b, dtype=a.dtype, device=a.device)).abs().mean(dim=-1)
    return np.abs(np.asarray(a) - np.asarray(b)).mean(axis=-1)


def bone_direction_error(pred: Array, target: Array) -> Array:
    """Mean angle (degrees) between predicted and true unit bone directions, per frame. (..., 17, 3) x2 -> (...)."""
    p, np_in = _as_tensor(pred)
    t, _ = _as_tensor(target)
    cos = (bone_directions(p) * bone_directions(t.to(p.dtype))).sum(dim=-1).clamp(-1.0, 1.0)
    return _numpy_out(torch.rad2deg(torch.arccos(cos)).mean(dim=-1), np_in)


def direction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Training loss on bone directions: mean Euclidean distance between unit bone vectors (scalar tensor)."""
    return torch.linalg.vector_norm(bone_directions(pred) - bone_directions(target), dim=-1).mean()


def action_category(action: str) -> str:
    """Human3.6M action category: ``'Walking 1'`` -> ``'Walking'``."""
    return action.split(" ")[0]


def action_average(per_frame: Iterable[tuple[str, np.ndarray]]) -> tuple[dict[str, float], float]:
    """Human3.6M aggregation: frame-weighted mean within each action category, then mean over categories.

    per_frame: iterable of ``(action name, per-frame errors (T,))``. Returns ({category: mean}, overall mean).
    """
    sums: defaultdict[str, float] = defaultdict(float)
    counts: defaultdict[str, int] = defaultdict(int)
    for action, errors in per_frame:
        errors = np.asarray(errors, dtype=np.float64).reshape(-1)
        cat = action_category(action)
        sums[cat] += float(errors.sum())
        counts[cat] += errors.size
    per_action = {cat: sums[cat] / counts[cat] for cat in sorted(sums) if counts[cat] > 0}
    overall = float(np.mean(list(per_action.values()))) if per_action else float("nan")
    return per_action, overall
