"""Per-frame tables of 17-joint 3D poses: CSV (one row per frame) and JSON lines (one object per frame).

CSV: ``#`` comment lines first (what the numbers are: units, coordinate frame, frame rate, bone lengths),
then a header row ``frame,pelvis_x,pelvis_y,pelvis_z,r_hip_x,...,r_wrist_z`` (joints in
:data:`common.core.skeleton.JOINT_NAMES` order) and one row per frame: the video frame index, then the 51
coordinates in metres. ``pandas.read_csv(path, comment="#")`` or ``numpy.loadtxt(path, delimiter=",",
skiprows=...)`` read it.

JSON lines: the first line is ``{"header": {...}}`` (joint and bone names, units, coordinate frame, fps);
every following line is one frame: ``{"frame": int, "time_s": float, "joints": [[x, y, z] x 17] | null,
"lengths": [16 floats]}`` (``joints`` is null on a frame without the person); extra keys may follow
(``detected``, ``latency_ms`` in live mode). Metres, rounded to 0.01 mm.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from common.utils.fileio import atomic_write, check_array
from common.core.skeleton import BONE_NAMES, JOINT_NAMES, NUM_BONES, NUM_JOINTS

DECIMALS = 5  # metres -> 0.01 mm
CSV_COLUMNS = ["frame"] + [f"{joint}_{axis}" for joint in JOINT_NAMES for axis in "xyz"]


def csv_text(poses: np.ndarray, frames: np.ndarray, frame_description: str, fps: float,
             lengths: np.ndarray | None = None) -> str:
    """CSV content for poses (T, 17, 3) metres at video frame indices ``frames`` (T,).

    frame_description: the coordinate frame, written in a comment line; lengths: (16,) metres (constant)
    or None, written in a comment line.
    """
    poses = check_array("poses", poses, (None, NUM_JOINTS, 3), finite=False)
    frames = np.asarray(frames, dtype=np.int64)
    if frames.shape != (len(poses),):
        raise ValueError(f"expected {len(poses)} frame indices, got shape {frames.shape}")
    comments = ["BLAPose 3D poses, one row per video frame: frame index, then <joint>_<axis> in metres",
                f"coordinate frame: {frame_description}", f"fps: {fps:g}"]
    if lengths is not None and np.ndim(lengths) == 1:
        comments.append("bone lengths (m): " + " ".join(f"{n}={v:.{DECIMALS}f}" for n, v in zip(BONE_NAMES, lengths)))
    out = io.StringIO()
    out.write("".join(f"# {line}\n" for line in comments))
    out.write(",".join(CSV_COLUMNS) + "\n")
    table = np.concatenate([frames[:, None].astype(np.float64), poses.reshape(len(poses), -1)], axis=1)
    np.savetxt(out, table, fmt=["%d"] + [f"%.{DECIMALS}f"] * (3 * NUM_JOINTS), delimiter=",")
    return out.getvalue()


def write_csv(path: str | Path, poses: np.ndarray, frames: np.ndarray, frame_description: str, fps: float,
              lengths: np.ndarray | None = None) -> Path:
    """Atomically write :func:`csv_text` to ``path``."""
    text = csv_text(poses, frames, frame_description, fps, lengths)
    atomic_write(path, lambda fh: fh.write(text.encode()))
    return Path(path)


def jsonl_header(frame_description: str, fps: float, **extra: Any) -> dict:
    """The first line of a JSON-lines file: names, units and the coordinate frame (plus ``extra`` keys)."""
    return {"header": {"joint_names": JOINT_NAMES, "bone_names": BONE_NAMES, "units": "metres",
                       "frame": frame_description, "fps": fps, **extra}}


def jsonl_record(frame: int, time_s: float, joints: np.ndarray | None, lengths: np.ndarray | None,
                 **extra: Any) -> dict:
    """One frame's JSON object: joints (17, 3) metres or None, lengths (16,) metres or None (not known yet),
    rounded to 0.01 mm."""
    return {"frame": int(frame), "time_s": round(float(time_s), 6),
            "joints": None if joints is None else np.round(np.asarray(joints, np.float64), DECIMALS).tolist(),
            "lengths": None if lengths is None else np.round(np.asarray(lengths, np.float64), DECIMALS).tolist(),
            **extra}


def _jsonl_line(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


class JsonLinesWriter:
    """Stream JSON lines to an open text stream (e.g. stdout; flushed per line) or to a file, durably: the file
    is created (replacing what the path held) and every line is appended with one ``write`` system call as it
    comes, so a killed process leaves every line it wrote complete on disk (at most the line in flight is
    missing)."""

    def __init__(self, target: str | Path | IO[str]):
        self._stream: IO[str] | None = target if hasattr(target, "write") else None  # type: ignore[assignment]
        self._fd: int | None = None
        if self._stream is None:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o666)

    def write(self, obj: dict) -> None:
        line = _jsonl_line(obj)
        if self._fd is None:
            self._stream.write(line)
            self._stream.flush()
            return
        data = line.encode()
        while data:  # a regular file takes it in one call; loop for the rare partial write
            data = data[os.write(self._fd, data):]

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "JsonLinesWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def jsonl_text(lines: list[dict]) -> str:
    """JSON lines of ``lines`` as one string (the format :class:`JsonLinesWriter` streams)."""
    return "".join(_jsonl_line(obj) for obj in lines)


def write_jsonl(path: str | Path, poses: np.ndarray, frames: np.ndarray, fps: float, lengths: np.ndarray,
                frame_description: str) -> Path:
    """Atomically write a JSON-lines file: header + one line per frame. poses (T, 17, 3) metres, frames (T,)
    video frame indices (time = frame / fps), lengths (16,) constant or (T, 16) per frame, metres."""
    poses = check_array("poses", poses, (None, NUM_JOINTS, 3), finite=False)
    lengths = np.broadcast_to(np.asarray(lengths, np.float64), (len(poses), NUM_BONES))
    text = jsonl_text([jsonl_header(frame_description, fps)] + [jsonl_record(frame, frame / fps, pose, length)
                       for frame, pose, length in zip(np.asarray(frames), poses, lengths)])
    atomic_write(path, lambda fh: fh.write(text.encode()))
    return Path(path)


def read_jsonl(path: str | Path) -> tuple[dict, list[dict]]:
    """Read a JSON-lines pose file back: (header dict, list of frame dicts)."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines or "header" not in lines[0]:
        raise ValueError(f"{path}: the first line is not a header object")
    return lines[0]["header"], lines[1:]
