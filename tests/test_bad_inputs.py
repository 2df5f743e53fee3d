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
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
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
from common.train.arguments import parse_args as parse_train_args, training_recipe
from common.train.training import make_optimizer
from common.utils.fileio import atomic_write, load_npz, save_npz
from common.models.length_model import build_length_model
from common.models.mix_model import MixModel
from common.models.model import TemporalModel
from common.inference.live import FrameSource
from common.vision.video import VideoReader, VideoWriter
from common.core.skeleton import BONE_NAMES

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

    # a lifter and a mix model trained (one epoch, so to speak) with --cameras virtual --extra_motion: resumable
    for task, model in (("pose", lifter), ("mix", MixModel(length, lifter))):
        recipe = training_recipe(parse_train_args(["-t", task, "--cameras", "virtual", "--extra_motion",
                                                   "--data_dir", str(data), "-c", str(root / "out_c")]))
        save_checkpoint(ck / f"virtual_{task}.bin", {
            "model_pos": model.state_dict(), "epoch": 1, "optimizer": make_optimizer(model.parameters(), 1e-3)
            .state_dict(), "architecture": [3], "channels": 8, "causal": False, "dense": False, "recipe": recipe})

    # round 2 (issue 21): outputs that are inputs (also through links and relative paths), deep JSON, bad metadata
    _write_video(root / "clip.avi", 12)
    os.symlink(root / "clip.avi", root / "clip_link.avi")
    os.link(root / "clip.avi", root / "clip_hardlink.avi")
    (root / "lengths.json").write_text(json.dumps({"units": "metres", "lengths": {n: 0.25 for n in BONE_NAMES}}))
    (root / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (root / "out_k").mkdir()
    shutil.copy(root / "kp_sized.npz", root / "out_k" / "clip_keypoints_2d.npz")
    os.symlink(root / "poses.npz", root / "poses_link.csv")
    (root / "out_lx").mkdir()
    shutil.copy(root / "lengths.npz", root / "out_lx" / "lengths_dict.npz")
    (root / "ckdir").mkdir()
    shutil.copy(ck / "length.bin", root / "ckdir" / "final.bin")
    (root / "gbl").mkdir()
    os.symlink(data / "data_3d_demo.npz", root / "gbl" / "bone_lengths_anny_neutral.npz")
    for name, meta, extra in (("fps_text", {"fps": "fast"}, {}), ("fps_list", {"fps": [25]}, {}),
                              ("fps_zero", {"fps": 0}, {}), ("frames_short", {}, {"frame_indices": np.arange(4)})):
        save_npz(root / f"{name}.npz", poses=truth[0][:10], metadata=meta, **extra)
    return root


def _write_video(path: Path, frames: int) -> None:
    """A small MJPG AVI of noise frames (its index is at the end: a truncated copy still decodes its head)."""
    import cv2

    rng = np.random.default_rng(1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()


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
    # 6. (issue 21) an output that is, or would overwrite, an input: refused before any work, every spelling
    ("inference", "--live {ws}/clip.avi --live_output {ws}/clip.avi", "--live_output {ws}/clip.avi would overwrite "
                                                                      "the input --live"),
    ("inference", "--live {ws}/clip.avi --live_video {ws}/clip.avi", "--live_video {ws}/clip.avi would overwrite"),
    ("inference", "--live {ws}/clip.avi --lengths_file {ws}/lengths.json --live_output {ws}/lengths.json",
     "would overwrite the input --lengths_file"),
    ("inference", "--live {ws}/clip.avi --length_prior {ws}/lengths.json --live_video {ws}/lengths.json",
     "would overwrite the input --length_prior"),
    ("inference", "--video {ws}/clip.avi --keypoints {ws}/out_k/clip_keypoints_2d.npz --poses {ws}/poses.npz "
                  "--output {ws}/out_k", "clip_keypoints_2d.npz would overwrite the input --keypoints"),
    ("inference", "--live {ws}/clip.avi --live_output {ws}/clip_link.avi", "(the same file)"),
    ("inference", "--live {ws}/clip.avi --live_output {ws}/clip_hardlink.avi", "(the same file)"),
    ("inference", "--live clip.avi --live_video ./out_k/../clip.avi", "would overwrite the input --live clip.avi"),
    ("inference", "--live {ws}/clip.avi --live_output {ws}/o.jsonl --live_video {ws}/o.jsonl", "name the same file"),
    ("export_poses", "--poses {ws}/poses.npz --output {ws}/poses_link --format csv",
     "poses_link.csv would overwrite the input --poses"),
    ("export_poses", "--poses {ws}/poses.npz --lengths {ws}/lengths.json --output {ws}/lengths --format csv,json",
     "unknown format"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --bone {ws}/lengths.npz --result_csv {ws}/pred/prediction.pkl",
     "would overwrite the input --pred"),
    ("bone_adjust", "--pred {ws}/pred/prediction.pkl --bone {ws}/lengths.npz --result_csv {ws}/lengths.npz",
     "would overwrite the input --bone"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/length.bin --pred {ws}/out_lx/lengths_dict.npz "
                               "--out_dir {ws}/out_lx", "would overwrite the input --pred"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/length.bin --out_dir {ws}/out_l --causal "
                               "--plot {ws}/data/data_3d_demo.npz", "would overwrite the input --data_dir"),
    ("train", "-t mix -e 1 --length_model {ws}/ckdir/final.bin --direction_model {ws}/checkpoint/lifter.bin "
              "-c {ws}/ckdir", "ckdir/final.bin would overwrite the input --length_model"),
    ("train", "-t length -e 1 -bi -bla {ws}/ckdir/final.bin -c {ws}/ckdir", "would overwrite the input -bla"),
    ("generate_bone_length", "--align --data_dir {ws}/data -d demo --out_dir {ws}/gbl --amount 10",
     "would overwrite the input --data_dir"),
    # 7. (issue 21) the last tracebacks
    ("inference", "--poses {ws}/poses.npz --keypoints {ws}/kp.npy --lengths_file {ws}/deep.json --output {ws}/out_i",
     "nested too deeply"),
    ("inference", "--live {ws}/clip.avi --lengths_file {ws}/deep.json --live_output {ws}/out_i/l.jsonl",
     "nested too deeply"),
    ("export_poses", "--poses {ws}/fps_text.npz --output {ws}/out_e/p", "stored fps 'fast' is not a positive"),
    ("export_poses", "--poses {ws}/fps_list.npz --output {ws}/out_e/p", "stored fps [25] is not a positive"),
    ("export_poses", "--poses {ws}/frames_short.npz --output {ws}/out_e/p", "'frame_indices' must hold 10 integers"),
    # 8. (issue 21) accepted silently before
    ("train", "-t pose -e 2 -r {ws}/checkpoint/virtual_pose.bin -arc 3 -ch 8 -c {ws}/out_c",
     "virtual_pose.bin was trained with another recipe (--cameras virtual -> dataset; --extra_motion on -> off)"),
    ("train", "-t mix -e 2 -r {ws}/checkpoint/virtual_mix.bin -c {ws}/out_c",
     "virtual_mix.bin was trained with another recipe (--cameras virtual -> dataset; --extra_motion on -> off)"),
    ("export_poses", "--poses {ws}/fps_zero.npz --output {ws}/out_e/p", "stored fps 0 is not a positive"),
    ("generate_bone_length", "--local_scale -1", "--local_scale: must be >= 0"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/length.bin --causal --out_dir {ws}/out_l",
     "is a Bi-GRU (it reads whole sequences): --causal needs a causal GRU"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/length.bin -bi --causal --out_dir {ws}/out_l",
     "exclude each other"),
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
    assert expected.format(ws=ws) in lines[0], lines[0]
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


def _run(main, args: list[str], capsys) -> tuple[int, list[str], str]:
    code = cli(main)(args)
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.err


@pytest.mark.parametrize("extra,warning", [
    (["--lengths_file", "{ws}/lengths.json"],
     "warning: --lengths_file {ws}/lengths.json is ignored: it is read only with --lengths file (got --lengths self)"),
    (["--live_video", "{ws}/out_w/v.mp4", "--unpaced"], "warning: --live_video, --unpaced are ignored without --live"),
])
def test_ignored_flag_is_one_warning_and_the_run_goes_on(ws, demo_dir, extra, warning, capsys, tmp_path):
    """(issue 21) a flag the chosen mode does not read says so in one line; the run succeeds, inputs unchanged."""
    before = _hash_tree(ws, demo_dir)
    code, lines, err = _run(inference.main, ["--poses", str(ws / "poses.npz"), "--keypoints", str(ws / "kp_sized.npz"),
                                             "--output", str(tmp_path / "out"), "--no_progress", "--lengths", "self"]
                            + [a.format(ws=ws) for a in extra], capsys)
    assert code == 0 and lines == [warning.format(ws=ws)], err
    assert (tmp_path / "out" / "kp_sized_blapose.mp4").is_file()
    assert _hash_tree(ws, demo_dir) == before


def test_truncated_video_is_one_warning(ws, tmp_path, capsys):
    """(issue 21) a video whose tail is cut off: the readable head is used, with one warning per reader (not one
    per pass), also when --max_frames asks for more than the damaged file holds."""
    data = (ws / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    for max_frames, expected in ((None, 12), (10, 10)):
        reader = VideoReader(tmp_path / "cut.avi", max_frames=max_frames)
        assert reader.info.frame_count == expected
        decoded = [sum(1 for _ in reader) for _ in range(2)]  # the pipeline decodes twice (detect, render)
        assert decoded[0] == decoded[1] and 0 < decoded[0] < expected - 1
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert lines == [f"warning: {tmp_path / 'cut.avi'}: only {decoded[0]} of the {expected} frames "
                         f"{'the file states' if max_frames is None else 'asked for'} could be decoded (truncated "
                         "or damaged file); the rest is skipped"]
    assert sum(1 for _ in VideoReader(ws / "clip.avi")) == 12 and capsys.readouterr().err == ""  # whole file: silent
    source = FrameSource(str(tmp_path / "cut.avi"))  # --live plays a file at its own pace: the same warning
    played = sum(1 for _ in source)
    source.close()
    assert played == decoded[0] - source.dropped and capsys.readouterr().err.startswith(
        f"warning: {tmp_path / 'cut.avi'}: only {decoded[0]} of the 12 frames the file states could be decoded")


@pytest.mark.parametrize("script,argv", [
    ("generate_bone_length", "--out_dir {ws}/ro --amount 10"),
    ("length_model_inference", "--ckpt {ws}/checkpoint/length.bin --out_dir {ws}/ro"),
    ("export_poses", "--poses {ws}/poses.npz --output {ws}/ro/p"),
    ("inference", "--live {ws}/clip.avi --live_output {ws}/ro/l.jsonl"),
])
def test_read_only_output_folder_of_every_script_is_one_line(ws, script, argv, capsys, monkeypatch):
    """A folder the process may not write (simulated: root ignores permissions) is one line for these scripts
    too (issue 21: generate_bone_length.py --out_dir)."""
    import errno

    from common.utils import validation

    def refuse(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(validation.tempfile, "mkstemp", refuse)
    main = _generate_bone_length_main() if script == "generate_bone_length" else MAINS[script]
    extra = ["--data_dir", str(ws / "data")] if script == "length_model_inference" else []
    code, lines, err = _run(main, argv.format(ws=ws).split() + extra, capsys)
    assert code == 2 and len(lines) == 1 and "(Permission denied)" in lines[0] and "Traceback" not in err, err


def _spawn(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "inference.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(condition, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"ended before the condition (code {process.returncode}): "
                                 f"{process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_rendering_leaves_the_previous_video_or_none(tmp_path):
    """(issue 21) SIGKILL while the MP4 is rendered: the final name holds the previous run's video, byte for
    byte, or (first run) nothing; the partial video is only under a temp name, removed by the next write."""
    import cv2

    frames = 120
    writer = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for k in range(frames):
        writer.write(np.full((240, 320, 3), k * 2, np.uint8))
    writer.release()
    rng = np.random.default_rng(0)
    pose = np.array([[0, 0, 0], [-.13, 0, 0], [-.14, .45, 0], [-.15, .88, .02], [.13, 0, 0], [.14, .45, 0],
                     [.15, .88, .02], [0, -.23, 0], [0, -.48, 0], [0, -.58, -.05], [0, -.69, 0], [.16, -.45, 0],
                     [.2, -.2, 0], [.22, .05, 0], [-.16, -.45, 0], [-.2, -.2, 0], [-.22, .05, 0]], np.float32)
    np.save(tmp_path / "poses.npy", pose + rng.normal(0, 0.01, (frames, 17, 3)).astype(np.float32))
    np.save(tmp_path / "kp.npy", 160 + 100 * pose[None, :, :2] + rng.normal(0, 1, (frames, 17, 2)).astype(np.float32))
    args = ["--video", "v.avi", "--keypoints", "kp.npy", "--poses", "poses.npy", "--lengths", "self", "--output",
            "out", "--no_progress"]
    final = tmp_path / "out" / "v_blapose.mp4"
    for previous in (None, b"the previous run's video"):
        if previous is not None:
            final.write_bytes(previous)
        process = _spawn(args, tmp_path)
        _wait_for(lambda: any(p.stat().st_size > 0 for p in (tmp_path / "out").glob(".v_blapose.mp4.*.tmp.mp4")),
                  process)
        process.kill()
        process.wait()
        assert (final.read_bytes() == previous) if previous is not None else not final.exists()
        assert list((tmp_path / "out").glob(".v_blapose.mp4.*"))  # the partial video, under its temp name only
    process = _spawn(args, tmp_path)  # a complete run replaces the previous video and removes the dead temps
    assert process.wait(timeout=600) == 0, process.stderr.read().decode()[-2000:]
    assert sum(1 for _ in VideoReader(final)) == frames and not list((tmp_path / "out").glob(".*"))


def _complete_lines(path: Path) -> list[dict]:
    """Every line of a JSON-lines file, each a complete JSON object ending in a newline (else the test fails)."""
    text = path.read_text()
    assert text.endswith("\n"), "a torn last line"
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
def test_killed_live_stream_keeps_every_written_frame(real_clip, tmp_path):
    """(issue 21) --live appends each frame's JSON line as it is produced. SIGKILL once N frames are on disk:
    the file holds exactly the lines written by then (N or more, none torn; the stopped process had at most one
    frame in flight), and the live video is only under its temp name (the final name holds no unreadable file).
    SIGTERM: the run ends as Ctrl-C does, between two frames (common.utils.errors.stop_at_safe_points): the
    video is finished and renamed, holding exactly the frames of the JSON lines."""
    n = 5
    out, video = tmp_path / "live.jsonl", tmp_path / "live.mp4"
    args = ["--live", str(real_clip), "--unpaced", "--live_output", str(out), "--live_video", str(video)]
    process = _spawn(args, tmp_path)
    _wait_for(lambda: out.is_file() and out.read_text().count("\n") >= n + 1, process)  # header + n frames
    os.kill(process.pid, signal.SIGSTOP)  # freeze it to count what it has written, then kill it
    written = out.read_text().count("\n")
    process.kill()
    process.wait()
    records = _complete_lines(out)
    assert len(records) == written >= n + 1 and "header" in records[0]
    assert [r["frame"] for r in records[1:]] == list(range(written - 1))
    assert not video.exists() and list(tmp_path.glob(".live.mp4.*.tmp.mp4"))

    out.unlink()
    process = _spawn(args, tmp_path)
    _wait_for(lambda: out.is_file() and out.read_text().count("\n") >= n + 1, process)
    process.terminate()
    assert process.wait(timeout=120) == 130
    assert process.stderr.read().decode().strip().splitlines()[-1] == "error: interrupted"
    records = _complete_lines(out)
    frames = len(records) - 1
    assert frames >= n and sum(1 for _ in VideoReader(video)) == frames


def test_a_discarded_video_ends_even_when_an_interrupt_left_its_queue_locked(tmp_path, monkeypatch):
    """An interrupt raised inside ``queue.Queue`` can leave the queue's lock held (seen: a run that never ended
    after SIGTERM, waiting to hand its encoder the last item). Discarding the video must not touch that queue:
    it returns within the wait and the temp file is gone."""
    import threading

    import common.vision.video as video_module

    monkeypatch.setattr(video_module, "DISCARD_WAIT_S", 0.5)
    writer = VideoWriter(tmp_path / "v.mp4", 64, 48, 10)
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer._queue.mutex.acquire()  # the lock an interrupted put or get left held
    try:
        done = threading.Thread(target=writer.discard, daemon=True)
        done.start()
        done.join(10)
        assert not done.is_alive(), "discard waited on the locked queue"
        assert not list(tmp_path.iterdir())
    finally:
        writer._queue.mutex.release()


def test_video_and_json_lines_writers_never_leave_a_partial_file_under_the_final_name(tmp_path):
    """Non-slow counterparts of the kill tests: a video that fails midway keeps the previous file and leaves no
    temp file; a finished one replaces it; JSON lines are on disk as each is written, before close."""
    from common.output.pose_tables import JsonLinesWriter

    final = tmp_path / "v.mp4"
    final.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with VideoWriter(final, 64, 48, 10) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            assert final.read_bytes() == b"previous" and len(list(tmp_path.glob(".v.mp4.*.tmp.mp4"))) == 1
            raise RuntimeError("the run fails")
    assert final.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    with VideoWriter(final, 64, 48, 10) as writer:
        for level in (0, 100, 200):
            writer.write(np.full((48, 64, 3), level, np.uint8))
    assert sum(1 for _ in VideoReader(final)) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]

    writer = JsonLinesWriter(tmp_path / "l.jsonl")
    for frame in range(3):
        writer.write({"frame": frame})
        assert [json.loads(line)["frame"] for line in (tmp_path / "l.jsonl").read_text().splitlines()] == \
            list(range(frame + 1))
    writer.close()
