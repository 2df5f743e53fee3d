"""Lifters behind one interface, the length sources, and the one checkpoint -> model function."""
import json
import sys

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

import bone_adjust
import inference
from common.adjustment import adjust
from common.core.bones import bone_lengths, recompose
from common.utils.checkpoint import save_checkpoint
from common.utils.errors import UserError
from common.utils.fileio import save_npz
from common.inference.inference_pipeline import InferenceConfig
from common.models.length_model import BoneLengthModel
from common.inference.length_sources import (LENGTH_SOURCES, SIDELESS, centred_log_limbs, choose_lengths, file_lengths,
                                             load_limb_prior, make_length_source, median_lengths, model_lengths,
                                             prior_lengths, read_lengths_file)
from common.inference.lifters import DEFAULT_LIFTER, LIFTERS, Lifter, choose_lifter, make_lifter
from common.inference.lifters.mediapipe import SMOOTH_SIGMA, edge_preserving_smooth, fuse_in_plane
from common.models.mix_model import MixModel
from common.models.model import TemporalModel
from common.models.model_loading import load_model
from common.core.skeleton import FLIP_JOINTS
from common.vision.tracking import Track2D

torch.set_num_threads(1)
LENGTHS = np.array([0.13, 0.45, 0.44, 0.13, 0.45, 0.44, 0.23, 0.25, 0.11, 0.12,
                    0.15, 0.28, 0.25, 0.15, 0.28, 0.25], dtype=np.float32)


def _poses(frames: int, seed: int = 0, lengths: np.ndarray = LENGTHS) -> np.ndarray:
    """(T, 17, 3) root-relative poses with exactly ``lengths`` and random smooth directions."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(16, 3)) + np.cumsum(rng.normal(scale=0.05, size=(frames, 16, 3)), axis=0)
    lengths = lengths if lengths.ndim == 2 else lengths[None]
    return recompose(dirs / np.linalg.norm(dirs, axis=-1, keepdims=True), lengths).astype(np.float32)


def _track(frames: int = 20, world: bool = True, start: int = 0) -> Track2D:
    rng = np.random.default_rng(1)
    positions = (np.array([320, 240], np.float32) + rng.normal(0, 40, (frames, 17, 2))).astype(np.float32)
    return Track2D(positions, np.ones((frames, 17), np.float32), 640, 480, start=start,
                   world=_poses(frames, 2) if world else None)


def _config(tmp_path, **kw) -> dict:
    """A run's settings (flag name -> value), as the registries read them."""
    return vars(InferenceConfig(video="v.mp4", output=str(tmp_path), progress=False, **kw))


# ------------------------------------------------------------------------------------------------ lifters
@pytest.mark.parametrize("causal", [False, True])
def test_videopose3d_lifter_interface(tmp_path, causal, capsys):
    torch.manual_seed(0)
    model = TemporalModel(17, 2, 17, [3, 3], causal=causal, channels=16)
    save_checkpoint(tmp_path / "pose.bin", {"model_pos": model.state_dict(), "architecture": [3, 3],
                                            "channels": 16, "causal": causal, "dense": False,
                                            "lifter": "videopose3d"})
    lifter = make_lifter("videopose3d", _config(tmp_path, lifter_ckpt=str(tmp_path / "pose.bin")))
    assert isinstance(lifter, Lifter)
    assert (lifter.convention, lifter.frame, lifter.receptive_field, lifter.causal) == ("h36m", "camera", 9, causal)
    track = _track()
    poses = lifter.lift(track)
    assert poses.shape == (20, 17, 3) and poses.dtype == np.float32 and np.all(poses[:, 0] == 0)
    # Causality: changing the 2D of frames after t changes frame t only for the symmetric model.
    later = Track2D(track.positions.copy(), track.confidence, 640, 480)
    later.positions[11:] += 50
    changed = np.abs(lifter.lift(later)[10] - poses[10]).max()
    assert (changed < 1e-6) if causal else (changed > 1e-4)


def test_mediapipe_raw_lifter_returns_the_same_pass_world_landmarks(tmp_path):
    lifter = make_lifter("mediapipe_raw", _config(tmp_path))
    assert (lifter.convention, lifter.frame, lifter.receptive_field, lifter.causal) == ("blazepose", "camera", 1,
                                                                                         True)
    track = _track()
    track.world[:] += np.array([0.01, -0.02, 0.03], np.float32)  # BlazePose's origin is not exactly the pelvis
    poses = lifter.lift(track)
    np.testing.assert_allclose(poses, track.world - track.world[:, :1], atol=1e-6)
    later = track.replace(world=track.world.copy())
    later.world[11:] += 0.3
    np.testing.assert_allclose(lifter.lift(later)[:11], poses[:11])            # causal, one frame at a time
    with pytest.raises(UserError, match="world landmarks"):
        lifter.lift(_track(world=False))
    with pytest.raises(UserError, match="same detector pass"):
        make_lifter("mediapipe", _config(tmp_path, keypoints="kp.npy"))


def test_in_plane_fusion_weighs_the_less_jittery_source():
    """World landmarks = truth + jitter; 2D = exact (scaled, shifted) projection of the truth: the fusion leans on
    the 2D and lands closer to the truth; with both equally good it is their mean; depth is untouched."""
    truth = _poses(60, 8)
    rng = np.random.default_rng(0)
    noisy = truth + rng.normal(0, 0.02, truth.shape).astype(np.float32)
    pixels = truth[..., :2] * 900.0 + np.array([500.0, 300.0], np.float32)
    fused, weight = fuse_in_plane(noisy - noisy[:, :1], pixels)
    assert weight > 0.9
    assert np.abs(fused[..., :2] - truth[..., :2]).mean() < 0.3 * np.abs(noisy[..., :2] - truth[..., :2]).mean()
    np.testing.assert_allclose(fused[..., 2], (noisy - noisy[:, :1])[..., 2], atol=1e-6)
    same, weight = fuse_in_plane(truth, truth[..., :2] * 500.0)
    assert weight == pytest.approx(0.5) and np.abs(same - truth).max() < 1e-5


def test_edge_preserving_smoothing_keeps_jumps_out_of_their_neighbours():
    poses = _poses(40, 9)
    mirrored = poses.copy()
    mirrored[20] = poses[20][FLIP_JOINTS] * np.array([1, 1, -1], np.float32)     # a left/right swap frame
    near = [18, 19, 21, 22]
    # how much the one bad frame moves its neighbours' output: bilateral vs a plain Gaussian of the same width
    pull = np.abs(edge_preserving_smooth(mirrored)[near] - edge_preserving_smooth(poses)[near]).max()
    gaussian = [gaussian_filter1d(x.astype(np.float64), SMOOTH_SIGMA, axis=0, mode="nearest") for x in (mirrored, poses)]
    assert pull < 0.2 * np.abs(gaussian[0][near] - gaussian[1][near]).max()
    np.testing.assert_allclose(edge_preserving_smooth(np.repeat(poses[:1], 10, 0)), np.repeat(poses[:1], 10, 0),
                               atol=1e-6)


def test_mediapipe_lifter_is_offline(tmp_path):
    lifter = make_lifter("mediapipe", _config(tmp_path))
    assert (lifter.convention, lifter.receptive_field, lifter.causal) == ("blazepose", 0, False)  # whole sequence
    track = _track(30)
    poses = lifter.lift(track)
    assert poses.shape == (30, 17, 3) and np.abs(poses[:, 0]).max() < 1e-6
    later = track.replace(world=track.world.copy())
    later.world[20:, 13] += 0.2                                                  # a later wrist changes ...
    assert np.abs(lifter.lift(later)[15] - poses[15]).max() > 1e-4              # ... an earlier output


def test_poses_lifter_reads_the_frames_of_the_track(tmp_path):
    poses = _poses(30, 3)
    np.savez(tmp_path / "p.npz", poses=poses)
    lifter = make_lifter("poses", _config(tmp_path, poses=str(tmp_path / "p.npz"), poses_frame="world"))
    assert (lifter.convention, lifter.frame) == ("h36m", "world")
    np.testing.assert_array_equal(lifter.lift(_track(10, start=5)), poses[5:15])
    with pytest.raises(UserError, match="holds 30 poses"):
        lifter.lift(_track(30, start=5))
    with pytest.raises(UserError, match="unknown --lifter 'nope'"):
        make_lifter("nope", _config(tmp_path))


# ------------------------------------------------------------------------------------------------ lengths
def test_self_lengths_median_then_left_right_average():
    lengths = LENGTHS.copy()
    lengths[1], lengths[4] = 0.40, 0.50     # thighs differ: the average is 0.45
    poses = _poses(21, 4, lengths)
    poses[0] *= 3.0                                                             # one outlier frame: ignored
    got = median_lengths(poses)
    assert got[1] == pytest.approx(0.45, abs=1e-5) and got[4] == pytest.approx(0.45, abs=1e-5)
    np.testing.assert_allclose(got[[0, 2, 6, 9]], LENGTHS[[0, 2, 6, 9]], atol=1e-5)


def test_prior_lengths_weigh_own_limbs_by_their_spread(tmp_path):
    """Steady limbs keep their own proportions; a limb whose per-frame length spreads widely moves to the prior."""
    prior = tmp_path / "prior.json"
    mean = np.log([0.40, 0.40, 0.27, 0.26]) - np.log([0.40, 0.40, 0.27, 0.26]).mean()
    prior.write_text(json.dumps({"test": {"limbs": ["thigh", "calf", "upper_arm", "lower_arm"],
                                          "mean_centred_log": mean.tolist(), "sd_centred_log": [0.03] * 4}}))
    steady = _poses(50, 10)                                                     # LENGTHS exactly, every frame
    np.testing.assert_allclose(prior_lengths(steady, "test", prior), median_lengths(steady), rtol=2e-3)
    lengths = np.tile(LENGTHS, (50, 1))
    lengths[:, [12, 15]] *= np.where(np.arange(50) % 2, 0.6, 1.4)[:, None]      # forearms: +-40 % per frame
    jumpy = _poses(50, 10, lengths)
    got = prior_lengths(jumpy, "test", prior)
    index = [SIDELESS[k][0] for k in ("thigh", "calf", "upper_arm", "lower_arm")]
    own = np.log(median_lengths(jumpy)[index])
    # steady limbs keep their own centred log length, the forearm takes the prior's: log(forearm / thigh) =
    # prior[forearm] - own centred thigh
    expected = mean[3] - (own[0] - own.mean())
    assert np.log(got[index[3]] / got[index[0]]) == pytest.approx(expected, abs=2e-3)
    assert np.log(got[index[2]] / got[index[0]]) == pytest.approx(own[2] - own[0], abs=2e-3)
    assert got[12] == got[15] and got[1] == got[4]
    with pytest.raises(UserError, match="no population prior"):
        load_limb_prior("h36m", prior)


def test_length_sources_pool_the_detected_frames_not_the_interpolated(tmp_path):
    """self, prior and file pool the frames where the person was detected: frames fill_gaps interpolated (here 12
    of 30, with bones 40 % short, as a straight-line blend across a turning limb gives) do not move the lengths."""
    scale = np.linspace(0.9, 1.1, 30)
    scale[8:20] = 0.6
    poses = _poses(30, 3, LENGTHS[None] * scale[:, None])
    positions = np.zeros((30, 17, 2), np.float32)
    track = Track2D(positions, np.ones((30, 17), np.float32), 640, 480, gaps=[(8, 19)])
    detected = np.r_[0:8, 20:30]
    np.testing.assert_array_equal(np.flatnonzero(track.observed), detected)
    (tmp_path / "l.json").write_text(json.dumps({"lengths": {"thigh": 0.47}}))
    mediapipe = make_lifter("mediapipe", _config(tmp_path))
    expected = {"self": median_lengths(poses[detected]), "prior": prior_lengths(poses[detected], "blazepose"),
                "file": file_lengths(tmp_path / "l.json", poses[detected])}
    for name, want in expected.items():
        source = make_length_source(name, _config(tmp_path, lengths=name, lengths_file=str(tmp_path / "l.json")),
                                    mediapipe)
        got = source.lengths(poses, track)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
        assert np.abs(got / median_lengths(poses) - 1)[[0, 2, 6]].min() > 0.05, name   # all frames: far shorter
    whole = make_length_source("self", _config(tmp_path, lengths="self"), mediapipe)
    np.testing.assert_allclose(whole.lengths(poses, track.replace(gaps=[])), median_lengths(poses))


def test_limb_prior_convention_offset_and_centred_log_limbs(tmp_path):
    """The prior's mean is the bodies' plus the convention offset; centred log limbs are size-free proportions."""
    prior = tmp_path / "prior.json"
    entry = {"limbs": ["thigh", "calf", "upper_arm", "lower_arm"], "mean_centred_log": [0.2, 0.2, -0.2, -0.2],
             "sd_centred_log": [0.03] * 4}
    prior.write_text(json.dumps({"a": entry, "b": dict(entry, convention_offset_log=[0.0, -0.06, 0.0, 0.06])}))
    np.testing.assert_allclose(load_limb_prior("a", prior)[0], [0.2, 0.2, -0.2, -0.2])        # no offset: as stored
    np.testing.assert_allclose(load_limb_prior("b", prior)[0], [0.2, 0.14, -0.2, -0.14])
    np.testing.assert_allclose(load_limb_prior("b", prior)[1], [0.03] * 4)
    lengths = LENGTHS.copy()                       # thighs 0.45, shins 0.44, upper arms 0.28, forearms 0.25
    lengths[[1, 4]] = [0.40, 0.50]                 # thighs 0.40 / 0.50: the log average is log(sqrt(0.2))
    logs = np.log([np.sqrt(0.40 * 0.50), 0.44, 0.28, 0.25])
    np.testing.assert_allclose(centred_log_limbs(lengths), logs - logs.mean())
    np.testing.assert_allclose(centred_log_limbs(3 * lengths), logs - logs.mean(), rtol=1e-6)   # free of size
    np.testing.assert_allclose(centred_log_limbs(np.stack([lengths, lengths])), [logs - logs.mean()] * 2)


def test_lengths_file_json_npz_and_errors(tmp_path, capsys):
    poses = _poses(10, 5)
    (tmp_path / "l.json").write_text(json.dumps({"units": "metres", "lengths": {"thigh": 0.47, "r_calf": 0.40}}))
    got = file_lengths(tmp_path / "l.json", poses)
    assert got[1] == pytest.approx(0.47) and got[4] == pytest.approx(0.47) and got[2] == pytest.approx(0.40)
    assert got[5] == pytest.approx(LENGTHS[5], abs=1e-5)                       # not named: the lifter's own
    assert "does not name" in capsys.readouterr().out
    np.savez(tmp_path / "l.npz", lengths=LENGTHS * 1.1)
    np.testing.assert_allclose(file_lengths(tmp_path / "l.npz", poses), LENGTHS * 1.1, atol=1e-6)
    (tmp_path / "bad_name.json").write_text(json.dumps({"femur": 0.45}))
    with pytest.raises(UserError, match="unknown bone 'femur'"):
        read_lengths_file(tmp_path / "bad_name.json")
    (tmp_path / "mm.json").write_text(json.dumps({"l_thigh": 450}))
    with pytest.raises(UserError, match="metres between"):
        read_lengths_file(tmp_path / "mm.json")
    (tmp_path / "cm.json").write_text(json.dumps({"units": "cm", "l_thigh": 45}))
    with pytest.raises(UserError, match="units must be metres"):
        read_lengths_file(tmp_path / "cm.json")
    np.savez(tmp_path / "short.npz", lengths=LENGTHS[:8])
    with pytest.raises(UserError, match=r"shape \(16,\)"):
        read_lengths_file(tmp_path / "short.npz")


def test_model_lengths_shapes():
    torch.manual_seed(0)
    track = _track(12, world=False)
    bi = model_lengths(BoneLengthModel(embed_dim=16, hidden_size=16, bidirectional=True).eval(), track)
    causal = model_lengths(BoneLengthModel(embed_dim=16, hidden_size=16, bidirectional=False).eval(), track)
    assert bi.shape == (16,) and causal.shape == (12, 16)
    assert bi[1] == pytest.approx(bi[4])                                       # left/right averaged


# ------------------------------------------------------------------------------------------------ loading
def test_load_model_stored_architecture_wins_and_kinds(tmp_path, capsys):
    torch.manual_seed(0)
    lifter = TemporalModel(17, 2, 17, [3, 3], causal=True, channels=16)
    save_checkpoint(tmp_path / "pose.bin", {"model_pos": lifter.state_dict(), "causal": True, "dense": False})
    loaded = load_model(tmp_path / "pose.bin", architecture="3,3,3", channels=32)
    assert loaded.kind == "lifter" and loaded.lifter == "videopose3d"                  # old file: no name
    assert loaded.architecture == {"architecture": [3, 3], "channels": 16, "causal": True, "dense": False}
    note = capsys.readouterr().out
    assert "note: using the lifter architecture stored" in note and "channels 32 -> 16" in note
    length = BoneLengthModel(embed_dim=16, hidden_size=16, bidirectional=True)
    save_checkpoint(tmp_path / "mix.bin", {"model_pos": MixModel(length, lifter).state_dict(),
                                           "mix_config": {"causal": True}})
    mix = load_model(tmp_path / "mix.bin", ("mix",))
    assert mix.kind == "mix" and mix.model.direction_model.causal
    with pytest.raises(UserError, match=r"is a mix \(fine-tuned\) model checkpoint, not a VideoPose3D lifter"):
        load_model(tmp_path / "mix.bin", ("lifter",))
    with pytest.raises(UserError, match="drop -bi|add -bi"):
        load_model(tmp_path / "mix.bin", bidirectional=False)


# ------------------------------------------------------------------------------------------------ toy lifter
TOY_LIFTER = '''
import numpy as np
from common.core.bones import recompose

class ToyLifter:
    """Straight limbs hanging down, swinging with the 2D x of the right wrist; each frame alone (causal)."""
    name, convention, frame, receptive_field, causal, length_model = "toy", "h36m", "camera", 1, True, None

    def lift(self, track):
        swing = (track.positions[:, 16, 0] - track.width / 2) / track.width
        dirs = np.zeros((len(track), 16, 3), np.float32)
        dirs[..., 1] = 1.0
        dirs[:, [6, 7, 8, 9], 1] = -1.0
        dirs[:, [0, 10], 0], dirs[:, [3, 13], 0] = -1.0, 1.0
        dirs[:, [0, 3, 10, 13], 1] = 0.0
        dirs[..., 2] = swing[:, None]
        lengths = 0.3 + 0.02 * np.sin(np.arange(len(track)))[:, None] * np.ones(16)
        return recompose(dirs / np.linalg.norm(dirs, axis=-1, keepdims=True), lengths).astype(np.float32)

    def step(self, frame):
        return self.lift(frame)[0]
'''
TOY_LENGTHS = '''
from dataclasses import dataclass

import numpy as np
from common.inference.length_sources import LengthSource
from common.utils.errors import UserError

@dataclass
class ToyOptions:
    max_gap: int = 30  # any flag of inference.py

class ToyLengths(LengthSource):
    """Every bone 0.01 m per frame of --max_gap, from the first frame on; only for Human3.6M-convention joints."""
    name, causal = "toy", True
    Options = ToyOptions

    def __init__(self, options):
        self.value = 0.01 * options.max_gap

    def prepare(self, lifter, live):
        if lifter.convention != "h36m":
            raise UserError(f"--lengths toy refuses {lifter.convention}-convention joints")

    def lengths(self, poses, track):
        return np.full(16, self.value, np.float32)

    def step(self, pose, frame):
        return np.full(16, self.value)

    def start(self):
        return np.full(16, self.value)
'''


@pytest.fixture
def toys(tmp_path, monkeypatch):
    """The toy lifter and the toy length source: one file each plus one registry line each."""
    (tmp_path / "toy_lifter.py").write_text(TOY_LIFTER)
    (tmp_path / "toy_lengths.py").write_text(TOY_LENGTHS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(LIFTERS, "toy", "toy_lifter:ToyLifter")
    monkeypatch.setitem(LENGTH_SOURCES, "toy", "toy_lengths:ToyLengths")


def test_toy_lifter_and_length_source_through_inference_and_bone_adjust(tmp_path, toys):
    keypoints = (np.array([320, 240], np.float32) + np.random.default_rng(0).normal(0, 30, (15, 17, 2)))
    save_npz(tmp_path / "kp.npz", positions_2d={"v.mp4": {"custom": [keypoints.astype(np.float32)]}},
             metadata={"layout_name": "h36m", "video_metadata": {"v.mp4": {"w": 640, "h": 480}}})
    inference.main(["--lifter", "toy", "--lengths", "toy", "--max_gap", "40", "--keypoints", str(tmp_path / "kp.npz"),
                    "--output", str(tmp_path / "out"), "--no_progress", "--panel_height", "120"])
    data = np.load(tmp_path / "out" / "kp_poses_3d.npz", allow_pickle=True)
    assert data["poses_after"].shape == (15, 17, 3)
    np.testing.assert_allclose(bone_lengths(data["poses_after"]), 0.40, atol=1e-5)    # the toy source's lengths
    assert bone_lengths(data["poses_before"]).std() > 0.01                             # the toy lifter's own vary
    assert (data["metadata"].item()["lifter"], data["metadata"].item()["lengths"]) == ("toy", "toy")
    # bone_adjust.py on the toy lifter's predictions of a small dataset (camera frame).
    toy = sys.modules["toy_lifter"].ToyLifter()
    world = {"S9": {"Walking": _poses(15, 7) + np.array([0, 0, 1.0], np.float32)}}
    preds = {"S9": {"Walking": [toy.lift(Track2D(keypoints.astype(np.float32), np.ones((15, 17)), 640, 480))] * 4}}
    save_npz(tmp_path / "data_3d_demo.npz", positions_3d=world)
    adjust.write_predictions(tmp_path / "pred", preds)
    save_npz(tmp_path / "lengths_dict.npz", lengths={"S9": {"Walking": [LENGTHS] * 4}})
    bone_adjust.main(["--pred", str(tmp_path / "pred" / "prediction.pkl"), "--data_dir", str(tmp_path),
                      "-d", "demo", "--result_csv", str(tmp_path / "result.csv")])
    rows = (tmp_path / "result.csv").read_text()
    assert "adjusted (own median lengths)" in rows and "adjusted (pred. lengths)" in rows


def test_toy_lifter_and_length_source_live(real_clip, tmp_path, toys):
    """The same two toy files run --live: the toy lifter stepped frame by frame, the toy source's lengths from the
    first frame; the toy source's pre-flight refuses BlazePose-convention joints."""
    path = tmp_path / "live.jsonl"
    result = inference.run_cli(["--live", str(real_clip), "--unpaced", "--max_frames", "6", "--lifter", "toy",
                                "--lengths", "toy", "--max_gap", "40", "--live_output", str(path)])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert (lines[0]["header"]["lifter"], lines[0]["header"]["lengths"]) == ("toy", "toy")
    found = [r for r in lines[1:] if r["joints"] is not None]
    assert result.frames_out == 6 and len(found) == result.detected > 0
    np.testing.assert_allclose([r["lengths"] for r in lines[1:]], 0.40)
    np.testing.assert_allclose(bone_lengths(np.array([r["joints"] for r in found])), 0.40, atol=2e-5)
    assert all(r["joints"][1][1] == 0 and r["joints"][1][0] < 0 for r in found)  # the toy's level right hip
    with pytest.raises(UserError, match="refuses blazepose-convention"):
        inference.run_cli(["--live", str(real_clip), "--lengths", "toy", "--live_output", str(path)])


def test_choice_of_lifter_and_length_source(tmp_path, capsys):
    assert choose_lifter(_config(tmp_path)) == DEFAULT_LIFTER == "mediapipe"
    np.savez(tmp_path / "p.npz", poses=_poses(5))
    assert choose_lifter(_config(tmp_path, poses=str(tmp_path / "p.npz"))) == "poses"
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "toy.bin", {"model_pos": TemporalModel(17, 2, 17, [3], channels=8).state_dict(),
                                           "lifter": "toy"})                    # a stored name picks the lifter
    assert choose_lifter(_config(tmp_path, lifter_ckpt=str(tmp_path / "toy.bin"))) == "toy"
    with pytest.raises(UserError, match="--lifter mediapipe conflicts with --poses"):
        choose_lifter(_config(tmp_path, lifter="mediapipe", poses=str(tmp_path / "p.npz")))
    with pytest.raises(UserError, match="at most one"):
        choose_lifter(_config(tmp_path, poses="a.npz", finetuned_ckpt="b.bin"))
    mediapipe = make_lifter("mediapipe", _config(tmp_path))
    assert choose_lengths(_config(tmp_path), mediapipe) == "prior"
    assert choose_lengths(_config(tmp_path, lengths_file="l.json"), mediapipe) == "file"
    with pytest.raises(UserError, match="Human3.6M-convention lengths"):     # the sources' own pre-flight
        make_length_source("model", _config(tmp_path, lengths="model", length_ckpt="none.bin"), mediapipe)
    with pytest.raises(UserError, match="--length_convention blazepose"):
        make_length_source("model", _config(tmp_path, lengths="model"), mediapipe)
    with pytest.raises(UserError, match="needs --lengths_file"):
        make_length_source("file", _config(tmp_path, lengths="file"), mediapipe)
    poses = make_lifter("poses", _config(tmp_path, poses=str(tmp_path / "p.npz")))
    assert choose_lengths(_config(tmp_path), poses) == "model"                  # the paper's --poses command
    # live: a causal lifter, the named substitute of one that is not (noted when named), else an error
    assert make_lifter("mediapipe", _config(tmp_path), live=True).name == "mediapipe_raw"
    assert capsys.readouterr().err == ""
    assert make_lifter("mediapipe", _config(tmp_path, lifter="mediapipe"), live=True).name == "mediapipe_raw"
    assert "in place of --lifter mediapipe" in capsys.readouterr().err
    assert make_length_source("prior", _config(tmp_path), mediapipe, live=True).name == "prior"   # causal itself
    with pytest.raises(UserError, match="--live needs a causal lifter"):
        make_lifter("poses", _config(tmp_path, poses=str(tmp_path / "p.npz")), live=True)
    with pytest.raises(UserError, match="unknown --lengths 'nope'"):
        make_length_source("nope", _config(tmp_path), mediapipe)
