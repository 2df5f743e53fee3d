"""How well a bone-length model reads a person's overall size through Human3.6M-like and phone-like cameras.

Held-out people (the bank rows ``train.py -t length`` never trains on, :func:`common.train.train_length.split_heldout_people`)
are given the test subjects' motion and filmed two ways, as the trainer builds its synthetic chunks
(:class:`common.datasets.synthetic.SyntheticBatchBuilder`: the motion's bone directions with the person's lengths, a
random translation of ``--translation_std`` m, exact projection):

* ``Human3.6M cameras``: the dataset's own four fixed cameras of the test subjects (what the trainer's
  "held-out people" rows use);
* ``phone cameras``: random phone-like virtual cameras (:mod:`common.datasets.virtual_cameras`: any azimuth,
  elevation −10°…45°, 2–10 m, 24–35 mm equivalent, portrait and landscape frames), ``--views`` per chunk window.

Both draw the same people (the same seed), so the mean's row is the same in both. ``--placement`` puts the
synthetic bodies as the trainer can (:mod:`common.datasets.synthetic`): ``floor`` (default; feet at the motion's
floor height, translation along the floor: what real footage shows) or ``paper`` (the paper's recipe: the original
pelvis trajectory, translation in 3D). Printed per camera set, for the model, the training bank's mean and the
linear 2D probe stored in the checkpoint (:mod:`common.models.length_probe`): absolute error (mm), size-free error
(mm) and the overall-size error (%, geometric mean over bones of predicted / true). The model twice: given each
chunk's camera (:func:`common.core.camera.camera_features`; read only by models trained with ``--camera_input``)
and with it withheld (``camera unknown``; the same figures for other models). Needs a checkpoint of
``train.py -t length`` that stores the mean and the probe.

Then the *size response*: the test subjects' own motion (128-frame chunks through their own cameras, exact 2D, on
the floor, no translation) with their own lengths scaled by 0.9, 1.0 and 1.1: the overall size (geometric mean of
the chunks' size factors against the bank mean) the model and the probe read; a source that reads size moves with
the true size (slope 1), one that does not stays put (slope 0).

Last, whether the test subjects' *real* 2D (``--keypoints``, the demo's detector-like keypoints) carries the floor
cue: per frame the ray through the lower ankle in the image (pinhole, the calibrated camera) meets the floor plane
raised by the training subjects' median lower-ankle height; printed is the median error of that distance against
the ankle's true depth, beside the true median lower-ankle heights of the training and test subjects.

    python -m bench.length_size --ckpt checkpoint/demo_length/epoch_best.bin \
        --bank data/bone_lengths_anny_neutral_train.npz [--chunks 512] [-l 128] [--views 4] [--seed 7100] \
        [--placement floor]
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
import torch

from common.datasets.dataset import TEST_SUBJECTS, TRAIN_SUBJECTS, PoseDataset, Sequence3D, load_dataset, parse_subjects
from common.datasets.synthetic import ANKLES, PLACEMENTS, LengthSampler, SyntheticBatch, SyntheticBatchBuilder
from common.datasets.virtual_cameras import virtual_views, world_motions
from common.models.length_model import LengthModel
from common.models.length_probe import (LinearProbe, error_row, floor_ankle_depths, lower_ankle_height_m,
                                        probe_features, size_factor, stored_references)
from common.models.model_loading import load_model
from common.train.train_length import load_length_bank, model_inputs, split_heldout_people
from common.utils.device import add_device_argument, evaluation_mode, select_device
from common.utils.errors import UserError, cli


def score(model: LengthModel, mean: np.ndarray, probe: LinearProbe, views: Sequence[Sequence3D],
          sampler: LengthSampler, chunks: int, chunk_len: int, translation_std: float, seed: int,
          device: torch.device, placement: str = "floor") -> dict[str, dict[str, float]]:
    """``chunks`` synthetic chunks of ``chunk_len`` frames of ``views`` with people drawn from ``sampler``, placed
    by ``placement``; returns {"model" | "mean" | "probe": :func:`common.models.length_probe.error_row`} (mm, mm, %)."""
    builder = SyntheticBatchBuilder(views, chunk_len, chunk_len, device, translation_std=translation_std,
                                    placement=placement)
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = torch.randint(builder.num_chunks, (chunks,), generator=gen, device=device)
    batch = builder.sample(ids, torch.zeros(chunks, dtype=torch.bool, device=device), sampler, gen)
    target = batch.lengths.cpu().numpy()
    rows = {source: error_row(predict_chunks(model, batch, known), target) for source, known in _MODEL_ROWS}
    return {**rows, "mean": error_row(np.broadcast_to(mean, target.shape), target),
            "probe": error_row(probe.predict(probe_features(batch.keypoints_2d).cpu()), target)}


_MODEL_ROWS = (("model", True), ("model, camera unknown", False))  # the camera given to the model, or withheld


def predict_chunks(model: LengthModel, batch: SyntheticBatch, camera_known: bool) -> np.ndarray:
    """(B, 16) metres: the model's eval-mode lengths of a synthetic batch, given the chunks' cameras or not
    (only a model trained with ``--camera_input`` reads them)."""
    cameras = batch.camera if camera_known else torch.full_like(batch.camera, float("nan"))
    with torch.no_grad(), evaluation_mode(model):
        pred = torch.cat([model(*model_inputs(model, x, camera))
                          for x, camera in zip(batch.keypoints_2d.split(32), cameras.split(32))])
    return (pred[:, -1] if pred.ndim == 3 else pred).float().cpu().numpy()


SIZE_STEPS = (0.9, 1.0, 1.1)


def size_response(model: LengthModel, mean: np.ndarray, probe: LinearProbe, dataset: PoseDataset, subject: str,
                  chunk_len: int, device: torch.device) -> dict[str, np.ndarray]:
    """The overall size (a factor of the bank ``mean``) read from ``subject``'s own motion with their own lengths
    times each of :data:`SIZE_STEPS` (floor placement, no translation, every chunk of every view):
    {"true" | "model" | "model, camera unknown" | "probe": (3,)}."""
    views = dataset.fetch([subject], require_3d=True)
    builder = SyntheticBatchBuilder(views, chunk_len, chunk_len, device, placement="floor")
    ids = torch.arange(builder.num_chunks, device=device)
    own = torch.as_tensor(dataset.gt_bone_lengths(subject), device=device)
    out: dict[str, list[float]] = {"true": [], "model": [], "model, camera unknown": [], "probe": []}
    for step in SIZE_STEPS:
        lengths = (own * step).expand(len(ids), -1)
        batch = builder.build(ids, lengths, torch.zeros(len(ids), dtype=torch.bool, device=device),
                              torch.zeros((len(ids), 3), device=device))
        for name, lengths_read in (("true", lengths[:1].cpu().numpy()),
                                   *((source, predict_chunks(model, batch, known)) for source, known in _MODEL_ROWS),
                                   ("probe", probe.predict(probe_features(batch.keypoints_2d).cpu()))):
            out[name].append(float(np.exp(np.log(size_factor(lengths_read, mean)).mean())))
    return {k: np.asarray(v) for k, v in out.items()}


def floor_distance_error(views: Sequence[Sequence3D], ankle_height: float) -> np.ndarray:
    """Per frame of every view (with 3D), the relative error of the lower ankle's depth read from its 2D alone
    (:func:`common.models.length_probe.floor_ankle_depths`, the plane ``ankle_height`` m above the floor) against
    that ankle's true camera-frame depth. Returns (N,) ``|estimate / true - 1|``."""
    errors = []
    for view in views:
        depth, _, lower = floor_ankle_depths(view.poses_2d, view.camera, ankle_height)
        frames = np.arange(len(depth))
        true_depth = view.poses_3d[frames, 0, 2] + view.poses_3d[frames, lower, 2]
        errors.append(np.abs(depth / true_depth - 1.0))
    return np.concatenate(errors)


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
    p.add_argument("--placement", choices=PLACEMENTS, default="floor", help="where synthetic bodies go")
    p.add_argument("-k", "--keypoints", default="detections", help="the real 2D of the floor-cue check")
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
          f"frames per camera set, seed {args.seed}, {args.placement} placement; absolute mm / size-free mm / "
          "size error %")
    for name, views in sets.items():
        rows = score(loaded.model, mean, probe, views, sampler, args.chunks, args.chunk_len, args.translation_std,
                     args.seed, device, args.placement)
        print(f"{name} ({len(views)} views):")
        for source, r in rows.items():
            print(f"  {source:21s} {r['mae']:6.2f} / {r['size_free']:5.2f} / {r['size_pct']:4.1f} %")
    print(f"size response (own motion and cameras, own lengths x {', '.join(map(str, SIZE_STEPS))}; "
          "slope = read change / true change):")
    for subject in subjects:
        read = size_response(loaded.model, mean, probe, dataset, subject, args.chunk_len, device)
        slopes = {k: (v[-1] - v[0]) / (read["true"][-1] - read["true"][0]) for k, v in read.items()}
        print(f"  {subject}: " + "   ".join(f"{k} " + " ".join(f"{x:.3f}" for x in v)
                                          + ("" if k == "true" else f" (slope {slopes[k]:.2f})")
                                          for k, v in read.items()))
    floor_cue(args.data_dir, args.dataset, args.keypoints, subjects)


def floor_cue(data_dir: str, dataset_name: str, keypoints: str, subjects: Sequence[str]) -> None:
    """Print the floor-cue check of the module docstring for ``subjects``' real ``keypoints``."""
    train = [s for s in TRAIN_SUBJECTS if s not in subjects]
    real = load_dataset(data_dir, dataset_name, keypoints, need_3d=True, subjects=list(subjects) + train)
    heights = {s: lower_ankle_height_m(list(real.world_3d[s].values())) for s in list(train) + list(subjects)}
    ankle_height = lower_ankle_height_m([p for s in train for p in real.world_3d[s].values()])
    print("floor cue: median lower-ankle height above the floor (m): "
          + ", ".join(f"{s} {h:.3f}" for s, h in heights.items()))
    for name, views in ((keypoints, real.fetch(subjects, require_3d=True)),
                        ("exact", load_dataset(data_dir, dataset_name, "gt", need_3d=True,
                                               subjects=subjects).fetch(subjects, require_3d=True))):
        err = floor_distance_error(views, ankle_height) * 100.0
        print(f"  distance from the lower ankle's {name} 2D through the floor plane at {ankle_height:.3f} m: "
              f"median error {np.median(err):.1f} %, 90th percentile {np.percentile(err, 90):.1f} % "
              f"({len(err)} frames)")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
