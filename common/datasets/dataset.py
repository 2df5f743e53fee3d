"""Loader for VideoPose3D's preprocessed Human3.6M format (any dataset name: ``h36m``, ``demo``, ...).

Files (see docs/file_formats.md):

* ``<data_dir>/data_3d_<dataset>.npz``: ``positions_3d`` -> ``subject -> action -> (T, 32|17, 3)`` float32,
  world frame, metres. 32-joint arrays are reduced to the 17 joints of :mod:`common.core.skeleton`.
* ``<data_dir>/data_2d_<dataset>_<keypoints>.npz``: ``positions_2d`` -> ``subject -> action -> [4 × (T, 17, 2)]``
  pixels, cameras in :data:`common.core.camera.CAMERA_IDS` order; ``metadata``.

After loading, for every subject/action/camera: ``poses_2d`` normalised screen coordinates ``(T, 17, 2)`` and,
when 3D exists, ``poses_3d`` in the camera frame ``(T, 17, 3)`` metres, root-relative except joint 0, which
keeps the pelvis trajectory (VideoPose3D's convention).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from common.core.bones import average_symmetric, bone_lengths
from common.core.camera import Camera, load_cameras, normalize_screen_coordinates
from common.utils.errors import UserError
from common.utils.fileio import check_array, load_nested, load_npz
from common.core.skeleton import H36M_32_TO_17, NUM_JOINTS

TRAIN_SUBJECTS = ["S1", "S5", "S6", "S7", "S8"]
TEST_SUBJECTS = ["S9", "S11"]
DEFAULT_KEYPOINTS = {"h36m": "cpn_ft_h36m_dbb", "demo": "detections"}


def resolve_dataset_name(name: str, data_dir: str | Path = "data") -> str:
    """``auto`` -> ``h36m`` when ``data_3d_h36m.npz`` is in ``data_dir``, else ``demo``; other names unchanged."""
    if name != "auto":
        return name
    return "h36m" if (Path(data_dir) / "data_3d_h36m.npz").is_file() else "demo"


def _comma_list(text: str | Sequence[str]) -> list[str]:
    if not isinstance(text, str):
        return list(text)
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_subjects(text: str | Sequence[str]) -> list[str]:
    """Subjects: ``'S1,S5'`` -> ``['S1', 'S5']`` (empty entries dropped)."""
    return _comma_list(text)


def parse_action_filter(text: str | Sequence[str]) -> list[str] | None:
    """The ``-a/--actions`` filter: ``'*'`` or ``''`` -> None (every action); ``'Walk,Eat'`` -> the action-name
    prefixes ``['Walk', 'Eat']`` (see :meth:`PoseDataset.fetch`)."""
    if isinstance(text, str) and text.strip() in ("*", ""):
        return None
    return _comma_list(text) or None


@dataclass
class Sequence3D:
    """One (subject, action, camera) view. Shapes: poses_2d (T, 17, 2) normalised; poses_3d (T, 17, 3) camera
    frame metres with the trajectory in joint 0, or None; intrinsic (9,) normalised."""

    subject: str
    action: str
    camera_index: int
    camera: Camera
    poses_2d: np.ndarray
    poses_3d: np.ndarray | None

    @property
    def key(self) -> tuple[str, str, int]:
        return self.subject, self.action, self.camera_index


@dataclass
class PoseDataset:
    """A loaded dataset: ``world_3d[subject][action]`` (T, 17, 3) metres world frame (may be empty), and
    ``sequences[subject][action]`` -> list of :class:`Sequence3D`, one per camera."""

    name: str
    keypoints: str
    world_3d: dict[str, dict[str, np.ndarray]]
    sequences: dict[str, dict[str, list[Sequence3D]]]
    cameras: dict[str, list[Camera]]
    metadata: dict = field(default_factory=dict)

    @property
    def subjects(self) -> list[str]:
        return list(self.sequences)

    def check_subjects(self, subjects: Sequence[str]) -> None:
        absent = [s for s in subjects if s not in self.sequences]
        if absent:
            raise UserError(f"subject(s) {absent} not in dataset '{self.name}' (available: {self.subjects})")

    def fetch(self, subjects: Sequence[str], action_filter: Sequence[str] | None = None,
              require_3d: bool = False) -> list[Sequence3D]:
        """All camera views of the given subjects, in file order (subject, action, camera), optionally only
        actions starting with one of ``action_filter``. ``require_3d`` raises if a view lacks 3D."""
        self.check_subjects(subjects)
        out: list[Sequence3D] = []
        for subject in subjects:
            for action, views in self.sequences[subject].items():
                if action_filter and not any(action.startswith(a) for a in action_filter):
                    continue
                for view in views:
                    if require_3d and view.poses_3d is None:
                        raise UserError(f"{subject}/{action}: no 3D ground truth in data_3d_{self.name}.npz")
                    out.append(view)
        if not out:
            raise UserError(f"no sequences for subjects {list(subjects)} with actions {action_filter}")
        return out

    def gt_bone_lengths(self, subject: str, action: str | None = None) -> np.ndarray:
        """Ground-truth bone lengths (16,) metres: per-frame lengths of the world poses averaged over frames
        (of one action, or all of the subject's actions), left/right pairs averaged."""
        if subject not in self.world_3d:
            raise UserError(f"no 3D ground truth for subject {subject}")
        actions = [action] if action is not None else list(self.world_3d[subject])
        lengths = np.concatenate([bone_lengths(self.world_3d[subject][a]) for a in actions])
        return average_symmetric(lengths.mean(axis=0)).astype(np.float32)


def _positions_17(name: str, positions: np.ndarray) -> np.ndarray:
    arr = np.asarray(positions)
    if arr.ndim == 3 and arr.shape[1] == 32:
        arr = arr[:, H36M_32_TO_17]
    return check_array(name, arr, (None, NUM_JOINTS, 3))


def dataset_files(data_dir: str | Path, dataset: str, keypoints: str | None = None) -> tuple[Path, Path]:
    """The files :func:`load_dataset` reads: ``data_3d_<dataset>.npz`` and ``data_2d_<dataset>_<keypoints>.npz``
    (``keypoints`` None: the dataset's default)."""
    keypoints = keypoints or DEFAULT_KEYPOINTS.get(dataset, "gt")
    return Path(data_dir) / f"data_3d_{dataset}.npz", Path(data_dir) / f"data_2d_{dataset}_{keypoints}.npz"


def load_dataset(data_dir: str | Path = "data", dataset: str = "h36m", keypoints: str | None = None,
                 camera_file: str | Path | None = None, need_3d: bool = True,
                 subjects: Sequence[str] | None = None, camera_3d: bool = True) -> PoseDataset:
    """Load ``data_3d_<dataset>.npz`` (if ``need_3d`` or present) and ``data_2d_<dataset>_<keypoints>.npz``.

    subjects: restrict loading to these subjects (faster; absent ones raise a UserError).
    camera_3d: give every view its camera-frame 3D (``poses_3d``); False keeps only the world-frame 3D (less
    memory, for jobs that read 2D and per-subject ground truth only).
    Every array is validated (shape, finiteness); 2D longer than 3D is truncated, 2D shorter is an error.
    """
    path_3d, path_2d = dataset_files(data_dir, dataset, keypoints)
    cameras = load_cameras(camera_file)

    world: dict[str, dict[str, np.ndarray]] = {}
    if need_3d or path_3d.is_file():
        raw = load_nested(path_3d, "positions_3d", "subject -> action -> array")
        for subject, actions in raw.items():
            if subjects is not None and subject not in subjects:
                continue
            world[subject] = {a: _positions_17(f"{path_3d.name} {subject}/{a}", p) for a, p in actions.items()}

    data_2d = load_npz(path_2d, required=["positions_2d"])
    raw_2d = data_2d["positions_2d"]
    if not isinstance(raw_2d, dict):
        raise UserError(f"{path_2d}: 'positions_2d' must be a dict subject -> action -> [views]")
    if subjects is not None:
        absent = [s for s in subjects if s not in raw_2d]
        if absent:
            raise UserError(f"subject(s) {absent} not in {path_2d.name} (available: {sorted(raw_2d)})")

    sequences: dict[str, dict[str, list[Sequence3D]]] = {}
    for subject, actions in raw_2d.items():
        if subjects is not None and subject not in subjects:
            continue
        if subject not in cameras:
            raise UserError(f"{path_2d.name}: no camera parameters for subject {subject} "
                            f"(known: {sorted(cameras)})")
        sequences[subject] = {}
        for action, views in actions.items():
            if world and need_3d and action not in world.get(subject, {}):
                raise UserError(f"{path_2d.name}: {subject}/{action} has no 3D in {path_3d.name}")
            if len(views) != len(cameras[subject]):
                raise UserError(f"{path_2d.name}: {subject}/{action} has {len(views)} camera views, "
                                f"expected {len(cameras[subject])}")
            world_pose = world.get(subject, {}).get(action)
            seq_views = []
            for cam_idx, (kps, cam) in enumerate(zip(views, cameras[subject])):
                name = f"{path_2d.name} {subject}/{action} camera {cam_idx}"
                kps = np.asarray(kps)
                if kps.ndim == 3 and kps.shape[-1] == 3:
                    kps = kps[..., :2]  # drop detector confidence
                kps = check_array(name, kps, (None, NUM_JOINTS, 2))
                pose_3d = None
                if world_pose is not None:
                    if len(kps) < len(world_pose):
                        raise UserError(f"{name}: {len(kps)} 2D frames but {len(world_pose)} 3D frames")
                    kps = kps[: len(world_pose)]
                if world_pose is not None and camera_3d:
                    pose_3d = cam.world_to_camera(world_pose).astype(np.float32)
                    pose_3d[:, 1:] -= pose_3d[:, :1]
                seq_views.append(Sequence3D(subject, action, cam_idx, cam,
                                            normalize_screen_coordinates(kps, cam.res_w, cam.res_h), pose_3d))
            sequences[subject][action] = seq_views
    return PoseDataset(dataset, keypoints, world, sequences, cameras, dict(data_2d.get("metadata", {}) or {}))


def camera_space_root_relative(view: Sequence3D) -> np.ndarray:
    """poses_3d of a view with the pelvis at the origin: (T, 17, 3) metres, camera frame."""
    if view.poses_3d is None:
        raise UserError(f"{view.subject}/{view.action}: no 3D ground truth")
    out = view.poses_3d.copy()
    out[:, 0] = 0.0
    return out
