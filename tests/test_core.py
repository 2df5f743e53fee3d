"""Unit tests of the core modules on small synthetic arrays: skeleton, camera, bones, metrics, I/O, checkpoints."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.core import bones
from common.core import camera
from common.core import metrics
from common.core import skeleton
from common.utils.checkpoint import load_checkpoint, load_weights, model_state, resolve_checkpoint, save_checkpoint
from common.datasets.dataset import load_dataset, resolve_dataset_name
from common.utils.device import select_device
from common.utils.errors import UserError, cli
from common.utils.fileio import check_array, load_npz, load_pickle, save_npz, save_pickle
from dataset_files import write_dataset

ROOT = Path(__file__).resolve().parents[1]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_poses(rng: np.random.Generator, shape=(4, 6)) -> np.ndarray:
    """Plausible-ish poses: a random tree with bones of 0.1-0.5 m. Returns shape + (17, 3), root at origin."""
    directions = rng.normal(size=shape + (16, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    lengths = rng.uniform(0.1, 0.5, size=shape + (16,))
    return bones.recompose(directions, lengths)


# ---------------------------------------------------------------- skeleton

def test_skeleton_tables_consistent():
    assert len(skeleton.JOINT_NAMES) == skeleton.NUM_JOINTS == 17
    assert len(skeleton.BONE_NAMES) == skeleton.NUM_BONES == 16
    for a, b in skeleton.SYMMETRIC_BONES:
        assert skeleton.BONE_NAMES[a].startswith("r_") and skeleton.BONE_NAMES[b].startswith("l_") or \
            skeleton.BONE_NAMES[a].startswith("l_") and skeleton.BONE_NAMES[b].startswith("r_")
        assert skeleton.BONE_NAMES[a][2:] == skeleton.BONE_NAMES[b][2:]
    # Each joint's ancestry row counts its depth in the tree.
    depth = [0] * 17
    for j in range(1, 17):
        depth[j] = depth[skeleton.PARENTS[j]] + 1
    assert skeleton.ANCESTOR_BONES.sum(axis=1).tolist() == depth


def test_flip_is_an_involution_and_swaps_sides():
    rng = np.random.default_rng(0)
    poses = rng.normal(size=(5, 17, 3))
    flipped = skeleton.flip_poses(poses)
    np.testing.assert_allclose(skeleton.flip_poses(flipped), poses)
    np.testing.assert_allclose(flipped[:, 4, 0], -poses[:, 1, 0])  # l_hip <- mirrored r_hip
    np.testing.assert_allclose(flipped[:, 0], poses[:, 0] * [-1, 1, 1])
    torch_flip = skeleton.flip_poses(torch.from_numpy(poses))
    np.testing.assert_allclose(torch_flip.numpy(), flipped)


def test_flip_bone_lengths_matches_flipped_poses():
    rng = np.random.default_rng(1)
    poses = random_poses(rng, (3,))
    np.testing.assert_allclose(bones.bone_lengths(skeleton.flip_poses(poses)),
                               skeleton.flip_bone_lengths(bones.bone_lengths(poses)), atol=1e-12)


# ---------------------------------------------------------------- camera

def test_quaternion_rotation_known_case():
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])  # 90 degrees about z
    np.testing.assert_allclose(camera.qrot(q, np.array([1.0, 0, 0])), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(camera.qrot(camera.qinverse(q), np.array([0.0, 1, 0])), [1, 0, 0], atol=1e-12)


def test_world_camera_round_trip_all_h36m_cameras():
    rng = np.random.default_rng(2)
    world = rng.normal(size=(8, 17, 3)).astype(np.float32) + [0, 0, 1]
    for subject, views in camera.load_cameras().items():
        for cam in views:
            back = cam.camera_to_world(cam.world_to_camera(world))
            np.testing.assert_allclose(back, world, atol=1e-4, err_msg=subject)
    # The cameras look at the capture volume: the origin is in front of every camera.
    for views in camera.load_cameras().values():
        for cam in views:
            assert cam.world_to_camera(np.zeros((1, 3), np.float32))[0, 2] > 2.0


def test_projection_of_known_points():
    intr = np.array([2.0, 2.2, 0.1, -0.05, 0, 0, 0, 0, 0])
    on_axis = np.array([[0.0, 0.0, 4.0]])
    np.testing.assert_allclose(camera.project_to_2d(on_axis, intr), [[0.1, -0.05]], atol=1e-12)
    point = np.array([[0.5, -0.25, 5.0]])
    expected = [[2.0 * 0.1 + 0.1, 2.2 * -0.05 - 0.05]]
    np.testing.assert_allclose(camera.project_to_2d(point, intr), expected, atol=1e-12)
    np.testing.assert_allclose(camera.project_to_2d_linear(point, intr), expected, atol=1e-12)
    # Radial distortion by hand: r^2 = 0.0125, factor 1 + k1 r^2.
    intr_k = intr.copy()
    intr_k[4] = 0.3
    r2 = 0.1 ** 2 + 0.05 ** 2
    factor = 1 + 0.3 * r2
    np.testing.assert_allclose(camera.project_to_2d(point, intr_k),
                               [[2.0 * 0.1 * factor + 0.1, 2.2 * -0.05 * factor - 0.05]], atol=1e-12)
    # Tangential: x' = x (radial + p.x) + p r^2.
    intr_p = intr.copy()
    intr_p[7:] = [0.01, -0.02]
    x = np.array([0.1, -0.05])
    tan = 0.01 * 0.1 + -0.02 * -0.05
    xd = x * (1 + tan) + np.array([0.01, -0.02]) * r2
    np.testing.assert_allclose(camera.project_to_2d(point, intr_p), [[2.0 * xd[0] + 0.1, 2.2 * xd[1] - 0.05]],
                               atol=1e-12)


def test_projection_flip_symmetry():
    """Mirroring the 3D points and the camera (negated cx and p1) mirrors the 2D projection."""
    rng = np.random.default_rng(3)
    intr = camera.load_cameras()["S1"][2].intrinsic.astype(np.float64)
    points = rng.normal(scale=0.4, size=(10, 17, 3)) + [0.2, 0.1, 4.5]
    proj = camera.project_to_2d(points, intr)
    mirrored = points * [-1, 1, 1]
    proj_m = camera.project_to_2d(mirrored, camera.flip_intrinsic(intr))
    np.testing.assert_allclose(proj_m, proj * [-1, 1], atol=1e-10)


def test_projection_broadcasts_per_batch_intrinsics_torch():
    cams = camera.load_cameras()["S9"]
    intr = torch.tensor(np.stack([c.intrinsic for c in cams]), dtype=torch.float64)  # (4, 9)
    pts = torch.randn(4, 7, 17, 3, dtype=torch.float64) * 0.3 + torch.tensor([0, 0, 5.0], dtype=torch.float64)
    out = camera.project_to_2d(pts, intr[:, None])
    assert out.shape == (4, 7, 17, 2)
    for i in range(4):
        np.testing.assert_allclose(out[i].numpy(), camera.project_to_2d(pts[i].numpy(), cams[i].intrinsic
                                                                        .astype(np.float64)), atol=1e-6)


def test_screen_normalisation_round_trip():
    pix = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]])
    norm = camera.normalize_screen_coordinates(pix, 1000, 1002)
    np.testing.assert_allclose(norm[0], [-1, -1.002])
    np.testing.assert_allclose(norm[2], [0, 0], atol=1e-12)
    np.testing.assert_allclose(camera.image_coordinates(norm, 1000, 1002), pix, atol=1e-9)
    with pytest.raises(UserError):
        camera.normalize_screen_coordinates(np.zeros((3, 3)), 10, 10)


def test_camera_file_errors(tmp_path):
    bad = tmp_path / "cams.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="cannot read camera file"):
        camera.load_cameras(bad)


# ---------------------------------------------------------------- bones

@pytest.mark.parametrize("use_torch", [False, True])
def test_split_then_recompose_is_identity(use_torch):
    rng = np.random.default_rng(4)
    poses = random_poses(rng, (3, 5))
    if use_torch:
        poses = torch.from_numpy(poses)
    directions, lengths = bones.decompose(poses)
    assert directions.shape == (3, 5, 16, 3) and lengths.shape == (3, 5, 16)
    rebuilt = bones.recompose(directions, lengths)
    np.testing.assert_allclose(np.asarray(rebuilt), np.asarray(poses), atol=1e-10)
    norms = np.linalg.norm(np.asarray(directions), axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-12)


def test_recompose_hand_computed_chain():
    directions = np.zeros((16, 3))
    directions[:, 2] = 1.0  # every bone points up
    lengths = np.arange(1, 17, dtype=np.float64)
    poses = bones.recompose(directions, lengths)
    # r_ankle (joint 3) = r_hip + r_thigh + r_calf = 1 + 2 + 3; head (10) = spine_1 + spine_2 + neck + head.
    assert poses[3, 2] == 6 and poses[10, 2] == 7 + 8 + 9 + 10
    assert poses[13, 2] == 7 + 8 + 11 + 12 + 13  # l_wrist through the thorax


def test_recompose_broadcasts_one_length_vector_over_time():
    rng = np.random.default_rng(5)
    directions = bones.bone_directions(random_poses(rng, (2, 9)))
    lengths = rng.uniform(0.1, 0.5, size=(2, 1, 16))
    poses = bones.recompose(torch.from_numpy(directions), torch.from_numpy(lengths))
    np.testing.assert_allclose(bones.bone_lengths(poses).numpy(), np.broadcast_to(lengths, (2, 9, 16)), atol=1e-10)


def test_average_symmetric_and_adjust():
    rng = np.random.default_rng(6)
    lengths = rng.uniform(0.1, 0.5, size=(4, 16))
    avg = bones.average_symmetric(lengths)
    for a, b in skeleton.SYMMETRIC_BONES:
        np.testing.assert_allclose(avg[:, a], (lengths[:, a] + lengths[:, b]) / 2)
        np.testing.assert_allclose(avg[:, a], avg[:, b])
    np.testing.assert_allclose(avg[:, 6:10], lengths[:, 6:10])
    poses = random_poses(rng, (4,)) + rng.normal(size=(4, 1, 3))
    adjusted = bones.adjust_bone_lengths(poses, avg)
    np.testing.assert_allclose(bones.bone_lengths(adjusted), avg, atol=1e-10)
    np.testing.assert_allclose(bones.bone_directions(adjusted), bones.bone_directions(poses), atol=1e-10)
    np.testing.assert_allclose(adjusted[:, 0], poses[:, 0])
    # Adjusting with a pose's own lengths returns the pose.
    np.testing.assert_allclose(bones.adjust_bone_lengths(poses, bones.bone_lengths(poses)), poses, atol=1e-10)


# ---------------------------------------------------------------- metrics

def test_mpjpe_hand_computed():
    target = np.zeros((2, 17, 3))
    pred = np.zeros((2, 17, 3))
    pred[0, :, 0] = 3.0
    pred[1, :8, 1] = 4.0
    np.testing.assert_allclose(metrics.mpjpe(pred, target), [3.0, 4.0 * 8 / 17])


@pytest.mark.parametrize("reflect", [False, True])
def test_p_mpjpe_invariant_to_similarity(reflect):
    rng = np.random.default_rng(7)
    target = random_poses(rng, (6,))
    rot = np.stack([random_rotation(rng) for _ in range(6)])
    scale = rng.uniform(0.5, 2.0, size=(6, 1, 1))
    shift = rng.normal(size=(6, 1, 3))
    pred = scale * target @ rot + shift
    np.testing.assert_allclose(metrics.p_mpjpe(pred, target), 0.0, atol=1e-9)
    if reflect:
        # A mirror image is not a rotation: Procrustes must not undo it, the error stays positive.
        assert (metrics.p_mpjpe(pred * [-1, 1, 1], target) > 1e-3).all()


def test_p_mpjpe_never_exceeds_mpjpe_and_n_mpjpe_scale():
    rng = np.random.default_rng(8)
    target = random_poses(rng, (10,))
    pred = target + rng.normal(scale=0.05, size=target.shape)
    assert (metrics.p_mpjpe(pred, target) <= metrics.mpjpe(pred, target) + 1e-12).all()
    np.testing.assert_allclose(metrics.n_mpjpe(2.5 * target, target), 0.0, atol=1e-12)
    # Hand-computed: target joints at x = 1, pred at x = 1 (8 joints) and x = 3 (9 joints);
    # least-squares scale s = (8 + 27) / (8 + 81) and the error is the mean |s * pred - 1|.
    tgt = np.zeros((1, 17, 3))
    tgt[..., 0] = 1.0
    prd = tgt.copy()
    prd[0, 8:, 0] = 3.0
    s = 35.0 / 89.0
    np.testing.assert_allclose(metrics.n_mpjpe(prd, tgt), [(8 * abs(s - 1) + 9 * abs(3 * s - 1)) / 17])


def test_mpjve_hand_computed():
    target = np.zeros((4, 17, 3))
    pred = np.zeros((4, 17, 3))
    pred[:, :, 0] = np.arange(4)[:, None] * 2.0  # constant velocity 2 per frame
    np.testing.assert_allclose(metrics.mpjve(pred, target), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(metrics.mpjve(pred + 5.0, pred), [0.0, 0.0, 0.0])  # offsets do not count


def test_bone_metrics_hand_computed():
    directions = np.zeros((16, 3))
    directions[:, 2] = 1.0
    target = bones.recompose(directions, np.full(16, 0.2))
    longer = bones.recompose(directions, np.full(16, 0.25))
    np.testing.assert_allclose(metrics.bone_length_error(longer, target), 0.05)
    np.testing.assert_allclose(metrics.bone_direction_error(longer, target), 0.0, atol=1e-6)
    turned = directions.copy()
    turned[0] = [1.0, 0, 0]  # one bone at 90 degrees
    np.testing.assert_allclose(metrics.bone_direction_error(bones.recompose(turned, np.full(16, 0.2)), target),
                               90.0 / 16, atol=1e-5)
    np.testing.assert_allclose(metrics.length_error(np.full(16, 0.3), np.full(16, 0.2)), 0.1)


def test_action_average_is_frame_weighted_then_category_mean():
    per_action, overall = metrics.action_average([
        ("Walking 1", np.array([1.0, 1.0, 1.0])), ("Walking", np.array([5.0])), ("Jump", np.array([2.0, 4.0])),
    ])
    assert per_action == {"Jump": 3.0, "Walking": 2.0}
    assert overall == 2.5


# ---------------------------------------------------------------- I/O

class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code(tmp_path):
    evil = tmp_path / "prediction.pkl"
    evil.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(UserError, match="refusing to load 'posix.system'|refusing to load 'os.system'"):
        load_pickle(evil)


def test_restricted_unpickler_loads_data(tmp_path):
    data = {"Walking": [("S9", "Walking 1")], "arrays": [np.arange(6, dtype=np.float32).reshape(2, 3)],
            "n": 3, "f": 1.5}
    path = tmp_path / "ok.pkl"
    save_pickle(path, data)
    loaded = load_pickle(path)
    assert loaded["Walking"] == [("S9", "Walking 1")]
    np.testing.assert_array_equal(loaded["arrays"][0], data["arrays"][0])


def test_npz_object_members_are_loaded_restrictedly(tmp_path):
    good = tmp_path / "good.npz"
    save_npz(good, positions_3d={"S1": {"Walk": np.zeros((3, 17, 3), np.float32)}})
    assert load_npz(good)["positions_3d"]["S1"]["Walk"].shape == (3, 17, 3)
    evil = tmp_path / "evil.npz"
    obj = np.empty((), dtype=object)
    obj[()] = _Evil()
    np.savez(evil, positions_3d=obj)
    with pytest.raises(UserError, match="refusing"):
        load_npz(evil)


def test_truncated_and_incomplete_npz_one_line_errors(tmp_path):
    path = tmp_path / "data.npz"
    save_npz(path, positions_2d={"S1": {}})
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError, match="not a readable npz") as info:
        load_npz(truncated)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="missing key"):
        load_npz(path, required=["positions_3d"])
    with pytest.raises(UserError, match="file not found"):
        load_npz(tmp_path / "absent.npz")


def test_check_array_shapes_and_finiteness():
    assert check_array("x", np.zeros((5, 17, 3)), (None, 17, 3)).dtype == np.float32
    with pytest.raises(UserError, match=r"expected shape \(\*, 17, 3\), got \(5, 16, 3\)"):
        check_array("x", np.zeros((5, 16, 3)), (None, 17, 3))
    bad = np.zeros((2, 17, 3))
    bad[1, 3, 0] = np.nan
    with pytest.raises(UserError, match="NaN or inf"):
        check_array("S9/Walking", bad, (None, 17, 3))


def _write_tiny_dataset(folder: Path) -> None:
    """S1 and S9 walking for 12 frames, 3D in the 32-joint layout, 2D 3 frames longer (the loader truncates)."""
    write_dataset(folder, "tiny", {"S1": ["Walking 1"], "S9": ["Walking 1"]}, frames=12, detections_px=None,
                  joints_3d=32, extra_2d_frames=3)


def test_dataset_loader_reprojects_gt(tmp_path):
    _write_tiny_dataset(tmp_path)
    ds = load_dataset(tmp_path, "tiny", "gt")
    assert ds.subjects == ["S1", "S9"]
    views = ds.fetch(["S9"], require_3d=True)
    assert len(views) == 4
    for view in views:
        assert view.poses_2d.shape == (12, 17, 2) and view.poses_3d.shape == (12, 17, 3)
        absolute = view.poses_3d.copy()
        absolute[:, 1:] += absolute[:, :1]
        pix = view.camera.project(absolute)
        gt_pix = camera.image_coordinates(view.poses_2d, view.camera.res_w, view.camera.res_h)
        np.testing.assert_allclose(pix, gt_pix, atol=1e-3)
    with pytest.raises(UserError, match=r"subject\(s\) \['S5'\] not in"):
        ds.fetch(["S5"])
    lengths = ds.gt_bone_lengths("S1")
    assert lengths.shape == (16,)


def test_dataset_loader_rejects_bad_shapes(tmp_path):
    _write_tiny_dataset(tmp_path)
    files = load_npz(tmp_path / "data_2d_tiny_gt.npz")
    files["positions_2d"]["S9"]["Walking 1"][2] = files["positions_2d"]["S9"]["Walking 1"][2][:, :16]
    save_npz(tmp_path / "data_2d_tiny_gt.npz", **files)
    with pytest.raises(UserError, match="camera 2: expected shape"):
        load_dataset(tmp_path, "tiny", "gt")


def test_dataset_name_resolution(tmp_path):
    assert resolve_dataset_name("auto", tmp_path) == "demo"
    (tmp_path / "data_3d_h36m.npz").write_bytes(b"")
    assert resolve_dataset_name("auto", tmp_path) == "h36m"
    assert resolve_dataset_name("custom", tmp_path) == "custom"


# ---------------------------------------------------------------- checkpoints and CLI

class _Tiny(torch.nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.expand_conv = torch.nn.Conv1d(34, width, 1)
        self.shrink = torch.nn.Conv1d(width, 51, 1)


def test_checkpoint_round_trip_prefix_and_mismatch(tmp_path):
    model = _Tiny()
    sd = {"module." + k: v for k, v in model.state_dict().items()}  # as saved from DDP
    path = tmp_path / "ckpt.bin"
    save_checkpoint(path, {"model_pos": sd, "epoch": 3, "lr": 1e-3, "optimizer": {}, "random_state": None})
    assert not list(tmp_path.glob("*.tmp"))
    state = load_checkpoint(path)
    other = _Tiny()
    load_weights(other, model_state(state), str(path))
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(UserError, match="does not match the _Tiny architecture.*shape mismatch"):
        load_weights(_Tiny(width=8), model_state(state), str(path))
    with pytest.raises(UserError, match="no 'model_pos'"):
        model_state({"epoch": 1})
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.bin")


def test_resolve_checkpoint_bare_names(tmp_path):
    assert resolve_checkpoint("biGRU_all.bin", tmp_path) == tmp_path / "biGRU_all.bin"
    assert resolve_checkpoint("some/dir/x.bin", tmp_path) == Path("some/dir/x.bin")


def test_device_selection(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")
    assert select_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.undo()
    with pytest.raises(UserError):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            select_device("cuda")


def test_cli_wrapper_one_line_error_and_exit_code(capsys):
    def main(argv=None):
        raise UserError("file not found: x.npz")

    assert cli(main)([]) == 2
    assert capsys.readouterr().err == "error: file not found: x.npz\n"


@pytest.mark.slow
def test_train_script_bad_flag_values_exit_nonzero():
    proc = subprocess.run([sys.executable, "train.py", "-arc", "3,4"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "odd" in proc.stderr
