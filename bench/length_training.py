"""Benchmark: bone-length model training at the paper's architecture and batch, three ways side by side.

    python -m bench.length_training                      # Bi-GRU hidden 512, batch 256 x 512 frames, 3 rounds
    python -m bench.length_training --hidden 64 -b 32 --steps 3

Every variant runs the trainer's own step (:func:`common.train.train_length.length_loss` through
:func:`common.train.accumulation.accumulate_gradients`, Adam) on the same data in its own child process, so each
peak RSS is its own:

* ``fp32 full batch``   — the whole batch in one forward/backward (the step before micro-batches);
* ``fp32 micro-batched`` — ``--micro_batch auto`` at the default memory budget (the trainer's default in fp32);
* ``bf16 micro-batched`` — the same under ``--precision bf16`` (what ``--precision auto`` picks for this model
  where the device computes bf16 natively; elsewhere timed only with ``--force_bf16``).

The children start together and take turns: after one warm-up step each, every round times one step of every
variant in turn, so a machine whose load changes (shared CPUs) slows all variants of a round alike. Printed per
variant: samples/s (chunks of ``-l`` frames; from the median round), achieved GFLOP/s of the step (≈ 3 × the
forward pass's matmul FLOPs: expand layer + GRU input and recurrent products) against this machine's measured
matmul peak in fp32 and bf16, peak RSS, and the share of step time spent building batches; then each variant's
speed against the fp32 variants as the median of the per-round ratios (with their range), by wall time and by
process CPU time (on a shared machine the latter leaves out waiting for a core; exact with ``--threads 1``).
Data: the Human3.6M-sized set (:mod:`common.datasets.h36m_sized`, built from the demo data in ``data/`` into
``$BLAPOSE_CACHE``), so the RSS includes a training set of Human3.6M's size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from common.train.accumulation import (accumulate_gradients, length_model_sample_bytes, native_bf16,
                                 resolve_micro_batch)
from common.datasets.dataset import TRAIN_SUBJECTS, load_dataset, parse_subjects
from common.utils.device import add_device_argument, select_device
from common.utils.errors import UserError, cli
from common.datasets.h36m_sized import add_set_arguments, build_h36m_sized_set
from common.models.length_model import BoneLengthModel
from common.datasets.synthetic import LengthSampler, SyntheticBatchBuilder, epoch_order
from common.train.train_length import length_loss, load_length_bank

VARIANTS = {"fp32 full batch": ("fp32", "full"), "fp32 micro-batched": ("fp32", "auto"),
            "bf16 micro-batched": ("bf16", "auto")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(batch: int, frames: int, hidden: int, layers: int, embed: int = 256) -> float:
    """≈ FLOPs of one training step: 3 × (forward matmuls) — the 34→embed layer and, for each of the two GRU
    directions and each layer, the input (in × 3H) and recurrent (H × 3H) products at every frame."""
    forward = 2 * 34 * embed
    inputs = embed
    for _ in range(layers):
        forward += 2 * 2 * (inputs * 3 * hidden + hidden * 3 * hidden)
        inputs = 2 * hidden
    return 3.0 * forward * frames * batch


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int, seconds: float = 1.0) -> float:
    """Measured GFLOP/s of a square ``size`` matmul in ``dtype`` (best of repeated timings)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = max(best, 2 * size ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def _child(args: argparse.Namespace) -> None:
    """One variant in this process: one warm-up step, then one timed step per ``step`` line read from stdin,
    each answered with a JSON line; ``quit`` answers with the variant's summary."""
    device = select_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    precision, micro_spec = VARIANTS[args.child]
    dataset = load_dataset(args.set_dir, "h36m", None, subjects=parse_subjects(args.subjects_train))
    views = dataset.fetch(parse_subjects(args.subjects_train), require_3d=True)
    builder = SyntheticBatchBuilder(views, args.chunk_len, 64, device)
    sampler = LengthSampler("smpl", device, bank=load_length_bank(Path(args.set_dir) /
                                                                  "bone_lengths_smpl_neutral_all.npz"))
    torch.manual_seed(0)
    model = BoneLengthModel(hidden_size=args.hidden, num_layers=args.num_layers, dropout=0.0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, amsgrad=True)
    sample_bytes = length_model_sample_bytes(args.hidden, args.num_layers, True, args.chunk_len, precision=precision)
    micro = args.batch_size if micro_spec == "full" else resolve_micro_batch("auto", args.batch_size, sample_bytes)
    gen = torch.Generator(device=device).manual_seed(0)
    ids, flips = epoch_order(builder.num_chunks, True, gen, device)
    reps = (args.batch_size * (args.steps + 1)) // len(ids) + 1
    ids, flips = ids.repeat(reps), flips.repeat(reps)

    def step(index: int) -> dict[str, float]:
        rows = slice(index * args.batch_size, (index + 1) * args.batch_size)
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        batch = builder.sample(ids[rows], flips[rows], sampler, gen)
        _sync(device)
        t1, c1 = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        accumulate_gradients(model, args.batch_size, micro,
                             lambda r: length_loss(model, batch.keypoints_2d[r], batch.lengths[r], precision))
        optimizer.step()
        _sync(device)
        return {"build_s": t1 - t0, "step_s": time.perf_counter() - t1, "cpu_s": time.process_time() - c0}

    step(0)  # warms up allocators and kernels
    print(json.dumps({"ready": True}), flush=True)
    index = 0
    while sys.stdin.readline().strip() == "step":
        index += 1
        print(json.dumps(step(index)), flush=True)
    print(json.dumps({"micro_batch": micro, "threads": torch.get_num_threads(),
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}), flush=True)


def _reply(child: subprocess.Popen, name: str) -> dict:
    """The child's next JSON line, other output skipped (a UserError with its last stderr line if it died)."""
    while True:
        line = child.stdout.readline()
        if not line:
            child.wait()
            err = child.stderr.read().strip().splitlines()
            raise UserError(f"{name} failed: {err[-1] if err else child.returncode}")
        if line.startswith("{"):
            return json.loads(line)


def _run_side_by_side(names: list[str], forwarded: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """Start one child per variant, then ``args.steps`` rounds of one timed step each, variants in turn."""
    children = {name: subprocess.Popen([sys.executable, "-m", "bench.length_training", *forwarded, "--set_dir",
                                        args.set_dir, "--child", name], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for name in names}
    try:
        for name, child in children.items():
            _reply(child, name)  # warm-up done
        rounds: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(args.steps):
            for name, child in children.items():
                child.stdin.write("step\n")
                child.stdin.flush()
                rounds[name].append(_reply(child, name))
        results = {}
        for name, child in children.items():
            child.stdin.write("quit\n")
            child.stdin.flush()
            results[name] = {**_reply(child, name), "rounds": rounds[name]}
            child.wait()
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
    return results


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_set_arguments(p)
    p.add_argument("-str", "--subjects-train", dest="subjects_train", default=",".join(TRAIN_SUBJECTS))
    p.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=256)
    p.add_argument("-l", "--chunk_len", type=int, default=512)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("-layer", "--num_layers", type=int, default=1)
    p.add_argument("--steps", type=int, default=3,
                   help="rounds: timed steps per variant, variants in turn (after one warm-up step each)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--force_bf16", action="store_true", help="also time bf16 where it is only emulated")
    p.add_argument("--child", choices=list(VARIANTS), default=None, help=argparse.SUPPRESS)
    add_device_argument(p)
    args = p.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        raise UserError("--steps and -b must be >= 1")
    if args.child:
        _child(args)
        return
    info = build_h36m_sized_set(args.data_dir, args.set_dir, args.min_frames)
    device = select_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    peak32 = matmul_peak(torch.float32, device, 1024)
    bf16_native = native_bf16(device)
    peak16 = matmul_peak(torch.bfloat16, device, 1024 if bf16_native else 256)
    print(f"device {device}, torch threads {torch.get_num_threads()}, Human3.6M-sized set: {info['frames']} frames, "
          f"{info['sequences']} sequences ({args.set_dir}); Bi-GRU hidden {args.hidden} x{args.num_layers}, batch "
          f"{args.batch_size} x {args.chunk_len} frames, {args.steps} rounds of one timed step per variant")
    print(f"measured matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.1f} GFLOP/s "
          f"({'native' if bf16_native else 'NOT native on this device: emulated'})")
    names = [name for name in VARIANTS if VARIANTS[name][0] != "bf16" or bf16_native or args.force_bf16]
    if len(names) < len(VARIANTS):
        print("bf16 micro-batched: skipped (bf16 is emulated here; --force_bf16 times it anyway)")
    forwarded = list(argv if argv is not None else sys.argv[1:])
    results = _run_side_by_side(names, forwarded, args)
    flops = step_flops(args.batch_size, args.chunk_len, args.hidden, args.num_layers)
    print(f"{'variant':22}{'micro':>7}{'samples/s':>11}{'GFLOP/s':>9}{'% fp32 pk':>10}{'% bf16 pk':>10}"
          f"{'peak RSS':>10}{'building':>10}")
    for name, r in results.items():
        median = sorted(r["rounds"], key=lambda x: x["build_s"] + x["step_s"])[len(r["rounds"]) // 2]
        r["samples_per_s"] = args.batch_size / (median["build_s"] + median["step_s"])
        gflops = flops / median["step_s"] / 1e9
        print(f"{name:22}{r['micro_batch']:7d}{r['samples_per_s']:11.2f}{gflops:9.1f}"
              f"{100 * gflops / peak32:9.0f}%{100 * gflops / peak16:9.0f}%{r['peak_rss_gb']:8.2f}GB"
              f"{100 * median['build_s'] / (median['build_s'] + median['step_s']):9.1f}%")
    for base in ("fp32 full batch", "fp32 micro-batched"):
        for name in results:
            if name != base and not (base == "fp32 micro-batched" and name == "fp32 full batch"):
                print(f"{name} vs {base}: {_ratio(results[base], results[name], 'wall')} samples/s by wall time, "
                      f"{_ratio(results[base], results[name], 'cpu')} by process CPU time, "
                      f"{results[name]['peak_rss_gb'] / results[base]['peak_rss_gb']:.2f}x peak RSS")


def _ratio(base: dict, other: dict, clock: str) -> str:
    """Median (and range) over rounds of ``base``'s step time over ``other``'s: wall time, or process CPU time,
    which on a shared machine leaves out the time spent waiting for a core (exact with one thread)."""
    def seconds(r: dict) -> float:
        return r["build_s"] + r["step_s"] if clock == "wall" else r["cpu_s"]
    ratios = sorted(seconds(b) / seconds(o) for b, o in zip(base["rounds"], other["rounds"]))
    return f"{ratios[len(ratios) // 2]:.2f}x (median of {len(ratios)} rounds, {ratios[0]:.2f}-{ratios[-1]:.2f})"

if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
