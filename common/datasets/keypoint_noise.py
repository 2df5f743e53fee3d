"""Detector-like noise on 2D keypoints: one AR(1) jitter model, plus the outliers of the demo detections.

The jitter of a 2D detector is smooth over time; it is modelled per joint and axis as a stationary AR(1)
process of unit variance, ``x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t`` with white ``e_t ~ N(0, 1)`` and
``rho =`` :data:`DETECTOR_AR` per frame at 50 fps, scaled by a standard deviation in pixels. It is used by

* the demo dataset's ``data_2d_demo_detections.npz`` (:func:`detector_noise`: per-joint standard deviations
  :data:`NOISE_STD_PX`, plus left/right swaps and jumps of single joints);
* the bone-length model's synthetic training batches with ``--noise_2d_px``
  (:meth:`common.datasets.synthetic.SyntheticBatchBuilder.noise`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from common.core.skeleton import FLIP_JOINTS, NUM_JOINTS

DETECTOR_AR = 0.85  # AR(1) coefficient per frame at 50 fps (correlation time ~0.12 s)
# Detector-like noise std per joint (pixels): larger at the extremities, as for real 2D detectors.
NOISE_STD_PX = np.array([2.5, 3.0, 4.0, 5.0, 3.0, 4.0, 5.0, 2.5, 2.5, 3.0, 3.5, 3.0, 4.0, 6.0, 3.0, 4.0, 6.0])
BURN_IN = 100  # frames the demo's noise runs from zero before its first kept frame
OUTLIER_RATE_HZ = 0.25  # outlier events per second per camera view
SWAP_GROUPS = [[13], [12, 13], [6], [5, 6]]  # left joints swapped with their right partners (wrists, arms, ...)
SWAP_FRAMES = (3, 10)  # left/right swap duration, frames (inclusive range)
JUMP_FRAMES = (2, 6)
JUMP_PX = (15.0, 40.0)


def ar1_filter(length: int, rho: float, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               stationary_start: bool = True) -> torch.Tensor:
    """(L, L) lower-triangular matrix ``A`` such that ``A @ e`` for white N(0, 1) frames ``e`` (L,) is the AR(1)
    sequence ``x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t`` (one matmul instead of a time loop).

    ``stationary_start``: ``x_0 = e_0`` (unit variance from the first frame); else the process starts from
    ``x_{-1} = 0`` (``x_0 = sqrt(1 - rho^2) e_0``) and needs a burn-in to become stationary."""
    t = torch.arange(length, device=device, dtype=dtype)
    lag = t[:, None] - t[None, :]
    weights = torch.where(lag >= 0, rho ** lag.clamp_min(0), torch.zeros((), device=device, dtype=dtype))
    scale = torch.full((length,), math.sqrt(1.0 - rho * rho), device=device, dtype=dtype)
    if stationary_start:
        scale[0] = 1.0
    return weights * scale[None, :]


def ar1_noise(white: torch.Tensor, rho: float = DETECTOR_AR, stationary_start: bool = True,
              block: int = 256) -> torch.Tensor:
    """Filter white N(0, 1) noise (B, T, ...) along its time axis (dim 1) into unit-variance AR(1) noise of the
    same shape, dtype and device (:func:`ar1_filter`).

    Time runs in blocks of ``block`` frames: one matmul per block, the last value of each block carried into the
    next with its decay ``rho^(i+1)``; memory O(block^2 + T) for any sequence length."""
    frames = white.shape[1]
    size = min(block, frames)
    steady = ar1_filter(size, rho, white.device, white.dtype, stationary_start=False)
    first = ar1_filter(size, rho, white.device, white.dtype, stationary_start) if stationary_start else steady
    decay = rho ** torch.arange(1, size + 1, device=white.device, dtype=white.dtype)[:, None]  # (size, 1)
    columns = white.movedim(1, 0).reshape(frames, -1)  # (T, B * rest): one matmul per block
    out = torch.empty_like(columns)
    for start in range(0, frames, size):
        n = min(size, frames - start)
        matrix = first if start == 0 else steady
        block_out = matrix[:n, :n] @ columns[start:start + n]
        if start > 0:
            block_out = block_out + decay[:n] * out[start - 1]
        out[start:start + n] = block_out
    return out.reshape(frames, white.shape[0], *white.shape[2:]).movedim(0, 1)


def detector_noise(gt: np.ndarray, rng: np.random.Generator, fps: float = 50.0) -> np.ndarray:
    """Detector-like 2D keypoints from exact ones. gt: (V, T, 17, 2) pixels -> (V, T, 17, 2) float32 pixels.

    1. AR(1) jitter per view/joint/axis (:func:`ar1_noise`, float64), started from zero :data:`BURN_IN` frames
       before the first frame, times the per-joint std :data:`NOISE_STD_PX`.
    2. Outlier events (Poisson, :data:`OUTLIER_RATE_HZ` per view, ``fps`` frames per second): half are
       left/right swaps of a joint group (:data:`SWAP_GROUPS`, :data:`SWAP_FRAMES` frames), half are jumps of
       one joint by :data:`JUMP_PX` pixels in a random direction for :data:`JUMP_FRAMES` frames.
    """
    views, frames = gt.shape[:2]
    white = rng.normal(size=(views, frames + BURN_IN, NUM_JOINTS, 2))
    ar = ar1_noise(torch.from_numpy(white), DETECTOR_AR, stationary_start=False)[:, BURN_IN:].numpy()
    out = gt + ar * NOISE_STD_PX[None, None, :, None]

    events = rng.poisson(OUTLIER_RATE_HZ * frames / fps, views)
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
