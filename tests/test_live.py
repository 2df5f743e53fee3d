"""Live mode: one-euro filter, running median and bounded lengths on hand-computed cases, frame dropping of a
paced source, frame-by-frame steppers equal to the offline passes, and causality on a real clip."""
from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import inference
from common.adjustment.rigidity import load_rigidity
from common.core.bones import bone_lengths
from common.core.camera import normalize_screen_coordinates
from common.utils.checkpoint import save_checkpoint
from common.utils.errors import UserError
from common.models.length_model import BoneLengthModel, predict_lengths
from common.inference.inference_pipeline import InferenceConfig
from common.inference.length_sources import RunningMedian, make_length_source
from common.inference.lifters import make_lifter
from common.inference.live import FrameSource, LiveLengths, OneEuroFilter
from common.models.model import TemporalModel
from common.core.skeleton import BONE_NAMES
from common.vision.tracking import Track2D
from common.vision.video import VideoReader, VideoWriter
from helpers import CLIP_FRAMES


def test_one_euro_filter_first_steps_by_hand():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    assert f(np.array([0.0, 2.0]), 0.0).tolist() == [0.0, 2.0]  # the first value passes unchanged
    dt = 1 / 30
    alpha = 2 * np.pi * dt / (2 * np.pi * dt + 1)  # 1 / (1 + tau / dt), tau = 1 / (2 pi * 1 Hz)
    out = f(np.array([1.0, 2.0]), dt)
    np.testing.assert_allclose(out, [alpha, 2.0])
    np.testing.assert_allclose(f(np.array([1.0, 2.0]), 2 * dt), [alpha + alpha * (1 - alpha), 2.0])
    np.testing.assert_allclose(f(np.array([5.0, 5.0]), 2 * dt), [alpha + alpha * (1 - alpha), 2.0])  # same t
    # beta > 0 raises the cutoff with speed: a jump is followed more closely
    fast = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    fast(np.zeros(1), 0.0)
    assert fast(np.ones(1), dt)[0] > alpha
    with pytest.raises(UserError):
        OneEuroFilter(min_cutoff=0.0)


def test_running_median_of_bone_lengths():
    median = RunningMedian()
    assert median.median() is None
    for value in (0.3004, 0.5004, 0.3104):
        median.update(np.full(16, value))
    np.testing.assert_allclose(median.median(), 0.3105)  # centre of the 1 mm bin of the middle value
    median.update(np.full(16, 0.9))
    median.update(np.full(16, 0.9))
    np.testing.assert_allclose(median.median(), 0.5005)
    # deviations of the bin centres from 0.5005: 0.2, 0, 0.19, 0.4, 0.4 -> median 0.2
    np.testing.assert_allclose(median.mad(), 0.2, atol=1e-9)
    assert RunningMedian().mad() is None


def test_stepped_prior_lengths_follow_the_offline_combination():
    """--live --lengths prior: after each frame, the offline combination of the frames so far, to the running
    histograms' 1 mm resolution (odd frame counts: one middle value); the proportions are pulled towards the prior
    as offline."""
    from common.inference.length_sources import combine_with_prior
    from common.core.bones import recompose

    rng = np.random.default_rng(4)
    frames = 40
    lengths = np.array([0.10, 0.42, 0.36, 0.10, 0.42, 0.36, 0.25, 0.25, 0.21, 0.11,
                        0.17, 0.28, 0.22, 0.17, 0.28, 0.22])
    per_frame = lengths * (1 + rng.normal(scale=0.04, size=(frames, 16)))
    directions = rng.normal(size=(frames, 16, 3))
    poses = recompose(directions / np.linalg.norm(directions, axis=-1, keepdims=True), per_frame)
    lifter = SimpleNamespace(name="mediapipe_raw", convention="blazepose")
    source = make_length_source("prior", _settings(lengths="prior"), lifter, live=True)
    assert source.causal and source.name == "prior"
    stepped = np.stack([source.step(pose, None) for pose in poses])
    for t in (10, 20, frames - 2):
        np.testing.assert_allclose(stepped[t], combine_with_prior(poses[:t + 1], *source.prior), atol=1.5e-3)
    own = np.median(per_frame, axis=0)
    assert not np.allclose(stepped[-1][[1, 2, 11, 12]] / stepped[-1][1], own[[1, 2, 11, 12]] / own[1], rtol=0.01)


def test_stepped_self_lengths_are_the_offline_median_lengths():
    """--live --lengths self: after each frame, offline's own lengths of the frames so far (per-bone medians, then
    left/right averaged), to the histograms' 1 mm resolution; left and right sides deliberately differ."""
    from common.core.bones import median_lengths, recompose

    rng = np.random.default_rng(5)
    frames = 41
    lengths = np.array([0.10, 0.42, 0.36, 0.12, 0.46, 0.33, 0.25, 0.25, 0.21, 0.11,
                        0.17, 0.28, 0.22, 0.19, 0.25, 0.24])
    per_frame = lengths * (1 + rng.normal(scale=0.05, size=(frames, 16)))
    per_frame[:, 1] *= np.where(rng.random(frames) < 0.3, 1.3, 1.0)  # one side's outliers, not the other's
    directions = rng.normal(size=(frames, 16, 3))
    poses = recompose(directions / np.linalg.norm(directions, axis=-1, keepdims=True), per_frame)
    lifter = SimpleNamespace(name="videopose3d", convention="h36m")
    source = make_length_source("self", _settings(lengths="self"), lifter, live=True)
    stepped = np.stack([source.step(pose, None) for pose in poses])
    for t in (0, 10, 20, frames - 1):  # odd frame counts: one middle value, within its 1 mm bin
        np.testing.assert_allclose(stepped[t], median_lengths(poses[:t + 1]), atol=1e-3)


def test_live_lengths_start_at_the_prior_and_move_by_the_bound():
    prior = np.full(16, 0.40)
    prior[0], prior[3] = 0.10, 0.14  # r_hip / l_hip: averaged to 0.12
    lengths = LiveLengths(prior, max_step=0.001)
    first = lengths.step(None)
    assert first[0] == pytest.approx(0.12) and first[3] == pytest.approx(0.12)
    target = np.full(16, 0.45)
    target[[1, 4]] = 0.4004  # r/l thigh closer than one step: reached at once
    for _ in range(10):
        current = lengths.step(target)
    assert current[2] == pytest.approx(0.41) and current[1] == pytest.approx(0.4004)
    free = LiveLengths(None, max_step=0.001)
    assert free.step(None) is None
    np.testing.assert_allclose(free.step(target), target)  # no prior: the first target as is


def test_population_prior_of_the_blazepose_convention():
    from common.inference.length_sources import LIMB_PRIOR_FILE, population_mean_lengths

    prior = population_mean_lengths("blazepose")
    content = json.loads(LIMB_PRIOR_FILE.read_text())["blazepose"]
    limbs = np.asarray(content["mean_lengths_m"])  # thigh, calf, upper/lower arm of the same bodies
    offset = np.asarray(content["convention_offset_log"])  # into BlazePose's landmark convention
    np.testing.assert_allclose(prior[[1, 2, 11, 12]], limbs * np.exp(offset), atol=1e-4)
    np.testing.assert_allclose(np.log(prior[[1, 2, 11, 12]]).mean(), np.log(limbs).mean(), atol=2e-3)  # same size
    np.testing.assert_allclose(prior[[1, 2, 11, 12]], prior[[4, 5, 14, 15]])  # left = right
    assert 0.08 < prior[0] < 0.13 and population_mean_lengths("h36m") is None  # hip joints ~20 cm apart


def _small_video(path, frames: int, fps: float) -> None:
    with VideoWriter(path, 64, 48, fps) as writer:
        for i in range(frames):
            writer.write(np.full((48, 64, 3), 4 * i, np.uint8))


def test_paced_source_drops_what_it_cannot_keep_up_with(tmp_path):
    _small_video(tmp_path / "v.mp4", 40, 200.0)
    source = FrameSource(str(tmp_path / "v.mp4"))
    seen = []
    for frame in source:
        seen.append(frame.index)
        time.sleep(0.02)  # a pipeline four times slower than the source
    source.close()
    assert source.read_frames == 40 and source.dropped > 10
    assert len(seen) + source.dropped == 40 and seen == sorted(seen)
    unpaced = FrameSource(str(tmp_path / "v.mp4"), paced=False, max_frames=25)
    frames = list(unpaced)
    unpaced.close()
    assert [f.index for f in frames] == list(range(25)) and unpaced.dropped == 0
    assert frames[5].time_s == pytest.approx(5 / 200.0)
    # a stream URL delivers at its own pace (here: as fast as it decodes), stamped with the wall clock
    stream = FrameSource((tmp_path / "v.mp4").as_uri())
    stamps = []
    for frame in stream:
        stamps.append(frame.time_s)
        time.sleep(0.02)
    stream.close()
    assert stream.read_frames == 40 and len(stamps) + stream.dropped == 40 and stream.dropped > 0
    assert stamps == sorted(stamps) and stamps[0] > 0  # seconds since the capture started, not index / fps
    with pytest.raises(UserError, match="unpaced"):
        FrameSource("0", paced=False)
    with pytest.raises(UserError, match="not a camera"):
        FrameSource(str(tmp_path / "missing.mp4"))


def _settings(**kw) -> dict:
    return vars(InferenceConfig(**kw))


def _frames(track: Track2D) -> list[Track2D]:
    """A track as the one-frame tracks a live run steps through."""
    return [Track2D(track.positions[t:t + 1], track.confidence[t:t + 1], track.width, track.height)
            for t in range(len(track))]


def test_stepped_causal_lifter_equals_the_offline_pass(tmp_path):
    torch.manual_seed(0)
    for causal in (True, False):
        model = TemporalModel(17, 2, 17, [3, 3], causal=causal, channels=32, dropout=0.0)
        save_checkpoint(tmp_path / f"{causal}.bin", {"model_pos": model.state_dict(), "causal": causal})
    rng = np.random.default_rng(0)
    track = Track2D(rng.uniform(0, 640, (15, 17, 2)).astype(np.float32), np.ones((15, 17), np.float32), 640, 480)
    lifter = make_lifter("videopose3d", _settings(lifter_ckpt=str(tmp_path / "True.bin")), live=True)
    offline = lifter.lift(track)
    stepped = np.stack([lifter.step(frame) for frame in _frames(track)])
    np.testing.assert_allclose(stepped, offline, atol=1e-5)
    with pytest.raises(UserError, match="causal"):
        make_lifter("videopose3d", _settings(lifter_ckpt=str(tmp_path / "False.bin")), live=True)


def test_stepped_causal_gru_equals_the_offline_pass(tmp_path):
    torch.manual_seed(0)
    model = BoneLengthModel(embed_dim=16, hidden_size=16, bidirectional=False).eval()
    save_checkpoint(tmp_path / "gru.bin", {"model_pos": model.state_dict()})
    save_checkpoint(tmp_path / "bigru.bin", {"model_pos": BoneLengthModel(embed_dim=8, hidden_size=8).state_dict()})
    rng = np.random.default_rng(1)
    track = Track2D(rng.uniform(0, 640, (9, 17, 2)).astype(np.float32), np.ones((9, 17), np.float32), 640, 480)
    lifter = SimpleNamespace(name="videopose3d", convention="h36m", length_model=None)
    gru = make_length_source("model", _settings(length_ckpt=str(tmp_path / "gru.bin")), lifter, live=True)
    offline = predict_lengths(model, normalize_screen_coordinates(track.positions, 640, 480), symmetric=False)
    stepped = np.stack([gru.step(np.zeros((17, 3)), frame) for frame in _frames(track)])
    np.testing.assert_allclose(stepped, offline, atol=1e-5)
    with pytest.raises(UserError, match="causal"):
        make_length_source("model", _settings(length_ckpt=str(tmp_path / "bigru.bin")), lifter, live=True)


def _records(path) -> list[dict]:
    lines = path.read_text().splitlines()
    assert "header" in json.loads(lines[0])
    return [json.loads(line) for line in lines[1:]]


@pytest.mark.slow
def test_live_on_a_real_clip_is_causal_and_bounded(real_clip, tmp_path):
    """inference.py --live on the clip played as a stream, unpaced: the first 12 frames' output is the same
    whether the stream ends there or goes on; lengths start at the prior and never change by more than the
    bound between frames."""
    prior = {"units": "metres", "lengths": {name: 0.30 for name in BONE_NAMES}}
    (tmp_path / "prior.json").write_text(json.dumps(prior))
    runs = {}
    for frames in (12, CLIP_FRAMES):
        path = tmp_path / f"live_{frames}.jsonl"
        result = inference.run_cli(["--live", str(real_clip), "--unpaced", "--max_frames", str(frames),
                                    "--live_output", str(path), "--length_prior", str(tmp_path / "prior.json"),
                                    "--max_length_step_mm", "0.5", "--live_video", str(tmp_path / f"live_{frames}.mp4")])
        assert result.frames_in == result.frames_out == frames and result.dropped == 0
        assert result.max_length_change_mm <= 0.5 + 1e-9
        runs[frames] = _records(path)
    short, long = runs[12], runs[CLIP_FRAMES]
    assert [r["frame"] for r in long] == list(range(CLIP_FRAMES))
    for a, b in zip(short, long[:12]):
        assert a["joints"] == b["joints"] and a["lengths"] == b["lengths"] and a["detected"] == b["detected"]
    # streaming BlazePose finds a person within a few frames (its detector sees the whole 1768x994 frame)
    assert sum(r["detected"] for r in long) >= CLIP_FRAMES - 8 and long[-1]["detected"]
    lengths = np.array([r["lengths"] for r in long])
    np.testing.assert_allclose(lengths[0], 0.30, atol=0.0005 + 1e-5)  # one bounded step from the prior at most
    rigid = load_rigidity("blazepose")[0]  # the rigid bones move by the bound at most, the neck follows the lifter
    assert np.abs(np.diff(lengths[:, rigid], axis=0)).max() <= 0.0005 + 1e-5  # JSON values are rounded to 0.01 mm
    header = json.loads((tmp_path / f"live_{CLIP_FRAMES}.jsonl").read_text().splitlines()[0])["header"]
    assert header["adjustment"]["rigid_bones"] == [n for n, r in zip(BONE_NAMES, rigid) if r]
    assert np.abs(lengths[-1] - 0.30).max() > 0.003  # and they do move towards the lifter's own lengths
    found = [r["joints"] is not None for r in long]
    np.testing.assert_allclose(bone_lengths(np.array([r["joints"] for r in long if r["joints"] is not None])),
                               lengths[found], atol=2e-5)
    assert VideoReader(tmp_path / f"live_{CLIP_FRAMES}.mp4").info.frame_count == CLIP_FRAMES


@pytest.mark.slow
def test_live_with_a_causal_lifter_and_the_causal_gru(real_clip, tmp_path):
    torch.manual_seed(0)
    lifter = TemporalModel(17, 2, 17, [3, 3], causal=True, channels=32)
    gru = BoneLengthModel(embed_dim=16, hidden_size=16, bidirectional=False)
    save_checkpoint(tmp_path / "lifter.bin", {"model_pos": lifter.state_dict(), "causal": True})
    save_checkpoint(tmp_path / "gru.bin", {"model_pos": gru.state_dict()})
    path = tmp_path / "live.jsonl"
    result = inference.run_cli(["--live", str(real_clip), "--unpaced", "--max_frames", "8", "--lifter", "videopose3d",
                                "--lifter_ckpt", str(tmp_path / "lifter.bin"), "--length_ckpt", str(tmp_path / "gru.bin"),
                                "--live_output", str(path), "--one_euro", "1.0,0.5"])
    records = _records(path)
    assert result.frames_out == 8 and len(records) == 8
    assert json.loads(path.read_text().splitlines()[0])["header"]["lengths"] == "model"
    assert result.max_length_change_mm <= 1.0 + 1e-9
    # a Bi-GRU reads whole sequences: it cannot give live lengths
    save_checkpoint(tmp_path / "bigru.bin", {"model_pos": BoneLengthModel(embed_dim=8, hidden_size=8).state_dict()})
    with pytest.raises(UserError, match="causal"):
        inference.run_cli(["--live", str(real_clip), "--unpaced", "--max_frames", "2", "--lengths", "model",
                           "--lifter", "videopose3d", "--lifter_ckpt", str(tmp_path / "lifter.bin"),
                           "--length_ckpt", str(tmp_path / "bigru.bin"), "--live_output", str(path)])
    with pytest.raises(UserError, match="h36m-convention lengths"):  # the GRU's lengths on BlazePose's joints
        inference.run_cli(["--live", str(real_clip), "--lengths", "model", "--length_ckpt", str(tmp_path / "gru.bin"),
                           "--live_output", str(path)])
    with pytest.raises(UserError, match="one_euro"):
        inference.run_cli(["--live", str(real_clip), "--one_euro", "1.0", "--live_output", str(path)])


@pytest.mark.slow
def test_live_json_lines_on_stdout(real_clip, capsys):
    inference.run_cli(["--live", str(real_clip), "--unpaced", "--max_frames", "3"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]  # stdout holds the JSON lines only
    assert "header" in lines[0] and [r["frame"] for r in lines[1:]] == [0, 1, 2]
    assert lines[0]["header"]["max_length_step_mm"] == 1.0 and "3 frames in" in captured.err


@pytest.mark.slow
def test_live_people_all_is_causal_with_a_person_key(real_clip, tmp_path):
    """--live --people all on the one-person clip: every record names its person, the first frames' output does
    not depend on what follows, the lengths move by at most the bound."""
    runs = {}
    for frames in (8, 16):
        path = tmp_path / f"people_{frames}.jsonl"
        result = inference.run_cli(["--live", str(real_clip), "--unpaced", "--max_frames", str(frames), "--people",
                                    "all", "--live_output", str(path), "--live_video", str(tmp_path / "people.mp4")])
        assert result.frames_out == frames and result.max_length_change_mm <= 1.0 + 1e-9
        runs[frames] = _records(path)
    assert json.loads((tmp_path / "people_8.jsonl").read_text().splitlines()[0])["header"]["people"] == "all"
    assert all("person" in r for r in runs[16]) and len({r["person"] for r in runs[16] if r["detected"]}) >= 1
    strip = [{k: v for k, v in r.items() if k != "latency_ms"} for r in runs[8]]
    assert strip == [{k: v for k, v in r.items() if k != "latency_ms"} for r in runs[16] if r["frame"] < 8]


@pytest.mark.slow
def test_live_2d_stage_ahead_in_its_own_thread_gives_the_same_output(real_clip, tmp_path, monkeypatch):
    """--detect_ahead: the 2D stage in a thread of its own, running ahead of the lifting, changes no number. Two
    people (the clip beside its mirror image), --people all and --people one: every record but its latency equal
    to the run one frame after the other (--detect_ahead 0), and the tracker did run in the 2D thread."""
    from common.vision.people import PeopleTracker

    clip = tmp_path / "two.mp4"
    reader = VideoReader(real_clip, max_frames=16)
    with VideoWriter(clip, 2 * reader.info.width, reader.info.height, reader.info.fps) as writer:
        for frame in reader:
            writer.write(np.concatenate([frame, frame[:, ::-1]], axis=1))
    threads = set()
    update = PeopleTracker.update

    def recording_update(self, rgb):
        threads.add(threading.current_thread().name)
        return update(self, rgb)

    monkeypatch.setattr(PeopleTracker, "update", recording_update)
    for people in ("all", "one"):
        runs = {}
        for depth in (0, 1):
            path = tmp_path / f"{people}_{depth}.jsonl"
            result = inference.run_cli(["--live", str(clip), "--unpaced", "--people", people, "--detect_ahead",
                                        str(depth), "--live_output", str(path)])
            assert result.frames_out == 16 and result.cpu_seconds > 0
            runs[depth] = [{k: v for k, v in r.items() if k != "latency_ms"} for r in _records(path)]
        assert runs[0] == runs[1]
        if people == "all":
            assert len({r["person"] for r in runs[1] if r["detected"]}) == 2
    assert threads == {"MainThread", "detect"}
