"""Scoring single-view 3D against a calibrated multi-camera recording (``bench/multiview.py``).

* :func:`read_calibration`: a calibration in Pose2Sim's ``.toml`` convention (:func:`read_toml`, written by
  :func:`write_toml`) or a Qualisys ``.qca.txt`` (:func:`read_qca`, the Pose2Sim demos') -> :class:`CalibratedCamera`
  list; :func:`find_recording` pairs the cameras with one video each in Pose2Sim's folder layout;
* :func:`triangulate`: confidence-weighted DLT of 2D keypoints seen by several cameras -> world 3D;
  :func:`triangulate_consistent` also undoes a view's left/right swaps (the reference of ``bench/multiview.py``);
* :func:`limb_scores`: what a single view's poses get right about the body: P-MPJPE, limb lengths, limb
  proportions, length jitter over time, left/right difference.

Limbs are thighs, shins, upper arms and forearms (:data:`LIMB_BONES`, left and right). Definitions (all on the
frames both sequences cover):

* *limb-length error*: mean over the 8 limbs of |median over time of the estimate - median over time of the
  reference| (mm);
* *limb proportions off*: the 4 left/right-averaged limb lengths (medians over time) divided by their sum, then
  mean over the 4 of |estimate proportion / reference proportion - 1| (%); ``proportions_max`` the largest of the 4;
  ``proportions8`` the same over the 8 limbs, each side's divided by the sum of all 8 (the reference's left/right
  differences count); ``ratios_max`` the largest of |estimate ratio / reference ratio - 1| over three ratios of
  left/right-averaged limbs: shin / thigh, forearm / upper arm, arm (upper arm + forearm) / leg (thigh + shin);
* *length std over time*: mean over the 8 limbs of the standard deviation over frames (mm);
* *left/right difference*: mean over the 4 limb pairs and frames of |left - right| (mm).
"""
from __future__ import annotations

import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from common.core.bones import bone_lengths
from common.utils.errors import UserError
from common.core.metrics import p_mpjpe
from common.core.skeleton import BONE_NAMES, FLIP_JOINTS
from common.vision.tracking import Track2D

LIMB_BONES = [BONE_NAMES.index(n) for n in ("l_thigh", "r_thigh", "l_calf", "r_calf", "l_upper_arm", "r_upper_arm",
                                            "l_lower_arm", "r_lower_arm")]
QCA_SENSOR_SCALE = 64.0  # Qualisys stores intrinsics in sub-pixel sensor units of 1/64 pixel


@dataclass
class CalibratedCamera:
    """A pinhole camera with OpenCV distortion: world -> camera is x_c = R @ (X - centre); metres, pixels."""

    name: str
    K: np.ndarray        # (3, 3) pixels
    dist: np.ndarray     # (4,) k1, k2, p1, p2 (or OpenCV's longer forms: k3, ...)
    R: np.ndarray        # (3, 3) world -> camera rotation
    centre: np.ndarray   # (3,) camera centre in world metres
    size: tuple[int, int]

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) metres -> camera frame (x right, y down, z forward) metres."""
        return (points - self.centre) @ self.R.T

    @property
    def translation(self) -> np.ndarray:
        """(3,) world -> camera translation t of x_c = R @ X + t, metres (Pose2Sim's ``translation``)."""
        return -self.R @ self.centre

    def projection(self) -> np.ndarray:
        """(3, 4) projection matrix of undistorted pixel coordinates."""
        return self.K @ np.concatenate([self.R, -self.R @ self.centre[:, None]], axis=1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) metres -> distorted pixels (..., 2) as the video shows them (NaN stays NaN)."""
        import cv2

        flat = np.nan_to_num(points.reshape(-1, 3).astype(np.float64))
        rotation = cv2.Rodrigues(np.asarray(self.R, np.float64))[0]
        pixels = cv2.projectPoints(flat, rotation, self.translation, self.K, self.dist)[0].reshape(points.shape[:-1] + (2,))
        return np.where(np.isnan(points).any(axis=-1, keepdims=True), np.nan, pixels)

    def undistort(self, pixels: np.ndarray) -> np.ndarray:
        """Distorted pixels (..., 2) -> undistorted pixels of the same camera."""
        import cv2

        flat = pixels.reshape(-1, 1, 2).astype(np.float64)
        out = cv2.undistortPoints(flat, self.K, self.dist, P=self.K)
        return out.reshape(pixels.shape)


def read_qca(path: str | Path) -> list[CalibratedCamera]:
    """Cameras of a Qualisys ``.qca.txt`` file, sorted by name. The file gives, per camera, ``transform`` =
    camera position (mm) and a matrix ``r11..r33`` whose rows are the camera axes in world coordinates for a
    camera looking along -z with y up; a half turn about x gives OpenCV's axes (x right, y down, z forward).
    Intrinsics are in 1/64 pixel (their distortion terms as the Pose2Sim converter reads them)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise UserError(f"{path}: not a readable Qualisys calibration ({exc})") from None
    half_turn = np.diag([1.0, -1.0, -1.0])
    cameras = []
    for tag in root.findall("cameras/camera"):
        fov, transform, intrinsic = tag.find("fov_video"), tag.find("transform"), tag.find("intrinsic")
        if fov is None or transform is None or intrinsic is None:
            raise UserError(f"{path}: camera {tag.get('serial')} lacks fov_video/transform/intrinsic")
        left, top = float(fov.get("left")), float(fov.get("top"))
        size = (int(float(fov.get("right")) - left + 1), int(float(fov.get("bottom")) - top + 1))
        g = {k: float(v) for k, v in intrinsic.attrib.items() if k not in ("model",)}
        K = np.array([[g["focalLengthU"] / QCA_SENSOR_SCALE, 0, g["centerPointU"] / QCA_SENSOR_SCALE - left],
                      [0, g["focalLengthV"] / QCA_SENSOR_SCALE, g["centerPointV"] / QCA_SENSOR_SCALE - top],
                      [0, 0, 1]])
        dist = np.array([g["radialDistortion1"], g["radialDistortion2"], g["tangentalDistortion1"],
                         g["tangentalDistortion2"]]) / QCA_SENSOR_SCALE
        rows = np.array([[float(transform.get(f"r{i}{j}")) for j in (1, 2, 3)] for i in (1, 2, 3)])
        centre = np.array([float(transform.get(a)) for a in ("x", "y", "z")]) / 1000.0
        cameras.append(CalibratedCamera(str(tag.get("serial")), K, dist, half_turn @ rows, centre, size))
    if not cameras:
        raise UserError(f"{path}: no cameras")
    return sorted(cameras, key=lambda c: c.name)


TOML_CAMERA_KEYS = ("size", "matrix", "distortions", "rotation", "translation")
TOML_OTHER_TABLES = ("metadata", "capture_volume", "charuco", "checkerboard")  # Pose2Sim's non-camera tables
TOML_CONVENTION = ("Pose2Sim's convention: one table per camera with size = [w, h] pixels, matrix (3x3 pixels), "
                   "distortions [k1, k2, p1, p2], rotation (Rodrigues vector) and translation (metres) of the "
                   "world -> camera transform x_c = R X + t")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _toml_array(path: Path, table: str, key: str, value, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` of ``[table] key`` as a float array of ``shape`` (a one-line error otherwise)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.shape != shape or not np.isfinite(array).all():
        hint = " (a 3x3 matrix: Pose2Sim's rotation is a Rodrigues vector)" if key == "rotation" and array.shape == (3, 3) \
            else ""
        raise UserError(f"{path}: [{table}] {key} must be {'x'.join(map(str, shape))} finite numbers, got "
                        f"{np.shape(value) if array.size else value!r}{hint}; expected {TOML_CONVENTION}")
    return array


def read_toml(path: str | Path) -> list[CalibratedCamera]:
    """Cameras of a calibration ``.toml`` in Pose2Sim's convention (what its calibration step writes, and
    :func:`write_toml`), sorted by name: per camera a table with ``name``, ``size`` [w, h] pixels, ``matrix``
    K (3x3 pixels), ``distortions`` (OpenCV's k1, k2, p1, p2[, k3]), ``rotation`` (Rodrigues vector) and
    ``translation`` (metres) of world -> camera x_c = R X + t; ``fisheye`` must be false. A file in another
    convention (other keys, a rotation matrix, a fisheye model) is a one-line error naming what differs."""
    import cv2

    path = Path(path)
    try:
        content = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: not a readable TOML calibration ({exc})") from None
    tables = {k: v for k, v in content.items() if isinstance(v, dict) and k not in TOML_OTHER_TABLES}
    if not tables:
        raise UserError(f"{path}: no camera table; expected {TOML_CONVENTION}")
    cameras = []
    for table, entry in tables.items():
        missing = [k for k in TOML_CAMERA_KEYS if k not in entry]
        if missing:
            raise UserError(f"{path}: [{table}] has no {', '.join(missing)} (it has {', '.join(entry) or 'nothing'}); "
                            f"expected {TOML_CONVENTION}")
        if entry.get("fisheye", False):
            raise UserError(f"{path}: [{table}] is a fisheye camera; only the pinhole model with OpenCV's distortion "
                            "is supported")
        dist = np.asarray(entry["distortions"], dtype=np.float64) if isinstance(entry["distortions"], list) else None
        if dist is None or dist.ndim != 1 or len(dist) not in (4, 5, 8):
            raise UserError(f"{path}: [{table}] distortions must be 4 (k1, k2, p1, p2), 5 or 8 numbers; expected "
                            f"{TOML_CONVENTION}")
        K = _toml_array(path, table, "matrix", entry["matrix"], (3, 3))
        rotation = _toml_array(path, table, "rotation", entry["rotation"], (3,))
        translation = _toml_array(path, table, "translation", entry["translation"], (3,))
        width, height = _toml_array(path, table, "size", entry["size"], (2,))
        R = cv2.Rodrigues(rotation)[0]
        cameras.append(CalibratedCamera(str(entry.get("name", table)), K, dist, R, -R.T @ translation,
                                        (int(round(width)), int(round(height)))))
    return sorted(cameras, key=lambda c: c.name)


def write_toml(path: str | Path, cameras: list[CalibratedCamera]) -> None:
    """Write ``cameras`` as a calibration ``.toml`` in Pose2Sim's convention (see :func:`read_toml`; the tables
    Pose2Sim's own converter writes, plus its ``[metadata]`` table), atomically. Numbers keep full precision."""
    import cv2

    from common.utils.fileio import atomic_write

    def numbers(values) -> str:
        return "[ " + ", ".join(repr(float(v)) for v in values) + "]"

    lines = []
    for cam in cameras:
        rotation = cv2.Rodrigues(np.asarray(cam.R, np.float64))[0].ravel()
        lines += [f'[{cam.name}]', f'name = "{cam.name}"', f"size = {numbers(cam.size)}",
                  "matrix = [ " + ", ".join(numbers(row) for row in cam.K) + "]",
                  f"distortions = {numbers(cam.dist)}", f"rotation = {numbers(rotation)}",
                  f"translation = {numbers(cam.translation)}", "fisheye = false", ""]
    lines += ["[metadata]", "adjusted = false", "error = 0.0", ""]
    atomic_write(Path(path), lambda fh: fh.write("\n".join(lines).encode()))


def read_calibration(path: str | Path) -> list[CalibratedCamera]:
    """Cameras of a calibration file: Pose2Sim's ``.toml`` (:func:`read_toml`) or Qualisys ``.qca.txt``
    (:func:`read_qca`), by the file's name; anything else is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"calibration file {path} does not exist")
    name = path.name.lower()
    if name.endswith(".toml"):
        return read_toml(path)
    if name.endswith(".qca.txt"):
        return read_qca(path)
    raise UserError(f"{path}: unknown calibration format; give a Pose2Sim .toml ({TOML_CONVENTION}) or a Qualisys "
                    ".qca.txt (Pose2Sim's calibration step converts other formats to its .toml)")


def find_recording(folder: str | Path | None = None, calibration: str | Path | None = None,
                   videos: list[str | Path] | None = None) -> tuple[Path, list[CalibratedCamera], list[Path]]:
    """A recording in Pose2Sim's layout: ``folder/calibration/`` holds one ``.toml`` or ``.qca.txt`` file and
    ``folder/videos/`` one video per camera; ``calibration`` / ``videos`` override either. Videos are paired with
    cameras by name (each camera's name in exactly one video's file name, as Pose2Sim's ``cam01`` ...) or else, as
    Pose2Sim does, in sorted order (with a warning). Returns (calibration path, cameras, one video per camera)."""
    import sys

    if calibration is None:
        if folder is None:
            raise UserError("give a recording folder or --calibration and --videos")
        found = sorted(p for p in (Path(folder) / "calibration").glob("*")
                       if p.name.lower().endswith((".toml", ".qca.txt")))
        if len(found) != 1:
            raise UserError(f"{Path(folder) / 'calibration'}: expected one .toml or .qca.txt calibration file, found "
                            f"{len(found)}{': ' + ', '.join(p.name for p in found) if found else ''} (give --calibration)")
        calibration = found[0]
    cameras = read_calibration(calibration)
    if videos:
        paths = [Path(v) for v in videos]
    else:
        if folder is None:
            raise UserError("give a recording folder or --videos")
        paths = sorted(p for p in (Path(folder) / "videos").glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"video {missing[0]} does not exist")
    if len(paths) != len(cameras):
        raise UserError(f"{calibration} has {len(cameras)} camera(s) ({', '.join(c.name for c in cameras)}) but "
                        f"{len(paths)} video(s) were given: one video per camera")
    by_name = [[p for p in paths if cam.name.lower() in p.stem.lower()] for cam in cameras]
    if all(len(m) == 1 for m in by_name) and len({m[0] for m in by_name}) == len(cameras):
        return Path(calibration), cameras, [m[0] for m in by_name]
    print(f"warning: camera names ({', '.join(c.name for c in cameras)}) do not each name one video; pairing "
          f"cameras and videos in sorted order: " + ", ".join(f"{c.name}={p.name}" for c, p in
                                                             zip(cameras, sorted(paths))), file=sys.stderr)
    return Path(calibration), cameras, sorted(paths)


def triangulate(cameras: list[CalibratedCamera], pixels: np.ndarray, confidence: np.ndarray,
                min_views: int = 2, min_confidence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Confidence-weighted linear (DLT) triangulation.

    pixels: (V, T, J, 2) distorted pixels per camera (NaN = not seen); confidence: (V, T, J) in [0, 1].
    Returns (points (T, J, 3) world metres, NaN where fewer than ``min_views`` views see the joint with at
    least ``min_confidence``; reprojection error (T, J) pixels, mean over the views used)."""
    views, frames, joints = confidence.shape
    undistorted = np.stack([cam.undistort(np.nan_to_num(p)) for cam, p in zip(cameras, pixels)])
    weight = np.where(np.isnan(pixels).any(-1) | (confidence < min_confidence), 0.0, confidence)
    P = np.stack([cam.projection() for cam in cameras])                            # (V, 3, 4)
    rows_x = undistorted[..., 0, None] * P[:, None, None, 2] - P[:, None, None, 0]   # (V, T, J, 4)
    rows_y = undistorted[..., 1, None] * P[:, None, None, 2] - P[:, None, None, 1]
    A = np.concatenate([rows_x, rows_y], axis=0) * np.concatenate([weight, weight])[..., None]
    A = A.transpose(1, 2, 0, 3)                                                   # (T, J, 2V, 4)
    _, _, vt = np.linalg.svd(A)
    homogeneous = vt[..., -1, :]
    points = homogeneous[..., :3] / homogeneous[..., 3:]
    seen = (weight > 0).sum(axis=0)
    points[seen < min_views] = np.nan
    projected = np.einsum("vab,tjb->vtja", P, np.concatenate([points, np.ones((frames, joints, 1))], -1))
    projected = projected[..., :2] / projected[..., 2:]
    error = np.linalg.norm(projected - undistorted, axis=-1)
    used = (weight > 0).sum(axis=0)
    mean_error = np.where(used > 0, np.where(weight > 0, error, 0.0).sum(axis=0) / np.maximum(used, 1), np.nan)
    return points, mean_error


def triangulate_consistent(cameras: list[CalibratedCamera], pixels: np.ndarray, confidence: np.ndarray,
                           iterations: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`triangulate` with left/right consistency across views: a single-view detector sometimes swaps the
    person's left and right (seen from behind or side-on). After each triangulation, every view's frame whose
    left/right-swapped keypoints reproject closer to the triangulated joints than its own is swapped, then the
    joints are triangulated again. Returns (points (T, J, 3), reprojection error (T, J), swapped (V, T) bool)."""
    pixels, confidence = pixels.copy(), confidence.copy()
    swapped = np.zeros(confidence.shape[:2], bool)
    for _ in range(iterations):
        points, _ = triangulate(cameras, pixels, confidence)
        homogeneous = np.concatenate([points, np.ones(points.shape[:2] + (1,))], axis=-1)
        for v, cam in enumerate(cameras):
            projected = homogeneous @ cam.projection().T
            projected = projected[..., :2] / projected[..., 2:]
            seen = cam.undistort(np.nan_to_num(pixels[v]))
            with warnings.catch_warnings():  # frames nobody triangulated: NaN, never swapped
                warnings.simplefilter("ignore", RuntimeWarning)
                own = np.nanmean(np.linalg.norm(projected - seen, axis=-1), axis=-1)
                flipped = np.nanmean(np.linalg.norm(projected - seen[:, FLIP_JOINTS], axis=-1), axis=-1)
            swap = flipped < own
            pixels[v, swap] = pixels[v, swap][:, FLIP_JOINTS]
            confidence[v, swap] = confidence[v, swap][:, FLIP_JOINTS]
            swapped[v] ^= swap
    points, error = triangulate(cameras, pixels, confidence)
    return points, error, swapped


def full_length(track: Track2D, values: np.ndarray, frames: int) -> np.ndarray:
    """Per-track rows (len(track), ...) placed at their video frames in an array of ``frames`` rows (NaN else)."""
    out = np.full((max(frames, track.start + len(track)),) + values.shape[1:], np.nan, np.float32)
    out[track.start:track.start + len(track)] = values
    return out[:frames]


def score_person_view(track: Track2D, poses: np.ndarray, reference: np.ndarray, min_frames: int = 2
                      ) -> dict[str, float] | None:
    """One followed person's single-view 3D against the triangulated reference, the per-person scoring of every
    bench on these recordings: ``poses`` (len(track), 17, 3) of the track's frames (placed at their video frames
    by :func:`full_length`) or already one row per video frame, ``reference`` (F, 17, 3) metres in the same camera
    frame (NaN where not triangulated) -> :func:`limb_scores` over the frames where both are finite; None when
    fewer than ``min_frames`` are."""
    if len(poses) != len(reference):
        poses = full_length(track, poses, len(reference))
    valid = np.isfinite(poses).all(axis=(1, 2)) & np.isfinite(reference).all(axis=(1, 2))
    return limb_scores(poses[valid], reference[valid]) if valid.sum() >= min_frames else None


def triangulate_tracks(cameras: list[CalibratedCamera], tracks: list[Track2D], frames: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`triangulate_consistent` of one followed person's 2D tracks, one per camera (same order), over the
    first ``frames`` video frames (frames a track does not cover have no weight). Returns its (points, error,
    swapped)."""
    pixels = np.stack([full_length(t, t.positions, frames) for t in tracks])
    confidence = np.nan_to_num(np.stack([full_length(t, t.confidence, frames) for t in tracks]))
    return triangulate_consistent(cameras, pixels, confidence)


def shift_frames(values: np.ndarray, offset: int) -> np.ndarray:
    """``out[t] = values[t + offset]`` along the first axis (same length; NaN, or 0 for integer/bool arrays,
    where ``t + offset`` falls outside)."""
    out = np.full_like(values, np.nan) if np.issubdtype(values.dtype, np.floating) else np.zeros_like(values)
    frames = len(values)
    if abs(offset) < frames:
        if offset >= 0:
            out[:frames - offset] = values[offset:]
        else:
            out[-offset:] = values[:frames + offset]
    return out


def pair_error(cameras: list[CalibratedCamera], pixels: np.ndarray, confidence: np.ndarray,
               min_confidence: float = 0.3) -> tuple[float, int]:
    """How well 2D keypoints of several views agree: median over the joints seen by every view (with at least
    ``min_confidence``) of the mean reprojection error (pixels) after :func:`triangulate`, and how many such joints
    there were. pixels (V, T, J, 2), confidence (V, T, J); NaN error when none is seen by all views."""
    _, error = triangulate(cameras, pixels, confidence, min_views=len(cameras), min_confidence=min_confidence)
    seen = np.isfinite(error)
    return (float(np.median(error[seen])) if seen.any() else float("nan")), int(seen.sum())


def estimate_offsets(cameras: list[CalibratedCamera], pixels: np.ndarray, confidence: np.ndarray,
                     max_offset: int, min_joints: int = 50, min_gain: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Synchronisation offsets of the views relative to the first: view v's frame ``t + offsets[v]`` shows the
    instant of the first view's frame t. For each view and each candidate offset in [-max_offset, max_offset] the
    view is triangulated with the first one (:func:`pair_error`) and the offset of the smallest median reprojection
    error wins (the calibration ties the two views' keypoints only at the same instant), if it beats offset 0 by at
    least ``min_gain`` (a fraction of the error at 0; smaller gains are noise: detector and calibration errors
    alone shift the minimum of a slowly moving person by a frame or two).

    pixels (V, T, J, 2) distorted pixels, NaN = unseen, confidence (V, T, J) (several people: joints of each
    person side by side on the J axis, matched across views). Returns (offsets (V,) int, first 0; error
    (V, 2 max_offset + 1) pixels per candidate, NaN where fewer than ``min_joints`` joints overlap)."""
    candidates = np.arange(-max_offset, max_offset + 1)
    errors = np.full((len(cameras), len(candidates)), np.nan)
    for v in range(1, len(cameras)):
        for k, offset in enumerate(candidates):
            pair = [cameras[0], cameras[v]]
            error, joints = pair_error(pair, np.stack([pixels[0], shift_frames(pixels[v], int(offset))]),
                                       np.stack([confidence[0], shift_frames(confidence[v], int(offset))]))
            errors[v, k] = error if joints >= min_joints else np.nan
    errors[0, candidates == 0] = 0.0
    best = np.argmin(np.nan_to_num(errors, nan=np.inf), axis=1)
    at_zero = errors[:, max_offset]
    gain = (at_zero - errors[np.arange(len(cameras)), best]) / np.where(at_zero > 0, at_zero, 1.0)
    best = np.where(np.isfinite(errors).any(axis=1) & (gain >= min_gain), best, max_offset)
    return candidates[best], errors


def match_people(cameras: list[CalibratedCamera], pixels: list[np.ndarray], confidence: list[np.ndarray],
                 max_error: float = 0.1) -> list[dict[int, int]]:
    """Who is who across views, by triangulation consistency. pixels[v]: (P_v, T, J, 2) the people tracked in
    view v (same time axis for every view), confidence[v]: (P_v, T, J).

    The view with the most people starts one group per person; each other view in turn is assigned to the groups
    (Hungarian assignment, scipy) by the median reprojection error of triangulating the group's views with the
    candidate (:func:`pair_error`), divided by the candidate's median height in pixels; a pair costing more than
    ``max_error`` (or seeing no joint together) is no match, and the candidate starts a group of its own (a person
    not seen by the first views). Returns the groups: {view: person index in that view}, ordered as created."""
    from scipy.optimize import linear_sum_assignment

    order = sorted(range(len(cameras)), key=lambda v: -len(pixels[v]))
    groups = [{order[0]: p} for p in range(len(pixels[order[0]]))]
    for v in order[1:]:
        spans = np.fmax.reduce(pixels[v][..., 1], axis=-1) - np.fmin.reduce(pixels[v][..., 1], axis=-1)  # (P, T)
        heights = [float(np.median(s[np.isfinite(s)])) if np.isfinite(s).any() else np.nan for s in spans]
        cost = np.full((len(groups), len(pixels[v])), np.inf)
        for g, group in enumerate(groups):
            views = sorted(group)
            for c in range(len(pixels[v])):
                error, joints = pair_error([cameras[u] for u in views] + [cameras[v]],
                                           np.stack([pixels[u][group[u]] for u in views] + [pixels[v][c]]),
                                           np.stack([confidence[u][group[u]] for u in views] + [confidence[v][c]]))
                if joints and np.isfinite(heights[c]) and error / heights[c] <= max_error:
                    cost[g, c] = error / heights[c]
        rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
        matched = set()
        for g, c in zip(rows, cols):
            if np.isfinite(cost[g, c]):
                groups[g][v] = int(c)
                matched.add(int(c))
        groups += [{v: c} for c in range(len(pixels[v])) if c not in matched]
    return groups


def limb_lengths(poses: np.ndarray) -> np.ndarray:
    """(T, 17, 3) -> (T, 8) limb lengths (:data:`LIMB_BONES` order), same units."""
    return bone_lengths(poses)[:, LIMB_BONES]


def proportions(limbs: np.ndarray) -> np.ndarray:
    """(8,) limb lengths -> (4,) left/right-averaged limb lengths divided by their sum."""
    paired = (limbs[0::2] + limbs[1::2]) / 2
    return paired / paired.sum()


def limb_ratios(limbs: np.ndarray) -> np.ndarray:
    """(8,) limb lengths -> (3,) shin / thigh, forearm / upper arm, (upper arm + forearm) / (thigh + shin), each
    limb left/right averaged."""
    thigh, shin, upper, fore = (limbs[0::2] + limbs[1::2]) / 2
    return np.array([shin / thigh, fore / upper, (upper + fore) / (thigh + shin)])


def limb_scores(estimate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Scores of ``estimate`` against ``reference`` (both (T, 17, 3) metres, any frames: P-MPJPE aligns each
    frame); see the module docstring. Frames where the reference has NaN are skipped."""
    valid = ~np.isnan(reference).any(axis=(1, 2))
    estimate, reference = estimate[valid].astype(np.float64), reference[valid].astype(np.float64)
    mine, theirs = limb_lengths(estimate), limb_lengths(reference)
    med_mine, med_theirs = np.median(mine, axis=0), np.median(theirs, axis=0)
    off = np.abs(proportions(med_mine) / proportions(med_theirs) - 1)
    return {"frames": int(valid.sum()),
            "p_mpjpe_mm": float(np.mean(p_mpjpe(estimate, reference)) * 1000),
            "limb_length_error_mm": float(np.abs(med_mine - med_theirs).mean() * 1000),
            "proportions_off_pct": float(off.mean() * 100), "proportions_max_pct": float(off.max() * 100),
            "proportions8_off_pct": float(np.mean(np.abs(med_mine / med_mine.sum() / (med_theirs / med_theirs.sum())
                                                         - 1)) * 100),
            "ratios_max_pct": float(np.max(np.abs(limb_ratios(med_mine) / limb_ratios(med_theirs) - 1)) * 100),
            "length_std_mm": float(mine.std(axis=0).mean() * 1000),
            "left_right_mm": float(np.mean([np.abs(mine[:, a] - mine[:, b]).mean()
                                            for a, b in [(0, 1), (2, 3), (4, 5), (6, 7)]]) * 1000)}


POSE2SIM_WHEEL = "pose2sim==0.10.49"
POSE2SIM_DEMOS = ("Demo_SinglePerson", "Demo_MultiPerson")
POSE2SIM_LICENCE = "pose2sim-0.10.49.dist-info/licenses/LICENSE"


def fetch_pose2sim_demo(target: str | Path, demo: str = "Demo_SinglePerson") -> Path:
    """A Pose2Sim demo (:data:`POSE2SIM_DEMOS`: 4 calibrated 1080x1920 60 fps videos, 100 frames each, of one
    person or of two people together, the same cameras; BSD-3-Clause) extracted from the ``pose2sim`` wheel
    (downloaded once to the cache) into ``target``: ``videos/cam0[1-4].mp4``, ``calibration/Calib.qca.txt`` and
    ``LICENSE`` (the wheel's licence, kept next to the data). Returns ``target``; reused when already there."""
    import zipfile

    from common.utils.downloads import cache_dir, pip_download
    from common.utils.fileio import atomic_write

    if demo not in POSE2SIM_DEMOS:
        raise UserError(f"Pose2Sim demo must be one of {POSE2SIM_DEMOS}, got {demo!r}")
    target, prefix = Path(target), f"Pose2Sim/{demo}/"
    members = [f"{prefix}videos/cam0{i}.mp4" for i in range(1, 5)] + [f"{prefix}calibration/Calib.qca.txt"]
    wanted = {m: target / m[len(prefix):] for m in members} | {POSE2SIM_LICENCE: target / "LICENSE"}
    if all(p.is_file() for p in wanted.values()):
        return target
    wheel = pip_download(POSE2SIM_WHEEL, cache_dir() / "dists", sdist=False)
    try:
        with zipfile.ZipFile(wheel) as zf:
            for member, path in wanted.items():
                data = zf.read(member)
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda fh, data=data: fh.write(data))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"{wheel}: cannot extract the Pose2Sim demo ({exc})") from None
    return target
