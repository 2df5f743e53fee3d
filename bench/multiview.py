"""Single-view 3D scored against your own calibrated multi-camera recording: every person, every view, every
lifter x length source.

Input: a recording in Pose2Sim's layout -- ``RECORDING/calibration/`` with one calibration file (Pose2Sim's
``.toml`` convention, or a Qualisys ``.qca.txt``) and ``RECORDING/videos/`` with one video per camera (paired by
camera name, else in sorted order) -- or ``--calibration`` and ``--videos``. Without a recording, ``--demo
single|multi`` fetches one of the two Pose2Sim demos (4 calibrated 1080x1920 60 fps cameras, 100 frames; one
person, or two; BSD-3-Clause, from the ``pose2sim==0.10.49`` wheel, into ``$BLAPOSE_CACHE``); nothing about them is
known here beyond their calibration file and videos.

Steps: ``inference.py`` runs with its defaults on each video, following every person (``--people all``); people
are matched across views by triangulation consistency (:func:`common.inference.multiview.match_people`);
synchronisation offsets between the cameras are taken from ``--offsets`` or estimated from the calibration
(:func:`common.inference.multiview.estimate_offsets`, printed); each person's reference 3D is their BlazePose 2D
of every view that sees them triangulated with confidence-weighted DLT (left/right swaps of a view undone). Each
view alone is then scored against that person's reference (``common/inference/multiview.py`` defines the scores):
P-MPJPE on the 17 joints, limb-length error, limb proportions off (mean of the 4 left/right-averaged limbs, worst
of them, over the 8 limbs, worst of the shin/thigh, forearm/upper arm and arm/leg ratios), limb-length std over
time, left/right difference. A person seen by one view only has no reference and is reported, not scored.

Rows: ``inference.py defaults`` (its exported adjusted poses), the same with ``--calibration`` (each person's
height read through the view's own calibrated camera, :mod:`common.inference.camera_size`; a second run per view,
left out with ``--no_calibrated_size``), on single-person recordings MediaPipe's plain
full-frame video-mode run (as a user would run it), then every registered lifter that runs from the video alone
(and VideoPose3D with the demo mix model / each ``--lifter_ckpt``) x every length source (unadjusted, self,
prior, model when a length model is there, file with ``--lengths_file``).

    python -m bench.multiview [RECORDING | --demo single|multi] [--calibration F --videos V ...]
        [--offsets 0,0,2,0 | --max_offset 10] [--write_toml F] [--out output/multiview] [--max_frames N]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import inference
from common.core.bones import adjust_bone_lengths
from common.core.skeleton import BONE_NAMES
from common.inference.length_sources import (file_lengths, model_lengths, observed_poses, population_mean_lengths,
                                            prior_lengths)
from common.core.bones import median_lengths
from common.inference.lifters import LIFTERS, make_lifter
from common.inference.multiview import (LIMB_BONES, estimate_offsets, fetch_pose2sim_demo,
                                        find_recording, full_length, limb_lengths, match_people, score_person_view,
                                        shift_frames, triangulate_consistent, write_toml)
from common.models.length_probe import ANKLES
from common.models.model_loading import load_model
from common.utils.checkpoint import DEFAULT_CHECKPOINTS, resolve_checkpoint
from common.utils.downloads import cache_dir
from common.utils.errors import UserError, cli
from common.utils.fileio import atomic_write
from common.utils.validation import ArgumentParser, number
from common.vision.people import identity_switches
from common.vision.tracking import Track2D

COLUMNS = [("p_mpjpe_mm", "P-MPJPE (mm)", "{:.1f}"), ("limb_length_error_mm", "limb-length error (mm)", "{:.1f}"),
           ("proportions_off_pct", "limb proportions off (%)", "{:.1f}"),
           ("proportions_max_pct", "worst limb proportion (%)", "{:.1f}"),
           ("proportions8_off_pct", "proportions over 8 limbs (%)", "{:.1f}"),
           ("ratios_max_pct", "worst ratio shin/thigh, forearm/upper arm, arm/leg (%)", "{:.1f}"),
           ("length_std_mm", "length std over time (mm)", "{:.1f}"), ("left_right_mm", "left/right diff. (mm)", "{:.1f}")]
PLAIN_ROW = "MediaPipe world landmarks, raw (plain full-frame video-mode run)"
ON_PERSON = 0.25  # --compare_single: a run is on a person where its joints are within this x their height (mean)
CALIBRATED_ROW = "inference.py defaults + --calibration (height read through this view's camera)"
DEMO_FOLDERS = {"single": ("Demo_SinglePerson", "pose2sim_demo"), "multi": ("Demo_MultiPerson", "pose2sim_demo_multi")}


@dataclass
class ViewPerson:
    """One person followed in one view: their 2D track (frames of that view's video), the adjusted poses
    ``inference.py`` exported for them (video frames, world-like metres), and their identity in that run."""

    track: Track2D
    poses: np.ndarray
    identity: int


def full_frame_mediapipe(video: Path, max_frames: int | None) -> np.ndarray:
    """A plain MediaPipe run as a user would do it (full frames, video/tracking mode): world landmarks mapped to
    the 17 joints, (T, 17, 3) metres, NaN where nobody was found."""
    from mediapipe.python.solutions import pose as mp_pose

    from common.vision.detectors import BLAZEPOSE_PARTS, to_h36m
    from common.vision.video import VideoReader

    out = []
    with mp_pose.Pose(static_image_mode=False, model_complexity=1) as pose:
        for frame in VideoReader(video, max_frames):
            result = pose.process(frame)
            if result.pose_world_landmarks is None:
                out.append(np.full((17, 3), np.nan, np.float32))
                continue
            world = np.array([(m.x, m.y, m.z) for m in result.pose_world_landmarks.landmark], np.float32)
            out.append(to_h36m(world, np.ones(33, np.float32), BLAZEPOSE_PARTS)[0])
    return np.stack(out)


def adjusted(poses: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """Root-relative poses with the given lengths (None: as they are)."""
    poses = poses - poses[:, :1]
    return poses if lengths is None else adjust_bone_lengths(poses, lengths)


def parse_offsets(text: str | None, views: int) -> np.ndarray | None:
    """``--offsets``: one integer per camera (frames; view v's frame t + offset shows the first view's frame t)."""
    if text is None:
        return None
    try:
        offsets = np.array([int(v) for v in text.split(",")])
    except ValueError:
        raise UserError(f"--offsets takes one integer per camera, comma-separated, got {text!r}") from None
    if len(offsets) != views:
        raise UserError(f"--offsets has {len(offsets)} value(s) for {views} camera(s)")
    return offsets - offsets[0]


def view_people(run) -> list[ViewPerson]:
    """The people of one ``inference.py`` run (``--people all``: everybody; else the one person)."""
    if run.people:
        return [ViewPerson(p.track, p.poses_after, p.identity) for p in run.people]
    return [ViewPerson(run.track, run.poses_after, 0)]


def leave_one_out_pixels(cameras, pixels: list[np.ndarray], confidence: list[np.ndarray], group: dict[int, int],
                         view: int) -> np.ndarray | None:
    """A matched person's joints in ``view`` as the other views of the group see them: their 2D triangulated
    without ``view`` and projected into it, (T, 17, 2) distorted pixels (NaN where fewer than 2 other views see
    a joint); None when fewer than 2 other views see the person."""
    others = [u for u in sorted(group) if u != view]
    if len(others) < 2:
        return None
    world, _, _ = triangulate_consistent([cameras[u] for u in others], np.stack([pixels[u][group[u]] for u in others]),
                                         np.stack([confidence[u][group[u]] for u in others]))
    return cameras[view].project(world)


def stacked(people: list[ViewPerson], frames: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The people's 2D of one view on the common time axis: (P, frames, 17, 2) pixels, (P, frames, 17)."""
    pixels = np.stack([shift_frames(full_length(p.track, p.track.positions, frames + max(offset, 0)), offset)[:frames]
                       for p in people]) if people else np.zeros((0, frames, 17, 2))
    confidence = np.stack([shift_frames(full_length(p.track, p.track.confidence, frames + max(offset, 0)), offset)
                           [:frames] for p in people]) if people else np.zeros((0, frames, 17))
    return pixels, np.nan_to_num(confidence)


def pose_rows(person: ViewPerson, lifters: dict, lengths_file: str | None, length_model) -> dict[str, np.ndarray]:
    """Every lifter x length source on one person's track: row name -> (T, 17, 3) root-relative metres."""
    rows = {}
    for label, lifter in lifters.items():
        poses = lifter.lift(person.track)
        seen = observed_poses(poses, person.track)  # the frames lengths are pooled over, as inference.py's
        rows[f"{label}, unadjusted"] = poses
        rows[f"{label} + self"] = adjusted(poses, median_lengths(seen))
        if population_mean_lengths(lifter.convention) is not None:  # a prior in the lifter's convention
            rows[f"{label} + prior"] = adjusted(poses, prior_lengths(seen, lifter.convention))
        own = lifter.length_model or length_model
        if own is not None:
            note = "" if lifter.convention == "h36m" else " (H36M-convention lengths)"
            rows[f"{label} + model{note}"] = adjusted(poses, model_lengths(own, person.track))
        if lengths_file:
            rows[f"{label} + file"] = adjusted(poses, file_lengths(lengths_file, seen))
    return rows


def build_lifters(args) -> dict:
    """Label -> lifter for every registered lifter that runs from the video alone, plus VideoPose3D with the
    demo mix model (when its checkpoint is there) and each ``--lifter_ckpt``."""
    lifters = {}
    for name in LIFTERS:
        if name in ("videopose3d", "poses"):  # need a checkpoint / a poses file: added below when given
            continue
        lifters[name] = make_lifter(name, {})
    if resolve_checkpoint(args.finetuned_ckpt).is_file():
        lifters["videopose3d (demo mix model)"] = make_lifter("videopose3d", {"finetuned_ckpt": args.finetuned_ckpt})
    for ckpt in args.lifter_ckpt:
        lifters[f"videopose3d ({Path(ckpt).stem})"] = make_lifter("videopose3d", {"lifter_ckpt": ckpt})
    return lifters


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recording", nargs="?", default=None,
                   help="folder in Pose2Sim's layout (calibration/ + videos/); default: --demo")
    p.add_argument("--demo", choices=list(DEMO_FOLDERS), default="single",
                   help="without a recording: the Pose2Sim demo to fetch (single person or two people)")
    p.add_argument("--calibration", default=None, help="calibration file (.toml in Pose2Sim's convention or .qca.txt)")
    p.add_argument("--videos", nargs="+", default=None, help="one video per camera (paired by camera name)")
    p.add_argument("--offsets", default=None,
                   help="synchronisation, one integer per camera (frames): camera v's frame t + offset shows the first "
                        "camera's frame t (default: estimated from the calibration)")
    p.add_argument("--max_offset", type=number(int, ge=0), default=10, help="largest offset searched (frames)")
    p.add_argument("--write_toml", default=None, help="also write the calibration as a Pose2Sim .toml here")
    p.add_argument("--out", default="output/multiview", help="inference.py outputs per view + the table")
    p.add_argument("--max_frames", type=number(int, ge=1), default=None)
    p.add_argument("--lifter_ckpt", action="append", default=[], help="extra VideoPose3D lifter checkpoints")
    p.add_argument("--length_ckpt", default=DEFAULT_CHECKPOINTS["length"]["demo"],
                   help="length model for the 'model' rows (skipped when missing)")
    p.add_argument("--finetuned_ckpt", default=DEFAULT_CHECKPOINTS["finetuned"]["demo"],
                   help="mix model for its rows (skipped when missing)")
    p.add_argument("--lengths_file", default=None, help="measured bone lengths for '+ file' rows")
    p.add_argument("--no_calibrated_size", action="store_true",
                   help="leave out the row of inference.py --calibration (each person's height read through the "
                        "view's own camera; a second inference.py run per view)")
    p.add_argument("--floor_z", type=float, default=0.0,
                   help="the floor's height in the calibration's world, metres (inference.py --floor_z)")
    p.add_argument("--compare_single", action="store_true",
                   help="also run inference.py following one person per view (--people one) and compare each "
                        "person's defaults row with it")
    return p


def synchronise(cameras: list, people: list, frames: int, offsets: np.ndarray | None, max_offset: int
                ) -> tuple[np.ndarray, list[dict[int, int]], list[np.ndarray], list[np.ndarray]]:
    """People matched across views, and the views' frame offsets (estimated when ``offsets`` is None, printed).

    Returns offsets (V,) frames, the groups (view -> person index), and per view the followed people's 2D
    (P, T, 17, 2) px and confidences (P, T, 17), shifted by the offsets."""
    def aligned(shift: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        both = [stacked(people[v], frames, int(shift[v])) for v in range(len(cameras))]
        return [b[0] for b in both], [b[1] for b in both]

    groups = match_people(cameras, *aligned(np.zeros(len(cameras), int)))
    if offsets is None:
        pixels, confidence = aligned(np.zeros(len(cameras), int))
        together = [g for g in groups if 0 in g]
        flat = np.stack([np.concatenate([pixels[v][g[v]] if v in g else np.full((frames, 17, 2), np.nan)
                                         for g in together], axis=1) for v in range(len(cameras))])
        weight = np.stack([np.concatenate([confidence[v][g[v]] if v in g else np.zeros((frames, 17))
                                           for g in together], axis=1) for v in range(len(cameras))])
        offsets, errors = estimate_offsets(cameras, flat, weight, max_offset)
        k0 = max_offset
        print("estimated offsets (frames, relative to " + cameras[0].name + "): " + ", ".join(
            f"{c.name} {o:+d} ({np.nanmin(e):.1f} px, in sync {e[k0]:.1f} px)" if np.isfinite(e).any()
            else f"{c.name} not estimable (no person seen with {cameras[0].name})"
            for c, o, e in zip(cameras, offsets, errors)))
        groups = match_people(cameras, *aligned(offsets))
    else:
        print("offsets given (frames): " + ", ".join(f"{c.name} {o:+d}" for c, o in zip(cameras, offsets)))
    pixels, confidence = aligned(offsets)
    return offsets, groups, pixels, confidence


def report_tracking(cameras: list, groups: list[dict[int, int]], pixels: list[np.ndarray],
                    confidence: list[np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    """Print each view's identity switches and frames tracked against where the other views see each person.

    Returns (group, view) -> (T, 17, 2) px: the person's joints in the view as the other views see them."""
    references = {}
    for v, cam in enumerate(cameras):
        own = [g for g, group in enumerate(groups) if len(group) >= 2]
        for g in own:
            projected = leave_one_out_pixels(cameras, pixels, confidence, groups[g], v)
            if projected is not None:
                references[(g, v)] = projected
        here = [g for g in own if (g, v) in references]
        if not here or not len(pixels[v]):
            continue
        reference = np.stack([references[(g, v)] for g in here])
        heights = np.nanmedian(np.fmax.reduce(reference[..., 1], -1) - np.fmin.reduce(reference[..., 1], -1))
        switches = identity_switches(reference, pixels[v], 0.25 * heights)
        inside = np.isfinite(reference).all(-1).mean(-1) > 0.5
        inside &= ((reference[..., 0] >= 0) & (reference[..., 0] < cam.size[0]) & (reference[..., 1] >= 0)
                   & (reference[..., 1] < cam.size[1])).mean(-1) > 0.5
        tracked = [int((inside[k] & np.isfinite(pixels[v][groups[g][v]]).all(axis=(-1, -2))).sum())
                   if v in groups[g] else 0 for k, g in enumerate(here)]
        print(f"{cam.name}: identity switches {switches} (goal 0); frames tracked / in view per person: "
              + ", ".join(f"person {g} {t}/{int(inside[k].sum())}" for k, (g, t) in enumerate(zip(here, tracked))))
    return references


def score_person(person_id: int, group: dict[int, int], sync: tuple, views_data: tuple, rows_of, table: dict,
                 reference_3d: dict) -> None:
    """Triangulate one matched person and score every row of every view that sees them into ``table``
    ((person, row) -> view -> scores) and ``reference_3d`` ((person, view) -> (T, 17, 3) camera metres)."""
    offsets, pixels, confidence, frames = sync
    cameras, people, runs = views_data
    label = ", ".join(f"{cameras[v].name} #{people[v][i].identity}" for v, i in sorted(group.items()))
    if len(group) < 2:
        print(f"warning: person {person_id} ({label}) is seen by one camera only: no triangulated reference, "
              "not scored", file=sys.stderr)
        return
    views = sorted(group)
    world, reprojection, swapped = triangulate_consistent(
        [cameras[v] for v in views], np.stack([pixels[v][group[v]] for v in views]),
        np.stack([confidence[v][group[v]] for v in views]))
    found = np.isfinite(world).all(axis=(1, 2))
    print(f"person {person_id} ({label}): triangulated {found.sum()}/{frames} frames from {len(views)} views; median "
          f"reprojection error {np.nanmedian(reprojection):.1f} px; left/right swaps undone per view: "
          + ", ".join(f"{cameras[v].name} {n}" for v, n in zip(views, swapped.sum(axis=1))))
    print(f"person {person_id} triangulated limb lengths (median over frames, mm): " + ", ".join(
        f"{BONE_NAMES[b]} {v * 1000:.0f}" for b, v in zip(LIMB_BONES, np.nanmedian(limb_lengths(world), axis=0)))
          + f"; lower ankle at world z {np.nanmedian(np.nanmin(world[:, list(ANKLES), 2], axis=1)):.3f} m (median; where "
          "the person stands against the --calibration row's floor, --floor_z)")
    for v in views:
        cam, person, run = cameras[v], people[v][group[v]], runs[v]
        view_frames = run.frames_rendered
        reference = cam.to_camera(shift_frames(np.concatenate(
            [world, np.full((max(view_frames - frames, 0),) + world.shape[1:], np.nan)]), -int(offsets[v])))
        reference = reference[:view_frames]
        reference_3d[(person_id, v)] = reference
        for row, poses in rows_of(v, person, run).items():
            scores = score_person_view(person.track, poses, reference)
            if scores is not None:
                table.setdefault((person_id, row), {})[cam.name] = scores


def print_table(table: dict, out: Path) -> None:
    """The per-view table (markdown, also written to ``out/multiview.md``) and one summary line per person and
    view for the defaults."""
    lines = ["| person | per single view | view | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for (person_, row), per_view in table.items():
        for view, scores in per_view.items():
            lines.append(f"| {person_} | {row} | {view} | "
                         + " | ".join(fmt.format(scores[k]) for k, _, fmt in COLUMNS) + " |")
    markdown = "\n".join(lines)
    print(markdown)
    atomic_write(out / "multiview.md", lambda fh: fh.write((markdown + "\n").encode()))
    for (person_, row), per_view in table.items():
        if not row.startswith("inference.py defaults") or row == CALIBRATED_ROW:
            continue
        for view, d in per_view.items():
            same = table.get((person_, "mediapipe_raw, unadjusted"), {}).get(view)
            plain = table.get((person_, PLAIN_ROW), {}).get(view)
            sized = table.get((person_, CALIBRATED_ROW), {}).get(view)
            print(f"person {person_} {view}: defaults P-MPJPE {d['p_mpjpe_mm']:.1f} mm"
                  + (f" vs MediaPipe raw {same['p_mpjpe_mm']:.1f} (same pass)" if same else "")
                  + (f" / {plain['p_mpjpe_mm']:.1f} (plain run)" if plain else "")
                  + f"; limb proportions off {d['proportions_off_pct']:.1f} % (worst limb {d['proportions_max_pct']:.1f}"
                  f" %, over 8 limbs {d['proportions8_off_pct']:.1f} %, worst ratio {d['ratios_max_pct']:.1f} %); "
                  f"length std {d['length_std_mm']:.2f} mm; left/right {d['left_right_mm']:.2f} mm; limb-length error "
                  f"{d['limb_length_error_mm']:.1f} mm"
                  + (f" ({sized['limb_length_error_mm']:.1f} mm with the height read through {view})" if sized else ""))


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    folder = args.recording
    if folder is None and not (args.calibration and args.videos):
        demo, target = DEMO_FOLDERS[args.demo]
        folder = fetch_pose2sim_demo(cache_dir() / target, demo)
    calibration, cameras, videos = find_recording(folder, args.calibration, args.videos)
    print(f"{calibration}: {len(cameras)} cameras: " + ", ".join(f"{c.name}={v.name}" for c, v in zip(cameras, videos)))
    out = Path(args.out)
    if args.write_toml:
        write_toml(args.write_toml, cameras)
        print(f"wrote {args.write_toml} (Pose2Sim's .toml convention)")
    offsets = parse_offsets(args.offsets, len(cameras))

    runs, people, sized = [], [], []
    for cam, video in zip(cameras, videos):
        argv_view = ["--video", str(video), "--output", str(out / cam.name), "--no_progress", "--people", "all"]
        argv_view += ["--max_frames", str(args.max_frames)] if args.max_frames else []
        print(f"== {cam.name}: inference.py {' '.join(argv_view)}")
        runs.append(inference.run_cli(argv_view))
        people.append(view_people(runs[-1]))
        print(f"{cam.name}: {len(people[-1])} person(s) followed")
        if not args.no_calibrated_size:  # the same run, each person's height read through this camera
            argv_sized = argv_view[:3] + [str(out / cam.name / "calibrated_size")] + argv_view[4:] + [
                "--calibration", str(calibration), "--camera", cam.name, "--floor_z", str(args.floor_z)]
            print(f"== {cam.name}: inference.py {' '.join(argv_sized)}")
            sized.append({p.identity: p for p in view_people(inference.run_cli(argv_sized))})
    frames = min(r.frames_rendered for r in runs)
    offsets, groups, pixels, confidence = synchronise(cameras, people, frames, offsets, args.max_offset)
    references = report_tracking(cameras, groups, pixels, confidence)

    lifters = build_lifters(args)
    length_model = None
    if resolve_checkpoint(args.length_ckpt).is_file():
        length_model = load_model(args.length_ckpt, ("length",)).model
    single = len(groups) == 1 and all(len(v) == 1 for v in people)

    def rows_of(v: int, person, run) -> dict[str, np.ndarray]:
        rows = {f"inference.py defaults (--lifter {run.lifter}, --lengths {run.length_source})": person.poses}
        if sized and person.identity in sized[v]:
            rows[CALIBRATED_ROW] = sized[v][person.identity].poses
        if single:
            plain = full_frame_mediapipe(videos[v], run.frames_rendered)
            rows[PLAIN_ROW] = plain - plain[:, :1]
        rows.update(pose_rows(person, lifters, args.lengths_file, length_model))
        return rows

    table: dict[tuple[int, str], dict[str, dict[str, float]]] = {}
    reference_3d: dict[tuple[int, int], np.ndarray] = {}
    for person_id, group in enumerate(groups):
        score_person(person_id, group, (offsets, pixels, confidence, frames), (cameras, people, runs), rows_of,
                     table, reference_3d)
    if not table:
        raise UserError("no person is seen by two cameras at once: nothing to score")
    print_table(table, out)
    if args.compare_single:
        followed = {(g, v): people[v][i] for g, group in enumerate(groups) for v, i in group.items()}
        compare_single(args, cameras, videos, runs, pixels, offsets, references, reference_3d, table, followed)
    print(f"wrote {out / 'multiview.md'}")


def compare_single(args, cameras, videos, runs, pixels, offsets, references, reference_3d, table, followed) -> None:
    """Run ``inference.py`` following one person per view (``--people one``, defaults) and print, for the person
    it follows (the group whose 2D it lies on), its defaults scores beside the ``--people all`` run's: over every
    frame, and over the frames where the single run is on that person (its joints within
    :data:`ON_PERSON` of the person's height of where the other views see them; elsewhere it follows somebody else),
    both runs scored on those same frames. ``followed``: (group, view) -> that person's :class:`ViewPerson` in the
    ``--people all`` run."""
    out = Path(args.out)
    for v, (cam, video) in enumerate(zip(cameras, videos)):
        argv_view = ["--video", str(video), "--output", str(out / cam.name / "single"), "--no_progress"]
        argv_view += ["--max_frames", str(args.max_frames)] if args.max_frames else []
        print(f"== {cam.name} single person: inference.py {' '.join(argv_view)}")
        run = inference.run_cli(argv_view)
        frames = len(pixels[v][0]) if len(pixels[v]) else 0
        own = stacked([ViewPerson(run.track, run.poses_after, 0)], frames, int(offsets[v]))[0][0]
        candidates = {g: float(np.nanmean(np.linalg.norm(own - ref, axis=-1)))
                      for (g, u), ref in references.items() if u == v}
        if not candidates:
            continue
        g = min(candidates, key=candidates.get)
        reference = reference_3d.get((g, v))
        if reference is None:
            continue
        single = score_person_view(run.track, run.poses_after, reference, min_frames=1)
        if single is None:
            continue
        row = next(r for (p, r) in table if p == g and r != CALIBRATED_ROW and r.startswith("inference.py defaults"))
        multi = table[(g, row)][cam.name]
        print(f"{cam.name} person {g}: --people one P-MPJPE {single['p_mpjpe_mm']:.2f} mm, proportions off "
              f"{single['proportions_off_pct']:.2f} % ({single['frames']} frames) | --people all "
              f"{multi['p_mpjpe_mm']:.2f} mm, {multi['proportions_off_pct']:.2f} % ({multi['frames']} frames)")
        ref_2d = references[(g, v)]
        box = np.fmax.reduce(ref_2d[..., 1], -1) - np.fmin.reduce(ref_2d[..., 1], -1)
        with np.errstate(invalid="ignore"):
            on = np.nanmean(np.linalg.norm(own - ref_2d, axis=-1), axis=-1) < ON_PERSON * np.nanmedian(box)
        on_view = shift_frames(on, -int(offsets[v]))[:len(reference)]  # the common time axis -> the view's frames
        if on_view.all() or (g, v) not in followed:
            continue
        masked = np.where(on_view[:, None, None], reference, np.nan)
        mine = followed[(g, v)]
        single_on = score_person_view(run.track, run.poses_after, masked, min_frames=1)
        multi_on = score_person_view(mine.track, mine.poses, masked, min_frames=1)
        if single_on is not None and multi_on is not None:
            print(f"{cam.name} person {g}, the {int(on_view.sum())} frames where --people one follows them: "
                  f"--people one P-MPJPE {single_on['p_mpjpe_mm']:.2f} mm, proportions off "
                  f"{single_on['proportions_off_pct']:.2f} % | --people all {multi_on['p_mpjpe_mm']:.2f} mm, "
                  f"{multi_on['proportions_off_pct']:.2f} %")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
