"""The length model in BlazePose's landmark convention: its training bank (Anny bodies through the limb prior's
keypoint regressor, limbs moved by the convention offset), its synthetic chunks through virtual cameras, the
trainer's convention flag and ``--lengths model`` for the ``mediapipe`` lifter (proportions at the person's size)."""
from __future__ import annotations

import json
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.core.bones import bone_lengths
from common.core.skeleton import BONE_NAMES, SYMMETRIC_BONES
from common.datasets.synthetic import LengthSampler, SyntheticBatchBuilder
from common.datasets.virtual_cameras import virtual_views
from common.inference.body_size import limb_size, world_size
from common.inference.inference_pipeline import InferenceConfig, adjust_lengths
from common.inference.length_sources import (LIMB_PRIOR_FILE, PRIOR_LIMBS, SIDELESS, centred_log_limbs,
                                             make_length_source, offset_limbs, population_mean_lengths,
                                             read_lengths_file)
from common.inference.lifters import make_lifter
from common.models.proportion_model import ProportionLengthModel
from common.utils.checkpoint import load_checkpoint, save_checkpoint
from common.utils.errors import UserError
from common.vision.tracking import Track2D
from dataset_files import write_dataset

torch.set_num_threads(1)
OFFSET = np.array([-0.03, -0.06, 0.02, 0.07])
LIMBS = [i for limb in PRIOR_LIMBS for i in SIDELESS[limb]]


def _bank(n: int = 400, seed: int = 0) -> np.ndarray:
    """(n, 16) plausible BlazePose-convention lengths: the population mean times per-bone noise, pairs equal."""
    rng = np.random.default_rng(seed)
    mean = population_mean_lengths("blazepose")
    bank = mean * np.exp(rng.normal(0, 0.04, (n, 16)))
    for a, b in SYMMETRIC_BONES:
        bank[:, b] = bank[:, a]
    return bank.astype(np.float32)


def test_offset_limbs_moves_the_four_limbs_only_and_keeps_their_size():
    bank = _bank(50).astype(np.float64)
    moved = offset_limbs(bank, OFFSET)
    others = [i for i in range(16) if i not in LIMBS]
    np.testing.assert_array_equal(moved[:, others], bank[:, others])
    np.testing.assert_allclose(centred_log_limbs(moved) - centred_log_limbs(bank), np.broadcast_to(OFFSET, (50, 4))
                               - OFFSET.mean(), atol=1e-12)
    np.testing.assert_allclose(limb_size(moved), limb_size(bank) * np.exp(OFFSET.mean()), rtol=1e-12)


def test_blazepose_bank_is_the_limb_priors_bodies_moved_by_the_offset():
    from common.inference.landmark_bodies import blazepose_bank, coco_limb_lengths

    plain, moved = blazepose_bank(12, 3, np.zeros(4)), blazepose_bank(12, 3, OFFSET)
    assert plain.shape == moved.shape == (12, 16) and moved.dtype == np.float32
    for a, b in SYMMETRIC_BONES:
        np.testing.assert_array_equal(moved[:, a], moved[:, b])
    for limb, shift in zip(PRIOR_LIMBS, OFFSET):
        np.testing.assert_allclose(moved[:, SIDELESS[limb]] / plain[:, SIDELESS[limb]], np.exp(shift), rtol=1e-5)
    limbs, bones = coco_limb_lengths(12, 3)[:2]  # the same bodies, the regressor the limb prior uses
    np.testing.assert_allclose(plain[:, [SIDELESS[limb][0] for limb in PRIOR_LIMBS]], limbs, rtol=1e-5)
    prior = np.asarray(json.loads(LIMB_PRIOR_FILE.read_text())["blazepose"]["mean_bone_lengths_m"])
    assert np.all(np.abs(plain.mean(axis=0) / prior - 1) < 0.1)  # a dozen bodies near the 4000 bodies' mean


def test_virtual_camera_chunks_recompose_the_bank_lengths():
    """Real (here: the tiny data set's) motion with the bank's lengths, through phone-like cameras: every frame of
    every chunk has exactly the sampled lengths, and the 2D is the projection of those skeletons."""
    from common.datasets.dataset import load_dataset
    from common.datasets.virtual_cameras import world_motions
    folder = write_dataset(tempfile.mkdtemp(), "tiny", {"S1": ["Walking 1"]}, frames=200, detections_px=None)
    dataset = load_dataset(folder, "tiny", "gt", need_3d=True, subjects=["S1"])
    views = virtual_views(world_motions(dataset.world_3d, ["S1"]), 3, 100, seed=4, noise=False)
    builder = SyntheticBatchBuilder(views, 64, 16, torch.device("cpu"), noise_2d_px=3.0)
    sampler = LengthSampler("smpl", torch.device("cpu"), bank=_bank())
    gen = torch.Generator().manual_seed(0)
    ids = torch.arange(builder.num_chunks)
    batch = builder.sample(ids, torch.zeros(len(ids), dtype=torch.bool), sampler, gen)
    assert batch.keypoints_2d.shape == (len(ids), 64, 17, 2) and batch.lengths.shape == (len(ids), 16)
    recomposed = bone_lengths(batch.poses_3d.double())
    np.testing.assert_allclose(recomposed.numpy(), np.broadcast_to(batch.lengths[:, None].numpy(),
                                                                   recomposed.shape), rtol=1e-4)
    bank_rows = {tuple(np.round(r, 5)) for r in sampler.bank.numpy()}
    assert all(tuple(np.round(r, 5)) in bank_rows for r in batch.lengths.numpy())


def _train(argv):
    from train import main
    main(argv)


def test_trainer_blazepose_convention_films_virtual_cameras_and_selects_on_heldout_people(tmp_path, capsys):
    folder = write_dataset(tmp_path / "d", "tiny", {s: ["Walking 1"] for s in ("S1", "S5", "S9")}, frames=200,
                           detections_px=None)
    np.savez(tmp_path / "bank.npz", data=_bank(200))
    common = ["-t", "length", "-d", "tiny", "--data_dir", str(folder), "-k", "gt", "-str", "S1,S5", "-ste", "S9",
              "-bi", "--length_arch", "proportion", "-e", "1", "-b", "8", "-l", "64", "--segment_shift", "32",
              "--hidden", "16", "--length_aug_type", "smpl", "-bla", str(tmp_path / "bank.npz"), "--device", "cpu"]
    _train(common + ["--length_convention", "blazepose", "--cameras", "virtual", "--virtual_views", "2",
                     "--virtual_segment", "100", "-c", str(tmp_path / "c")])
    ckpt = load_checkpoint(tmp_path / "c" / "epoch_best.bin")
    assert ckpt["length_convention"] == "blazepose"
    assert ckpt["select_on"] == "synthetic_test"  # what picked epoch_best.bin, not the --select_on default
    history = ckpt["history"]
    assert np.isnan(history["val"][-1]) and np.isnan(history["test"][-1])  # real subjects: Human3.6M lengths
    assert np.isfinite(history["synthetic_test"][-1]) and np.isfinite(history["synthetic_heldout_probe_mae"][-1])
    assert "on synthetic_test" in capsys.readouterr().out
    with pytest.raises(UserError, match="needs -t length and -bla"):
        _train([a for a in common if a not in ("-bla", str(tmp_path / "bank.npz"))]
               + ["--length_convention", "blazepose", "-c", str(tmp_path / "e")])


def _checkpoint(path, convention: str, mean: np.ndarray) -> str:
    torch.manual_seed(0)
    model = ProportionLengthModel(width=8, mean_lengths=torch.as_tensor(mean))
    with torch.no_grad():  # a model that reads the 2D (its output layer starts at zero)
        model.stats_linear.weight.normal_(0, 0.05)
    save_checkpoint(path, {"epoch": 1, "lr": 1e-3, "model_pos": model.state_dict(),
                           "length_model_config": model.config(), "length_convention": convention})
    return str(path)


def _track(frames: int = 30) -> Track2D:
    rng = np.random.default_rng(1)
    positions = (np.array([540, 960], np.float32) + rng.normal(0, 150, (frames, 17, 2))).astype(np.float32)
    world = rng.normal(0, 0.3, (frames, 17, 3)).astype(np.float32)
    return Track2D(positions, np.ones((frames, 17), np.float32), 1080, 1920, world=world)


def _mediapipe_source(tmp_path, name: str):
    """(config, the mediapipe lifter, length source ``name`` with a BlazePose-convention checkpoint, its bank mean)."""
    mean = population_mean_lengths("blazepose").astype(np.float32)
    config = vars(InferenceConfig(video="v.mp4", output=str(tmp_path), progress=False, lengths=name,
                                  bidirectional=True, length_ckpt=_checkpoint(tmp_path / "b.bin", "blazepose", mean)))
    lifter = make_lifter("mediapipe", config)
    source = make_length_source(name, config, lifter)
    assert source.own_size and not source.causal
    return config, lifter, source, mean


def test_model_lengths_for_mediapipe_take_the_models_proportions_at_the_persons_size(tmp_path):
    config, lifter, source, mean = _mediapipe_source(tmp_path, "model")
    track = _track()
    poses = (np.random.default_rng(2).normal(0, 0.2, (30, 17, 3))).astype(np.float32)
    predicted = source.lengths(poses, track)
    assert predicted.shape == (16,) and not np.allclose(predicted, mean, rtol=1e-3)  # it read the 2D
    lengths, meta = adjust_lengths(lifter, source, poses, track, nonrigid="rigid")
    assert "raw 3D" in meta["size"]
    assert limb_size(lengths) == pytest.approx(world_size(track), rel=1e-5)
    np.testing.assert_allclose(centred_log_limbs(lengths), centred_log_limbs(predicted), atol=1e-5)
    sized, _ = adjust_lengths(lifter, source, poses, track, height=1.8, nonrigid="rigid")
    np.testing.assert_allclose(sized / lengths, np.full(16, sized[1] / lengths[1]), rtol=1e-5)
    # a Human3.6M-convention checkpoint distorts BlazePose's landmarks: refused in one line, and the reverse
    h36m = vars(InferenceConfig(video="v.mp4", output=str(tmp_path), progress=False, lengths="model",
                                bidirectional=True, length_ckpt=_checkpoint(tmp_path / "h.bin", "h36m", mean)))
    with pytest.raises(UserError, match="predicts h36m-convention lengths.*--length_convention blazepose"):
        make_length_source("model", h36m, make_lifter("mediapipe", h36m))
    h36m_lifter = SimpleNamespace(name="videopose3d", convention="h36m", length_model=None)
    with pytest.raises(UserError, match="predicts blazepose-convention lengths"):
        make_length_source("model", config, h36m_lifter)


def _posed(lengths: np.ndarray, frames: int, noise: float, seed: int) -> np.ndarray:
    """(frames, 17, 3) poses with random bone directions whose bone lengths are ``lengths`` (16,) times per-frame,
    per-bone factors exp(N(0, noise))."""
    from common.core.bones import recompose
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(frames, 16, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return recompose(directions, lengths * np.exp(rng.normal(0, noise, (frames, 16)))).astype(np.float32)


def test_model_prior_weighs_the_models_proportions_against_the_views_own_limbs(tmp_path):
    """``--lengths model_prior`` = ``prior``'s combination with the model's limb proportions as the prior's mean:
    each limb lands between the view's own and the model's reading, next to the view's when the view measures
    its limbs steadily and next to the model's when the view's limbs jump from frame to frame; its size is the
    view's; offline only; a Human3.6M-convention checkpoint is refused for BlazePose's landmarks."""
    config, lifter, source, mean = _mediapipe_source(tmp_path, "model_prior")
    track = _track()
    model = centred_log_limbs(make_length_source("model", config, lifter).lengths(None, track))
    own_lengths = mean * np.exp(np.random.default_rng(5).normal(0, 0.06, 16)).astype(np.float32)
    for a, b in SYMMETRIC_BONES:
        own_lengths[b] = own_lengths[a]
    assert np.abs(centred_log_limbs(own_lengths) - model).min() > 0.005  # the two readings differ on every limb
    own_source = make_length_source("self", config, lifter)
    shares = {}
    for noise in (0.005, 0.1, 0.5):
        poses = _posed(own_lengths, 30, noise, seed=6)
        own = centred_log_limbs(own_source.lengths(poses, track))  # the view's own: per-bone medians
        combined = centred_log_limbs(source.lengths(poses, track))
        share = (combined - own) / (model - own)  # 0: the view's own limbs, 1: the model's
        assert np.all((share > -1e-6) & (share < 1 + 1e-6)), (noise, share)
        shares[noise] = share
        np.testing.assert_allclose(limb_size(source.lengths(poses, track)), limb_size(own_lengths), rtol=noise * 2)
    assert np.all(shares[0.005] < 0.05) and np.all(shares[0.5] > 0.9)
    assert np.all(shares[0.005] < shares[0.1]) and np.all(shares[0.1] < shares[0.5])
    prior = make_length_source("prior", config, lifter).lengths(_posed(own_lengths, 30, 0.1, 6), track)
    assert not np.allclose(centred_log_limbs(prior), centred_log_limbs(source.lengths(_posed(own_lengths, 30, 0.1, 6),
                                                                                         track)), atol=1e-4)
    with pytest.raises(UserError, match="--live needs a causal length source"):
        make_length_source("model_prior", config, lifter, live=True)
    h36m = dict(config, length_ckpt=_checkpoint(tmp_path / "h.bin", "h36m", mean))
    with pytest.raises(UserError, match="--lengths model_prior: .* predicts h36m-convention lengths"):
        make_length_source("model_prior", h36m, lifter)


@pytest.mark.slow
@pytest.mark.parametrize("lengths", ["model", "model_prior"])
def test_inference_mediapipe_lengths_model_on_a_real_clip(real_clip, tmp_path, lengths):
    import inference

    ckpt = _checkpoint(tmp_path / "b.bin", "blazepose", population_mean_lengths("blazepose").astype(np.float32))
    inference.main(["--video", str(real_clip), "--lifter", "mediapipe", "--lengths", lengths, "--length_ckpt", ckpt,
                    "-bi", "--output", str(tmp_path / "out"), "--max_frames", "12"])
    named = read_lengths_file(next((tmp_path / "out").glob("*_bone_lengths.json")))
    lengths = np.array([named[i] for i in range(len(BONE_NAMES))])
    assert np.all((lengths > 0.03) & (lengths < 0.7))
    for a, b in SYMMETRIC_BONES:
        assert lengths[a] == pytest.approx(lengths[b])


def test_wild_lengths_verdict_needs_every_person_sequence_and_lopo_names_every_person(tmp_path):
    from bench.wild_lengths import parse_lopo, verdict

    def scores(model: float, prior: float) -> dict:
        return {"model": {"proportions_off_pct": model}, "prior": {"proportions_off_pct": prior}}

    table = {("a", "cam01"): scores(1.0, 2.0), ("a", "cam02"): scores(3.0, 1.0),   # a: mean 2.0 vs 1.5: loses
             ("b", "cam01"): scores(1.0, 1.5)}
    line = verdict(table, "model", "prior")
    assert "on 1/2 person-sequences" in line and "a 2.00 vs 1.50 %" in line and "on 2/3 views" in line
    ckpt = tmp_path / "m.bin"
    ckpt.write_bytes(b"x")
    assert parse_lopo([f"man={ckpt}", f"woman={ckpt}"]) == {"man": str(ckpt), "woman": str(ckpt)}
    with pytest.raises(UserError, match="a checkpoint for each"):
        parse_lopo([f"man={ckpt}"])
    with pytest.raises(UserError, match="person=checkpoint"):
        parse_lopo([f"child={ckpt}"])
