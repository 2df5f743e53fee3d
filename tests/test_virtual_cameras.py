"""Random phone-like virtual cameras: intrinsics, look-at geometry, whole body in front and inside the frame,
agreement with common.core.camera's projection, determinism, and train.py --cameras virtual."""
import numpy as np
import pytest
import torch

import train
from common.core.bones import recompose
from common.core.camera import project_to_2d
from common.utils.errors import UserError
from common.datasets.virtual_cameras import (VirtualCameraConfig, focal_length_px, frame_margin, look_at_rotation,
                                    place_cameras, segment_starts, virtual_views)
from helpers import mix_flags, pose_argv

torch.set_num_threads(1)

LENGTHS = np.array([0.13, 0.45, 0.44, 0.13, 0.45, 0.44, 0.23, 0.25, 0.11, 0.12,
                    0.15, 0.28, 0.25, 0.15, 0.28, 0.25])


def standing(frames: int, walk_m: float = 0.0) -> np.ndarray:
    """(T, 17, 3) world metres, Z up: an upright figure walking ``walk_m`` along +x over the frames."""
    dirs = np.zeros((16, 3))
    dirs[:, 2] = 1.0
    dirs[[1, 2, 4, 5], 2] = -1.0  # legs down
    dirs[[0, 10, 13], :] = [[-1, 0, 0], [1, 0, 0], [-1, 0, 0]]  # r_hip, l_shoulder, r_shoulder sideways
    dirs[3] = [1, 0, 0]
    dirs[[11, 12], :] = [0.3, 0, -0.95]
    dirs[[14, 15], :] = [-0.3, 0, -0.95]
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    pose = recompose(dirs, LENGTHS)
    pose[:, 2] += 0.95
    track = np.linspace(0.0, walk_m, frames)[:, None, None] * np.array([1.0, 0.0, 0.0])
    return pose[None] + track


def test_focal_length_from_35mm_equivalent():
    # a 43.27 mm equivalent (the full-frame diagonal) has a focal length equal to the frame diagonal in pixels
    assert focal_length_px(np.hypot(36, 24), 1920, 1080) == pytest.approx(np.hypot(1920, 1080))
    # 26 mm on 1080x1920: 26 / 43.267 * 2202.9 = 1323.8 px, the same in portrait and landscape
    assert focal_length_px(26.0, 1080, 1920) == pytest.approx(1323.8, abs=0.1)
    assert focal_length_px(26.0, 1920, 1080) == focal_length_px(26.0, 1080, 1920)


def test_look_at_rotation_axes_and_roll():
    centre, target = np.array([[0.0, -5.0, 1.0]]), np.array([[0.0, 0.0, 1.0]])
    rot = look_at_rotation(centre, target, np.zeros(1))[0]
    np.testing.assert_allclose(rot[:, 0], [1, 0, 0], atol=1e-12)  # right
    np.testing.assert_allclose(rot[:, 1], [0, 0, -1], atol=1e-12)  # down
    np.testing.assert_allclose(rot[:, 2], [0, 1, 0], atol=1e-12)  # forward
    rolled = look_at_rotation(centre, target, np.array([np.pi / 2]))[0]
    np.testing.assert_allclose(rolled[:, 0], [0, 0, -1], atol=1e-12)  # right now points down
    np.testing.assert_allclose(rolled @ rolled.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rolled) == pytest.approx(1.0)


def test_segment_starts_cover_the_sequence():
    np.testing.assert_array_equal(segment_starts(1000, 250), [0, 250, 500, 750])
    np.testing.assert_array_equal(segment_starts(1100, 250), [0, 250, 500, 750, 850])
    np.testing.assert_array_equal(segment_starts(100, 250), [0])


def test_cameras_keep_the_body_in_front_and_inside_the_frame():
    config = VirtualCameraConfig()
    segments = np.stack([standing(30)] * 40)
    draw = place_cameras(segments, np.random.default_rng(0), config)
    local = draw.to_camera_frame(segments)
    assert (local[..., 2] > config.min_depth_m).all()
    px = draw.to_pixels(local)
    w, h = draw.res[:, 0, None, None], draw.res[:, 1, None, None]
    assert (px[..., 0] >= 0).all() and (px[..., 0] <= w).all() and (px[..., 1] >= 0).all() and (px[..., 1] <= h).all()
    assert (frame_margin(draw, segments, config) >= config.margin_fraction * draw.res.min(axis=1)).all()
    # elevation and distance to the look-at point within the configured ranges (aim offset <= 0.3 m per axis)
    target = (segments.min(axis=(1, 2)) + segments.max(axis=(1, 2))) / 2
    offset = draw.centres - target
    distance = np.linalg.norm(offset, axis=-1)
    assert (distance > 2.0 - 0.6).all() and (distance < 10.0 + 0.6).all()
    elevation = np.degrees(np.arcsin(offset[:, 2] / distance))
    assert elevation.min() > -10 - 10 and elevation.max() < 45 + 10
    assert (draw.centres[:, 2] >= config.min_camera_height_m).all()


def test_intrinsics_portrait_and_landscape():
    draw = place_cameras(np.stack([standing(10)] * 200), np.random.default_rng(1))
    portrait = draw.res[:, 1] > draw.res[:, 0]
    assert 0.3 < portrait.mean() < 0.7  # both orientations drawn
    equivalent = draw.focal_px / np.hypot(draw.res[:, 0], draw.res[:, 1]) * np.hypot(36, 24)
    assert equivalent.min() >= 24 - 1e-9 and equivalent.max() <= 35 + 1e-9
    intrinsic = draw.intrinsics()
    np.testing.assert_allclose(intrinsic[:, 0], draw.focal_px * 2 / draw.res[:, 0])
    np.testing.assert_array_equal(intrinsic[:, 0], intrinsic[:, 1])
    np.testing.assert_array_equal(intrinsic[:, 2:], 0.0)  # centred principal point, no distortion
    # in normalised coordinates a portrait frame spans [-1, 1] x [-h/w, h/w]: taller than wide
    assert ((draw.res[portrait, 1] / draw.res[portrait, 0]) > 1).all()


def test_a_walker_is_kept_in_frame_by_moving_the_camera_back():
    config = VirtualCameraConfig(distance_m=(2.0, 10.0))
    segments = np.stack([standing(50, walk_m=4.0)] * 30)  # 4 m walk: too wide for most 2 m draws
    draw = place_cameras(segments, np.random.default_rng(2), config)
    assert (frame_margin(draw, segments, config) > 0).all()
    with pytest.raises(RuntimeError, match="in frame"):
        place_cameras(np.stack([standing(20, walk_m=60.0)]), np.random.default_rng(0),
                      VirtualCameraConfig(max_rounds=3))


def test_virtual_views_match_the_camera_model_and_are_seeded():
    motion = standing(120, walk_m=1.0)
    views = virtual_views([("S1", "Walking", motion)], views_per_segment=3, segment_frames=50, seed=7, noise=False)
    assert len(views) == 3 * 3  # windows at 0, 50, 70
    assert [v.camera_index for v in views] == list(range(9))
    for v in views:
        absolute = v.poses_3d.copy()
        absolute[:, 1:] += absolute[:, :1]
        # the stored quaternion/centre reproduce the camera-frame 3D, and common.core.camera's projection the 2D
        start = {0: 0, 1: 50, 2: 70}[v.camera_index // 3]
        np.testing.assert_allclose(v.camera.world_to_camera(motion[start:start + 50]), absolute, atol=1e-4)
        np.testing.assert_allclose(project_to_2d(absolute, v.camera.intrinsic), v.poses_2d, atol=1e-4)
    again = virtual_views([("S1", "Walking", motion)], 3, 50, seed=7, noise=False)
    other = virtual_views([("S1", "Walking", motion)], 3, 50, seed=8, noise=False)
    np.testing.assert_array_equal(views[4].poses_2d, again[4].poses_2d)
    assert not np.allclose(views[4].poses_2d, other[4].poses_2d)


def test_detector_noise_is_added_at_the_persons_scale():
    motion = standing(400)
    clean = virtual_views([("S1", "Walking", motion)], 8, 400, seed=3, noise=False)
    noisy = virtual_views([("S1", "Walking", motion)], 8, 400, seed=3, noise=True)
    for c, n in zip(clean, noisy):
        np.testing.assert_array_equal(c.poses_3d, n.poses_3d)
        size = np.linalg.norm(np.ptp(c.poses_2d, axis=1), axis=-1).mean()  # normalised person size
        residual = np.median(np.linalg.norm(n.poses_2d - c.poses_2d, axis=-1)) / size
        # demo noise: ~2.5-6 px on a ~330 px person, i.e. around 1 % of the person's size (not 0, not 10 %)
        assert 0.002 < residual < 0.05


def test_train_pose_with_virtual_cameras(data_dir, tmp_path, capsys):
    train.main(pose_argv(data_dir, tmp_path, "-e", "1", "--no-eval", "--cameras", "virtual", "--virtual_views", "2",
                     "--virtual_segment", "24"))
    out = capsys.readouterr().out
    assert "(virtual cameras;" in out and (tmp_path / "final.bin").is_file()
    with pytest.raises(UserError, match="--length_convention blazepose needs -t length"):  # a length-bank flag
        train.main(["-t", "pose", "--length_convention", "blazepose", "--data_dir", str(data_dir), "-d", "tiny"])


def test_train_mix_with_virtual_cameras(mix_setup, tmp_path, capsys):
    ckpts = mix_setup / "checkpoint"
    base = ["-t", "mix", "-bi", "-arc", "3,3,3,3,3", "--length_model", str(ckpts / "biGRU_all.bin"), "--direction_model",
            str(ckpts / "pretrained_h36m_cpn.bin"), "--cameras", "virtual", "--virtual_views", "1",
            "--virtual_segment", "40"]
    with pytest.raises(UserError, match="omit it"):
        train.main(base + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path), "--bone_length_list",
                                     str(tmp_path / "lengths_list.npz")))
    train.main(base + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path), "--no-eval"))
    out = capsys.readouterr().out
    assert "lengths from the frozen length model" in out and (tmp_path / "final.bin").is_file()
    # 2 training subjects x 2 actions x 90 frames -> windows at 0, 40, 50 -> 12 virtual views
    assert "(12 sequences" in out
