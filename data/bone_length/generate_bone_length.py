"""Generate synthetic bone-length vectors (N, 16) in metres from a parametric body model.

    cd data/bone_length/ && python generate_bone_length.py --gender neutral --amount 200000 --align

Writes into ``--out_dir`` (default: the ``data/`` folder above this script):

* ``bone_lengths_<body model>_<gender>.npz`` (key ``data``): the raw samples, left/right pairs equal;
* with ``--align``: ``bone_lengths_<dataset>.npz`` (``data`` (S, 16) per-subject mean lengths of
  ``data_3d_<dataset>.npz``, ``subjects``), ``..._train.npz`` (samples shifted so their mean equals the
  training subjects' mean: the honest default) and ``..._all.npz`` (mean matched to all subjects, as the
  paper's headline model);
* ``bone_lengths_<body model>_<gender>_stats.txt``: mean/std/p5/p95 (mm) per bone and the correlation matrix.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[2]

from common.core.bones import average_symmetric, bone_lengths
from common.datasets.dataset import TRAIN_SUBJECTS, parse_subjects, resolve_dataset_name
from common.utils.device import add_device_argument, select_device
from common.utils.errors import UserError, cli
from common.utils.fileio import atomic_write, check_array, load_npz, save_npz
from common.core.skeleton import BONE_NAMES, H36M_32_TO_17
from common.utils.validation import ArgumentParser, check_inputs_survive, check_output_dir, number

DATA_DIR = REPO / "data"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description="Generate synthetic bone lengths from a body model.")
    p.add_argument("--body_model", choices=["anny", "smpl"], default="anny",
                   help="anny (open, default) or smpl (the paper's; needs the licensed SMPL files)")
    p.add_argument("-g", "--gender", choices=["neutral", "mix"], default="neutral",
                   help="neutral body, or half male / half female")
    p.add_argument("-amt", "--amount", type=number(int, ge=1), default=200000, help="number of bone-length vectors")
    p.add_argument("--align", action="store_true",
                   help="also write the dataset's per-subject lengths and the mean-aligned _train/_all sets")
    p.add_argument("-d", "--dataset", default="auto",
                   help="dataset whose subjects are used for --align: data_3d_<dataset>.npz (h36m, demo; "
                        "auto: h36m when present, else demo)")
    p.add_argument("-str", "--subjects-train", dest="subjects_train", default=",".join(TRAIN_SUBJECTS),
                   help="training subjects for the _train alignment")
    p.add_argument("--data_dir", default=str(DATA_DIR), help="folder holding data_3d_<dataset>.npz")
    p.add_argument("--out_dir", default=None, help="output folder (default: --data_dir)")
    p.add_argument("--age_min", type=number(float, ge=0), default=20.0, help="Anny: youngest morphological age (years)")
    p.add_argument("--age_max", type=number(float, ge=0), default=60.0, help="Anny: oldest morphological age (years)")
    p.add_argument("--local_scale", type=number(float, ge=0), default=None,
                   help="Anny: local length blend shapes ~ U(-s, s), s >= 0 (default 0.3)")
    p.add_argument("--smpl_dir", default=str(REPO / "body_models"),
                   help="SMPL: folder with smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl and J_regressor_h36m_correct.npy")
    p.add_argument("--seed", type=int, default=1, help="random seed")
    add_device_argument(p)
    return p


def dataset_subject_lengths(path: Path) -> tuple[list[str], np.ndarray]:
    """Per-subject mean bone lengths (S, 16) metres of a 3D dataset file: mean over actions of each action's
    mean per-frame lengths, left/right pairs averaged."""
    raw = load_npz(path, required=["positions_3d"])["positions_3d"]
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{path}: 'positions_3d' must be a non-empty dict subject -> action -> array")
    subjects, lengths = [], []
    for subject, actions in raw.items():
        per_action = []
        for action, positions in actions.items():
            arr = np.asarray(positions)
            if arr.ndim == 3 and arr.shape[1] == 32:
                arr = arr[:, H36M_32_TO_17]
            arr = check_array(f"{path.name} {subject}/{action}", arr, (None, 17, 3))
            per_action.append(bone_lengths(arr).mean(axis=0))
        subjects.append(subject)
        lengths.append(average_symmetric(np.mean(per_action, axis=0)))
    return subjects, np.stack(lengths).astype(np.float32)


def statistics_report(samples: np.ndarray, title: str) -> str:
    """mean/std/p5/p95 (mm) per bone and the 16 x 16 correlation matrix of the lengths."""
    mm = samples.astype(np.float64) * 1000.0
    lines = [title, f"{'bone':14}{'mean':>9}{'std':>9}{'p5':>9}{'p95':>9}"]
    for i, name in enumerate(BONE_NAMES):
        p5, p95 = np.percentile(mm[:, i], [5, 95])
        lines.append(f"{name:14}{mm[:, i].mean():9.1f}{mm[:, i].std():9.1f}{p5:9.1f}{p95:9.1f}")
    corr = np.corrcoef(mm.T)
    lines.append("correlation matrix (rows/columns in the order above; left/right pairs are equal by design):")
    lines.append(" " * 14 + "".join(f"{n[:6]:>7}" for n in BONE_NAMES))
    for i, name in enumerate(BONE_NAMES):
        lines.append(f"{name:14}" + "".join(f"{c:7.2f}" for c in corr[i]))
    limbs = [1, 2, 11, 12]  # thigh, calf, upper arm, lower arm
    sub = corr[np.ix_(limbs, limbs)]
    lines.append(f"mean correlation between thigh, calf, upper arm and lower arm: "
                 f"{(sub.sum() - len(limbs)) / (len(limbs) ** 2 - len(limbs)):.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    device = select_device(args.device)
    data_dir = Path(args.data_dir)
    out_dir = check_output_dir(Path(args.out_dir) if args.out_dir else data_dir, "--out_dir")
    args.dataset = resolve_dataset_name(args.dataset, data_dir)
    dataset_file = data_dir / f"data_3d_{args.dataset}.npz"
    if args.align and not dataset_file.is_file():  # fail before the expensive part
        raise UserError(f"--align needs {dataset_file} (run setup.py, or pick -d/--data_dir)")
    stem = f"bone_lengths_{args.body_model}_{args.gender}"
    names = [f"{stem}.npz", f"{stem}_stats.txt"]
    if args.align:
        names += [f"bone_lengths_{args.dataset}.npz", f"{stem}_train.npz", f"{stem}_all.npz"]
    check_inputs_survive([("--data_dir", dataset_file if args.align else None)],
                         [("--out_dir", out_dir / name) for name in names])

    start = time.time()
    if args.body_model == "anny":
        from common.datasets.body_model import DEFAULT_LOCAL_SCALE, AnnySampler

        sampler = AnnySampler(args.gender, (args.age_min, args.age_max),
                              DEFAULT_LOCAL_SCALE if args.local_scale is None else args.local_scale,
                              args.seed, device)
        samples = sampler.sample(args.amount)
    else:
        from common.datasets.body_model import sample_smpl

        samples = sample_smpl(args.amount, args.gender, args.smpl_dir, args.seed)
    elapsed = time.time() - start
    save_npz(out_dir / f"{stem}.npz", data=samples)
    report = statistics_report(samples, f"{len(samples)} {args.body_model} bodies ({args.gender}), "
                                        f"bone lengths in mm, generated in {elapsed:.1f} s")
    atomic_write(out_dir / f"{stem}_stats.txt", lambda fh: fh.write((report + "\n").encode()))
    print(report)
    print(f"Generated {len(samples)} bone-length vectors in {elapsed:.1f} s -> {out_dir / (stem + '.npz')}")

    if not args.align:
        return
    subjects, per_subject = dataset_subject_lengths(dataset_file)
    save_npz(out_dir / f"bone_lengths_{args.dataset}.npz", data=per_subject, subjects=np.array(subjects))
    train = [s for s in parse_subjects(args.subjects_train) if s in subjects]
    if not train:
        raise UserError(f"none of the training subjects {args.subjects_train} is in {dataset_file.name} "
                        f"(has {subjects})")
    sample_mean = samples.mean(axis=0)
    for suffix, reference in (("train", per_subject[[subjects.index(s) for s in train]].mean(axis=0)),
                              ("all", per_subject.mean(axis=0))):
        aligned = samples + (reference - sample_mean)
        save_npz(out_dir / f"{stem}_{suffix}.npz", data=aligned.astype(np.float32))
        print(f"{stem}_{suffix}.npz: mean matched to {'training subjects ' + ','.join(train) if suffix == 'train' else 'all subjects'} "
              f"({' '.join(f'{v * 1000:.0f}' for v in reference)} mm)")
    print(f"Per-subject lengths of {dataset_file.name} -> {out_dir / f'bone_lengths_{args.dataset}.npz'}")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
