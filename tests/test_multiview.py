"""common/inference/multiview.py: Qualisys calibration reading, DLT triangulation (with left/right swaps undone), scores."""
import numpy as np
import pytest

from common.core.bones import recompose
from common.utils.errors import UserError
from common.inference.multiview import (CalibratedCamera, limb_ratios, limb_scores, read_qca, triangulate, triangulate_consistent,
                              triangulate_tracks)
from common.vision.tracking import Track2D
from common.core.skeleton import FLIP_JOINTS

QCA = """<?xml version='1.0' encoding='ASCII'?>
<calibration><cameras>
 <camera serial="camB"><fov_video bottom="479" left="0" right="639" top="0"/>
  <transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1" x="0" y="0" z="3000"/>
  <intrinsic centerPointU="20480" centerPointV="15360" focalLengthU="32000" focalLengthV="32000"
   radialDistortion1="0" radialDistortion2="0" radialDistortion3="0" tangentalDistortion1="0" tangentalDistortion2="0"/>
 </camera>
 <camera serial="camA"><fov_video bottom="479" left="0" right="639" top="0"/>
  <transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1" x="1000" y="0" z="3000"/>
  <intrinsic centerPointU="20480" centerPointV="15360" focalLengthU="32000" focalLengthV="32000"
   radialDistortion1="0" radialDistortion2="0" radialDistortion3="0" tangentalDistortion1="0" tangentalDistortion2="0"/>
 </camera>
</cameras></calibration>
"""


def _camera(centre, look_at=(0.0, 0.0, 1.0)) -> CalibratedCamera:
    """A pinhole camera at ``centre`` looking at ``look_at`` (world z up), 500 px focal length, 640x480."""
    forward = np.asarray(look_at, float) - np.asarray(centre, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    return CalibratedCamera("c", K, np.zeros(4), np.stack([right, down, forward]), np.asarray(centre, float),
                            (640, 480))


def _project(camera: CalibratedCamera, points: np.ndarray) -> np.ndarray:
    cam = camera.to_camera(points)
    return (cam[..., :2] / cam[..., 2:]) * camera.K[0, 0] + camera.K[:2, 2]


def test_read_qca_units_order_and_axes(tmp_path):
    (tmp_path / "c.qca.txt").write_text(QCA)
    cams = read_qca(tmp_path / "c.qca.txt")
    assert [c.name for c in cams] == ["camA", "camB"]                 # sorted by name
    a = cams[0]
    np.testing.assert_allclose(a.K, [[500, 0, 320], [0, 500, 240], [0, 0, 1]])   # 1/64 pixel units
    np.testing.assert_allclose(a.centre, [1.0, 0.0, 3.0])             # millimetres -> metres
    # identity Qualisys rotation: the camera looks along world -z with y up -> OpenCV axes x, -y, -z
    np.testing.assert_allclose(a.to_camera(np.array([1.0, 0.5, 1.0])), [0.0, -0.5, 2.0])
    assert a.size == (640, 480)
    (tmp_path / "bad.txt").write_text("<calibration><cameras></cameras></calibration>")
    with pytest.raises(UserError, match="no cameras"):
        read_qca(tmp_path / "bad.txt")


def test_triangulation_recovers_points_and_undoes_a_swapped_view():
    cams = [_camera(c) for c in ([3, 0, 1.5], [0, 3, 1.5], [-3, 0.5, 1.5], [0.5, -3, 1.5])]
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.4, 0.4, (5, 17, 3)) + np.array([0, 0, 1.0])
    pixels = np.stack([_project(c, points) for c in cams])
    confidence = np.ones(pixels.shape[:3])
    found, error = triangulate(cams, pixels, confidence)
    np.testing.assert_allclose(found, points, atol=1e-6)
    assert np.nanmax(error) < 1e-5
    confidence[1:, :, 3] = 0.0                                        # seen by one view only: no point
    assert np.isnan(triangulate(cams, pixels, confidence)[0][:, 3]).all()
    swapped = pixels.copy()
    swapped[2, 1] = swapped[2, 1][FLIP_JOINTS]                        # view 2 swaps sides in frame 1
    found, _, flags = triangulate_consistent(cams, swapped, np.ones(pixels.shape[:3]))
    assert flags.sum() == 1 and flags[2, 1]
    np.testing.assert_allclose(found, points, atol=1e-6)


def test_triangulate_tracks_places_each_track_at_its_video_frames():
    cams = [_camera(c) for c in ([3, 0, 1.5], [0, 3, 1.5], [-3, 0.5, 1.5])]
    points = np.random.default_rng(1).uniform(-0.4, 0.4, (6, 17, 3)) + np.array([0, 0, 1.0])
    pixels = [_project(c, points) for c in cams]
    tracks = [Track2D(pixels[0], np.ones((6, 17)), 640, 480),                  # frames 0-5
              Track2D(pixels[1][2:], np.ones((4, 17)), 640, 480, start=2),     # frames 2-5 only
              Track2D(pixels[2], np.ones((6, 17)), 640, 480)]
    found, error, swapped = triangulate_tracks(cams, tracks, 6)
    np.testing.assert_allclose(found, points, atol=1e-6)                       # 2 views suffice on frames 0-1
    assert found.shape == (6, 17, 3) and not swapped.any() and np.nanmax(error) < 1e-3  # px; float32 tracks


def test_limb_scores_by_hand():
    rng = np.random.default_rng(1)
    dirs = rng.normal(size=(30, 16, 3))
    lengths = np.array([0.13, 0.45, 0.44, 0.13, 0.45, 0.44, 0.23, 0.25, 0.11, 0.12,
                        0.15, 0.28, 0.25, 0.15, 0.28, 0.25])
    poses = recompose(dirs / np.linalg.norm(dirs, axis=-1, keepdims=True), lengths[None])
    same = limb_scores(poses, poses)
    assert same["p_mpjpe_mm"] < 1e-6 and same["limb_length_error_mm"] < 1e-6 and same["proportions_off_pct"] < 1e-6
    assert same["length_std_mm"] < 1e-6 and same["left_right_mm"] < 1e-6
    half = limb_scores(poses * 0.5, poses)                            # same shape, half size
    assert half["p_mpjpe_mm"] < 1e-6 and half["proportions_off_pct"] < 1e-6
    assert half["limb_length_error_mm"] == pytest.approx(np.mean([450, 440, 280, 250]) / 2, abs=1e-6)
    longer = lengths.copy()
    longer[[12, 15]] *= 1.4 / 1.0                                     # forearms 40 % longer
    stretched = recompose(dirs / np.linalg.norm(dirs, axis=-1, keepdims=True), longer[None])
    # proportions: forearm share 0.35 / 1.52 vs 0.25 / 1.42; the other three shares shrink by 1.42 / 1.52
    expected = np.mean([abs(0.35 / 1.52 / (0.25 / 1.42) - 1)] + [abs(1.42 / 1.52 - 1)] * 3) * 100
    got = limb_scores(stretched, poses)
    assert got["proportions_off_pct"] == pytest.approx(expected, abs=1e-6)
    # over 8 limbs: both forearms' shares 0.35 / 3.04 vs 0.25 / 2.84, the 6 others shrink by 2.84 / 3.04
    expected8 = np.mean([abs(0.35 / 3.04 / (0.25 / 2.84) - 1)] * 2 + [abs(2.84 / 3.04 - 1)] * 6) * 100
    assert got["proportions8_off_pct"] == pytest.approx(expected8, abs=1e-6)
    # ratios: forearm / upper arm 1.4 times, arm / leg (0.28 + 0.35) / 0.89 vs 0.53 / 0.89, shin / thigh unchanged
    assert got["ratios_max_pct"] == pytest.approx(40.0, abs=1e-6)
    np.testing.assert_allclose(limb_ratios(np.array([0.4, 0.5, 0.4, 0.4, 0.3, 0.3, 0.2, 0.25])),
                               [0.4 / 0.45, 0.225 / 0.3, 0.525 / 0.85])
