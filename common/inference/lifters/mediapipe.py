"""``--lifter mediapipe`` / ``mediapipe_raw``: BlazePose's own 3D (its world landmarks), from the same detector pass
as the 2D — no second inference.

BlazePose (``mediapipe.solutions.pose``) returns, with every 2D result, 33 *world landmarks* in metres with the
origin between the hips and camera-aligned axes (x right, y down, z away from the camera; checked against a
calibrated 4-camera recording, docs/in_the_wild.md). :class:`common.vision.detectors.BlazePoseSource` maps them to the 17
joints with the same mapping as the 2D, so both follow one joint convention (``blazepose``: anatomical), and
:class:`common.vision.tracking.PersonTracker` keeps them in ``Track2D.world``.

* ``mediapipe_raw``: the world landmarks as they are, root-relative (each frame alone: receptive field 1, causal).
* ``mediapipe`` (the default lifter of ``inference.py``): two measured improvements on them, both free of tuned
  constants (:func:`fuse_in_plane`, :func:`edge_preserving_smooth`):

  1. *in-plane fusion with the 2D*: the world landmarks' x/y come from BlazePose's 3D head, the 2D landmarks from
     its 2D head; both estimate where the joints lie across the image plane. Per frame the 2D is brought to metres
     by the similarity (scale + shift) that best maps the world landmarks' x/y onto it, and the two are averaged
     with inverse-variance weights, each variance measured on the sequence itself from its frame-to-frame
     jitter (second differences). Depth (z) stays BlazePose's.
  2. *edge-preserving temporal smoothing* (offline): a Gaussian window over neighbouring frames whose weights also
     fall with the pose difference, so frames where BlazePose jumps (e.g. swaps left and right) are not blended
     with their neighbours (a bilateral filter in time over :data:`SMOOTH_HALF_WINDOW` frames each side).

  Offline: the fusion weight is a statistic of the whole sequence (receptive field 0 = the whole sequence);
  ``--live`` uses ``mediapipe_raw`` in its place.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.utils.errors import UserError
from common.vision.tracking import Track2D

SMOOTH_SIGMA = 3.0       # frames: the Gaussian of the temporal window
SMOOTH_HALF_WINDOW = 6   # frames each side (2 sigma)
# A neighbour whose pose differs by more than a few typical frame-to-frame motions gets (almost) no weight.
EDGE_MOTIONS = 3.0


def _jitter_variance(points: np.ndarray) -> float:
    """Mean squared second difference over time of (T, J, C) points (a noise-variance estimate for smooth
    motion); NaN when T < 3."""
    if len(points) < 3:
        return float("nan")
    return float(np.mean(np.diff(points.astype(np.float64), n=2, axis=0) ** 2))


def fuse_in_plane(world: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """Average the world landmarks' in-plane coordinates with the 2D landmarks of the same pass.

    world: (T, 17, 3) metres, camera-aligned, root-relative; pixels: (T, 17, 2) the same joints in the image.
    Returns ((T, 17, 3) metres root-relative, the weight given to the 2D). Per frame the 2D is mapped to metres by
    the least-squares scale + shift onto the world x/y; the weight is var3d / (var2d + var3d) from the jitter of
    each (root-relative) source over the sequence (0.5 when the sequence is too short to tell)."""
    xy = world[..., :2].astype(np.float64)
    px = pixels.astype(np.float64)
    xy_mean, px_mean = xy.mean(axis=1, keepdims=True), px.mean(axis=1, keepdims=True)
    num = ((xy - xy_mean) * (px - px_mean)).sum(axis=(1, 2))
    den = ((xy - xy_mean) ** 2).sum(axis=(1, 2))
    scale = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)             # pixels per metre
    valid = scale > 0
    from_2d = np.where(valid[:, None, None], (px - px_mean) / np.where(valid, scale, 1.0)[:, None, None] + xy_mean,
                       xy)
    var_2d = _jitter_variance(from_2d - from_2d[:, :1])
    var_3d = _jitter_variance(xy - xy[:, :1])
    weight = 0.5 if not np.isfinite(var_2d + var_3d) or var_2d + var_3d == 0 else var_3d / (var_2d + var_3d)
    fused = world.astype(np.float64).copy()
    fused[..., :2] = (1 - weight) * xy + weight * from_2d
    return (fused - fused[:, :1]).astype(np.float32), float(weight)


def edge_preserving_smooth(poses: np.ndarray, sigma: float = SMOOTH_SIGMA, half_window: int = SMOOTH_HALF_WINDOW,
                           edge_motions: float = EDGE_MOTIONS) -> np.ndarray:
    """Bilateral filter in time of (T, 17, 3) poses: frame s contributes to frame t with weight
    exp(-(s - t)^2 / 2 sigma^2) * exp(-d(s, t)^2 / 2 tau^2), d = mean joint distance of the two poses and
    tau = ``edge_motions`` x the median distance between consecutive frames. Edges are held (the window is
    clamped to the sequence)."""
    count = len(poses)
    if count < 2:
        return poses.astype(np.float32)
    x = poses.astype(np.float64)
    tau = edge_motions * float(np.median(np.linalg.norm(np.diff(x, axis=0), axis=-1).mean(axis=-1)))
    if tau <= 0:
        return poses.astype(np.float32)
    total, weight_sum = np.zeros_like(x), np.zeros(count)
    frames = np.arange(count)
    for offset in range(-half_window, half_window + 1):
        other = x[np.clip(frames + offset, 0, count - 1)]
        distance = np.linalg.norm(other - x, axis=-1).mean(axis=-1)
        weight = np.exp(-offset ** 2 / (2 * sigma ** 2)) * np.exp(-distance ** 2 / (2 * tau ** 2))
        total += weight[:, None, None] * other
        weight_sum += weight
    return (total / weight_sum[:, None, None]).astype(np.float32)


def _world(track: Track2D) -> np.ndarray:
    if track.world is None:
        raise UserError("the 2D track carries no BlazePose world landmarks (the mediapipe lifters need the "
                        "blazepose detector run on the video)")
    world = track.world.astype(np.float32)
    return world - world[:, :1]


@dataclass
class MediaPipeOptions:
    """What the mediapipe lifters check: the 2D must come from the blazepose detector run on the video."""

    keypoints: str | None = None
    detector: str = "blazepose"


class MediaPipeRawLifter:
    """BlazePose's world landmarks as they are (root-relative); causal, one frame at a time."""

    name = "mediapipe_raw"
    convention = "blazepose"
    frame = "camera"
    receptive_field = 1
    causal = True
    length_model = None
    Options = MediaPipeOptions

    def __init__(self, options: MediaPipeOptions | None = None):
        options = options or MediaPipeOptions()
        if options.keypoints or options.detector != "blazepose":
            raise UserError(f"--lifter {self.name} uses BlazePose's world landmarks of the same detector pass: run "
                            "the blazepose detector on a --video (not --keypoints / --detector mmpose)")

    def lift(self, track: Track2D) -> np.ndarray:
        """(T, 17, 3) metres, camera-aligned axes, root-relative."""
        return _world(track)

    def step(self, frame: Track2D) -> np.ndarray:
        """One frame's (17, 3) metres, camera-aligned axes, root-relative (``frame``: a one-frame track)."""
        return _world(frame)[0]


class MediaPipeLifter(MediaPipeRawLifter):
    """World landmarks fused in-plane with the 2D of the same pass, then edge-preserving temporal smoothing."""

    name = "mediapipe"
    receptive_field = 0  # the whole sequence (the fusion weight); the smoothing window is 2 x 6 + 1 frames
    causal = False
    streaming_substitute = "mediapipe_raw"

    def lift(self, track: Track2D) -> np.ndarray:
        """(T, 17, 3) metres, camera-aligned axes, root-relative."""
        fused, _ = fuse_in_plane(_world(track), track.positions)
        smoothed = edge_preserving_smooth(fused)
        return smoothed - smoothed[:, :1]
