"""Benchmark: bone-length model training throughput and the share of step time spent building batches.

    python -m bench.length_training                 # demo data, paper's chunk length 512, Bi-GRU
    python -m bench.length_training --hidden 128 -b 16 --steps 10

Both parts are timed side by side in the same run on the same device: building a synthetic batch
(:meth:`common.synthetic.SyntheticBatchBuilder.sample`: gather, recomposition, projection, flips) and the
optimisation step (forward, L1 loss, backward, Adam). Target: batch building < 10 % of the step time.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np
import torch

from common.dataset import TRAIN_SUBJECTS, load_dataset, parse_subjects, resolve_dataset_name
from common.device import add_device_argument, select_device
from common.errors import UserError, cli
from common.length_model import BoneLengthModel
from common.synthetic import LengthSampler, SyntheticBatchBuilder, epoch_order


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-d", "--dataset", default="auto")
    p.add_argument("-k", "--keypoints", default=None)
    p.add_argument("--data_dir", default="data")
    p.add_argument("-str", "--subjects-train", dest="subjects_train", default=",".join(TRAIN_SUBJECTS))
    p.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=32)
    p.add_argument("-l", "--chunk_len", type=int, default=512)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("-layer", "--num_layers", type=int, default=1)
    p.add_argument("--causal", action="store_true", help="unidirectional GRUs instead of the Bi-GRU")
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    add_device_argument(p)
    args = p.parse_args(argv)
    if args.steps < 1:
        raise UserError("--steps must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    name = resolve_dataset_name(args.dataset, args.data_dir)
    subjects = parse_subjects(args.subjects_train)
    dataset = load_dataset(args.data_dir, name, args.keypoints, subjects=subjects)
    views = dataset.fetch(subjects, require_3d=True)
    builder = SyntheticBatchBuilder(views, args.chunk_len, args.chunk_len // 2, device)
    sampler = LengthSampler("random_norm_train", device,
                            subject_lengths=np.stack([dataset.gt_bone_lengths(s) for s in subjects]))
    model = BoneLengthModel(hidden_size=args.hidden, num_layers=args.num_layers,
                            bidirectional=not args.causal).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, amsgrad=True)
    gen = torch.Generator(device=device).manual_seed(0)
    ids, flips = epoch_order(builder.num_chunks, True, gen, device)
    reps = (args.batch_size * (args.steps + 1)) // len(ids) + 1
    ids, flips = ids.repeat(reps), flips.repeat(reps)

    build_time = step_time = 0.0
    for step in range(args.steps + 1):
        sl = slice(step * args.batch_size, (step + 1) * args.batch_size)
        _sync(device)
        t0 = time.perf_counter()
        batch = builder.sample(ids[sl], flips[sl], sampler, gen)
        _sync(device)
        t1 = time.perf_counter()
        pred = model(batch.keypoints_2d)
        target = batch.lengths if pred.ndim == 2 else batch.lengths[:, None]
        loss = (pred - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        t2 = time.perf_counter()
        if step > 0:  # the first step warms up allocators and kernels
            build_time += t1 - t0
            step_time += t2 - t1
    total = build_time + step_time
    sequences = args.steps * args.batch_size
    print(f"device {device}, torch threads {torch.get_num_threads()}, dataset '{name}' "
          f"({builder.num_chunks} chunks), {'causal GRU' if args.causal else 'Bi-GRU'} hidden {args.hidden} "
          f"x{args.num_layers}, batch {args.batch_size} x {args.chunk_len} frames, {args.steps} timed steps")
    print(f"batch building  {build_time / args.steps * 1000:9.1f} ms/step")
    print(f"optimisation    {step_time / args.steps * 1000:9.1f} ms/step")
    print(f"throughput      {sequences / total:9.1f} sequences/s ({sequences * args.chunk_len / total:.0f} frames/s)")
    print(f"batch building share of step time: {100 * build_time / total:.1f} % (target < 10 %)")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
