"""Files written by ``inference.py``: every export format in one place.

An export is a function ``(result: PoseExport, out_dir: Path) -> dict[str, Path]`` listed in :data:`EXPORTS`;
a new format is one such function plus one entry there (``inference.py --export`` picks from its names).
All files are written atomically. Formats:

* ``poses`` — ``<stem>_poses_3d.npz`` and ``.json``: ``poses_before`` (the lifter's own poses) and
  ``poses_after`` (bone lengths adjusted: the main output), both (T, 17, 3) metres in the world-like frame of
  :data:`common.core.camera.WORLD_LIKE_FRAMES`; ``keypoints_2d`` (T, 17, 2) pixels, ``confidence_2d`` (T, 17),
  ``frame_indices`` (T,) video frame of each row, ``bone_lengths`` (16,) or (T, 16) metres (the lengths used),
  ``interpolated_frames`` and ``metadata`` (joint order, parents, units, frame, lifter, length source, joint
  convention).
* ``lengths`` — ``<stem>_bone_lengths.json`` (lengths used, per-bone mean/std before adjustment) and a PNG of
  the per-frame lengths before and after.
* ``keypoints`` — ``<stem>_keypoints_2d.npz`` in VideoPose3D's custom-dataset layout (a ``--keypoints`` input).
* ``lifter_poses`` — ``<stem>_lifter_poses.npz``: the lifter's poses in its own frame, one per video frame from
  frame 0 (edge-padded), a valid ``--poses`` input (written for lifters that compute poses, not for ``poses``).
* on request (``inference.py --export``): ``bvh``, ``csv``, ``jsonl`` — the adjusted poses as
  ``<stem>_poses_3d.bvh``/``.csv``/``.jsonl`` (:mod:`common.output.pose_tables`, :mod:`common.output.bvh`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from common.core.bones import bone_lengths
from common.core.camera import WORLD_LIKE_FRAMES
from common.utils.fileio import save_json, save_npz
from common.output.pose_tables import write_pose_formats
from common.core.skeleton import BONE_NAMES, JOINT_NAMES, JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS, PARENTS
from common.vision.tracking import Track2D
from common.output.visualization import plot_bone_lengths_over_time


@dataclass
class PoseExport:
    """What an inference run exports.

    stem: file-name stem (the video's); video: its path or None; track: the followed person's 2D;
    before/after: (T, 17, 3) metres, world-like frame, before and after adjustment; lengths: (16,) or (T, 16)
    metres used for the adjustment; fps; frame: ``camera`` or ``world`` (what the lifter gave, see
    :data:`WORLD_LIKE_FRAMES`); mode: ``finetuned``/``lifter``/``poses`` (the paper's modes) or the lifter name;
    lifter, length_source, convention: names; lifter_poses: (T, 17, 3) metres in the lifter's own frame
    (``lifter_frame``), root-relative, or None.
    """

    stem: str
    video: str | None
    track: Track2D
    before: np.ndarray
    after: np.ndarray
    lengths: np.ndarray
    fps: float
    frame: str
    mode: str
    lifter: str
    length_source: str
    convention: str
    lifter_poses: np.ndarray | None = None
    lifter_frame: str = "camera (x right, y down, z forward), root-relative"

    @property
    def frame_indices(self) -> np.ndarray:
        """(T,) video frame index of each row."""
        return np.arange(self.track.start, self.track.start + len(self.track))

    @property
    def interpolated(self) -> list[int]:
        """Video frames whose 2D keypoints were interpolated (the person was not found)."""
        return [int(self.track.start + t) for a, b in self.track.gaps for t in range(a, b + 1)]


def export_poses(result: PoseExport, out: Path) -> dict[str, Path]:
    """``<stem>_poses_3d.npz`` + ``.json`` (module docstring)."""
    files = {"poses_npz": out / f"{result.stem}_poses_3d.npz", "poses_json": out / f"{result.stem}_poses_3d.json"}
    meta = {"joint_names": JOINT_NAMES, "parents": PARENTS.tolist(), "bone_names": BONE_NAMES,
            "units": "metres", "frame": WORLD_LIKE_FRAMES[result.frame], "fps": result.fps, "mode": result.mode,
            "lifter": result.lifter, "lengths": result.length_source, "joint_convention": result.convention,
            "video": result.video, "keypoints_2d_units": "pixels of the video",
            "poses_before": "lifter output, its own bone lengths", "poses_after": "bone lengths adjusted"}
    frames, interpolated = result.frame_indices, result.interpolated
    save_npz(files["poses_npz"], poses_before=result.before, poses_after=result.after,
             keypoints_2d=result.track.positions, confidence_2d=result.track.confidence, frame_indices=frames,
             bone_lengths=result.lengths, interpolated_frames=np.asarray(interpolated, dtype=np.int64),
             metadata=meta)
    save_json(files["poses_json"], {**meta, "frame_indices": frames.tolist(), "interpolated_frames": interpolated,
                                    "poses_before": np.round(result.before, 5).tolist(),
                                    "poses_after": np.round(result.after, 5).tolist(),
                                    "keypoints_2d": np.round(result.track.positions, 2).tolist()})
    return files


def export_lengths(result: PoseExport, out: Path) -> dict[str, Path]:
    """``<stem>_bone_lengths.json`` + ``.png`` (module docstring)."""
    files = {"lengths_json": out / f"{result.stem}_bone_lengths.json",
             "lengths_png": out / f"{result.stem}_bone_lengths.png"}
    lengths, before = result.lengths, bone_lengths(result.before)
    save_json(files["lengths_json"], {
        "bone_names": BONE_NAMES, "units": "metres", "source": result.length_source,
        "joint_convention": result.convention,
        "predicted": (dict(zip(BONE_NAMES, np.round(lengths, 5).tolist())) if lengths.ndim == 1
                      else {"per_frame": np.round(lengths, 5).tolist(), "frame_indices": result.frame_indices.tolist()}),
        "before_mean": dict(zip(BONE_NAMES, np.round(before.mean(0), 5).tolist())),
        "before_std": dict(zip(BONE_NAMES, np.round(before.std(0), 5).tolist()))})
    plot_bone_lengths_over_time(before, bone_lengths(result.after), result.fps, files["lengths_png"])
    return files


def export_keypoints(result: PoseExport, out: Path) -> dict[str, Path]:
    """``<stem>_keypoints_2d.npz`` in VideoPose3D's custom layout; frames before the person appears are NaN."""
    path = out / f"{result.stem}_keypoints_2d.npz"
    track = result.track
    padded = np.concatenate([np.full((track.start, NUM_JOINTS, 2), np.nan, np.float32), track.positions])
    video_name = Path(result.video).name if result.video else result.stem
    save_npz(path, positions_2d={video_name: {"custom": [padded]}},
             metadata={"layout_name": "h36m", "num_joints": NUM_JOINTS,
                       "keypoints_symmetry": [JOINTS_LEFT, JOINTS_RIGHT],
                       "video_metadata": {video_name: {"w": track.width, "h": track.height}}})
    return {"keypoints_2d": path}


def export_lifter_poses(result: PoseExport, out: Path) -> dict[str, Path]:
    """``<stem>_lifter_poses.npz`` (key ``poses``), one pose per video frame from frame 0: a ``--poses`` input."""
    if result.lifter_poses is None:
        return {}
    path = out / f"{result.stem}_lifter_poses.npz"
    poses = result.lifter_poses
    save_npz(path, poses=np.concatenate([poses[:1].repeat(result.track.start, 0), poses]),
             metadata={"frame": result.lifter_frame, "units": "metres", "joint_names": JOINT_NAMES,
                       "mode": result.mode, "lifter": result.lifter, "joint_convention": result.convention})
    return {"lifter_poses": path}


def export_table(name: str) -> Callable[[PoseExport, Path], dict[str, Path]]:
    """The writer of one of :mod:`common.output.pose_tables`' formats (``bvh``, ``csv``, ``jsonl``) of the adjusted
    poses, in the frame of the npz/json."""
    def write(result: PoseExport, out: Path) -> dict[str, Path]:
        return write_pose_formats((name,), out / f"{result.stem}_poses_3d", result.after, result.lengths,
                                  result.frame_indices, result.fps, WORLD_LIKE_FRAMES[result.frame])
    return write


# name -> writer. inference.py always writes DEFAULT_EXPORTS, plus the formats named by --export.
EXPORTS: dict[str, Callable[[PoseExport, Path], dict[str, Path]]] = {
    "lifter_poses": export_lifter_poses,
    "poses": export_poses,
    "lengths": export_lengths,
    "keypoints": export_keypoints,
    "bvh": export_table("bvh"),
    "csv": export_table("csv"),
    "jsonl": export_table("jsonl"),
}
DEFAULT_EXPORTS = ("lifter_poses", "poses", "lengths", "keypoints")


def write_exports(result: PoseExport, out_dir: str | Path, formats: tuple[str, ...] = DEFAULT_EXPORTS
                  ) -> dict[str, Path]:
    """Write each export format named in ``formats`` under ``out_dir``; returns name -> path of every file."""
    files: dict[str, Path] = {}
    for name in formats:
        files.update(EXPORTS[name](result, Path(out_dir)))
    return files
