"""Files written by ``inference.py`` and ``export_poses.py``: every export format in one registry.

An export is one entry of :data:`EXPORTS`: the files it writes (file key -> name after ``<stem>_``) and a writer
``(result: PoseExport, paths: {file key: path}) -> {file key: path written}``; a new format is one such entry.
``inference.py`` always writes :data:`DEFAULT_EXPORTS`; every other entry is a format on request (``inference.py
--export`` and ``export_poses.py --format``, both read by :func:`parse_export_formats`). A format on request reads
only the adjusted poses, their lengths, frames and frame (``export_poses.py`` has no 2D track and no poses before
adjustment, and names its files ``<stem>.<extension>``, :func:`table_paths`). All files are written atomically.
Formats:

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
* on request: ``bvh``, ``csv``, ``jsonl`` — the adjusted poses as
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

from common.core.bones import bone_lengths, final_lengths
from common.core.camera import WORLD_LIKE_FRAMES
from common.utils.fileio import atomic_write, save_json, save_npz
from common.output.bvh import write_bvh
from common.output.pose_tables import (CSV_COLUMNS, DECIMALS, JsonLinesWriter, jsonl_header, jsonl_record, write_csv,
                                       write_jsonl)
from common.utils.errors import UserError
from common.core.skeleton import BONE_NAMES, JOINT_NAMES, JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS, PARENTS
from common.vision.tracking import Track2D
from common.output.visualization import plot_bone_lengths_over_time


@dataclass
class PoseExport:
    """What a run exports (``export_poses.py``: only stem, after, lengths, fps, frame, frames, frame_description).

    stem: file-name stem (the video's); video: its path or None; track: the followed person's 2D;
    before/after: (T, 17, 3) metres, world-like frame, before and after adjustment; lengths: (16,) or (T, 16)
    metres used for the adjustment; fps; frame: ``camera`` or ``world`` (what the lifter gave, see
    :data:`WORLD_LIKE_FRAMES`); mode: ``finetuned``/``lifter``/``poses`` (the paper's modes) or the lifter name;
    lifter, length_source, convention: names; lifter_poses: (T, 17, 3) metres in the lifter's own frame
    (``lifter_frame``), root-relative, or None; adjustment: how the lengths were applied (``nonrigid`` mode,
    ``rigid_bones``, where the ``size`` came from; :func:`common.inference.inference_pipeline.adjust_lengths`);
    frames: (T,) video frame of each row (default: the track's); frame_description: the frame of ``after`` in
    words (default: :data:`WORLD_LIKE_FRAMES` of ``frame``).
    """

    stem: str
    video: str | None
    track: Track2D | None
    before: np.ndarray | None
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
    frames: np.ndarray | None = None
    frame_description: str | None = None

    @property
    def frame_indices(self) -> np.ndarray:
        """(T,) video frame index of each row."""
        if self.frames is not None:
            return np.asarray(self.frames)
        return np.arange(self.track.start, self.track.start + len(self.track))

    @property
    def interpolated(self) -> list[int]:
        """Video frames whose 2D keypoints were interpolated (the person was not found)."""
        return [int(self.track.start + t) for a, b in self.track.gaps for t in range(a, b + 1)]

    @property
    def description(self) -> str:
        """The coordinate frame of ``after`` in words."""
        return self.frame_description or WORLD_LIKE_FRAMES[self.frame]


def export_poses(result: PoseExport, files: dict[str, Path]) -> dict[str, Path]:
    """``<stem>_poses_3d.npz`` + ``.json`` (module docstring)."""
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


def export_lengths(result: PoseExport, files: dict[str, Path]) -> dict[str, Path]:
    """``<stem>_bone_lengths.json`` + ``.png`` (module docstring)."""
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


def export_keypoints(result: PoseExport, files: dict[str, Path]) -> dict[str, Path]:
    """``<stem>_keypoints_2d.npz`` in VideoPose3D's custom layout; frames before the person appears are NaN."""
    path = files["keypoints_2d"]
    track = result.track
    padded = np.concatenate([np.full((track.start, NUM_JOINTS, 2), np.nan, np.float32), track.positions])
    video_name = Path(result.video).name if result.video else result.stem
    save_npz(path, positions_2d={video_name: {"custom": [padded]}},
             metadata={"layout_name": "h36m", "num_joints": NUM_JOINTS,
                       "keypoints_symmetry": [JOINTS_LEFT, JOINTS_RIGHT],
                       "video_metadata": {video_name: {"w": track.width, "h": track.height}}})
    return {"keypoints_2d": path}


def export_lifter_poses(result: PoseExport, files: dict[str, Path]) -> dict[str, Path]:
    """``<stem>_lifter_poses.npz`` (key ``poses``), one pose per video frame from frame 0: a ``--poses`` input."""
    if result.lifter_poses is None:
        return {}
    path = files["lifter_poses"]
    poses = result.lifter_poses
    save_npz(path, poses=np.concatenate([poses[:1].repeat(result.track.start, 0), poses]),
             metadata={"frame": result.lifter_frame, "units": "metres", "joint_names": JOINT_NAMES,
                       "mode": result.mode, "lifter": result.lifter, "joint_convention": result.convention})
    return {"lifter_poses": path}


def export_bvh(result: PoseExport, files: dict[str, Path]) -> dict[str, Path]:
    """The adjusted poses as a BVH animation (:mod:`common.output.bvh`; z up). A BVH skeleton has one set of
    offsets: the lengths after the whole sequence, as absolute values (the lengths an adjusted pose has when a
    model predicted a negative one)."""
    write_bvh(files["bvh"], result.after, np.abs(final_lengths(np.asarray(result.lengths, np.float64))), result.fps)
    return files


def export_csv(result: PoseExport, files: dict[str, Path]) -> dict[str, Path]:
    """The adjusted poses, one CSV row per frame (:func:`common.output.pose_tables.write_csv`)."""
    lengths = np.asarray(result.lengths, np.float64)
    write_csv(files["csv"], result.after, result.frame_indices, result.description, result.fps,
              lengths if lengths.ndim == 1 else None)
    return files


def export_jsonl(result: PoseExport, files: dict[str, Path]) -> dict[str, Path]:
    """The adjusted poses, one JSON line per frame (:func:`common.output.pose_tables.write_jsonl`)."""
    write_jsonl(files["jsonl"], result.after, result.frame_indices, result.fps, np.asarray(result.lengths, np.float64),
                result.description)
    return files


@dataclass(frozen=True)
class ExportFormat:
    """One export format: the files it writes (file key -> file name after ``<stem>_``) and its writer
    ``(result, {file key: path}) -> {file key: path written}``."""

    files: dict[str, str]
    write: Callable[[PoseExport, dict[str, Path]], dict[str, Path]]
    # with --people all: one file for everybody (``<stem>_people_3d.<suffix>``) written by ``write_people(table,
    # path)`` instead of one file per person; None: one file per person as without --people all
    write_people: Callable[[PeopleTable, Path], None] | None = None


@dataclass
class PeopleTable:
    """Everybody's adjusted poses over the video's frames, in frame order then person order: rows ``person_index``
    (R,) and ``frame_index`` (R,) into ``poses`` (P, F, 17, 3) metres (``description``'s frame); ``identities``
    (P,); ``lengths`` per person (16,) or (T_person, 16) metres over the person's track from ``starts[k]``."""

    identities: np.ndarray
    person_index: np.ndarray
    frame_index: np.ndarray
    poses: np.ndarray
    lengths: list[np.ndarray]
    starts: list[int]
    description: str
    fps: float


def _people_csv(table: PeopleTable, path: Path) -> None:
    """One CSV row per person and video frame: person id, frame index, then the joints' coordinates."""
    rows = np.concatenate([table.identities[table.person_index, None].astype(np.float64), table.frame_index[:, None],
                           table.poses[table.person_index, table.frame_index].reshape(len(table.person_index), -1)],
                          axis=1)
    header = [f"# BLAPose 3D poses of every person, one row per person and video frame: person id, frame "
              "index, then <joint>_<axis> in metres", f"# coordinate frame: {table.description}",
              f"# fps: {table.fps:g}", ",".join(["person"] + CSV_COLUMNS)]
    text = io.StringIO()
    text.write("\n".join(header) + "\n")
    np.savetxt(text, rows, fmt=["%d", "%d"] + [f"%.{DECIMALS}f"] * (3 * NUM_JOINTS), delimiter=",")
    atomic_write(path, lambda fh: fh.write(text.getvalue().encode()))


def _people_jsonl(table: PeopleTable, path: Path) -> None:
    """A header line, then one JSON record per person and video frame with a ``person`` key."""
    with JsonLinesWriter(path) as writer:
        writer.write(jsonl_header(table.description, table.fps, people=table.identities.tolist()))
        for k, f in zip(table.person_index, table.frame_index):
            lengths = table.lengths[k]
            length = lengths if lengths.ndim == 1 else lengths[f - table.starts[k]]
            writer.write(jsonl_record(f, f / table.fps, table.poses[k, f], length, person=int(table.identities[k])))




# name -> format: the one registry of exports. inference.py always writes DEFAULT_EXPORTS; the others are formats on
# request (inference.py --export, export_poses.py --format).
EXPORTS: dict[str, ExportFormat] = {
    "lifter_poses": ExportFormat({"lifter_poses": "lifter_poses.npz"}, export_lifter_poses),
    "poses": ExportFormat({"poses_npz": "poses_3d.npz", "poses_json": "poses_3d.json"}, export_poses),
    "lengths": ExportFormat({"lengths_json": "bone_lengths.json", "lengths_png": "bone_lengths.png"}, export_lengths),
    "keypoints": ExportFormat({"keypoints_2d": "keypoints_2d.npz"}, export_keypoints),
    "bvh": ExportFormat({"bvh": "poses_3d.bvh"}, export_bvh),
    "csv": ExportFormat({"csv": "poses_3d.csv"}, export_csv, write_people=_people_csv),
    "jsonl": ExportFormat({"jsonl": "poses_3d.jsonl"}, export_jsonl, write_people=_people_jsonl),
}
DEFAULT_EXPORTS = ("lifter_poses", "poses", "lengths", "keypoints")


def requestable_formats() -> tuple[str, ...]:
    """The formats on request: every entry of :data:`EXPORTS` but :data:`DEFAULT_EXPORTS`."""
    return tuple(name for name in EXPORTS if name not in DEFAULT_EXPORTS)


def parse_export_formats(text: str | None, flag: str = "--export") -> tuple[str, ...]:
    """``bvh,csv,jsonl`` -> a tuple of formats on request (empty for None/''); one-line error naming ``flag``
    for any other name."""
    formats = tuple(f.strip().lower() for f in (text or "").split(",") if f.strip())
    unknown = sorted(set(formats) - set(requestable_formats()))
    if unknown:
        raise UserError(f"{flag}: unknown format(s) {unknown}; use a comma-separated subset of "
                        f"{', '.join(requestable_formats())}")
    return formats


def export_paths(stem: str, out: str | Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """{file key: path} of every file the exports named in ``formats`` write under ``out``: ``<stem>_<name>``
    (known before the run, so that the paths can be checked against the inputs first)."""
    return {key: Path(out) / f"{stem}_{name}" for fmt in formats for key, name in EXPORTS[fmt].files.items()}


def table_paths(stem: str | Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """{file key: path} for ``export_poses.py``: ``<stem>.<extension>`` (the extension of each file's name)."""
    stem = Path(stem)
    return {key: stem.with_name(stem.name + Path(name).suffix) for fmt in formats
            for key, name in EXPORTS[fmt].files.items()}


def write_exports(result: PoseExport, paths: dict[str, Path], formats: tuple[str, ...] = DEFAULT_EXPORTS
                  ) -> dict[str, Path]:
    """Write each export format named in ``formats`` to its files in ``paths`` ({file key: path},
    :func:`export_paths` or :func:`table_paths`); returns {file key: path} of every file written."""
    files: dict[str, Path] = {}
    for name in formats:
        files.update(EXPORTS[name].write(result, {key: paths[key] for key in EXPORTS[name].files}))
    return files


def everybody_formats() -> tuple[str, ...]:
    """Formats that, with ``--people all``, write one file for everybody (a person column or key) instead of one
    file per person: the :data:`EXPORTS` entries with a ``write_people``."""
    return tuple(name for name, fmt in EXPORTS.items() if fmt.write_people is not None)


def write_people_exports(stem: str, people: list, video: str | None, fps: float, frame: str, meta: dict,
                         out_dir: str | Path, formats: tuple[str, ...] = ()) -> dict[str, Path]:
    """Everybody's adjusted poses in one npz with a person axis, plus each requested format that writes one file
    for everybody (:func:`everybody_formats`; module docstring). people: :class:`common.inference.inference_pipeline.PersonResult` list (identity, track,
    poses_before/poses_after (T, 17, 3) world-like metres over the track's frames, lengths (16,) or (T, 16))."""
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
    table = PeopleTable(identities, person_index, frame_index, after, lengths, [p.track.start for p in people],
                        description, fps)
    for name in formats:
        fmt = EXPORTS[name]
        if fmt.write_people is not None:
            suffix = Path(next(iter(fmt.files.values()))).suffix
            files[f"people_{name}"] = out / f"{stem}_people_3d{suffix}"
            fmt.write_people(table, files[f"people_{name}"])
    return files
