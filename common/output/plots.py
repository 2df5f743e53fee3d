"""PNG figures shared by the scripts: training curves, bone lengths, error against frames seen.

Matplotlib runs headless (Agg); every function writes one file and returns its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from common.core.skeleton import BONE_NAMES
from common.utils.fileio import atomic_write


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100, tight: bool = True) -> Path:
    """Lay out (``tight``: matplotlib's tight layout; else the figure's own margins), write atomically (creating
    the folder; the format from the suffix) and close a matplotlib figure; returns the path."""
    path = Path(path)
    if tight:
        fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=dpi, format=path.suffix.lstrip(".") or "png"))
    if fig.canvas.manager is not None:  # made by pyplot, which keeps it until closed
        pyplot().close(fig)
    return path


def plot_series(series: Mapping[str, Sequence[float]], path: str | Path, xlabel: str, ylabel: str,
                title: str = "", log_x: bool = False, x: Sequence[float] | None = None) -> Path:
    """One line per named series against ``x`` (default 1, 2, ..., len: epochs, frames seen); NaN entries are
    left as gaps."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        if values.size:
            xs = np.arange(1, len(values) + 1) if x is None else np.asarray(x, dtype=np.float64)[: len(values)]
            ax.plot(xs, values, marker="." if len(values) < 30 else None, label=name)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, which="both" if log_x else "major")
    ax.legend()
    return save_figure(fig, path)


def plot_training_curves(curves: Mapping[str, Sequence[float]], path: str | Path,
                         ylabel: str = "error (mm)", title: str = "") -> Path:
    """One line per named curve (values per epoch, epoch 1 first); NaN entries are left as gaps."""
    return plot_series(curves, path, "epoch", ylabel, title)


def plot_bone_length_series(series: Mapping[str, np.ndarray], path: str | Path, title: str = "",
                            fps: float | None = None, dpi: int = 90) -> Path:
    """One small plot per bone of per-frame lengths. series: name -> (T, 16) metres, plotted in mm against
    time (s) when ``fps`` is given, else against the frame index. Drawn without pyplot and with fixed margins
    (importing pyplot and the tight layout took over half of this plot's ~1.6 s in ``inference.py``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 10))
    axes = fig.subplots(4, 4, sharex=True)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.05, top=0.93, wspace=0.25, hspace=0.3)
    for name, lengths in series.items():
        values = np.asarray(lengths) * 1000.0
        x = np.arange(len(values)) / fps if fps else np.arange(len(values))
        for bone, ax in enumerate(axes.flat):
            ax.plot(x, values[:, bone], lw=1, label=name)
    for bone, ax in enumerate(axes.flat):
        ax.set_title(BONE_NAMES[bone], fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)" if fps else "frame")
    for ax in axes[:, 0]:
        ax.set_ylabel("length (mm)")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=dpi, tight=False)


def plot_error_vs_frames(errors: Mapping[str, np.ndarray], path: str | Path, fps: float = 50.0,
                         title: str = "Causal GRU: bone-length error vs frames seen") -> Path:
    """errors: name -> (T,) mean bone-length error (mm) after 1..T frames; frames on a log axis."""
    return plot_series(errors, path, f"frames seen ({fps:g} fps)", "mean bone-length error (mm)", title, log_x=True)
