"""bone_adjust.py and common.adjustment.adjust: formats, validation, adjustment identities, metrics by hand, the paper's
command on a small dataset."""
import pickle

import numpy as np
import pytest
import torch

import bone_adjust
from common.adjustment import adjust
from common.core.bones import adjust_bone_lengths, bone_lengths, recompose
from common.core.camera import load_cameras
from common.utils.errors import UserError
from common.adjustment.evaluation import evaluate, evaluate_arrays
from common.utils.fileio import save_npz
from common.core.metrics import mpjve, p_mpjpe

torch.set_num_threads(1)

LENGTHS = np.array([0.13, 0.45, 0.44, 0.13, 0.45, 0.44, 0.23, 0.25, 0.11, 0.12,
                    0.15, 0.28, 0.25, 0.15, 0.28, 0.25], dtype=np.float32)
ACTIONS = {"S9": ["Walking 1", "Eating"], "S11": ["Walking", "Eating 2"]}


def _motion(frames, lengths, rng):
    """World poses (T, 17, 3) metres, z up, with exact constant bone lengths and smooth random directions."""
    base = rng.normal(size=(16, 3))
    drift = np.cumsum(rng.normal(scale=0.05, size=(frames, 16, 3)), axis=0)
    dirs = base + drift
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    poses = recompose(dirs, lengths[None])
    return (poses + np.array([0.0, 0.0, 0.9]) + np.linspace(0, 0.5, frames)[:, None, None]).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """data_3d_demo.npz (test subjects), exact camera-frame GT, noisy predictions in both layouts, lengths."""
    root = tmp_path_factory.mktemp("adjust")
    rng = np.random.default_rng(0)
    cameras = load_cameras()
    world, preds, gt_cam, lengths, causal = {}, {}, {}, {}, {}
    for s, actions in ACTIONS.items():
        subject_lengths = LENGTHS * (1.0 + 0.05 * (s == "S11"))
        world[s], preds[s], gt_cam[s], lengths[s], causal[s] = {}, {}, {}, {}, {}
        for i, a in enumerate(actions):
            world[s][a] = _motion(40 + 10 * i, subject_lengths, rng)
            gt_cam[s][a], preds[s][a], lengths[s][a], causal[s][a] = [], [], [], []
            for cam in cameras[s]:
                g = cam.world_to_camera(world[s][a]).astype(np.float32)
                g = g - g[:, :1]
                gt_cam[s][a].append(g)
                preds[s][a].append((g + rng.normal(scale=0.02, size=g.shape) + [0, 0, 0.3]).astype(np.float32))
                lengths[s][a].append((subject_lengths + rng.normal(scale=0.005, size=16)).astype(np.float32))
                causal[s][a].append((subject_lengths + rng.normal(scale=0.01, size=(len(g), 16))).astype(np.float32))
    save_npz(root / "data_3d_demo.npz", positions_3d=world)
    save_npz(root / "lengths_dict.npz", lengths=lengths)
    save_npz(root / "lengths_dict_causal.npz", lengths=causal)
    adjust.write_predictions(root / "VideoPose3D", preds)
    adjust.write_predictions(root / "preds.npz", preds, layout="npz")
    return {"root": root, "preds": preds, "gt": gt_cam, "lengths": lengths}


def test_write_predictions_pkl_layout(files):
    act = pickle.load(open(files["root"] / "VideoPose3D" / "action_dict.pkl", "rb"))
    pred = pickle.load(open(files["root"] / "VideoPose3D" / "prediction.pkl", "rb"))
    assert act == {"Walking": [("S9", "Walking 1"), ("S11", "Walking")], "Eating": [("S9", "Eating"),
                                                                                    ("S11", "Eating 2")]}
    assert len(pred) == 16
    np.testing.assert_array_equal(pred[5], files["preds"]["S11"]["Walking"][1])


def test_both_layouts_load_the_same(files):
    a = adjust.load_predictions(files["root"] / "VideoPose3D" / "prediction.pkl",
                                files["root"] / "VideoPose3D" / "action_dict.pkl")
    b = adjust.load_predictions(files["root"] / "preds.npz")
    order = {k: i for i, k in enumerate(b.keys)}
    assert sorted(a.keys) == sorted(b.keys)
    for k, p in zip(a.keys, a.poses):
        np.testing.assert_array_equal(p, b.poses[order[k]])


def test_ground_truth_is_camera_frame_root_relative(files):
    keys = [("S11", "Eating 2", 3)]
    (gt,) = adjust.load_ground_truth(files["root"] / "data_3d_demo.npz", keys)
    np.testing.assert_allclose(gt, files["gt"]["S11"]["Eating 2"][3], atol=1e-6)
    assert np.all(gt[:, 0] == 0)


def test_adjusting_exact_pose_with_its_gt_lengths_is_identity(files):
    gt = torch.from_numpy(files["gt"]["S9"]["Eating"][2])
    torch.testing.assert_close(adjust_bone_lengths(gt, bone_lengths(gt)), gt, atol=1e-6, rtol=0)
    pred = adjust.Predictions([("S9", "Eating", 2)], [gt.numpy()])
    data = adjust.prepare(pred, [gt.numpy()], None)
    result = adjust.evaluate_adjustment(data)
    assert result["adjusted (GT lengths)"].average["MPJPE"] < 1e-3
    assert result["adjusted (own median lengths)"].average["MPJPE"] < 1e-3  # exact poses: own = true lengths
    assert "adjusted (pred. lengths)" not in result


def test_own_median_lengths_row_removes_jitter_and_asymmetry(files):
    """Noisy predictions: the own-median row has constant, symmetric lengths equal to the per-sequence medians
    of the predictions (left/right averaged)."""
    from common.core.bones import median_lengths

    pred = files["preds"]["S9"]["Walking 1"][1]
    data = adjust.prepare(adjust.Predictions([("S9", "Walking 1", 1)], [pred]),
                          [files["gt"]["S9"]["Walking 1"][1]], None)
    own = data.own_lengths.numpy()
    assert np.ptp(own, axis=0).max() == 0 and np.abs(own[:, 1] - own[:, 4]).max() < 1e-7
    raw = np.median(bone_lengths(pred.astype(np.float64)), axis=0)
    assert own[0, 1] == pytest.approx((raw[1] + raw[4]) / 2, abs=1e-6)
    np.testing.assert_allclose(own[0], median_lengths(pred), atol=1e-7)


def test_procrustes_on_known_similarity_transform():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 17, 3))
    q, _ = np.linalg.qr(rng.normal(size=(5, 3, 3)))
    q[np.linalg.det(q) < 0] *= -1  # proper rotations
    moved = 1.7 * x @ q + rng.normal(size=(5, 1, 3))
    np.testing.assert_allclose(p_mpjpe(moved, x), 0, atol=1e-9)
    assert np.all(p_mpjpe(x + rng.normal(scale=0.1, size=x.shape), x) > 0.01)


def test_mpjve_by_hand():
    pred = np.zeros((3, 17, 3))
    gt = np.zeros((3, 17, 3))
    pred[1, :, 0] = 0.003  # frame 1 off by 3 mm in x: velocity errors 3 mm then 3 mm
    pred[2, :, 0] = 0.003
    np.testing.assert_allclose(mpjve(pred, gt), [0.003, 0.0])
    # in the evaluation, velocity steps never cross sequence boundaries
    res = evaluate_arrays(["A", "A"], np.concatenate([pred, pred]), np.concatenate([gt, gt]),
                          np.array([0, 3, 6]), ["MPJVE"])
    np.testing.assert_allclose(res.average["MPJVE"], 1.5)


def test_action_wise_average_and_units():
    gt = np.zeros((4, 17, 3), dtype=np.float32)
    pred = gt.copy()
    pred[..., 2] += 0.01  # 10 mm everywhere
    res = evaluate([("Walking 1", pred[:2], gt[:2]), ("Walking", pred[2:], gt[2:] + 0.01),
                    ("Eating", pred, gt)], ["MPJPE"])
    # Walking: 2 frames at 10 mm + 2 frames at |(-.01,-.01,0)| = 14.14 mm; Eating 10 mm
    np.testing.assert_allclose(res.per_action["MPJPE"]["Walking"], (20 + 2 * 10 * np.sqrt(2)) / 4, rtol=1e-5)
    np.testing.assert_allclose(res.average["MPJPE"], ((20 + 20 * np.sqrt(2)) / 4 + 10) / 2, rtol=1e-5)


@pytest.mark.slow
def test_bone_adjust_paper_command_runs(files, tmp_path, capsys):
    root = files["root"]
    argv = ["--act", str(root / "VideoPose3D/action_dict.pkl"), "--pred", str(root / "VideoPose3D/prediction.pkl"),
            "--bone", str(root / "lengths_dict.npz"), "--gt", str(root / "data_3d_demo.npz"), "--print_action",
            "--result_csv", str(tmp_path / "result.csv"), "--plot_sequence", "S9/Walking 1/0", "--device", "cpu"]
    bone_adjust.main(argv)
    out = capsys.readouterr().out
    assert "adjusted (GT lengths)" in out and "-- Walking --" in out and "r_lower_arm" in out
    rows = (tmp_path / "result.csv").read_text().splitlines()
    assert rows[0].startswith("action,variant,MPJPE (mm),P-MPJPE (mm)")
    assert len(rows) == 1 + 3 * 4  # (Eating, Walking, Average) x 4 variants
    assert (tmp_path / "bone_lengths_S9_Walking-1_0.png").stat().st_size > 1000
    values = {tuple(r.split(",")[:2]): [float(v) for v in r.split(",")[2:]] for r in rows[1:]}
    before = values[("Average", "unadjusted")]
    after = values[("Average", "adjusted (pred. lengths)")]
    bound = values[("Average", "adjusted (GT lengths)")]
    # noisy predictions with near-true lengths: adjustment reduces the bone-length error (column 5)
    assert after[4] < before[4] and bound[4] < after[4]


def test_npz_predictions_and_causal_frame_error(files, tmp_path, capsys):
    root = files["root"]
    bone_adjust.main(["--pred", str(root / "preds.npz"), "--gt", str(root / "data_3d_demo.npz"),
                      "--bone", str(root / "lengths_dict_causal.npz"), "--plot_frame_error",
                      "--result_csv", str(tmp_path / "r.csv")])
    out = capsys.readouterr().out
    assert "frames seen" in out
    csv_rows = (tmp_path / "frame_error.csv").read_text().splitlines()
    assert csv_rows[0] == "frames,MPJPE,P-MPJPE,MPJVE,BoneLenErr"
    assert [int(r.split(",")[0]) for r in csv_rows[1:]] == [f for f in adjust.FRAME_GRID if f <= 50]
    assert (tmp_path / "frame_error.png").is_file()


def _run_error(argv, match):
    with pytest.raises(UserError, match=match):
        bone_adjust.main(argv)


def test_mismatched_inputs_get_one_line_errors(files, tmp_path):
    root = files["root"]
    base = ["--gt", str(root / "data_3d_demo.npz"), "--bone", str(root / "lengths_dict.npz"),
            "--result_csv", str(tmp_path / "r.csv")]
    preds = {s: {a: [v.copy() for v in views] for a, views in acts.items()} for s, acts in files["preds"].items()}
    preds["S11"]["Eating 2"][1] = preds["S11"]["Eating 2"][1][:-3]
    adjust.write_predictions(tmp_path / "short", preds)
    _run_error(["--pred", str(tmp_path / "short/prediction.pkl")] + base, r"S11/Eating 2 camera 1 has 47 frames")

    preds["S11"]["Eating 2"][1] = np.zeros((50, 16, 3), np.float32)
    save_npz(tmp_path / "joints.npz", predictions=preds)
    _run_error(["--pred", str(tmp_path / "joints.npz")] + base, r"S11/Eating 2 camera 1: expected shape \(\*, 17, 3\)")

    preds["S11"]["Eating 2"][1] = np.full((50, 17, 3), np.nan, np.float32)
    save_npz(tmp_path / "nan.npz", predictions=preds)
    _run_error(["--pred", str(tmp_path / "nan.npz")] + base, "NaN or inf")

    some_pose = next(iter(files["preds"]["S9"].values()))[0][:5]  # plausible poses of an unknown action
    unknown = {"S9": {"Jumping": [some_pose] * 4}}
    adjust.write_predictions(tmp_path / "unknown", unknown)
    _run_error(["--pred", str(tmp_path / "unknown/prediction.pkl")] + base, "S9/Jumping is not in the ground truth")

    # pickles listing fewer sequences than action_dict names
    pickle.dump([np.zeros((5, 17, 3))] * 3, open(tmp_path / "unknown/prediction.pkl", "wb"))
    _run_error(["--pred", str(tmp_path / "unknown/prediction.pkl")] + base, "holds 3 sequences")

    _run_error(["--pred", str(root / "preds.npz"), "--causal"] + base, "--causal needs per-frame lengths")
    _run_error(["--pred", str(root / "preds.npz"), "--plot_sequence", "S9/Walking"] + base, "--plot_sequence")
    _run_error(["--pred", str(tmp_path / "missing.pkl")] + base, "file not found")
    (tmp_path / "r.csv").unlink(missing_ok=True)
    _run_error(["--pred", str(root / "preds.npz"), "--plot_sequence", "S9/Running/0"] + base,
               r"no such prediction \(available: S9/Eating, S9/Walking 1")
    assert not (tmp_path / "r.csv").exists()  # refused before any work


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_pickle_is_refused(files, tmp_path):
    (tmp_path / "evil").mkdir()
    pickle.dump({"Walking": [("S9", "Walking 1")]}, open(tmp_path / "evil/action_dict.pkl", "wb"))
    pickle.dump([_Evil()] * 4, open(tmp_path / "evil/prediction.pkl", "wb"))
    _run_error(["--pred", str(tmp_path / "evil/prediction.pkl"), "--gt", str(files["root"] / "data_3d_demo.npz"),
                "--bone", str(files["root"] / "lengths_dict.npz")], "refusing to load 'builtins.print'")


def test_cli_wrapper_exit_code(files, tmp_path, capsys):
    from common.utils.errors import cli
    code = cli(bone_adjust.main)(["--pred", str(tmp_path / "nope.npz"), "--gt", str(files["root"] / "x.npz")])
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.slow
def test_paper_command_on_demo_data(demo_dir, tmp_path, monkeypatch, capsys):
    """`python bone_adjust.py --act 3D_prediction/Anatomy3D/action_dict.pkl --pred ... --bone data/lengths_dict.npz`
    as printed in the paper's README, on the demo dataset (ground truth found through -d auto)."""
    (tmp_path / "data").mkdir()
    for f in ("data_3d_demo.npz", "data_2d_demo_gt.npz"):
        (tmp_path / "data" / f).symlink_to(demo_dir / f)
    monkeypatch.chdir(tmp_path)
    raw = np.load(demo_dir / "data_3d_demo.npz", allow_pickle=True)["positions_3d"].item()
    rng = np.random.default_rng(3)
    preds, lengths = {}, {}
    for s in ("S9", "S11"):
        keys = [(s, a, c) for a in raw[s] for c in range(4)]
        gt = adjust.load_ground_truth("data/data_3d_demo.npz", keys)
        for (_, a, c), g in zip(keys, gt):
            preds.setdefault(s, {}).setdefault(a, []).append(g + rng.normal(scale=0.02, size=g.shape))
            lengths.setdefault(s, {}).setdefault(a, []).append(bone_lengths(g).mean(axis=0))
    adjust.write_predictions("3D_prediction/Anatomy3D", preds)
    save_npz("data/lengths_dict.npz", lengths=lengths)
    bone_adjust.main(["--act", "3D_prediction/Anatomy3D/action_dict.pkl", "--pred",
                      "3D_prediction/Anatomy3D/prediction.pkl", "--bone", "data/lengths_dict.npz"])
    out = capsys.readouterr().out
    assert "ground truth data/data_3d_demo.npz" in out
    rows = {tuple(r.split(",")[:2]): r.split(",")[2:] for r in open("result.csv").read().splitlines()[1:]}
    before, after = float(rows[("Average", "unadjusted")][4]), float(rows[("Average", "adjusted (GT lengths)")][4])
    assert after < 0.1 < before
