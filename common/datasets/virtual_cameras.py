"""Random phone-like virtual cameras that film a moving person, for lifters that must work in the wild.

A lifter trained only through Human3.6M's four fixed cameras learns their heights, distances, focal lengths
and 1000×1002 frames. Here every segment of a world-frame motion (metres, Z up) is filmed by cameras drawn at
random, the way people film with a phone:

* azimuth anywhere around the person, elevation :attr:`VirtualCameraConfig.elevation_deg` (−10°…45°: from a
  phone held low to one looking down from a balcony), distance 2–10 m from the look-at point, which is the
  person's bounding-box centre over the segment plus a small random aim offset;
* a 35-mm-equivalent focal length of 24–35 mm turned into pixels through the frame diagonal
  (:func:`focal_length_px`), portrait or landscape frames of common phone video sizes, a small roll, an
  ideal pinhole (no lens distortion), the principal point at the frame centre;
* every joint of every frame at least :attr:`VirtualCameraConfig.min_depth_m` in front of the camera and inside
  the frame by :attr:`VirtualCameraConfig.margin_fraction` of its short side. A draw that cuts the person off
  is first moved back along its viewing ray (×1.25 per step, up to the largest distance), then redrawn.

:func:`virtual_views` turns world motion into :class:`common.datasets.dataset.Sequence3D` views (normalised 2D, camera
frame 3D with the trajectory in joint 0), optionally with detector-like 2D noise
(:func:`common.datasets.keypoint_noise.detector_noise`, scaled with the person's size in pixels), so the trainers and the
in-the-wild bench feed them to the existing generators unchanged. Everything is seeded: the same seed gives
the same cameras and noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from common.core.camera import Camera, normalize_screen_coordinates
from common.datasets.dataset import Sequence3D
from common.datasets.keypoint_noise import detector_noise

FULL_FRAME_DIAGONAL_MM = float(np.hypot(36.0, 24.0))  # 35-mm film frame: the reference of "equivalent" focals
# Person size (median over frames of the 2D bounding-box diagonal, px) in the demo dataset's Human3.6M views:
# about 330 px (measured: median 326 px, range 201-444 px over S1's and S9's views). common.datasets.keypoint_noise's
# detector noise is specified in pixels at that scale; it is rescaled to each virtual view's person size.
REFERENCE_PERSON_SIZE_PX = 330.0


@dataclass(frozen=True)
class VirtualCameraConfig:
    """Ranges of the random cameras (angles in degrees, distances in metres, frames in pixels (width, height)
    given in landscape; each draw is portrait with probability ``portrait_probability``)."""

    elevation_deg: tuple[float, float] = (-10.0, 45.0)
    distance_m: tuple[float, float] = (2.0, 10.0)
    focal_35mm: tuple[float, float] = (24.0, 35.0)
    roll_deg: float = 5.0
    aim_offset_m: float = 0.3
    frame_sizes: tuple[tuple[int, int], ...] = ((1920, 1080), (1280, 720), (1440, 1080))
    portrait_probability: float = 0.5
    min_depth_m: float = 0.5
    min_camera_height_m: float = 0.2
    margin_fraction: float = 0.02
    max_rounds: int = 50


def focal_length_px(focal_35mm: np.ndarray, res_w: np.ndarray, res_h: np.ndarray) -> np.ndarray:
    """Focal length in pixels of a 35-mm-equivalent focal length (mm) on a ``res_w × res_h`` frame (px):
    the equivalent focal relates the frame diagonal to the 43.3 mm diagonal of 35-mm film."""
    return np.asarray(focal_35mm, dtype=np.float64) / FULL_FRAME_DIAGONAL_MM * np.hypot(res_w, res_h)


def look_at_rotation(centres: np.ndarray, targets: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Camera->world rotation matrices (N, 3, 3) of cameras at ``centres`` (N, 3) looking at ``targets`` (N, 3)
    (world metres, Z up), rolled by ``roll`` (N,) radians about the viewing axis. Columns: the camera's x
    (right), y (down) and z (forward) axes in world coordinates."""
    forward = targets - centres
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right, down = c * right + s * down, -s * right + c * down
    return np.stack([right, down, forward], axis=-1)


@dataclass
class CameraDraw:
    """N drawn cameras: ``centres`` (N, 3) world metres, ``rotations`` (N, 3, 3) camera->world,
    ``focal_px`` (N,), ``res`` (N, 2) int (width, height)."""

    centres: np.ndarray
    rotations: np.ndarray
    focal_px: np.ndarray
    res: np.ndarray

    def intrinsics(self) -> np.ndarray:
        """(N, 9) normalised intrinsic vectors ``[fx, fy, cx, cy, 0 × 5]`` (see :mod:`common.core.camera`)."""
        out = np.zeros((len(self.focal_px), 9))
        out[:, 0] = out[:, 1] = self.focal_px * 2.0 / self.res[:, 0]
        return out

    def to_camera_frame(self, world: np.ndarray) -> np.ndarray:
        """world (N, T, J, 3) metres -> camera frame (N, T, J, 3) metres (x right, y down, z forward)."""
        return np.einsum("nji,ntkj->ntki", self.rotations, world - self.centres[:, None, None, :])

    def to_pixels(self, local: np.ndarray) -> np.ndarray:
        """Camera-frame points (N, T, J, 3) -> pixels (N, T, J, 2) (pinhole; points must be in front)."""
        f = self.focal_px[:, None, None, None]
        centre = self.res[:, None, None, :] / 2.0
        return f * local[..., :2] / local[..., 2:3] + centre

    def cameras(self, prefix: str = "virtual") -> list[Camera]:
        """:class:`common.core.camera.Camera` objects (normalised intrinsics, quaternion orientations)."""
        xyzw = Rotation.from_matrix(self.rotations).as_quat()
        wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1).astype(np.float32)
        intrinsics = self.intrinsics().astype(np.float32)
        return [Camera(id=f"{prefix}-{i}", res_w=int(w), res_h=int(h), intrinsic=intrinsics[i],
                       orientation=wxyz[i], translation=self.centres[i].astype(np.float32))
                for i, (w, h) in enumerate(self.res)]


def _draw(targets: np.ndarray, rng: np.random.Generator, config: VirtualCameraConfig) -> CameraDraw:
    """Independent random cameras aimed near ``targets`` (N, 3) world metres."""
    n = len(targets)
    azimuth = rng.uniform(-np.pi, np.pi, n)
    elevation = np.deg2rad(rng.uniform(*config.elevation_deg, n))
    distance = rng.uniform(*config.distance_m, n)
    aim = targets + rng.uniform(-config.aim_offset_m, config.aim_offset_m, (n, 3))
    direction = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                          np.sin(elevation)], axis=-1)
    centres = aim + distance[:, None] * direction
    rotations = look_at_rotation(centres, aim, np.deg2rad(rng.uniform(-config.roll_deg, config.roll_deg, n)))
    sizes = np.asarray(config.frame_sizes, dtype=np.int64)[rng.integers(0, len(config.frame_sizes), n)]
    portrait = rng.random(n) < config.portrait_probability
    res = np.where(portrait[:, None], sizes[:, ::-1], sizes)
    focal = focal_length_px(rng.uniform(*config.focal_35mm, n), res[:, 0], res[:, 1])
    return CameraDraw(centres, rotations, focal, res)


def frame_margin(draw: CameraDraw, world: np.ndarray, config: VirtualCameraConfig) -> np.ndarray:
    """(N,) smallest distance (px) of any joint of any frame to the frame border, for each camera and its
    segment ``world`` (N, T, J, 3) metres; ``-inf`` where a joint is closer than ``min_depth_m`` (or behind)."""
    local = draw.to_camera_frame(world)
    depth = local[..., 2]
    px = draw.to_pixels(np.where(depth[..., None] > 1e-6, local, 1.0))
    w, h = draw.res[:, 0, None, None], draw.res[:, 1, None, None]
    border = np.minimum(np.minimum(px[..., 0], w - px[..., 0]), np.minimum(px[..., 1], h - px[..., 1]))
    border = np.where(depth > config.min_depth_m, border, -np.inf)
    return border.min(axis=(1, 2))


def _acceptable(draw: CameraDraw, world: np.ndarray, config: VirtualCameraConfig) -> np.ndarray:
    margin = config.margin_fraction * draw.res.min(axis=1)
    return (frame_margin(draw, world, config) >= margin) & (draw.centres[:, 2] >= config.min_camera_height_m)


def place_cameras(segments: np.ndarray, rng: np.random.Generator,
                  config: VirtualCameraConfig = VirtualCameraConfig()) -> CameraDraw:
    """One random camera per segment that keeps the whole body in front of it and inside its frame.

    segments: (N, T, 17, 3) world metres, Z up. A draw that cuts the person off is moved back along its
    viewing ray (×1.25 per step while within ``distance_m``); one still failing is redrawn, up to
    ``max_rounds`` rounds (RuntimeError after that). Returns the accepted :class:`CameraDraw` (N cameras)."""
    segments = np.asarray(segments, dtype=np.float64)
    low, high = segments.min(axis=(1, 2)), segments.max(axis=(1, 2))
    targets = (low + high) / 2
    n = len(segments)
    result = CameraDraw(np.zeros((n, 3)), np.zeros((n, 3, 3)), np.zeros(n), np.zeros((n, 2), dtype=np.int64))
    pending = np.arange(n)
    for _ in range(config.max_rounds):
        if not len(pending):
            return result
        draw = _draw(targets[pending], rng, config)
        ok = _acceptable(draw, segments[pending], config)
        for _step in range(8):  # move failing draws back along their viewing ray while the range allows
            forward = draw.rotations[:, :, 2]
            aim_distance = np.einsum("ni,ni->n", targets[pending] - draw.centres, forward)
            farther = ~ok & (aim_distance * 1.25 <= config.distance_m[1])
            if not farther.any():
                break
            moved = draw.centres - 0.25 * aim_distance[:, None] * forward
            draw.centres = np.where(farther[:, None], moved, draw.centres)
            ok = ok | (farther & _acceptable(draw, segments[pending], config))
        taken = pending[ok]
        result.centres[taken], result.rotations[taken] = draw.centres[ok], draw.rotations[ok]
        result.focal_px[taken], result.res[taken] = draw.focal_px[ok], draw.res[ok]
        pending = pending[~ok]
    if len(pending):
        raise RuntimeError(f"no virtual camera keeps the person in frame for {len(pending)} segment(s)")
    return result


def segment_starts(num_frames: int, segment_frames: int) -> np.ndarray:
    """Starts of windows of ``segment_frames`` covering ``num_frames`` (the last one ends at the sequence's
    end, overlapping its neighbour); one window of the whole sequence when it is shorter."""
    if num_frames <= segment_frames:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, num_frames - segment_frames + 1, segment_frames)
    if starts[-1] + segment_frames < num_frames:
        starts = np.append(starts, num_frames - segment_frames)
    return starts


def person_size_px(pixels: np.ndarray) -> np.ndarray:
    """(V, T, J, 2) pixels -> (V,) median over frames of the keypoints' bounding-box diagonal (px)."""
    extent = pixels.max(axis=2) - pixels.min(axis=2)
    return np.median(np.linalg.norm(extent, axis=-1), axis=1)


def virtual_views(motions: Iterable[tuple[str, str, np.ndarray]], views_per_segment: int, segment_frames: int,
                  seed: int, noise: bool = True, config: VirtualCameraConfig = VirtualCameraConfig()
                  ) -> list[Sequence3D]:
    """Film world motion with random virtual cameras.

    motions: (subject, action, world poses (T, 17, 3) metres, Z up) triples. Each motion is cut into
    windows of ``segment_frames`` (:func:`segment_starts`), each filmed by ``views_per_segment`` independent
    cameras (:func:`place_cameras`). noise: add detector-like 2D noise (:func:`common.datasets.keypoint_noise.detector_noise`
    at the scale of a :data:`REFERENCE_PERSON_SIZE_PX` person, rescaled to this view's person size).

    Returns one :class:`Sequence3D` per (window, camera), in input order: ``poses_2d`` (S, 17, 2) normalised
    screen coordinates of that camera's frame, ``poses_3d`` (S, 17, 3) metres camera frame with the pelvis
    trajectory in joint 0 and the other joints root-relative; ``camera_index`` counts the views of the motion.
    """
    if views_per_segment < 1 or segment_frames < 2:
        raise ValueError("views_per_segment must be >= 1 and segment_frames >= 2")
    rng = np.random.default_rng(seed)
    out: list[Sequence3D] = []
    for subject, action, world in motions:
        world = np.asarray(world, dtype=np.float64)
        length = min(segment_frames, len(world))
        starts = np.repeat(segment_starts(len(world), segment_frames), views_per_segment)
        segments = world[starts[:, None] + np.arange(length)[None]]  # (N, S, 17, 3)
        draw = place_cameras(segments, rng, config)
        local = draw.to_camera_frame(segments)
        pixels = draw.to_pixels(local)
        if noise:
            scale = (person_size_px(pixels) / REFERENCE_PERSON_SIZE_PX)[:, None, None, None]
            pixels = detector_noise(pixels / scale, rng).astype(np.float64) * scale
        local[:, :, 1:] -= local[:, :, :1]
        for index, camera in enumerate(draw.cameras()):
            out.append(Sequence3D(subject, action, index, camera,
                                  normalize_screen_coordinates(pixels[index].astype(np.float32), camera.res_w,
                                                               camera.res_h),
                                  local[index].astype(np.float32)))
    return out


def world_motions(world_3d: dict[str, dict[str, np.ndarray]], subjects: Sequence[str],
                  action_filter: Sequence[str] | None = None) -> list[tuple[str, str, np.ndarray]]:
    """(subject, action, (T, 17, 3) world metres) of a loaded dataset's ground truth
    (:attr:`common.datasets.dataset.PoseDataset.world_3d`), in file order, optionally only actions starting with one
    of ``action_filter``."""
    return [(s, a, poses) for s in subjects for a, poses in world_3d[s].items()
            if not action_filter or any(a.startswith(f) for f in action_filter)]
