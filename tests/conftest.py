"""Shared pytest fixtures.

``demo_dir``: a folder holding a SMALL demo dataset (``data_3d_demo.npz``, ``data_2d_demo_gt.npz``,
``data_2d_demo_detections.npz``; 7 subjects S1, S5, S6, S7, S8, S9, S11, two 640-frame sequences each) built by
:func:`common.datasets.demo.build.build_demo_dataset` with :data:`common.datasets.demo.config.SMALL_CONFIG`. It is cached under
``${BLAPOSE_CACHE:-~/.cache/blapose}/test_demo_<fingerprint>`` (the fingerprint changes with the builder's
code), so only the first run pays the ~15 s build. Treat it as read-only: copy it before writing into it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from common.datasets.demo.build import build_demo_dataset
from common.datasets.demo.config import SMALL_CONFIG
from common.datasets.demo.manifest import demo_is_current
from common.utils.downloads import cache_dir

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
