"""Scoring single-view 3D against a calibrated multi-camera recording (``bench/multiview.py``).

* :func:`read_qca`: a Qualisys ``.qca.txt`` calibration (the Pose2Sim demo's) -> :class:`CalibratedCamera` list;
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

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.core.bones import bone_lengths
from common.utils.errors import UserError
from common.core.metrics import p_mpjpe
from common.core.skeleton import BONE_NAMES, FLIP_JOINTS
from common.vision.tracking import Track2D

LIMB_BONES = [BONE_NAMES.index(n) for n in ("l_thigh", "r_thigh", "l_calf", "r_calf", "l_upper_arm", "r_upper_arm",
                                            "l_lower_arm", "r_lower_arm")]
LIMB_PAIRS = [(LIMB_BONES[i], LIMB_BONES[i + 1]) for i in range(0, 8, 2)]
QCA_SENSOR_SCALE = 64.0  # Qualisys stores intrinsics in sub-pixel sensor units of 1/64 pixel


@dataclass
class CalibratedCamera:
    """A pinhole camera with OpenCV distortion: world -> camera is x_c = R @ (X - centre); metres, pixels."""

    name: str
    K: np.ndarray        # (3, 3) pixels
    dist: np.ndarray     # (4,) k1, k2, p1, p2
    R: np.ndarray        # (3, 3) world -> camera rotation
    centre: np.ndarray   # (3,) camera centre in world metres
    size: tuple[int, int]

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) metres -> camera frame (x right, y down, z forward) metres."""
        return (points - self.centre) @ self.R.T

    def projection(self) -> np.ndarray:
        """(3, 4) projection matrix of undistorted pixel coordinates."""
        return self.K @ np.concatenate([self.R, -self.R @ self.centre[:, None]], axis=1)

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


def triangulate_tracks(cameras: list[CalibratedCamera], tracks: list[Track2D], frames: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`triangulate_consistent` of one followed person's 2D tracks, one per camera (same order), over the
    first ``frames`` video frames (frames a track does not cover have no weight). Returns its (points, error,
    swapped)."""
    pixels = np.stack([full_length(t, t.positions, frames) for t in tracks])
    confidence = np.nan_to_num(np.stack([full_length(t, t.confidence, frames) for t in tracks]))
    return triangulate_consistent(cameras, pixels, confidence)


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
