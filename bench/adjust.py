"""Benchmark: frames per second of the whole bone_adjust evaluation (adjustment with predicted and with
ground-truth lengths + MPJPE, P-MPJPE, N-MPJPE, MPJVE, bone-length and bone-direction errors and per-bone
errors for all three variants) on the demo test set replicated to >= 1 million frames.

Predictions are the ground truth plus Gaussian noise (20 mm per joint) and the lengths the true ones plus
noise: the benchmark measures speed, not accuracy. Side by side, the same evaluation called one sequence at
a time (the paper's loop structure) on a slice of the data gives the ratio.

    python -m bench.adjust [--data_dir data] [-d demo] [--frames 1000000] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common.adjustment import adjust
from common.datasets.dataset import TEST_SUBJECTS, parse_subjects
from common.utils.device import add_device_argument, select_device
from common.utils.errors import UserError, cli
from common.core.bones import bone_lengths
from common.utils.fileio import load_npz


def build_inputs(gt_path: Path, subjects: Sequence[str], frames: int, seed: int = 0):
    """Replicate the test sequences until ``frames`` frames; returns (Predictions, ground truth, lengths)."""
    raw = load_npz(gt_path, required=["positions_3d"])["positions_3d"]
    missing = [s for s in subjects if s not in raw]
    if missing:
        raise UserError(f"{gt_path}: subjects {missing} absent")
    keys = [(s, a, c) for s in subjects for a in raw[s] for c in range(adjust.NUM_CAMERAS)]
    gt = adjust.load_ground_truth(gt_path, keys)
    total = sum(len(g) for g in gt)
    copies = -(-frames // total)
    rng = np.random.default_rng(seed)
    keys, gt = keys * copies, gt * copies
    preds = [(g + rng.normal(scale=0.02, size=g.shape)).astype(np.float32) for g in gt]
    lengths = [(bone_lengths(g).mean(axis=0) + rng.normal(scale=0.005, size=16)).astype(np.float32)
               for g in gt]
    return adjust.Predictions(keys, preds), gt, lengths


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default="data")
    p.add_argument("-d", "--dataset", default="demo")
    p.add_argument("--subjects", default=",".join(TEST_SUBJECTS))
    p.add_argument("--frames", type=int, default=1_000_000, help="minimum number of frames after replication")
    p.add_argument("--loop_frames", type=int, default=50_000,
                   help="frames evaluated one sequence at a time for the side-by-side ratio")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_device_argument(p)
    args = p.parse_args(argv)
    device = select_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    gt_path = Path(args.data_dir) / f"data_3d_{args.dataset}.npz"
    if not gt_path.is_file():
        raise UserError(f"{gt_path} not found: run `python setup.py` to build the demo data first")
    predictions, gt, lengths = build_inputs(gt_path, parse_subjects(args.subjects), args.frames)
    n_frames = sum(len(g) for g in gt)
    print(f"{len(gt)} sequences, {n_frames:,} frames, device {device}, {torch.get_num_threads()} threads")

    start = time.perf_counter()
    data = adjust.prepare(predictions, gt, lengths)
    results = adjust.evaluate_adjustment(data, device, progress=False)
    batched = time.perf_counter() - start
    print(f"batched evaluation (3 variants x 6 metrics + per-bone): {batched:.2f} s, "
          f"{n_frames / batched:,.0f} frames/s")

    # the same work, one sequence at a time, on a slice
    count, frames_done = 0, 0
    while frames_done < min(args.loop_frames, n_frames):
        frames_done += len(gt[count])
        count += 1
    start = time.perf_counter()
    for i in range(count):
        single = adjust.prepare(adjust.Predictions(predictions.keys[i:i + 1], predictions.poses[i:i + 1]),
                                gt[i:i + 1], lengths[i:i + 1])
        adjust.evaluate_adjustment(single, device, progress=False)
    looped = time.perf_counter() - start
    print(f"per-sequence loop on {frames_done:,} frames ({count} sequences): {looped:.2f} s, "
          f"{frames_done / looped:,.0f} frames/s")
    print(f"ratio batched / per-sequence: {(n_frames / batched) / (frames_done / looped):.1f}x")
    print(f"(check: MPJPE unadjusted {results['unadjusted'].average['MPJPE']:.1f} mm, "
          f"adjusted {results['adjusted (pred. lengths)'].average['MPJPE']:.1f} mm)")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
