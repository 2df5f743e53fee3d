"""How well a bone-length model reads a person's overall size through Human3.6M-like and phone-like cameras.

Held-out people (the bank rows ``train.py -t length`` never trains on, :func:`common.train.train_length.split_heldout_people`)
are given the test subjects' motion and filmed two ways, as the trainer builds its synthetic chunks
(:class:`common.datasets.synthetic.SyntheticBatchBuilder`: the motion's bone directions with the person's lengths, a
random translation of ``--translation_std`` m, exact projection):

* ``Human3.6M cameras``: the dataset's own four fixed cameras of the test subjects (what the trainer's
  "held-out people" rows use);
* ``phone cameras``: random phone-like virtual cameras (:mod:`common.datasets.virtual_cameras`: any azimuth,
  elevation −10°…45°, 2–10 m, 24–35 mm equivalent, portrait and landscape frames), ``--views`` per chunk window.

Both draw the same people (the same seed), so the mean's row is the same in both. Printed per camera set, for the
model, the training bank's mean and the linear 2D probe stored in the checkpoint (:mod:`common.models.length_probe`):
absolute error (mm), size-free error (mm) and the overall-size error (%, geometric mean over bones of predicted /
true). Needs a checkpoint of ``train.py -t length`` that stores the mean and the probe.

    python -m bench.length_size --ckpt checkpoint/demo_length/epoch_best.bin \
        --bank data/bone_lengths_anny_neutral_train.npz [--chunks 512] [-l 128] [--views 4] [--seed 7100]
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
import torch

from common.datasets.dataset import TEST_SUBJECTS, Sequence3D, load_dataset, parse_subjects
from common.datasets.synthetic import LengthSampler, SyntheticBatchBuilder
from common.datasets.virtual_cameras import virtual_views, world_motions
from common.models.length_model import LengthModel
from common.models.length_probe import LinearProbe, error_row, probe_features, stored_references
from common.models.model_loading import load_model
from common.train.train_length import load_length_bank, split_heldout_people
from common.utils.device import add_device_argument, evaluation_mode, select_device
from common.utils.errors import UserError, cli


def score(model: LengthModel, mean: np.ndarray, probe: LinearProbe, views: Sequence[Sequence3D],
          sampler: LengthSampler, chunks: int, chunk_len: int, translation_std: float, seed: int,
          device: torch.device) -> dict[str, dict[str, float]]:
    """``chunks`` synthetic chunks of ``chunk_len`` frames of ``views`` with people drawn from ``sampler``;
    returns {"model" | "mean" | "probe": :func:`common.models.length_probe.error_row`} (mm, mm, %)."""
    builder = SyntheticBatchBuilder(views, chunk_len, chunk_len, device, translation_std=translation_std)
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = torch.randint(builder.num_chunks, (chunks,), generator=gen, device=device)
    batch = builder.sample(ids, torch.zeros(chunks, dtype=torch.bool, device=device), sampler, gen)
    with torch.no_grad(), evaluation_mode(model):
        pred = torch.cat([model(x) for x in batch.keypoints_2d.split(32)])
    pred = (pred[:, -1] if pred.ndim == 3 else pred).float().cpu().numpy()
    target = batch.lengths.cpu().numpy()
    return {"model": error_row(pred, target), "mean": error_row(np.broadcast_to(mean, target.shape), target),
            "probe": error_row(probe.predict(probe_features(batch.keypoints_2d).cpu()), target)}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="a train.py -t length checkpoint (stores the mean and probe)")
    p.add_argument("--bank", required=True, help="the bank the model was trained with (its -bla)")
    p.add_argument("--data_dir", default="data")
    p.add_argument("-d", "--dataset", default="demo")
    p.add_argument("--subjects", default=",".join(TEST_SUBJECTS), help="whose motion the people perform")
    p.add_argument("--chunks", type=int, default=512, help="synthetic chunks per camera set")
    p.add_argument("-l", "--chunk_len", type=int, default=128, help="frames per chunk (the model's -l)")
    p.add_argument("--views", type=int, default=4, help="phone cameras per chunk window")
    p.add_argument("--translation_std", type=float, default=0.5, help="metres (the trainer's default)")
    p.add_argument("--seed", type=int, default=7100, help="people, chunk and camera seed")
    add_device_argument(p)
    args = p.parse_args(argv)
    if args.chunks < 1 or args.views < 1:
        raise UserError("--chunks and --views must be >= 1")
    device = select_device(args.device)
    loaded = load_model(args.ckpt, ("length",), device=device)
    mean, probe = stored_references(loaded.checkpoint)
    if mean is None or probe is None:
        raise UserError(f"{args.ckpt} stores no bank mean or probe (train it with this version's train.py)")
    subjects = parse_subjects(args.subjects)
    dataset = load_dataset(args.data_dir, args.dataset, "gt", need_3d=True, subjects=subjects)
    sampler = LengthSampler("smpl", device, bank=split_heldout_people(load_length_bank(args.bank))[1])
    sets = {"Human3.6M cameras": dataset.fetch(subjects, require_3d=True),
            "phone cameras": virtual_views(world_motions(dataset.world_3d, subjects), args.views, args.chunk_len,
                                           args.seed, noise=False)}
    print(f"held-out people through {','.join(subjects)}'s motion: {args.chunks} chunks of {args.chunk_len} "
          f"frames per camera set, seed {args.seed}; absolute mm / size-free mm / size error %")
    for name, views in sets.items():
        rows = score(loaded.model, mean, probe, views, sampler, args.chunks, args.chunk_len, args.translation_std,
                     args.seed, device)
        print(f"{name} ({len(views)} views):")
        for source, r in rows.items():
            print(f"  {source:5s} {r['mae']:6.2f} / {r['size_free']:5.2f} / {r['size_pct']:4.1f} %")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
