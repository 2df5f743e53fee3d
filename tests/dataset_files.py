"""The tests' one writer of small datasets in VideoPose3D's file format.

``data_3d_<name>.npz`` (world frame, Z up, metres, 50 fps), ``data_2d_<name>_gt.npz`` (exact projection
through each subject's four Human3.6M cameras, pixels) and optionally ``data_2d_<name>_detections.npz`` (the
same plus white pixel noise). Every subject has its own symmetric bone lengths, kept exactly in every frame;
the limbs swing, the body turns and the pelvis walks on a circle inside the capture volume.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from common.core.bones import recompose
from common.core.camera import load_cameras
from common.utils.fileio import save_npz
from common.core.skeleton import H36M_32_TO_17, JOINTS_LEFT, JOINTS_RIGHT, NUM_BONES, SYMMETRIC_BONES

SUBJECTS = ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]
METADATA = {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [JOINTS_LEFT, JOINTS_RIGHT]}

# Standing skeleton, world frame (z up), bone directions in BONE_NAMES order, and plausible lengths (metres).
REST_DIRECTIONS = np.array([
    [-1, 0, 0], [0, 0, -1], [0, 0, -1], [1, 0, 0], [0, 0, -1], [0, 0, -1],
    [0, 0, 1], [0, 0, 1], [0, 0.3, 1], [0, 0, 1],
    [1, 0, 0], [0, 0, -1], [0, 0, -1], [-1, 0, 0], [0, 0, -1], [0, 0, -1]], dtype=np.float64)
REST_LENGTHS = np.array([0.13, 0.44, 0.45, 0.13, 0.44, 0.45, 0.23, 0.25, 0.12, 0.11,
                         0.15, 0.28, 0.25, 0.15, 0.28, 0.25])


def subject_lengths(rng: np.random.RandomState) -> np.ndarray:
    """(16,) metres: the rest lengths times one factor in [0.85, 1.15) per bone, left and right equal."""
    scale = 0.85 + 0.3 * rng.rand(NUM_BONES)
    for left, right in SYMMETRIC_BONES:
        scale[right] = scale[left]
    return REST_LENGTHS * scale


def walking_motion(frames: int, lengths: np.ndarray, rng: np.random.RandomState, variant: int = 0) -> np.ndarray:
    """(frames, 17, 3) float32 world poses, metres, Z up, with exactly ``lengths`` (16,) in every frame."""
    t = np.arange(frames) / 50.0
    freq = 0.5 + rng.rand() + 0.3 * variant
    dirs = np.repeat(REST_DIRECTIONS[None], frames, axis=0)
    swing = 0.6 * np.sin(2 * np.pi * freq * t + rng.rand() * 6)
    for bone, sign in [(1, 1), (4, -1), (11, -1), (14, 1)]:  # thighs and upper arms swing in opposition
        dirs[:, bone, 1] += sign * swing
    dirs[:, 12, 1] += 0.8 * np.abs(swing)
    dirs[:, 15, 1] += 0.8 * np.abs(swing)
    heading = 2 * np.pi * (0.1 + 0.05 * variant) * t + rng.rand() * 6
    c, s = np.cos(heading), np.sin(heading)
    rot = np.stack([np.stack([c, -s, 0 * c], -1), np.stack([s, c, 0 * c], -1),
                    np.stack([0 * c, 0 * c, 1 + 0 * c], -1)], -2)  # (T, 3, 3)
    dirs = np.einsum("tij,tbj->tbi", rot, dirs / np.linalg.norm(dirs, axis=-1, keepdims=True))
    poses = recompose(dirs, lengths)
    root = np.stack([1.2 * np.cos(0.3 * t + variant), 1.2 * np.sin(0.3 * t + variant), 0.95 + 0 * t], -1)
    return (poses - poses[:, :1] + root[:, None]).astype(np.float32)


def write_dataset(folder: str | Path, name: str = "tiny", actions: Mapping[str, Sequence[str]] | None = None,
                  frames: int | Sequence[int] = 300, seed: int = 0, detections_px: float | None = 4.0,
                  joints_3d: int = 17, extra_2d_frames: int = 0) -> Path:
    """Write the dataset files of ``name`` into ``folder`` (created) and return it.

    actions: subject -> action names (default: the 7 Human3.6M subjects with ``Act0 <i>``, ``Act1 <i>``);
    frames: per action, or one value per action index; detections_px: std of the white noise of the
    ``detections`` 2D (None: no detections file); joints_3d: 17, or 32 for Human3.6M's full layout (the 15 extra
    joints left at zero); extra_2d_frames: the 2D sequences repeat their last frames this many times (2D longer
    than 3D, as the loader must truncate)."""
    rng = np.random.RandomState(seed)
    cameras = load_cameras()
    if actions is None:
        actions = {s: [f"Act{a} {i}" for a in range(2)] for i, s in enumerate(SUBJECTS)}
    pos3d, gt2d, det2d = {}, {}, {}
    for subject, names in actions.items():
        lengths = subject_lengths(rng)
        pos3d[subject], gt2d[subject], det2d[subject] = {}, {}, {}
        for index, action in enumerate(names):
            count = frames if isinstance(frames, int) else frames[index]
            world = walking_motion(count, lengths, rng, variant=index)
            if joints_3d == 32:
                pos3d[subject][action] = np.zeros((count, 32, 3), np.float32)
                pos3d[subject][action][:, H36M_32_TO_17] = world
            else:
                pos3d[subject][action] = world
            views = [cam.project(cam.world_to_camera(world)).astype(np.float32) for cam in cameras[subject]]
            views = [np.concatenate([v, v[len(v) - extra_2d_frames:]]) for v in views]
            gt2d[subject][action] = views
            if detections_px is not None:
                det2d[subject][action] = [(v + rng.randn(*v.shape) * detections_px).astype(np.float32)
                                          for v in views]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / f"data_3d_{name}.npz", positions_3d=pos3d)
    save_npz(folder / f"data_2d_{name}_gt.npz", positions_2d=gt2d, metadata=METADATA)
    if detections_px is not None:
        save_npz(folder / f"data_2d_{name}_detections.npz", positions_2d=det2d, metadata=METADATA)
    return folder
