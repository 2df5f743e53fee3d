"""What a demo build made, and the manifest that tells whether a folder holds a current build.

``demo_manifest.json`` (next to the files) records the builder's fingerprint (its parameters and source code),
the SHA-256 of every file it made (the npz files, ``DEMO_DATA.md``, and under ``video`` the fetched demo video)
and the :class:`DemoSummary`; :func:`stale_reason` / :func:`video_stale_reason` say what is out of date and why.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.datasets.demo.config import BUILDER_VERSION, DemoConfig
from common.datasets.demo.motion import FPS
from common.utils.fileio import atomic_write
from common.core.skeleton import BONE_NAMES

@dataclass
class DemoSummary:
    """What a build made: ``clips`` subject -> action -> clip key; ``frames`` subject -> action -> T;
    ``bone_lengths`` subject -> 16 lengths (metres); build ``seconds``; the config's ``fingerprint``."""

    clips: dict[str, dict[str, str]]
    frames: dict[str, dict[str, int]]
    bone_lengths: dict[str, list[float]]
    seconds: float
    fingerprint: str

    @property
    def num_sequences(self) -> int:
        return sum(len(a) for a in self.frames.values())

    @property
    def num_frames(self) -> int:
        return sum(sum(a.values()) for a in self.frames.values())

    def lines(self) -> list[str]:
        out = [f"demo dataset: {len(self.frames)} subjects, {self.num_sequences} sequences, "
               f"{self.num_frames} frames ({self.num_frames / FPS / 60:.1f} min at {FPS} fps) x 4 cameras, "
               f"built in {self.seconds:.1f} s"]
        out.append("bone lengths (mm): " + ", ".join(BONE_NAMES))
        for subject, actions in self.frames.items():
            mm = np.round(np.array(self.bone_lengths[subject]) * 1000).astype(int)
            out.append(f"  {subject:<4} {len(actions):>2} sequences {sum(actions.values()):>6} frames  "
                       + " ".join(f"{v:>3d}" for v in mm))
        return out


MANIFEST = "demo_manifest.json"
FILES = ["data_3d_demo.npz", "data_2d_demo_gt.npz", "data_2d_demo_detections.npz"]
NOTES = "DEMO_DATA.md"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out_dir: Path, config: DemoConfig, summary: DemoSummary) -> None:
    manifest = {"builder_version": BUILDER_VERSION, "fingerprint": config.fingerprint(), "config": asdict(config),
                "files": {name: file_sha256(out_dir / name) for name in FILES + [NOTES] if (out_dir / name).is_file()},
                "summary": asdict(summary)}
    video = (read_manifest(out_dir) or {}).get("video")
    if video:  # a rebuild of the data keeps the record of the fetched video
        manifest["video"] = video
    _save_manifest(out_dir, manifest)


def _save_manifest(out_dir: Path, manifest: dict) -> None:
    atomic_write(out_dir / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))


def read_manifest(out_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def stale_reason(out_dir: str | Path, config: DemoConfig = DemoConfig()) -> str | None:
    """Why ``out_dir`` does not hold a current build with ``config`` (one line naming the file and the cause,
    e.g. ``data/data_2d_demo_gt.npz changed since it was built (hash mismatch)``), or None when it does."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if not manifest:
        return f"{out_dir / MANIFEST} is missing or unreadable"
    if manifest.get("fingerprint") != config.fingerprint():
        return (f"{out_dir} was built with other parameters or builder code (fingerprint "
                f"{manifest.get('fingerprint')}, now {config.fingerprint()})")
    recorded = manifest.get("files", {})
    for name in FILES:
        if name not in recorded:
            return f"{out_dir / name} is not in {MANIFEST}"
    for name, digest in recorded.items():
        reason = _mismatch(out_dir / name, digest, "built")
        if reason is not None:
            return reason
    return None


def demo_is_current(out_dir: str | Path, config: DemoConfig = DemoConfig()) -> DemoSummary | None:
    """The recorded summary if ``out_dir`` holds files built by this builder with ``config`` and unchanged
    since (fingerprint and file hashes match, :func:`stale_reason`); else None."""
    if stale_reason(out_dir, config) is not None:
        return None
    return recorded_summary(out_dir)


def recorded_summary(out_dir: str | Path) -> DemoSummary:
    """The :class:`DemoSummary` the manifest records (call after :func:`stale_reason` said the build is current)."""
    return DemoSummary(**read_manifest(out_dir)["summary"])


def record_video(out_dir: str | Path, name: str) -> None:
    """Add the fetched video ``out_dir/name`` and its SHA-256 to the manifest (key ``video``)."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir) or {}
    manifest.setdefault("video", {})[name] = file_sha256(out_dir / name)
    _save_manifest(out_dir, manifest)


def video_stale_reason(out_dir: str | Path, name: str) -> str | None:
    """Why the video ``out_dir/name`` must be fetched again (missing, not recorded, or changed since it was
    fetched), or None when it is the recorded file."""
    digest = ((read_manifest(out_dir) or {}).get("video") or {}).get(name)
    return _mismatch(Path(out_dir) / name, digest, "fetched")


def _mismatch(path: Path, digest: str | None, made: str) -> str | None:
    """Why ``path`` is not the file recorded with SHA-256 ``digest`` (missing, not recorded, changed since it was
    ``made``), or None when it is."""
    if not path.is_file():
        return f"{path} is missing"
    if digest is None:
        return f"{path} is not in {MANIFEST}"
    if file_sha256(path) != digest:
        return f"{path} changed since it was {made} (hash mismatch)"
    return None
