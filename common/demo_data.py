"""The embedded demo dataset: real motion capture, per-subject bodies, Human3.6M cameras, VideoPose3D files.

What :func:`build_demo_dataset` makes (see ``data/DEMO_DATA.md``, written next to the files):

* ``data_3d_demo.npz``: ``positions_3d`` -> ``subject -> action -> (T, 32, 3)`` float32, world frame (Z up),
  metres, 50 fps. The 17 used joints sit at :data:`common.skeleton.H36M_32_TO_17`; the 15 others copy a
  neighbour (toes/sites = ankle, hand sites = wrist, shoulder anchors = thorax, joint 11 = pelvis).
* ``data_2d_demo_gt.npz``: ``positions_2d`` -> ``subject -> action -> [4 × (T, 17, 2)]`` pixels, the exact
  projection (with lens distortion) through the subject's four Human3.6M cameras; ``metadata``.
* ``data_2d_demo_detections.npz``: the same plus detector-like noise (:func:`detector_noise`).

Motion: each clip (DeepMimic or BVH, :mod:`common.mocap`) is resampled to 50 fps, looped (``wrap`` clips, each
cycle continuing from where the previous one ended) or played back and forth (other clips) to the requested
length, split into unit bone directions, steered on a gentle curve (a constant yaw rate, so the trajectory
stays in the capture volume), and recomposed with the subject's own bone lengths; the pelvis trajectory is
scaled by the subject's leg length over the clip's. The lowest joint of the sequence is put at
:data:`LOWEST_JOINT_HEIGHT` above the floor, and the placement (start heading, yaw rate, position) is the
first of a seeded list of candidates for which every joint stays inside all four images at positive depth.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.signal import lfilter
from tqdm import tqdm

from common.bones import bone_directions, bone_lengths, recompose
from common.camera import Camera, load_cameras
from common.dataset import TEST_SUBJECTS, TRAIN_SUBJECTS
from common.errors import UserError
from common.fileio import atomic_write, save_npz
from common.mocap import Motion, forward_kinematics, load_bvh, load_deepmimic, resample
from common.skeleton import BONE_NAMES, FLIP_JOINTS, H36M_32_TO_17, JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS

BUILDER_VERSION = 1
FPS = 50
LOWEST_JOINT_HEIGHT = 0.07  # metres: height of the lowest joint centre (ankle, knee or wrist) over a sequence
IMAGE_MARGIN_PX = 10.0
COMFORT_MARGIN_PX = 40.0  # placements scoring this margin are taken in seeded order (see build_sequence)
MIN_DEPTH_M = 0.5

# ----------------------------------------------------------------------------------------------- sources
BVH_SDIST = "bvhtoolbox==0.1.3"
BVH_MEMBER = "bvhtoolbox-0.1.3/tests/example_files/test_mocapbank.bvh"
VIDEO_WHEEL = "sports2d==0.8.34"
VIDEO_MEMBER = "Sports2D/Demo/demo.mp4"


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
SUBJECT_NUMBERS = {"S1": 1, "S5": 5, "S6": 6, "S7": 7, "S8": 8, "S9": 9, "S11": 11}

# ----------------------------------------------------------------------------------------------- bodies
# Mean adult bone lengths (metres, order of common.skeleton.BONE_NAMES), close to Human3.6M's subjects' means.
MEAN_BONE_LENGTHS = np.array([0.133, 0.447, 0.447, 0.133, 0.447, 0.447, 0.233, 0.256, 0.114, 0.115,
                              0.150, 0.280, 0.250, 0.150, 0.280, 0.250])
# Bones sharing one random factor (left/right pairs share theirs: the bodies are symmetric).
BONE_GROUPS = [[0, 3], [1, 4], [2, 5], [6], [7], [8], [9], [10, 13], [11, 14], [12, 15]]
STATURE_SD, STATURE_CLIP = 0.05, 0.12  # global scale factor ~ N(1, 0.05) clipped to 1 ± 0.12
BONE_SD, BONE_CLIP = 0.04, 0.10  # per-group factor ~ N(1, 0.04) clipped to 1 ± 0.10

# ----------------------------------------------------------------------------------------------- 2D noise
# Detector-like noise std per joint (pixels): larger at the extremities, as for real 2D detectors.
NOISE_STD_PX = np.array([2.5, 3.0, 4.0, 5.0, 3.0, 4.0, 5.0, 2.5, 2.5, 3.0, 3.5, 3.0, 4.0, 6.0, 3.0, 4.0, 6.0])
NOISE_AR = 0.85  # AR(1) coefficient per frame at 50 fps (correlation time ~0.12 s)
OUTLIER_RATE_HZ = 0.25  # outlier events per second per camera view
SWAP_GROUPS = [[13], [12, 13], [6], [5, 6]]  # left joints swapped with their right partners (wrists, arms, ...)
SWAP_FRAMES = (3, 10)  # left/right swap duration, frames (inclusive range)
JUMP_FRAMES = (2, 6)
JUMP_PX = (15.0, 40.0)
# The 15 Human3.6M joints that the 17-joint layout drops, filled with a copy of a neighbour (32-index: source).
EXTRA_32_FROM = {4: 3, 5: 3, 9: 8, 10: 8, 11: 0, 16: 13, 20: 19, 21: 19, 22: 19, 23: 19, 24: 13,
                 28: 27, 29: 27, 30: 27, 31: 27}


@dataclass
class DemoConfig:
    """Builder parameters. ``frames``: per sequence (50 fps); ``train_clips_per_subject``: each training subject
    performs that many of ``train_clips`` (rotating so every clip is covered); test subjects perform all of
    ``test_clips``. ``bvh_path``: the MocapBank BVH (needed only if a chosen clip uses it)."""

    frames: int = 1200
    train_clips: list[str] = field(default_factory=lambda: list(TRAIN_CLIPS))
    test_clips: list[str] = field(default_factory=lambda: list(TEST_CLIPS))
    train_clips_per_subject: int = 10
    seed: int = 2024

    def fingerprint(self) -> str:
        """Hash of the parameters and of the builder's source code (changes whenever either does)."""
        h = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        for module in ("demo_data.py", "mocap.py", "camera.py", "bones.py"):
            h.update((Path(__file__).parent / module).read_bytes())
        h.update(str(BUILDER_VERSION).encode())
        return h.hexdigest()[:16]


SMALL_CONFIG = DemoConfig(frames=640, train_clips=["walk", "jump"], test_clips=["walker_left1", "dance_b"],
                          train_clips_per_subject=2)


def cache_dir() -> Path:
    """``$BLAPOSE_CACHE`` or ``~/.cache/blapose``."""
    return Path(os.environ.get("BLAPOSE_CACHE", Path.home() / ".cache" / "blapose")).expanduser()


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


def sample_subject_bone_lengths(subject: str, seed: int) -> np.ndarray:
    """A subject's bone lengths (16,) metres: mean adult lengths × a stature factor × per-bone-group factors
    (left/right pairs share one factor). Seeded per subject, so subsets of the dataset agree."""
    rng = np.random.default_rng([seed, SUBJECT_NUMBERS[subject], 0])
    stature = 1.0 + np.clip(rng.normal(0.0, STATURE_SD), -STATURE_CLIP, STATURE_CLIP)
    lengths = MEAN_BONE_LENGTHS * stature
    factors = 1.0 + np.clip(rng.normal(0.0, BONE_SD, len(BONE_GROUPS)), -BONE_CLIP, BONE_CLIP)
    for group, factor in zip(BONE_GROUPS, factors):
        lengths[group] *= factor
    return lengths


# ----------------------------------------------------------------------------------------------- motion
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


def _rot_z(theta: np.ndarray) -> np.ndarray:
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
    shift = target[:, :2].mean(0) - _rot_z(np.array(angle))[:2, :2] @ source[:, :2].mean(0)
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
        mismatch = ends[0] @ _rot_z(np.array(angle)).T - ends[1]
        mismatch[:, :2] += shift
        poses += (tau / period)[:, None, None] * (mismatch - mismatch[:1])[None]
        count = cycle.max() + 1
        rot = _rot_z(angle * np.arange(count))  # (C, 3, 3): cycle c is rotated by c·angle
        steps = np.einsum("cij,j->ci", rot[:, :2, :2], shift)  # translation added when entering cycle c + 1
        offsets = np.concatenate([np.zeros((1, 2)), np.cumsum(steps[:-1], axis=0)])
        poses = np.einsum("tij,tkj->tki", rot[cycle], poses)
        poses[..., :2] += offsets[cycle][:, None]
    return poses


def steer(directions: np.ndarray, trajectory: np.ndarray, heading: np.ndarray,
          yaw_rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn a motion on a curve: frame k is rotated about Z by ``heading + yaw_rate·k/FPS`` and the pelvis
    trajectory integrates the rotated per-frame displacements (vectorised over K candidate placements).

    directions: (T, 16, 3); trajectory: (T, 3) metres; heading, yaw_rate: (K,) rad, rad/s.
    Returns directions (K, T, 16, 3) and trajectories (K, T, 3) starting at xy = 0."""
    theta = heading[:, None] + yaw_rate[:, None] * (np.arange(len(trajectory)) / FPS)[None]
    rot = _rot_z(theta)  # (K, T, 3, 3)
    dirs = np.einsum("ktij,tbj->ktbi", rot, directions)
    steps = np.diff(trajectory, axis=0, prepend=trajectory[:1])
    steps[:, 2] = 0.0
    xy = np.cumsum(np.einsum("ktij,tj->kti", rot, steps), axis=1)
    traj = xy + np.concatenate([np.zeros((len(trajectory), 2)), trajectory[:, 2:]], axis=1)[None]
    return dirs, traj


def image_margin(poses: np.ndarray, cameras: list[Camera]) -> np.ndarray:
    """poses (..., T, 17, 3) world metres -> (...) smallest distance (px) of any joint of any frame to the
    border of any camera's image; negative when a joint leaves an image, -inf when a joint is closer than
    :data:`MIN_DEPTH_M` to a camera (or behind it) or outside the range where the lens model is valid."""
    margin = np.full(poses.shape[:-3], np.inf)
    for cam in cameras:
        local = cam.world_to_camera(poses)
        depth = local[..., 2]
        pinhole = local[..., :2] / np.maximum(depth, 1e-6)[..., None]
        px = cam.project(local)
        border = np.minimum.reduce([px[..., 0], cam.res_w - px[..., 0], px[..., 1], cam.res_h - px[..., 1]])
        border = np.where((depth > MIN_DEPTH_M) & (np.abs(pinhole) < 0.9).all(-1), border, -np.inf)
        margin = np.minimum(margin, border.min(axis=(-1, -2)))
    return margin


class MarginField:
    """:func:`image_margin` of single points tabulated on a world grid (``step`` metres) around a camera rig,
    so that many candidate placements can be scored by table look-up (nearest grid node; points outside
    the grid score -inf). Exactness is restored by checking the chosen placement with :func:`image_margin`."""

    def __init__(self, cameras: list[Camera], step: float = 0.05, half_width: float = 3.0,
                 z_range: tuple[float, float] = (-0.2, 2.8)):
        centre = np.mean([cam.translation[:2] for cam in cameras], axis=0)
        self.step = step
        self.origin = np.array([centre[0] - half_width, centre[1] - half_width, z_range[0]])
        xs = np.arange(0.0, 2 * half_width + step / 2, step)
        zs = np.arange(0.0, z_range[1] - z_range[0] + step / 2, step)
        grid = np.stack(np.meshgrid(xs, xs, zs, indexing="ij"), -1) + self.origin  # (X, Y, Z, 3)
        self.table = image_margin(grid.reshape(-1, 1, 1, 3), cameras).reshape(grid.shape[:3])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """points (..., 3) world metres -> (...) approximate image margin in pixels."""
        idx = np.rint((points - self.origin) / self.step).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.array(self.table.shape)), axis=-1)
        idx = np.where(inside[..., None], idx, 0)
        return np.where(inside, self.table[idx[..., 0], idx[..., 1], idx[..., 2]], -np.inf)


def build_sequence(unrolled: np.ndarray, lengths: np.ndarray, cameras: list[Camera], loop: bool,
                   rng: np.random.Generator, field: MarginField | None = None, candidates: int = 24,
                   search_stride: int = 8, tries: int = 10) -> np.ndarray:
    """One subject's sequence from an unrolled clip (T, 17, 3): (T, 17, 3) metres, world frame, Z up.

    The clip's bone directions are recomposed with ``lengths`` (16,); its pelvis trajectory is scaled by the
    leg-length ratio. ``candidates`` seeded (heading, yaw rate) pairs are each tried at a 9×9 grid of
    positions within ±0.8 m of the camera rig's centre, scored on every ``search_stride``-th frame by the
    :class:`MarginField` of the rig. The first candidate (seeded order) whose best position scores
    :data:`COMFORT_MARGIN_PX` is taken, else the widest-margin placement, provided it passes the exact check
    (every joint of every frame inside all four images by :data:`IMAGE_MARGIN_PX`); else RuntimeError.
    Looping clips turn on a circle of radius 0.6-1.5 m, back-and-forth clips slowly (<= 0.15 rad/s)."""
    field = field or MarginField(cameras)
    legs = [1, 2, 4, 5]  # thighs and calves
    trajectory = unrolled[:, 0] * (lengths[legs].mean() / bone_lengths(unrolled)[:, legs].mean())
    speed = np.linalg.norm(np.diff(trajectory[:, :2], axis=0), axis=-1).mean() * FPS
    heading = rng.uniform(-np.pi, np.pi, candidates)
    sign = rng.choice([-1.0, 1.0], candidates)
    turn = speed / rng.uniform(0.6, 1.5, candidates) if loop else rng.uniform(0.0, 0.15, candidates)
    dirs, traj = steer(bone_directions(unrolled), trajectory, heading, sign * turn)
    poses = recompose(dirs, lengths) + traj[:, :, None]
    poses[..., 2] += LOWEST_JOINT_HEIGHT - poses[..., 2].min(axis=(1, 2))[:, None, None]
    box_centre = (poses[..., :2].min(axis=(1, 2)) + poses[..., :2].max(axis=(1, 2))) / 2
    poses[..., :2] -= box_centre[:, None, None]
    rig_centre = np.mean([cam.translation[:2] for cam in cameras], axis=0)
    grid = np.linspace(-0.8, 0.8, 9)
    offsets = rig_centre + np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
    shift = np.concatenate([offsets, np.zeros((len(offsets), 1))], axis=1)[:, None, None]  # (G, 1, 1, 3)
    score = np.stack([field(candidate[::search_stride] + shift).min(axis=(-1, -2)) for candidate in poses])
    # first the candidates in their seeded order (so headings and turning radii stay varied) if they fit
    # comfortably, then the widest-margin placements overall
    first = [(k, int(np.argmax(score[k]))) for k in range(candidates) if score[k].max() >= COMFORT_MARGIN_PX]
    widest = [np.unravel_index(flat, score.shape) for flat in np.argsort(-score, axis=None)[:tries]]
    for k, g in first[:tries] + widest:
        if not np.isfinite(score[k, g]):
            break
        best = poses[k].copy()
        best[..., :2] += offsets[g]
        if image_margin(best, cameras) >= IMAGE_MARGIN_PX:
            return best
    raise RuntimeError("no placement keeps the person inside all four cameras")


# ----------------------------------------------------------------------------------------------- 2D
def project_views(world: np.ndarray, cameras: list[Camera]) -> list[np.ndarray]:
    """world (T, 17, 3) metres -> [4 × (T, 17, 2) float32 pixels], exact projection with distortion."""
    return [cam.project(cam.world_to_camera(world.astype(np.float32))).astype(np.float32) for cam in cameras]


def detector_noise(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Detector-like 2D keypoints from exact ones. gt: (V, T, 17, 2) pixels -> (V, T, 17, 2) pixels.

    1. AR(1) noise per view/joint/axis, coefficient :data:`NOISE_AR`, stationary std :data:`NOISE_STD_PX`.
    2. Outlier events (Poisson, :data:`OUTLIER_RATE_HZ` per view): half are left/right swaps of a joint group
       (:data:`SWAP_GROUPS`, :data:`SWAP_FRAMES` frames), half are jumps of one joint by :data:`JUMP_PX`
       pixels in a random direction for :data:`JUMP_FRAMES` frames.
    """
    views, frames = gt.shape[:2]
    burn_in = 100
    white = rng.normal(size=(views, frames + burn_in, NUM_JOINTS, 2))
    ar = lfilter([np.sqrt(1 - NOISE_AR ** 2)], [1.0, -NOISE_AR], white, axis=1)[:, burn_in:]
    out = gt + ar * NOISE_STD_PX[None, None, :, None]

    events = rng.poisson(OUTLIER_RATE_HZ * frames / FPS, views)
    n = int(events.sum())
    view = np.repeat(np.arange(views), events)
    start = rng.integers(0, frames, n)
    is_swap = rng.random(n) < 0.5
    duration = np.where(is_swap, rng.integers(SWAP_FRAMES[0], SWAP_FRAMES[1] + 1, n),
                        rng.integers(JUMP_FRAMES[0], JUMP_FRAMES[1] + 1, n))
    t = np.arange(frames)
    active = (t[None] >= start[:, None]) & (t[None] < (start + duration)[:, None])  # (n, T)
    view_onehot = np.arange(views)[None] == view[:, None]  # (n, V)

    group = rng.integers(0, len(SWAP_GROUPS), n)
    for g, left_joints in enumerate(SWAP_GROUPS):
        swapped = np.einsum("nv,nt->vt", view_onehot & (is_swap & (group == g))[:, None], active) > 0  # (V, T)
        lj, rj = left_joints, [int(FLIP_JOINTS[j]) for j in left_joints]
        original = out.copy()
        out[:, :, lj] = np.where(swapped[..., None, None], original[:, :, rj], original[:, :, lj])
        out[:, :, rj] = np.where(swapped[..., None, None], original[:, :, lj], original[:, :, rj])

    joint = rng.integers(0, NUM_JOINTS, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    size = rng.uniform(*JUMP_PX, n) * ~is_swap
    vec = np.stack([np.cos(angle), np.sin(angle)], -1) * size[:, None]  # (n, 2)
    joint_onehot = (np.arange(NUM_JOINTS)[None] == joint[:, None]).astype(float)
    out += np.einsum("nv,nt,nj,nd->vtjd", view_onehot.astype(float), active.astype(float), joint_onehot, vec)
    return out.astype(np.float32)


def to_32_joints(poses: np.ndarray) -> np.ndarray:
    """(T, 17, 3) -> (T, 32, 3) in Human3.6M's 32-joint layout (unused joints copy a neighbour)."""
    out = np.zeros((poses.shape[0], 32, 3), dtype=np.float32)
    out[:, H36M_32_TO_17] = poses
    for target, source in EXTRA_32_FROM.items():
        out[:, target] = out[:, source]
    return out


# ----------------------------------------------------------------------------------------------- building
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


def build_demo_dataset(out_dir: str | Path, config: DemoConfig = DemoConfig(), bvh_path: Path | None = None,
                       progress: bool = True, write_notes: bool = True) -> DemoSummary:
    """Build the three demo npz files (and ``DEMO_DATA.md``, ``demo_manifest.json``) into ``out_dir``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the many small camera projections run far faster single-threaded
    try:
        return _build(Path(out_dir), config, bvh_path, progress, write_notes)
    finally:
        torch.set_num_threads(threads)


def _build(out_dir: Path, config: DemoConfig, bvh_path: Path | None, progress: bool,
           write_notes: bool) -> DemoSummary:
    started = time.time()
    cameras = load_cameras()
    fields = {}
    assignments = subject_assignments(config)
    keys = sorted({k for ks in assignments.values() for k in ks})
    if "mocapbank" in keys and bvh_path is None:
        bvh_path = fetch_bvh()
    motions = {k: load_clip(CLIP_BY_KEY[k], bvh_path) for k in keys}
    unrolled = {k: unrolled_clip(m, config.frames) for k, m in motions.items()}
    loops = {k: m.loop for k, m in motions.items()}

    positions_3d, gt_2d, det_2d = {}, {}, {}
    lengths_by_subject, frames = {}, {}
    jobs = [(s, k) for s, ks in assignments.items() for k in ks]
    for subject, key in tqdm(jobs, desc="demo sequences", disable=not progress):
        lengths = sample_subject_bone_lengths(subject, config.seed)
        lengths_by_subject[subject] = lengths
        number = SUBJECT_NUMBERS[subject]
        rng = np.random.default_rng([config.seed, number, 1 + CLIPS.index(CLIP_BY_KEY[key])])
        if subject not in fields:
            fields[subject] = MarginField(cameras[subject])
        world = build_sequence(unrolled[key], lengths, cameras[subject], loops[key], rng, fields[subject])
        action = CLIP_BY_KEY[key].action
        positions_3d.setdefault(subject, {})[action] = to_32_joints(world)
        views = project_views(world, cameras[subject])
        gt_2d.setdefault(subject, {})[action] = views
        noisy = detector_noise(np.stack(views), rng)
        det_2d.setdefault(subject, {})[action] = list(noisy)
        frames.setdefault(subject, {})[action] = int(len(world))

    metadata = {"layout_name": "h36m", "num_joints": NUM_JOINTS, "keypoints_symmetry": [JOINTS_LEFT, JOINTS_RIGHT]}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npz(out_dir / FILES[0], positions_3d=positions_3d)
    save_npz(out_dir / FILES[1], positions_2d=gt_2d, metadata=metadata)
    save_npz(out_dir / FILES[2], positions_2d=det_2d, metadata=metadata)
    summary = DemoSummary({s: {CLIP_BY_KEY[k].action: k for k in ks} for s, ks in assignments.items()}, frames,
                          {s: [float(v) for v in lengths_by_subject[s]] for s in assignments},
                          time.time() - started, config.fingerprint())
    if write_notes:
        atomic_write(out_dir / "DEMO_DATA.md", lambda fh: fh.write(demo_notes(config, summary).encode()))
    write_manifest(out_dir, config, summary)
    return summary


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


# ----------------------------------------------------------------------------------------------- fetching
def pip_download(requirement: str, dest: Path, sdist: bool, timeout: float = 300) -> Path:
    """``pip download --no-deps`` one distribution into ``dest`` (cached: reused when present)."""
    dest.mkdir(parents=True, exist_ok=True)
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}*" if not sdist else f"{name}-{version}.tar.gz"
    found = sorted(dest.glob(pattern))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        raise UserError(f"could not download {requirement} from PyPI (network unreachable?)") from None
    found = sorted(dest.glob(pattern))
    if not found:
        raise UserError(f"pip download of {requirement} produced no file in {dest}")
    return found[0]


def fetch_bvh() -> Path:
    """The MocapBank BVH from the bvhtoolbox sdist, extracted into the cache; returns its path."""
    target = cache_dir() / "test_mocapbank.bvh"
    if target.is_file():
        return target
    sdist = pip_download(BVH_SDIST, cache_dir() / "dists", sdist=True)
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(BVH_MEMBER)
        if member is None:
            raise UserError(f"{sdist} has no {BVH_MEMBER}")
        data = member.read()
    atomic_write(target, lambda fh: fh.write(data))
    return target


def fetch_demo_video(out_path: str | Path) -> Path:
    """Extract ``Sports2D/Demo/demo.mp4`` from the sports2d wheel (downloaded to the cache) to ``out_path``."""
    out_path = Path(out_path)
    wheel = pip_download(VIDEO_WHEEL, cache_dir() / "dists", sdist=False)
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(VIDEO_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"{wheel}: cannot extract {VIDEO_MEMBER} ({exc})") from None
    atomic_write(out_path, lambda fh: fh.write(data))
    return out_path


def demo_notes(config: DemoConfig, summary: DemoSummary) -> str:
    """The provenance/licence note written next to the files (``DEMO_DATA.md``)."""
    rows = []
    for subject, actions in summary.clips.items():
        split = "train" if subject in TRAIN_SUBJECTS else "test"
        rows += [f"| {subject} | {split} | {action} | {CLIP_BY_KEY[k].source}: `{CLIP_BY_KEY[k].path}` "
                 f"| {summary.frames[subject][action]} |" for action, k in actions.items()]
    length_rows = [f"| {s} | " + " | ".join(f"{v * 1000:.0f}" for v in ls) + " |"
                   for s, ls in summary.bone_lengths.items()]
    return "\n".join([
        "# Demo dataset (embedded default, `-d demo`)",
        "",
        f"Built by `setup.py` (`common/demo_data.py`, builder version {BUILDER_VERSION}, fingerprint "
        f"`{summary.fingerprint}`, seed {config.seed}). Deterministic: rebuilding "
        "gives the same numbers. Format: VideoPose3D's preprocessed Human3.6M files (see README).",
        "",
        f"{len(summary.clips)} subjects, {summary.num_sequences} sequences, {summary.num_frames} frames "
        f"at {FPS} fps, 4 cameras each. S1, S5, S6, S7, S8 train; S9, S11 test. The test subjects perform only "
        f"clips no training subject performs ({', '.join(config.test_clips)}).",
        "",
        "## Provenance: clip -> subject/action",
        "",
        "| subject | split | action | source clip | frames |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "## Motion",
        "",
        "Real motion capture: DeepMimic clips from `pybullet_data` (pybullet 3.2.7, `data/motions/`), forward "
        "kinematics through `pybullet_data/humanoid/humanoid.urdf` (offsets × 0.25), and the MocapBank BVH "
        "`tests/example_files/test_mocapbank.bvh` of the bvhtoolbox 0.1.3 sdist (own parser, cm -> m). Joints "
        "map to Human3.6M's 17 (nose and head top placed as fixed points in the head/neck frame). Each clip is "
        f"resampled to {FPS} fps (slerp), looped (wrap clips; each cycle continues rigidly from the last) or "
        f"played forwards then backwards (other clips) to {config.frames} frames, split into unit bone "
        "directions, recomposed with the subject's bone lengths (`common.bones.recompose`), steered on a "
        "constant yaw rate (looping clips on circles of radius 0.6-1.5 m, the others <= 0.15 rad/s), the "
        "pelvis trajectory scaled by the leg-length ratio, the "
        f"lowest joint of the sequence {LOWEST_JOINT_HEIGHT} m above the floor (Z up), and placed near the "
        "centre of the subject's four Human3.6M cameras with a random heading: of 24 seeded (heading, yaw rate) "
        "candidates, each tried at 81 positions within ±0.8 m of the rig's centre, the one with the widest "
        f"image margin is kept; every joint of every frame is inside every image (margin >= {IMAGE_MARGIN_PX:.0f} "
        f"px) at depth > {MIN_DEPTH_M} m. The 15 joints of the 32-joint layout that the 17-joint loader drops copy a "
        "neighbour (toes = ankle, hand sites = wrist, shoulder anchors = thorax, joint 11 = pelvis).",
        "",
        "## Bone lengths (mm), left/right symmetric, constant over time",
        "",
        f"Mean adult lengths × stature factor N(1, {STATURE_SD}) (clipped ±{STATURE_CLIP}) × one factor per "
        f"bone group N(1, {BONE_SD}) (clipped ±{BONE_CLIP}; left/right share theirs), seeded per subject.",
        "",
        "| subject | " + " | ".join(BONE_NAMES) + " |",
        "|---" * (len(BONE_NAMES) + 1) + "|",
        *length_rows,
        "",
        "## 2D keypoints",
        "",
        "* `data_2d_demo_gt.npz`: exact projection through each camera with its radial and tangential "
        "distortion (`common.camera.project_to_2d`), pixels.",
        "* `data_2d_demo_detections.npz` (detector-like): AR(1) noise per view, joint and axis with coefficient "
        f"{NOISE_AR} per frame and stationary std (px, joint order of common.skeleton) "
        f"{', '.join(f'{v:g}' for v in NOISE_STD_PX)}; plus outlier events, Poisson with {OUTLIER_RATE_HZ} "
        f"per second per view: half left/right swaps (wrists, elbow+wrist, ankles or knee+ankle) for "
        f"{SWAP_FRAMES[0]}-{SWAP_FRAMES[1]} frames, half jumps of one joint by {JUMP_PX[0]:g}-{JUMP_PX[1]:g} px "
        f"in a random direction for {JUMP_FRAMES[0]}-{JUMP_FRAMES[1]} frames.",
        "",
        "## Licences",
        "",
        "* DeepMimic motion clips and humanoid URDF: shipped in pybullet's `pybullet_data` (zlib licence).",
        "* MocapBank BVH: from the bvhtoolbox 0.1.3 sdist (MIT licence).",
        "* Camera parameters: Human3.6M's published calibration (as distributed with VideoPose3D); the "
        "Human3.6M images and motion are not used.",
        "* Demo video `data/demo.mp4`: from the sports2d 0.8.34 wheel (BSD-3-Clause).",
        "",
    ])
