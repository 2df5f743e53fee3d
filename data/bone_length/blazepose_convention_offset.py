"""Offset of the limb-proportion prior from Anny's COCO landmarks to BlazePose's, measured on triangulated 2D.

    python data/bone_length/blazepose_convention_offset.py [--dry_run]

The population prior of ``--lengths prior`` (``generate_limb_prior.py``) measures Anny bodies through Anny's COCO
keypoint regressor. BlazePose places some landmarks elsewhere: triangulated from BlazePose's 2D in four calibrated
views, every person measured so far has shins about 6 % shorter and forearms about 7 % longer, relative to the
other limbs, than the Anny mean (more than 1.5 population standard deviations each, on both people). This script
measures that offset, per limb, in centred log lengths (the prior's units), and writes it to
``common/resources/limb_prior.json`` (``convention_offset_log``, read by ``common.inference.length_sources.load_limb_prior``).

Data: the two Pose2Sim demos (BSD-3-Clause, ``pose2sim==0.10.49`` wheel; ``common.inference.multiview.fetch_pose2sim_demo``):
the single-person one (a man) and the two-person one (the same man and a woman, the same 4 cameras): the
sequences of :data:`common.inference.recordings.SEQUENCES`, each person followed per view and triangulated
(:func:`common.inference.recordings.load_recording`). Offset = mean over people (each person's sequences averaged first) of the triangulated
centred log limb lengths minus the Anny mean.

It also prints what the offset does, per sequence and view, BlazePose's fused 3D (``--lifter mediapipe``) with
lengths ``self``, ``prior`` with the Anny mean alone, with the offset measured on the *other* person only (a
leave-one-person-out test: the figures that say whether it carries to a new body), and with the offset of all
(``common.inference.multiview.score_person_view``; same-pass raw world landmarks beside them).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np

from common.core.bones import adjust_bone_lengths, bone_lengths
from common.utils.errors import cli
from common.utils.fileio import atomic_write
from common.inference.length_sources import (LIMB_PRIOR_FILE, PRIOR_LIMBS, centred_log_limbs, combine_with_prior,
                                            convention_offset, median_lengths)
from common.inference.multiview import score_person_view
from common.inference.recordings import SEQUENCES, load_recording

SCORES = [("p_mpjpe_mm", "P-MPJPE (mm)"), ("proportions_off_pct", "proportions off, mean of 4 (%)"),
          ("proportions_max_pct", "worst limb (%)"), ("proportions8_off_pct", "over 8 limbs (%)"),
          ("ratios_max_pct", "worst ratio (%)")]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prior", default=str(LIMB_PRIOR_FILE), help="limb prior file to update")
    p.add_argument("--dry_run", action="store_true", help="print, do not write")
    args = p.parse_args(argv)
    from common.inference.lifters.mediapipe import MediaPipeLifter, MediaPipeRawLifter

    content = json.loads(open(args.prior).read())
    anny = np.asarray(content["blazepose"]["mean_centred_log"], np.float64)
    sd = np.asarray(content["blazepose"]["sd_centred_log"], np.float64)
    sequences = []
    for sequence in SEQUENCES:
        recording = load_recording(sequence)
        demo, person, cameras, tracks, world = (sequence.demo, sequence.person, recording.cameras,
                                                recording.tracks, recording.world)
        measured = centred_log_limbs(np.nanmedian(bone_lengths(world), axis=0))
        print(f"{demo} {person}: {np.isfinite(world).all(axis=(1, 2)).sum()}/{sequence.frames} frames triangulated; "
              "centred log limbs minus the Anny mean (%): " + ", ".join(
                  f"{limb} {d * 100:+.1f}" for limb, d in zip(PRIOR_LIMBS, measured - anny)))
        sequences.append((demo, person, cameras, tracks, world, measured))
    people = sorted({s[1] for s in sequences})
    measured = {who: [s[5] for s in sequences if s[1] == who] for who in people}
    offset = convention_offset(measured, anny)
    print("offset (mean over people, %): " + ", ".join(f"{limb} {d * 100:+.1f}" for limb, d in zip(PRIOR_LIMBS, offset)))

    lines = ["| sequence | view | lengths | " + " | ".join(name for _, name in SCORES) + " |",
             "|---" * (len(SCORES) + 3) + "|"]
    for demo, person, cameras, tracks, world, _ in sequences:
        others = convention_offset({who: m for who, m in measured.items() if who != person}, anny)
        for cam, track in zip(cameras, tracks):
            poses = MediaPipeLifter().lift(track)
            rows = {"raw world landmarks (same pass)": MediaPipeRawLifter().lift(track),
                    "self": adjust_bone_lengths(poses, median_lengths(poses)),
                    "prior, Anny mean": adjust_bone_lengths(poses, combine_with_prior(poses, anny, sd)),
                    "prior, offset of the other person": adjust_bone_lengths(
                        poses, combine_with_prior(poses, anny + others, sd)),
                    "prior, offset of all (written)": adjust_bone_lengths(
                        poses, combine_with_prior(poses, anny + offset, sd))}
            reference = cam.to_camera(world)
            for row, estimate in rows.items():
                scores = score_person_view(track, estimate, reference)
                lines.append(f"| {demo} {person} | {cam.name} | {row} | "
                             + " | ".join(f"{scores[key]:.1f}" for key, _ in SCORES) + " |")
    print("\n".join(lines))
    if args.dry_run:
        return
    content["blazepose"]["convention_offset_log"] = offset.round(6).tolist()
    content["blazepose"]["convention_offset_source"] = (
        "data/bone_length/blazepose_convention_offset.py: BlazePose 2D of the Pose2Sim demos (pose2sim 0.10.49, "
        "BSD-3-Clause) triangulated from 4 calibrated views, " + ", ".join(
            f"{demo} {person} {int(np.isfinite(world).all(axis=(1, 2)).sum())} frames"
            for demo, person, _, _, world, _ in sequences) + f"; mean over {len(people)} people")
    atomic_write(args.prior, lambda fh: fh.write((json.dumps(content, indent=1) + "\n").encode()))
    print(f"wrote {args.prior}")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
