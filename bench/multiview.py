"""Single-view 3D scored against a real calibrated multi-camera recording: every lifter x length source, per view.

Data: the Pose2Sim single-person demo (4 calibrated cameras, 1080x1920, 60 fps, 100 frames, one person moving;
BSD-3-Clause, from the ``pose2sim==0.10.49`` wheel, extracted to ``$BLAPOSE_CACHE/pose2sim_demo`` with its
LICENSE). ``inference.py`` runs with its defaults on each video; the reference 3D is the BlazePose 2D of the four
views (the same detector pass) triangulated with confidence-weighted DLT. Each view alone is then scored
(``common/inference/multiview.py`` defines the scores): P-MPJPE on the 17 joints, limb-length error, limb proportions off
(mean of the 4 left/right-averaged limbs, worst of them, over the 8 limbs, worst of the shin/thigh, forearm/upper
arm and arm/leg ratios), limb-length std over time, left/right difference.

Rows: ``inference.py defaults`` (its exported ``poses_after``), MediaPipe's raw world landmarks (from our
tracker's pass, and from a separate plain MediaPipe run on the full frames in video mode, as a user would run
it), every registered length source on them, and the VideoPose3D checkpoints found (demo mix model, a
``--lifter_ckpt``), with the length model and with their own lengths.

    python bench/multiview.py [--out output/multiview] [--lifter_ckpt checkpoint/x.bin] [--max_frames N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import inference
from common.core.bones import adjust_bone_lengths
from common.utils.checkpoint import DEFAULT_CHECKPOINTS, resolve_checkpoint
from common.utils.downloads import cache_dir
from common.utils.errors import cli
from common.utils.fileio import atomic_write
from common.core.camera import normalize_screen_coordinates
from common.inference.inference_pipeline import InferenceConfig
from common.inference.length_sources import median_lengths, model_lengths, prior_lengths
from common.inference.lifters import make_lifter
from common.inference.lifters.videopose3d import lift_sequence
from common.models.model_loading import load_model
from common.inference.multiview import (LIMB_BONES, fetch_pose2sim_demo, full_length, limb_lengths, limb_scores, read_qca,
                              triangulate_tracks)
from common.core.skeleton import BONE_NAMES

COLUMNS = [("p_mpjpe_mm", "P-MPJPE (mm)", "{:.1f}"), ("limb_length_error_mm", "limb-length error (mm)", "{:.1f}"),
           ("proportions_off_pct", "limb proportions off (%)", "{:.1f}"),
           ("proportions_max_pct", "worst limb proportion (%)", "{:.1f}"),
           ("proportions8_off_pct", "proportions over 8 limbs (%)", "{:.1f}"),
           ("ratios_max_pct", "worst ratio shin/thigh, forearm/upper arm, arm/leg (%)", "{:.1f}"),
           ("length_std_mm", "length std over time (mm)", "{:.1f}"), ("left_right_mm", "left/right diff. (mm)", "{:.1f}")]


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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="Pose2Sim demo folder (default: $BLAPOSE_CACHE/pose2sim_demo, "
                                               "extracted from the pose2sim wheel when missing)")
    p.add_argument("--out", default="output/multiview", help="inference.py outputs per view + the table")
    p.add_argument("--max_frames", type=int, default=None)
    p.add_argument("--lifter_ckpt", action="append", default=[], help="extra VideoPose3D lifter checkpoints")
    p.add_argument("--length_ckpt", default=DEFAULT_CHECKPOINTS["length"]["demo"],
                   help="length model for the 'model' rows (skipped when missing)")
    p.add_argument("--finetuned_ckpt", default=DEFAULT_CHECKPOINTS["finetuned"]["demo"],
                   help="mix model for its rows (skipped when missing)")
    args = p.parse_args(argv)
    data = fetch_pose2sim_demo(Path(args.data) if args.data else cache_dir() / "pose2sim_demo")
    cameras = read_qca(data / "calibration" / "Calib.qca.txt")
    out = Path(args.out)

    runs = {}
    for cam in cameras:
        video = data / "videos" / f"{cam.name}.mp4"
        argv_view = ["--video", str(video), "--output", str(out / cam.name), "--no_progress"]
        argv_view += ["--max_frames", str(args.max_frames)] if args.max_frames else []
        print(f"== {cam.name}: inference.py {' '.join(argv_view)}")
        runs[cam.name] = inference.run_cli(argv_view)
    frames = min(r.frames_rendered for r in runs.values())
    tracks = {name: r.track for name, r in runs.items()}
    world, reprojection, swapped = triangulate_tracks(cameras, [tracks[c.name] for c in cameras], frames)
    print(f"triangulated {np.isfinite(world).all(axis=(1, 2)).sum()}/{frames} frames from {len(cameras)} views; "
          f"median reprojection error {np.nanmedian(reprojection):.1f} px; left/right swaps undone per view: "
          + ", ".join(f"{c.name} {n}" for c, n in zip(cameras, swapped.sum(axis=1))))
    reference_limbs = np.nanmedian(limb_lengths(world), axis=0)
    print("triangulated limb lengths (median over frames, mm): " + ", ".join(
        f"{BONE_NAMES[b]} {v * 1000:.0f}" for b, v in zip(LIMB_BONES, reference_limbs)))

    length_model = mix = None
    if resolve_checkpoint(args.length_ckpt).is_file():
        length_model = load_model(args.length_ckpt, ("length",)).model
    if resolve_checkpoint(args.finetuned_ckpt).is_file():
        mix = load_model(args.finetuned_ckpt, ("mix",)).model
    videopose = {Path(c).stem: load_model(c, ("lifter",)).model for c in args.lifter_ckpt}
    if mix is not None:
        videopose["demo mix model"] = mix.direction_model
    config = InferenceConfig()

    table: dict[str, dict[str, dict[str, float]]] = {}
    for cam in cameras:
        run, track = runs[cam.name], tracks[cam.name]
        rows: dict[str, np.ndarray] = {}
        exported = np.load(run.files["poses_npz"], allow_pickle=True)
        rows[f"inference.py defaults (--lifter {run.lifter}, --lengths {run.length_source})"] = exported["poses_after"]
        plain = full_frame_mediapipe(data / "videos" / f"{cam.name}.mp4", frames)
        rows["MediaPipe world landmarks, raw (plain full-frame video-mode run)"] = plain - plain[:, :1]
        for name in ("mediapipe_raw", "mediapipe"):
            poses = make_lifter(name, config).lift(track)
            rows[f"{name}, unadjusted"] = poses
            rows[f"{name} + self"] = adjusted(poses, median_lengths(poses))
            rows[f"{name} + prior"] = adjusted(poses, prior_lengths(poses, "blazepose"))
            if length_model is not None:
                rows[f"{name} + model (demo length model, H36M convention)"] = adjusted(
                    poses, model_lengths(length_model, track))
        keypoints = normalize_screen_coordinates(track.positions, track.width, track.height)
        for name, model in videopose.items():
            poses = lift_sequence(model, keypoints, torch.device("cpu"))
            rows[f"videopose3d ({name}), unadjusted"] = poses
            own_model = mix.length_model if name == "demo mix model" else length_model
            if own_model is not None:
                rows[f"videopose3d ({name}) + model"] = adjusted(poses, model_lengths(own_model, track))
            rows[f"videopose3d ({name}) + self"] = adjusted(poses, median_lengths(poses))
        reference = cam.to_camera(world)
        for row, poses in rows.items():
            if len(poses) != frames:  # poses of the track's frames -> the video's
                poses = full_length(track, poses, frames)
            valid = np.isfinite(poses).all(axis=(1, 2)) & np.isfinite(reference).all(axis=(1, 2))
            table.setdefault(row, {})[cam.name] = limb_scores(poses[valid], reference[valid])

    lines = ["| per single view | view | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for row, per_view in table.items():
        for view, scores in per_view.items():
            lines.append(f"| {row} | {view} | " + " | ".join(fmt.format(scores[k]) for k, _, fmt in COLUMNS) + " |")
    markdown = "\n".join(lines)
    print(markdown)
    atomic_write(out / "multiview.md", lambda fh: fh.write((markdown + "\n").encode()))
    defaults, plain = next(iter(table)), "MediaPipe world landmarks, raw (plain full-frame video-mode run)"
    same = "mediapipe_raw, unadjusted"
    for view, d in table[defaults].items():
        print(f"{view}: defaults P-MPJPE {d['p_mpjpe_mm']:.1f} mm vs MediaPipe raw {table[plain][view]['p_mpjpe_mm']:.1f}"
              f" (plain run) / {table[same][view]['p_mpjpe_mm']:.1f} (same pass); limb proportions off "
              f"{d['proportions_off_pct']:.1f} % (worst limb {d['proportions_max_pct']:.1f} %, over 8 limbs "
              f"{d['proportions8_off_pct']:.1f} %, worst ratio {d['ratios_max_pct']:.1f} %); length std "
              f"{d['length_std_mm']:.2f} mm; left/right {d['left_right_mm']:.2f} mm")
    print(f"wrote {out / 'multiview.md'}")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
