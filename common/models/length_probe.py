"""What a bone-length model is measured against: the size-free error and a linear probe on simple 2D statistics.

* :func:`size_free_error_mm`: each person's predicted lengths scaled by the one factor that fits their true
  lengths best (least squares), then the mean absolute error: what is left once overall size is removed, i.e.
  how well the *proportions* are predicted.
* :func:`probe_features`: per sequence, 27 numbers read straight off the 2D keypoints: for each bone the log of
  its 90th-percentile image length over the frames, centred over the 16 bones (the bone's share of the figure,
  free of distance and size), the log of the sequence's 2D spread (root-relative RMS), and the frame mean of the
  10 position-aware :func:`size_frame_features` (where the feet and head are in the image, the figure's image
  size): through fixed calibrated cameras a foot's image position on the floor fixes the distance, and the
  image size then gives the person's size.
* :class:`LinearProbe`: ridge regression (closed form) from those features to log bone lengths, fitted on
  training batches. A learned length model that does not beat it has not learnt what its input holds.

Every function is batched over people; inputs are normalised screen coordinates (any 2D unit works: the
features are logs and the bone shares are centred).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from common.core.camera import Camera, camera_features_of
from common.core.skeleton import BONE_CHILDREN, BONE_PARENTS, NUM_BONES, NUM_JOINTS

SIZE_JOINTS = (0, 10, 3, 6)  # pelvis, head, r_ankle, l_ankle: where the figure stands and how tall it is
NUM_SIZE_FEATURES = 2 * len(SIZE_JOINTS) + 2
NUM_FEATURES = NUM_BONES + 1 + NUM_SIZE_FEATURES
LENGTH_QUANTILE = 0.9  # a bone's image length near its most frontal view; robust to a few bad frames
_EPS = 1e-6


def size_free_scale(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares factor per person that maps predicted onto true lengths: (N, 16) x2 -> (N,),
    ``s = <pred, target> / <pred, pred>``."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return (pred * target).sum(-1) / np.maximum((pred * pred).sum(-1), 1e-12)


def size_free_error_mm(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per person, the mean absolute error (mm) of the predicted lengths once scaled by
    :func:`size_free_scale`: (N, 16) x2 metres -> (N,) mm."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    scaled = pred * size_free_scale(pred, target)[:, None]
    return np.abs(scaled - target).mean(-1) * 1000.0


def absolute_error_mm(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per person, the mean absolute bone-length error (mm): (N, 16) x2 metres -> (N,) mm."""
    return np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64)).mean(-1) * 1000.0


def size_error_pct(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per person, how far the predicted overall size is from the true one, in percent: the geometric mean over
    bones of ``pred / target`` minus one, absolute (proportion errors cancel in it). (N, 16) x2 -> (N,)."""
    ratio = np.log(np.asarray(pred, np.float64) / np.asarray(target, np.float64)).mean(-1)
    return np.abs(np.expm1(ratio)) * 100.0


def error_row(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``{"mae", "size_free"}`` (mm) and ``"size_pct"`` (%), each averaged over people; pred/target (N, 16) m."""
    return {"mae": float(absolute_error_mm(pred, target).mean()),
            "size_free": float(size_free_error_mm(pred, target).mean()),
            "size_pct": float(size_error_pct(pred, target).mean())}


def size_frame_features(keypoints_2d: torch.Tensor) -> torch.Tensor:
    """Per-frame position-aware size inputs: (..., 17, 2) normalised screen coordinates -> (..., 10) float32:
    the image positions (x, y) of the pelvis, head and both ankles (:data:`SIZE_JOINTS`), the log of the frame's
    root-relative 2D RMS and the log of the head's distance to the ankles' midpoint (both normalised units).

    Scale-consistent: scaling a frame's 2D about a point by ``k`` adds ``log k`` to both logs and moves the
    positions as the scaling does (a point on the scaling centre keeps its position)."""
    x = keypoints_2d.float()
    positions = x[..., SIZE_JOINTS, :].flatten(-2)
    relative = x - x[..., :1, :]
    spread = 0.5 * torch.log(relative.pow(2).sum(-1).mean(-1).clamp_min(_EPS))
    feet = 0.5 * (x[..., 3, :] + x[..., 6, :])
    extent = torch.log(torch.linalg.vector_norm(x[..., 10, :] - feet, dim=-1).clamp_min(1e-4))
    return torch.cat([positions, spread[..., None], extent[..., None]], dim=-1)


def probe_features(keypoints_2d: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, 17, 2) 2D keypoints -> (B, 27) float32 probe features (module docstring): 16 centred log bone
    image lengths (90th percentile over the T frames), the log root-relative 2D RMS spread, then the frame
    means of :func:`size_frame_features`. valid: optional (B, T) bool, the frames of a padded batch to use
    (default: every frame)."""
    if keypoints_2d.ndim != 4 or keypoints_2d.shape[-2:] != (NUM_JOINTS, 2):
        raise ValueError(f"expected 2D keypoints (B, T, {NUM_JOINTS}, 2), got {tuple(keypoints_2d.shape)}")
    x = keypoints_2d.float()
    if valid is None:
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    weight = valid.float()
    count = weight.sum(1).clamp_min(1.0)
    children = torch.as_tensor(BONE_CHILDREN, device=x.device)
    parents = torch.as_tensor(BONE_PARENTS, device=x.device)
    bones = torch.linalg.vector_norm(x.index_select(-2, children) - x.index_select(-2, parents), dim=-1)
    bones = bones.masked_fill(~valid[..., None], float("nan"))
    log_bones = torch.log(torch.nanquantile(bones, LENGTH_QUANTILE, dim=1).clamp_min(_EPS))  # (B, 16)
    shares = log_bones - log_bones.mean(dim=-1, keepdim=True)
    relative = x - x[:, :, :1]
    mean_square = (relative.pow(2).sum(-1).mean(-1) * weight).sum(1) / count
    spread = 0.5 * torch.log(mean_square.clamp_min(_EPS * _EPS))  # (B,) log RMS
    placed = (size_frame_features(x) * weight[..., None]).sum(1) / count[:, None]
    return torch.cat([shares, spread[:, None], placed], dim=-1)


def sequence_features(sequences: Sequence[np.ndarray]) -> torch.Tensor:
    """Probe features of sequences of different lengths: list of (T_i, 17, 2) -> (N, F) (:data:`NUM_FEATURES`)."""
    return torch.cat([probe_features(torch.as_tensor(np.asarray(s), dtype=torch.float32)[None])
                      for s in sequences]) if len(sequences) else torch.zeros((0, NUM_FEATURES))


class LinearProbe:
    """Ridge regression ``log lengths = features @ weight + bias``, fitted in closed form on centred data.

    weight: (F, 16), bias: (16,), float64. ``ridge`` is the L2 penalty relative to the features' mean square
    (scale-free). Fitting takes features (N, F) and lengths (N, 16) metres; :meth:`predict` returns metres.
    """

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = ridge
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def fit(self, features: torch.Tensor, lengths: torch.Tensor) -> "LinearProbe":
        x = torch.as_tensor(features, dtype=torch.float64)
        y = torch.log(torch.as_tensor(lengths, dtype=torch.float64).clamp_min(_EPS))
        if len(x) < 2 or len(x) != len(y):
            raise ValueError(f"the probe needs >= 2 matching rows, got {len(x)} features and {len(y)} targets")
        mean_x, mean_y = x.mean(0), y.mean(0)
        xc, yc = x - mean_x, y - mean_y
        gram = xc.T @ xc
        penalty = self.ridge * gram.diagonal().mean().clamp_min(1e-12)
        self.weight = torch.linalg.solve(gram + penalty * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ yc)
        self.bias = mean_y - mean_x @ self.weight
        return self

    def predict(self, features: torch.Tensor) -> np.ndarray:
        """(N, F) features -> (N, 16) bone lengths, metres (numpy float64). A probe fitted on fewer features
        (checkpoints from before the size features: the first 17) reads the first ones it was fitted on."""
        if self.weight is None:
            raise RuntimeError("fit the probe first")
        x = torch.as_tensor(features, dtype=torch.float64, device=self.weight.device)[:, :self.weight.shape[0]]
        return torch.exp(x @ self.weight + self.bias).cpu().numpy()


def stored_references(checkpoint: dict[str, Any]) -> tuple[np.ndarray | None, LinearProbe | None]:
    """(training bank mean (16,) m or None, fitted probe or None) as ``train.py -t length`` stores them in its
    checkpoints (``length_mean``, ``length_probe`` = {weight (F, 16), bias (16,)}); the published checkpoints
    store neither."""
    mean = checkpoint.get("length_mean")
    stored = checkpoint.get("length_probe")
    probe = None
    if isinstance(stored, dict) and "weight" in stored and "bias" in stored:
        probe = LinearProbe()
        probe.weight = torch.as_tensor(stored["weight"], dtype=torch.float64)
        probe.bias = torch.as_tensor(stored["bias"], dtype=torch.float64)
    return (None if mean is None else np.asarray(torch.as_tensor(mean), dtype=np.float64)), probe


STANDING_CHAIN = (1, 2, 6, 7, 8, 9)  # r_thigh, r_calf, spine_1, spine_2, neck, head: ankle to head top
ANKLE_TO_SOLE_M = 0.10  # metres added for the ankle's height above the sole and the hip joints' drop


def stature_m(lengths: np.ndarray) -> np.ndarray:
    """Standing height (metres) by the documented rule: the bones from ankle to head top
    (:data:`STANDING_CHAIN`, left/right averaged) plus :data:`ANKLE_TO_SOLE_M`. (..., 16) m -> (...)."""
    lengths = np.asarray(lengths, np.float64)
    legs = (lengths[..., [1, 2]] + lengths[..., [4, 5]]).sum(-1) / 2
    return legs + lengths[..., [6, 7, 8, 9]].sum(-1) + ANKLE_TO_SOLE_M


def scale_to_height(lengths: np.ndarray, height_m: float) -> np.ndarray:
    """Keep the proportions of ``lengths`` (..., 16) m and fix the size so that :func:`stature_m` is
    ``height_m``: the chain scales, the fixed :data:`ANKLE_TO_SOLE_M` does not."""
    lengths = np.asarray(lengths, np.float64)
    chain = stature_m(lengths) - ANKLE_TO_SOLE_M
    return lengths * ((height_m - ANKLE_TO_SOLE_M) / chain)[..., None]


FLOOR_HEIGHT_QUANTILE = 0.9  # of the per-frame heights over the usable frames: the most upright ones
FLOOR_MIN_HEIGHT_M = 1.2  # a sequence read lower than this never stood upright: its read is not a size
FLOOR_PLANT_WINDOW = 5  # frames each side (0.1 s at the datasets' 50 fps) over which a planted ankle stays put
FLOOR_PLANT_RADIUS_M = 0.15  # how far a planted ankle's floor point may wander in that window (2D noise)
FLOOR_STRAIGHT_MIN = 0.95  # ankle-knee-hip-thorax-head in the image: straight-line distance / path length
FLOOR_MIN_FRAMES = 50  # usable frames (1 s at 50 fps) a sequence needs before its read counts
HEAD, ANKLES, THORAX = 10, (3, 6), 8


def _floor_rays(keypoints_2d: torch.Tensor, camera: torch.Tensor, ankle_height_m: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one place the floor is read: pinhole rays through every joint and, for each ankle, where its ray meets
    the plane ``ankle_height_m`` above the floor (lens distortion ignored). keypoints_2d (..., T, 17, 2)
    normalised; camera (..., 8) :func:`common.core.camera.camera_features`. Returns (rays (..., T, 17, 3) with
    z = 1, ankle floor points (..., T, 2, 3) camera frame metres, right then left ankle; up (..., 1, 3) the world's
    up in the camera frame); an ankle at or above the horizon gets a huge depth."""
    kp = keypoints_2d.to(camera.dtype)
    cam = camera[..., None, None, :]
    ray = torch.cat([(kp - cam[..., 2:4]) / torch.exp(cam[..., :2]), torch.ones_like(kp[..., :1])], dim=-1)
    up, centre_height = cam[..., 0, 4:7], cam[..., 0, 7]  # (..., 1, 3), (..., 1)
    ankle_rays = ray[..., list(ANKLES), :]  # (..., T, 2, 3)
    depth = (ankle_height_m - centre_height[..., None]) / (ankle_rays * up[..., None, :]).sum(-1).clamp_max(-1e-6)
    return ray, ankle_rays * depth[..., None], up


def _head_height(ankle: torch.Tensor, head_ray: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The head's height above a standing ankle, the head taken on the vertical through the ankle: the point of the
    line ``ankle + h * up`` closest to the head's ray. ankle (..., 3) metres, head_ray (..., 3), up (..., 3) unit
    -> h (...) metres."""
    head = head_ray / torch.linalg.vector_norm(head_ray, dim=-1, keepdim=True)
    # closest points of the line ankle + h * up and the ray s * head: h = (b e - d) / (1 - b^2)
    b, d, e = (head * up).sum(-1), (ankle * up).sum(-1), (head * ankle).sum(-1)
    return (b * e - d) / (1.0 - b * b).clamp_min(1e-9)


def _lower_ankle(keypoints_2d: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Of the two ankle floor points (..., T, 2, 3) (:func:`_floor_rays`), the one of the ankle lower in the image
    (larger y in keypoints_2d (..., T, 17, 2)): (point (..., T, 3) camera frame metres, its joint index (..., T))."""
    lower_right = keypoints_2d[..., ANKLES[0], 1] >= keypoints_2d[..., ANKLES[1], 1]
    return (torch.where(lower_right[..., None], points[..., 0, :], points[..., 1, :]),
            torch.where(lower_right, ANKLES[0], ANKLES[1]))


def _camera_tensor(camera: Camera) -> torch.Tensor:
    return torch.as_tensor(camera_features_of(camera), dtype=torch.float64)


def floor_ankle_points(poses_2d: np.ndarray, camera: Camera, ankle_height_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each ankle would be if it were on the floor (:func:`_floor_rays` for one calibrated camera).
    poses_2d (T, 17, 2) normalised -> (points (T, 2, 3) camera frame metres, right then left ankle; rays (T, 17, 3)
    with z = 1 per joint)."""
    ray, points, _ = _floor_rays(torch.as_tensor(np.asarray(poses_2d, np.float64)), _camera_tensor(camera),
                                 ankle_height_m)
    return points.numpy(), ray.numpy()


def floor_ankle_depths(poses_2d: np.ndarray, camera: Camera, ankle_height_m: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame, the depth of the ankle lower in the image (larger y), :func:`floor_geometry` for one calibrated
    camera (one ray computation). poses_2d (T, 17, 2) normalised -> (depth (T,) metres along the optical axis, rays (T, 17, 3) with
    z = 1 per joint, lower ankle's joint index (T,))."""
    kp = torch.as_tensor(np.asarray(poses_2d, np.float64))
    ray, points, _ = _floor_rays(kp, _camera_tensor(camera), ankle_height_m)
    ankle, lower = _lower_ankle(kp, points)
    return ankle[..., 2].numpy(), ray.numpy(), lower.numpy()


def planted_ankles(points: np.ndarray, window: int = FLOOR_PLANT_WINDOW,
                   radius_m: float = FLOOR_PLANT_RADIUS_M) -> np.ndarray:
    """Which ankle stands on the floor at each frame: its floor point (:func:`floor_ankle_points`, (T, 2, 3)
    metres) stays within ``radius_m`` of the frame's over the ``window`` frames before and after. Seen through a
    fixed camera a stance foot does not move; a raised foot's floor point runs off as it rises (the ray meets the
    floor behind it). (T, 2) bool; the first and last ``window`` frames are never planted."""
    points = np.asarray(points, np.float64)
    planted = np.zeros(points.shape[:2], dtype=bool)
    if len(points) <= 2 * window:
        return planted
    runs = np.lib.stride_tricks.sliding_window_view(points, 2 * window + 1, axis=0)  # (T - 2w, 2, 3, 2w + 1)
    centre = points[window:len(points) - window, ..., None]
    planted[window:len(points) - window] = np.linalg.norm(runs - centre, axis=2).max(-1) < radius_m
    return planted


def chain_straightness(poses_2d: np.ndarray, ankle: np.ndarray) -> np.ndarray:
    """How straight the body stands in the image from the given ankle up: the distance from the ankle (joint 3 or
    6, (T,)) to the head over the path ankle -> knee -> hip -> thorax -> head, 1 for a straight chain (an upright
    stance, whichever way the camera sees it), less for bent knees or a bent back. poses_2d (T, 17, 2) -> (T,)."""
    kp = np.asarray(poses_2d, np.float64)
    frames, ankle = np.arange(len(kp)), np.asarray(ankle)
    chain = np.stack([kp[frames, ankle], kp[frames, ankle - 1], kp[frames, ankle - 2], kp[:, THORAX], kp[:, HEAD]], 1)
    path = np.linalg.norm(np.diff(chain, axis=1), axis=-1).sum(-1)
    return np.linalg.norm(chain[:, -1] - chain[:, 0], axis=-1) / np.maximum(path, 1e-9)


def floor_geometry(keypoints_2d: torch.Tensor, camera: torch.Tensor, ankle_height_m: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per frame, what a calibrated camera reads off the 2D of a person standing on the floor (lens distortion
    ignored): the ankle lower in the image (larger y) is taken on the floor (:func:`_floor_rays`), which gives its
    depth, and the head's height above it (:func:`_head_height`) is the standing height read.
    keypoints_2d (..., T, 17, 2) normalised; camera (..., 8) :func:`common.core.camera.camera_features`.
    Returns (depth (..., T) metres along the optical axis, height (..., T) metres, lower ankle index (..., T)); an
    ankle at or above the horizon gets a huge depth."""
    ray, points, up = _floor_rays(keypoints_2d, camera, ankle_height_m)
    ankle, lower = _lower_ankle(keypoints_2d, points)  # camera frame, metres
    return ankle[..., 2], _head_height(ankle, ray[..., HEAD, :], up), lower


def lower_ankle_height_m(world_poses: Sequence[np.ndarray]) -> float:
    """Median over all frames of the lower ankle's height above the world floor (Z = 0): list of (T, 17, 3) world
    metres -> metres."""
    return float(np.median(np.concatenate([np.asarray(p)[:, ANKLES, 2].min(-1) for p in world_poses])))


def floor_heights(poses_2d: np.ndarray, camera: Camera, ankle_height_m: float, fps: float = 50.0) -> np.ndarray:
    """The standing heights (metres) read through a calibrated camera on a sequence's usable frames only: a planted
    ankle (:func:`planted_ankles`; of two, the one lower in the image) and a straight chain up from it
    (:func:`chain_straightness` >= :data:`FLOOR_STRAIGHT_MIN`). In those the planted ankle's 3D point is where its
    ray meets the floor plane, and the head is taken on the vertical through it (the point of that line closest to
    the head's ray: an upright person); the read is the head's height above the ankle. Frames with both feet off the
    floor (a jump) are not used: there the ankle's ray meets the floor behind the person and reads a larger body.
    poses_2d (T, 17, 2) normalised (NaN: a frame never used); the plant window is counted at 50 frames/s (the
    datasets'), ``fps`` scales it to the sequence's rate. Returns (N,) metres, one per usable frame."""
    kp = np.asarray(poses_2d, np.float64)
    ray, points, up = _floor_rays(torch.as_tensor(kp), _camera_tensor(camera), ankle_height_m)
    planted = planted_ankles(points.numpy(), window=max(1, round(FLOOR_PLANT_WINDOW * fps / 50.0)))
    lower = np.where(kp[:, ANKLES[0], 1] >= kp[:, ANKLES[1], 1], 0, 1)
    side = np.where(planted.all(1), lower, np.where(planted[:, 0], 0, 1))  # 0 right, 1 left
    usable = planted.any(1) & (chain_straightness(kp, np.asarray(ANKLES)[side]) >= FLOOR_STRAIGHT_MIN)
    frames = torch.as_tensor(np.flatnonzero(usable))
    ankle = points[frames, torch.as_tensor(side[usable])]  # (N, 3) camera frame, metres
    return _head_height(ankle, ray[frames, HEAD], up[0]).numpy()


def floor_height_log(poses_2d: np.ndarray, camera: Camera, ankle_height_m: float, fps: float = 50.0,
                     min_frames: int = FLOOR_MIN_FRAMES) -> float:
    """The log (metres) of a sequence's standing height read through its calibrated camera: the
    :data:`FLOOR_HEIGHT_QUANTILE` of :func:`floor_heights` over its usable frames; NaN when fewer than
    ``min_frames`` frames (counted at 50 frames/s, scaled by ``fps``) are usable."""
    return floor_read_log(floor_heights(poses_2d, camera, ankle_height_m, fps), fps, min_frames)


def floor_read_log(heights: np.ndarray, fps: float = 50.0, min_frames: int = FLOOR_MIN_FRAMES) -> float:
    """The read of :func:`floor_heights`' per-frame heights (N,) metres: the log of their
    :data:`FLOOR_HEIGHT_QUANTILE`; NaN when fewer than ``min_frames`` (counted at 50 frames/s, scaled by ``fps``)."""
    if len(heights) < max(1, round(min_frames * fps / 50.0)):
        return float("nan")
    return float(np.quantile(np.log(np.clip(heights, 0.05, None)), FLOOR_HEIGHT_QUANTILE))


def floor_sizes(reads: np.ndarray, train_reads: np.ndarray, train_sizes: np.ndarray) -> np.ndarray:
    """Overall sizes (factors of the mean body) from :func:`floor_height_log` reads (N,): each read minus the median
    offset of the training sequences' reads (M,) from their true log sizes (M,) (log of :func:`size_factor`)."""
    offset = float(np.median(np.asarray(train_reads) - np.log(np.asarray(train_sizes))))
    return np.exp(np.asarray(reads, np.float64) - offset)


def group_median(values: np.ndarray, groups: Sequence[str], include: np.ndarray | None = None) -> np.ndarray:
    """Per group, the element-wise median of its included rows, given to every row of the group: values (N, ...),
    groups (N,) labels (e.g. subjects), include (N,) bool (None: all). A group with no included row keeps its own
    values. (N, ...) float64."""
    values, groups = np.asarray(values, np.float64), np.asarray(groups)
    include = np.ones(len(values), bool) if include is None else np.asarray(include, bool)
    pooled = values.copy()
    for group in np.unique(groups):
        members = groups == group
        if (members & include).any():
            pooled[members] = np.median(values[members & include], axis=0)
    return pooled


def pooled_log_sizes(log_sizes: np.ndarray, groups: Sequence[str], read: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One size per person from several sequences: per group (a subject), the median of the log sizes (N,) of its
    sequences that were read (``read`` (N,) bool), given to every sequence of the group; a group with no read
    sequence stays unread. Returns (log sizes (N,), read (N,) bool)."""
    read, groups = np.asarray(read, bool), np.asarray(groups)
    pooled_read = np.isin(groups, groups[read])
    return group_median(log_sizes, groups, read), pooled_read


def pooled_lengths(lengths: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """One length vector per person from several sequences: lengths (N, 16) metres, one row per sequence, groups
    (N,) the person of each (a subject) -> (N, 16) float32, every row of a group its per-bone median of the log
    lengths (a person's bones are the same in every video of them; a few sequences read wrong do not pull it)."""
    return np.exp(group_median(np.log(np.asarray(lengths, np.float64)), groups)).astype(np.float32)


def size_factor(lengths: np.ndarray, mean_lengths: np.ndarray) -> np.ndarray:
    """A person's overall size as a factor of the mean body: the geometric mean over bones of
    ``lengths / mean_lengths``; (N, 16) and (16,) m -> (N,). The proportion model's ``exp(size)``."""
    return np.exp(np.log(np.asarray(lengths, np.float64) / np.asarray(mean_lengths, np.float64)).mean(-1))


__all__ = ["size_error_pct", "stature_m", "scale_to_height", "size_factor", "size_free_scale", "size_free_error_mm", "absolute_error_mm", "error_row", "probe_features", "size_frame_features",
           "sequence_features", "LinearProbe", "stored_references", "NUM_FEATURES", "floor_ankle_depths", "floor_height_log",
           "floor_ankle_points", "planted_ankles", "chain_straightness", "pooled_log_sizes", "pooled_lengths", "group_median", "floor_geometry",
           "floor_sizes", "lower_ankle_height_m", "FLOOR_MIN_HEIGHT_M",
           "NUM_SIZE_FEATURES"]
