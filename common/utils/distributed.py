"""Multi-process training helpers (``torchrun --nproc_per_node N train.py ...``).

Generic for every trainer: :func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), starts the process group (``gloo`` on CPU, ``nccl`` on CUDA) and picks the device; without
torchrun it returns a single-process context and nothing else changes. Only rank 0 (``ctx.is_main``) writes
files and prints progress.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from common.utils.device import select_device
from common.utils.errors import UserError


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_name: str = "auto") -> DistContext:
    """Initialise distributed training when launched by torchrun (WORLD_SIZE > 1), else one process.

    On CUDA each rank uses ``cuda:<LOCAL_RANK>``; an explicit ``--device cuda:N`` is only valid alone.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(device_name)
    if world_size <= 1:
        return DistContext(0, 1, 0, device)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, device)


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on ``ctx.device``) when distributed, else ``model``."""
    if not ctx.enabled:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Mean of a scalar over all ranks (the value itself when not distributed)."""
    if not ctx.enabled:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64,
                          device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def gather_objects(obj, ctx: DistContext) -> list:
    """List of every rank's ``obj`` (rank order), on every rank; ``[obj]`` when not distributed."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def launch(train: Callable[[argparse.Namespace, DistContext], None], args: argparse.Namespace) -> None:
    """Run ``train(args, ctx)`` in this process's distributed context; every rank leaves the process group
    together (rank 0 may still be evaluating when the others finish), also after an error."""
    ctx = setup(args.device)
    try:
        train(args, ctx)
        barrier(ctx)
    finally:
        cleanup(ctx)


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
