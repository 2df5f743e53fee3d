"""Device selection shared by every script (``--device auto|cpu|cuda``)."""
from __future__ import annotations

import argparse

import torch

from common.errors import UserError


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")


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
