"""Training bank of the BlazePose-convention length model: Anny bodies' bone lengths in BlazePose's landmarks.

    python data/bone_length/generate_blazepose_bank.py [--amount 10000] [--seed 2] [--offset written]

Samples adult Anny bodies and measures their 16 bones through Anny's COCO keypoint regressor, mapped to the 17
joints as BlazePose's landmarks are (the limb prior's bodies, :mod:`common.inference.landmark_bodies`), the four
limbs moved into BlazePose's landmark convention by an offset (centred log lengths): ``written`` (default) is the
prior's ``convention_offset_log`` in ``common/resources/limb_prior.json`` (what ``--lengths prior`` adds),
``none`` leaves Anny's landmarks, four comma-separated numbers (thigh, calf, upper arm, lower arm) give another one
(``bench/wild_lengths.py``'s held-out models: the other person's offset, which it prints). Writes ``--out`` (key ``data``:
(N, 16) metres, left/right averaged; ``offset``: the (4,) offset used), the bank of
``train.py -t length --length_convention blazepose --bone_length_aug`` (docs/in_the_wild.md).
"""
from __future__ import annotations

import json
import sys
from typing import Sequence

import numpy as np

from common.inference.landmark_bodies import blazepose_bank
from common.inference.length_sources import LIMB_PRIOR_FILE, PRIOR_LIMBS
from common.utils.errors import UserError, cli
from common.utils.fileio import save_npz
from common.utils.validation import ArgumentParser, number

DEFAULT_OUT = "data/bone_lengths_anny_blazepose.npz"


def parse_offset(text: str) -> np.ndarray:
    """``written`` | ``none`` | four numbers -> (4,) centred log offset of :data:`PRIOR_LIMBS`."""
    if text == "none":
        return np.zeros(len(PRIOR_LIMBS))
    if text == "written":
        try:
            return np.asarray(json.loads(LIMB_PRIOR_FILE.read_text())["blazepose"]["convention_offset_log"],
                              np.float64)
        except (OSError, ValueError, KeyError):
            raise UserError(f"--offset written: {LIMB_PRIOR_FILE} has no blazepose convention_offset_log "
                            "(data/bone_length/blazepose_convention_offset.py writes it)") from None
    try:
        values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        values = np.zeros(0)
    if values.shape != (len(PRIOR_LIMBS),) or not np.isfinite(values).all() or np.abs(values).max() > 0.5:
        raise UserError(f"--offset must be written, none or {len(PRIOR_LIMBS)} comma-separated centred log "
                        f"lengths within +-0.5 ({', '.join(PRIOR_LIMBS)}), got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> None:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--amount", type=number(int, ge=10), default=10000, help="number of Anny bodies")
    p.add_argument("--seed", type=int, default=2, help="body seed (the limb prior's bodies are seed 1)")
    p.add_argument("--offset", default="written", help="written | none | thigh,calf,upper_arm,lower_arm")
    p.add_argument("--out", default=DEFAULT_OUT, help="npz to write")
    args = p.parse_args(argv)
    offset = parse_offset(args.offset)
    bank = blazepose_bank(args.amount, args.seed, offset)
    save_npz(args.out, data=bank, offset=offset)
    print(f"wrote {args.out}: {len(bank)} bodies, limb offset " + ", ".join(
        f"{limb} {v * 100:+.1f} %" for limb, v in zip(PRIOR_LIMBS, offset)) + "; mean thigh / calf / upper arm / "
          "forearm " + " / ".join(f"{bank[:, i].mean() * 1000:.0f}" for i in (1, 2, 11, 12)) + " mm")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
