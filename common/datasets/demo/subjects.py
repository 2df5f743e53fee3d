"""Subjects of the demo dataset and where they move: bodies, steering and placement in front of the cameras.

* :func:`sample_subject_bone_lengths` — each subject's body (16 bone lengths, metres, left/right equal);
* :func:`steer` — a clip turned on a gentle curve (constant yaw rate);
* :func:`build_sequence` — a clip recomposed with a subject's lengths, placed in the capture volume so that
  every joint of every frame stays inside all four camera images (:func:`image_margin`, :class:`MarginField`).
Poses: (T, 17, 3) metres, world frame, Z up.
"""
from __future__ import annotations

import numpy as np

from common.core.bones import bone_directions, bone_lengths, recompose
from common.core.camera import Camera
from common.datasets.demo.motion import FPS, rot_z

LOWEST_JOINT_HEIGHT = 0.07  # metres: height of the lowest joint centre (ankle, knee or wrist) over a sequence
IMAGE_MARGIN_PX = 10.0
COMFORT_MARGIN_PX = 40.0  # placements scoring this margin are taken in seeded order (see build_sequence)
MIN_DEPTH_M = 0.5

SUBJECT_NUMBERS = {"S1": 1, "S5": 5, "S6": 6, "S7": 7, "S8": 8, "S9": 9, "S11": 11}

# Mean adult bone lengths (metres, order of common.core.skeleton.BONE_NAMES), close to Human3.6M's subjects' means.
MEAN_BONE_LENGTHS = np.array([0.133, 0.447, 0.447, 0.133, 0.447, 0.447, 0.233, 0.256, 0.114, 0.115,
                              0.150, 0.280, 0.250, 0.150, 0.280, 0.250])
# Bones sharing one random factor (left/right pairs share theirs: the bodies are symmetric).
BONE_GROUPS = [[0, 3], [1, 4], [2, 5], [6], [7], [8], [9], [10, 13], [11, 14], [12, 15]]
STATURE_SD, STATURE_CLIP = 0.05, 0.12  # global scale factor ~ N(1, 0.05) clipped to 1 ± 0.12
BONE_SD, BONE_CLIP = 0.04, 0.10  # per-group factor ~ N(1, 0.04) clipped to 1 ± 0.10


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



def steer(directions: np.ndarray, trajectory: np.ndarray, heading: np.ndarray,
          yaw_rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn a motion on a curve: frame k is rotated about Z by ``heading + yaw_rate·k/FPS`` and the pelvis
    trajectory integrates the rotated per-frame displacements (vectorised over K candidate placements).

    directions: (T, 16, 3); trajectory: (T, 3) metres; heading, yaw_rate: (K,) rad, rad/s.
    Returns directions (K, T, 16, 3) and trajectories (K, T, 3) starting at xy = 0."""
    theta = heading[:, None] + yaw_rate[:, None] * (np.arange(len(trajectory)) / FPS)[None]
    rot = rot_z(theta)  # (K, T, 3, 3)
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
        # the table inside a border of -inf, flattened: a node index clipped to the border is "outside the grid"
        self._bordered = np.pad(self.table, 1, constant_values=-np.inf).ravel()
        self._upper = np.array(self.table.shape)
        shape = np.array(self.table.shape) + 2
        self._strides = np.array([shape[1] * shape[2], shape[2], 1])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """points (..., 3) world metres -> (...) approximate image margin in pixels (the nearest grid node's;
        -inf outside the grid)."""
        idx = np.rint((points - self.origin) / self.step).astype(np.int64)
        np.clip(idx, -1, self._upper, out=idx)
        return self._bordered[(idx + 1) @ self._strides]


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
