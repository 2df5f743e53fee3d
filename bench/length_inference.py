"""Benchmark: bone-length inference (``length_model_inference.py``) over every subject of a Human3.6M-sized set.

    python -m bench.length_inference                    # Bi-GRU hidden 512 (random weights), all 7 subjects
    python -m bench.length_inference --ckpt checkpoint/biGRU_all.bin

The set is :mod:`common.datasets.h36m_sized` (the demo data replicated to Human3.6M's layout and size, built into
``$BLAPOSE_CACHE``). Side by side, each in a fresh child process (its own peak RSS):

* ``script``: ``length_model_inference.py --subjects S1,...,S11`` end to end (loading, prediction, files);
* ``packed, default budget``: the prediction step alone, packed batches sized by
  :func:`common.models.length_model.inference_frame_budget` (the script's default);
* ``packed, 200k frames``: the same with 200 000 padded frames per batch (the default before the budget).

Prints 2D frames per second of prediction and peak RSS, and the ratios of the last two.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from common.datasets.dataset import load_dataset
from common.utils.device import add_device_argument, select_device
from common.utils.errors import UserError, cli
from common.datasets.h36m_sized import add_set_arguments, build_h36m_sized_set
from common.models.length_model import BoneLengthModel, predict_sequences
from common.models.model_loading import load_model

SUBJECTS = ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]
VARIANTS = ("script", "packed, default budget", "packed, 200k frames")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _child(args: argparse.Namespace) -> dict:
    device = select_device(args.device)
    if args.child == "script":
        import length_model_inference

        with tempfile.TemporaryDirectory() as out_dir:
            start = time.perf_counter()
            length_model_inference.main(["--ckpt", args.ckpt, "-bi", "--subjects", ",".join(SUBJECTS),
                                         "--data_dir", args.set_dir, "--out_dir", out_dir, "-d", "h36m",
                                         "--device", args.device])
            seconds = time.perf_counter() - start
        return {"seconds": seconds, "frames": None, "peak_rss_gb": _peak_rss_gb()}
    model = load_model(args.ckpt, ("length",), bidirectional=True, device=device).model
    dataset = load_dataset(args.set_dir, "h36m", None, need_3d=False, camera_3d=False)
    sequences = [v.poses_2d for v in dataset.fetch(SUBJECTS)]
    budget = None if args.child == "packed, default budget" else 200_000
    start = time.perf_counter()
    predict_sequences(model, sequences, frame_budget=budget)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "frames": sum(len(s) for s in sequences), "peak_rss_gb": _peak_rss_gb()}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_set_arguments(p)
    p.add_argument("--ckpt", default=None, help="Bi-GRU checkpoint (default: random weights, hidden 512)")
    p.add_argument("--child", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    add_device_argument(p)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return
    info = build_h36m_sized_set(args.data_dir, args.set_dir, args.min_frames)
    if args.ckpt is None:
        args.ckpt = str(Path(args.set_dir) / "bench_bigru_512.bin")
        if not Path(args.ckpt).is_file():
            torch.manual_seed(0)
            torch.save({"model_pos": BoneLengthModel(hidden_size=512, dropout=0.0).state_dict()}, args.ckpt)
    print(f"Human3.6M-sized set: {info['frames']} frames x 4 cameras, {info['sequences']} sequences, "
          f"subjects {','.join(SUBJECTS)} ({args.set_dir}); checkpoint {args.ckpt}")
    results = {}
    for name in VARIANTS:
        out = subprocess.run([sys.executable, "-m", "bench.length_inference", "--set_dir", args.set_dir,
                              "--ckpt", args.ckpt, "--device", args.device, "--child", name],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise UserError(f"{name} failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    frames = next(r["frames"] for r in results.values() if r["frames"])
    for name, r in results.items():
        rate = f"{frames / r['seconds']:9.0f} frames/s" if r["frames"] else f"{r['seconds']:7.1f} s end to end"
        print(f"{name:26} {rate}  peak RSS {r['peak_rss_gb']:.2f} GB")
    new, old = results["packed, default budget"], results["packed, 200k frames"]
    print(f"default budget vs 200k frames: {old['seconds'] / new['seconds']:.2f}x speed, "
          f"{new['peak_rss_gb'] / old['peak_rss_gb']:.2f}x peak RSS")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
