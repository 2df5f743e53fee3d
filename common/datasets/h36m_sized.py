"""A Human3.6M-sized dataset built from the demo data, for benchmarks that anyone can run without Human3.6M.

The demo set (``setup.py``) has 7 subjects and 60 sequences of 1 200 frames; Human3.6M has the same subjects
with about 30 sequences each. :func:`build_h36m_sized_set` replicates every subject's demo sequences under
Human3.6M's action names (``Directions``, ``Directions 1``, ``Discussion``, ...) until the set holds at least
``min_frames`` 3D frames, and writes it under the real Human3.6M file names, so the paper's README commands
run on it unchanged (``-d auto`` picks ``h36m``):

* ``data_3d_h36m.npz`` (world frame, metres, 50 fps; the demo's 32-joint arrays);
* ``data_2d_h36m_cpn_ft_h36m_dbb.npz`` (the demo's detector-like 2D, pixels, 4 cameras);
* ``bone_lengths_smpl_neutral_all.npz`` / ``_train.npz`` (the demo's Anny banks under the SMPL names the
  paper's commands pass; Anny, not SMPL: see LICENCE.md in the folder).

Benchmark data only: sequences repeat, so its numbers measure speed and memory, not accuracy on Human3.6M.
"""
from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np

from common.utils.downloads import cache_dir
from common.utils.errors import UserError
from common.utils.fileio import atomic_write, load_npz, save_npz

# Human3.6M's 30 sequence names per subject (the common spelling of VideoPose3D's preprocessed files).
H36M_ACTIONS = [
    "Directions", "Directions 1", "Discussion", "Discussion 1", "Eating", "Eating 2", "Greeting", "Greeting 1",
    "Phoning", "Phoning 1", "Posing", "Posing 1", "Purchases", "Purchases 1", "Sitting", "Sitting 1",
    "SittingDown", "SittingDown 2", "Smoking", "Smoking 1", "Photo", "Photo 1", "Waiting", "Waiting 1",
    "Walking", "Walking 1", "WalkDog", "WalkDog 1", "WalkTogether", "WalkTogether 1",
]
BANKS = {"bone_lengths_anny_neutral_all.npz": "bone_lengths_smpl_neutral_all.npz",
         "bone_lengths_anny_neutral_train.npz": "bone_lengths_smpl_neutral_train.npz"}
LICENCE = """# Human3.6M-sized benchmark set (built by common/datasets/h36m_sized.py)

Not Human3.6M. Every sequence is a copy of a sequence of the demo dataset (`setup.py`; motion from the
DeepMimic clips of `pybullet` (zlib) and the MocapBank BVH of `bvhtoolbox` (MIT), projected through
Human3.6M's published cameras), renamed after Human3.6M's actions so that the file layout and size match
Human3.6M's. `bone_lengths_smpl_neutral_*.npz` hold the demo's Anny bone lengths (Anny: Apache-2.0 code,
CC0 data) under the file names of the paper's commands. For speed and memory benchmarks only.
"""


def add_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The benches' flags for this set: ``--data_dir`` (the demo files it is built from), ``--set_dir`` (where it
    is written; default ``$BLAPOSE_CACHE/h36m_sized``) and ``--min_frames``."""
    parser.add_argument("--data_dir", default="data", help="folder with the demo dataset (the set is built from it)")
    parser.add_argument("--set_dir", default=str(cache_dir() / "h36m_sized"),
                        help="folder of the Human3.6M-sized set (default: $BLAPOSE_CACHE/h36m_sized)")
    parser.add_argument("--min_frames", type=int, default=150_000, help="3D frames of the Human3.6M-sized set")


def build_h36m_sized_set(source_dir: str | Path, out_dir: str | Path, min_frames: int = 150_000,
                         keypoints: str = "detections") -> dict[str, int]:
    """Write the replicated set into ``out_dir`` (atomic files); a second call with the same arguments reuses it.

    source_dir: folder with the demo files ``data_3d_demo.npz`` and ``data_2d_demo_<keypoints>.npz``.
    Returns ``{"subjects", "sequences", "frames"}`` (frames = 3D frames, summed over sequences; each has 4
    camera views in the 2D file).
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    path_3d = source_dir / "data_3d_demo.npz"
    path_2d = source_dir / f"data_2d_demo_{keypoints}.npz"
    for path in (path_3d, path_2d):
        if not path.is_file():
            raise UserError(f"{path} not found: build the demo data first (python setup.py)")
    stamp = out_dir / f"h36m_sized_{min_frames}_{keypoints}.done"
    if stamp.is_file():
        return {k: int(v) for k, v in (line.split("=") for line in stamp.read_text().split())}
    world = load_npz(path_3d, required=["positions_3d"])["positions_3d"]
    raw_2d = load_npz(path_2d, required=["positions_2d", "metadata"])
    frames_2d = raw_2d["positions_2d"]
    subjects = list(world)
    demo_frames = sum(len(seq) for acts in world.values() for seq in acts.values())
    mean_frames = demo_frames / sum(len(acts) for acts in world.values())
    per_subject = math.ceil(min_frames / (mean_frames * len(subjects)))
    if per_subject > len(H36M_ACTIONS):
        raise UserError(f"{min_frames} frames need {per_subject} sequences per subject; at most "
                        f"{len(H36M_ACTIONS)} (Human3.6M's layout)")
    out_3d: dict[str, dict[str, np.ndarray]] = {}
    out_2d: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject in subjects:
        source_actions = list(world[subject])
        out_3d[subject], out_2d[subject] = {}, {}
        for i, name in enumerate(H36M_ACTIONS[:per_subject]):
            src = source_actions[i % len(source_actions)]
            out_3d[subject][name] = world[subject][src]
            out_2d[subject][name] = frames_2d[subject][src]
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npz(out_dir / "data_3d_h36m.npz", positions_3d=out_3d)
    save_npz(out_dir / "data_2d_h36m_cpn_ft_h36m_dbb.npz", positions_2d=out_2d, metadata=raw_2d["metadata"])
    for src, dst in BANKS.items():
        if (source_dir / src).is_file():
            shutil.copyfile(source_dir / src, out_dir / dst)
    atomic_write(out_dir / "LICENCE.md", lambda fh: fh.write(LICENCE.encode()))
    info = {"subjects": len(subjects), "sequences": per_subject * len(subjects),
            "frames": sum(len(seq) for acts in out_3d.values() for seq in acts.values())}
    atomic_write(stamp, lambda fh: fh.write(" ".join(f"{k}={v}" for k, v in info.items()).encode()))
    return info
