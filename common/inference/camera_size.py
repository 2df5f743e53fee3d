"""A person's standing height read through one calibrated camera (``inference.py --calibration``): metric size.

From one uncalibrated video a person's overall size trades off with their distance; the lifter's own metric
guess (BlazePose's world landmarks) is 3-20 % off on the Pose2Sim demos (docs/in_the_wild.md). A camera whose
intrinsics and pose above the floor are known removes the trade-off: where a planted ankle's ray meets the floor
plane fixes the person's distance, and the head taken on the vertical through that ankle gives their height
(:func:`common.models.length_probe.floor_heights`, the reading ``length_model_inference.py --floor_size`` makes
through Human3.6M's cameras: planted-foot frames with a straight ankle-to-head chain; the read is the 90th
percentile over those frames).

What is read is the head joint's height above the ankle joint (BlazePose's points mapped to the 17 joints); the
floor plane is taken at the ankles' height above the floor and the stature is that read times the population's
ratio, both measured on Anny bodies standing at rest (``common/resources/limb_prior.json``: ``ankle_above_floor_m``,
``stature_to_head_log``, ``data/bone_length/generate_limb_prior.py``); nothing is fitted on a recording. The stature
then sizes the lengths as ``--height`` does (:func:`common.inference.body_size.height_size`).

Assumptions, which the user's calibration must meet: the world frame has z up with the floor at z = ``floor_z``
(Pose2Sim's calibrations of a scene on the floor, the Qualisys demos'), the video is the calibrated camera's (same
aspect ratio; a resized video is scaled back to the calibration's pixels), and the person stands on that floor.
Lens distortion is undone with the calibration's coefficients before the rays are cast.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np

from common.core.camera import Camera, normalize_screen_coordinates
from common.inference.body_size import HEIGHT_RANGE_M, MIN_CONFIDENCE
from common.inference.multiview import CalibratedCamera, read_calibration
from common.models.length_probe import ANKLES, HEAD, floor_heights, floor_read_log
from common.utils.errors import UserError
from common.vision.tracking import Track2D

MIN_FRAMES = 10  # usable frames (planted foot, upright; counted at 50 frames/s) a read needs: 0.2 s of standing
MAX_UP_TILT_DEG = 70.0  # the world's z this far from the camera's up axis: warn (not z up? looking straight down?)
ASPECT_TOLERANCE = 0.01  # relative difference of the video's and the calibration's aspect ratios still accepted


def calibration_camera(path: str | Path, name: str | None) -> CalibratedCamera:
    """The camera ``name`` of a calibration file (:func:`common.inference.multiview.read_calibration`); ``name``
    None: the file's only camera. Unknown names and ambiguity are one-line errors listing the cameras."""
    cameras = read_calibration(path)
    names = [c.name for c in cameras]
    if name is None:
        if len(cameras) != 1:
            raise UserError(f"{path} holds {len(cameras)} cameras ({', '.join(names)}): say which filmed the video "
                            "with --camera NAME")
        return cameras[0]
    if name not in names:
        raise UserError(f"--camera {name!r} is not in {path}; its cameras: {', '.join(names)}")
    return cameras[names.index(name)]


def floor_camera(camera: CalibratedCamera, floor_z: float = 0.0) -> Camera:
    """``camera`` as a :class:`common.core.camera.Camera` over a floor at world z = 0 (z up): normalised pinhole
    intrinsics without distortion (undistort the pixels first, :meth:`CalibratedCamera.undistort`), its
    camera -> world rotation as a quaternion (w, x, y, z), its centre shifted down by ``floor_z`` metres."""
    from scipy.spatial.transform import Rotation

    w, h = camera.size
    focal = np.array([camera.K[0, 0], camera.K[1, 1]]) / w * 2.0
    centre = normalize_screen_coordinates(np.array([camera.K[0, 2], camera.K[1, 2]], np.float64), w, h)
    x, y, z, q = Rotation.from_matrix(np.asarray(camera.R, np.float64).T).as_quat()
    return Camera(id=camera.name, res_w=w, res_h=h, intrinsic=np.concatenate([focal, centre, np.zeros(5)]),
                  orientation=np.array([q, x, y, z]), translation=np.asarray(camera.centre, np.float64)
                  - np.array([0.0, 0.0, floor_z]))


def check_video_size(camera: CalibratedCamera, width: int, height: int) -> None:
    """A one-line error unless a ``width`` x ``height`` video can be ``camera``'s: its calibrated size, or that
    size resized (the same aspect ratio within :data:`ASPECT_TOLERANCE`)."""
    cw, ch = camera.size
    if abs((width / height) / (cw / ch) - 1) > ASPECT_TOLERANCE:
        raise UserError(f"the video is {width}x{height} but camera {camera.name} was calibrated at {cw}x{ch}: a "
                        "different aspect ratio (cropped or rotated?); give the calibrated camera's own video")


def check_upright(camera: CalibratedCamera, floor_z: float = 0.0) -> None:
    """The assumptions a read rests on, checked on the calibration: a one-line error when the camera is not above
    the floor (centre z <= ``floor_z``); a warning when the world's z axis is more than :data:`MAX_UP_TILT_DEG`
    from the camera's up axis (a world that is not z up, a camera on its side or looking down onto the floor,
    where the head and the ankle's rays meet at grazing angles; the Pose2Sim demos' cameras: 18-34 degrees)."""
    height = float(camera.centre[2]) - floor_z
    if height <= 0:
        raise UserError(f"camera {camera.name} is {height:.2f} m above the floor (z = {floor_z:g}): --calibration "
                        "needs the world's z up and the floor below the camera (--floor_z)")
    up = np.asarray(camera.R, np.float64) @ [0.0, 0.0, 1.0]  # world up in the camera frame (y down)
    tilt = float(np.degrees(np.arccos(np.clip(-up[1], -1.0, 1.0))))  # from the camera's own up axis (-y)
    if tilt > MAX_UP_TILT_DEG:
        print(f"warning: the world's z axis is {tilt:.0f} degrees from camera {camera.name}'s up direction: "
              "--calibration assumes a world with z up; check the calibration (a camera on its side, or looking "
              "down onto the floor, also gives this: heights read there are less reliable)", file=sys.stderr)


def calibration_pixels(track: Track2D, camera: CalibratedCamera) -> np.ndarray:
    """The track's keypoints (T, 17, 2) in the calibration's undistorted pixels: a video resized from the
    calibrated size is scaled back (:func:`check_video_size`); NaN stays NaN."""
    check_video_size(camera, track.width, track.height)
    pixels = np.asarray(track.positions, np.float64) * (camera.size[0] / track.width)
    missing = ~np.isfinite(pixels).all(-1)
    out = camera.undistort(np.where(missing[..., None], 0.0, pixels))
    return np.where(missing[..., None], np.nan, out)


@functools.lru_cache(maxsize=None)
def stature_constants() -> tuple[float, float]:
    """(ankle joints' height above the floor, metres; log of stature / head-above-ankle height) of the
    population, from ``limb_prior.json`` (read once: a live run reads heights every warm-up frame)."""
    from common.inference.length_sources import LIMB_PRIOR_FILE

    content = json.loads(Path(LIMB_PRIOR_FILE).read_text())["blazepose"]
    return float(content["ankle_above_floor_m"]), float(content["stature_to_head_log"])


def read_stature(track: Track2D, camera: CalibratedCamera, fps: float, floor_z: float = 0.0
                 ) -> tuple[float | None, int]:
    """The person's stature (metres) read through ``camera`` (module docstring) from the frames where they were
    detected (not the filled gaps) with their ankles and head confidently visible, and the number of usable frames
    (planted and upright) it rests on; the stature is None when fewer than :data:`MIN_FRAMES` (at 50 frames/s,
    scaled to ``fps``) are usable or the read falls outside :data:`common.inference.body_size.HEIGHT_RANGE_M`."""
    ankle_height, stature_log = stature_constants()
    pixels = calibration_pixels(track, camera)
    conf = np.asarray(track.confidence)
    seen = track.observed & (conf[:, HEAD] >= MIN_CONFIDENCE) & (conf[:, list(ANKLES)] >= MIN_CONFIDENCE).all(-1)
    pixels[~seen] = np.nan
    normalised = normalize_screen_coordinates(pixels, *camera.size)
    heights = floor_heights(normalised, floor_camera(camera, floor_z), ankle_height, fps=fps)
    read = floor_read_log(heights, fps, MIN_FRAMES)
    if not np.isfinite(read):
        return None, len(heights)
    stature = float(np.exp(read + stature_log))
    low, high = HEIGHT_RANGE_M
    return (stature if low <= stature <= high else None), len(heights)
