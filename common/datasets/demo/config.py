"""Parameters of a demo build (:class:`DemoConfig`), their fingerprint, and which subject performs which clip."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.datasets.dataset import TEST_SUBJECTS, TRAIN_SUBJECTS
from common.datasets.demo.motion import CLIP_BY_KEY, TEST_CLIPS, TRAIN_CLIPS
from common.utils.errors import UserError

BUILDER_VERSION = 1
# modules of common/ (paths below it, besides this package) whose code shapes the demo files
SOURCES_OUTSIDE = ("datasets/keypoint_noise.py", "datasets/mocap.py", "core/camera.py", "core/bones.py")


@dataclass
class DemoConfig:
    """Builder parameters. ``frames``: per sequence (50 fps); ``train_clips_per_subject``: each training subject
    performs that many of ``train_clips`` (rotating so every clip is covered); test subjects perform all of
    ``test_clips``; ``seed`` seeds every random draw of the build (subjects' lengths, headings, 2D noise). The
    MocapBank BVH's path is an argument of :func:`common.datasets.demo.build.build_demo_dataset`, not a
    parameter."""

    frames: int = 1200
    train_clips: list[str] = field(default_factory=lambda: list(TRAIN_CLIPS))
    test_clips: list[str] = field(default_factory=lambda: list(TEST_CLIPS))
    train_clips_per_subject: int = 10
    seed: int = 2024

    def fingerprint(self) -> str:
        """Hash of the parameters and of the builder's source code (changes whenever either does)."""
        h = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        package = Path(__file__).parent
        for source in [*sorted(package.glob("*.py")), *(package.parents[1] / m for m in SOURCES_OUTSIDE)]:
            h.update(source.read_bytes())
        h.update(str(BUILDER_VERSION).encode())
        return h.hexdigest()[:16]


SMALL_CONFIG = DemoConfig(frames=640, train_clips=["walk", "jump"], test_clips=["walker_left1", "dance_b"],
                          train_clips_per_subject=2)



def subject_assignments(config: DemoConfig) -> dict[str, list[str]]:
    """subject -> clip keys. Training subjects rotate through ``train_clips``; test subjects do ``test_clips``."""
    overlap = set(config.train_clips) & set(config.test_clips)
    if overlap:
        raise UserError(f"clips {sorted(overlap)} cannot be both training and test clips")
    unknown = [k for k in config.train_clips + config.test_clips if k not in CLIP_BY_KEY]
    if unknown:
        raise UserError(f"unknown clip(s) {unknown}; known: {sorted(CLIP_BY_KEY)}")
    n = len(config.train_clips)
    per = min(config.train_clips_per_subject, n)
    out = {}
    for i, subject in enumerate(TRAIN_SUBJECTS):
        start = (i * n) // len(TRAIN_SUBJECTS)
        out[subject] = [config.train_clips[(start + k) % n] for k in range(per)]
    for subject in TEST_SUBJECTS:
        out[subject] = list(config.test_clips)
    return out
