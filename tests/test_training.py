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
from common.train.training import (decay_learning_rate, gather_rng_states, is_improvement, restore_rng_states,
                             resume_training, save_history, seed_all, split_validation)

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
