"""Memory-bounded and mixed-precision optimisation steps shared by the trainers.

* **Micro-batches with gradient accumulation.** A batch of ``B`` samples is split into micro-batches of at
  most ``m`` samples; each micro-batch's mean loss is scaled by its share ``n_i / B`` before ``backward()``,
  so the accumulated gradient is the gradient of the full batch's mean loss and one optimiser step equals
  the full-batch step (up to float rounding) for models without cross-sample layers, such as the GRU
  bone-length model. Models with BatchNorm (the VideoPose3D lifter) normalise each micro-batch with its own
  statistics ("ghost batch norm"): the step is then *not* identical to the full-batch step, which is why
  ``--micro_batch auto`` keeps their whole batch whenever it fits the memory budget. Peak activation memory
  is that of one micro-batch. Under DistributedDataParallel gradients are synchronised once per step (on the
  last micro-batch).
* **Precision.** ``fp32`` or ``bf16`` (``torch.autocast``: matmuls and convolutions in bfloat16, parameters,
  optimiser state and losses in float32). ``auto`` picks bf16 only on devices with native bfloat16
  arithmetic (:func:`native_bf16`) *and* only for models whose bf16 training was checked against fp32 after
  equal epochs (the trainer says which: today the GRU length model; docs/memory_and_speed.md, "Precision").
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, ContextManager

import torch
from torch import nn

from common.utils.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_MEMORY_BUDGET_GB = 0.75  # activations of one micro-batch (forward + backward), GB
# Measured bytes kept for backward per frame and per GRU hidden unit and direction (nn.GRU on CPU, float32):
# the gates, the new state and the output of every step (~10.5 floats), see tests/test_accumulation.py.
GRU_FLOATS_PER_UNIT = 11


def native_bf16(device: torch.device) -> bool:
    """True when ``device`` computes bfloat16 natively: CUDA with bf16 support, or a CPU with the AVX-512 BF16
    or AMX instructions (Linux ``/proc/cpuinfo`` flags ``avx512_bf16`` / ``amx_bf16``) whose torch build runs
    bfloat16 through oneDNN (torch's own check, which alone is also true where bf16 is only emulated)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(name: str, device: torch.device, bf16_checked: bool = False) -> str:
    """``fp32`` or ``bf16`` for ``--precision name`` on ``device``. ``auto``: bf16 when the model's bf16
    training was checked against fp32 (``bf16_checked``) and ``device`` computes bf16 natively, else fp32."""
    if name not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if bf16_checked and native_bf16(device) else "fp32"
    if name == "bf16" and device.type not in ("cpu", "cuda"):
        raise UserError(f"--precision bf16 is not supported on {device.type}")
    return name


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The forward pass's context: ``torch.autocast`` to bfloat16 for ``bf16``, nothing for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def length_model_sample_bytes(hidden_size: int, num_layers: int, bidirectional: bool, chunk_len: int,
                              embed_dim: int = 256, precision: str = "fp32") -> int:
    """Estimated activation bytes one training sample (``chunk_len`` frames) keeps for the backward pass of
    the bone-length model (both GRU variants hold two GRU directions: one Bi-GRU or two causal GRUs)."""
    per_frame = 2 * num_layers * hidden_size * GRU_FLOATS_PER_UNIT + 3 * embed_dim + 4 * 34
    scale = 0.5 if precision == "bf16" else 1.0
    return int(math.ceil(chunk_len * per_frame * 4 * scale))


def lifter_sample_bytes(filter_widths: list[int], channels: int, frames: int = 1) -> int:
    """Estimated activation bytes per training sample of the strided VideoPose3D lifter (``frames`` output
    frames): every block keeps its convolution output, BatchNorm output, ReLU and dropout mask (~5 tensors of
    ``channels x time``) for two convolutions, at the time resolution of that block."""
    time_steps = frames * math.prod(filter_widths)
    total = 0
    for width in filter_widths:
        time_steps = max(frames, time_steps // width)
        total += 2 * 5 * channels * time_steps
    return int(total * 4)


def resolve_micro_batch(spec: str | int, batch_size: int, sample_bytes: int,
                        budget_gb: float = DEFAULT_MEMORY_BUDGET_GB) -> int:
    """Micro-batch size for ``--micro_batch spec`` (``auto`` or a positive integer) and a batch of
    ``batch_size``: ``auto`` = the whole batch if its activations fit ``budget_gb``, else the fewest equal
    micro-batches that do. Never more than ``batch_size``."""
    if str(spec) == "auto":
        if budget_gb <= 0:
            raise UserError("--memory_budget must be > 0 GB")
        fits = max(1, int(budget_gb * 1024 ** 3 // max(1, sample_bytes)))
        pieces = math.ceil(batch_size / fits)
        return max(1, math.ceil(batch_size / pieces))
    try:
        size = int(spec)
    except ValueError:
        raise UserError(f"--micro_batch must be 'auto' or a positive integer, got {spec!r}") from None
    if size < 1:
        raise UserError(f"--micro_batch must be >= 1, got {size}")
    return min(size, batch_size)


def lifter_step(args, batch_size: int, world_size: int, device: torch.device) -> tuple[int, int, str, str]:
    """The optimiser step of the VideoPose3D trainers (``-t pose``, ``-t mix``): ``batch_size`` samples split over
    ``world_size`` processes, micro-batches from ``args.micro_batch``/``args.memory_budget`` (activations of
    ``args.architecture``/``args.channels``/``args.stride``) and ``args.precision``.
    Returns (per-process batch, micro-batch, precision, the start-up description)."""
    per_rank = max(1, batch_size // world_size)
    micro = resolve_micro_batch(args.micro_batch, per_rank,
                                lifter_sample_bytes(args.architecture, args.channels, args.stride),
                                args.memory_budget)
    precision = resolve_precision(args.precision, device)
    text = (f"batch {per_rank} per process in micro-batches of {micro}"
            f"{' (BatchNorm statistics per micro-batch)' if micro < per_rank else ''}, {precision}")
    return per_rank, micro, precision, text


def accumulate_gradients(model: nn.Module, batch_size: int, micro_batch: int,
                         micro_loss: Callable[[slice], torch.Tensor]) -> float:
    """Run forward/backward over ``range(batch_size)`` in slices of ``micro_batch`` samples.

    micro_loss(rows) must return the *mean* loss (float32 scalar tensor) of the samples ``rows``; it is scaled
    by ``len(rows) / batch_size`` before ``backward()``, so the gradients summed into ``.grad`` are those of
    the full batch's mean loss. ``model`` may be a DistributedDataParallel wrapper: gradients are then
    all-reduced only on the last micro-batch. Returns the full batch's mean loss (a float). The caller zeroes
    the gradients before and steps the optimiser after.
    """
    starts = list(range(0, batch_size, micro_batch))
    total = 0.0
    for i, first in enumerate(starts):
        rows = slice(first, min(first + micro_batch, batch_size))
        share = (rows.stop - rows.start) / batch_size
        sync = i == len(starts) - 1 or not isinstance(model, nn.parallel.DistributedDataParallel)
        with contextlib.nullcontext() if sync else model.no_sync():
            loss = micro_loss(rows)
            (loss * share).backward()
        total += float(loss.detach()) * share
    return total


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch_size: int, micro_batch: int,
                   micro_loss: Callable[[slice], torch.Tensor]) -> float:
    """One optimiser step on a batch of ``batch_size`` samples: zero the gradients, accumulate them over
    micro-batches (:func:`accumulate_gradients`, same ``micro_loss`` contract) and step. Returns the batch's
    mean loss (a float)."""
    optimizer.zero_grad(set_to_none=True)
    loss = accumulate_gradients(model, batch_size, micro_batch, micro_loss)
    optimizer.step()
    return loss
