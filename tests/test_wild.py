"""Rigid only where the body is rigid (common/adjustment/rigidity.py), the person's own size
(common/inference/body_size.py) and the rigidity decision of bench/wild_recordings.py."""
import json

import numpy as np
import pytest

from bench.wild_recordings import decide, distance_table
from common.adjustment.rigidity import FLEXION_BINS, flexion, flexion_bins, load_rigidity, rigidity_lengths
from common.core.bones import adjust_bone_lengths, bone_lengths, recompose
from common.core.skeleton import BONE_NAMES, SYMMETRIC_BONES
from common.inference.body_size import height_size, limb_size, rescale, world_size
from common.utils.errors import UserError
from common.vision.tracking import Track2D

LENGTHS = np.array([0.10, 0.40, 0.38, 0.10, 0.40, 0.38, 0.25, 0.25, 0.21, 0.11,
                    0.17, 0.27, 0.24, 0.17, 0.27, 0.24])
NECK = BONE_NAMES.index("neck")
SPINE = [BONE_NAMES.index("spine_1"), BONE_NAMES.index("spine_2")]


def _poses(lengths: np.ndarray, frames: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(16, 3)) + np.cumsum(rng.normal(scale=0.05, size=(frames, 16, 3)), axis=0)
    return recompose(dirs / np.linalg.norm(dirs, axis=-1, keepdims=True), lengths)


def _rigidity(tmp_path, rigid, sd):
    path = tmp_path / "rigidity.json"
    path.write_text(json.dumps({"test": {"rigid": rigid, "natural_relative_sd": sd}}))
    return path


def test_rigidity_modes_keep_rigid_bones_and_follow_the_lifter_elsewhere(tmp_path):
    frames = 80
    per_frame = np.tile(LENGTHS, (frames, 1))
    true_neck = LENGTHS[NECK] * (1 + 0.15 * np.sin(np.linspace(0, 6, frames)))   # the body's own change
    per_frame[:, NECK] = true_neck
    noisy = per_frame * (1 + np.random.default_rng(1).normal(scale=0.03, size=per_frame.shape))
    poses = _poses(noisy, frames)
    rigid = [n for n in BONE_NAMES if n != "neck"]
    mask, variance = load_rigidity("test", _rigidity(tmp_path, rigid, {"neck": 0.1}))
    assert mask.sum() == 15 and variance[NECK] == pytest.approx(0.01) and variance[mask].sum() == 0
    given = LENGTHS * 1.1                                                  # a length source's (size x 1.1)
    held = rigidity_lengths(poses, given, mask, variance, "rigid")
    assert held.shape == (16,) and np.allclose(held, given)
    free = rigidity_lengths(poses, given, mask, variance, "free")
    soft = rigidity_lengths(poses, given, mask, variance, "soft")
    for lengths in (free, soft):
        assert lengths.shape == (frames, 16)
        assert np.allclose(lengths[:, mask], given[mask])                   # rigid bones: one length
        for a, b in SYMMETRIC_BONES:
            assert np.allclose(lengths[:, a], lengths[:, b])
    own = bone_lengths(poses)[:, NECK]
    np.testing.assert_allclose(free[:, NECK], given[NECK] * own / np.median(own), rtol=1e-5)
    # soft: between the constant and the lifter, and closer to the body's true change than either
    deviation_free = free[:, NECK] / given[NECK] - 1
    deviation_soft = soft[:, NECK] / given[NECK] - 1
    assert 0 < np.abs(deviation_soft).mean() < np.abs(deviation_free).mean()
    truth = true_neck / np.median(true_neck) - 1
    assert np.abs(deviation_soft - truth).mean() < np.abs(deviation_free - truth).mean()
    assert np.abs(deviation_soft - truth).mean() < np.abs(truth).mean()
    adjusted = adjust_bone_lengths(poses, soft)
    np.testing.assert_allclose(bone_lengths(adjusted), soft, rtol=1e-4, atol=1e-6)
    with pytest.raises(UserError):
        rigidity_lengths(poses, given, mask, variance, "bendy")


def test_load_rigidity_unknown_convention_is_fully_rigid_and_bad_names_fail(tmp_path):
    mask, variance = load_rigidity("other", _rigidity(tmp_path, ["neck"], {}))
    assert mask.all() and not variance.any()
    with pytest.raises(UserError, match="unknown bone"):
        load_rigidity("test", _rigidity(tmp_path, ["collarbone"], {}))


def test_shipped_rigidity_file_names_both_conventions():
    for convention in ("blazepose", "h36m"):
        mask, _ = load_rigidity(convention)
        limbs = [BONE_NAMES.index(n) for n in ("l_thigh", "r_calf", "l_upper_arm", "r_lower_arm")]
        assert mask[limbs].all()
    assert load_rigidity("h36m")[0].all()  # the paper's adjustment: all 16 bones held on Human3.6M work


def test_flexion_straight_and_bent():
    # standing: hips beside the pelvis, legs straight down, trunk straight up
    stand = np.zeros((1, 17, 3))
    stand[0, 1], stand[0, 4] = [-0.1, 0, 0], [0.1, 0, 0]
    stand[0, 2], stand[0, 5] = [-0.1, 0, -0.4], [0.1, 0, -0.4]
    stand[0, 3], stand[0, 6] = [-0.1, 0, -0.8], [0.1, 0, -0.8]
    stand[0, 7], stand[0, 8] = [0, 0, 0.25], [0, 0, 0.5]
    assert flexion(stand)[0] == pytest.approx(0.0, abs=1e-6)
    squat = stand.copy()
    squat[0, 2], squat[0, 3] = [-0.1, 0.4, 0], [-0.1, 0.4, -0.4]  # right thigh forward (90° hip), shin down (90° knee)
    assert flexion(squat)[0] == pytest.approx(90.0)
    bins = flexion_bins(np.concatenate([stand, squat]))
    assert [bins[label].tolist() for _, _, label in FLEXION_BINS] == [[True, False], [False, False], [False, True]]


def _track(world: np.ndarray, confidence: np.ndarray) -> Track2D:
    return Track2D(np.zeros(world.shape[:2] + (2,)), confidence, 100, 100, world=world)


def test_world_size_pools_confident_frames_only():
    frames = 40
    per_frame = np.tile(LENGTHS, (frames, 1))
    per_frame[:10] *= 0.5                               # frames where the 3D is wrong ...
    world = _poses(per_frame, frames)
    confidence = np.ones((frames, 17))
    confidence[:10, 2] = 0.1                            # ... and the right knee is not seen
    size = world_size(_track(world, confidence))
    # the right thigh and calf are measured on frames 10.. only; the left side on every frame: its median is
    # still the true length (30 of 40 frames)
    assert size == pytest.approx(limb_size(LENGTHS), rel=1e-6)
    assert world_size(Track2D(world[..., :2], confidence, 100, 100)) is None
    confidence[:, [2, 5]] = 0.0                          # knees never seen: no thigh
    assert world_size(_track(world, confidence)) is None


def test_limb_size_rescale_and_height(tmp_path):
    assert limb_size(LENGTHS * 2) == pytest.approx(2 * limb_size(LENGTHS))
    scaled = rescale(LENGTHS, 0.5)
    assert limb_size(scaled) == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_allclose(scaled / scaled.sum(), LENGTHS / LENGTHS.sum(), rtol=1e-6)
    per_frame = np.tile(LENGTHS, (5, 1)) * np.linspace(0.9, 1.1, 5)[:, None]
    assert np.median(limb_size(rescale(per_frame, 0.3))) == pytest.approx(0.3, rel=1e-6)
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({"x": {"limb_to_stature_log": np.log([0.24, 0.24, 0.16, 0.15]).tolist()}}))
    expected = 1.8 * np.exp(np.log([0.24, 0.24, 0.16, 0.15]).mean())
    assert height_size(1.8, "x", prior) == pytest.approx(expected)
    assert height_size(1.6, "x", prior) / height_size(1.8, "x", prior) == pytest.approx(1.6 / 1.8)
    with pytest.raises(UserError, match="metres"):
        height_size(178.0, "x", prior)
    with pytest.raises(UserError, match="stature"):
        height_size(1.8, "y", prior)


def test_decide_marks_distances_that_vary_more_than_the_limbs():
    rng = np.random.default_rng(0)
    frames = 400
    lengths = np.tile(LENGTHS, (frames, 1)) + rng.normal(scale=0.005, size=(frames, 16))
    lengths[:, SPINE] *= (1 + 0.1 * np.sin(np.linspace(0, 9, frames)))[:, None]   # a bending spine
    table = distance_table(lengths, np.full(frames, 10.0))
    rigid, natural = decide({"person": table})
    assert set(BONE_NAMES) - set(rigid) == {"spine_1", "spine_2"}
    assert 0.04 < natural["spine_1"] < 0.1
    # groups: different bodies' sizes are not variation over time
    two = np.concatenate([np.tile(LENGTHS, (50, 1)), np.tile(LENGTHS * 1.2, (50, 1))])
    grouped = distance_table(two, np.zeros(100), np.repeat([0, 1], 50))
    assert np.allclose(grouped["sd"], 0)


def test_pipeline_adjustment_size_rigidity_and_preflight(tmp_path):
    from common.inference.inference_pipeline import InferenceConfig, adjust_lengths, make_models

    frames = 50
    per_frame = np.tile(LENGTHS, (frames, 1))
    per_frame[:, NECK] *= 1 + 0.1 * np.sin(np.linspace(0, 6, frames))
    world = _poses(per_frame, frames).astype(np.float32)
    pixels = world[..., :2] * 500 + 300                       # an orthographic view of the same poses
    track = Track2D(pixels.astype(np.float32), np.ones((frames, 17), np.float32), 640, 480, world=world)
    lifter, source = make_models(InferenceConfig(video=None))
    assert (lifter.convention, source.name, source.own_size) == ("blazepose", "prior", True)
    poses = lifter.lift(track)
    rigid, _ = load_rigidity("blazepose")
    lengths, meta = adjust_lengths(lifter, source, poses, track)
    assert meta["nonrigid"] == InferenceConfig.nonrigid and meta["rigid_bones"] == [
        n for n, r in zip(BONE_NAMES, rigid) if r]
    assert "raw 3D" in meta["size"]
    assert np.median(limb_size(lengths)) == pytest.approx(world_size(track), rel=1e-5)   # the person's own size
    per_frame_out = np.atleast_2d(lengths)
    assert np.allclose(per_frame_out[:, rigid], per_frame_out[0, rigid])                 # rigid bones constant
    tall, meta = adjust_lengths(lifter, source, poses, track, height=1.9, nonrigid="rigid")
    assert tall.shape == (16,) and limb_size(tall) == pytest.approx(height_size(1.9, "blazepose"), rel=1e-5)
    assert meta["size"].startswith("--height 1.9")
    (tmp_path / "l.json").write_text(json.dumps({"thigh": 0.4}))
    with pytest.raises(UserError, match="--height sizes lengths"):
        make_models(InferenceConfig(video=None, lengths_file=str(tmp_path / "l.json"), height=1.8))
    with pytest.raises(UserError, match="metres"):
        make_models(InferenceConfig(video=None, height=178.0))
    with pytest.raises(UserError, match="--nonrigid"):
        make_models(InferenceConfig(video=None, nonrigid="bendy"))


def test_inference_lengths_json_with_per_frame_lengths_reads_back_as_medians(tmp_path):
    from common.inference.length_sources import read_lengths_file

    per_frame = np.tile(LENGTHS, (5, 1))
    per_frame[:, NECK] = [0.20, 0.21, 0.22, 0.23, 0.30]
    path = tmp_path / "v_bone_lengths.json"
    path.write_text(json.dumps({"units": "metres", "predicted": {"per_frame": per_frame.tolist(),
                                                                 "frame_indices": list(range(5))}}))
    named = read_lengths_file(path)
    assert named[NECK] == pytest.approx(0.22) and named[0] == pytest.approx(LENGTHS[0])
    path.write_text(json.dumps({"predicted": {"per_frame": "x"}}))
    with pytest.raises(UserError):
        read_lengths_file(path)


def test_live_adjustment_makes_the_offline_choices_causally():
    """--live: the same rigid bones, non-rigid mode and size rule as offline; over the warm-up the size and the
    non-rigid reference are offline's functions on the frames so far; after it they are frozen, the rigid bones
    hold one length while the neck follows the lifter."""
    from common.inference.inference_pipeline import InferenceConfig, adjust_lengths, make_models
    from common.inference.live import LiveAdjustment, LiveLengths

    frames, warmup = 60, 40
    per_frame = np.tile(LENGTHS, (frames, 1))
    per_frame[:, NECK] *= 1 + 0.1 * np.sin(np.linspace(0, 6, frames))
    per_frame *= 1 + np.random.default_rng(2).normal(scale=0.02, size=per_frame.shape)
    world = _poses(per_frame, frames).astype(np.float32)
    track = Track2D(world[..., :2] * 500 + 300, np.ones((frames, 17), np.float32), 640, 480, world=world)
    _, source = make_models(InferenceConfig(video=None))
    live_lifter, _ = make_models(InferenceConfig(video=None), live=True)
    poses = live_lifter.lift(track)                       # mediapipe_raw: the world landmarks, root-relative
    target = np.asarray(source.lengths(poses[:warmup], track.replace(
        positions=track.positions[:warmup], confidence=track.confidence[:warmup], world=world[:warmup])))
    offline, meta = adjust_lengths(live_lifter, source, poses[:warmup], track.replace(
        positions=track.positions[:warmup], confidence=track.confidence[:warmup], world=world[:warmup]))
    adjustment = LiveAdjustment("blazepose", True, None, InferenceConfig.nonrigid, warmup, LiveLengths(None, 1.0))
    live_meta = adjustment.metadata()
    assert (live_meta["nonrigid"], live_meta["rigid_bones"]) == (meta["nonrigid"], meta["rigid_bones"])
    assert live_meta["size"].startswith(meta["size"]) and live_meta["warmup_frames"] == warmup
    out = np.stack([adjustment.step(poses[t], Track2D(track.positions[t:t + 1], track.confidence[t:t + 1], 640, 480,
                                                      world=world[t:t + 1]), target) for t in range(frames)])
    rigid = adjustment.rigid
    # the last warm-up frame: exactly offline's adjustment of the frames so far
    np.testing.assert_allclose(out[warmup - 1], offline[warmup - 1], rtol=1e-5)
    assert np.ptp(out[warmup - 1:, rigid], axis=0).max() < 1e-9      # rigid bones: constant once frozen
    assert np.ptp(out[:warmup, rigid], axis=0).max() > 1e-5          # (the pooled size moved during the warm-up)
    assert np.ptp(out[warmup:, NECK]) > 1e-3 and np.allclose(out[:, 1], out[:, 4])   # neck follows; left = right
    # frozen: after the warm-up neither the size, the reference nor the source's target move
    assert not adjustment.warming_up
    later = adjustment.step(poses[-1] * 1.5, Track2D(track.positions[-1:], track.confidence[-1:], 640, 480,
                                                     world=world[-1:] * 1.5), target * 1.3)
    np.testing.assert_allclose(later[rigid], out[-1, rigid])
    tall = LiveAdjustment("blazepose", True, 1.9, "rigid", warmup, LiveLengths(None, 1.0))
    held = tall.step(poses[0], Track2D(track.positions[:1], track.confidence[:1], 640, 480, world=world[:1]), target)
    assert limb_size(held) == pytest.approx(height_size(1.9, "blazepose"), rel=1e-5)
    assert tall.metadata()["size"].startswith("--height 1.9") and tall.metadata()["nonrigid"] == "rigid"
    with pytest.raises(UserError, match="warmup"):
        LiveAdjustment("blazepose", True, None, "soft", 0, LiveLengths(None, 1.0))


def test_held_out_choices_refit_rigidity_and_offset_without_the_person():
    """Leave one person out: the person whose neck bends is the only evidence that it is not rigid, and the
    convention offset of a person left out comes from the others' limbs only."""
    from bench.wild_recordings import held_out_choices
    from common.inference.length_sources import LIMB_PRIOR_FILE, centred_log_limbs
    from common.inference.recordings import Recording, Sequence

    rng = np.random.default_rng(3)
    def person(lengths, neck_bend, frames=200, seed=0):
        per_frame = np.tile(lengths, (frames, 1)) * (1 + rng.normal(scale=0.005, size=(frames, 16)))
        per_frame[:, NECK] *= 1 + neck_bend * np.sin(np.linspace(0, 20, frames))
        return _poses(per_frame, frames, seed)

    long_shins = LENGTHS.copy()
    long_shins[[2, 5]] *= 1.2
    worlds = {"nodder": person(LENGTHS, 0.15, seed=1), "still": person(long_shins, 0.0, seed=2)}
    recordings = [Recording(Sequence("demo", who, ("largest",) * 4, 200), [], [], world)
                  for who, world in worlds.items()]
    choices = held_out_choices(recordings)
    assert "neck" not in choices["still"]["rigid"] and len(choices["still"]["rigid"]) == 15   # fitted on the nodder
    assert len(choices["nodder"]["rigid"]) == 16                                               # fitted on "still"
    bodies = np.asarray(json.loads(LIMB_PRIOR_FILE.read_text())["blazepose"]["mean_centred_log"])
    np.testing.assert_allclose(choices["nodder"]["offset"],
                               centred_log_limbs(np.median(bone_lengths(worlds["still"]), axis=0)) - bodies, atol=1e-3)
    assert choices["nodder"]["offset"][1] - choices["still"]["offset"][1] > 0.1   # the long shins are the other's


def test_height_per_person_with_people_all_offline_and_live(monkeypatch, tmp_path):
    """``--height 1.9,1.6`` with ``--people all``: person 0 is sized to 1.9 m, person 1 to 1.6 m, a third keeps
    the size read from the video; one height is person 0's only; several heights with one person followed, a
    height out of range or not a number: one-line errors. Live: each person's adjustment holds their height."""
    import argparse

    import common.inference.inference_pipeline as pipeline
    import inference
    from common.inference.body_size import height_of, parse_heights
    from common.inference.live import LiveConfig, LivePerson, start_lengths
    from common.vision.video import VideoWriter

    assert parse_heights("1.78") == (1.78,) and parse_heights("1.78,1.62") == (1.78, 1.62)
    for bad in ("tall", "1.8,", "0", "-1.7", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_heights(bad)
    assert [height_of((1.9, 1.6), i) for i in range(3)] == [1.9, 1.6, None]
    assert height_of(1.8, 0) == 1.8 and height_of(1.8, 1) is None and height_of(None, 0) is None

    frames = 12
    video = tmp_path / "v.mp4"
    with VideoWriter(video, 640, 480, 25.0) as writer:
        for _ in range(frames):
            writer.write(np.zeros((480, 640, 3), np.uint8))
    tracks = []
    for identity, scale in enumerate((1.0, 0.9, 1.1)):
        world = (_poses(np.tile(LENGTHS * scale, (frames, 1)), frames, seed=identity)).astype(np.float32)
        pixels = world[..., :2] * 400 + 150 + 100 * identity
        tracks.append((identity, Track2D(pixels.astype(np.float32), np.ones((frames, 17), np.float32), 640, 480,
                                         world=world)))
    monkeypatch.setattr(pipeline, "extract_people", lambda *args: tracks)

    def sizes(heights: str) -> list[tuple[float, str]]:
        out = tmp_path / f"out{heights}"
        inference.run_cli(["--video", str(video), "--people", "all", "--height", heights, "--output", str(out),
                           "--no_progress"])
        found = []
        for identity in range(3):
            data = json.loads((out / f"v_person{identity}_bone_lengths.json").read_text())
            lengths = np.atleast_2d(np.asarray(data["predicted"]["per_frame"]))[0]
            found.append((limb_size(lengths), data["adjustment"]["size"]))
        return found

    (s0, m0), (s1, m1), (s2, m2) = sizes("1.9,1.6")
    assert s0 == pytest.approx(height_size(1.9, "blazepose"), rel=1e-4) and m0.startswith("--height 1.9")
    assert s1 == pytest.approx(height_size(1.6, "blazepose"), rel=1e-4) and m1.startswith("--height 1.6")
    assert s2 == pytest.approx(world_size(tracks[2][1]), rel=1e-4) and "raw 3D" in m2
    (s0, m0), (s1, m1), _ = sizes("1.9")
    assert m0.startswith("--height 1.9") and "raw 3D" in m1
    assert s1 == pytest.approx(world_size(tracks[1][1]), rel=1e-4)
    with pytest.raises(UserError, match="2 heights but one person is followed"):
        inference.main(["--video", str(video), "--height", "1.8,1.7"])
    with pytest.raises(UserError, match="metres"):
        inference.main(["--video", str(video), "--people", "all", "--height", "1.8,17"])
    with pytest.raises(UserError, match="--height: expected metres"):
        inference.main(["--video", str(video), "--height", "tall"])

    from common.inference.live import run_live

    live_out = tmp_path / "live.jsonl"
    monkeypatch.setattr("common.inference.live.BlazePoseSource", _NoPeople)
    run_live(LiveConfig(source=str(video), unpaced=True, jsonl=str(live_out), people="all", height=(1.9, 1.6)),
             *pipeline.make_models(pipeline.InferenceConfig(video=None, people="all", height=(1.9, 1.6)), live=True))
    header = json.loads(live_out.read_text().splitlines()[0])["header"]
    assert header["height_m"] == [1.9, 1.6] and header["adjustment"]["size"].startswith("--height 1.9")

    config = LiveConfig(source="", height=(1.9, 1.6))
    lifter, source = pipeline.make_models(pipeline.InferenceConfig(video=None), live=True)
    start = start_lengths(lifter, source, None)
    assert [LivePerson(lifter, source, start, config, i).adjustment.height for i in range(3)] == [1.9, 1.6, None]


class _NoPeople:
    """A stand-in BlazePose that finds nobody (a live run's header and empty frames, without the detector)."""

    def __init__(self, *args, **kwargs):
        pass

    def prepare(self, **kwargs):
        pass

    def detect_regions(self, rgb, regions):
        return [[] for _ in regions]

    def detect(self, rgb, roi=None):
        return []

    def track(self, rgb, window=None):
        return None

    def reset_tracking(self):
        pass

    def close(self):
        pass
