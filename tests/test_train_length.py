"""Training the bone-length model: synthetic batches, resume equality, DDP, the paper's commands."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.core.bones import bone_lengths
from common.core.camera import project_to_2d
from common.utils.checkpoint import load_checkpoint
from common.utils.errors import UserError
from common.datasets.dataset import load_dataset
from common.core.skeleton import NUM_BONES, flip_bone_lengths, flip_poses
from common.datasets.keypoint_noise import DETECTOR_AR
from common.core.camera import world_up_in_camera
from common.datasets.synthetic import MIN_DEPTH, LengthSampler, SyntheticBatchBuilder, epoch_order, lower_ankle_height
from common.models.length_probe import NUM_FEATURES
from common.utils.fileio import load_npz
from common.train.train_length import split_heldout_people
from dataset_files import REST_LENGTHS, write_dataset
from helpers import free_port

REPO = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny_length"))


@pytest.fixture(scope="module")
def tiny_views(tiny_dir):
    ds = load_dataset(tiny_dir, "tiny", "detections")
    return ds, ds.fetch(["S1", "S5"], require_3d=True)


# ---------------------------------------------------------------- synthetic batches

def test_batch_has_sampled_lengths_and_matches_camera(tiny_views):
    _, views = tiny_views
    builder = SyntheticBatchBuilder(views, chunk_len=64, segment_shift=32, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    lengths = torch.rand(6, NUM_BONES, generator=gen) * 0.3 + 0.1
    ids = torch.tensor([0, 1, 5, 7, 9, builder.num_chunks - 1])
    translation = torch.randn(6, 3, generator=gen) * 0.5
    batch = builder.build(ids, lengths, torch.zeros(6, dtype=torch.bool), translation)
    assert batch.keypoints_2d.shape == (6, 64, 17, 2)
    # every frame of every sample has exactly the sampled lengths after recomposition
    torch.testing.assert_close(bone_lengths(batch.poses_3d), lengths[:, None].expand(-1, 64, -1),
                               atol=1e-5, rtol=0)
    # projection matches the camera model of the chunk's sequence, applied independently
    seq = builder.chunk_sequence[ids]
    for row in range(6):
        cam = views[int(seq[row])].camera
        expected = project_to_2d(batch.poses_3d[row].numpy().astype(np.float64), cam.intrinsic)
        np.testing.assert_allclose(batch.keypoints_2d[row].numpy(), expected, atol=1e-5)
    # the pelvis follows the ground-truth trajectory plus the (depth-floored) translation
    start = int(builder.chunk_starts[ids[0]])
    traj = builder.trajectories[start:start + 64]
    shift = batch.poses_3d[0, :, 0] - traj
    assert torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-5)
    assert torch.allclose(shift[0, :2], translation[0, :2], atol=1e-5)
    assert (batch.poses_3d[..., 0, 2] >= MIN_DEPTH - 1e-5).all()


def test_batch_flip_is_mirror_image(tiny_views):
    _, views = tiny_views
    builder = SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"))
    lengths = torch.linspace(0.1, 0.4, NUM_BONES).repeat(3, 1)  # deliberately asymmetric
    ids = torch.tensor([0, 2, 3])
    tr = torch.zeros(3, 3)
    plain = builder.build(ids, lengths, torch.zeros(3, dtype=torch.bool), tr)
    flipped = builder.build(ids, lengths, torch.ones(3, dtype=torch.bool), tr)
    torch.testing.assert_close(flipped.keypoints_2d, flip_poses(plain.keypoints_2d), atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped.lengths, flip_bone_lengths(lengths))
    torch.testing.assert_close(bone_lengths(flipped.poses_3d), flipped.lengths[:, None].expand(-1, 32, -1),
                               atol=1e-5, rtol=0)


def test_floor_placement_keeps_longer_legs_on_the_floor(tiny_views):
    _, views = tiny_views
    kwargs = dict(chunk_len=32, segment_shift=32, device=torch.device("cpu"))
    floor = SyntheticBatchBuilder(views, placement="floor", **kwargs)
    paper = SyntheticBatchBuilder(views, placement="paper", **kwargs)
    ids = torch.tensor([0, 1, 2])
    lengths = torch.as_tensor(REST_LENGTHS, dtype=torch.float32).repeat(3, 1)
    lengths[:, [1, 2, 4, 5]] *= 1.25  # thighs and calves a quarter longer
    translation = torch.tensor([[0.4, -0.3, 0.2], [0.0, 0.5, 0.0], [-0.2, 0.1, -0.3]])
    no_flip = torch.zeros(3, dtype=torch.bool)
    up = torch.as_tensor(np.stack([world_up_in_camera(views[int(i)].camera)
                                   for i in floor.chunk_sequence[ids]]))
    frames = floor.chunk_starts[ids][:, None] + torch.arange(32)
    original = floor.foot_heights[frames].mean(1)  # the motion's own lower ankle, along the world's up
    on_floor = lower_ankle_height(floor.build(ids, lengths, no_flip, translation).poses_3d, up).mean(1)
    torch.testing.assert_close(on_floor, original, atol=1e-5, rtol=0)
    # the paper's recipe keeps the pelvis trajectory: longer legs put the feet below the floor
    sunk = lower_ankle_height(paper.build(ids, lengths, no_flip, torch.zeros(3, 3)).poses_3d, up).mean(1)
    assert (original - sunk > 0.05).all()
    # the translation moves the body along the floor only, and the pelvis still stays in front of the camera
    still = floor.build(ids, lengths, no_flip, torch.zeros(3, 3)).poses_3d
    moved = floor.build(ids, lengths, no_flip, translation).poses_3d
    torch.testing.assert_close(((moved - still)[:, :, 0] * up[:, None]).sum(-1), torch.zeros(3, 32), atol=1e-5,
                               rtol=0)
    assert (moved[..., 0, 2] >= MIN_DEPTH - 1e-5).all()


def test_yaw_turns_the_motion_about_the_vertical_only(tiny_views):
    from common.datasets.synthetic import rotation_about
    axis = torch.nn.functional.normalize(torch.tensor([[0.1, -0.9, 0.3]]), dim=-1)
    turn = rotation_about(axis, torch.tensor([0.7]))[0]
    torch.testing.assert_close(turn @ turn.T, torch.eye(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(turn @ axis[0], axis[0])
    side = torch.nn.functional.normalize(torch.linalg.cross(axis[0], torch.tensor([1.0, 0.0, 0.0])), dim=0)
    assert float(side @ (turn @ side)) == pytest.approx(np.cos(0.7), abs=1e-6)
    _, views = tiny_views
    builder = SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"),
                                    placement="floor")
    ids, no_flip = torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.bool)
    lengths = torch.as_tensor(REST_LENGTHS, dtype=torch.float32).repeat(3, 1)
    plain = builder.build(ids, lengths, no_flip, torch.zeros(3, 3))
    torch.testing.assert_close(builder.build(ids, lengths, no_flip, torch.zeros(3, 3), torch.zeros(3)).poses_3d,
                               plain.poses_3d, atol=1e-5, rtol=0)
    turned = builder.build(ids, lengths, no_flip, torch.zeros(3, 3), torch.tensor([0.5, 1.5, 3.0])).poses_3d
    up = builder.ups[builder.chunk_sequence[ids]][:, None, None]
    # same lengths, every joint at the same height, the same distances from the chunk's mean pelvis, other 2D
    torch.testing.assert_close(bone_lengths(turned), lengths[:, None].expand(-1, 32, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close((turned * up).sum(-1), (plain.poses_3d * up).sum(-1), atol=1e-5, rtol=0)
    for poses in (plain.poses_3d, turned):
        assert (poses[..., 0, 2] >= MIN_DEPTH - 1e-5).all()
    def spread(poses):
        return torch.linalg.vector_norm(poses - poses[:, :, :1].mean(1, keepdim=True), dim=-1)
    torch.testing.assert_close(spread(turned), spread(plain.poses_3d), atol=1e-4, rtol=0)
    assert (turned - plain.poses_3d).abs().amax() > 0.1
    # sample() draws the yaw only when asked, so runs without it keep their random streams
    sampler = LengthSampler("random_norm_all", torch.device("cpu"), subject_lengths=REST_LENGTHS[None])
    draws = [SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"), yaw=yaw)
             .sample(ids, no_flip, sampler, torch.Generator().manual_seed(3)) for yaw in (False, True)]
    torch.testing.assert_close(draws[0].lengths, draws[1].lengths)
    assert not torch.allclose(draws[0].keypoints_2d, draws[1].keypoints_2d)


def test_limb_mixing_moves_a_limb_with_the_body(tiny_views):
    from common.datasets.synthetic import LIMBS, body_frame, mix_limbs
    gen = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(3, 4, NUM_BONES, 3, generator=gen), dim=-1)
    every = torch.ones(3, len(LIMBS), dtype=torch.bool)
    # a chunk that takes its own limbs is unchanged
    torch.testing.assert_close(mix_limbs(directions, torch.arange(3), every), directions, atol=1e-5, rtol=0)
    # chunk 0 takes chunk 1's right arm (bones 14, 15) only: the arm relative to the thorax is chunk 1's, the
    # other bones are chunk 0's, and turning the donor as a whole changes nothing
    mask = torch.zeros(3, len(LIMBS), dtype=torch.bool)
    mask[0, 3] = True
    donors = torch.tensor([1, 2, 0])
    mixed = mix_limbs(directions, donors, mask)
    others = [b for b in range(NUM_BONES) if b not in (14, 15)]
    torch.testing.assert_close(mixed[0, :, others], directions[0, :, others])
    torch.testing.assert_close(mixed[1:], directions[1:])
    thorax = LIMBS[3][1]
    local = lambda d, frame: torch.einsum("lji,lkj->lki", frame, d)  # noqa: E731  (frame^T d)
    torch.testing.assert_close(local(mixed[0, :, [14, 15]], body_frame(mixed[0], *thorax)),
                               local(directions[1, :, [14, 15]], body_frame(directions[1], *thorax)),
                               atol=1e-5, rtol=0)
    from common.datasets.synthetic import rotation_about
    turn = rotation_about(torch.nn.functional.normalize(torch.tensor([[0.3, 0.2, 0.9]]), dim=-1),
                          torch.tensor([1.1]))[0]
    turned = directions.clone()
    turned[1] = directions[1] @ turn.T
    torch.testing.assert_close(mix_limbs(turned, donors, mask)[0], mixed[0], atol=1e-5, rtol=0)
    # in a batch: the sampled lengths stay; no limb mixing draws unless asked (the random streams of runs without it)
    _, views = tiny_views
    sampler = LengthSampler("random_norm_all", torch.device("cpu"), subject_lengths=REST_LENGTHS[None])
    ids, no_flip = torch.tensor([0, 1, 2, 3]), torch.zeros(4, dtype=torch.bool)
    draws = [SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"),
                                   placement="floor", limb_mix=p)
             .sample(ids, no_flip, sampler, torch.Generator().manual_seed(3)) for p in (0.0, 1.0)]
    torch.testing.assert_close(draws[0].lengths, draws[1].lengths)
    torch.testing.assert_close(bone_lengths(draws[1].poses_3d), draws[1].lengths[:, None].expand(-1, 32, -1),
                               atol=1e-5, rtol=0)
    assert not torch.allclose(draws[0].keypoints_2d, draws[1].keypoints_2d)
    with pytest.raises(UserError, match="limb mixing"):
        SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"), limb_mix=1.5)


def test_jittered_chunks_are_marked_and_the_others_exact(tiny_views):
    """(issue 17) --jitter_chunks q: a share q of the chunks get the demo detections' AR(1) jitter (per-joint std
    of keypoint_noise.NOISE_STD_PX, pixels of the chunk's camera), marked in the batch; the other chunks are the
    exact projections of the same draw (the jitter is drawn after the batch is built)."""
    from common.datasets.keypoint_noise import NOISE_STD_PX
    _, views = tiny_views
    sampler = LengthSampler("random_norm_all", torch.device("cpu"), subject_lengths=REST_LENGTHS[None])
    ids = torch.arange(40) % 8
    no_flip = torch.zeros(40, dtype=torch.bool)
    exact, jittered = (SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"),
                                             jitter_chunks=q).sample(ids, no_flip, sampler,
                                                                     torch.Generator().manual_seed(3))
                       for q in (0.0, 0.5))
    assert exact.jittered is None and jittered.jittered.dtype == torch.bool
    marked = jittered.jittered
    assert 5 <= int(marked.sum()) <= 35
    torch.testing.assert_close(jittered.keypoints_2d[~marked], exact.keypoints_2d[~marked])
    torch.testing.assert_close(jittered.lengths, exact.lengths)
    pixels = (jittered.keypoints_2d - exact.keypoints_2d)[marked] * views[0].camera.res_w / 2.0
    std = pixels.std(dim=(0, 1, 3)).numpy()  # per joint, pixels (every tiny view has the same image width)
    np.testing.assert_allclose(std, NOISE_STD_PX, rtol=0.25)
    with pytest.raises(UserError, match="jittered chunks"):
        SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"), jitter_chunks=2.0)


def test_person_chunks_share_one_bank_row_per_person(tiny_views):
    """(issue 17) --person_chunks K: every K consecutive chunks of a batch are one person (one bank row, ids in
    the batch), a short last group included; K = 1 draws exactly what the builder drew before (no ids)."""
    from common.train.train_length import people_from
    _, views = tiny_views
    bank = REST_LENGTHS[None] * (0.8 + 0.4 * np.random.default_rng(0).random((50, 1)))
    sampler = LengthSampler("smpl", torch.device("cpu"), bank=bank)
    ids = torch.arange(10) % 8
    no_flip = torch.zeros(10, dtype=torch.bool)
    one, four = (SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"),
                                       person_chunks=k).sample(ids, no_flip, sampler, torch.Generator().manual_seed(3))
                 for k in (1, 4))
    assert one.person is None
    assert four.person.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    for person in range(3):
        rows = four.lengths[four.person == person]
        torch.testing.assert_close(rows, rows[:1].expand_as(rows))
    assert len({round(float(r[0]), 6) for r in four.lengths}) == 3
    assert people_from(torch.tensor([4, 4, 5, 7, 7])).tolist() == [0, 0, 1, 2, 2]  # a micro-batch renumbered
    with pytest.raises(UserError, match="chunks per synthetic person"):
        SyntheticBatchBuilder(views, chunk_len=32, segment_shift=32, device=torch.device("cpu"), person_chunks=0)


def test_length_arch_and_yaw_defaults():
    from common.train.arguments import parse_args
    from common.train.train_length import length_arch, synthetic_placement, synthetic_yaw
    args = parse_args(["-t", "length", "-bi"])
    assert (length_arch(args), synthetic_placement(args), synthetic_yaw(args)) == ("proportion", "floor", False)
    args = parse_args(["-t", "length", "-bi", "--length_arch", "evidence"])
    assert (length_arch(args), synthetic_placement(args), synthetic_yaw(args)) == ("evidence", "floor", True)
    args = parse_args(["-t", "length"])
    assert (length_arch(args), synthetic_placement(args), synthetic_yaw(args)) == ("gru", "paper", False)
    assert synthetic_yaw(parse_args(["-t", "length", "--synthetic_yaw", "on"]))
    with pytest.raises(UserError, match="--length_arch evidence gives one vector per sequence"):
        length_arch(parse_args(["-t", "length", "--length_arch", "evidence"]))


def test_noise_2d_px_adds_pixel_noise_to_clean_projection(tiny_views):
    _, views = tiny_views
    kwargs = dict(chunk_len=32, segment_shift=32, device=torch.device("cpu"))
    clean = SyntheticBatchBuilder(views, **kwargs)
    noisy = SyntheticBatchBuilder(views, noise_2d_px=5.0, **kwargs)
    sampler = LengthSampler("smpl", torch.device("cpu"), bank=np.tile(REST_LENGTHS, (4, 1)).astype(np.float32))
    ids = torch.arange(min(4, clean.num_chunks)).repeat(64)
    flips = torch.zeros(len(ids), dtype=torch.bool)
    a = clean.sample(ids, flips, sampler, torch.Generator().manual_seed(3))
    b = noisy.sample(ids, flips, sampler, torch.Generator().manual_seed(3))
    torch.testing.assert_close(b.lengths, a.lengths)  # same draws; only the 2D differ
    res_w = views[0].camera.res_w
    diff_px = (b.keypoints_2d - a.keypoints_2d) * res_w / 2
    assert abs(float(diff_px.std()) - 5.0) < 0.5
    lag1 = float((diff_px[:, 1:] * diff_px[:, :-1]).mean() / diff_px.var())
    assert abs(lag1 - DETECTOR_AR) < 0.05


def test_samplers_symmetric_and_every_sample_perturbed():
    gen = torch.Generator().manual_seed(1)
    subj = np.tile(REST_LENGTHS, (3, 1)).astype(np.float32)
    unif = LengthSampler("random_unif", torch.device("cpu"), subject_lengths=subj).sample(500, gen)
    assert ((unif[:, 1] - 0.44).abs() > 1e-6).float().mean() > 0.99  # every sample perturbed
    for kind_lengths in (unif, LengthSampler("random_norm_train", torch.device("cpu"),
                                             subject_lengths=subj + np.random.rand(3, 16) * 0.01).sample(50, gen)):
        for a, b in [(0, 3), (1, 4), (2, 5), (10, 13), (11, 14), (12, 15)]:
            assert torch.equal(kind_lengths[:, a], kind_lengths[:, b])
    ids, flips = epoch_order(10, True, gen, torch.device("cpu"))
    assert sorted(ids.tolist()) == sorted(list(range(10)) * 2) and int(flips.sum()) == 10


# ---------------------------------------------------------------- training end to end

def _train(argv):
    from train import main
    main(argv)


def _common_flags(tiny_dir, ckpt, extra=()):
    return ["-t", "length", "-d", "tiny", "--data_dir", str(tiny_dir), "-k", "detections",
            "-c", str(ckpt), "-b", "8", "-l", "64", "--segment_shift", "64", "--hidden", "32",
            "--length_aug_type", "random_norm_all", "--device", "cpu", "-drop", "0.1", *extra]


@pytest.mark.slow
def test_resume_equals_uninterrupted(tiny_dir, tmp_path):
    torch.set_num_threads(1)
    full = tmp_path / "full"
    _train(_common_flags(tiny_dir, full, ["-e", "2", "-bi"]))
    part = tmp_path / "part"
    _train(_common_flags(tiny_dir, part, ["-e", "1", "-bi"]))
    _train(_common_flags(tiny_dir, part, ["-e", "2", "-bi", "--resume", str(part / "final.bin")]))
    a = load_checkpoint(full / "final.bin")
    b = load_checkpoint(part / "final.bin")
    assert a["epoch"] == b["epoch"] == 2
    assert a["history"]["train"] == b["history"]["train"]
    assert a["history"]["test"] == b["history"]["test"]
    for k in a["model_pos"]:
        assert torch.equal(a["model_pos"][k], b["model_pos"][k]), k
    assert (full / "epoch_best.bin").is_file() and (full / "length_history.json").is_file()
    # every validation records the model, the bank's mean and the linear probe on the same data, both errors
    history = json.loads((full / "length_history.json").read_text())
    for name in ("synthetic_heldout", "test", "test_per_subject"):
        for source in ("model", "mean", "probe"):
            for metric in ("mae", "size_free", "size_pct"):
                assert len(history[f"{name}_{source}_{metric}"]) == 2, (name, source, metric)
    # pooled per subject: the constant mean's row is unchanged, the model's and the probe's are their own
    assert history["test_per_subject_mean_mae"] == history["test_mean_mae"]
    assert history["test_per_subject_model_mae"] != history["test_model_mae"]
    assert history["synthetic_heldout_model_mae"][-1] == pytest.approx(history["synthetic_test"][-1])
    assert a["length_mean"].shape == (16,) and a["length_probe"]["weight"].shape == (NUM_FEATURES, 16)
    # the proportion model carries the same probe (its eval-mode output blends the two)
    assert torch.equal(a["model_pos"]["probe_weight"], a["length_probe"]["weight"].float())


@pytest.mark.slow
def test_evidence_model_trains_resumes_exactly_under_the_cosine_schedule(tiny_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    flags = ["-bi", "--length_arch", "evidence", "--evidence_width", "16", "--lr_schedule", "cosine"]
    full = tmp_path / "full"
    _train(_common_flags(tiny_dir, full, ["-e", "3", *flags]))
    assert "turned about the vertical), model: evidence" in capsys.readouterr().out
    part = tmp_path / "part"
    _train(_common_flags(tiny_dir, part, ["-e", "1", *flags]))
    _train(_common_flags(tiny_dir, part, ["-e", "3", *flags, "--resume", str(part / "final.bin")]))
    a, b = load_checkpoint(full / "final.bin"), load_checkpoint(part / "final.bin")
    assert a["history"]["train"] == b["history"]["train"]
    for k in a["model_pos"]:
        assert torch.equal(a["model_pos"][k], b["model_pos"][k]), k
    assert "evidence.0.weight" in a["model_pos"] and a["length_model_config"]["evidence_width"] == 16
    assert all(v > 0 for v in a["history"]["train"])  # the length error in mm, not the likelihood beside it
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2.5e-5)  # the last epoch's: 1e-4 x 0.25
    # the checkpoint loads as what it is wherever a length model is read
    from common.models.model_loading import load_model
    loaded = load_model(full / "epoch_best.bin", ("length",), bidirectional=True)
    assert loaded.model.evidence_width == 16
    # another schedule is another recipe
    with pytest.raises(UserError, match="--lr_schedule cosine -> exponential"):
        _train(_common_flags(tiny_dir, part, ["-e", "4", "-bi", "--length_arch", "evidence", "--evidence_width",
                                              "16", "--resume", str(part / "final.bin")]))


@pytest.mark.slow
def test_person_chunks_train_the_measurements_and_their_per_subject_row(tiny_dir, tmp_path, capsys):
    """(issue 17) --person_chunks 2: the evidence model gets its measurement outputs (read back from the weights),
    the per-subject validation row is recorded from them, and the flag is the evidence model's only."""
    torch.set_num_threads(1)
    flags = ["-bi", "--length_arch", "evidence", "--evidence_width", "16", "--person_chunks", "2"]
    _train(_common_flags(tiny_dir, tmp_path, ["-e", "1", *flags]))
    ckpt = load_checkpoint(tmp_path / "final.bin")
    assert ckpt["length_model_config"]["evidence_measurements"]
    assert ckpt["model_pos"]["evidence.7.weight"].shape[0] == 48
    history = ckpt["history"]
    assert np.isfinite(history["test_per_subject_model_size_free"]).all()
    from common.models.model_loading import load_model
    from common.models.proportion_model import reads_people
    assert reads_people(load_model(tmp_path / "final.bin", ("length",), bidirectional=True).model)
    # length_model_inference.py --per_subject pools the measurements: one vector per subject, not the readings'
    from length_model_inference import main as infer
    common = ["--ckpt", str(tmp_path / "final.bin"), "-d", "tiny", "--data_dir", str(tiny_dir), "-k", "detections",
              "--subjects", "S1,S5", "-bi", "--device", "cpu"]
    infer([*common, "--out_dir", str(tmp_path / "seq")])
    infer([*common, "--out_dir", str(tmp_path / "people"), "--per_subject"])
    assert "of the frames' measurements" in capsys.readouterr().out
    readings = load_npz(tmp_path / "seq" / "lengths_dict.npz")["lengths"]
    people = load_npz(tmp_path / "people" / "lengths_dict.npz")["lengths"]
    for subject in ("S1", "S5"):
        own = np.stack([a for action in readings[subject].values() for a in action])
        pooled = np.stack([a for action in people[subject].values() for a in action])
        assert np.abs(pooled - pooled[:1]).max() < 1e-7  # one vector for the subject
        median = np.exp(np.median(np.log(own), axis=0))  # what pooling the readings would give
        assert np.abs(pooled[0] - median).max() > 1e-6  # the measurements, not the readings, were pooled
    with pytest.raises(UserError, match="--person_chunks trains the frames' measurements"):
        _train(_common_flags(tiny_dir, tmp_path / "gru", ["-e", "1", "-bi", "--person_chunks", "2"]))


def test_heldout_people_are_never_training_rows():
    bank = np.arange(2000 * 16, dtype=np.float32).reshape(2000, 16)
    train_rows, held = split_heldout_people(bank)
    assert len(held) == 200 and len(train_rows) == 1800  # at most a tenth of the bank
    assert not set(map(tuple, held)) & set(map(tuple, train_rows))
    again, held_again = split_heldout_people(bank)
    assert np.array_equal(held, held_again) and np.array_equal(train_rows, again)  # fixed, every run
    assert len(split_heldout_people(bank[:5])[1]) == 1


@pytest.mark.slow
def test_causal_variant_and_curves(tiny_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    _train(_common_flags(tiny_dir, tmp_path, ["-e", "1", "--export-training-curves", "-layer", "2",
                                              "--checkpoint-frequency", "1"]))
    ckpt = load_checkpoint(tmp_path / "epoch_1.bin")
    assert "gru.0.weight_hh_l1" in ckpt["model_pos"] and "gru.1.weight_ih_l0" in ckpt["model_pos"]
    assert (tmp_path / "length_training_curves.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "training-mean baseline" in out and "SUMMARY" in out


@pytest.mark.slow
def test_ddp_two_processes(tiny_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
           str(REPO / "train.py"), *_common_flags(tiny_dir, tmp_path, ["-e", "1", "-bi", "--micro_batch", "3"])]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch 4 per process in micro-batches of 3" in proc.stdout  # 3 + 1: unequal shares
    ckpt = load_checkpoint(tmp_path / "final.bin")
    assert len(ckpt["random_state"]["ranks"]) == 2
    assert not any(k.startswith("module.") for k in ckpt["model_pos"])
    # ranks drew different synthetic samples
    s0, s1 = ckpt["random_state"]["ranks"]
    assert not torch.equal(s0["sample"], s1["sample"])


def test_select_on_synthetic_val_picks_the_lowest_epoch(tiny_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    _train(_common_flags(tiny_dir, tmp_path, ["-e", "3", "-bi", "--select_on", "synthetic_val"]))
    history = json.loads((tmp_path / "length_history.json").read_text())
    values = history["synthetic_val"]
    assert len(values) == 3 and all(np.isfinite(values))
    assert len(set(values)) > 1  # the model changed between epochs
    assert load_checkpoint(tmp_path / "epoch_best.bin")["epoch"] == int(np.argmin(values)) + 1
    out = capsys.readouterr().out
    assert "synthetic val" in out and "on synthetic_val" in out
    # the held-out people's row names its chunk length (-l 64 here; the demo's target is on 128 frames)
    assert "held-out people, 64-frame chunks of test motion+cameras" in out
    # without the flag the set is not built (no cost) and its value is recorded as NaN
    _train(_common_flags(tiny_dir, tmp_path / "val", ["-e", "1", "-bi"]))
    assert np.isnan(json.loads((tmp_path / "val" / "length_history.json").read_text())["synthetic_val"][0])

def test_extra_motion_through_the_dataset_cameras_adds_training_chunks_only(tiny_dir, tmp_path, capsys, monkeypatch):
    """(issue 17) -t length --extra_motion with the dataset's cameras: the clips (here a stand-in, the real ones
    need apt) are filmed through the training subjects' cameras and added to the training chunks; the validation
    split is the one without them."""
    from common.datasets import extra_motion
    from common.datasets.demo.subjects import sample_subject_bone_lengths
    from helpers import standing_motion

    clip = standing_motion(sample_subject_bone_lengths("S1", 2024), 200)
    monkeypatch.setattr(extra_motion, "extra_motions", lambda subjects: [(subjects[0], "Standing", clip)])
    _train(_common_flags(tiny_dir, tmp_path / "plain", ["-e", "1", "-bi", "--val_fraction", "0.3"]))
    plain = capsys.readouterr().out
    _train(_common_flags(tiny_dir, tmp_path / "extra", ["-e", "1", "-bi", "--val_fraction", "0.3", "--extra_motion",
                                                         "--virtual_segment", "100"]))
    extra = capsys.readouterr().out
    assert "extra motion through the dataset's cameras: 8 views of windows of 100 frames" in extra

    def counts(out: str) -> tuple[int, int, int]:
        found = re.search(r"(\d+) training chunks of 64 frames from (\d+) sequences \((\d+) held out", out)
        return tuple(int(g) for g in found.groups())

    (chunks, sequences, held), (chunks_x, sequences_x, held_x) = counts(plain), counts(extra)
    assert (chunks_x, sequences_x, held_x) == (chunks + 8, sequences + 8, held)  # 2 windows x 4 cameras, 1 chunk each


def test_proportion_spread_keeps_the_mean_and_multiplies_the_deviations():
    from common.datasets.synthetic import LengthSampler
    rng = np.random.default_rng(0)
    base = np.linspace(0.1, 0.45, 16)
    bank = base * np.exp(rng.normal(0, 0.05, (50, 16)) + rng.normal(0, 0.05, (50, 1)))
    bank[:, 3:6] = bank[:, 0:3]  # left = right, as average_symmetric leaves them
    plain = LengthSampler("smpl", torch.device("cpu"), bank=bank)
    spread = LengthSampler("smpl", torch.device("cpu"), bank=bank).spread_proportions(2.0)
    log_a, log_b = torch.log(plain.bank).double(), torch.log(spread.bank).double()
    shift = log_b.mean(-1) - log_a.mean(-1)
    torch.testing.assert_close(shift, shift[:1].expand_as(shift), rtol=0, atol=1e-6)  # every size moves alike
    assert abs(float(shift[0])) < 0.01
    torch.testing.assert_close(spread.bank.mean(0), plain.bank.mean(0))  # the per-bone mean kept
    dev_a = log_a - log_a.mean(-1, keepdim=True)
    dev_b = log_b - log_b.mean(-1, keepdim=True)
    torch.testing.assert_close(dev_b - dev_b.mean(0), 2.0 * (dev_a - dev_a.mean(0)), rtol=0, atol=1e-6)  # doubled
    assert (dev_b - dev_b.mean(0)).abs().max() > 0.05  # and the deviations are not tiny: the check means something
    same = LengthSampler("smpl", torch.device("cpu"), bank=bank).spread_proportions(1.0)
    torch.testing.assert_close(same.bank, plain.bank)  # a factor of 1 leaves the bank as it is


def test_bad_inputs_are_one_line_errors(tiny_dir, tmp_path):
    with pytest.raises(UserError, match="bone-length file not found"):
        _train(["-t", "length", "-d", "tiny", "--data_dir", str(tiny_dir), "-k", "detections", "-e", "1",
                "--bone_length_aug", str(tmp_path / "nope.npz"), "--device", "cpu"])
    with pytest.raises(UserError, match="chunk"):
        _train(_common_flags(tiny_dir, tmp_path, ["-e", "1", "-l", "100000"]))
    with pytest.raises(UserError, match="synthetic_val is for -t length"):
        _train(["-t", "pose", "-d", "tiny", "--data_dir", str(tiny_dir), "--select_on", "synthetic_val",
                "-c", str(tmp_path), "--device", "cpu"])
    with pytest.raises(UserError, match="--evidence_acceleration is an input of the per-frame evidence"):
        _train(_common_flags(tiny_dir, tmp_path, ["-e", "1", "-bi", "--evidence_acceleration"]))
    with pytest.raises(UserError, match="--proportion_spread spreads a body-model bank"):
        _train(_common_flags(tiny_dir, tmp_path, ["-e", "1", "-bi", "--proportion_spread", "2"]))
    # the extra clips have no 2D through the dataset's cameras for a lifter; -t length films them itself
    with pytest.raises(UserError, match="--extra_motion needs --cameras virtual for -t pose"):
        _train(["-t", "pose", "-d", "tiny", "--data_dir", str(tiny_dir), "--extra_motion",
                "-c", str(tmp_path), "--device", "cpu"])


# ---------------------------------------------------------------- the paper's README commands

PAPER_COMMANDS = [
    "cd data/bone_length/ && python generate_bone_length.py --gender neutral --amount 200000 --align",
    "python train.py -e 30 -b 256 -t length -drop 0 --length_aug_type smpl -bi "
    "--bone_length_aug data/bone_lengths_smpl_neutral_all.npz",
    "python length_model_inference.py --ckpt biGRU_all.bin -bi --subjects S1,S5,S6,S7,S8,S9,S11",
]


def _argv(command: str) -> list[str]:
    return command.split("python ", 1)[1].split()[1:]


@pytest.mark.slow
def test_paper_commands_run_on_demo_layout(tmp_path, monkeypatch, capsys):
    """The paper's length commands, unchanged except for a tiny -e/--amount and small, fast model sizes,
    run in a folder laid out like the repository after the demo set-up (data/, checkpoint/)."""
    import shutil

    import generate_bone_length
    from length_model_inference import main as infer_main

    torch.set_num_threads(1)
    data = tmp_path / "data"
    write_dataset(data)
    for f in data.iterdir():  # the tiny dataset stands in for the demo dataset
        f.rename(data / f.name.replace("_tiny", "_demo"))
    monkeypatch.chdir(tmp_path)
    generate_bone_length.main(_argv(PAPER_COMMANDS[0]) + ["--amount", "500", "--data_dir", str(data),
                                                          "--device", "cpu"])
    assert (data / "bone_lengths_demo.npz").is_file()
    # no licensed SMPL files here: the Anny set stands in under the paper's SMPL file name
    shutil.copy(data / "bone_lengths_anny_neutral_all.npz", data / "bone_lengths_smpl_neutral_all.npz")
    _train(_argv(PAPER_COMMANDS[1]) + ["-e", "1", "-l", "64", "--hidden", "16", "--device", "cpu"])
    shutil.copy(tmp_path / "checkpoint" / "epoch_best.bin", tmp_path / "checkpoint" / "biGRU_all.bin")
    infer_main(_argv(PAPER_COMMANDS[2]) + ["--device", "cpu"])
    assert (data / "lengths_dict.npz").is_file() and (data / "lengths_list.npz").is_file()
    out = capsys.readouterr().out
    assert "SUMMARY length model" in out
    # the model's row beside the bank mean and the probe that training stored in the checkpoint
    assert "model " in out and "bank mean " in out and "probe " in out and "size-free" in out
