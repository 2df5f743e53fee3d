"""Population prior of limb proportions in BlazePose's (anatomical) joint convention, from Anny bodies.

    python data/bone_length/generate_limb_prior.py [--amount 4000] [--seed 1]

Samples adult Anny bodies (``common.body_model.AnnySampler``: WHO-calibrated phenotypes plus randomised local
length blend shapes), regresses Anny's COCO keypoints (shoulders, elbows, wrists, hips, knees, ankles: anatomical
landmarks like BlazePose's) on the rest-pose meshes, and writes the mean and standard deviation of the centred
log lengths of the four limbs (thigh, calf, upper arm, lower arm; left/right averaged) to
``common/resources/limb_prior.json`` (read by ``inference.py --lengths prior``). Anny: Apache-2.0 code, CC0 data.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np

from common.errors import cli
from common.fileio import atomic_write
from common.length_sources import LIMB_PRIOR_FILE, PRIOR_LIMBS

# COCO keypoint names of Anny's regressor, per limb: (parent, child) for the left and the right side.
COCO_LIMBS = {
    "thigh": (("left_hip", "left_knee"), ("right_hip", "right_knee")),
    "calf": (("left_knee", "left_ankle"), ("right_knee", "right_ankle")),
    "upper_arm": (("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow")),
    "lower_arm": (("left_elbow", "left_wrist"), ("right_elbow", "right_wrist")),
}


def coco_limb_lengths(amount: int, seed: int, batch: int = 500) -> np.ndarray:
    """(amount, 4) limb lengths in metres (:data:`PRIOR_LIMBS` order, left/right averaged) of Anny bodies."""
    import anny
    import torch

    from common.body_model import AnnySampler

    sampler = AnnySampler(seed=seed)
    labels = sorted({name for sides in COCO_LIMBS.values() for side in sides for name in side})
    regressor = anny.KeypointsRegressor.coco(sampler.model, labels=labels)
    out = []
    for start in range(0, amount, batch):
        phenotype, local = sampler.sample_parameters(min(batch, amount - start))
        with torch.no_grad():
            vertices = sampler.model(phenotype_kwargs=phenotype, local_changes_kwargs=local)["rest_vertices"]
            points = regressor({"vertices": vertices}).double().cpu().numpy()
        lengths = [np.mean([np.linalg.norm(points[:, labels.index(b)] - points[:, labels.index(a)], axis=-1)
                            for a, b in COCO_LIMBS[limb]], axis=0) for limb in PRIOR_LIMBS]
        out.append(np.stack(lengths, axis=1))
    return np.concatenate(out)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--amount", type=int, default=4000, help="number of Anny bodies")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(LIMB_PRIOR_FILE))
    args = p.parse_args(argv)
    limbs = coco_limb_lengths(args.amount, args.seed)
    centred = np.log(limbs) - np.log(limbs).mean(axis=1, keepdims=True)
    import anny

    content = {"blazepose": {
        "limbs": list(PRIOR_LIMBS), "mean_centred_log": centred.mean(axis=0).round(6).tolist(),
        "sd_centred_log": centred.std(axis=0).round(6).tolist(),
        "mean_lengths_m": limbs.mean(axis=0).round(4).tolist(), "bodies": args.amount, "seed": args.seed,
        "source": f"anny {getattr(anny, '__version__', '?')} COCO keypoint regressor on rest-pose adult bodies "
                  "(data/bone_length/generate_limb_prior.py); Anny: Apache-2.0 code, CC0 data"}}
    atomic_write(args.out, lambda fh: fh.write((json.dumps(content, indent=1) + "\n").encode()))
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v * 1000:.0f} mm" for k, v in
                                            zip(PRIOR_LIMBS, content["blazepose"]["mean_lengths_m"])))


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
