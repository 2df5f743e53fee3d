"""The embedded demo dataset (common.datasets.demo), its test fixture and setup.py."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import setup as setup_script
from common.models import published
from common.core.bones import bone_lengths
from common.core.camera import load_cameras
from common.datasets.dataset import TEST_SUBJECTS, TRAIN_SUBJECTS, load_dataset
from common.datasets.demo.build import EXTRA_32_FROM
from common.datasets.demo.config import SMALL_CONFIG, DemoConfig, subject_assignments
from common.datasets.demo.manifest import demo_is_current, read_manifest
from common.datasets.demo.motion import CLIP_BY_KEY, TEST_CLIPS, load_clip, unrolled_clip
from common.datasets.demo.subjects import MarginField, build_sequence, image_margin, sample_subject_bone_lengths
from common.datasets.keypoint_noise import DETECTOR_AR, NOISE_STD_PX, detector_noise
from common.utils.errors import UserError
from common.utils.fileio import load_npz
from common.core.skeleton import H36M_32_TO_17, SYMMETRIC_BONES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(demo_dir):
    return load_dataset(demo_dir, "demo", keypoints="gt")


@pytest.mark.slow
def test_loads_through_the_h36m_loader_with_seven_subjects(demo_dir, demo):
    assert demo.subjects == TRAIN_SUBJECTS + TEST_SUBJECTS
    for keypoints in ("gt", "detections"):
        ds = load_dataset(demo_dir, "demo", keypoints=keypoints)
        assert len(ds.subjects) == 7
        views = ds.fetch(ds.subjects, require_3d=True)
        assert len(views) == 7 * 2 * 4
        assert all(v.poses_2d.shape == (SMALL_CONFIG.frames, 17, 2) for v in views)
    meta = load_npz(demo_dir / "data_2d_demo_gt.npz")["metadata"]
    assert meta["layout_name"] == "h36m" and meta["num_joints"] == 17
    assert meta["keypoints_symmetry"] == [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
    for action in demo.sequences["S1"]:
        assert action.split(" ")[0] in {"Walking", "Jumping"}


@pytest.mark.slow
def test_file_format_is_videopose3d(demo_dir):
    raw = load_npz(demo_dir / "data_3d_demo.npz")["positions_3d"]
    for subject, actions in raw.items():
        for action, poses in actions.items():
            assert poses.dtype == np.float32 and poses.shape == (SMALL_CONFIG.frames, 32, 3)
            for target, source in EXTRA_32_FROM.items():  # the 15 unused joints copy a neighbour
                np.testing.assert_array_equal(poses[:, target], poses[:, source])
            assert len(set(H36M_32_TO_17) | set(EXTRA_32_FROM)) == 32
    views = load_npz(demo_dir / "data_2d_demo_detections.npz")["positions_2d"]["S9"]
    assert all(len(v) == 4 and v[0].dtype == np.float32 for v in views.values())


@pytest.mark.slow
def test_projecting_loaded_3d_reproduces_gt_2d(demo_dir, demo):
    raw_2d = load_npz(demo_dir / "data_2d_demo_gt.npz")["positions_2d"]
    worst = 0.0
    for view in demo.fetch(demo.subjects, require_3d=True):
        absolute = view.poses_3d.copy()
        absolute[:, 1:] += absolute[:, :1]  # joint 0 holds the trajectory, the others are root-relative
        pixels = view.camera.project(absolute)
        expected = raw_2d[view.subject][view.action][view.camera_index]
        worst = max(worst, float(np.abs(pixels - expected).max()))
        # every joint is inside the image and in front of the camera
        assert (absolute[..., 2] > 0.5).all()
        assert (expected > 0).all() and (expected[..., 0] < view.camera.res_w).all()
        assert (expected[..., 1] < view.camera.res_h).all()
    assert worst < 1e-3


@pytest.mark.slow
def test_bone_lengths_constant_symmetric_and_per_subject(demo):
    per_subject = {}
    for subject in demo.subjects:
        lengths = np.concatenate([bone_lengths(p) for p in demo.world_3d[subject].values()])
        assert lengths.std(axis=0).max() < 1e-5  # metres: constant over time and across actions
        for left, right in SYMMETRIC_BONES:
            np.testing.assert_allclose(lengths[:, left], lengths[:, right], atol=1e-5)
        np.testing.assert_allclose(lengths.mean(0), sample_subject_bone_lengths(subject, SMALL_CONFIG.seed),
                                   atol=1e-5)
        np.testing.assert_allclose(demo.gt_bone_lengths(subject), lengths.mean(0), atol=1e-5)
        per_subject[subject] = lengths.mean(0)
    table = np.stack(list(per_subject.values()))
    assert (table.std(axis=0) > 0.003).all()  # subjects really differ (> 3 mm std on every bone)
    assert ((table > 0.08) & (table < 0.6)).all()


@pytest.mark.slow
def test_feet_on_the_ground(demo):
    for actions in demo.world_3d.values():
        for poses in actions.values():
            assert abs(poses[..., 2].min() - 0.07) < 1e-4


@pytest.mark.slow
def test_test_subjects_perform_only_held_out_clips(demo_dir):
    clips = read_manifest(demo_dir)["summary"]["clips"]
    train = {k for s in TRAIN_SUBJECTS for k in clips[s].values()}
    test = {k for s in TEST_SUBJECTS for k in clips[s].values()}
    assert train and test and not (train & test)
    full = subject_assignments(DemoConfig())  # the default (full) dataset too
    full_train = {k for s in TRAIN_SUBJECTS for k in full[s]}
    assert not full_train & set(TEST_CLIPS)
    assert all(set(full[s]) == set(TEST_CLIPS) for s in TEST_SUBJECTS)
    assert "mocapbank" in TEST_CLIPS and len(TEST_CLIPS) >= 4


@pytest.mark.slow
def test_detections_match_the_documented_noise(demo_dir):
    gt = load_npz(demo_dir / "data_2d_demo_gt.npz")["positions_2d"]
    det = load_npz(demo_dir / "data_2d_demo_detections.npz")["positions_2d"]
    errors = np.concatenate([np.stack(det[s][a]) - np.stack(gt[s][a]) for s in gt for a in gt[s]], axis=1)
    # robust per-joint std (median absolute deviation) ignores the rare outliers
    robust = 1.4826 * np.median(np.abs(errors), axis=(0, 1, 3))
    np.testing.assert_allclose(robust, NOISE_STD_PX, rtol=0.15)
    lag1 = np.mean(errors[:, 1:] * errors[:, :-1]) / np.mean(errors ** 2)
    assert abs(lag1 - DETECTOR_AR) < 0.1
    big = np.linalg.norm(errors, axis=-1) > 25.0  # > 4 std of the noisiest joint
    assert 0 < big.mean() < 0.01  # outliers exist but are rare


def test_detector_noise_outliers_and_determinism():
    gt = np.zeros((4, 5000, 17, 2))
    gt[..., 0] = np.arange(17) * 100.0  # distinct joints, so swaps are visible
    a = detector_noise(gt, np.random.default_rng(1))
    b = detector_noise(gt, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    err = a - gt
    swapped_wrist = np.abs(err[..., 13, 0] - (gt[..., 16, 0] - gt[..., 13, 0])) < 30
    assert swapped_wrist.any() and swapped_wrist.mean() < 0.02
    np.testing.assert_allclose(err.std(axis=(0, 1, 3))[[0, 7, 8]], NOISE_STD_PX[[0, 7, 8]], rtol=0.15)


@pytest.mark.slow
def test_every_subject_has_its_own_cameras(demo):
    cams = load_cameras()
    for subject in demo.subjects:
        view = demo.sequences[subject][next(iter(demo.sequences[subject]))][0]
        np.testing.assert_allclose(view.camera.translation, cams[subject][0].translation)


@pytest.mark.slow
def test_setup_is_idempotent(demo_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    assert demo_is_current(data, SMALL_CONFIG) is not None
    stamps = {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    setup_script.main(["--data_dir", str(data), "--small", "--no_video"])
    out = capsys.readouterr().out
    assert "up to date" in out and "S11" in out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    # a modified file is detected
    with open(data / "data_2d_demo_gt.npz", "ab") as fh:
        fh.write(b"\0")
    assert demo_is_current(data, SMALL_CONFIG) is None
    assert demo_is_current(data, DemoConfig()) is None  # other parameters: not current either


def test_setup_rejects_short_sequences():
    with pytest.raises(UserError, match="--frames"):
        setup_script.main(["--frames", "100", "--no_video"])


@pytest.mark.slow
def test_download_offline_is_one_line_and_touches_nothing(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    keep = tmp_path / "data" / "bone_lengths_h36m.npz"
    keep.write_bytes(b"existing")
    reachable = published.network_reachable(timeout=2.0)
    monkeypatch.setattr(published, "network_reachable", lambda timeout=3.0: False)
    with pytest.raises(UserError, match="unreachable"):
        setup_script.main(["--download", "--root", str(tmp_path)])
    assert keep.read_bytes() == b"existing" and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    if not reachable:  # the real command line, as a user runs it here
        proc = subprocess.run([sys.executable, "setup.py", "--download", "--root", str(tmp_path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
        assert keep.read_bytes() == b"existing"


def test_published_table_covers_the_paper_layout():
    targets = {f.target for f in published.PUBLISHED}
    assert targets == {"data", "checkpoint", "3D_prediction"}
    files = {f"{f.target}/{e}" for f in published.PUBLISHED for e in f.expected}
    assert "checkpoint/biGRU_all.bin" in files and "data/bone_lengths_smpl_neutral_all.npz" in files
    assert "3D_prediction/Anatomy3D/prediction.pkl" in files


def test_looped_clips_are_continuous_and_placement_is_deterministic():
    from common.core.camera import load_cameras as cams
    motion = load_clip(CLIP_BY_KEY["walker_left1"], None)  # a turning walk whose last frame != first frame
    poses = unrolled_clip(motion, 400)
    steps = np.linalg.norm(np.diff(poses, axis=0), axis=-1).max(axis=1)
    assert steps.max() < 0.09  # metres per 20 ms frame: no jump where one cycle joins the next
    path = np.linalg.norm(np.diff(poses[:, 0, :2], axis=0), axis=-1).sum()
    assert np.linalg.norm(poses[-1, 0, :2] - poses[0, 0, :2]) < 0.8 * path  # the turn accumulates over cycles
    cameras = cams()["S9"]
    field = MarginField(cameras, step=0.1)
    lengths = sample_subject_bone_lengths("S9", 7)
    a = build_sequence(poses, lengths, cameras, True, np.random.default_rng(3), field)
    b = build_sequence(poses, lengths, cameras, True, np.random.default_rng(3), field)
    np.testing.assert_array_equal(a, b)
    assert image_margin(a, cameras) >= 10.0
    np.testing.assert_allclose(bone_lengths(a), np.broadcast_to(lengths, (len(a), 16)), atol=1e-9)


def test_margin_field_reads_its_nearest_node_and_minus_infinity_outside():
    """MarginField's look-up: a point reads the image margin of its nearest grid node (the exact image_margin of
    that node), and a point beyond the grid on any axis reads -inf."""
    cameras = load_cameras()["S1"]
    field = MarginField(cameras, step=0.25, half_width=2.0, z_range=(0.0, 2.0))
    rng = np.random.default_rng(0)
    nodes = field.origin + 0.25 * rng.integers(0, [17, 17, 9], size=(50, 3))
    near = nodes + rng.uniform(-0.12, 0.12, nodes.shape)  # within half a step of the node
    exact = image_margin(nodes.reshape(-1, 1, 1, 3), cameras)
    np.testing.assert_allclose(field(near), exact)
    outside = nodes.copy()
    outside[np.arange(50), rng.integers(0, 3, 50)] += np.where(rng.random(50) < 0.5, -10.0, 10.0)
    assert np.isneginf(field(outside)).all()
    assert field(near.reshape(5, 10, 3)).shape == (5, 10)
