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

With ``--people all`` every person's files above are written with the stem ``<stem>_person<id>`` (one BVH per
person), and :func:`write_people_exports` writes everybody together: ``<stem>_people_3d.npz`` (a person axis:
``poses_after``/``poses_before`` (P, F, 17, 3) metres and ``keypoints_2d`` (P, F, 17, 2) pixels over the video's
frames 0..F-1, NaN where that person is absent, ``present``/``interpolated`` (P, F), ``identities`` (P,),
``bone_lengths`` (P, 16) or (P, F, 16)), and on request ``<stem>_people_3d.csv`` (a ``person`` column before
``frame``) and ``<stem>_people_3d.jsonl`` (a ``person`` key in every frame record; one record per person and
frame, in frame order).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from common.core.bones import bone_lengths
from common.core.camera import WORLD_LIKE_FRAMES
from common.utils.fileio import save_json, save_npz
from common.output.pose_tables import (CSV_COLUMNS, DECIMALS, JsonLinesWriter, jsonl_header, jsonl_record,
                                       write_pose_formats)
from common.core.skeleton import BONE_NAMES, JOINT_NAMES, JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS, PARENTS
from common.vision.tracking import Track2D
from common.output.visualization import plot_bone_lengths_over_time


# export name -> {file key: file-name suffix after "<stem>_"}: every file an export writes
EXPORT_FILES: dict[str, dict[str, str]] = {
    "lifter_poses": {"lifter_poses": "lifter_poses.npz"},
    "poses": {"poses_npz": "poses_3d.npz", "poses_json": "poses_3d.json"},
    "lengths": {"lengths_json": "bone_lengths.json", "lengths_png": "bone_lengths.png"},
    "keypoints": {"keypoints_2d": "keypoints_2d.npz"},
    "bvh": {"bvh": "poses_3d.bvh"},
    "csv": {"csv": "poses_3d.csv"},
    "jsonl": {"jsonl": "poses_3d.jsonl"},
}


def export_paths(stem: str, out: str | Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """{file key: path} of every file the exports named in ``formats`` write under ``out`` (known before the
    run, so that the paths can be checked against the inputs first)."""
    return {key: Path(out) / f"{stem}_{suffix}" for name in formats for key, suffix in EXPORT_FILES[name].items()}


@dataclass
class PoseExport:
    """What an inference run exports.

    stem: file-name stem (the video's); video: its path or None; track: the followed person's 2D;
    before/after: (T, 17, 3) metres, world-like frame, before and after adjustment; lengths: (16,) or (T, 16)
    metres used for the adjustment; fps; frame: ``camera`` or ``world`` (what the lifter gave, see
    :data:`WORLD_LIKE_FRAMES`); mode: ``finetuned``/``lifter``/``poses`` (the paper's modes) or the lifter name;
    lifter, length_source, convention: names; lifter_poses: (T, 17, 3) metres in the lifter's own frame
    (``lifter_frame``), root-relative, or None; adjustment: how the lengths were applied (``nonrigid`` mode,
    ``rigid_bones``, where the ``size`` came from; :func:`common.inference.inference_pipeline.adjust_lengths`).
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
    adjustment: dict = field(default_factory=dict)

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
    files = export_paths(result.stem, out, ("poses",))
    meta = {"joint_names": JOINT_NAMES, "parents": PARENTS.tolist(), "bone_names": BONE_NAMES,
            "units": "metres", "frame": WORLD_LIKE_FRAMES[result.frame], "fps": result.fps, "mode": result.mode,
            "lifter": result.lifter, "lengths": result.length_source, "joint_convention": result.convention,
            "video": result.video, "keypoints_2d_units": "pixels of the video", "adjustment": result.adjustment,
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
    files = export_paths(result.stem, out, ("lengths",))
    lengths, before = result.lengths, bone_lengths(result.before)
    save_json(files["lengths_json"], {
        "bone_names": BONE_NAMES, "units": "metres", "source": result.length_source,
        "joint_convention": result.convention, "adjustment": result.adjustment,
        "predicted": (dict(zip(BONE_NAMES, np.round(lengths, 5).tolist())) if lengths.ndim == 1
                      else {"per_frame": np.round(lengths, 5).tolist(), "frame_indices": result.frame_indices.tolist()}),
        "before_mean": dict(zip(BONE_NAMES, np.round(before.mean(0), 5).tolist())),
        "before_std": dict(zip(BONE_NAMES, np.round(before.std(0), 5).tolist()))})
    plot_bone_lengths_over_time(before, bone_lengths(result.after), result.fps, files["lengths_png"])
    return files


def export_keypoints(result: PoseExport, out: Path) -> dict[str, Path]:
    """``<stem>_keypoints_2d.npz`` in VideoPose3D's custom layout; frames before the person appears are NaN."""
    path = export_paths(result.stem, out, ("keypoints",))["keypoints_2d"]
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
    path = export_paths(result.stem, out, ("lifter_poses",))["lifter_poses"]
    poses = result.lifter_poses
    save_npz(path, poses=np.concatenate([poses[:1].repeat(result.track.start, 0), poses]),
             metadata={"frame": result.lifter_frame, "units": "metres", "joint_names": JOINT_NAMES,
                       "mode": result.mode, "lifter": result.lifter, "joint_convention": result.convention})
    return {"lifter_poses": path}


def export_table(name: str) -> Callable[[PoseExport, Path], dict[str, Path]]:
    """The writer of one of :mod:`common.output.pose_tables`' formats (``bvh``, ``csv``, ``jsonl``) of the adjusted
    poses, in the frame of the npz/json."""
    def write(result: PoseExport, out: Path) -> dict[str, Path]:
        return write_pose_formats((name,), export_paths(result.stem, out, (name,))[name].with_suffix(""),
                                  result.after, result.lengths, result.frame_indices, result.fps,
                                  WORLD_LIKE_FRAMES[result.frame])
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


PEOPLE_TABLES = ("csv", "jsonl")  # with --people all: one file for everybody (a person column) instead of one each


def write_people_exports(stem: str, people: list, video: str | None, fps: float, frame: str, meta: dict,
                         out_dir: str | Path, formats: tuple[str, ...] = ()) -> dict[str, Path]:
    """Everybody's adjusted poses in one npz with a person axis, plus the requested :data:`PEOPLE_TABLES` (module
    docstring). people: :class:`common.inference.inference_pipeline.PersonResult` list (identity, track,
    poses_before/poses_after (T, 17, 3) world-like metres over the track's frames, lengths (16,) or (T, 16))."""
    from common.utils.fileio import atomic_write

    out = Path(out_dir)
    frames = max(p.track.start + len(p.track) for p in people)

    def video_frames(values: np.ndarray, p) -> np.ndarray:
        full = np.full((frames,) + values.shape[1:], np.nan, np.float32)
        full[p.track.start:p.track.start + len(p.track)] = values
        return full

    present = np.zeros((len(people), frames), bool)
    interpolated = np.zeros((len(people), frames), bool)
    for k, p in enumerate(people):
        present[k, p.track.start:p.track.start + len(p.track)] = True
        for a, b in p.track.gaps:
            interpolated[k, p.track.start + a:p.track.start + b + 1] = True
    lengths = [np.asarray(p.lengths) for p in people]
    constant = all(length.ndim == 1 for length in lengths)
    after = np.stack([video_frames(p.poses_after, p) for p in people])
    identities = np.array([p.identity for p in people], np.int64)
    files = {"people_npz": out / f"{stem}_people_3d.npz"}
    description = WORLD_LIKE_FRAMES[frame]
    save_npz(files["people_npz"], poses_after=after, poses_before=np.stack([video_frames(p.poses_before, p)
                                                                            for p in people]),
             keypoints_2d=np.stack([video_frames(p.track.positions, p) for p in people]),
             confidence_2d=np.stack([video_frames(p.track.confidence, p) for p in people]),
             present=present, interpolated=interpolated, identities=identities,
             bone_lengths=(np.stack(lengths) if constant
                           else np.stack([video_frames(np.broadcast_to(l, (len(p.track), len(BONE_NAMES))), p)
                                          for l, p in zip(lengths, people)])),
             metadata={"joint_names": JOINT_NAMES, "parents": PARENTS.tolist(), "bone_names": BONE_NAMES,
                       "units": "metres", "frame": description, "fps": fps, "video": video,
                       "axes": "person, video frame, joint, xyz", **meta})
    person_index, frame_index = np.nonzero(present.T)[::-1]  # every (person, frame) present, in frame order
    order = np.lexsort((person_index, frame_index))
    person_index, frame_index = person_index[order], frame_index[order]
    if "csv" in formats:
        files["people_csv"] = out / f"{stem}_people_3d.csv"
        table = np.concatenate([identities[person_index, None].astype(np.float64), frame_index[:, None],
                                after[person_index, frame_index].reshape(len(order), -1)], axis=1)
        header = [f"# BLAPose 3D poses of every person, one row per person and video frame: person id, frame "
                  "index, then <joint>_<axis> in metres", f"# coordinate frame: {description}", f"# fps: {fps:g}",
                  ",".join(["person"] + CSV_COLUMNS)]
        text = io.StringIO()
        text.write("\n".join(header) + "\n")
        np.savetxt(text, table, fmt=["%d", "%d"] + [f"%.{DECIMALS}f"] * (3 * NUM_JOINTS), delimiter=",")
        atomic_write(files["people_csv"], lambda fh: fh.write(text.getvalue().encode()))
    if "jsonl" in formats:
        files["people_jsonl"] = out / f"{stem}_people_3d.jsonl"
        with JsonLinesWriter(files["people_jsonl"]) as writer:
            writer.write(jsonl_header(description, fps, people=identities.tolist()))
            for k, f in zip(person_index, frame_index):
                length = lengths[k] if lengths[k].ndim == 1 else lengths[k][f - people[k].track.start]
                writer.write(jsonl_record(f, f / fps, after[k, f], length, person=int(identities[k])))
    return files
