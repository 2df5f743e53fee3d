"""In-the-wild evaluation: the demo's held-out clips seen through random unseen phone-like cameras.

The test subjects' 3D motion (S9/S11: clips no training subject performs) is filmed by random virtual cameras
(:mod:`common.datasets.virtual_cameras`: any azimuth, elevation −10°…45°, 2–10 m, 24–35 mm equivalent, portrait and
landscape frames, small roll; drawn with a seed no trainer uses) and given detector-like 2D noise
(:func:`common.datasets.keypoint_noise.detector_noise` at the person's pixel scale). Every lifter × length source pair
available is scored on the same views:

* lifters: the Human3.6M-camera lifter (``checkpoint/demo_pose``), the virtual-camera lifter
  (``checkpoint/demo_wild``), the mix models (``checkpoint/demo_mix``, ``checkpoint/demo_wild_mix``), or any
  ``--lifter name=checkpoint``; missing checkpoints are listed and skipped;
* length sources: ``none`` (the lifter's raw poses), ``model`` (the bone-length model on the view's 2D; a mix
  model uses its own frozen one), ``self`` (the lifter's own per-bone median over the view, left/right
  averaged: the trivial baseline of the length model), ``mean`` (the training subjects' mean lengths: the
  other trivial baseline) and ``truth`` (the subject's true lengths: a bound). Adjustment keeps every bone's
  predicted direction (:func:`common.core.bones.adjust_bone_lengths`); a mix model's poses are already recomposed
  with its lengths, so ``none``/``self`` do not apply to it.

Scores (mm; frames of all views weighted equally): MPJPE and P-MPJPE (root-relative, camera frame), bone-length
error (mean |length − true length| over the 16 bones and all frames), length jitter (std over time of each bone's
length within a view, mean over bones), left/right difference (mean |left − right| over the 6 pairs and frames).

    python -m bench.in_the_wild [--data_dir data] [-d demo] [--views 2] [--segment 500] [--seed 7100]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common.core.bones import adjust_bone_lengths, average_symmetric, bone_lengths
from common.datasets.dataset import TEST_SUBJECTS, TRAIN_SUBJECTS, camera_space_root_relative, load_dataset, parse_subjects
from common.utils.device import add_device_argument, select_device
from common.utils.errors import UserError, cli
from common.models.length_model import predict_sequences
from common.core.bones import median_lengths
from common.core.metrics import mpjpe, p_mpjpe
from common.models.model_loading import load_model
from common.core.skeleton import SYMMETRIC_BONES
from common.train.train_mix import predict_mix
from common.train.train_pose import predict_lifter
from common.datasets.virtual_cameras import virtual_views, world_motions

DEFAULT_LIFTERS = [
    ("H36M-camera lifter", "checkpoint/demo_pose/final.bin"),
    ("virtual-camera lifter", "checkpoint/demo_wild/final.bin"),
    ("mix model (H36M cameras)", "checkpoint/demo_mix/final.bin"),
    ("mix model (virtual cameras)", "checkpoint/demo_wild_mix/final.bin"),
]
SOURCES = ("none", "model", "self", "mean", "truth")
COLUMNS = ("MPJPE", "P-MPJPE", "bone length error", "length jitter", "left/right difference")


def scores(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray], true_lengths: Sequence[np.ndarray]
           ) -> dict[str, float]:
    """The table's columns in mm for predicted and true poses (lists of (T, 17, 3) metres, root-relative,
    camera frame) and each view's true lengths (16,) metres; frames of all views weighted equally."""
    pred = np.concatenate(predicted).astype(np.float64)
    gt = np.concatenate(truth).astype(np.float64)
    lengths = bone_lengths(pred)  # (N, 16)
    target = np.concatenate([np.broadcast_to(x, (len(p), 16)) for x, p in zip(true_lengths, predicted)])
    left, right = [a for a, _ in SYMMETRIC_BONES], [b for _, b in SYMMETRIC_BONES]
    jitter = [bone_lengths(np.asarray(p, np.float64)).std(axis=0).mean() * len(p) for p in predicted]
    return {"MPJPE": float(mpjpe(pred, gt).mean() * 1000),
            "P-MPJPE": float(p_mpjpe(pred, gt).mean() * 1000),
            "bone length error": float(np.abs(lengths - target).mean() * 1000),
            "length jitter": float(np.sum(jitter) / len(pred) * 1000),
            "left/right difference": float(np.abs(lengths[:, left] - lengths[:, right]).mean() * 1000)}


def adjusted(poses: Sequence[np.ndarray], lengths: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each view's poses (T, 17, 3) with its lengths (16,) metres (directions kept)."""
    return [adjust_bone_lengths(p, x) for p, x in zip(poses, lengths)]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default="data")
    p.add_argument("-d", "--dataset", default="demo")
    p.add_argument("--subjects", default=",".join(TEST_SUBJECTS), help="held-out subjects filmed")
    p.add_argument("--views", type=int, default=2, help="random cameras per segment")
    p.add_argument("--segment", type=int, default=500, help="frames per segment (one camera each)")
    p.add_argument("--seed", type=int, default=7100, help="camera and noise seed (no trainer uses it)")
    p.add_argument("--lifter", action="append", default=[], metavar="NAME=CKPT",
                   help="a lifter or mix checkpoint to score (repeatable; default: the four demo models)")
    p.add_argument("--length_ckpt", default="checkpoint/demo_length/epoch_best.bin",
                   help="bone-length model for the 'model' source of plain lifters")
    p.add_argument("--no_noise", action="store_true", help="exact 2D projections (no detector-like noise)")
    add_device_argument(p)
    args = p.parse_args(argv)
    device = select_device(args.device)
    torch.manual_seed(0)

    lifters = [tuple(x.split("=", 1)) for x in args.lifter] or DEFAULT_LIFTERS
    if any(len(x) != 2 for x in lifters):
        raise UserError("--lifter expects NAME=CHECKPOINT")
    present = [(name, path) for name, path in lifters if Path(path).is_file()]
    for name, path in lifters:
        if not Path(path).is_file():
            print(f"skipped {name}: no {path}")
    if not present:
        raise UserError("no lifter checkpoint found (train them with scripts/run_demo.sh)")

    subjects = parse_subjects(args.subjects)
    dataset = load_dataset(args.data_dir, args.dataset, "gt", need_3d=True,
                           subjects=list(dict.fromkeys(subjects + TRAIN_SUBJECTS)))
    views = virtual_views(world_motions(dataset.world_3d, subjects), args.views, args.segment, args.seed,
                          noise=not args.no_noise)
    truth = [camera_space_root_relative(v) for v in views]
    true_lengths = [dataset.gt_bone_lengths(v.subject) for v in views]
    mean_lengths = average_symmetric(np.mean([dataset.gt_bone_lengths(s) for s in TRAIN_SUBJECTS], axis=0))
    frames = sum(len(t) for t in truth)
    portrait = np.mean([v.camera.res_h > v.camera.res_w for v in views])
    print(f"{len(views)} views of {', '.join(subjects)} ({frames} frames; {args.views} random cameras per "
          f"{args.segment}-frame segment, {portrait:.0%} portrait; seed {args.seed}; "
          f"{'exact 2D' if args.no_noise else 'detector-like 2D noise'})")

    length_model = None
    if Path(args.length_ckpt).is_file():
        length_model = load_model(args.length_ckpt, ("length",), device=device).model
    else:
        print(f"no 'model' lengths for plain lifters: no {args.length_ckpt}")

    rows: list[tuple[str, str, dict[str, float]]] = []
    for name, path in present:
        loaded = load_model(path, ("lifter", "mix"), device=device)
        if loaded.kind == "mix":
            own = [x[-1] if x.ndim == 2 else x for x in predict_sequences(loaded.model.length_model,
                                                                           [v.poses_2d for v in views])]
            poses = predict_mix(loaded.model, views, own, True, device)
            sources = {"model": poses, "truth": adjusted(poses, true_lengths),
                       "mean": adjusted(poses, [mean_lengths] * len(views))}
        else:
            raw = predict_lifter(loaded.model, views, True, device)
            sources = {"none": raw, "self": adjusted(raw, [median_lengths(x) for x in raw]),
                       "mean": adjusted(raw, [mean_lengths] * len(views)),
                       "truth": adjusted(raw, true_lengths)}
            if length_model is not None:
                predicted = predict_sequences(length_model, [v.poses_2d for v in views])
                sources["model"] = adjusted(raw, [x[-1] if x.ndim == 2 else x for x in predicted])
        for source in SOURCES:
            if source in sources:
                rows.append((name, source, scores(sources[source], truth, true_lengths)))

    print("\n| lifter | lengths | " + " | ".join(f"{c} (mm)" for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, source, values in rows:
        print(f"| {name} | {source} | " + " | ".join(f"{values[c]:.1f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
