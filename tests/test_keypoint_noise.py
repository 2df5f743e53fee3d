"""common.datasets.keypoint_noise: the one AR(1) jitter model (demo detections and synthetic training batches)."""
from __future__ import annotations

import math

import numpy as np
import torch

from common.datasets.keypoint_noise import ar1_filter, ar1_noise, detector_noise


def test_ar1_filter_by_hand():
    # rho = 0.5, stationary start: x0 = e0, x1 = 0.5 e0 + sqrt(0.75) e1, x2 = 0.25 e0 + 0.5 sqrt(0.75) e1 + ...
    c = math.sqrt(0.75)
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.5, c, 0.0], [0.25, 0.5 * c, c]], dtype=torch.float64)
    torch.testing.assert_close(ar1_filter(3, 0.5, dtype=torch.float64), expected)
    # from rest: x_{-1} = 0, so x0 = sqrt(0.75) e0
    expected[:, 0] *= c
    torch.testing.assert_close(ar1_filter(3, 0.5, dtype=torch.float64, stationary_start=False), expected)


def test_ar1_noise_follows_the_recursion_along_time():
    white = torch.randn(2, 6, 3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = ar1_noise(white, 0.7, stationary_start=False)
    previous = torch.zeros_like(white[:, 0])
    for t in range(6):  # the definition, frame by frame
        previous = 0.7 * previous + math.sqrt(1 - 0.49) * white[:, t]
        torch.testing.assert_close(x[:, t], previous)


def test_ar1_noise_is_stationary_and_correlated():
    white = torch.randn(20000, 64, generator=torch.Generator().manual_seed(0))
    x = ar1_noise(white, 0.8)
    np.testing.assert_allclose(x.std(0).numpy(), 1.0, atol=0.05)
    assert abs(float((x[:, 30] * x[:, 31]).mean()) - 0.8) < 0.03
    assert abs(float((x[:, 30] * x[:, 40]).mean()) - 0.8 ** 10) < 0.03


def test_detector_noise_is_seeded_and_keeps_shape():
    gt = np.zeros((2, 300, 17, 2), np.float32)
    a = detector_noise(gt, np.random.default_rng(1))
    b = detector_noise(gt, np.random.default_rng(1))
    assert a.shape == gt.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, detector_noise(gt, np.random.default_rng(2)))


def test_ar1_noise_blocks_join_without_a_seam():
    """Long sequences run in blocks; the result equals the one-matrix filter of the whole sequence."""
    white = torch.randn(3, 700, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for stationary in (True, False):
        whole = torch.einsum("tk,bkc->btc", ar1_filter(700, 0.85, dtype=torch.float64, stationary_start=stationary),
                             white)
        torch.testing.assert_close(ar1_noise(white, 0.85, stationary, block=64), whole)
