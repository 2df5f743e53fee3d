"""Shared pytest fixtures.

``demo_dir``: a folder holding a SMALL demo dataset (``data_3d_demo.npz``, ``data_2d_demo_gt.npz``,
``data_2d_demo_detections.npz``; 7 subjects S1, S5, S6, S7, S8, S9, S11, two 640-frame sequences each) built by
:func:`common.datasets.demo.build.build_demo_dataset` with :data:`common.datasets.demo.config.SMALL_CONFIG`. It is cached under
``${BLAPOSE_CACHE:-~/.cache/blapose}/test_demo_<fingerprint>`` (the fingerprint changes with the builder's
code), so only the first run pays the ~15 s build. Treat it as read-only: copy it before writing into it.

``real_clip``: the first :data:`helpers.CLIP_FRAMES` frames of the demo video. ``data_dir``: a tiny dataset
"tiny" (:data:`helpers.TINY_SUBJECTS`, ground-truth 2D) for ``train.py -t pose`` (:func:`helpers.pose_argv`).
``mix_setup``: a dataset "mixtiny" with published-layout length and lifter checkpoints for ``train.py -t mix``
(:func:`helpers.mix_flags`). Plain helpers shared by several modules are in ``helpers.py``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import torch

from common.datasets.demo.build import build_demo_dataset
from common.datasets.demo.config import SMALL_CONFIG
from common.datasets.demo.manifest import demo_is_current
from common.models.length_model import BoneLengthModel
from common.models.model import TemporalModel
from common.utils.checkpoint import save_checkpoint
from common.utils.downloads import cache_dir, fetch_demo_video
from common.vision.video import VideoReader, VideoWriter
from dataset_files import write_dataset
from helpers import CLIP_FRAMES, MIX_SUBJECTS, TINY_SUBJECTS

ROOT = Path(__file__).resolve().parents[1]

STALE_AFTER_S = 24 * 3600


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    target = cache_dir() / f"test_demo_{SMALL_CONFIG.fingerprint()}"
    if demo_is_current(target, SMALL_CONFIG) is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".test_demo_", dir=target.parent))
        build_demo_dataset(staging, SMALL_CONFIG, progress=False)
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)  # atomic: concurrent test runs never see a half-written folder
        except OSError:  # another run won the race and its copy is equally valid
            shutil.rmtree(staging, ignore_errors=True)
        # built by other versions of the builder: removed once a day old (a checkout of another version may be
        # running its tests from its own folder right now)
        for stale in target.parent.glob("test_demo_*"):
            if stale != target and time.time() - stale.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(stale, ignore_errors=True)
    return target


def _demo_video() -> Path | None:
    for candidate in (ROOT / "data" / "demo.mp4", cache_dir() / "demo.mp4"):
        if candidate.is_file():
            return candidate
    try:
        return fetch_demo_video(cache_dir() / "demo.mp4")
    except Exception:  # noqa: BLE001 - no network / no fetcher: the real-clip tests are skipped
        return None


@pytest.fixture(scope="session")
def real_clip(tmp_path_factory) -> Path:
    """The first 24 frames of the Sports2D demo video (a man standing on a box), re-encoded once."""
    source = _demo_video()
    if source is None:
        pytest.skip("demo video unavailable (run setup.py or allow pip download of sports2d)")
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    reader = VideoReader(source, max_frames=CLIP_FRAMES)
    with VideoWriter(path, reader.info.width, reader.info.height, reader.info.fps) as writer:
        for frame in reader:
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """data_3d_tiny.npz (world, metres) and data_2d_tiny_gt.npz (pixels, projected through the H36M cameras)."""
    return write_dataset(tmp_path_factory.mktemp("tiny"), "tiny", TINY_SUBJECTS, frames=[48, 56], detections_px=None)


@pytest.fixture(scope="module")
def mix_setup(tmp_path_factory) -> Path:
    """Small dataset + a published-layout length checkpoint (biGRU_all.bin) and lifter checkpoint
    (pretrained_h36m_cpn.bin, -arc 3,3,3,3,3 with 32 channels) in a checkpoint folder."""
    root = tmp_path_factory.mktemp("mix")
    write_dataset(root, "mixtiny", {s: ["Walking 1", "Eating"] for s in MIX_SUBJECTS}, frames=90,
                  detections_px=None)
    ckpt = root / "checkpoint"
    ckpt.mkdir()
    torch.manual_seed(0)
    length_model = BoneLengthModel(embed_dim=256, hidden_size=16, num_layers=1, dropout=0.0, bidirectional=True)
    with torch.no_grad():
        length_model.fc.weight.abs_().mul_(0.02)
    save_checkpoint(ckpt / "biGRU_all.bin", {"epoch": 1, "lr": 1e-3, "model_pos": length_model.state_dict()})
    lifter = TemporalModel(17, 2, 17, [3, 3, 3, 3, 3], channels=32)
    save_checkpoint(ckpt / "pretrained_h36m_cpn.bin", {"epoch": 80, "lr": 1e-5, "model_pos": lifter.state_dict()})
    return root
