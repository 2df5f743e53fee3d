"""Real recordings nobody tuned for: which distances are rigid, and single-view 3D per view and joint-angle bin.

    python -m bench.wild_recordings [--out output/wild_recordings] [--write_rigidity]

Data (:mod:`common.inference.recordings`): every person of the Pose2Sim demos (BSD-3-Clause, the ``pose2sim``
wheel's LICENSE is written next to the extracted videos), BlazePose 2D of 4 calibrated views triangulated; the
tracks are cached after the first run. Two parts:

1. *Rigidity* (per joint convention): each of the 16 distances' median, robust standard deviation over time
   (MAD x 1.4826) and its medians per flexion bin, on the triangulated BlazePose landmarks of every person
   (``blazepose``) and on the demo data set's motion capture (``h36m``, ``data/data_3d_demo.npz``). A distance
   is rigid when its robust standard deviation is, on every person, at most the largest of the 8 limbs' (the
   long bones: the triangulation's own noise on a distance that does not change) or below 0.1 mm (motion
   capture of a rigid skeleton has no noise); the others' natural relative
   variation is sqrt(sd^2 - median limb sd^2) / median, mean of the variances over people. ``--write_rigidity``
   writes the decision to ``common/resources/rigidity.json`` (:mod:`common.adjustment.rigidity`).
2. *Scores* of each view alone (:func:`common.inference.multiview.score_person_view`, P-MPJPE also per bin of the
   reference's knee/hip flexion, :func:`common.adjustment.rigidity.flexion_bins`): ``inference.py``'s defaults
   with every non-rigid treatment (``--nonrigid rigid|free|soft``), the defaults before adjustment, MediaPipe's
   raw world landmarks of the same pass; limb-length error of the defaults' size (the video's own evidence), the
   size of the lifter's fused poses, ``--height H`` (H: the height at which the population's limb-to-stature ratio
   gives the reference's limb size; the people's statures are not published), the population's mean size, and
   the raw landmarks, and two other ways of pooling the raw landmarks' size (every frame; the 75th percentile),
   for comparison; one line per person: do the defaults beat the raw landmarks in every view and bin.
3. *Live*: ``inference.py --live``'s defaults stepped frame by frame over the same tracks (:func:`live_poses`).
4. *Leave one person out* (:func:`held_out_choices`): the rigidity decision and the prior's convention offset
   refitted without the scored person, and that person's views scored with them.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from common.adjustment.rigidity import (FLEXION_BINS, LIMBS, NONRIGID_MODES, RIGIDITY_FILE, flexion, flexion_bins,
                                        robust_sd)
from common.core.bones import adjust_bone_lengths, bone_lengths
from common.core.metrics import p_mpjpe
from common.core.skeleton import BONE_NAMES
from common.inference.multiview import full_length, score_person_view
from common.inference.recordings import SEQUENCES, Recording, load_recording
from common.utils.errors import cli
from common.utils.fileio import atomic_write
from common.vision.tracking import Track2D

LIMB_INDEX = [BONE_NAMES.index(n) for n in LIMBS]
HEIGHT_ROW = "size: --height H (H: the reference's limb size through the population's limb-to-stature ratio)"
RAW = "MediaPipe world landmarks, raw (same pass)"
LIVE_ROW = "inference.py --live defaults, stepped over the same track"
SIZE_ALL_FRAMES = "size: raw 3D, median over all frames (not only confidently seen ones)"
SIZE_QUANTILE = "size: raw 3D, 75th percentile over confidently seen frames"
HELD_OUT_ROW = "defaults, rigidity and convention offset fitted without this person"
RESOLUTION_MM = 0.1  # a distance that varies less than this is rigid whatever the limbs do


def distance_table(lengths: np.ndarray, angle: np.ndarray, groups: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """(T, 16) metres + (T,) flexion degrees -> per bone (16,) figures in mm: median, robust sd, and the median
    in each flexion bin (NaN when the bin is empty). ``groups`` (T,) ints: frames of different bodies (e.g. the
    subjects of a data set); each group is centred on its own median before the sd and the bins, then the
    overall median is added back (so a body's size is not counted as variation over time)."""
    valid = np.isfinite(lengths).all(axis=1) & np.isfinite(angle)
    lengths, angle = lengths[valid] * 1000, angle[valid]
    median = np.median(lengths, axis=0)
    if groups is not None:
        groups = groups[valid]
        centres = np.stack([np.median(lengths[groups == g], axis=0) for g in np.unique(groups)])
        lengths = lengths - centres[np.searchsorted(np.unique(groups), groups)] + median
    out = {"median": median, "sd": robust_sd(lengths), "frames": np.full(16, valid.sum())}
    for low, high, label in FLEXION_BINS:
        inside = (angle >= low) & (angle < high)
        out[label] = np.median(lengths[inside], axis=0) if inside.any() else np.full(16, np.nan)
        out[f"frames {label}"] = np.full(16, inside.sum())
    return out


def h36m_distances(data_dir: Path) -> dict[str, np.ndarray]:
    """The demo data set's motion capture (Human3.6M joint convention), all sequences concatenated, each
    sequence its own group (:func:`distance_table`)."""
    from common.datasets.dataset import _positions_17
    from common.utils.fileio import load_nested

    table = load_nested(data_dir / "data_3d_demo.npz", "positions_3d", "subject -> action -> array")
    sequences = [_positions_17(f"{s}/{a}", p) for s, actions in table.items() for a, p in actions.items()]
    poses = np.concatenate(sequences).astype(np.float64)
    groups = np.repeat(np.arange(len(sequences)), [len(p) for p in sequences])
    return distance_table(bone_lengths(poses), flexion(poses), groups)


def decide(tables: dict[str, dict[str, np.ndarray]]) -> tuple[list[str], dict[str, float]]:
    """Rigid bones and the others' natural relative sd from per-person distance tables (module docstring)."""
    rigid = np.ones(16, bool)
    variances = []
    for t in tables.values():
        limb_sd = t["sd"][LIMB_INDEX]
        rigid &= t["sd"] <= max(limb_sd.max(), RESOLUTION_MM)
        variances.append(np.maximum(t["sd"] ** 2 - np.median(limb_sd) ** 2, 0) / t["median"] ** 2)
    natural = np.sqrt(np.mean(variances, axis=0))
    return ([n for n, r in zip(BONE_NAMES, rigid) if r],
            {n: round(float(v), 4) for n, v, r in zip(BONE_NAMES, natural, rigid) if not r})


def rigidity_markdown(tables: dict[str, dict[str, np.ndarray]]) -> str:
    """One row per bone, one column per person: median ± robust sd (mm), sd / median (%), and the medians per
    flexion bin (mm; ``-`` for an empty bin); the header gives each bin's frame count."""
    labels = [label for _, _, label in FLEXION_BINS]
    header = [f"{who} ({int(t['frames'][0])} frames; " + " / ".join(f"{int(t[f'frames {label}'][0])}"
                                                                   for label in labels) + ")"
              for who, t in tables.items()]
    lines = ["| bone | " + " | ".join(header) + " |", "|---" * (1 + len(tables)) + "|"]
    for b, name in enumerate(BONE_NAMES):
        cells = [f"{t['median'][b]:.0f} ± {t['sd'][b]:.1f} ({t['sd'][b] / t['median'][b] * 100:.1f} %); "
                 + " / ".join("-" if np.isnan(t[label][b]) else f"{t[label][b]:.0f}" for label in labels)
                 for t in tables.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    bins = " / ".join(labels)
    return (f"Each cell: median ± robust sd over time (mm), sd / median, then the medians per flexion bin ({bins}, "
            f"mm); the header gives the frames per bin.\n\n" + "\n".join(lines))


def measure_rigidity(recordings: list[Recording], data_dir: Path) -> tuple[str, dict]:
    """Both conventions' distance tables (markdown) and the rigidity file's content (a convention without data,
    e.g. Human3.6M before ``setup.py`` built the demo data set, is left out)."""
    blazepose = {f"blazepose / {r.sequence.name}": distance_table(bone_lengths(r.world.astype(np.float64)),
                                                                  flexion(r.world.astype(np.float64)))
                 for r in recordings}
    h36m = {}
    if (data_dir / "data_3d_demo.npz").is_file():
        h36m["h36m / demo motion capture"] = h36m_distances(data_dir)
    else:
        print(f"note: no {data_dir / 'data_3d_demo.npz'} (python setup.py builds it): no Human3.6M-convention rows")
    content = {}
    for convention, tables in (("blazepose", blazepose), ("h36m", h36m)):
        if not tables:
            continue
        rigid, natural = decide(tables)
        content[convention] = {"rigid": rigid, "natural_relative_sd": natural,
                               "source": "python -m bench.wild_recordings --write_rigidity: " + ", ".join(tables)}
    return rigidity_markdown(blazepose | h36m), content


def binned_p_mpjpe(estimate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """P-MPJPE (mm) of (T, 17, 3) poses against the reference over all valid frames and per flexion bin of the
    reference (NaN for an empty bin)."""
    valid = np.isfinite(estimate).all(axis=(1, 2)) & np.isfinite(reference).all(axis=(1, 2))
    errors = np.full(len(reference), np.nan)
    errors[valid] = p_mpjpe(estimate[valid].astype(np.float64), reference[valid].astype(np.float64)) * 1000
    out = {"all": float(np.nanmean(errors))}
    for label, inside in flexion_bins(np.where(valid[:, None, None], reference, 0.0)).items():
        out[label] = float(np.nanmean(errors[inside & valid])) if (inside & valid).any() else float("nan")
    return out


def live_poses(track: Track2D) -> np.ndarray:
    """``inference.py --live``'s defaults stepped over ``track`` frame by frame (its causal lifter and length
    source, :class:`common.inference.live.LivePerson` with a live run's settings and starting lengths):
    (T, 17, 3) metres."""
    from common.inference.inference_pipeline import InferenceConfig, make_models
    from common.inference.live import LIVE_STAGES, LiveConfig, LivePerson, start_lengths
    from common.utils.timing import StageTimer

    lifter, source = make_models(InferenceConfig(video=None), live=True)
    person = LivePerson(lifter, source, start_lengths(lifter, source, None), LiveConfig(source=""))
    timer = StageTimer(LIVE_STAGES)
    out = []
    for t in range(len(track)):
        one = track.replace(positions=track.positions[t:t + 1], confidence=track.confidence[t:t + 1],
                            world=track.world[t:t + 1], gaps=[], start=0)
        out.append(person.step(one, float(t), timer)[2])
    return np.stack(out)


def held_out_choices(recordings: list[Recording]) -> dict[str, dict]:
    """Leave one person out: per person (:attr:`Sequence.person`; the man of both demos is one person), the
    rigidity decision (:func:`decide`) and the prior's convention offset
    (:func:`common.inference.length_sources.convention_offset`) fitted on the *other* people's sequences only ->
    {person: {"rigid": names, "natural_relative_sd": {name: sd}, "offset": (4,) centred log}}."""
    from common.inference.length_sources import LIMB_PRIOR_FILE, centred_log_limbs, convention_offset

    bodies = np.asarray(json.loads(LIMB_PRIOR_FILE.read_text())["blazepose"]["mean_centred_log"], np.float64)
    worlds = [(r.sequence.person, r.world.astype(np.float64)) for r in recordings]
    out = {}
    for person in dict.fromkeys(who for who, _ in worlds):
        others = [(who, world) for who, world in worlds if who != person]
        rigid, natural = decide({str(i): distance_table(bone_lengths(world), flexion(world))
                                 for i, (_, world) in enumerate(others)})
        measured = {}
        for who, world in others:
            measured.setdefault(who, []).append(centred_log_limbs(np.nanmedian(bone_lengths(world), axis=0)))
        out[person] = {"rigid": rigid, "natural_relative_sd": natural, "offset": convention_offset(measured, bodies)}
    return out


def held_out_rigidity(choice: dict) -> tuple[np.ndarray, np.ndarray]:
    """(rigid (16,) bool, natural relative variance (16,)) of one person's :func:`held_out_choices` entry, as
    :func:`common.inference.inference_pipeline.adjust_lengths` takes them (``rigidity=``)."""
    rigid = np.array([n in choice["rigid"] for n in BONE_NAMES])
    variance = np.array([0.0 if r else choice["natural_relative_sd"].get(n, 0.0) ** 2
                         for n, r in zip(BONE_NAMES, rigid)])
    return rigid, variance


def score_view(recording: Recording, view: int, held_out: dict | None = None) -> dict[str, dict[str, float]]:
    """Rows of one view alone (module docstring) -> {row: scores}. The defaults are ``inference.py``'s own models
    and adjustment (:func:`common.inference.inference_pipeline.make_models`, ``adjust_lengths``); ``held_out``
    (:func:`held_out_choices` of this person) adds the defaults with the rigidity and the convention offset fitted
    without this person (:data:`HELD_OUT_ROW`)."""
    from common.adjustment.rigidity import load_rigidity, rigidity_lengths
    from common.inference.body_size import height_size, limb_size, rescale, world_size
    from common.inference.length_sources import population_mean_lengths
    from common.inference.inference_pipeline import InferenceConfig, adjust_lengths, make_models
    from common.inference.lifters import make_lifter

    track, cam = recording.tracks[view], recording.cameras[view]
    reference = cam.to_camera(recording.world)
    frames = len(reference)
    lifter, source = make_models(InferenceConfig(video=None))
    poses = lifter.lift(track)
    rows, sizes = {}, {}
    for mode in NONRIGID_MODES:
        lengths, _ = adjust_lengths(lifter, source, poses, track, nonrigid=mode)
        rows[f"defaults, --nonrigid {mode}" + (" (default)" if mode == InferenceConfig.nonrigid else "")] = \
            adjust_bone_lengths(poses, lengths)
    if held_out is not None:
        from common.inference.length_sources import LIMB_PRIOR_FILE
        content = json.loads(LIMB_PRIOR_FILE.read_text())["blazepose"]
        fitted = copy.copy(source)
        fitted.prior = (np.asarray(content["mean_centred_log"]) + held_out["offset"],
                        np.asarray(content["sd_centred_log"]))
        lengths, _ = adjust_lengths(lifter, fitted, poses, track, rigidity=held_out_rigidity(held_out))
        rows[HELD_OUT_ROW] = adjust_bone_lengths(poses, lengths)
    rows["defaults before adjustment"] = poses
    rows[LIVE_ROW] = live_poses(track)
    rows["MediaPipe world landmarks, raw (same pass)"] = make_lifter("mediapipe_raw", {}).lift(track)
    valid = np.isfinite(reference).all(axis=(1, 2))
    implied = float(np.median(limb_size(bone_lengths(reference[valid].astype(np.float64)))))
    height = implied / height_size(1.0, lifter.convention)
    default_mode = InferenceConfig.nonrigid
    sizes["size: defaults (no --height)"] = rows[f"defaults, --nonrigid {default_mode} (default)"]
    sizes["size: the length source's own (the lifter's fused poses)"] = adjust_bone_lengths(poses, rigidity_lengths(
        poses, source.lengths(poses, track), *load_rigidity(lifter.convention), default_mode))
    lengths, _ = adjust_lengths(lifter, source, poses, track, height=height, nonrigid=default_mode)
    sizes[HEIGHT_ROW] = adjust_bone_lengths(poses, lengths)
    population = limb_size(population_mean_lengths(lifter.convention))
    sizes["size: the population's mean"] = adjust_bone_lengths(poses, rescale(lengths, population))
    for row, size in ((SIZE_ALL_FRAMES, world_size(track, min_confidence=0.0)),
                      (SIZE_QUANTILE, world_size(track, quantile=0.75))):   # other pooling rules, for comparison
        sizes[row] = adjust_bone_lengths(poses, rigidity_lengths(poses, rescale(source.lengths(poses, track), size),
                                                                 *load_rigidity(lifter.convention), default_mode))
    out = {}
    for row, estimate in (rows | sizes).items():
        estimate = full_length(track, estimate, frames)
        out[row] = score_person_view(track, estimate, reference) | (
            {} if row in sizes else {f"p_mpjpe {k}": v for k, v in binned_p_mpjpe(estimate, reference).items()})
    out[HEIGHT_ROW]["height_m"] = height
    return out


SCORE_COLUMNS = [("p_mpjpe all", "P-MPJPE (mm)")] + [(f"p_mpjpe {label}", f"P-MPJPE {label}")
                                                        for _, _, label in FLEXION_BINS] + [
    ("proportions_off_pct", "limb proportions off (%)"), ("length_std_mm", "length std (mm)"),
    ("left_right_mm", "left/right (mm)")]


def scores_markdown(table: dict[tuple[str, str], dict[str, dict[str, float]]]) -> str:
    """{(recording, view): {row: scores}} -> two markdown tables: the poses' scores per row (size rows left out)
    and the limb-length error of every size row beside the raw landmarks', one line per view."""
    lines = ["| recording | view | row | " + " | ".join(name for _, name in SCORE_COLUMNS) + " |",
             "|---" * (3 + len(SCORE_COLUMNS)) + "|"]
    for (recording, view), rows in table.items():
        for row, scores in rows.items():
            if not row.startswith("size: "):
                cells = [f"{scores[key]:.1f}" if np.isfinite(scores[key]) else "-" for key, _ in SCORE_COLUMNS]
                lines.append(f"| {recording} | {view} | {row} | " + " | ".join(cells) + " |")
    sizes = [row for row in next(iter(table.values())) if row.startswith("size: ")]
    lines += ["", "| recording | view | limb-length error (mm): " + " | ".join(
        row[len("size: "):].split(" (")[0] for row in sizes) + " | MediaPipe raw |", "|---" * (3 + len(sizes)) + "|"]
    for (recording, view), rows in table.items():
        lines.append(f"| {recording} | {view} | " + " | ".join(
            f"{rows[row]['limb_length_error_mm']:.1f}" + (f" (H = {rows[row]['height_m']:.2f} m)"
                                                           if "height_m" in rows[row] else "")
            for row in sizes + [RAW]) + " |")
    return "\n".join(lines)


def summary(table: dict[tuple[str, str], dict[str, dict[str, float]]], defaults: str) -> list[str]:
    """One line per recording: does ``defaults`` beat the raw landmarks on P-MPJPE in every view and bin, and is
    its limb-length error at most theirs (per view, and the mean over views)."""
    lines = []
    for recording in dict.fromkeys(r for r, _ in table):
        views = {v: rows for (r, v), rows in table.items() if r == recording}
        beaten = [f"{v} {key[len('p_mpjpe '):]}" for v, rows in views.items() for key, _ in SCORE_COLUMNS[:4]
                  if np.isfinite(rows[defaults][key]) and rows[defaults][key] >= rows[RAW][key]]
        longer = [v for v, rows in views.items()
                  if rows[defaults]["limb_length_error_mm"] > rows[RAW]["limb_length_error_mm"]]
        mean = [np.mean([rows[row]["limb_length_error_mm"] for rows in views.values()]) for row in (defaults, RAW)]
        lines.append(f"{recording}: P-MPJPE of the defaults below the raw landmarks' in every view and bin: "
                     f"{'yes' if not beaten else 'no (' + ', '.join(beaten) + ')'}; limb-length error at most "
                     f"theirs: {'every view' if not longer else 'not on ' + ', '.join(longer)} (mean over views "
                     f"{mean[0]:.1f} vs {mean[1]:.1f} mm)")
    return lines


def held_out_markdown(table: dict[tuple[str, str], dict[str, dict[str, float]]], defaults: str,
                      choices: dict[str, dict], written: dict) -> str:
    """The leave-one-person-out figures: per person the choice fitted without them (rigid bones that differ from
    ``written``'s, the offset), then per view the defaults fitted on everybody (in sample), fitted without this
    person (out of sample) and the raw landmarks: P-MPJPE (all frames / per bin), limb-length error, proportions."""
    from common.inference.length_sources import PRIOR_LIMBS

    lines = []
    for person, choice in choices.items():
        added = sorted(set(written["rigid"]) - set(choice["rigid"]))
        removed = sorted(set(choice["rigid"]) - set(written["rigid"]))
        natural = ", ".join(f"{n} {v:.4f}" for n, v in choice["natural_relative_sd"].items())
        lines.append(f"* without the {person}: held rigid {len(choice['rigid'])} of 16 ("
                     + ("the same bones as fitted on everybody" if not added and not removed else
                        "unlike everybody's fit: " + "; ".join(
                            ([f"not held: {', '.join(added)}"] if added else [])
                            + ([f"held too: {', '.join(removed)}"] if removed else [])))
                     + (f"; natural relative sd {natural}" if natural else "") + "); convention offset (%) " + ", ".join(f"{limb} {v * 100:+.1f}" for limb, v in
                                                             zip(PRIOR_LIMBS, choice["offset"])))
    bins = [key for key, _ in SCORE_COLUMNS[:4]]
    lines += ["", "| recording | view | P-MPJPE (mm), all / standing / 20–60° / > 60°: in sample | out of sample | "
              "MediaPipe raw | limb-length error (mm): in / out / raw | limb proportions off (%): in / out / raw |",
              "|---" * 7 + "|"]
    for (recording, view), rows in table.items():
        cells = [" / ".join(f"{rows[row][key]:.1f}" if np.isfinite(rows[row][key]) else "-" for key in bins)
                 for row in (defaults, HELD_OUT_ROW, RAW)]
        cells += [" / ".join(f"{rows[row][key]:.1f}" for row in (defaults, HELD_OUT_ROW, RAW))
                  for key in ("limb_length_error_mm", "proportions_off_pct")]
        lines.append(f"| {recording} | {view} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"* out of sample, {line}" for line in summary(table, HELD_OUT_ROW)])


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default="data", help="folder of data_3d_demo.npz (Human3.6M-convention rows)")
    p.add_argument("--out", default="output/wild_recordings", help="folder of the tables")
    p.add_argument("--write_rigidity", action="store_true", help=f"write the decision to {RIGIDITY_FILE.name}")
    args = p.parse_args(argv)
    out = Path(args.out)
    recordings = [load_recording(s) for s in SEQUENCES]
    markdown, content = measure_rigidity(recordings, Path(args.data_dir))
    print(markdown)
    print("rigidity decision: " + json.dumps(content, indent=1))
    atomic_write(out / "rigidity.md", lambda fh: fh.write((markdown + "\n").encode()))
    if args.write_rigidity:
        content = json.loads(RIGIDITY_FILE.read_text()) | content  # conventions not measured now stay
        atomic_write(RIGIDITY_FILE, lambda fh: fh.write((json.dumps(content, indent=1) + "\n").encode()))
        print(f"wrote {RIGIDITY_FILE}")
    choices = held_out_choices(recordings)
    table = {(r.sequence.name, cam.name): score_view(r, v, choices[r.sequence.person])
             for r in recordings for v, cam in enumerate(r.cameras)}
    markdown = scores_markdown(table)
    defaults = next(row for row in next(iter(table.values())) if row.endswith("(default)"))
    markdown += "\n\n" + "\n".join(f"* {line}" for line in summary(table, defaults))
    markdown += "\n\nLeave one person out:\n\n" + held_out_markdown(table, defaults, choices,
                                                                      content["blazepose"])
    print(markdown)
    atomic_write(out / "scores.md", lambda fh: fh.write((markdown + "\n").encode()))
    print(f"wrote {out / 'rigidity.md'}, {out / 'scores.md'}")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
