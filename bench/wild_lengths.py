"""The BlazePose-convention length model against ``--lengths prior`` on every person of the real recordings.

    python -m bench.wild_lengths --model checkpoint/blazepose_length/epoch_best.bin \
        [--lopo man=CKPT_A woman=CKPT_B] [--out output/wild_lengths]

Each view of every person-sequence of the two Pose2Sim demos (:mod:`common.inference.recordings`: 4 calibrated
views, BlazePose 2D triangulated as the reference) is lifted alone with ``--lifter mediapipe`` and adjusted as
``inference.py`` does (:func:`common.inference.inference_pipeline.adjust_lengths`: the size from the lifter's raw
3D, rigid bones held, the non-rigid ones soft), with the lengths of:

* ``prior``: ``--lengths prior`` as shipped (its convention offset and the rigidity file are measured on these
  people, all of them);
* ``model``: ``--lengths model`` with ``--model`` (trained on synthetic Anny bodies only; its bank's limb offset,
  ``generate_blazepose_bank.py --offset``, says what of these people it holds), the shipped rigidity;
* ``prior, held out``: the prior with the convention offset and the rigidity decision fitted on the *other*
  people only (:func:`bench.wild_recordings.held_out_choices`, leave one person out);
* ``model, held out``: the same rigidity, and per person the ``--lopo`` checkpoint (trained on a bank moved by the
  other people's offset, printed below: ``generate_blazepose_bank.py --offset``), else ``--model``;
* ``model_prior`` (and ``, held out``): ``--lengths model_prior`` with the same checkpoints, ``prior``'s
  combination with the view's own limbs with the model's limb proportions in place of the population mean;
* MediaPipe's fused poses unadjusted and its raw world landmarks of the same pass (the trivial references).

Scores (:func:`common.inference.multiview.score_person_view`): limb proportions off (mean of the 4 limbs, %), the
absolute limb-length error (mm) and P-MPJPE (mm), per view and per person-sequence (mean over its views), and
whether each model row's proportions are at least as close as the prior row beside it on every person-sequence.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.wild_recordings import held_out_choices, held_out_rigidity
from common.core.bones import adjust_bone_lengths
from common.inference.length_sources import LIMB_PRIOR_FILE, PRIOR_LIMBS, LengthSource
from common.inference.multiview import score_person_view
from common.inference.recordings import SEQUENCES, Recording, load_recording
from common.utils.errors import UserError, cli
from common.utils.fileio import atomic_write, existing_file

SCORES = (("proportions_off_pct", "proportions off (%)"), ("limb_length_error_mm", "limb-length error (mm)"),
          ("p_mpjpe_mm", "P-MPJPE (mm)"))
RAW = "MediaPipe world landmarks, raw"


def view_rows(recording: Recording, view: int, sources: dict[str, tuple[LengthSource, tuple | None]]
              ) -> dict[str, dict[str, float]]:
    """{row: limb_scores} of one view alone: each length source with its rigidity ((rigid, variance) (16,) each,
    None: the shipped file's) through ``inference.py``'s adjustment, the unadjusted lifter and the raw landmarks."""
    from common.inference.inference_pipeline import adjust_lengths
    from common.inference.lifters import make_lifter

    track, reference = recording.tracks[view], recording.cameras[view].to_camera(recording.world)
    lifter = make_lifter("mediapipe", {})
    poses = lifter.lift(track)
    estimates = {name: adjust_bone_lengths(poses, adjust_lengths(lifter, source, poses, track, rigidity=rigidity)[0])
                 for name, (source, rigidity) in sources.items()}
    estimates["mediapipe, unadjusted"] = poses
    estimates[RAW] = make_lifter("mediapipe_raw", {}).lift(track)
    return {row: score_person_view(track, estimate, reference) for row, estimate in estimates.items()}


def registered_source(name: str, length_ckpt: str | None = None) -> LengthSource:
    """``--lengths name`` (``model``: with checkpoint ``length_ckpt``) prepared for the ``mediapipe`` lifter."""
    from common.inference.length_sources import make_length_source
    from common.inference.lifters import make_lifter

    return make_length_source(name, {"length_ckpt": length_ckpt, "bidirectional": True},
                              make_lifter("mediapipe", {}))


def parse_lopo(items: Sequence[str]) -> dict[str, str]:
    """``person=checkpoint`` items -> {person: checkpoint} (each person of the recordings once)."""
    people = {s.person for s in SEQUENCES}
    out = {}
    for item in items:
        who, _, path = item.partition("=")
        if who not in people or not path:
            raise UserError(f"--lopo takes person=checkpoint for the people {sorted(people)}, got {item!r}")
        out[who] = str(existing_file(path, "--lopo checkpoint"))
    if out and set(out) != people:
        raise UserError(f"--lopo needs a checkpoint for each of {sorted(people)}")
    return out


def markdown(table: dict[tuple[str, str], dict[str, dict[str, float]]]) -> str:
    """Per view and per person-sequence (mean over views), one column group per score."""
    rows = list(next(iter(table.values())))
    lines = ["| person-sequence | view | " + " | ".join(f"{label}: " + " / ".join(rows) for _, label in SCORES)
             + " |", "|---" * (2 + len(SCORES)) + "|"]
    sequences = list(dict.fromkeys(seq for seq, _ in table))
    for seq in sequences:
        views = {v: r for (s, v), r in table.items() if s == seq}
        for view, scores in list(views.items()) + [("mean", None)]:
            cells = []
            for key, _ in SCORES:
                values = [np.mean([r[row][key] for r in views.values()]) if scores is None else scores[row][key]
                          for row in rows]
                cells.append(" / ".join(f"{v:.1f}" for v in values))
            lines.append(f"| {seq} | {view} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(table: dict[tuple[str, str], dict[str, dict[str, float]]], row: str, against: str) -> str:
    """Whether ``row``'s proportions are at least as close as ``against``'s on every person-sequence (mean over its
    views) and on how many single views."""
    sequences = list(dict.fromkeys(seq for seq, _ in table))
    means = {seq: [np.mean([r[name]["proportions_off_pct"] for (s, _), r in table.items() if s == seq])
                   for name in (row, against)] for seq in sequences}
    views = sum(r[row]["proportions_off_pct"] <= r[against]["proportions_off_pct"] for r in table.values())
    wins = [seq for seq, (a, b) in means.items() if a <= b]
    return (f"{row} vs {against}: proportions at least as close on {len(wins)}/{len(sequences)} person-sequences ("
            + "; ".join(f"{seq} {a:.2f} vs {b:.2f} %" for seq, (a, b) in means.items())
            + f"), on {views}/{len(table)} views")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a train.py -t length --length_convention blazepose checkpoint")
    p.add_argument("--lopo", nargs="*", default=[], metavar="PERSON=CKPT",
                   help="per person, a checkpoint trained with the other person's offset (printed below)")
    p.add_argument("--out", default="output/wild_lengths", help="folder of scores.md")
    args = p.parse_args(argv)
    lopo = parse_lopo(args.lopo)
    recordings = [load_recording(s) for s in SEQUENCES]
    content = json.loads(LIMB_PRIOR_FILE.read_text())["blazepose"]
    choices = held_out_choices(recordings)
    print("leave one person out: the convention offset of the other people (generate_blazepose_bank.py --offset "
          "for that person's --lopo model): " + "; ".join(
              f"{who} --offset=" + ",".join(f"{v:.6f}" for v in c["offset"]) for who, c in choices.items()))
    prior, model = registered_source("prior"), registered_source("model", args.model)
    model_prior = registered_source("model_prior", args.model)
    lopo_models = {who: (registered_source("model", path), registered_source("model_prior", path))
                   for who, path in lopo.items()}
    table = {}
    for recording in recordings:
        who = recording.sequence.person
        held_prior = copy.copy(prior)
        held_prior.prior = (np.asarray(content["mean_centred_log"]) + choices[who]["offset"],
                            np.asarray(content["sd_centred_log"]))
        rigidity = held_out_rigidity(choices[who])
        held_model, held_model_prior = lopo_models.get(who, (model, model_prior))
        sources = {"prior": (prior, None), "model": (model, None), "model_prior": (model_prior, None),
                   "prior, held out": (held_prior, rigidity), "model, held out": (held_model, rigidity),
                   "model_prior, held out": (held_model_prior, rigidity)}
        for view, cam in enumerate(recording.cameras):
            table[(recording.sequence.name, cam.name)] = view_rows(recording, view, sources)
    text = markdown(table) + "\n\n" + "\n".join(
        f"* {verdict(table, row, against)}" for row, against in (
            ("model", "prior"), ("model_prior", "prior"), ("model, held out", "prior, held out"),
            ("model_prior, held out", "prior, held out")))
    print(text)
    out = Path(args.out)
    atomic_write(out / "scores.md", lambda fh: fh.write((text + "\n").encode()))
    print(f"wrote {out / 'scores.md'} (limbs: {', '.join(PRIOR_LIMBS)})")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
