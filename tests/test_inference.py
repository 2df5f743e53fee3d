"""inference.py end to end on a short real clip (both modes), its one-line errors, video IO and the output frame."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import inference
from common.core.bones import bone_lengths
from common.utils.checkpoint import save_checkpoint
from common.vision.detectors import load_keypoints
from common.utils.errors import UserError
from common.core.camera import camera_to_world_like, place_on_ground
from common.core.metrics import symmetry_error
from common.models.length_model import BoneLengthModel
from common.models.mix_model import MixModel
from common.models.model import TemporalModel
from common.vision.video import VideoReader, VideoWriter
from helpers import CLIP_FRAMES, read_bvh_positions

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Small randomly initialised models saved in the published checkpoint layout."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt")
    length = BoneLengthModel(embed_dim=32, hidden_size=32, bidirectional=True)
    mix = MixModel(length, TemporalModel(17, 2, 17, [3, 3], channels=64))
    causal = BoneLengthModel(embed_dim=32, hidden_size=32, bidirectional=False)
    paths = {"mix": folder / "mix.bin", "length": folder / "length.bin", "causal": folder / "causal.bin"}
    save_checkpoint(paths["mix"], {"model_pos": mix.state_dict(), "epoch": 1})
    save_checkpoint(paths["length"], {"model_pos": length.state_dict(), "epoch": 1})
    save_checkpoint(paths["causal"], {"model_pos": causal.state_dict(), "epoch": 1})
    return paths


def _standing_pose() -> np.ndarray:
    """A plausible H36M pose in the camera frame (metres, y down), pelvis at the origin."""
    return np.array([[0, 0, 0], [-.13, 0, 0], [-.14, .45, 0], [-.15, .88, .02], [.13, 0, 0], [.14, .45, 0],
                     [.15, .88, .02], [0, -.23, 0], [0, -.48, 0], [0, -.58, -.05], [0, -.69, 0], [.16, -.45, 0],
                     [.2, -.2, 0], [.22, .05, 0], [-.16, -.45, 0], [-.2, -.2, 0], [-.22, .05, 0]], np.float32)


def _check_outputs(out: Path, stem: str, frames: int) -> dict:
    for suffix in ("poses_3d.npz", "poses_3d.json", "bone_lengths.json", "bone_lengths.png",
                   "frame_first.png", "frame_middle.png", "frame_last.png"):
        assert (out / f"{stem}_{suffix}").is_file(), suffix
    first = cv2.imread(str(out / f"{stem}_frame_first.png"))
    assert first is not None and first.shape[0] == 480 and first.shape[1] > 2 * 480
    doc = json.loads((out / f"{stem}_poses_3d.json").read_text())
    assert doc["units"] == "metres" and doc["joint_names"][0] == "pelvis" and len(doc["parents"]) == 17
    assert "Z" in doc["frame"] and "ground" in doc["frame"]
    after = np.asarray(doc["poses_after"])
    assert after.shape == (frames, 17, 3)
    return doc


@pytest.mark.slow
def test_real_clip_finetuned_mode(real_clip, checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    inference.main(["--finetuned_ckpt", str(checkpoints["mix"]), "-bi", "--video", str(real_clip),
                    "--output", str(out), "--no_progress", "--device", "cpu", "--export", "bvh,csv,jsonl"])
    printed = capsys.readouterr().out
    assert "end to end" in printed and "detect" in printed
    doc = _check_outputs(out, "clip", CLIP_FRAMES)
    after = np.asarray(doc["poses_after"])
    lengths = bone_lengths(after)
    assert np.abs(lengths - lengths[0]).max() < 1e-4            # constant over time
    assert symmetry_error(lengths).max() < 1e-4                  # left == right
    np.testing.assert_allclose(after[..., 2].min(axis=1), 0, atol=1e-5)  # lowest joint on the ground
    assert np.all(after[:, 8, 2] > after[:, 0, 2])               # upright: thorax above pelvis on average frame
    before = np.asarray(doc["poses_before"])
    assert bone_lengths(before).std(axis=0).max() > 1e-4         # the raw lifter's lengths do vary
    reader = VideoReader(out / "clip_blapose.mp4")
    assert reader.info.fps == pytest.approx(30.0) and sum(1 for _ in reader) == CLIP_FRAMES
    keypoints = np.asarray(doc["keypoints_2d"])
    # BlazePose found the man on the box (upper middle-left of the 1768x994 frame).
    assert 450 < np.median(keypoints[:, 0, 0]) < 850 and 100 < np.median(keypoints[:, 0, 1]) < 450
    # The 2D export is a VideoPose3D custom npz that --keypoints reads back.
    reread = load_keypoints(out / "clip_keypoints_2d.npz", "coco")
    np.testing.assert_allclose(reread.positions, keypoints, atol=1e-2)
    assert (reread.width, reread.height) == (1768, 994)
    # --export: the BVH read back by an independent parser (bvhio) and forward-kinematised reproduces the
    # adjusted joint positions within 1 mm on every frame; CSV and JSON lines hold the same numbers.

    assert np.abs(read_bvh_positions(out / "clip_poses_3d.bvh") - after).max() < 1e-3
    rows = [ln for ln in (out / "clip_poses_3d.csv").read_text().splitlines() if not ln.startswith("#")]
    table = np.loadtxt(rows[1:], delimiter=",")
    assert table.shape == (CLIP_FRAMES, 52)
    np.testing.assert_allclose(table[:, 1:].reshape(-1, 17, 3), after, atol=1e-4)
    lines = (out / "clip_poses_3d.jsonl").read_text().splitlines()
    assert len(lines) == CLIP_FRAMES + 1 and "header" in json.loads(lines[0])
    np.testing.assert_allclose(json.loads(lines[5])["joints"], after[4], atol=1e-4)


@pytest.mark.slow
def test_real_clip_poses_mode_world_frame_and_causal(real_clip, checkpoints, tmp_path):
    rng = np.random.default_rng(1)
    poses = _standing_pose()[None] + rng.normal(0, 0.02, (CLIP_FRAMES + 6, 17, 3)).astype(np.float32)
    world = poses[..., [0, 2, 1]] * np.array([1, 1, -1], np.float32) + np.array([0.5, 3.0, 1.0], np.float32)
    np.savez(tmp_path / "lifter.npz", poses=world)
    out = tmp_path / "out"
    inference.main(["--length_ckpt", str(checkpoints["causal"]), "--video", str(real_clip), "--poses",
                    str(tmp_path / "lifter.npz"), "--poses_frame", "world", "--output", str(out),
                    "--no_progress", "--gif"])
    doc = _check_outputs(out, "clip", CLIP_FRAMES)
    after = np.asarray(doc["poses_after"])
    predicted = np.asarray(json.loads((out / "clip_bone_lengths.json").read_text())["predicted"]["per_frame"])
    assert predicted.shape == (CLIP_FRAMES, 16)
    # causal: per-frame lengths (an untrained model may predict negative values: the bone then flips)
    np.testing.assert_allclose(bone_lengths(after), np.abs(predicted), atol=1e-4)
    # World input keeps its trajectory and orientation; one ground shift for the whole sequence.
    np.testing.assert_allclose(after[:, 0, :2], world[:CLIP_FRAMES, 0, :2], atol=1e-5)
    assert after[..., 2].min() == pytest.approx(0, abs=1e-5)
    gif = Image.open(out / "clip_blapose.gif")
    assert gif.n_frames == CLIP_FRAMES


@pytest.mark.slow
def test_keypoints_file_without_detector(real_clip, checkpoints, tmp_path):
    track = np.tile(np.array([[600, 300]], np.float32), (17, 1))[None] + \
        np.random.default_rng(2).normal(0, 30, (10, 17, 2)).astype(np.float32)
    track[4] = np.nan  # one frame without the person: interpolated
    np.save(tmp_path / "kp.npy", track)
    out = tmp_path / "out"
    inference.main(["--finetuned_ckpt", str(checkpoints["mix"]), "-bi", "--video", str(real_clip), "--keypoints",
                    str(tmp_path / "kp.npy"), "--output", str(out), "--no_progress"])
    data = np.load(out / "clip_poses_3d.npz", allow_pickle=False)
    assert data["poses_after"].shape == (10, 17, 3) and data["interpolated_frames"].tolist() == [4]
    np.testing.assert_allclose(data["keypoints_2d"][4], (track[3] + track[5]) / 2, atol=1e-3)
    assert sum(1 for _ in VideoReader(out / "clip_blapose.mp4")) == CLIP_FRAMES  # whole video rendered


@pytest.mark.slow
def test_plain_lifter_then_its_poses_through_poses_mode(real_clip, checkpoints, tmp_path):
    """A train.py -t pose style checkpoint (architecture stored next to model_pos, causal) lifts; the written
    <stem>_lifter_poses.npz is then a valid --poses input and gives the same adjusted poses."""
    torch.manual_seed(1)
    lifter = TemporalModel(17, 2, 17, [3, 3], causal=True, channels=32)
    save_checkpoint(tmp_path / "pose.bin", {"model_pos": lifter.state_dict(), "architecture": [3, 3],
                                            "channels": 32, "causal": True, "dense": False})
    keypoints = np.tile(np.array([[600, 300]], np.float32), (17, 1))[None] + \
        np.random.default_rng(4).normal(0, 30, (12, 17, 2)).astype(np.float32)
    np.save(tmp_path / "kp.npy", keypoints)
    common = ["--length_ckpt", str(checkpoints["length"]), "-bi", "--video", str(real_clip), "--keypoints",
              str(tmp_path / "kp.npy"), "--no_progress"]
    inference.main(common + ["--lifter_ckpt", str(tmp_path / "pose.bin"), "--output", str(tmp_path / "a")])
    lifted = np.load(tmp_path / "a" / "clip_lifter_poses.npz")["poses"]
    assert lifted.shape == (12, 17, 3) and np.all(lifted[:, 0] == 0)
    inference.main(common + ["--poses", str(tmp_path / "a" / "clip_lifter_poses.npz"), "--output", str(tmp_path / "b")])
    a, b = (np.load(tmp_path / d / "clip_poses_3d.npz")["poses_after"] for d in ("a", "b"))
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(UserError, match="at most one"):
        inference.main(common + ["--lifter_ckpt", "x.bin", "--poses", "y.npz"])


@pytest.mark.slow
def test_unreadable_video_one_line_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(UserError, match="broken.mp4"):
        inference.main(["--video", str(bad), "--poses", "x.npz", "--length_ckpt", "missing.bin"])
    proc = subprocess.run([sys.executable, str(ROOT / "inference.py"), "--video", str(bad)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "broken.mp4" in lines[0]


def test_video_without_person(checkpoints, tmp_path):
    path = tmp_path / "empty.mp4"
    rng = np.random.default_rng(3)
    with VideoWriter(path, 320, 240, 25) as writer:
        for k in range(6):
            frame = np.zeros((240, 320, 3), np.uint8)
            frame[:] = (40 * k, 120, 200 - 20 * k)
            frame[100:140, 50:270] = rng.integers(0, 255, (40, 220, 3))
            writer.write(frame)
    with pytest.raises(UserError, match="no person found in any of the 6 frames"):
        inference.main(["--finetuned_ckpt", str(checkpoints["mix"]), "-bi", "--video", str(path),
                        "--output", str(tmp_path / "out"), "--no_progress"])


@pytest.mark.slow
def test_checkpoint_and_pose_errors(real_clip, checkpoints, tmp_path, capsys):
    with pytest.raises(UserError, match=r"has 1 GRU layer\(s\), not -layer 2"):
        inference.main(["--finetuned_ckpt", str(checkpoints["mix"]), "-layer", "2", "--video", str(real_clip)])
    np.savez(tmp_path / "short.npz", poses=np.zeros((5, 17, 3), np.float32))
    with pytest.raises(UserError, match="drop -bi"):  # checked before the 2D detection
        inference.main(["--length_ckpt", str(checkpoints["causal"]), "-bi", "--video", str(real_clip),
                        "--poses", str(tmp_path / "short.npz")])
    np.save(tmp_path / "kp.npy", np.full((8, 17, 2), 300, np.float32))
    with pytest.raises(UserError, match="holds 5 poses"):
        inference.main(["--length_ckpt", str(checkpoints["length"]), "-bi", "--video", str(real_clip),
                        "--keypoints", str(tmp_path / "kp.npy"), "--poses", str(tmp_path / "short.npz"),
                        "--output", str(tmp_path / "o"), "--no_progress"])
    # keypoints shorter than the video: said before any frame is labelled "no person"
    err = capsys.readouterr().err
    assert "warning: " in err and "holds 8 frame(s) of keypoints but" in err and "has 24" in err


def test_world_like_frame_uprights_a_pitched_camera():
    pose = _standing_pose()
    tilt = np.radians(25)  # camera pitched down by 25 degrees: rotate about the camera x axis
    rot = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    seen = (pose @ rot.T)[None].repeat(3, axis=0).astype(np.float32)
    world = place_on_ground(camera_to_world_like(seen, seen))
    torso = world[:, 8] - world[:, 0]
    np.testing.assert_allclose(torso[:, :2], 0, atol=1e-5)   # vertical torso
    assert np.all(torso[:, 2] > 0.4)
    np.testing.assert_allclose(world[..., 2].min(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(bone_lengths(world), bone_lengths(seen), atol=1e-5)  # a rigid change
    # A proper rotation, no mirroring: the signed volume spanned by three bones keeps its sign.
    def volume(p):
        return np.linalg.det(np.stack([p[4] - p[0], p[8] - p[0], p[9] - p[0]]))

    assert np.sign(volume(world[0])) == np.sign(volume(seen[0])) != 0
    assert world[0, 4, 0] > world[0, 1, 0]  # X stays the camera's right axis


def test_gif_writer_streams_frames(tmp_path):
    with VideoWriter(tmp_path / "a.gif", 40, 30, 10) as writer:
        for k in range(4):
            frame = np.zeros((30, 40, 3), np.uint8)
            frame[:, k * 10:(k + 1) * 10] = (255, 0, 0)
            writer.write(frame)
    gif = Image.open(tmp_path / "a.gif")
    assert gif.n_frames == 4 and gif.info["duration"] == 100
    for k in range(4):
        gif.seek(k)
        rgb = np.asarray(gif.convert("RGB"))
        assert rgb[15, k * 10 + 5, 0] > 240 and rgb[15, (k * 10 + 25) % 40, 0] < 15
    with pytest.raises(UserError, match="unsupported"):
        VideoWriter(tmp_path / "a.avi", 40, 30, 10)


@pytest.mark.parametrize("queue", [0, 2])
def test_video_writer_encodes_behind_the_caller_and_reports_errors(tmp_path, queue):
    """The encoding thread writes every frame in order from private copies (the caller may reuse its array);
    an encoder failure surfaces in the caller."""
    frame = np.zeros((48, 64, 3), np.uint8)
    with VideoWriter(tmp_path / "a.mp4", 64, 48, 10, queue=queue) as writer:
        for k in range(6):
            frame[:] = 40 * k  # the same array, changed after each write
            writer.write(frame)
    levels = [int(np.asarray(f).mean()) for f in VideoReader(tmp_path / "a.mp4")]
    assert len(levels) == 6 and all(abs(level - 40 * k) <= 3 for k, level in enumerate(levels))
    writer = VideoWriter(tmp_path / "b.mp4", 64, 48, 10, queue=queue)

    def fail(_frame):
        raise OSError("disk full")

    writer._encode = fail
    with pytest.raises(OSError, match="disk full"):
        writer.write(frame)
        writer.close()
    writer.close()  # closing again after the error is harmless


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_lifting_equals_one_pass(causal):
    from common.datasets.generators import UnchunkedGenerator, predict_poses
    from common.inference.lifters.videopose3d import lift_sequence as lift

    torch.manual_seed(0)
    lifter = TemporalModel(17, 2, 17, [3, 3, 3], causal=causal, channels=32).eval()
    keypoints = np.random.default_rng(5).uniform(-1, 1, (100, 17, 2)).astype(np.float32)
    chunked = lift(lifter, keypoints, torch.device("cpu"), chunk_frames=17)
    pad = (lifter.receptive_field() - 1) // 2
    whole = predict_poses(lifter, UnchunkedGenerator([keypoints], pad, lifter.total_causal_shift(), True))[0]
    assert chunked.shape == (100, 17, 3)
    np.testing.assert_allclose(chunked, whole - whole[:, :1], atol=1e-5)


@pytest.mark.slow
def test_people_all_on_one_person_gives_the_single_person_poses(real_clip, tmp_path):
    """inference.py --people all on a one-person clip: one identity, the person --people one follows, plus the
    everybody files (npz with a person axis)."""
    one = inference.run_cli(["--video", str(real_clip), "--output", str(tmp_path / "one"), "--no_progress"])
    everybody = inference.run_cli(["--video", str(real_clip), "--output", str(tmp_path / "all"), "--no_progress",
                                   "--people", "all", "--export", "csv,jsonl,bvh"])
    assert len(everybody.people) == 1  # a second, short-lived detection (seen in < 5 frames) is dropped
    # the same person; the follower's streaming state starts from another first-frame detection than the single
    # tracker's (the most confident, not the largest box), so the 2D agrees to a few pixels, not exactly
    (a, b), frames = (one.track, everybody.people[0].track), len(one.track)
    assert (b.start, len(b)) == (a.start, frames)
    assert np.median(np.abs(a.positions - b.positions).max(axis=(1, 2))) < 10
    data = np.load(everybody.files["people_npz"], allow_pickle=True)
    assert data["poses_after"].shape[0] == 1 and data["identities"].tolist() == [everybody.people[0].identity]
    assert {f"person{everybody.people[0].identity}_bvh", "people_csv", "people_jsonl", "video"} <= set(everybody.files)
