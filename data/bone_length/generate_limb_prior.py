"""Population prior of limb proportions in BlazePose's (anatomical) joint convention, from Anny bodies.

    python data/bone_length/generate_limb_prior.py [--amount 4000] [--seed 1]

Samples adult Anny bodies (``common.datasets.body_model.AnnySampler``: WHO-calibrated phenotypes plus randomised local
length blend shapes), regresses Anny's COCO keypoints (shoulders, elbows, wrists, hips, knees, ankles: anatomical
landmarks like BlazePose's) on the rest-pose meshes, and writes the mean and standard deviation of the centred
log lengths of the four limbs (thigh, calf, upper arm, lower arm; left/right averaged) to
``common/resources/limb_prior.json`` (read by ``inference.py --lengths prior``), the mean log ratio of each limb to
the body's stature (``inference.py --height``, :mod:`common.inference.body_size`), plus the mean length of all 16
bones of the 17 joints mapped from the COCO keypoints as the detectors map them (:func:`common.vision.detectors.to_h36m`;
left/right averaged; the prior ``inference.py --live`` starts from). Anny: Apache-2.0 code, CC0 data.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np

from common.core.bones import average_symmetric
from common.utils.errors import cli
from common.utils.fileio import atomic_write
from common.inference.length_sources import LIMB_PRIOR_FILE, PRIOR_LIMBS

# COCO keypoint names of Anny's regressor, per limb: (parent, child) for the left and the right side.
COCO_LIMBS = {
    "thigh": (("left_hip", "left_knee"), ("right_hip", "right_knee")),
    "calf": (("left_knee", "left_ankle"), ("right_knee", "right_ankle")),
    "upper_arm": (("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow")),
    "lower_arm": (("left_elbow", "left_wrist"), ("right_elbow", "right_wrist")),
}


COCO_17 = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
           "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
           "right_ankle"]  # the COCO order of common.vision.detectors.COCO_PARTS


def coco_limb_lengths(amount: int, seed: int, batch: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anny bodies' (amount, 4) limb lengths in metres (:data:`PRIOR_LIMBS` order, left/right averaged),
    (amount, 16) bone lengths of the 17 joints mapped from their COCO keypoints (:func:`common.vision.detectors.to_h36m`)
    and (amount,) statures in metres (the rest-pose mesh's extent along the direction from the ankles' midpoint
    to the nose)."""
    import anny
    import torch

    from common.datasets.body_model import AnnySampler
    from common.core.bones import bone_lengths
    from common.vision.detectors import COCO_PARTS, to_h36m

    sampler = AnnySampler(seed=seed)
    labels = COCO_17
    regressor = anny.KeypointsRegressor.coco(sampler.model, labels=labels)
    out, bones, statures = [], [], []
    for start in range(0, amount, batch):
        phenotype, local = sampler.sample_parameters(min(batch, amount - start))
        with torch.no_grad():
            vertices = sampler.model(phenotype_kwargs=phenotype, local_changes_kwargs=local)["rest_vertices"]
            points = regressor({"vertices": vertices}).double().cpu().numpy()
        lengths = [np.mean([np.linalg.norm(points[:, labels.index(b)] - points[:, labels.index(a)], axis=-1)
                            for a, b in COCO_LIMBS[limb]], axis=0) for limb in PRIOR_LIMBS]
        out.append(np.stack(lengths, axis=1))
        joints, _ = to_h36m(points, np.ones(points.shape[:2]), COCO_PARTS)
        bones.append(bone_lengths(joints.astype(np.float64)))
        up = points[:, labels.index("nose")] - (points[:, labels.index("left_ankle")]
                                                + points[:, labels.index("right_ankle")]) / 2
        up /= np.linalg.norm(up, axis=-1, keepdims=True)
        heights = np.einsum("bvc,bc->bv", vertices.double().cpu().numpy(), up)
        statures.append(heights.max(axis=1) - heights.min(axis=1))
    return np.concatenate(out), np.concatenate(bones), np.concatenate(statures)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--amount", type=int, default=4000, help="number of Anny bodies")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(LIMB_PRIOR_FILE))
    args = p.parse_args(argv)
    limbs, bones, statures = coco_limb_lengths(args.amount, args.seed)
    centred = np.log(limbs) - np.log(limbs).mean(axis=1, keepdims=True)
    import anny

    content = {"blazepose": {
        "limbs": list(PRIOR_LIMBS), "mean_centred_log": centred.mean(axis=0).round(6).tolist(),
        "sd_centred_log": centred.std(axis=0).round(6).tolist(),
        "mean_lengths_m": limbs.mean(axis=0).round(4).tolist(),
        "mean_bone_lengths_m": average_symmetric(bones.mean(axis=0)).round(4).tolist(),
        "mean_stature_m": round(float(statures.mean()), 4),
        "limb_to_stature_log": (np.log(limbs) - np.log(statures)[:, None]).mean(axis=0).round(6).tolist(),
        "bodies": args.amount, "seed": args.seed,
        "source": f"anny {getattr(anny, '__version__', '?')} COCO keypoint regressor on rest-pose adult bodies "
                  "(data/bone_length/generate_limb_prior.py); Anny: Apache-2.0 code, CC0 data"}}
    try:  # keep the convention offset that blazepose_convention_offset.py measured
        previous = json.loads(open(args.out).read()).get("blazepose", {})
    except (OSError, ValueError):
        previous = {}
    content["blazepose"].update({k: v for k, v in previous.items() if k.startswith("convention_offset")})
    atomic_write(args.out, lambda fh: fh.write((json.dumps(content, indent=1) + "\n").encode()))
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v * 1000:.0f} mm" for k, v in
                                            zip(PRIOR_LIMBS, content["blazepose"]["mean_lengths_m"])))


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
