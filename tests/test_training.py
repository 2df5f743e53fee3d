"""common.train.training: the validation split, seeding, random-state layout, lr decay, resume and history files."""
from __future__ import annotations

import io
import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.utils.distributed import DistContext
from common.utils.errors import UserError
from common.datasets.generators import ChunkedGenerator
from common.train.accumulation import optimizer_step
from common.train.training import (EpochLoop, Trainer, decay_learning_rate, gather_rng_states, is_improvement,
                                   make_optimizer, restore_rng_states, resume_training, save_history, seed_all,
                                   split_validation)
from common.train.arguments import build_parser
from common.utils.checkpoint import load_checkpoint, save_checkpoint

CTX = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
# ten (subject, action) pairs in sorted order: S1 A0..A4, S5 A0..A4
PAIRS = [(s, f"A{i}") for s in ("S1", "S5") for i in range(5)]


def _views(pairs, cameras=4):
    return [SimpleNamespace(subject=s, action=a, camera_index=c) for s, a in pairs for c in range(cameras)]


def _pairs(views):
    return {(v.subject, v.action) for v in views}


def test_split_holds_out_the_seeded_pairs_of_the_sorted_list():
    # RandomState(0).permutation(10) starts [2, 8, ...]: sorted pairs 2 and 8 are held out
    fit, val = split_validation(_views(PAIRS), 0.2, seed=0)
    assert _pairs(val) == {("S1", "A2"), ("S5", "A3")}
    assert len(val) == 8 and len(fit) == 32  # all four cameras of a held-out pair go together
    # RandomState(1).permutation(10) starts [2, 9, ...]
    assert _pairs(split_validation(_views(PAIRS), 0.2, seed=1)[1]) == {("S1", "A2"), ("S5", "A4")}


def test_split_ignores_input_order_and_keeps_it():
    shuffled = [PAIRS[i] for i in (7, 3, 9, 0, 5, 1, 8, 2, 6, 4)]
    fit, val = split_validation(_views(shuffled), 0.2, seed=0)
    assert _pairs(val) == {("S1", "A2"), ("S5", "A3")}
    order = [(v.subject, v.action) for v in fit]
    assert order == [p for p in [(v.subject, v.action) for v in _views(shuffled)] if p in _pairs(fit)]


def test_split_is_deterministic_disjoint_and_complete():
    views = _views(PAIRS)
    fit_a, val_a = split_validation(views, 0.3, seed=7)
    fit_b, val_b = split_validation(views, 0.3, seed=7)
    assert [id(v) for v in val_a] == [id(v) for v in val_b] and [id(v) for v in fit_a] == [id(v) for v in fit_b]
    assert len(_pairs(val_a)) == 3
    assert not _pairs(fit_a) & _pairs(val_a)
    assert sorted(map(id, fit_a + val_a)) == sorted(map(id, views))


def test_split_edge_cases():
    views = _views(PAIRS)
    assert split_validation(views, 0.0, seed=0) == (views, [])
    assert len(_pairs(split_validation(views, 0.01, seed=0)[1])) == 1  # at least one pair when fraction > 0
    with pytest.raises(UserError, match="leaves no training sequences"):
        split_validation(views, 0.95, seed=0)
    with pytest.raises(UserError):
        split_validation(_views(PAIRS[:1]), 0.1, seed=0)


def _draw() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_all_seeds_python_numpy_and_torch_plus_rank():
    seed_all(5)
    first = _draw()
    seed_all(5)
    assert _draw() == first
    seed_all(5, rank=1)
    second = _draw()
    assert second[:2] == first[:2]  # python and numpy: the same on every rank
    torch.manual_seed(6)
    assert second[2] == float(torch.rand(1)) != first[2]  # torch: seed + rank


def _round_trip(obj):
    """Through torch.save / torch.load(weights_only=True), as checkpoints are."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _batches(seed: int) -> ChunkedGenerator:
    p2 = [np.arange(40 * 34, dtype=np.float32).reshape(40, 17, 2)]
    return ChunkedGenerator(4, p2, None, random_seed=seed)


def test_random_states_round_trip_every_stream():
    order, batches = torch.Generator().manual_seed(3), _batches(3)
    streams = {"order": order, "batches": batches}
    seed_all(11)
    saved = _round_trip(gather_rng_states(streams, CTX))
    expected = (_draw(), torch.rand(3, generator=order), next(batches.next_epoch()).sequence_index)

    other_order, other_batches = torch.Generator().manual_seed(99), _batches(99)
    seed_all(12)
    restore_rng_states({"random_state": saved}, {"order": other_order, "batches": other_batches}, CTX, "test")
    assert _draw() == expected[0]
    torch.testing.assert_close(torch.rand(3, generator=other_order), expected[1], rtol=0, atol=0)
    first = next(_batches(3).next_epoch()).inputs_2d
    assert np.array_equal(next(other_batches.next_epoch()).inputs_2d, first)


def test_old_pose_checkpoint_layout_still_restores():
    """train.py -t pose wrote the shuffling state as ``random_state`` and torch's as ``torch_random_state``."""
    batches = _batches(3)
    torch.manual_seed(4)
    old = {"random_state": batches.get_state(), "torch_random_state": torch.get_rng_state()}
    expected_torch = torch.rand(2)
    expected_batch = next(batches.next_epoch()).inputs_2d
    restored = _batches(50)
    torch.manual_seed(0)
    restore_rng_states(_round_trip(old), {"generator": restored}, CTX, "old.bin")
    torch.testing.assert_close(torch.rand(2), expected_torch, rtol=0, atol=0)
    assert np.array_equal(next(restored.next_epoch()).inputs_2d, expected_batch)


def test_process_count_mismatch_warns_and_keeps_the_seeded_streams(capsys):
    order = torch.Generator().manual_seed(3)
    before = order.get_state()
    restore_rng_states({"random_state": {"ranks": [{}, {}]}}, {"order": order}, CTX, "two.bin")
    assert "written by 2 process(es), now 1" in capsys.readouterr().out
    assert torch.equal(order.get_state(), before)


def test_decay_learning_rate_multiplies_until_the_floor():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    assert decay_learning_rate(optimizer, 0.5) == 1e-3
    assert optimizer.param_groups[0]["lr"] == 5e-4
    optimizer.param_groups[0]["lr"] = 9e-7
    assert decay_learning_rate(optimizer, 0.5) == 9e-7
    assert optimizer.param_groups[0]["lr"] == 9e-7


def test_resume_training_restores_optimizer_epoch_history_best(capsys):
    weights = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.Adam([weights], lr=0.1)
    weights.sum().backward()
    optimizer.step()
    decay_learning_rate(optimizer, 0.5)
    checkpoint = _round_trip({"optimizer": optimizer.state_dict(), "epoch": 3, "history": {"train": [3.0, 2.0, 1.0]},
                              "best": 1.5, "random_state": gather_rng_states({}, CTX)})
    fresh = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    epoch, history, best = resume_training(checkpoint, "ckpt.bin", fresh, {}, CTX, {"train": []})
    assert (epoch, history, best) == (3, {"train": [3.0, 2.0, 1.0]}, 1.5)
    assert fresh.param_groups[0]["lr"] == 0.05
    assert "Resuming from ckpt.bin at epoch 3" in capsys.readouterr().out
    with pytest.raises(UserError, match="cannot be resumed"):
        resume_training({"model_pos": {}}, "published.bin", fresh, {}, CTX, {})


def test_is_improvement():
    assert is_improvement(1.0, float("inf")) and not is_improvement(2.0, 1.0)
    assert not is_improvement(float("nan"), float("inf"))


def test_save_history_writes_json_and_skips_empty_curves(tmp_path):
    history = {"train": [3.0, 2.0], "val": [float("nan"), float("nan")]}
    save_history(tmp_path, "pose", history)
    assert json.loads((tmp_path / "pose_history.json").read_text())["train"] == [3.0, 2.0]
    assert not (tmp_path / "pose_training_curves.png").exists()
    save_history(tmp_path, "pose", history, history, "MPJPE (mm)")
    assert (tmp_path / "pose_training_curves.png").stat().st_size > 1000


def test_foreign_random_state_restarts_the_streams(capsys):
    """VideoPose3D's own checkpoints store a numpy RandomState object: not ours, the seeded streams stay."""
    order = torch.Generator().manual_seed(3)
    before = order.get_state()
    restore_rng_states({"random_state": np.random.RandomState(0)}, {"order": order}, CTX, "pretrained.bin")
    assert "written by 0 process(es)" in capsys.readouterr().out
    assert torch.equal(order.get_state(), before)


# ---------------------------------------------------------------- the epoch loop's contract (a toy trainer)

class _ToyTrainer(Trainer):
    """Noisy linear regression: batches drawn from its own stream, dropout from torch's global stream, a
    validation error that is lowest at epoch 2 (``bump``), micro-batches of 3 of 8 samples."""

    train_keys = (("train", 1000.0), ("half", 1.0))
    eval_keys = ("val",)

    def __init__(self, model, optimizer, bump=(0.0, 0.0, 5.0, 5.0)):
        self.model, self.optimizer, self.bump = model, optimizer, bump
        self.select_on = "val"
        self.data = torch.Generator().manual_seed(3)
        self.records, self.epochs_seen = [], []
        self.x_val = torch.linspace(-1, 1, 12).reshape(4, 3)

    def batches(self, epoch):
        self.epochs_seen.append(epoch)
        return (torch.randn(8, 3, generator=self.data) for _ in range(4)), 4

    def step(self, x):
        y = x.sum(dim=1, keepdim=True)

        def micro_loss(rows):
            return ((self.model(torch.nn.functional.dropout(x[rows], 0.2)) - y[rows]) ** 2).mean()

        loss = optimizer_step(self.model, self.optimizer, len(x), 3, micro_loss)
        return [loss, loss / 2], len(x)

    def evaluate(self):
        with torch.no_grad():
            error = float(((self.model(self.x_val) - self.x_val.sum(1, keepdim=True)) ** 2).mean())
        return {"val": error + self.bump[len(self.records)]}

    def log(self, record, history):
        self.records.append(record)

    def checkpoint_entries(self):
        return {"toy": "linear"}


def _toy_run(folder, epochs, resume=None, no_eval=False, flags=()):
    seed_all(11)
    model = torch.nn.Linear(3, 1)
    optimizer = make_optimizer(model.parameters(), 0.05)
    toy = _ToyTrainer(model, optimizer)
    args = build_parser().parse_args(["-t", "pose", *flags])  # the recipe flags of a -t pose run
    args.__dict__.update(epochs=epochs, lr_decay=0.9, no_eval=no_eval, checkpoint=str(folder), checkpoint_frequency=1)
    loop = EpochLoop(toy, args, CTX, model, [optimizer], {"data": toy.data})
    if resume is not None:
        state = load_checkpoint(resume)
        model.load_state_dict(state["model_pos"])
        toy.records = [None] * state["epoch"]  # the bump follows the epoch number
        loop.resume(state, str(resume))
    loop.run()
    return toy, loop


def test_epoch_loop_resume_is_bit_exact_and_selects_the_lowest(tmp_path, capsys):
    toy, loop = _toy_run(tmp_path / "full", 4)
    full = load_checkpoint(tmp_path / "full" / "final.bin")
    assert toy.epochs_seen == [0, 1, 2, 3] and [r.epoch for r in toy.records] == [1, 2, 3, 4]
    assert [r.improved for r in toy.records][:2] == [True, True] and not any(r.improved for r in toy.records[2:])
    assert load_checkpoint(tmp_path / "full" / "epoch_best.bin")["epoch"] == 2
    assert full["best"] == min(full["history"]["val"]) == full["history"]["val"][1]
    assert full["toy"] == "linear" and full["epoch"] == 4 and len(full["history"]["train"]) == 4
    assert full["lr"] == pytest.approx(0.05 * 0.9 ** 4)
    assert toy.records[0].lr == pytest.approx(0.05) and toy.records[0].next_lr == pytest.approx(0.05 * 0.9)
    # the step's values are averaged per sample, scaled per key
    np.testing.assert_allclose(np.array(full["history"]["train"]) / 1000, np.array(full["history"]["half"]) * 2)

    # stopped after epoch 2 and resumed from its epoch_2.bin: the same weights, optimiser, history, best
    _toy_run(tmp_path / "part", 2)
    toy_b, _ = _toy_run(tmp_path / "part", 4, resume=tmp_path / "part" / "epoch_2.bin")
    part = load_checkpoint(tmp_path / "part" / "final.bin")
    assert toy_b.epochs_seen == [2, 3]
    for key, value in full["model_pos"].items():
        assert torch.equal(value, part["model_pos"][key]), key
    assert part["history"] == full["history"] and part["best"] == full["best"]
    assert part["optimizer"]["param_groups"][0]["lr"] == full["optimizer"]["param_groups"][0]["lr"]
    assert load_checkpoint(tmp_path / "part" / "epoch_best.bin")["epoch"] == 2


def test_epoch_loop_without_evaluation_or_epochs(tmp_path):
    toy, _ = _toy_run(tmp_path / "noeval", 2, no_eval=True)
    state = load_checkpoint(tmp_path / "noeval" / "final.bin")
    assert np.isnan(state["history"]["val"]).all()
    assert [r.improved for r in toy.records] == [False, True]  # the last epoch stands for the best
    assert load_checkpoint(tmp_path / "noeval" / "epoch_best.bin")["epoch"] == 2
    # nothing to train (resuming a finished run): final.bin is still written, of the resumed state
    (tmp_path / "noeval" / "final.bin").unlink()
    toy, loop = _toy_run(tmp_path / "noeval", 2, resume=tmp_path / "noeval" / "epoch_2.bin", no_eval=True)
    assert toy.epochs_seen == [] and loop.epoch == 2
    again = load_checkpoint(tmp_path / "noeval" / "final.bin")
    for key, value in state["model_pos"].items():
        assert torch.equal(value, again["model_pos"][key]), key


def test_resuming_under_another_recipe_names_the_flags_and_needs_consent(tmp_path, capsys):
    """(issue 21) -r of a checkpoint trained with --cameras virtual --extra_motion under the dataset's cameras:
    refused in one line naming both flags; --allow_recipe_change continues with a warning naming them; the same
    recipe resumes silently; a checkpoint that stores no recipe resumes with a note."""
    virtual = ["--cameras", "virtual", "--extra_motion"]
    _toy_run(tmp_path, 1, flags=virtual)
    first = tmp_path / "epoch_1.bin"
    assert load_checkpoint(first)["recipe"]["--cameras"] == "virtual"
    with pytest.raises(UserError, match=r"epoch_1.bin was trained with another recipe \(--cameras virtual -> "
                                        r"dataset; --extra_motion on -> off\): give its flags"):
        _toy_run(tmp_path / "other", 2, resume=first)
    capsys.readouterr()
    toy, loop = _toy_run(tmp_path / "allowed", 2, resume=first, flags=["--allow_recipe_change"])
    assert loop.epoch == 2 and "warning: resuming" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "allowed" / "final.bin")["recipe"]["--cameras"] == "dataset"
    _toy_run(tmp_path / "same", 2, resume=first, flags=virtual)
    captured = capsys.readouterr()
    assert "recipe" not in captured.err + captured.out
    state = load_checkpoint(first)
    del state["recipe"]
    save_checkpoint(tmp_path / "old.bin", state)
    _toy_run(tmp_path / "old", 2, resume=tmp_path / "old.bin")
    assert "stores no training recipe" in capsys.readouterr().out


def test_cosine_schedule_falls_to_zero_and_keeps_its_start_in_the_optimizer():
    from common.train.training import cosine_learning_rate
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([weight], lr=2e-3)
    lrs = []
    for epoch in range(1, 5):
        cosine_learning_rate(optimizer, epoch, 4)
        lrs.append(optimizer.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, 2e-3 * np.array([0.853553, 0.5, 0.146447, 0.0]), atol=1e-9)
    # a resumed optimizer carries initial_lr: the schedule continues from the same start
    resumed = torch.optim.Adam([weight], lr=123.0)
    resumed.load_state_dict(optimizer.state_dict())
    cosine_learning_rate(resumed, 2, 4)
    assert resumed.param_groups[0]["lr"] == pytest.approx(1e-3)
