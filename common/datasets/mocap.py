"""Motion capture clips -> Human3.6M 17-joint positions.

Two sources of real motion are read here, with our own parsers and forward kinematics (FK):

* DeepMimic clips shipped with ``pybullet_data`` (``data/motions/humanoid3d_*.txt``, ``walker/*.txt``): JSON
  ``{"Loop", "Frames"}``, each frame 44 numbers: duration (s), root position (3, metres), root quaternion, then
  chest, neck, r_hip quaternions, r_knee angle, r_ankle, r_shoulder quaternions, r_elbow angle, and the left
  side likewise (quaternions ``w, x, y, z``, angles in radians). The skeleton comes from
  ``pybullet_data/humanoid/humanoid.urdf`` (joint origins scaled by :data:`URDF_SCALE`, as pybullet's
  DeepMimic environment loads it). Frame: Y up, the character faces +x, its right is +z.
* BVH files (HIERARCHY + MOTION, Euler channels in any order, positions on the root): e.g. the MocapBank
  clip in the ``bvhtoolbox`` sdist (centimetres, Y up).

Every source becomes a :class:`Motion` (local joint rotations over time plus its :class:`Skeleton`);
:func:`resample` interpolates it at arbitrary times (slerp for rotations, linear for the root position) and
:func:`forward_kinematics` returns the 17 Human3.6M joints ``(T, 17, 3)`` in metres in a **Z-up** frame.
Each Human3.6M joint is a *marker*: a fixed point in the frame of one skeleton joint (e.g. the nose is placed
in front of the head joint), so the mapping is a small table per skeleton.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common.utils.errors import UserError
from common.core.skeleton import JOINT_NAMES

URDF_SCALE = 0.25  # pybullet's DeepMimic environment loads humanoid.urdf with globalScaling=0.25
# Y-up source frame -> Z-up world: (x, y, z) -> (x, -z, y), a proper rotation.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


# ----------------------------------------------------------------------------------------------- quaternions
def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions ``(..., 4)`` (w, x, y, z); shapes broadcast."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_normalize(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_from_axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """axis: (3,) or (..., 3) unit vectors; angle: (...) radians -> quaternions (..., 4)."""
    angle = np.asarray(angle, dtype=np.float64)[..., None]
    axis = np.broadcast_to(np.asarray(axis, dtype=np.float64), angle.shape[:-1] + (3,))
    return np.concatenate([np.cos(angle / 2), np.sin(angle / 2) * axis], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` (w, x, y, z) -> rotation matrices ``(..., 3, 3)``."""
    w, x, y, z = np.moveaxis(quat_normalize(q), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=-2)


def quat_slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between unit quaternions ``a``, ``b`` (..., 4) at fractions ``t`` (...)."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)  # shortest arc
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-6
    safe = np.where(small, 1.0, sin_theta)
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(small, t, np.sin(t * theta) / safe)
    return quat_normalize(wa * a + wb * b)


def quat_from_euler(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """BVH Euler channels -> quaternions. angles_deg: (..., 3) degrees in channel order ``order`` (e.g. 'ZXY');
    the rotation is ``R = R_order[0] @ R_order[1] @ R_order[2]`` (BVH convention, intrinsic)."""
    axes = {"X": np.array([1.0, 0, 0]), "Y": np.array([0, 1.0, 0]), "Z": np.array([0, 0, 1.0])}
    rad = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    q = quat_from_axis_angle(axes[order[0]], rad[..., 0])
    for k in (1, 2):
        q = quat_multiply(q, quat_from_axis_angle(axes[order[k]], rad[..., k]))
    return q


# ------------------------------------------------------------------------------------------------- skeleton
@dataclass
class Skeleton:
    """A kinematic tree. ``offsets[j]`` (metres) is joint j's origin in its parent's frame at zero rotation;
    ``markers[h] = (joint, local (3,) metres)`` places Human3.6M joint ``h`` in that joint's frame."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    markers: list[tuple[int, np.ndarray]]

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass
class Motion:
    """A clip: ``times`` (N,) seconds from 0, ``root_position`` (N, 3) metres and ``rotations`` (N, J, 4) local
    joint quaternions (joint 0 = root orientation), in the source's Y-up frame. ``loop``: the last frame
    repeats the first pose (DeepMimic's ``"wrap"``)."""

    name: str
    skeleton: Skeleton
    times: np.ndarray
    root_position: np.ndarray
    rotations: np.ndarray
    loop: bool

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    @property
    def num_frames(self) -> int:
        return len(self.times)


def forward_kinematics(motion: Motion) -> np.ndarray:
    """Human3.6M joints of every frame: (N, 17, 3) metres, Z-up frame (source Y-up rotated, no translation)."""
    skel = motion.skeleton
    local = quat_to_matrix(motion.rotations)  # (N, J, 3, 3)
    n, num = local.shape[:2]
    glob = np.empty_like(local)
    pos = np.empty((n, num, 3))
    for j, parent in enumerate(skel.parents):  # topological order: parents precede children
        if parent < 0:
            glob[:, j] = local[:, j]
            pos[:, j] = motion.root_position + skel.offsets[j]
        else:
            glob[:, j] = glob[:, parent] @ local[:, j]
            pos[:, j] = pos[:, parent] + glob[:, parent] @ skel.offsets[j]
    joints = np.stack([pos[:, j] + glob[:, j] @ off for j, off in skel.markers], axis=1)
    return joints @ Y_UP_TO_Z_UP.T


def resample(motion: Motion, times: np.ndarray) -> Motion:
    """Sample a clip at ``times`` (M,) seconds inside ``[0, duration]``: slerp rotations, lerp root position."""
    times = np.asarray(times, dtype=np.float64)
    if times.size and (times.min() < -1e-9 or times.max() > motion.duration + 1e-9):
        raise ValueError(f"resample times outside [0, {motion.duration}] s")
    idx = np.clip(np.searchsorted(motion.times, times, side="right") - 1, 0, motion.num_frames - 2)
    span = motion.times[idx + 1] - motion.times[idx]
    frac = np.clip((times - motion.times[idx]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    root = motion.root_position[idx] + frac[:, None] * (motion.root_position[idx + 1] - motion.root_position[idx])
    rot = quat_slerp(motion.rotations[idx], motion.rotations[idx + 1], frac[:, None])
    return replace(motion, times=times - times[0] if times.size else times, root_position=root, rotations=rot)


# ----------------------------------------------------------------------------------------------- DeepMimic
# Layout of one DeepMimic frame after the duration: (joint, number of values); 4 = quaternion, 1 = angle.
DEEPMIMIC_LAYOUT = [("root", 4), ("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1),
                    ("right_ankle", 4), ("right_shoulder", 4), ("right_elbow", 1), ("left_hip", 4),
                    ("left_knee", 1), ("left_ankle", 4), ("left_shoulder", 4), ("left_elbow", 1)]
DEEPMIMIC_FRAME_SIZE = 1 + 3 + sum(n for _, n in DEEPMIMIC_LAYOUT)  # 44

# Human3.6M joint -> (URDF joint, marker offset in that joint's frame, metres). Joints sit at the URDF joint
# origins; the nose and the head top are placed in the neck frame (Y up, +x forward; the URDF's head sphere
# has its centre 0.175 m above the neck joint and a 0.1 m radius).
DEEPMIMIC_MARKERS = {
    "pelvis": ("root", (0, 0, 0)), "r_hip": ("right_hip", (0, 0, 0)), "r_knee": ("right_knee", (0, 0, 0)),
    "r_ankle": ("right_ankle", (0, 0, 0)), "l_hip": ("left_hip", (0, 0, 0)), "l_knee": ("left_knee", (0, 0, 0)),
    "l_ankle": ("left_ankle", (0, 0, 0)), "spine": ("chest", (0, 0, 0)), "thorax": ("neck", (0, 0, 0)),
    "neck": ("neck", (0.06, 0.10, 0)), "head": ("neck", (0.02, 0.22, 0)),
    "l_shoulder": ("left_shoulder", (0, 0, 0)), "l_elbow": ("left_elbow", (0, 0, 0)),
    "l_wrist": ("left_wrist", (0, 0, 0)), "r_shoulder": ("right_shoulder", (0, 0, 0)),
    "r_elbow": ("right_elbow", (0, 0, 0)), "r_wrist": ("right_wrist", (0, 0, 0)),
}


def _floats(text: str | None, default: str = "0 0 0") -> np.ndarray:
    return np.array([float(v) for v in (text or default).split()], dtype=np.float64)


def load_urdf_skeleton(path: str | Path) -> tuple[Skeleton, dict[str, np.ndarray]]:
    """Parse a URDF's joints into a :class:`Skeleton` (joint = its child link; offsets scaled by
    :data:`URDF_SCALE`; fixed root joint dropped) plus the revolute joints' axes ``{name: (3,)}``.
    Joint origins with a non-zero ``rpy`` are not supported (humanoid.urdf has none)."""
    try:  # pybullet's humanoid.urdf ends with a NUL byte, which XML parsers reject
        root = ET.fromstring(Path(path).read_bytes().rstrip(b"\0\r\n "))
    except (OSError, ET.ParseError) as exc:
        raise UserError(f"cannot read URDF {path}: {exc}") from None
    names, parents, offsets, axes = ["root"], [-1], [np.zeros(3)], {}
    link_to_joint = {"root": 0}
    pending = [j for j in root.findall("joint") if j.find("child").get("link") != "root"]
    while pending:  # order joints so that parents come first
        progress = False
        for joint in list(pending):
            parent_link = joint.find("parent").get("link")
            if parent_link not in link_to_joint:
                continue
            origin = joint.find("origin")
            if origin is not None and np.any(_floats(origin.get("rpy")) != 0):
                raise UserError(f"{path}: joint {joint.get('name')} has a rotated origin (unsupported)")
            child = joint.find("child").get("link")
            link_to_joint[child] = len(names)
            names.append(child)
            parents.append(link_to_joint[parent_link])
            offsets.append(_floats(origin.get("xyz") if origin is not None else None) * URDF_SCALE)
            if joint.get("type") == "revolute":
                axes[child] = _floats(joint.find("axis").get("xyz"))
            pending.remove(joint)
            progress = True
        if not progress:
            raise UserError(f"{path}: joints not connected to the root link")
    markers = [(names.index(DEEPMIMIC_MARKERS[h][0]), np.array(DEEPMIMIC_MARKERS[h][1], dtype=np.float64))
               for h in JOINT_NAMES]
    return Skeleton(names, parents, np.stack(offsets), markers), axes


def load_deepmimic(path: str | Path, urdf: str | Path) -> Motion:
    """Read a DeepMimic motion file and the humanoid URDF into a :class:`Motion` (Y-up, metres)."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
        frames = np.asarray(spec["Frames"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read DeepMimic motion {path}: {exc}") from None
    if frames.ndim != 2 or frames.shape[1] != DEEPMIMIC_FRAME_SIZE or len(frames) < 2:
        raise UserError(f"{path}: expected >= 2 frames of {DEEPMIMIC_FRAME_SIZE} numbers, got {frames.shape}")
    skeleton, axes = load_urdf_skeleton(urdf)
    rotations = np.tile(np.array([1.0, 0, 0, 0]), (len(frames), len(skeleton.names), 1))
    col = 4
    for joint, size in DEEPMIMIC_LAYOUT:
        j = skeleton.index(joint)
        if size == 4:
            rotations[:, j] = quat_normalize(frames[:, col:col + 4])
        else:
            rotations[:, j] = quat_from_axis_angle(axes[joint], frames[:, col])
        col += size
    times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
    return Motion(path.stem, skeleton, times, frames[:, 1:4].copy(), rotations,
                  loop=str(spec.get("Loop", "none")).lower() == "wrap")


# ---------------------------------------------------------------------------------------------------- BVH
# Human3.6M joint -> (BVH joint, marker offset in its frame, in the file's units) for MocapBank-style names
# (Hips, Chest2, Neck, Head, Left/Right Hip, Knee, Ankle, Shoulder, Elbow, Wrist; Y up, +z forward).
# The pelvis is the midpoint of the hip joints (placed in the root (Hips) frame by :func:`bvh_to_motion`).
BVH_MARKERS = {
    "r_hip": ("RightHip", (0, 0, 0)), "r_knee": ("RightKnee", (0, 0, 0)), "r_ankle": ("RightAnkle", (0, 0, 0)),
    "l_hip": ("LeftHip", (0, 0, 0)), "l_knee": ("LeftKnee", (0, 0, 0)), "l_ankle": ("LeftAnkle", (0, 0, 0)),
    "spine": ("Chest2", (0, 0, 0)), "thorax": ("Neck", (0, 0, 0)), "neck": ("Head", (0, 1.0, 7.0)),
    "head": ("Head", (0, 13.0, 1.0)), "l_shoulder": ("LeftShoulder", (0, 0, 0)),
    "l_elbow": ("LeftElbow", (0, 0, 0)), "l_wrist": ("LeftWrist", (0, 0, 0)),
    "r_shoulder": ("RightShoulder", (0, 0, 0)), "r_elbow": ("RightElbow", (0, 0, 0)),
    "r_wrist": ("RightWrist", (0, 0, 0)),
}


@dataclass
class BVHFile:
    """Raw BVH content: joint names/parents/offsets (file units), channel names per joint, frame data."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[list[str]]
    frame_time: float
    data: np.ndarray  # (N, total channels)


def parse_bvh(text: str) -> BVHFile:
    """Parse BVH text (HIERARCHY with ROOT/JOINT/End Site, MOTION with Frames and Frame Time)."""
    head, sep, motion = text.partition("MOTION")
    if not sep or "HIERARCHY" not in head:
        raise UserError("not a BVH file: HIERARCHY/MOTION sections missing")
    tokens = re.findall(r"[{}]|[^\s{}]+", head.split("HIERARCHY", 1)[1])
    names, parents, offsets, channels, stack = [], [], [], [], []
    i, pending_end = 0, False
    try:
        while i < len(tokens):
            tok = tokens[i]
            if tok in ("ROOT", "JOINT"):
                names.append(tokens[i + 1])
                parents.append(stack[-1] if stack else -1)
                offsets.append(np.zeros(3))
                channels.append([])
                i += 2
            elif tok == "End":
                pending_end = True
                i += 2
            elif tok == "{":
                stack.append(-2 if pending_end else len(names) - 1)  # -2: an End Site (offset ignored)
                pending_end = False
                i += 1
            elif tok == "}":
                stack.pop()
                i += 1
            elif tok == "OFFSET":
                if stack[-1] != -2:
                    offsets[stack[-1]] = np.array([float(v) for v in tokens[i + 1:i + 4]])
                i += 4
            elif tok == "CHANNELS":
                count = int(tokens[i + 1])
                channels[stack[-1]] = tokens[i + 2:i + 2 + count]
                i += 2 + count
            else:
                raise UserError(f"BVH: unexpected token {tok!r} in HIERARCHY")
        lines = [ln for ln in motion.strip().splitlines() if ln.strip()]
        num_frames = int(lines[0].split(":")[1])
        frame_time = float(lines[1].split(":")[1])
        data = np.array([[float(v) for v in ln.split()] for ln in lines[2:2 + num_frames]], dtype=np.float64)
    except (IndexError, ValueError) as exc:
        raise UserError(f"BVH: malformed file ({exc})") from None
    total = sum(len(c) for c in channels)
    if not names or data.ndim != 2 or data.shape != (num_frames, total):
        raise UserError(f"BVH: expected {num_frames} frames of {total} channels, got {data.shape}")
    return BVHFile(names, parents, np.stack(offsets), channels, frame_time, data)


def bvh_to_motion(bvh: BVHFile, name: str, units_to_metres: float = 0.01,
                  markers: dict | None = None) -> Motion:
    """Turn a parsed BVH into a :class:`Motion` (metres). Rotation channels may come in any order; the root
    must carry the three position channels. ``markers`` maps every Human3.6M joint except ``pelvis`` to
    (BVH joint, offset in file units); default :data:`BVH_MARKERS`."""
    markers = markers or BVH_MARKERS
    missing = sorted({j for j, _ in markers.values()} - set(bvh.names))
    if missing:
        raise UserError(f"BVH {name}: joints {missing} needed for the Human3.6M mapping are missing")
    n, num = len(bvh.data), len(bvh.names)
    rotations = np.tile(np.array([1.0, 0, 0, 0]), (n, num, 1))
    root_position = np.zeros((n, 3))
    col = 0
    for j, chans in enumerate(bvh.channels):
        block = bvh.data[:, col:col + len(chans)]
        col += len(chans)
        pos = [k for k, c in enumerate(chans) if c.lower().endswith("position")]
        rot = [k for k, c in enumerate(chans) if c.lower().endswith("rotation")]
        if pos:
            if j != 0 or len(pos) != 3:
                raise UserError(f"BVH {name}: position channels are only supported on the root")
            order = [chans[k][0].upper() for k in pos]
            root_position = block[:, pos][:, [order.index(a) for a in "XYZ"]] * units_to_metres
        if rot:
            if len(rot) != 3:
                raise UserError(f"BVH {name}: joint {bvh.names[j]} needs 3 rotation channels")
            rotations[:, j] = quat_from_euler(block[:, rot], "".join(chans[k][0].upper() for k in rot))
    root = 0
    hips = [bvh.names.index(markers[h][0]) for h in ("l_hip", "r_hip")]
    pelvis_local = np.mean([bvh.offsets[h] for h in hips], axis=0) * units_to_metres
    table = {"pelvis": (root, pelvis_local)}
    table.update({h: (bvh.names.index(j), np.asarray(off, dtype=np.float64) * units_to_metres)
                  for h, (j, off) in markers.items()})
    skeleton = Skeleton(list(bvh.names), list(bvh.parents), bvh.offsets * units_to_metres,
                        [table[h] for h in JOINT_NAMES])
    times = np.arange(n) * bvh.frame_time
    return Motion(name, skeleton, times, root_position, rotations, loop=False)


def load_bvh(path: str | Path, units_to_metres: float = 0.01) -> Motion:
    """Read a BVH file (default units centimetres) into a :class:`Motion`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read BVH {path}: {exc}") from None
    return bvh_to_motion(parse_bvh(text), path.stem, units_to_metres)
