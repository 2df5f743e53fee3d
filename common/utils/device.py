"""Device selection shared by every script (``--device auto|cpu|cuda``)."""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Iterator

import torch

from common.utils.errors import UserError


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")


@contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[torch.device]:
    """Run a block with ``model`` in eval mode (yielding the device of its parameters); its train/eval flag is
    restored afterwards, also after an error."""
    was_training = model.training
    model.eval()
    try:
        yield next(model.parameters()).device
    finally:
        model.train(was_training)


def select_device(name: str = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:N`` to a torch device; a CUDA request without CUDA is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} requested but CUDA is not available on this machine")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast is lowering to on ``device`` right now, or None outside autocast."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None
