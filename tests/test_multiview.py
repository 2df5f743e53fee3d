"""common/inference/multiview.py: Qualisys calibration reading, DLT triangulation (with left/right swaps undone), scores."""
import numpy as np
import pytest

from common.core.bones import recompose
from common.utils.errors import UserError
from common.inference.multiview import (CalibratedCamera, score_person_view, estimate_offsets, find_recording, limb_ratios, limb_scores,
                                       match_people, read_calibration, read_qca, read_toml, shift_frames, triangulate,
                                       triangulate_consistent, triangulate_tracks, write_toml)
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


def _distorted_qca() -> str:
    """QCA with a rotated camera, an off-centre field of view and distortion (every conversion path exercised)."""
    c, s = np.cos(0.4), np.sin(0.4)
    rot = dict(r11=c, r12=0, r13=s, r21=0, r22=1, r23=0, r31=-s, r32=0, r33=c)
    attrs = " ".join(f'{k}="{v}"' for k, v in rot.items())
    return QCA.replace('<transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1" x="1000"',
                       f'<transform {attrs} x="1000"').replace(
        'radialDistortion1="0" radialDistortion2="0" radialDistortion3="0" tangentalDistortion1="0" '
        'tangentalDistortion2="0"/>\n </camera>\n</cameras>',
        'radialDistortion1="-6.4" radialDistortion2="1.28" radialDistortion3="0" tangentalDistortion1="0.064" '
        'tangentalDistortion2="-0.032"/>\n </camera>\n</cameras>').replace('left="0" right="639"', 'left="8" right="647"', 1)


def test_qca_to_toml_and_back_projects_the_same(tmp_path):
    (tmp_path / "c.qca.txt").write_text(_distorted_qca())
    qca = read_calibration(tmp_path / "c.qca.txt")
    assert qca[0].dist.any() and not np.allclose(qca[0].R, np.diag([1, -1, -1]))  # the test exercises both
    write_toml(tmp_path / "c.toml", qca)
    text = (tmp_path / "c.toml").read_text()
    assert "[camA]" in text and "rotation = [" in text and "fisheye = false" in text and "[metadata]" in text
    toml = read_calibration(tmp_path / "c.toml")
    assert [c.name for c in toml] == [c.name for c in qca] and [c.size for c in toml] == [c.size for c in qca]
    points = np.random.default_rng(2).uniform(-0.5, 0.5, (40, 3)) + np.array([0.5, 0.0, 0.5])
    for a, b in zip(qca, toml):
        homogeneous = np.concatenate([points, np.ones((40, 1))], axis=1)
        np.testing.assert_allclose(homogeneous @ b.projection().T, homogeneous @ a.projection().T, rtol=1e-9)
        np.testing.assert_allclose(b.dist, a.dist)
        pixels = np.array([[100.0, 50.0], [600.0, 400.0]])
        np.testing.assert_allclose(b.undistort(pixels), a.undistort(pixels), atol=1e-9)


def test_toml_in_another_convention_is_a_one_line_error(tmp_path):
    good = "[cam1]\nname = \"cam1\"\nsize = [640.0, 480.0]\nmatrix = [[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], " \
           "[0.0, 0.0, 1.0]]\ndistortions = [0.0, 0.0, 0.0, 0.0]\nrotation = [0.0, 0.0, 0.0]\n" \
           "translation = [0.0, 0.0, 2.0]\nfisheye = false\n"
    (tmp_path / "good.toml").write_text(good)
    cam = read_toml(tmp_path / "good.toml")[0]
    np.testing.assert_allclose(cam.centre, [0, 0, -2.0])                  # t = -R c
    cases = {"matrix.toml": good.replace("rotation = [0.0, 0.0, 0.0]", "rotation = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]"),
             "keys.toml": good.replace("rotation", "R").replace("translation", "T"),
             "fisheye.toml": good.replace("fisheye = false", "fisheye = true"),
             "broken.toml": "[cam1\n", "empty.toml": "[metadata]\nadjusted = false\n"}
    messages = {"matrix.toml": "Rodrigues", "keys.toml": "has no rotation, translation", "fisheye.toml": "fisheye",
                "broken.toml": "not a readable TOML", "empty.toml": "no camera table"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=messages[name]) as info:
            read_calibration(tmp_path / name)
        assert "\n" not in str(info.value)
    (tmp_path / "calib.yml").write_text("%YAML:1.0\n")
    with pytest.raises(UserError, match="unknown calibration format"):
        read_calibration(tmp_path / "calib.yml")


def test_find_recording_pairs_videos_by_name_and_counts(tmp_path, capsys):
    (tmp_path / "calibration").mkdir()
    (tmp_path / "videos").mkdir()
    (tmp_path / "calibration" / "Calib.qca.txt").write_text(QCA)
    (tmp_path / "videos" / "camB_take1.mp4").write_bytes(b"")
    with pytest.raises(UserError, match="2 camera\\(s\\) .* but 1 video"):
        find_recording(tmp_path)
    (tmp_path / "videos" / "camA_take1.mp4").write_bytes(b"")
    _, cams, videos = find_recording(tmp_path)
    assert [v.name for v in videos] == ["camA_take1.mp4", "camB_take1.mp4"] and capsys.readouterr().err == ""
    _, _, videos = find_recording(tmp_path, videos=[tmp_path / "videos" / "camB_take1.mp4",
                                                    tmp_path / "videos" / "camA_take1.mp4"])
    assert [v.name for v in videos] == ["camA_take1.mp4", "camB_take1.mp4"]   # by name, whatever the order given
    (tmp_path / "videos" / "camA_take1.mp4").rename(tmp_path / "videos" / "left.mp4")
    _, _, videos = find_recording(tmp_path)
    assert [v.name for v in videos] == ["camB_take1.mp4", "left.mp4"] and "sorted order" in capsys.readouterr().err


def _moving_people(frames: int, people: int) -> np.ndarray:
    """(P, T, 17, 3) world points of people walking apart (distinct paths), 1 m tall-ish, z up."""
    rng = np.random.default_rng(3)
    body = rng.uniform(-0.25, 0.25, (people, 1, 17, 3)) + np.array([0, 0, 1.0])
    t = np.arange(frames)[None, :, None, None]
    start = np.array([[-0.8, 0.0, 0], [0.8, 0.3, 0], [0.0, -0.9, 0]])[:people, None, None]
    velocity = np.array([[0.02, 0.01, 0], [-0.015, 0.02, 0], [0.01, -0.02, 0]])[:people, None, None]
    wobble = 0.05 * np.sin(0.3 * t + np.arange(17)[None, None, :, None])
    return body + start + velocity * t + wobble


def test_offsets_are_estimated_from_the_calibration():
    cams = [_camera(c) for c in ([3, 0, 1.5], [0, 3, 1.5], [-3, 0.5, 1.5])]
    world = _moving_people(60, 2)
    true = [0, 3, -2]                                  # view v's frame t + offset shows view 0's frame t
    pixels = np.stack([np.concatenate([shift_frames(_project(c, person), -o) for person in world], axis=1)
                       for c, o in zip(cams, true)])   # (V, T, 2 * 17, 2): the people side by side
    confidence = np.where(np.isnan(pixels).any(-1), 0.0, 1.0)
    offsets, errors = estimate_offsets(cams, pixels, confidence, max_offset=5)
    assert offsets.tolist() == true
    assert errors[1, 5 + 3] < 1e-6 < errors[1, 5]      # in sync: 0 px; unshifted: not


def test_people_are_matched_across_views_and_one_seen_once_stays_alone():
    cams = [_camera(c) for c in ([3, 0, 1.5], [0, 3, 1.5], [-3, 0.5, 1.5])]
    world = _moving_people(30, 3)
    seen = {0: [0, 1], 1: [1, 0, 2], 2: [2, 1]}        # view -> which people, in the view's own order
    pixels = [np.stack([_project(cams[v], world[p]) for p in order]) for v, order in seen.items()]
    confidence = [np.ones(p.shape[:3]) for p in pixels]
    groups = match_people(cams, pixels, confidence)
    identities = sorted(sorted((v, seen[v][i]) for v, i in g.items()) for g in groups)
    assert identities == [[(0, 0), (1, 0)], [(0, 1), (1, 1), (2, 1)], [(1, 2), (2, 2)]]
    lonely = [np.stack([_project(cams[0], world[0])]), np.stack([_project(cams[1], world[1])])]
    groups = match_people(cams[:2], lonely, [np.ones(p.shape[:3]) for p in lonely])
    assert groups == [{0: 0}, {1: 0}]                  # different people: no match, two groups of one view


def test_project_is_the_inverse_of_undistorted_triangulation(tmp_path):
    (tmp_path / "c.qca.txt").write_text(_distorted_qca())
    cams = read_calibration(tmp_path / "c.qca.txt")
    points = np.random.default_rng(4).uniform(-0.3, 0.3, (3, 17, 3)) + np.array([0.5, 0.0, 0.5])
    pixels = np.stack([c.project(points) for c in cams])              # distorted, as a video shows them
    found, _ = triangulate(cams, pixels, np.ones(pixels.shape[:3]))
    np.testing.assert_allclose(found, points, atol=1e-5)
    points[0, 0] = np.nan
    assert np.isnan(cams[0].project(points)[0, 0]).all() and np.isfinite(cams[0].project(points)[0, 1]).all()


def test_a_small_gain_keeps_the_cameras_in_sync():
    cams = [_camera(c) for c in ([3, 0, 1.5], [0, 3, 1.5])]
    world = _moving_people(40, 1)[0]
    pixels = np.stack([_project(c, world) for c in cams])
    pixels[1] += np.random.default_rng(6).normal(0, 3.0, pixels[1].shape)   # detector noise only, in sync
    confidence = np.ones(pixels.shape[:3])
    offsets, errors = estimate_offsets(cams, pixels, confidence, max_offset=3)
    assert offsets.tolist() == [0, 0]
    # a real shift is still found through the same noise
    shifted = np.stack([pixels[0], shift_frames(pixels[1], -2)])   # view 1 runs 2 frames late
    offsets, _ = estimate_offsets(cams, shifted, np.where(np.isnan(shifted).any(-1), 0.0, 1.0), max_offset=3)
    assert offsets.tolist() == [0, 2]


def test_score_person_view_places_track_frames_and_skips_missing_ones():
    """The per-person scoring of the benches: a track that starts at frame 3 is placed at its video frames, and
    frames without a reference or an estimate are left out."""
    rng = np.random.default_rng(0)
    frames, start = 12, 3
    directions = rng.normal(size=(frames, 16, 3))
    lengths = np.full(16, 0.3)
    reference = recompose(directions / np.linalg.norm(directions, axis=-1, keepdims=True), lengths)
    reference[5] = np.nan                                              # not triangulated
    track = Track2D(np.zeros((frames - start, 17, 2)), np.ones((frames - start, 17)), 100, 100, start=start)
    estimate = reference[start:] * 1.1                                 # the track's frames, 10 % too large
    estimate[-1] = np.nan                                              # the lifter lost the last frame
    scores = score_person_view(track, estimate, reference)
    used = [t for t in range(start, frames - 1) if t != 5]
    expected = limb_scores(reference[used] * 1.1, reference[used])
    assert scores.keys() == expected.keys()
    assert [scores[k] for k in expected] == pytest.approx(list(expected.values()), abs=1e-3)   # float32 placing
    assert scores["frames"] == len(used) and scores["limb_length_error_mm"] == pytest.approx(30.0, rel=1e-4)
    assert score_person_view(track, estimate, reference, min_frames=len(used) + 1) is None
