"""What a demo build made, and the manifest that tells whether a folder holds a current build.

``demo_manifest.json`` (next to the files) records the builder's fingerprint (its parameters and source code),
the SHA-256 of every file and the :class:`DemoSummary`; :func:`demo_is_current` compares them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common.demo.config import BUILDER_VERSION, DemoConfig
from common.demo.motion import FPS
from common.fileio import atomic_write
from common.skeleton import BONE_NAMES

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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out_dir: Path, config: DemoConfig, summary: DemoSummary) -> None:
    manifest = {"builder_version": BUILDER_VERSION, "fingerprint": config.fingerprint(), "config": asdict(config),
                "files": {name: file_sha256(out_dir / name) for name in FILES},
                "summary": asdict(summary)}
    atomic_write(out_dir / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))


def read_manifest(out_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def demo_is_current(out_dir: str | Path, config: DemoConfig = DemoConfig()) -> DemoSummary | None:
    """The recorded summary if ``out_dir`` holds files built by this builder with ``config`` and unchanged
    since (fingerprint and file hashes match); else None."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if not manifest or manifest.get("fingerprint") != config.fingerprint():
        return None
    for name, digest in manifest.get("files", {}).items():
        path = out_dir / name
        if not path.is_file() or file_sha256(path) != digest:
            return None
    return DemoSummary(**manifest["summary"])
