"""The size-free error and the linear 2D probe the bone-length model is measured against."""
import math

import numpy as np
import torch

from common.models.length_probe import (LinearProbe, NUM_FEATURES, absolute_error_mm, error_row, probe_features, size_error_pct,
                                        size_free_error_mm, size_free_scale, size_frame_features)


def test_size_free_error_by_hand():
    # two bones for readability (the functions take any number): target (1, 2) m, prediction (2, 2) m
    pred = np.array([[2.0, 2.0]])
    target = np.array([[1.0, 2.0]])
    # s = <p, t> / <p, p> = (2 + 4) / 8 = 0.75 -> scaled (1.5, 1.5); |0.5| + |0.5| over 2 bones = 0.5 m
    assert math.isclose(size_free_scale(pred, target)[0], 0.75)
    assert math.isclose(size_free_error_mm(pred, target)[0], 500.0)
    assert math.isclose(absolute_error_mm(pred, target)[0], 500.0)  # (1 + 0) / 2 m


def test_size_free_error_ignores_overall_size_only():
    rng = np.random.default_rng(0)
    target = rng.uniform(0.1, 0.5, (5, 16))
    assert np.allclose(size_free_error_mm(target * rng.uniform(0.5, 2.0, (5, 1)), target), 0.0, atol=1e-9)
    wrong = target.copy()
    wrong[:, 0] *= 1.5  # a proportion error survives the rescaling
    assert (size_free_error_mm(wrong, target) > 1.0).all()
    row = error_row(wrong, target)
    assert math.isclose(row["size_free"], size_free_error_mm(wrong, target).mean())
    assert math.isclose(row["mae"], absolute_error_mm(wrong, target).mean())
    assert np.allclose(size_error_pct(target * 1.1, target), 10.0)  # 10 % too large, proportions right
    assert 0 < row["size_pct"] < 5  # one bone 50 % long moves the geometric mean by 1.5 ** (1/16) - 1


def test_probe_recovers_a_known_linear_map():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, NUM_FEATURES, generator=gen, dtype=torch.float64)
    weight = torch.randn(NUM_FEATURES, 16, generator=gen, dtype=torch.float64) * 0.1
    bias = torch.log(torch.linspace(0.1, 0.5, 16, dtype=torch.float64))
    lengths = torch.exp(x @ weight + bias)
    probe = LinearProbe(ridge=1e-9).fit(x, lengths)
    assert torch.allclose(probe.weight, weight, atol=1e-6)
    assert torch.allclose(probe.bias, bias, atol=1e-6)
    assert np.allclose(probe.predict(x[:3]), lengths[:3].numpy(), rtol=1e-6)


def test_probe_features_are_position_free_and_only_spread_sees_scale():
    gen = torch.Generator().manual_seed(1)
    kp = torch.rand(2, 30, 17, 2, generator=gen)
    f = probe_features(kp)
    assert f.shape == (2, NUM_FEATURES)
    moved = probe_features(kp * 3.0 + torch.tensor([0.2, -0.4]))
    assert torch.allclose(moved[:, :16], f[:, :16], atol=1e-5)  # bone shares: no size, no position
    assert torch.allclose(moved[:, 16], f[:, 16] + math.log(3.0), atol=1e-5)  # spread: log of the 2D size
    assert torch.allclose(f[:, :16].sum(-1), torch.zeros(2), atol=1e-5)


def test_height_rule_round_trip_and_size_factor():
    from common.models.length_probe import ANKLE_TO_SOLE_M, scale_to_height, size_factor, stature_m
    lengths = np.full(16, 0.2)
    # thigh + calf + spine_1 + spine_2 + neck + head = 6 x 0.2 m, plus the fixed foot/hip allowance
    assert math.isclose(stature_m(lengths), 1.2 + ANKLE_TO_SOLE_M)
    tall = scale_to_height(lengths, 1.78)
    assert math.isclose(stature_m(tall), 1.78) and np.allclose(tall / tall[0], 1.0)  # proportions kept
    assert math.isclose(size_factor(lengths[None] * 1.05, lengths)[0], 1.05)


def test_size_features_are_scale_consistent():
    # a figure scaled by k about its right ankle: the log sizes grow by log k, the ankle stays where it was
    x = torch.rand(3, 12, 17, 2) * 0.4
    k = 1.3
    scaled = x[:, :, 3:4] + k * (x - x[:, :, 3:4])
    f, g = size_frame_features(x), size_frame_features(scaled)
    assert f.shape == (3, 12, 10)
    torch.testing.assert_close(g[..., 8:], f[..., 8:] + math.log(k), atol=1e-5, rtol=0)
    torch.testing.assert_close(g[..., 4:6], f[..., 4:6])  # the right ankle (x, y)
    assert (g[..., 2:4] - f[..., 2:4]).abs().max() > 1e-3  # the head moved
    # the probe reads them as frame means, after the 17 size-free ones
    torch.testing.assert_close(probe_features(x)[:, NUM_FEATURES - 10:], f.mean(1))


def test_floor_height_reads_an_upright_figure_through_its_camera():
    from common.core.camera import camera_to_world, load_cameras, project_to_2d_linear, world_to_camera
    from common.models.length_probe import floor_height_log, floor_sizes
    camera = load_cameras()["S9"][0]
    # a figure on the floor 5-6 m from the camera: ankles 0.1 m above it, head 1.5 m above the lower ankle
    centre = camera_to_world(np.array([0.3, 0.4, 5.5]), camera.orientation, camera.translation)
    world = np.tile(np.r_[centre[:2], 0.9], (17, 1)) + np.random.default_rng(0).normal(0, 0.05, (17, 3))
    world[3] = [centre[0], centre[1], 0.1]  # r_ankle on the floor
    world[6] = [centre[0] + 0.2, centre[1], 0.25]  # l_ankle raised
    world[10] = [centre[0], centre[1], 1.6]  # head straight above the lower ankle
    frames = np.stack([world + [0.1 * t, 0.0, 0.0] for t in range(5)])
    keypoints = project_to_2d_linear(world_to_camera(frames, camera.orientation, camera.translation),
                                     camera.intrinsic)
    assert np.isclose(floor_height_log(keypoints, camera, 0.1), np.log(1.5), atol=1e-4)
    # a floor plane assumed 5 cm too low reads the figure bigger
    assert floor_height_log(keypoints, camera, 0.05) > np.log(1.5) + 0.005
    # sizes: reads minus the training sequences' median offset from their true log sizes (one outlier ignored)
    train_reads, train_sizes = np.log([1.5, 1.65, 1.8, 3.0]), np.array([1.0, 1.1, 1.2, 1.0])
    np.testing.assert_allclose(floor_sizes(np.log([1.5, 1.65]), train_reads, train_sizes), [1.0, 1.1], rtol=1e-9)


def test_a_probe_from_before_the_size_features_reads_the_first_17():
    x = torch.rand(40, 20, 17, 2)
    features = probe_features(x)
    lengths = torch.rand(40, 16) * 0.2 + 0.2
    old = LinearProbe().fit(features[:, :17], lengths)
    np.testing.assert_allclose(old.predict(features), old.predict(features[:, :17]))
