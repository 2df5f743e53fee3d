"""Plain helpers shared by several test modules (fixtures live in conftest.py; datasets in dataset_files.py)."""
from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from common.core.skeleton import JOINT_NAMES
from common.output.bvh import TO_BVH_AXES

CLIP_FRAMES = 24  # frames of the ``real_clip`` fixture
TINY_SUBJECTS = {"S1": ["Walking", "Eating"], "S5": ["Walking 1", "Eating"], "S9": ["Walking", "Eating 1"],
                 "S11": ["Walking", "Eating"]}  # the ``data_dir`` fixture's dataset "tiny"
MIX_SUBJECTS = ["S1", "S5", "S9"]  # the ``mix_setup`` fixture's dataset "mixtiny"


def read_bvh_positions(path: str | Path) -> np.ndarray:
    """Joint positions (T, 17, 3) metres z-up of a BVH file, forward-kinematised by bvhio (an independent reader)."""
    bvhio = pytest.importorskip("bvhio")
    root = bvhio.readAsHierarchy(str(path))
    layout = root.layout()
    by_name = {joint.Name: joint for joint, _, _ in layout}
    frames = root.getKeyframeRange()[1] + 1
    out = np.zeros((frames, len(JOINT_NAMES), 3))
    for f in range(frames):
        root.loadPose(f)
        out[f] = [list(by_name[name].PositionWorld) for name in JOINT_NAMES]
    return out / 100.0 @ TO_BVH_AXES  # cm, y up -> metres, z up


def pose_argv(data_dir: Path, ckpt: Path, *extra: str) -> list[str]:
    """``train.py -t pose`` flags for a small lifter on the ``data_dir`` fixture's dataset."""
    return ["-t", "pose", "-d", "tiny", "-k", "gt", "--data_dir", str(data_dir), "-str", "S1,S5", "-ste", "S9,S11",
            "-arc", "3,3", "-ch", "16", "-b", "64", "-lr", "1e-3", "-c", str(ckpt), "--device", "cpu", *extra]


def mix_flags(root: Path, *extra: str) -> list[str]:
    """``train.py -t mix`` data and model-size flags for the ``mix_setup`` fixture's dataset."""
    return ["-d", "mixtiny", "-k", "gt", "--data_dir", str(root), "-str", "S1,S5", "-ste", "S9",
            "-ch", "32", "--hidden", "16", "--device", "cpu", *extra]


def free_port() -> str:
    """A TCP port free on this machine now, for ``torchrun --master_port`` (a fixed port collides with other
    test runs on a shared machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def standing_motion(lengths: np.ndarray, frames: int, pelvis_height: float = 1.0) -> np.ndarray:
    """(frames, 17, 3) metres, world frame, Z up: a body with these bone ``lengths`` (16,) standing upright at
    the origin (legs and arms straight down, hips and shoulders sideways), its left upper arm swinging once a
    second at 50 fps."""
    from common.core.bones import recompose

    t = np.arange(frames) / 50.0
    directions = np.zeros((frames, 16, 3))
    directions[:, [1, 2, 4, 5, 11, 12, 14, 15], 2] = -1.0  # legs and arms down
    directions[:, [0, 13], 0], directions[:, [3, 10], 0] = -1.0, 1.0  # right hip and shoulder to -x, left to +x
    directions[:, [6, 7, 8, 9], 2] = 1.0  # spine and head up
    directions[:, 11, 1] = np.sin(2 * np.pi * t)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return recompose(directions, np.asarray(lengths, dtype=np.float64)) + np.array([0.0, 0.0, pelvis_height])
