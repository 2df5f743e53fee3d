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


def _filmed_figure(lift_m: np.ndarray, forward_m: np.ndarray, head_m: float = 1.5):
    """A stick figure 5-6 m in front of S9's first camera, upright (ankle, knee, hip, thorax, head on the vertical
    above the right ankle), its right ankle 0.1 m above the floor, the left one raised beside it; per frame lifted
    by ``lift_m`` (T,) and moved along the floor by ``forward_m`` (T,). Returns (2D (T, 17, 2), camera)."""
    from common.core.camera import camera_to_world, load_cameras, project_to_2d_linear, world_to_camera
    camera = load_cameras()["S9"][0]
    centre = camera_to_world(np.array([0.3, 0.4, 5.5]), camera.orientation, camera.translation)
    world = np.tile(np.r_[centre[:2], 0.9], (17, 1)) + np.random.default_rng(0).normal(0, 0.05, (17, 3))
    for joint, height in ((3, 0.0), (2, 0.45), (1, 0.9), (8, 1.3), (10, head_m)):  # ankle, knee, hip, thorax, head
        world[joint] = [centre[0], centre[1], 0.1 + height]
    world[6] = [centre[0] + 0.2, centre[1], 0.25]  # l_ankle raised
    frames = world + np.stack([forward_m, np.zeros_like(lift_m), lift_m], -1)[:, None]
    keypoints = project_to_2d_linear(world_to_camera(frames, camera.orientation, camera.translation),
                                     camera.intrinsic)
    return keypoints, camera


def test_floor_height_reads_an_upright_figure_through_its_camera():
    from common.models.length_probe import FLOOR_MIN_FRAMES, floor_height_log, floor_sizes
    still = np.zeros(80)
    keypoints, camera = _filmed_figure(still, still)
    assert np.isclose(floor_height_log(keypoints, camera, 0.1), np.log(1.5), atol=1e-4)
    # a floor plane assumed 5 cm too low reads the figure bigger
    assert floor_height_log(keypoints, camera, 0.05) > np.log(1.5) + 0.005
    # too few frames with a planted foot: no read
    short = _filmed_figure(still[:FLOOR_MIN_FRAMES], still[:FLOOR_MIN_FRAMES])[0]
    assert np.isnan(floor_height_log(short, camera, 0.1))
    # sizes: reads minus the training sequences' median offset from their true log sizes (one outlier ignored)
    train_reads, train_sizes = np.log([1.5, 1.65, 1.8, 3.0]), np.array([1.0, 1.1, 1.2, 1.0])
    np.testing.assert_allclose(floor_sizes(np.log([1.5, 1.65]), train_reads, train_sizes), [1.0, 1.1], rtol=1e-9)


def test_a_jumping_figure_is_read_from_its_planted_frames_only():
    """Standing jumps: 30 frames on the floor, 40 frames in the air (up to 0.4 m, 0.6 m forward), four times. The
    lower ankle's ray meets the floor behind the airborne figure, so a quantile over every frame reads it too
    large; the planted frames alone read its true height."""
    from common.models.length_probe import (FLOOR_HEIGHT_QUANTILE, floor_ankle_depths, floor_ankle_points,
                                            floor_height_log, planted_ankles)
    phase = np.arange(4 * 70) % 70
    flight = np.clip(phase - 30, 0, 40) / 40.0  # 0 on the floor, 0..1 through the flight
    lift = np.where(phase >= 30, 4 * 0.4 * flight * (1 - flight), 0.0)
    forward = 0.6 * (np.arange(4 * 70) // 70 + flight)
    keypoints, camera = _filmed_figure(lift, forward)
    planted = planted_ankles(floor_ankle_points(keypoints, camera, 0.1)[0])
    assert not planted[phase >= 32].any()  # a lifted foot is never planted
    assert planted[(phase >= 5) & (phase < 25), 0].all()  # the right ankle stands still mid-stance
    assert np.isclose(floor_height_log(keypoints, camera, 0.1), np.log(1.5), atol=1e-3)
    # the same quantile over every frame (heights as floor_height_log computes them, lower ankle) reads it large
    depth, ray, lower = floor_ankle_depths(keypoints, camera, 0.1)
    from common.core.camera import world_up_in_camera
    up = world_up_in_camera(camera).astype(np.float64)
    ankle = ray[np.arange(len(ray)), lower] * depth[:, None]
    head = ray[:, 10] / np.linalg.norm(ray[:, 10], axis=-1, keepdims=True)
    b, d, e = head @ up, ankle @ up, (head * ankle).sum(-1)
    every_frame = np.quantile((b * e - d) / (1 - b * b), FLOOR_HEIGHT_QUANTILE)
    assert every_frame > 1.5 * 1.1


def test_a_crouching_figure_is_not_read():
    """A figure whose chain from the ankle to the head is bent in the image (knee pushed forward) has no usable
    frame: its head height is not its standing height."""
    from common.models.length_probe import chain_straightness, floor_height_log
    still = np.zeros(80)
    keypoints, camera = _filmed_figure(still, still)
    assert np.allclose(chain_straightness(keypoints, np.full(80, 3)), 1.0)
    bent = keypoints.copy()
    bent[:, 2, 0] += 0.3 * np.linalg.norm(keypoints[0, 10] - keypoints[0, 3])  # the knee out of line in 2D
    assert (chain_straightness(bent, np.full(80, 3)) < 0.95).all()
    assert np.isnan(floor_height_log(bent, camera, 0.1))


def test_pooled_sizes_take_each_subjects_median_of_its_read_sequences():
    from common.models.length_probe import pooled_log_sizes
    log_sizes = np.array([0.0, 0.1, 0.5, 0.2, 9.0, 0.3])
    read = np.array([True, True, True, False, False, False])
    pooled, pooled_read = pooled_log_sizes(log_sizes, ["a", "a", "a", "a", "b", "b"], read)
    np.testing.assert_allclose(pooled[:4], 0.1)  # median of 0, 0.1, 0.5; the unread 0.2 ignored, then given 0.1
    np.testing.assert_array_equal(pooled_read, [True, True, True, True, False, False])  # b: nothing read
    np.testing.assert_allclose(pooled[4:], log_sizes[4:])


def test_pooled_lengths_give_each_subject_its_per_bone_median():
    from common.models.length_probe import group_median, pooled_lengths
    base = np.linspace(0.1, 0.45, 16)
    lengths = np.stack([base * 1.0, base * 2.0, base * 4.0, base * 0.5, base * 0.7])
    lengths[1, 3] = 9.0  # one sequence reads one bone far off: the median ignores it
    pooled = pooled_lengths(lengths, ["S9", "S9", "S9", "S11", "S11"])
    assert pooled.shape == (5, 16) and pooled.dtype == np.float32
    expected = base * 2.0
    expected[3] = 4.0 * base[3]  # median of 1, 9/base[3], 4 times base[3]
    np.testing.assert_allclose(pooled[:3], np.broadcast_to(expected, (3, 16)), rtol=1e-6)
    np.testing.assert_allclose(pooled[3:], np.broadcast_to(base * np.sqrt(0.35), (2, 16)), rtol=1e-6)  # geometric
    # the general form: rows left out are given the median of the others, a group with none keeps its own
    values = np.array([[1.0], [3.0], [100.0], [7.0]])
    out = group_median(values, ["a", "a", "a", "b"], np.array([True, True, False, False]))
    np.testing.assert_allclose(out[:, 0], [2.0, 2.0, 2.0, 7.0])


def test_a_probe_from_before_the_size_features_reads_the_first_17():
    x = torch.rand(40, 20, 17, 2)
    features = probe_features(x)
    lengths = torch.rand(40, 16) * 0.2 + 0.2
    old = LinearProbe().fit(features[:, :17], lengths)
    np.testing.assert_allclose(old.predict(features), old.predict(features[:, :17]))
