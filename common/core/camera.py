"""Camera maths and the Human3.6M camera parameters.

Frames: *world* is the capture volume (metres, z up for Human3.6M); *camera* has x right, y down, z forward
(metres). Extrinsics are the camera->world rotation as a quaternion ``(w, x, y, z)`` and the camera centre in
world coordinates (metres). Intrinsics are the normalised 9-vector ``[fx, fy, cx, cy, k1, k2, k3, p1, p2]``
with focal lengths scaled by ``2 / res_w`` and the centre by :func:`normalize_screen_coordinates`.

The projection, transform and screen-coordinate functions take torch tensors or numpy arrays (numpy in, numpy
out in the input's float dtype; one implementation for data preparation and training); the world-like frame of
video inference (:func:`camera_to_world_like`, :func:`place_on_ground`) works on numpy poses.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.utils.errors import UserError

CAMERA_FILE = Path(__file__).resolve().parents[1] / "resources" / "h36m_cameras.json"
CAMERA_IDS = ["54138969", "55011271", "58860488", "60457274"]


def _numpy_compatible(fn: Callable) -> Callable:
    """Let a torch function take numpy arrays (returns numpy then, in the input's float dtype)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not any(isinstance(a, np.ndarray) for a in args):
            return fn(*args, **kwargs)
        dtype = next(a.dtype for a in args if isinstance(a, np.ndarray))
        torch_args = [torch.from_numpy(np.asarray(a, dtype=np.float64)) if isinstance(a, np.ndarray) else a
                      for a in args]
        out = fn(*torch_args, **kwargs)
        return out.numpy().astype(dtype if np.issubdtype(dtype, np.floating) else np.float64)

    return wrapper


@_numpy_compatible
def qrot(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``v (..., 3)`` by unit quaternions ``q (..., 4)`` (w, x, y, z); shapes broadcast."""
    q = q.to(v.dtype)
    w, u = q[..., :1], q[..., 1:]
    uv = torch.cross(u.expand_as(v), v, dim=-1)
    uuv = torch.cross(u.expand_as(v), uv, dim=-1)
    return v + 2.0 * (w * uv + uuv)


@_numpy_compatible
def qinverse(q: torch.Tensor) -> torch.Tensor:
    """Inverse of unit quaternions ``(..., 4)`` (w, x, y, z): the conjugate."""
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


@_numpy_compatible
def world_to_camera(X: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """World points ``X (..., 3)`` -> camera frame, given camera->world quaternion R (4,) and centre t (3,) (m)."""
    return qrot(qinverse(R).to(X.dtype), X - t.to(X.dtype))


@_numpy_compatible
def camera_to_world(X: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Camera-frame points ``X (..., 3)`` -> world frame (inverse of :func:`world_to_camera`)."""
    return qrot(R.to(X.dtype), X) + t.to(X.dtype)


@_numpy_compatible
def project_to_2d(X: torch.Tensor, intrinsic: torch.Tensor) -> torch.Tensor:
    """Project camera-frame points with Human3.6M's lens model (radial k1..k3, tangential p1, p2).

    X: (..., J, 3) metres, camera frame. intrinsic: (..., 9) normalised, leading dims broadcast with X's.
    Returns (..., J, 2) normalised screen coordinates. The pinhole coordinates are clamped to [-1, 1] before
    distortion, as in VideoPose3D, so points far outside the view cannot fold back into it.
    """
    cam = intrinsic.to(X.dtype).unsqueeze(-2)
    f, c, k, p = cam[..., :2], cam[..., 2:4], cam[..., 4:7], cam[..., 7:9]
    xy = torch.clamp(X[..., :2] / X[..., 2:3], -1.0, 1.0)
    r2 = (xy ** 2).sum(dim=-1, keepdim=True)
    radial = 1.0 + (k * torch.cat([r2, r2 ** 2, r2 ** 3], dim=-1)).sum(dim=-1, keepdim=True)
    tangential = (p * xy).sum(dim=-1, keepdim=True)
    distorted = xy * (radial + tangential) + p * r2
    return f * distorted + c


@_numpy_compatible
def project_to_2d_linear(X: torch.Tensor, intrinsic: torch.Tensor) -> torch.Tensor:
    """Pinhole projection without distortion; shapes as :func:`project_to_2d`."""
    cam = intrinsic.to(X.dtype).unsqueeze(-2)
    xy = torch.clamp(X[..., :2] / X[..., 2:3], -1.0, 1.0)
    return cam[..., :2] * xy + cam[..., 2:4]


WORLD_UP = (0.0, 0.0, 1.0)  # world frame up (Human3.6M and the virtual cameras: Z up, floor at Z = 0)


def world_up_in_camera(camera: "Camera") -> np.ndarray:
    """The world's up direction (:data:`WORLD_UP`) in ``camera``'s frame: (3,) unit vector (float32)."""
    up = qrot(qinverse(np.asarray(camera.orientation, np.float64)), np.asarray(WORLD_UP, np.float64))
    return (up / np.linalg.norm(up)).astype(np.float32)


CAMERA_FEATURES = 8  # the per-sequence camera description a length model may read (camera_features)


def camera_features(intrinsic: torch.Tensor, up: torch.Tensor, height: torch.Tensor) -> torch.Tensor:
    """What a bone-length model may know of the camera that filmed a sequence: (..., :data:`CAMERA_FEATURES`)
    ``[log fx, log fy, cx, cy, up_x, up_y, up_z, height]``.

    intrinsic: (..., 9) normalised (focal lengths in units of half the image width, principal point in normalised
    screen coordinates; the output has its dtype); up: (..., 3) the world's up direction in the camera frame (unit; its y and z components
    give the pitch, its x component the roll against the floor); height: (...,) metres, the camera centre above the
    floor (world Z = 0). A mirrored camera (flip augmentation) has ``cx`` and ``up_x`` negated."""
    return torch.cat([torch.log(intrinsic[..., :2].clamp_min(1e-3)), intrinsic[..., 2:4], up.to(intrinsic.dtype),
                      height.to(intrinsic.dtype)[..., None]], dim=-1)


def camera_features_of(camera: "Camera") -> np.ndarray:
    """(:data:`CAMERA_FEATURES`,) float64 :func:`camera_features` of a calibrated ``camera`` (floor at world Z = 0)."""
    return camera_features(torch.as_tensor(np.asarray(camera.intrinsic, np.float64)),
                           torch.as_tensor(world_up_in_camera(camera), dtype=torch.float64),
                           torch.tensor(float(np.asarray(camera.translation, np.float64) @ np.asarray(WORLD_UP)),
                                        dtype=torch.float64)).numpy()


def _screen_offset(X, w: float, h: float):
    """The offset ``[1, h / w]`` in the type (numpy or torch), dtype and device of the points ``X`` (..., 2)."""
    if X.shape[-1] != 2:
        raise UserError(f"expected 2D points with a last dimension of 2, got shape {tuple(X.shape)}")
    offset = np.array([1.0, h / w], dtype=np.float64)
    if isinstance(X, torch.Tensor):
        return torch.as_tensor(offset, dtype=X.dtype, device=X.device)
    return offset


def _keep_float_dtype(result, X):
    """``result`` as numpy in ``X``'s float dtype (float32 for integer pixels); tensors unchanged."""
    if isinstance(result, torch.Tensor):
        return result
    return result.astype(X.dtype if np.issubdtype(X.dtype, np.floating) else np.float32)


def normalize_screen_coordinates(X, w: float, h: float):
    """Pixels ``(..., 2)`` -> [-1, 1] along x with the aspect ratio kept: ``X / w * 2 - [1, h / w]``."""
    return _keep_float_dtype(X / w * 2 - _screen_offset(X, w, h), X)


def image_coordinates(X, w: float, h: float):
    """Inverse of :func:`normalize_screen_coordinates`: normalised ``(..., 2)`` -> pixels."""
    return _keep_float_dtype((X + _screen_offset(X, w, h)) * w / 2, X)


@dataclass
class Camera:
    """One calibrated camera of a subject's capture.

    ``intrinsic`` is the normalised 9-vector; ``orientation`` the camera->world quaternion (w, x, y, z);
    ``translation`` the camera centre in world coordinates (metres); ``res_w``/``res_h`` in pixels.
    """

    id: str
    res_w: int
    res_h: int
    intrinsic: np.ndarray
    orientation: np.ndarray
    translation: np.ndarray
    azimuth: float = 0.0

    def world_to_camera(self, X: np.ndarray) -> np.ndarray:
        return world_to_camera(X, self.orientation, self.translation)

    def camera_to_world(self, X: np.ndarray) -> np.ndarray:
        return camera_to_world(X, self.orientation, self.translation)

    def project(self, X: np.ndarray) -> np.ndarray:
        """Camera-frame points ``(..., J, 3)`` -> pixels ``(..., J, 2)`` with distortion."""
        return image_coordinates(project_to_2d(X, self.intrinsic), self.res_w, self.res_h)


def load_cameras(path: str | Path | None = None) -> dict[str, list[Camera]]:
    """Human3.6M cameras per subject (``S1`` ... ``S11``), each a list of 4 in :data:`CAMERA_IDS` order.

    path: a JSON file with ``intrinsic`` (4 cameras, pixels) and ``extrinsic`` (``subject -> 4 ×
    {orientation, translation (mm)}``); defaults to the copy shipped inside the package.
    """
    path = Path(path) if path is not None else CAMERA_FILE
    try:
        spec = json.loads(path.read_text())
        intrinsics = spec["intrinsic"]
        extrinsics = spec["extrinsic"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read camera file {path}: {exc}") from exc
    cameras: dict[str, list[Camera]] = {}
    for subject, views in extrinsics.items():
        cameras[subject] = []
        for intr, extr in zip(intrinsics, views):
            w, h = int(intr["res_w"]), int(intr["res_h"])
            centre = normalize_screen_coordinates(np.asarray(intr["center"], dtype=np.float64), w, h)
            focal = np.asarray(intr["focal_length"], dtype=np.float64) / w * 2.0
            vec = np.concatenate([focal, centre, intr["radial_distortion"], intr["tangential_distortion"]])
            cameras[subject].append(Camera(
                id=str(intr["id"]), res_w=w, res_h=h, intrinsic=vec.astype(np.float32),
                orientation=np.asarray(extr["orientation"], dtype=np.float32),
                translation=np.asarray(extr["translation"], dtype=np.float32) / 1000.0,
                azimuth=float(intr.get("azimuth", 0.0)),
            ))
    return cameras


def flip_intrinsic(intrinsic):
    """Intrinsics of the mirrored camera (flip augmentation): negate ``cx`` and ``p1``. Shape (..., 9)."""
    out = intrinsic.clone() if isinstance(intrinsic, torch.Tensor) else intrinsic.copy()
    out[..., 2] = -out[..., 2]
    out[..., 7] = -out[..., 7]
    return out


# --------------------------------------------------------------------------- world-like frame of video inference
# Output frame of the exported 3D poses of ``inference.py`` ("world-like", metres):
# * built from the camera frame (x right, y down, z forward) as X = x, Y = z, Z = -y, then rotated about X so
#   that the sequence's mean torso direction (pelvis -> thorax) points straight up: this corrects the unknown
#   camera pitch assuming the person is on average upright. X stays the camera's right axis; Y points away from
#   the camera, horizontally. Poses already in a z-up world frame (``--poses_frame world``) are not rotated.
# * ground at Z = 0: root-relative poses (pelvis always at the origin, the usual lifter output) are shifted per
#   frame so their lowest joint touches the ground, with the pelvis above X = Y = 0; poses that carry a
#   trajectory keep it and are shifted once so the lowest joint of the whole sequence is at Z = 0.
WORLD_LIKE_FRAMES = {
    "camera": "world-like, metres: X = camera right, Y = forward away from the camera (horizontal after a "
              "pitch correction that makes the mean torso direction vertical), Z = up; ground at Z = 0 "
              "(root-relative input: each frame's lowest joint on the ground, pelvis above X = Y = 0)",
    "world": "the input's world frame (taken as Z up), metres; ground at Z = 0 (root-relative input: each "
             "frame's lowest joint on the ground, pelvis above X = Y = 0; else one shift for the sequence)",
}


def camera_to_world_like(poses: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Camera-frame poses (..., 17, 3) metres -> world-like axes (see :data:`WORLD_LIKE_FRAMES`); the pitch
    correction is the one that makes ``reference``'s (T, 17, 3) mean torso direction (joint 0 -> 8) vertical."""
    swap = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)  # X = x, Y = z, Z = -y
    torso = ((reference[:, 8] - reference[:, 0]) @ swap.T).mean(axis=0)
    angle = np.arctan2(torso[1], torso[2])
    pitch = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    return (poses @ (pitch @ swap).T).astype(np.float32)


def place_on_ground(poses: np.ndarray) -> np.ndarray:
    """Ground z-up poses (T, 17, 3) metres at z = 0: per frame if root-relative (pelvis at the origin in
    every frame), else one shift for the whole sequence."""
    out = poses.astype(np.float32).copy()
    if np.abs(out[:, 0]).max() < 1e-6:
        out[..., 2] -= out[..., 2].min(axis=1, keepdims=True)
    else:
        out[..., 2] -= out[..., 2].min()
    return out
