"""Mix model (frozen bone-length model + VideoPose3D direction branch): unit tests on tiny models, and
end-to-end runs of ``train.py -t mix`` (training, exact resume, evaluation, export) on a small dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.bones import bone_directions, bone_lengths
from common.checkpoint import load_checkpoint, load_weights, save_checkpoint
from common.length_model import BoneLengthModel
from common.metrics import direction_loss, mpjpe
from common.mix_model import MixModel
from common.model import TemporalModel, TemporalModelOptimized1f
from common.skeleton import SYMMETRIC_BONES

torch.set_num_threads(1)
WIDTHS = [3, 3]  # receptive field 9


def _length_model(bidirectional: bool = True) -> BoneLengthModel:
    model = BoneLengthModel(embed_dim=8, hidden_size=8, num_layers=1, dropout=0.5, bidirectional=bidirectional)
    with torch.no_grad():  # positive head weights: positive lengths, like a trained model's
        model.fc.weight.abs_().mul_(0.05)
    return model


def _mix(optimized: bool = False, bidirectional: bool = True, seed: int = 0) -> MixModel:
    torch.manual_seed(seed)
    cls = TemporalModelOptimized1f if optimized else TemporalModel
    return MixModel(_length_model(bidirectional), cls(17, 2, 17, WIDTHS, dropout=0.25, channels=16))


def _inputs(batch: int = 3, frames: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, 17, 2, generator=torch.Generator().manual_seed(seed)) * 0.3


def test_state_dict_names_are_length_model_and_direction_model():
    keys = list(_mix().state_dict())
    assert keys and all(k.startswith(("length_model.", "direction_model.")) for k in keys)
    assert "length_model.fc.weight" in keys and "direction_model.expand_conv.weight" in keys
    assert "direction_model.shrink.bias" in keys


def test_length_model_frozen_and_stays_in_eval_mode():
    model = _mix()
    model.train()
    assert model.training and model.direction_model.training
    assert not model.length_model.training
    assert all(not p.requires_grad for p in model.length_model.parameters())
    assert all(p.requires_grad for p in model.direction_model.parameters())
    assert set(map(id, model.trainable_parameters())) == set(map(id, model.direction_model.parameters()))
    # dropout of the length model is inactive in training mode: two calls give the same lengths
    x = _inputs()
    assert torch.equal(model.predict_lengths(x), model.predict_lengths(x))


def test_output_has_exactly_the_predicted_lengths_in_every_frame():
    model = _mix().eval()
    x = _inputs(frames=20)
    lengths = model.predict_lengths(x)
    assert lengths.shape == (3, 16)
    for a, b in SYMMETRIC_BONES:
        assert torch.allclose(lengths[:, a], lengths[:, b])
    poses, directions = model(x)
    assert poses.shape == (3, 20 - 8, 17, 3) and directions.shape == (3, 12, 16, 3)
    assert torch.allclose(poses[:, :, 0], torch.zeros(3, 12, 3))
    measured = bone_lengths(poses)
    assert torch.allclose(measured, lengths[:, None].expand_as(measured), atol=1e-6)
    # the directions are the branch's own pose directions
    assert torch.allclose(directions, bone_directions(model.direction_model(x)), atol=1e-6)


def test_given_lengths_are_used_per_sequence_and_per_frame():
    model = _mix().eval()
    x = _inputs(batch=2, frames=10)
    given = torch.rand(2, 16) * 0.3 + 0.1
    poses, _ = model(x, given)
    assert torch.allclose(bone_lengths(poses), given[:, None].expand(2, 2, 16), atol=1e-6)
    per_frame = torch.rand(2, 2, 16) * 0.3 + 0.1
    poses, _ = model(x, per_frame)
    assert torch.allclose(bone_lengths(poses), per_frame, atol=1e-6)
    with pytest.raises(ValueError):
        model(x, torch.rand(2, 5, 16))


def test_training_step_changes_directions_only():
    model = _mix(optimized=True).train()
    frozen = {k: v.clone() for k, v in model.length_model.state_dict().items()}
    before = {k: v.clone() for k, v in model.direction_model.state_dict().items()}
    # an optimizer over *all* parameters (with weight decay) must still leave the length model untouched
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x = _inputs(batch=8, frames=9)
    target = torch.randn(8, 1, 17, 3) * 0.2
    target[:, :, 0] = 0
    for _ in range(3):
        optimizer.zero_grad()
        poses, _ = model(x, torch.full((8, 16), 0.2))
        loss = mpjpe(poses, target).mean() + direction_loss(poses, target)
        loss.backward()
        assert all(p.grad is None for p in model.length_model.parameters())
        optimizer.step()
    after = model.length_model.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    changed = model.direction_model.state_dict()
    assert any(not torch.equal(before[k], changed[k]) for k in before if k.endswith("weight"))


def test_strided_and_dilated_branches_agree():
    train_model = _mix(optimized=True).eval()
    eval_model = _mix(optimized=False, seed=5).eval()
    eval_model.load_state_dict(train_model.state_dict())
    x = _inputs(batch=2, frames=9)
    lengths = torch.rand(2, 16) * 0.3 + 0.1
    a, _ = train_model(x, lengths)
    b, _ = eval_model(x, lengths)
    assert a.shape == b.shape == (2, 1, 17, 3)
    assert torch.allclose(a, b, atol=1e-5)


def test_causal_length_model_gives_per_frame_lengths():
    model = _mix(bidirectional=False).eval()
    x = _inputs(batch=2, frames=9)
    lengths = model.predict_lengths(x)
    assert lengths.shape == (2, 9, 16)
    poses, _ = model(x, lengths[:, -1:])
    assert torch.allclose(bone_lengths(poses), lengths[:, -1:], atol=1e-6)


def test_mix_checkpoint_round_trips(tmp_path):
    model = _mix()
    path = tmp_path / "mix.bin"
    save_checkpoint(path, {"epoch": 3, "lr": 1e-4, "model_pos": model.state_dict()})
    other = _mix(seed=9)
    assert not torch.equal(other.direction_model.expand_conv.weight, model.direction_model.expand_conv.weight)
    state = load_checkpoint(path)
    load_weights(other, {"module." + k: v for k, v in state["model_pos"].items()}, "mix.bin")
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])
    x = _inputs()
    assert torch.allclose(model.eval()(x)[0], other.eval()(x)[0])
