"""Micro-batches with gradient accumulation and bf16 autocast (common/train/accumulation.py)."""
from __future__ import annotations

import copy

import pytest
import torch

from common.train import accumulation
from common.train.accumulation import (accumulate_gradients, autocast, length_model_sample_bytes, lifter_sample_bytes,
                                 native_bf16, resolve_micro_batch, resolve_precision)
from common.utils.errors import UserError
from common.models.length_model import BoneLengthModel, _run_gru
from common.models.model import build_lifter
from common.train.train_length import length_loss

CPU = torch.device("cpu")


def test_resolve_micro_batch_by_hand():
    gb = 1024 ** 3
    assert resolve_micro_batch("auto", 256, gb // 100, 1.0) == 86  # 100 fit -> 3 pieces of 86, 86, 84
    assert resolve_micro_batch("auto", 64, gb // 100, 1.0) == 64  # fits whole
    assert resolve_micro_batch("auto", 10, 2 * gb, 1.0) == 1  # not even one fits: one sample at a time
    assert resolve_micro_batch("7", 5, 1) == 5  # never more than the batch
    assert resolve_micro_batch(3, 5, 1) == 3
    for bad in ("0", "-2", "x"):
        with pytest.raises(UserError):
            resolve_micro_batch(bad, 8, 1)
    with pytest.raises(UserError):
        resolve_micro_batch("auto", 8, 1, 0.0)


def test_sample_bytes_by_hand():
    # per frame: 2 directions x 1 layer x 4 units x 11 floats + 3 x 8 embedding + 4 x 34 inputs = 248 floats
    assert length_model_sample_bytes(4, 1, True, 10, embed_dim=8) == 10 * 248 * 4
    assert length_model_sample_bytes(4, 1, True, 10, embed_dim=8, precision="bf16") == 10 * 248 * 2
    # widths 3,3: 9 input frames -> 3 -> 1 time steps, 2 convs x 5 tensors x 2 channels each
    assert lifter_sample_bytes([3, 3], 2) == (2 * 5 * 2 * 3 + 2 * 5 * 2 * 1) * 4


def test_paper_length_command_splits_its_batch():
    """Batch 256 x 512 frames, hidden 512 Bi-GRU at the default budget: several micro-batches of equal size."""
    per_sample = length_model_sample_bytes(512, 1, True, 512)
    micro = resolve_micro_batch("auto", 256, per_sample)
    assert 8 <= micro < 256
    assert micro * per_sample <= 0.75 * 1024 ** 3


def test_resolve_precision():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"  # a model nobody checked in bf16 stays fp32
    assert resolve_precision("auto", CPU, bf16_checked=True) == ("bf16" if native_bf16(CPU) else "fp32")
    assert not native_bf16(torch.device("meta"))
    with pytest.raises(UserError):
        resolve_precision("fp16", CPU)


@pytest.mark.parametrize("flags, native", [("fpu sse avx2 avx512f avx512bw", False),
                                           ("fpu avx512f avx512_bf16 avx512_vnni", True),
                                           ("fpu avx512f amx_tile amx_bf16 amx_int8", True)])
def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path, flags, native):
    """The /proc/cpuinfo flags decide, given a torch build whose oneDNN runs bf16 (torch's check alone says yes
    on any AVX-512 CPU, where bf16 is emulated)."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(accumulation, "Path", lambda _: cpuinfo)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert native_bf16(CPU) is native
    assert resolve_precision("auto", CPU, bf16_checked=True) == ("bf16" if native else "fp32")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert not native_bf16(CPU)


def _steps(model, inputs, lengths, micro, steps=2):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        losses.append(accumulate_gradients(model, len(inputs), micro,
                                           lambda rows: length_loss(model, inputs[rows], lengths[rows])))
        optimizer.step()
    return losses


@pytest.mark.parametrize("bidirectional", [True, False])
def test_micro_batched_step_equals_full_batch_step_length_model(bidirectional):
    torch.manual_seed(0)
    model = BoneLengthModel(hidden_size=8, embed_dim=16, dropout=0.0, bidirectional=bidirectional)
    inputs = torch.randn(12, 20, 17, 2)
    lengths = torch.rand(12, 16) * 0.4 + 0.1
    full, micro = copy.deepcopy(model), copy.deepcopy(model)
    losses_full = _steps(full, inputs, lengths, 12)
    losses_micro = _steps(micro, inputs, lengths, 5)  # 5 + 5 + 2: unequal shares
    assert losses_full == pytest.approx(losses_micro, rel=1e-5)
    for a, b in zip(full.parameters(), micro.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    moved = sum(float((a - b).detach().abs().sum()) for a, b in zip(full.parameters(), model.parameters()))
    assert moved > 0  # the steps changed the weights


def test_micro_batches_with_batchnorm_equal_only_with_fixed_statistics():
    """The lifter's BatchNorm: in eval mode (fixed statistics) the accumulated gradient is the full batch's;
    in train mode each micro-batch is normalised by its own statistics, so the gradient differs."""
    torch.manual_seed(0)
    lifter = build_lifter([3, 3], 16, 0.0, False, False)[0]
    inputs = torch.randn(8, 9, 17, 2)
    targets = torch.randn(8, 1, 17, 3)

    def grads(model, micro, train):
        model.train(train)
        model.zero_grad(set_to_none=True)
        accumulate_gradients(model, 8, micro, lambda rows: (model(inputs[rows]) - targets[rows]).abs().mean())
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    for train, equal in ((False, True), (True, False)):
        full = grads(copy.deepcopy(lifter), 8, train)
        split = grads(copy.deepcopy(lifter), 3, train)
        assert torch.allclose(full, split, rtol=1e-4, atol=1e-6) == equal


def test_gru_runs_in_bf16_under_autocast_with_fp32_parameters_and_loss():
    torch.manual_seed(0)
    model = BoneLengthModel(hidden_size=8, embed_dim=16, dropout=0.0)
    x = torch.randn(3, 10, 16)
    with autocast("bf16", CPU):
        out, h_n = _run_gru(model.gru, x)
    assert out.dtype == torch.bfloat16 and h_n.dtype == torch.bfloat16
    out32, _ = _run_gru(model.gru, x)
    assert out32.dtype == torch.float32
    assert torch.allclose(out.float(), out32, atol=3e-2)
    inputs, lengths = torch.randn(4, 10, 17, 2), torch.rand(4, 16)
    loss = length_loss(model, inputs, lengths, "bf16")
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert float(model.gru.weight_hh_l0.grad.abs().sum()) > 0
    assert loss.item() == pytest.approx(length_loss(model, inputs, lengths, "fp32").item(), rel=2e-2)
