"""A catalogue of bad inputs through every script's ``main()`` (issue 13).

Every case must end with exit code 2, exactly one ``error: ...`` line on stderr (no traceback), and leave every
existing file unchanged (the workspace and the shared demo data are hashed before and after). Malicious
checkpoints hold an object whose unpickling would create a file; the file must not exist afterwards.
A few cases check what must *not* be refused (the authors' checkpoint layout, a poor but honest lifter) and the
non-error behaviours (stale temp files, the setup manifest's reasons).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import bone_adjust
import export_poses
import inference
import length_model_inference
import setup as setup_script
import train
from common.adjustment import adjust
from common.utils.checkpoint import load_checkpoint, save_checkpoint
from common.datasets.demo.manifest import record_video, stale_reason, video_stale_reason
from common.datasets.demo.config import SMALL_CONFIG
from common.utils.errors import cli
from common.utils.fileio import atomic_write, load_npz, save_npz
from common.models.length_model import build_length_model
from common.models.mix_model import MixModel
from common.models.model import TemporalModel

ROOT = Path(__file__).resolve().parents[1]
MARKER = "pwned_by_checkpoint"


class _CreatesFile:
    """Unpickling this calls ``open(<marker>, 'w')``: a checkpoint that carries code."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def _generate_bone_length_main():
    spec = importlib.util.spec_from_file_location("generate_bone_length",
                                                  ROOT / "data" / "bone_length" / "generate_bone_length.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def ws(demo_dir, tmp_path_factory):
    """A workspace: demo data, tiny checkpoints of each kind, bad files, predictions and lengths."""
    root = tmp_path_factory.mktemp("bad_inputs")
    data = root / "data"
    shutil.copytree(demo_dir, data)
    ck = root / "checkpoint"
    ck.mkdir()
    torch.manual_seed(0)
    length = build_length_model(True, num_layers=1, hidden_size=8)
    lifter = TemporalModel(17, 2, 17, [3], channels=8)
    save_checkpoint(ck / "length.bin", {"model_pos": length.state_dict(), "epoch": 1})
    save_checkpoint(ck / "lifter.bin", {"model_pos": lifter.state_dict(), "epoch": 1, "architecture": [3],
                                        "channels": 8, "causal": False, "dense": False})
    save_checkpoint(ck / "mix.bin", {"model_pos": MixModel(length, lifter).state_dict(), "epoch": 1})
    torch.save({"model_pos": {}, "epoch": 1, "payload": _CreatesFile(str(root / MARKER))}, ck / "evil.bin")
    torch.save({"model_pos": {}, "payload": _CreatesFile(str(root / MARKER))}, ck / "evil_legacy.bin",
               _use_new_zipfile_serialization=False)
    (ck / "text.bin").write_text("this is a text file\n")
    (ck / "empty.bin").write_bytes(b"")
    (root / "a_file").write_text("a regular file\n")
    np.save(root / "kp.npy", np.full((10, 17, 2), 300.0, np.float32))

    # predictions = ground truth + noise (the pickle layout), one length vector per sequence
    gt_path = data / "data_3d_demo.npz"
    actions = load_npz(gt_path)["positions_3d"]
    keys = [(s, a, c) for s in ("S9", "S11") for a in actions[s] for c in range(4)]
    truth = adjust.load_ground_truth(gt_path, keys)
    rng = np.random.default_rng(0)
    table: dict = {}
    for (s, a, c), pose in zip(keys, truth):
        table.setdefault(s, {}).setdefault(a, []).append(pose + rng.normal(0, 0.02, pose.shape).astype(np.float32))
    adjust.write_predictions(root / "pred", table)
    adjust.write_predictions(root / "pred_mm", {s: {a: [v * 1000 for v in views] for a, views in acts.items()}
                                                for s, acts in table.items()})
    act = pickle.load(open(root / "pred" / "action_dict.pkl", "rb"))
    (root / "reordered").mkdir()
    with open(root / "reordered" / "action_dict.pkl", "wb") as fh:
        pickle.dump(dict(reversed(list(act.items()))), fh)
    mean_pose = np.concatenate(truth).mean(axis=0)
    np.savez(root / "poses.npz", poses=truth[0][:10])
    np.savez(root / "poses_mm.npz", poses=truth[0][:10] * 1000)
    save_npz(root / "kp_sized.npz", positions_2d={"clip": {"custom": [np.full((10, 17, 2), 300.0, np.float32)]}},
             metadata={"layout_name": "h36m", "num_joints": 17, "video_metadata": {"clip": {"w": 640, "h": 480}}})
    gt_mm = {s: {a: v * 1000 for a, v in acts.items()} for s, acts in actions.items()}
    (root / "gt_mm").mkdir()
    save_npz(root / "gt_mm" / "data_3d_demo.npz", positions_3d=gt_mm)
    adjust.write_predictions(root / "pred_constant", {s: {a: [np.broadcast_to(mean_pose, v.shape).copy()
                                                              for v in views] for a, views in acts.items()}
                                                      for s, acts in table.items()})

    def lengths(value):
        return {s: {a: [np.full(16, value, np.float32)] * 4 for a in acts} for s, acts in table.items()}

    save_npz(root / "lengths.npz", lengths=lengths(0.25))
    save_npz(root / "lengths_mm.npz", lengths=lengths(250.0))
    negative = lengths(0.25)
    negative["S9"][next(iter(negative["S9"]))][0] = -np.full(16, 0.25, np.float32)
    save_npz(root / "lengths_negative.npz", lengths=negative)
    save_npz(root / "bank_negative.npz", data=-np.full((10, 16), 0.25, np.float32))
    save_npz(root / "bank.npz", data=np.full((10, 16), 0.25, np.float32))
    return root


def _hash_tree(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# (script, argv with {ws} for the workspace, what the one line must contain)
CASES = [
    # 1. checkpoints that carry code: refused by every loading script, nothing runs
    ("train", "-t pose -r {ws}/checkpoint/evil.bin -e 1 -c {ws}/out_c", "refused to load 'io.open'"),
    ("train", "-t pose -r {ws}/checkpoint/evil_legacy.bin -e 1 -c {ws}/out_c", "refused to load"),
    ("train", "-t mix --evaluate --mix_model {ws}/checkpoint/evil.bin", "refused to load"),
    ("train", "-t length -bi -r {ws}/checkpoint/evil.bin -bla {ws}/bank.npz -e 1 -c {ws}/out_c", "refused to load"),
    ("train", "-t mix -e 1 --length_model {ws}/checkpoint/evil.bin --direction_model {ws}/checkpoint/lifter.bin "
              "-c {ws}/out_c", "refused to load"),
    ("train", "-t mix -e 1 --length_model {ws}/checkpoint/length.bin --direction_model {ws}/checkpoint/evil.bin "
              "-c {ws}/out_c", "refused to load"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/evil.bin --out_dir {ws}/out_l", "refused to load"),
    ("inference", "--poses {ws}/poses.npz --keypoints {ws}/kp.npy --length_ckpt {ws}/checkpoint/evil.bin "
                  "--output {ws}/out_i", "refused to load"),
    ("inference", "--finetuned_ckpt {ws}/checkpoint/evil.bin --keypoints {ws}/kp.npy --output {ws}/out_i",
     "refused to load"),
    ("inference", "--lifter_ckpt {ws}/checkpoint/evil.bin --keypoints {ws}/kp.npy --output {ws}/out_i",
     "refused to load"),
    # 2. output paths and numeric ranges, before any work
    ("train", "-lr -1", "-lr/--learning-rate: must be > 0"),
    ("train", "-drop 2", "-drop/--dropout: must be >= 0 and < 1"),
    ("train", "-ch 0", "-ch/--channels: must be >= 1"),
    ("train", "-e -1", "-e/--epochs: must be >= 0"),
    ("train", "-b 0", "-b/--batch-size: must be >= 1"),
    ("train", "-lr nan", "expected a finite number"),
    ("train", "-t pose -e 1 -c {ws}/a_file/ckpt", "a_file is a file, not a folder"),
    ("train", "-t pose -e 1 -c /proc/blapose_test", "cannot write in /proc"),
    ("train", "-t pose -e 1 -c {ws}/out_c --export_predictions {ws}/a_file", "exists and is not a folder"),
    ("train", "-t mix --evaluate --mix_model {ws}/checkpoint/mix.bin -c {ws}/a_file", "exists and is not a folder"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/length.bin --out_dir {ws}/a_file",
     "exists and is not a folder"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/length.bin --out_dir /proc/blapose_test", "cannot write"),
    ("length_model_inference", "-layer 0", "-layer/--num_layers: must be >= 1"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --bone {ws}/lengths.npz --result_csv {ws}/a_file/r.csv",
     "a_file is a file, not a folder"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --bone {ws}/lengths.npz --result_csv /proc/x/r.csv",
     "cannot write"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --bone {ws}/lengths.npz --result_csv {ws}/data",
     "is a folder"),
    ("inference", "--fps 0", "--fps: must be > 0"),
    ("inference", "--panel_height 0", "--panel_height: must be >= 16"),
    ("inference", "--max_frames 0", "--max_frames: must be >= 1"),
    ("inference", "--keypoints {ws}/kp.npy --output {ws}/a_file", "exists and is not a folder"),
    ("inference", "--keypoints {ws}/kp.npy --output /proc/blapose_test", "cannot write"),
    ("setup", "--frames 100 --no_video", "--frames: must be >= 600"),
    ("setup", "--data_dir {ws}/a_file/data --no_video", "a_file is a file, not a folder"),
    ("setup", "--data_dir /proc/blapose_test --no_video", "cannot write"),
    ("generate_bone_length", "--amount 0", "--amount: must be >= 1"),
    ("export_poses", "--poses {ws}/poses.npz --fps 0", "--fps: must be > 0"),
    ("export_poses", "--poses {ws}/poses.npz --output {ws}/a_file/out", "a_file is a file, not a folder"),
    ("export_poses", "--poses {ws}/poses.npz --format fbx", "unknown format"),
    ("export_poses", "--poses {ws}/poses_mm.npz --output {ws}/out_e/p", "looks like millimetres"),
    ("generate_bone_length", "--out_dir {ws}/a_file", "exists and is not a folder"),
    # 3. inputs that make numbers wrong: units, signs, pairing, flags a checkpoint contradicts
    ("bone_adjust", "--pred {ws}/pred_mm/prediction.pkl --bone {ws}/lengths.npz --result_csv {ws}/out_b/r.csv",
     "looks like millimetres"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --bone {ws}/lengths_mm.npz --result_csv {ws}/out_b/r.csv",
     "looks like millimetres"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --bone {ws}/lengths_negative.npz "
                    "--result_csv {ws}/out_b/r.csv", "bone lengths must be positive"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --act {ws}/reordered/action_dict.pkl --bone {ws}/lengths.npz "
                    "--result_csv {ws}/out_b/r.csv", "paired in different orders"),
    ("train", "-t length -e 1 -bi -bla {ws}/bank_negative.npz -c {ws}/out_c", "bone lengths must be positive"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --bone {ws}/lengths.npz --gt {ws}/gt_mm/data_3d_demo.npz "
                    "--result_csv {ws}/out_b/r.csv", "looks like millimetres"),
    ("inference", "--poses {ws}/poses_mm.npz --keypoints {ws}/kp_sized.npz --length_ckpt {ws}/checkpoint/length.bin "
                  "-bi --output {ws}/out_i --no_progress", "looks like millimetres"),
    ("train", "-t mix --evaluate -layer 2 --mix_model {ws}/checkpoint/mix.bin", "1 GRU layer(s), not -layer 2"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/length.bin -layer 2 --out_dir {ws}/out_l",
     "1 GRU layer(s), not -layer 2"),
    # 4. a checkpoint of the wrong kind
    ("train", "-t mix --evaluate --mix_model {ws}/checkpoint/lifter.bin",
     "is a VideoPose3D lifter checkpoint, not a mix"),
    ("train", "-t pose --evaluate -r {ws}/checkpoint/length.bin", "is a bone-length model checkpoint, not a VideoPose3D"),
    ("train", "-t mix -e 1 --length_model {ws}/checkpoint/lifter.bin --direction_model {ws}/checkpoint/lifter.bin "
              "-c {ws}/out_c", "is a VideoPose3D lifter checkpoint, not a bone-length model"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/lifter.bin --out_dir {ws}/out_l",
     "is a VideoPose3D lifter checkpoint, not a bone-length model"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/mix.bin --out_dir {ws}/out_l",
     "is a mix (fine-tuned) model checkpoint, not a bone-length model"),
    ("inference", "--poses {ws}/poses.npz --keypoints {ws}/kp.npy --length_ckpt {ws}/checkpoint/lifter.bin "
                  "--output {ws}/out_i", "is a VideoPose3D lifter checkpoint, not a bone-length model"),
    # 5. text and empty files named .bin
    ("train", "-t pose -r {ws}/checkpoint/text.bin -e 1 -c {ws}/out_c", "not a readable checkpoint"),
    ("train", "-t pose -r {ws}/checkpoint/empty.bin -e 1 -c {ws}/out_c", "empty file"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/text.bin --out_dir {ws}/out_l", "not a readable checkpoint"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/empty.bin --out_dir {ws}/out_l", "empty file"),
    ("inference", "--poses {ws}/poses.npz --keypoints {ws}/kp.npy --length_ckpt {ws}/checkpoint/empty.bin "
                  "--output {ws}/out_i", "empty file"),
]

MAINS = {"train": train.main, "length_model_inference": length_model_inference.main, "bone_adjust": bone_adjust.main,
         "inference": inference.main, "setup": setup_script.main, "export_poses": export_poses.main}


@pytest.mark.parametrize("script,argv,expected", CASES, ids=[f"{c[0]}:{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(ws, demo_dir, script, argv, expected, capsys,
                                                          monkeypatch):
    monkeypatch.chdir(ws)
    main = _generate_bone_length_main() if script == "generate_bone_length" else MAINS[script]
    args = argv.format(ws=ws).split() + (["--data_dir", str(ws / "data")]
                                         if script in ("train", "length_model_inference", "bone_adjust")
                                         and "--data_dir" not in argv else [])
    before = _hash_tree(ws, demo_dir)
    code = cli(main)(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (ws / MARKER).exists()
    after = _hash_tree(ws, demo_dir)
    assert {k: v for k, v in after.items() if k in before} == before  # no existing file changed


def test_catalogue_covers_every_script():
    scripts = {c[0] for c in CASES}
    assert scripts == set(MAINS) | {"generate_bone_length"}


def test_authors_checkpoint_layout_loads(tmp_path):
    """model_pos, epoch, lr, optimizer and a numpy RandomState (what VideoPose3D-style trainers pickle)."""
    model = TemporalModel(17, 2, 17, [3], channels=8)
    optimizer = torch.optim.Adam(model.parameters())
    rng = np.random.RandomState(1234)
    rng.rand(5)
    torch.save({"model_pos": model.state_dict(), "epoch": 7, "lr": np.float64(0.00095),
                "optimizer": optimizer.state_dict(), "random_state": rng}, tmp_path / "authors.bin")
    state = load_checkpoint(tmp_path / "authors.bin", kind="lifter")
    assert state["epoch"] == 7 and isinstance(state["random_state"], np.random.RandomState)
    assert state["random_state"].randint(1 << 30) == rng.randint(1 << 30)


def test_honest_bad_lifter_is_not_called_mispaired(ws, capsys, monkeypatch):
    """A lifter that outputs the same mean pose for every frame is far from every ground truth: reported, not
    refused."""
    monkeypatch.chdir(ws)
    code = cli(bone_adjust.main)(["--pred", str(ws / "pred_constant" / "prediction.pkl"), "--bone",
                                  str(ws / "lengths.npz"), "--data_dir", str(ws / "data"), "--result_csv",
                                  str(ws / "out_ok" / "r.csv")])
    assert code == 0, capsys.readouterr().err
    assert "unadjusted" in capsys.readouterr().out


def test_stale_temp_files_are_removed_on_the_next_write(tmp_path):
    dead = tmp_path / ".final.bin.999999999.abcd1234.tmp"  # a pid that cannot be running
    dead.write_bytes(b"half a checkpoint")
    alive = tmp_path / f".other.bin.{os.getpid()}.abcd1234.tmp"  # this process's: in progress
    alive.write_bytes(b"being written")
    atomic_write(tmp_path / "x.bin", lambda fh: fh.write(b"new"))
    assert not dead.exists() and alive.exists() and (tmp_path / "x.bin").read_bytes() == b"new"


def test_setup_manifest_names_what_changed(demo_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    assert stale_reason(data, SMALL_CONFIG) is None
    (data / "demo.mp4").write_bytes(b"\0" * 1000)
    assert video_stale_reason(data, "demo.mp4") == f"{data / 'demo.mp4'} is not in demo_manifest.json"
    record_video(data, "demo.mp4")
    assert video_stale_reason(data, "demo.mp4") is None
    with open(data / "demo.mp4", "r+b") as fh:
        fh.truncate(10)
    assert video_stale_reason(data, "demo.mp4") == f"{data / 'demo.mp4'} changed since it was fetched (hash mismatch)"
    assert stale_reason(data, SMALL_CONFIG) is None  # the video does not make the data stale
    with open(data / "data_2d_demo_gt.npz", "ab") as fh:
        fh.write(b"\0")
    assert stale_reason(data, SMALL_CONFIG) == \
        f"{data / 'data_2d_demo_gt.npz'} changed since it was built (hash mismatch)"


def test_read_only_folder_is_one_line(ws, capsys, monkeypatch):
    """A folder the process cannot write into (a read-only mount; root ignores chmod, so the refusal of the
    file system is simulated): one line before any work."""
    import errno

    from common.utils import validation

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(validation.tempfile, "mkstemp", refuse)
    code = cli(bone_adjust.main)(["--pred", str(ws / "pred" / "prediction.pkl"), "--bone", str(ws / "lengths.npz"),
                                  "--data_dir", str(ws / "data"), "--result_csv", str(ws / "ro" / "r.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "(Read-only file system)" in err
