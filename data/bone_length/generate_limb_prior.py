"""Population prior of limb proportions in BlazePose's (anatomical) joint convention, from Anny bodies.

    python data/bone_length/generate_limb_prior.py [--amount 4000] [--seed 1]

Samples adult Anny bodies (``common.datasets.body_model.AnnySampler``: WHO-calibrated phenotypes plus randomised local
length blend shapes), regresses Anny's COCO keypoints (shoulders, elbows, wrists, hips, knees, ankles: anatomical
landmarks like BlazePose's) on the rest-pose meshes, and writes the mean and standard deviation of the centred
log lengths of the four limbs (thigh, calf, upper arm, lower arm; left/right averaged) to
``common/resources/limb_prior.json`` (read by ``inference.py --lengths prior``), the mean log ratio of each limb to
the body's stature (``inference.py --height``, :mod:`common.inference.body_size`), the mean log ratio of the
stature to the head joint's height above the ankles and the ankles' mean height above the floor of the standing body
(the height read through a calibrated camera, ``inference.py --calibration``, :mod:`common.inference.camera_size`), plus the mean length of all 16
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
from common.inference.landmark_bodies import coco_limb_lengths
from common.inference.length_sources import LIMB_PRIOR_FILE, PRIOR_LIMBS

def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--amount", type=int, default=4000, help="number of Anny bodies")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(LIMB_PRIOR_FILE))
    args = p.parse_args(argv)
    measures = coco_limb_lengths(args.amount, args.seed)
    limbs, bones, statures = measures.limbs, measures.bones, measures.statures
    centred = np.log(limbs) - np.log(limbs).mean(axis=1, keepdims=True)
    import anny

    content = {"blazepose": {
        "limbs": list(PRIOR_LIMBS), "mean_centred_log": centred.mean(axis=0).round(6).tolist(),
        "sd_centred_log": centred.std(axis=0).round(6).tolist(),
        "mean_lengths_m": limbs.mean(axis=0).round(4).tolist(),
        "mean_bone_lengths_m": average_symmetric(bones.mean(axis=0)).round(4).tolist(),
        "mean_stature_m": round(float(statures.mean()), 4),
        "limb_to_stature_log": (np.log(limbs) - np.log(statures)[:, None]).mean(axis=0).round(6).tolist(),
        "stature_to_head_log": float(np.log(statures / measures.head_above_ankles).mean().round(6)),
        "ankle_above_floor_m": round(float(measures.ankles_above_floor.mean()), 4),
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
