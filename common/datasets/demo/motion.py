"""Motion sources of the demo dataset: the clip catalogue and clips played for a number of frames.

Each clip is real motion capture (DeepMimic files shipped in ``pybullet_data``, or the MocapBank BVH of the
bvhtoolbox sdist), read by :mod:`common.datasets.mocap`, resampled to :data:`FPS` and unrolled to the requested length:
looping clips repeat their cycle (each cycle continuing rigidly from where the previous one ended), the others
play forwards then backwards. Poses: (T, 17, 3) metres, world frame, Z up.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.utils.downloads import BVH_MEMBER, BVH_SDIST
from common.utils.errors import UserError
from common.datasets.mocap import Motion, forward_kinematics, load_bvh, load_deepmimic, resample

FPS = 50


@dataclass(frozen=True)
class Clip:
    """A motion clip: ``source`` 'deepmimic' (path relative to ``pybullet_data/data/motions``) or 'bvh'
    (the MocapBank file of the bvhtoolbox sdist); ``action`` its action name (category = first word)."""

    key: str
    source: str
    path: str
    action: str


CLIPS = [
    Clip("walk", "deepmimic", "humanoid3d_walk.txt", "Walking"),
    Clip("walker_forward", "deepmimic", "walker/0walk_forward.txt", "Walking Forward"),
    Clip("walker_left0", "deepmimic", "walker/turn_left0.txt", "Walking TurnLeft"),
    Clip("walker_right1", "deepmimic", "walker/turn_right1.txt", "Walking TurnRight"),
    Clip("run", "deepmimic", "humanoid3d_run.txt", "Running"),
    Clip("jump", "deepmimic", "humanoid3d_jump.txt", "Jumping"),
    Clip("kick", "deepmimic", "humanoid3d_kick.txt", "Kicking"),
    Clip("punch", "deepmimic", "humanoid3d_punch.txt", "Punching"),
    Clip("spin", "deepmimic", "humanoid3d_spin.txt", "Spinning"),
    Clip("spinkick", "deepmimic", "humanoid3d_spinkick.txt", "Kicking Spin"),
    Clip("backflip", "deepmimic", "humanoid3d_backflip.txt", "Backflip"),
    Clip("cartwheel", "deepmimic", "humanoid3d_cartwheel.txt", "Cartwheel"),
    Clip("crawl", "deepmimic", "humanoid3d_crawl.txt", "Crawling"),
    Clip("roll", "deepmimic", "humanoid3d_roll.txt", "Rolling"),
    Clip("dance_a", "deepmimic", "humanoid3d_dance_a.txt", "Dancing A"),
    Clip("getup_faceup", "deepmimic", "humanoid3d_getup_faceup.txt", "GettingUp FaceUp"),
    # held out: only the test subjects perform these
    Clip("walker_left1", "deepmimic", "walker/turn_left1.txt", "Walking TurnLeft"),
    Clip("walker_right0", "deepmimic", "walker/turn_right0.txt", "Walking TurnRight"),
    Clip("dance_b", "deepmimic", "humanoid3d_dance_b.txt", "Dancing B"),
    Clip("getup_facedown", "deepmimic", "humanoid3d_getup_facedown.txt", "GettingUp FaceDown"),
    Clip("mocapbank", "bvh", BVH_MEMBER, "Kneeling MocapBank"),
]
CLIP_BY_KEY = {c.key: c for c in CLIPS}
TEST_CLIPS = ["walker_left1", "walker_right0", "dance_b", "getup_facedown", "mocapbank"]
TRAIN_CLIPS = [c.key for c in CLIPS if c.key not in TEST_CLIPS]


def pybullet_motion_dir() -> Path:
    import pybullet_data
    return Path(pybullet_data.getDataPath())


def load_clip(clip: Clip, bvh_path: Path | None) -> Motion:
    if clip.source == "deepmimic":
        root = pybullet_motion_dir()
        return load_deepmimic(root / "data" / "motions" / clip.path, root / "humanoid" / "humanoid.urdf")
    if bvh_path is None:
        raise UserError(f"clip {clip.key} needs the MocapBank BVH ({BVH_SDIST} sdist)")
    return load_bvh(bvh_path)


def rot_z(theta: np.ndarray) -> np.ndarray:
    """Rotation matrices about +Z: theta (...) radians -> (..., 3, 3)."""
    c, s = np.cos(theta), np.sin(theta)
    zero, one = np.zeros_like(theta), np.ones_like(theta)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                     np.stack([zero, zero, one], -1)], -2)


def _yaw_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Yaw angle and xy translation of the rigid motion about Z best mapping source (J, 3) onto target."""
    a = source[:, :2] - source[:, :2].mean(0)
    b = target[:, :2] - target[:, :2].mean(0)
    angle = np.arctan2(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]), np.sum(a * b))
    shift = target[:, :2].mean(0) - rot_z(np.array(angle))[:2, :2] @ source[:, :2].mean(0)
    return float(angle), shift


def unrolled_clip(motion: Motion, frames: int) -> np.ndarray:
    """Play a clip for ``frames`` frames at :data:`FPS`: (frames, 17, 3) metres, Z up, continuous.

    Looping clips repeat their cycle, each cycle rigidly moved (yaw + xy) to continue where the previous one
    ended, with the small pose mismatch between a clip's last and first frame faded in over the cycle; other
    clips play forwards then backwards (a continuous 'ping-pong')."""
    t = np.arange(frames) / FPS
    period = motion.duration
    if motion.loop:
        cycle = np.floor(t / period).astype(int)
        tau = np.clip(t - cycle * period, 0.0, period)
    else:
        cycle = np.zeros(frames, dtype=int)
        tau = period - np.abs(period - np.mod(t, 2 * period))
    poses = forward_kinematics(resample(motion, tau))
    if motion.loop:
        ends = forward_kinematics(resample(motion, np.array([0.0, period])))
        angle, shift = _yaw_fit(ends[0], ends[1])
        # loop closure: a clip's last pose rarely equals its first exactly; fade the pelvis-relative mismatch
        # in over the cycle so that consecutive cycles join without a jump
        mismatch = ends[0] @ rot_z(np.array(angle)).T - ends[1]
        mismatch[:, :2] += shift
        poses += (tau / period)[:, None, None] * (mismatch - mismatch[:1])[None]
        count = cycle.max() + 1
        rot = rot_z(angle * np.arange(count))  # (C, 3, 3): cycle c is rotated by c·angle
        steps = np.einsum("cij,j->ci", rot[:, :2, :2], shift)  # translation added when entering cycle c + 1
        offsets = np.concatenate([np.zeros((1, 2)), np.cumsum(steps[:-1], axis=0)])
        poses = np.einsum("tij,tkj->tki", rot[cycle], poses)
        poses[..., :2] += offsets[cycle][:, None]
    return poses
