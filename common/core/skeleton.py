"""Human3.6M 17-joint skeleton: joint and bone tables, left/right symmetry, flipping.

Joint order (VideoPose3D's 17-joint Human3.6M layout)::

    0 pelvis, 1 r_hip, 2 r_knee, 3 r_ankle, 4 l_hip, 5 l_knee, 6 l_ankle, 7 spine, 8 thorax,
    9 neck/nose, 10 head, 11 l_shoulder, 12 l_elbow, 13 l_wrist, 14 r_shoulder, 15 r_elbow, 16 r_wrist

Bone ``i`` is the vector from ``PARENTS[i + 1]`` to joint ``i + 1``.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

NUM_JOINTS = 17
NUM_BONES = 16

JOINT_NAMES = [
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax",
    "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
]
PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15])
JOINTS_LEFT = [4, 5, 6, 11, 12, 13]
JOINTS_RIGHT = [1, 2, 3, 14, 15, 16]

BONE_NAMES = [
    "r_hip", "r_thigh", "r_calf", "l_hip", "l_thigh", "l_calf", "spine_1", "spine_2", "neck", "head",
    "l_shoulder", "l_upper_arm", "l_lower_arm", "r_shoulder", "r_upper_arm", "r_lower_arm",
]
BONE_CHILDREN = np.arange(1, NUM_JOINTS)
BONE_PARENTS = PARENTS[1:]
# (left/right) bone index pairs with equal length on a real body.
SYMMETRIC_BONES = [(0, 3), (1, 4), (2, 5), (10, 13), (11, 14), (12, 15)]

# Human3.6M's 32 recorded joints -> the 17 used here (then joints 11 and 14 are re-parented to 8).
H36M_32_TO_17 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]

# Joint permutation that swaps left and right: FLIP_JOINTS[j] is the joint that j becomes after a flip.
FLIP_JOINTS = np.arange(NUM_JOINTS)
FLIP_JOINTS[JOINTS_LEFT] = JOINTS_RIGHT
FLIP_JOINTS[JOINTS_RIGHT] = JOINTS_LEFT
# Bone permutation induced by FLIP_JOINTS.
FLIP_BONES = FLIP_JOINTS[1:] - 1

# (17, 16) matrix: ANCESTOR_BONES[j, b] = 1 if bone b lies on the path from the pelvis to joint j.
ANCESTOR_BONES = np.zeros((NUM_JOINTS, NUM_BONES), dtype=np.float32)
for _joint in range(1, NUM_JOINTS):
    _j = _joint
    while _j > 0:
        ANCESTOR_BONES[_joint, _j - 1] = 1.0
        _j = PARENTS[_j]
del _joint, _j

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def flip_poses(poses: Array) -> Array:
    """Mirror poses about the x = 0 plane of their frame and swap left/right joints.

    poses: (..., 17, C) with C = 2 (pixels or normalised) or 3; x is channel 0. Returns a new array.
    """
    out = poses.clone() if isinstance(poses, torch.Tensor) else poses.copy()
    out[..., 0] = -out[..., 0]
    return out[..., FLIP_JOINTS, :]


def merge_flipped(predicted: torch.Tensor) -> torch.Tensor:
    """Fold test-time flip predictions ``(2, T, 17, 3)`` (second mirrored) into ``(T, 17, 3)``;
    ``(1, T, 17, 3)`` is returned squeezed."""
    if predicted.shape[0] == 1:
        return predicted[0]
    return (predicted[0] + flip_poses(predicted[1])) / 2


def flip_bone_lengths(lengths: Array) -> Array:
    """Swap left/right entries of bone lengths ``(..., 16)`` (what a mirror does to a body)."""
    return lengths[..., FLIP_BONES]
