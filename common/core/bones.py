"""Bones of the 17-joint skeleton: split poses into bone directions and lengths, and recompose them.

All functions work on torch tensors and numpy arrays, on any leading batch shape (e.g. ``(B, T, ...)``),
without Python loops over frames or joints: recomposition is one matrix product with the skeleton's
joint-by-bone ancestry matrix.
"""
from __future__ import annotations

import numpy as np
import torch

from common.core.skeleton import (ANCESTOR_BONES, BONE_CHILDREN, BONE_PARENTS, NUM_BONES, NUM_JOINTS, SYMMETRIC_BONES,
                             Array)

_EPS = 1e-8


def _check_joints(poses: Array) -> None:
    if poses.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected poses of shape (..., {NUM_JOINTS}, 3), got {tuple(poses.shape)}")


def bone_vectors(poses: Array) -> Array:
    """poses: (..., 17, 3) -> bone vectors (..., 16, 3), child minus parent, same units and frame."""
    _check_joints(poses)
    if isinstance(poses, torch.Tensor):  # index_select is several times faster than advanced indexing
        children = torch.as_tensor(BONE_CHILDREN, device=poses.device)
        parents = torch.as_tensor(BONE_PARENTS, device=poses.device)
        return poses.index_select(-2, children) - poses.index_select(-2, parents)
    return poses[..., BONE_CHILDREN, :] - poses[..., BONE_PARENTS, :]


def bone_lengths(poses: Array) -> Array:
    """poses: (..., 17, 3) -> bone lengths (..., 16), same units as the poses."""
    vectors = bone_vectors(poses)
    if isinstance(vectors, torch.Tensor):
        return torch.linalg.vector_norm(vectors, dim=-1)
    return np.linalg.norm(vectors, axis=-1)


def bone_directions(poses: Array) -> Array:
    """poses: (..., 17, 3) -> unit bone directions (..., 16, 3); a zero-length bone gives a zero vector."""
    vectors = bone_vectors(poses)
    if isinstance(vectors, torch.Tensor):
        norms = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        return vectors / norms.clamp_min(_EPS)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, _EPS)


def decompose(poses: Array) -> tuple[Array, Array]:
    """poses: (..., 17, 3) -> (bone_directions (..., 16, 3), bone_lengths (..., 16))."""
    return bone_directions(poses), bone_lengths(poses)


def recompose(directions: Array, lengths: Array | np.ndarray) -> Array:
    """Rebuild root-relative poses from bone directions and lengths along the kinematic tree.

    directions: (..., 16, 3) (unit vectors; any scale is used as given); lengths: (..., 16), broadcast
    against the directions' leading dims (e.g. one ``(B, 1, 16)`` length vector for a whole sequence).
    Returns (..., 17, 3) with the pelvis at the origin, in the directions' frame and the lengths' units.
    """
    if directions.shape[-2:] != (NUM_BONES, 3):
        raise ValueError(f"expected directions of shape (..., {NUM_BONES}, 3), got {tuple(directions.shape)}")
    if lengths.shape[-1] != NUM_BONES:
        raise ValueError(f"expected lengths of shape (..., {NUM_BONES}), got {tuple(lengths.shape)}")
    if isinstance(directions, torch.Tensor):
        lengths = torch.as_tensor(lengths, dtype=directions.dtype, device=directions.device)
        ancestry = torch.as_tensor(ANCESTOR_BONES, dtype=directions.dtype, device=directions.device)
        return torch.matmul(ancestry, directions * lengths.unsqueeze(-1))
    vectors = directions * np.asarray(lengths)[..., None]
    return np.matmul(ANCESTOR_BONES.astype(vectors.dtype), vectors)


def final_lengths(lengths: Array) -> Array:
    """The estimate after the whole sequence: (16,) as given, or the last row of per-frame (T, 16) lengths (a
    causal length model's, row t after frames 0..t)."""
    return lengths[-1] if lengths.ndim == 2 else lengths


def average_symmetric(lengths: Array) -> Array:
    """Replace each left/right bone pair by its mean. lengths: (..., 16) -> (..., 16), a new array."""
    out = lengths.clone() if isinstance(lengths, torch.Tensor) else np.array(lengths, copy=True)
    left = [a for a, _ in SYMMETRIC_BONES]
    right = [b for _, b in SYMMETRIC_BONES]
    mean = (lengths[..., left] + lengths[..., right]) / 2
    out[..., left] = mean
    out[..., right] = mean
    return out


def adjust_bone_lengths(poses: Array, lengths: Array | np.ndarray) -> Array:
    """BLAPose adjustment: keep each bone's direction in ``poses`` and give it the length in ``lengths``.

    poses: (..., 17, 3) root-relative or not (the pelvis is moved back to where it was);
    lengths: (..., 16) broadcastable to the poses' leading dims, same units. Returns (..., 17, 3).
    """
    rebuilt = recompose(bone_directions(poses), lengths)
    return rebuilt + poses[..., :1, :]


def median_lengths(poses: np.ndarray) -> np.ndarray:
    """The plain own-length baseline: per bone the median over the sequence, then left/right pairs averaged.

    poses: (T, 17, 3) metres (any frame). Returns (16,) metres, float32."""
    return average_symmetric(np.median(bone_lengths(np.asarray(poses, np.float64)), axis=0)).astype(np.float32)
