"""BVH (Biovision hierarchy) export of 17-joint poses with constant bone lengths.

Hierarchy: the Human3.6M tree (:data:`common.core.skeleton.PARENTS`) with one extra zero-offset joint in front of
each child of a joint that has several children (``pelvis`` -> ``r_hip_root``, ``l_hip_root``,
``spine_root``; ``thorax`` -> ``neck_root``, ``l_shoulder_root``, ``r_shoulder_root``), as the CMU files have
``LHipJoint``/``LowerBack``. Every bone then has a joint of its own whose rotation orients it, so the file
reproduces *every* joint position exactly, however the lifter bent the pelvis or the shoulders.

* Offsets: each Human3.6M joint sits at ``rest direction x bone length`` from its parent, the rest pose a
  T-pose (legs and spine vertical, arms horizontal) facing +z; lengths from the adjusted bone lengths.
* Axes and units: BVH's usual y up, centimetres. Input poses are z-up (x, y, z) metres (the world-like frame
  of :mod:`common.inference.inference_pipeline`) and map to BVH (x, z, -y): a person facing the camera faces +z.
* Rotations (channels ``Zrotation Xrotation Yrotation``, intrinsic, degrees): the pelvis and the thorax
  carry a body frame (x = right-to-left hip / shoulder line, y = the spine / neck direction made
  orthogonal to it, z = x cross y, the facing direction). Every other joint carries the *smallest* rotation
  (no twist about the bone) that takes its bone from the parent's frame to the observed direction; end
  joints (ankles, wrists, head) carry none. The twist of a limb therefore follows its parent's body frame.
* Root: position channels = the pelvis trajectory (per frame; root-relative poses give the pelvis height
  over the ground only). Frame time = 1 / fps of the video.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from common.core.bones import bone_directions
from common.utils.errors import UserError
from common.utils.fileio import atomic_write, check_array
from common.core.skeleton import JOINT_NAMES, NUM_BONES, NUM_JOINTS, PARENTS

UNITS_PER_METRE = 100.0  # BVH in centimetres
END_SITE_FRACTION = 0.25  # end sites drawn along the last bone, this fraction of its length (cosmetic)
_EPS = 1e-9

# Rest directions of the 16 bones (BVH axes: x = subject's left, y = up, z = facing direction).
REST_DIRECTIONS = np.array([
    [-1, 0, 0], [0, -1, 0], [0, -1, 0],  # r_hip, r_thigh, r_calf
    [1, 0, 0], [0, -1, 0], [0, -1, 0],  # l_hip, l_thigh, l_calf
    [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0],  # spine_1, spine_2, neck, head
    [1, 0, 0], [1, 0, 0], [1, 0, 0],  # l_shoulder, l_upper_arm, l_lower_arm
    [-1, 0, 0], [-1, 0, 0], [-1, 0, 0],  # r_shoulder, r_upper_arm, r_lower_arm
], dtype=np.float64)
# z-up metres (x, y, z) -> BVH (x, z, -y): a proper rotation.
TO_BVH_AXES = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)
# Joints whose rotation is a body frame: joint -> (left joint, right joint, "up" joint).
BODY_FRAMES = {0: (4, 1, 7), 8: (11, 14, 9)}


def _hierarchy() -> tuple[list[str], list[int], list[int]]:
    """BVH joints in file (depth-first) order: names, parent (BVH index) and Human3.6M joint (-1: helper)."""
    children = {j: [int(c) for c in np.flatnonzero(PARENTS == j)] for j in range(NUM_JOINTS)}
    names, parents, joints = [], [], []

    def visit(joint: int, parent: int) -> None:
        index = len(names)
        names.append(JOINT_NAMES[joint])
        parents.append(parent)
        joints.append(joint)
        for child in children[joint]:
            if len(children[joint]) > 1:
                names.append(f"{JOINT_NAMES[child]}_root")
                parents.append(index)
                joints.append(-1)
                visit(child, len(names) - 1)
            else:
                visit(child, index)

    visit(0, -1)
    return names, parents, joints


BVH_NAMES, BVH_PARENTS, BVH_JOINTS = _hierarchy()


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations (..., 3, 3) taking unit vectors a (..., 3) to unit vectors b (..., 3); for
    opposite vectors a half turn about an axis perpendicular to a."""
    v = np.cross(a, b)
    c = np.sum(a * b, axis=-1)[..., None, None]
    k = np.zeros(a.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    eye = np.broadcast_to(np.eye(3), k.shape)
    general = eye + k + k @ k / np.maximum(1 + c, _EPS)
    helper = np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0, 0], [0, 1.0, 0])
    u = _normalise(np.cross(a, helper))
    half_turn = 2 * u[..., :, None] * u[..., None, :] - eye
    return np.where(1 + c > 1e-6, general, half_turn)


def _body_frame(left: np.ndarray, right: np.ndarray, centre: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rotation (T, 3, 3) whose columns are x = right->left, y = centre->up made orthogonal, z = x cross y."""
    x = _normalise(left - right)
    u = up - centre
    y = _normalise(u - np.sum(u * x, axis=-1, keepdims=True) * x)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def _euler_zxy(r: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) = Rz(a) Rx(b) Ry(c) -> degrees (..., 3) as (a, b, c)."""
    b = np.arcsin(np.clip(r[..., 2, 1], -1, 1))
    a = np.arctan2(-r[..., 0, 1], r[..., 1, 1])
    c = np.arctan2(-r[..., 2, 0], r[..., 2, 2])
    return np.degrees(np.stack([a, b, c], axis=-1))


def bvh_motion(poses: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and per-frame channels of the BVH skeleton (see the module docstring).

    poses: (T, 17, 3) metres, z-up frame; lengths: (16,) metres (the adjusted bone lengths).
    Returns offsets (J, 3) centimetres in BVH axes (J = len(BVH_NAMES)) and channels (T, 3 + 3 J): the root
    position (cm) then, per BVH joint in file order, Z, X, Y rotations in degrees.
    """
    poses = check_array("poses", poses, (None, NUM_JOINTS, 3)).astype(np.float64)
    lengths = check_array("bone lengths", lengths, (NUM_BONES,)).astype(np.float64)
    if (lengths <= 0).any():
        raise UserError("BVH export needs positive bone lengths")
    points = poses @ TO_BVH_AXES.T
    directions = bone_directions(points)  # (T, 16, 3)
    frames = len(points)
    offsets = np.zeros((len(BVH_NAMES), 3))
    world = np.zeros((frames, len(BVH_NAMES), 3, 3))
    local = np.zeros_like(world)
    for index, (joint, parent) in enumerate(zip(BVH_JOINTS, BVH_PARENTS)):
        parent_world = world[:, parent] if parent >= 0 else np.broadcast_to(np.eye(3), (frames, 3, 3))
        if joint > 0:
            offsets[index] = REST_DIRECTIONS[joint - 1] * lengths[joint - 1] * UNITS_PER_METRE
        # the bone this BVH joint orients: its own child's (helpers: the Human3.6M joint right below them)
        below = BVH_JOINTS[index + 1] if joint < 0 else None
        children = np.flatnonzero(PARENTS == joint) if joint >= 0 else []
        if joint in BODY_FRAMES:
            left, right, up = BODY_FRAMES[joint]
            world[:, index] = _body_frame(points[:, left], points[:, right], points[:, joint], points[:, up])
        elif below is not None or len(children) == 1:
            bone = (below if below is not None else int(children[0])) - 1
            rest = parent_world @ REST_DIRECTIONS[bone]
            world[:, index] = _swing(rest, directions[:, bone]) @ parent_world
        else:  # end joint: no rotation of its own
            world[:, index] = parent_world
        local[:, index] = np.swapaxes(parent_world, -1, -2) @ world[:, index]
    channels = np.concatenate([points[:, 0] * UNITS_PER_METRE, _euler_zxy(local).reshape(frames, -1)], axis=1)
    return offsets, channels


def bvh_text(poses: np.ndarray, lengths: np.ndarray, fps: float) -> str:
    """The BVH file content for poses (T, 17, 3) metres z-up, lengths (16,) metres, frame rate fps (Hz)."""
    if not np.isfinite(fps) or fps <= 0:
        raise UserError(f"BVH export needs a positive frame rate, got {fps}")
    offsets, channels = bvh_motion(poses, lengths)
    children = {i: [c for c, p in enumerate(BVH_PARENTS) if p == i] for i in range(len(BVH_NAMES))}
    lines = ["HIERARCHY"]

    def write(index: int, depth: int) -> None:
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if index == 0 else 'JOINT'} {BVH_NAMES[index]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET " + " ".join(f"{v:.6f}" for v in offsets[index]))
        position = "Xposition Yposition Zposition " if index == 0 else ""
        lines.append(f"{pad}  CHANNELS {6 if index == 0 else 3} {position}Zrotation Xrotation Yrotation")
        for child in children[index]:
            write(child, depth + 1)
        if not children[index]:
            joint = BVH_JOINTS[index]
            end = REST_DIRECTIONS[joint - 1] * np.linalg.norm(offsets[index]) * END_SITE_FRACTION
            lines.extend([f"{pad}  End Site", f"{pad}  {{",
                          f"{pad}    OFFSET " + " ".join(f"{v:.6f}" for v in end), f"{pad}  }}"])
        lines.append(f"{pad}}}")

    write(0, 0)
    lines += ["MOTION", f"Frames: {len(channels)}", f"Frame Time: {1.0 / fps:.8f}"]
    body = io.StringIO()
    np.savetxt(body, channels, fmt="%.6f")
    return "\n".join(lines) + "\n" + body.getvalue()


def write_bvh(path: str | Path, poses: np.ndarray, lengths: np.ndarray, fps: float) -> Path:
    """Atomically write a BVH file (see :func:`bvh_text`); returns the path."""
    text = bvh_text(poses, lengths, fps)
    atomic_write(path, lambda fh: fh.write(text.encode()))
    return Path(path)
