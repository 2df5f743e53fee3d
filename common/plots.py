"""PNG figures shared by the scripts: training curves, bone lengths, error against frames seen.

Matplotlib runs headless (Agg); every function writes one file and returns its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from common.skeleton import BONE_NAMES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(curves: Mapping[str, Sequence[float]], path: str | Path,
                         ylabel: str = "error (mm)", title: str = "") -> Path:
    """One line per named curve (values per epoch, epoch 1 first); NaN entries are left as gaps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        values = np.asarray(values, dtype=np.float64)
        if values.size:
            ax.plot(np.arange(1, len(values) + 1), values, marker="." if len(values) < 30 else None, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_bone_lengths(series: Mapping[str, np.ndarray], path: str | Path, title: str = "",
                      unit_scale: float = 1000.0) -> Path:
    """Grouped bars per bone. series: name -> lengths (16,) metres (plotted in mm by default)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(BONE_NAMES))
    for i, (name, lengths) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, np.asarray(lengths) * unit_scale, width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(BONE_NAMES, rotation=45, ha="right")
    ax.set_ylabel("length (mm)" if unit_scale == 1000.0 else "length")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_error_vs_frames(errors: Mapping[str, np.ndarray], path: str | Path, fps: float = 50.0,
                         title: str = "Causal GRU: bone-length error vs frames seen") -> Path:
    """errors: name -> (T,) mean bone-length error (mm) after 1..T frames."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in errors.items():
        values = np.asarray(values, dtype=np.float64)
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xscale("log")
    ax.set_xlabel(f"frames seen ({fps:g} fps)")
    ax.set_ylabel("mean bone-length error (mm)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
