"""Video of a person -> 2D keypoints -> 3D poses with BLAPose's bone-length adjustment -> video + exports.

Default (no flag): BlazePose 2D and, from the same pass, its 3D world landmarks (--lifter mediapipe), adjusted
with their own robust per-bone lengths, left/right averaged, the four limbs' proportions pulled towards the
population's (--lengths prior; --lengths self keeps the lifter's own); needs no trained checkpoint.
  python inference.py --video path/to/video.mp4
The paper's two modes (bone lengths from the length model):
  python inference.py --finetuned_ckpt videopose_finetuned.bin -bi --video path/to/video.mp4
  python inference.py --length_ckpt biGRU_all.bin -bi --video path/to/video.mp4 --poses predicted_poses.npz
and a plain VideoPose3D lifter run here and adjusted with the length model:
  python inference.py --length_ckpt biGRU_all.bin -bi --lifter_ckpt pretrained_h36m_cpn.bin --video v.mp4
Other lengths: --lengths self (the lifter's own), --lengths file --lengths_file F (measured, metres; format in
common/inference/length_sources.py). Runs with a lifter also write <video>_lifter_poses.npz (key poses), a --poses input.

``--poses``: another lifter's poses, an npz with key ``poses`` (or a single array) or a .npy, shape (T, 17, 3)
metres, Human3.6M joint order, one pose per video frame; ``--poses_frame`` states their frame (``camera``:
x right, y down, z forward, as VideoPose3D outputs; ``world``: z up). 2D keypoints come from MediaPipe
BlazePose (default) or ``--keypoints`` (VideoPose3D custom npz, or (T, 17, 2|3) pixels in ``--keypoint_format``
order). Everything is written under ``--output``; the output frame is described in common/core/camera.py.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import sys
from pathlib import Path

import numpy as np

from common.core.bones import bone_lengths
from common.adjustment.rigidity import DEFAULT_NONRIGID, NONRIGID_MODES, describe_adjustment
from common.utils.checkpoint import default_checkpoint
from common.datasets.dataset import resolve_dataset_name
from common.utils.device import add_device_argument, select_device
from common.utils.errors import UserError, cli
from common.inference.body_size import parse_heights
from common.inference.inference_pipeline import STAGES, InferenceConfig, InferenceResult, make_models, run
from common.inference.length_sources import DEFAULT_LENGTHS, LENGTH_SOURCES
from common.inference.lifters import DEFAULT_LIFTER, INPUT_FLAGS, LIFTERS
from common.inference.live import DETECT_AHEAD, WARMUP_FRAMES, LiveConfig, LiveResult, run_live
from common.inference.registry import reads, registered_class
from common.models.model import parse_architecture
from common.output.exports import DEFAULT_EXPORTS, export_paths, parse_export_formats, requestable_formats
from common.output.rendering import render_paths
from common.vision.people import SEARCH_EVERY
from common.vision.tracking import parse_person_policy
from common.utils.validation import (ArgumentParser, check_inputs_survive, check_output_dir, check_output_file,
                                     number)


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("input")
    g.add_argument("--video", default=None,
                   help="input video, frame rate read from the file (default data/demo.mp4 unless --keypoints)")
    g.add_argument("--keypoints", default=None, help="precomputed 2D keypoints instead of the detector")
    g.add_argument("--keypoint_format", choices=["h36m", "coco"], default="h36m",
                   help="joint order of a --keypoints array (a VideoPose3D npz states its own layout)")
    g.add_argument("--detector", choices=["blazepose", "mmpose"], default="blazepose", help="2D detector")
    g.add_argument("--detector_config", default=None, help="mmpose: local model config file")
    g.add_argument("--detector_weights", default=None, help="mmpose: local checkpoint file (never downloaded)")
    g.add_argument("--detector_threads", type=number(int, ge=1), default=None,
                   help="threads of BlazePose's models (default: every available core; the landmarks are the same)")
    g.add_argument("--person", default="largest",
                   help="who to follow: largest, central, or an index counted from the left (0 = leftmost)")
    g.add_argument("--people", choices=["one", "all"], default="one",
                   help="one: follow one person (--person); all: every person, one identity each, own 3D, lengths and "
                        "files (docs/multi_person.md)")
    g.add_argument("--max_people", type=number(int, ge=1), default=10, help="--people all: most people followed")
    g.add_argument("--search_every", type=number(int, ge=1), default=SEARCH_EVERY,
                   help="--people all: frames between whole-frame searches for people not followed yet (a newcomer "
                        "waits up to this many frames; each search costs ~250 CPU ms at 1768x994; docs/multi_person.md)")
    g.add_argument("--max_gap", type=number(int, ge=0), default=30,
                   help="longest run of frames without the person that is interpolated (longer: error)")
    g.add_argument("--smooth", type=number(float, ge=0), default=0.0,
                   help="Gaussian temporal smoothing of the 2D keypoints, sigma in frames (0 = off)")
    g.add_argument("--max_frames", type=number(int, ge=1), default=None, help="only the first N frames of the video")
    g.add_argument("--fps", type=number(float, gt=0), default=50.0, help="frame rate when there is no --video")
    g = p.add_argument_group("3D")
    g.add_argument("--lifter", choices=list(LIFTERS), default=None,
                   help=f"2D -> 3D lifter (common/inference/lifters/; default: {DEFAULT_LIFTER}, or the one "
                        f"{'/'.join('--' + f for f in INPUT_FLAGS)} implies: a checkpoint names its lifter)")
    g.add_argument("--lengths", choices=list(LENGTH_SOURCES), default=None,
                   help="bone lengths of the adjustment (common/inference/length_sources.py); default: the one "
                        "--lengths_file implies, else "
                        + ", ".join(f"{v} for {k}-convention lifters" for k, v in DEFAULT_LENGTHS.items()))
    g.add_argument("--lengths_file", default=None,
                   help="json/npz of measured bone lengths in metres (implies --lengths file)")
    g.add_argument("--height", type=parse_heights, default=None,
                   help="the person's standing height in metres, e.g. 1.78: sets the overall size of --lengths "
                        "self/prior/model_prior, and model with --lifter mediapipe (default: the lifter's own 3D, robustly "
                        "pooled; docs/in_the_wild.md); with --people all one per person in identity order, e.g. "
                        "1.78,1.62 (persons beyond the list keep the video's own size)")
    g.add_argument("--calibration", default=None,
                   help="a calibration file of the camera that filmed the video (Pose2Sim .toml or Qualisys "
                        ".qca.txt; world z up): each person's standing height is read through it (a planted foot "
                        "on the floor fixes their distance) and sizes their lengths as --height would, where "
                        "--height gives none (docs/in_the_wild.md, 'Metric size through your calibrated camera')")
    g.add_argument("--camera", default=None, help="which camera of --calibration filmed the video (default: its only one)")
    g.add_argument("--floor_z", type=number(float), default=0.0,
                   help="height of the floor in --calibration's world frame, metres (default 0)")
    g.add_argument("--nonrigid", choices=list(NONRIGID_MODES), default=DEFAULT_NONRIGID,
                   help="distances the body does not hold rigid in the lifter's joint convention "
                        "(common/resources/rigidity.json): rigid = held like bones (the paper's adjustment), free "
                        "= the lifter's per-frame length, soft = the lifter's change shrunk by its measured noise")
    g.add_argument("--poses", default=None, help="npz/npy of another lifter's (T, 17, 3) poses to adjust")
    g.add_argument("--poses_frame", choices=["camera", "world"], default="camera", help="frame of --poses")
    g.add_argument("--length_ckpt", default=None,
                   help="bone-length model checkpoint (--poses/--lifter_ckpt modes; default: biGRU_all.bin, or the "
                        "main job's demo_length/epoch_best.bin when data/ holds the demo dataset, not Human3.6M; "
                        "--lifter mediapipe --lengths model/model_prior: one trained with --length_convention "
                        "blazepose, scripts/train_blazepose_length.sh)")
    g.add_argument("--finetuned_ckpt", default=None,
                   help="fine-tuned mix model checkpoint (--lifter videopose3d without --lifter_ckpt defaults to "
                        "videopose_finetuned.bin, or the main job's demo_mix/final.bin for the demo)")
    g.add_argument("--lifter_ckpt", default=None,
                   help="a plain VideoPose3D lifter checkpoint whose poses are adjusted with --length_ckpt")
    g.add_argument("-bi", "--bidirectional", action="store_true", help="the length model is a Bi-GRU")
    g.add_argument("-layer", "--num_layers", type=number(int, ge=1), default=None, help="GRU layers (checked if given)")
    g.add_argument("-arc", "--architecture", default=None,
                   help="lifter filter widths, e.g. 3,3,3,3,3 (default: read from the checkpoint)")
    g.add_argument("-ch", "--channels", type=number(int, ge=1), default=None,
                   help="lifter channels (default: from checkpoint)")
    g = p.add_argument_group("output")
    g.add_argument("--output", default="output", help="output folder")
    g.add_argument("--gif", action="store_true", help="write an animated GIF instead of an MP4")
    g.add_argument("--export", default="",
                   help=f"extra formats of the adjusted poses, comma-separated: {', '.join(requestable_formats())} "
                        "(common/output/exports.py; see docs/exports.md)")
    g.add_argument("--panel_height", type=number(int, ge=16), default=480, help="height in pixels of the output video")
    g.add_argument("--no_progress", action="store_true", help="no tqdm progress bars")
    g = p.add_argument_group("live: causal, one frame at a time (docs/live.md); uses the causal --lifter and "
                             "--lengths (a causal --lifter_ckpt, --length_ckpt), --max_frames")
    g.add_argument("--live", default=None, metavar="SOURCE",
                   help="camera index (0), video file (played at its own frame rate) or stream URL")
    g.add_argument("--unpaced", action="store_true",
                   help="read a --live file every frame, as fast as possible (no drops; deterministic)")
    g.add_argument("--live_output", default="-", help="JSON lines of the poses: a file, or - for stdout")
    g.add_argument("--live_video", default=None, help="also write the annotated video (mp4)")
    g.add_argument("--length_prior", default=None,
                   help="lengths file (as --lengths_file, every bone named) the lengths start from (default: the "
                        "population mean of the lifter's joint convention; docs/live.md, 'Lengths')")
    g.add_argument("--max_length_step_mm", type=number(float, ge=0), default=1.0,
                   help="largest change of any bone length from one frame to the next, mm")
    g.add_argument("--warmup_frames", type=number(int, ge=1), default=WARMUP_FRAMES,
                   help="frames with the person over which the lengths, the size (no --height) and the non-rigid "
                        "bones' reference are pooled, then frozen (docs/live.md, 'Lengths')")
    g.add_argument("--detect_ahead", type=number(int, ge=0), default=DETECT_AHEAD,
                   help="frames the 2D stage (a thread of its own) may finish ahead of the lifting and adjustment; "
                        "0: one after the other (the same output, slower)")
    g.add_argument("--one_euro", default=None, metavar="MIN_CUTOFF,BETA",
                   help="one-euro smoothing of the lifted joints before adjustment, e.g. 1.0,0.5 (off by default)")
    add_device_argument(p)
    return p.parse_args(argv)


def run_live_cli(args: argparse.Namespace, config: InferenceConfig) -> LiveResult:
    """``--live``: the causal lifter and length source of ``config``, run on the stream; a summary on stderr."""
    with contextlib.redirect_stdout(sys.stderr):  # stdout may carry the JSON lines: notes go to stderr
        lifter, lengths = make_models(config, live=True)
    smooth = None
    if args.one_euro:
        try:
            smooth = tuple(float(v) for v in args.one_euro.split(","))
        except ValueError:
            smooth = ()
        if len(smooth) != 2:
            raise UserError("--one_euro takes MIN_CUTOFF,BETA, e.g. 1.0,0.5")
    result = run_live(LiveConfig(
        source=args.live, unpaced=args.unpaced, max_frames=args.max_frames, length_prior=args.length_prior,
        max_step_mm=args.max_length_step_mm, smooth=smooth, jsonl=args.live_output, video_out=args.live_video,
        panel_height=args.panel_height, detector_threads=args.detector_threads, people=args.people,
        max_people=args.max_people, search_every=args.search_every, height=args.height, nonrigid=args.nonrigid,
        calibration=args.calibration, camera=args.camera, floor_z=args.floor_z, warmup_frames=args.warmup_frames,
        detect_ahead=args.detect_ahead),
        lifter, lengths)
    fps = result.timer.fps()
    print(f"live: {result.frames_in} frames in, {result.frames_out} processed, {result.dropped} dropped, "
          f"person found in {result.detected}; {result.fps:.1f} frames/s end to end ("
          + ", ".join(f"{s} {v:.1f}" for s, v in fps.items()) + " frames/s); latency capture -> pose "
          f"median {np.median(result.latency_ms):.1f} ms; largest per-frame change of a rigid "
          f"bone's length {result.max_length_change_mm:.2f} mm (bound {args.max_length_step_mm} mm)", file=sys.stderr)
    return result


def make_config(args: argparse.Namespace) -> InferenceConfig:
    """The run's settings from the parsed flags (offline and live alike)."""
    return InferenceConfig(
        video=args.video, keypoints=args.keypoints, keypoint_format=args.keypoint_format, detector=args.detector,
        detector_config=args.detector_config, detector_weights=args.detector_weights,
        detector_threads=args.detector_threads, person=parse_person_policy(args.person), people=args.people,
        max_people=args.max_people, search_every=args.search_every, max_gap=args.max_gap,
        smooth=args.smooth, max_frames=args.max_frames, fps=args.fps, lifter=args.lifter, lengths=args.lengths,
        lengths_file=args.lengths_file, height=args.height, calibration=args.calibration, camera=args.camera,
        floor_z=args.floor_z, nonrigid=args.nonrigid, poses=args.poses, poses_frame=args.poses_frame,
        length_ckpt=args.length_ckpt or default_checkpoint("length", resolve_dataset_name("auto")),
        finetuned_ckpt=args.finetuned_ckpt, lifter_ckpt=args.lifter_ckpt,
        bidirectional=args.bidirectional, num_layers=args.num_layers,
        architecture=parse_architecture(args.architecture) if args.architecture else None,
        channels=args.channels, output=args.output, gif=args.gif, panel_height=args.panel_height,
        device=select_device(args.device), progress=not args.no_progress,
        export_formats=parse_export_formats(args.export))


def check_paths(args: argparse.Namespace) -> None:
    """Before any work: the outputs are writable and none of them is (or would overwrite) an input; flags the
    chosen mode ignores get a one-line warning."""
    live = args.live is not None
    inputs = [("--lengths_file", args.lengths_file), ("--length_ckpt", args.length_ckpt),
              ("--lifter_ckpt", args.lifter_ckpt), ("--finetuned_ckpt", args.finetuned_ckpt),
              ("--detector_config", args.detector_config), ("--detector_weights", args.detector_weights),
              ("--calibration", args.calibration)]
    readers = [name for name in LENGTH_SOURCES if reads(registered_class(LENGTH_SOURCES, name, "--lengths"),
                                                        "lengths_file")]
    if args.lengths_file and args.lengths not in (None, *readers):
        print(f"warning: --lengths_file {args.lengths_file} is ignored: it is read only with --lengths "
              f"{'/'.join(readers)} (got --lengths {args.lengths})", file=sys.stderr)
    defaults = parse_args([])
    ignored = ([f for f in ("output", "export", "gif", "video", "keypoints", "poses") if getattr(args, f) !=
                getattr(defaults, f)] if live else
               [f for f in ("live_output", "live_video", "length_prior", "unpaced", "one_euro", "max_length_step_mm",
                         "warmup_frames", "detect_ahead")
                if getattr(args, f) != getattr(defaults, f)])
    if ignored:
        print(f"warning: {', '.join('--' + f for f in ignored)} {'is' if len(ignored) == 1 else 'are'} ignored "
              f"{'with' if live else 'without'} --live", file=sys.stderr)
    if live:
        outputs = [(flag, path) for flag, path in (("--live_output", args.live_output), ("--live_video", args.live_video))
                   if path and path != "-"]
        for flag, path in outputs:
            check_output_file(path, flag)
        check_inputs_survive(inputs + [("--live", args.live), ("--length_prior", args.length_prior)], outputs)
        return
    check_output_dir(args.output, "--output")
    stem = Path(args.video).stem if args.video else Path(args.keypoints).stem
    exports = DEFAULT_EXPORTS + parse_export_formats(args.export)
    if args.poses:  # the poses lifter writes no lifter poses of its own
        exports = tuple(name for name in exports if name != "lifter_poses")
    written = {**export_paths(stem, args.output, exports), **render_paths(args.output, stem, args.gif)}
    everybody = (glob.escape(stem) + "_person*", glob.escape(stem) + "_people_3d.*")  # --people all: per-identity names
    check_inputs_survive(inputs + [("--video", args.video), ("--keypoints", args.keypoints), ("--poses", args.poses)],
                         [("--output", path) for path in written.values()],
                         [("--output", args.output, everybody)] if args.people == "all" else [])


def run_cli(argv=None) -> InferenceResult | LiveResult:
    """Parse the command line, run the pipeline, print the summary; returns the run's result."""
    args = parse_args(argv)
    if args.live is None and args.video is None and args.keypoints is None:
        args.video = "data/demo.mp4"
    check_paths(args)
    if args.live is not None:
        return run_live_cli(args, make_config(args))
    config = make_config(args)
    result = run(config)
    adjustment = result.adjustment
    print(f"lifter {result.lifter}, lengths {result.length_source}, {describe_adjustment(adjustment)}")
    fps = result.timer.fps()
    for person in result.people:
        print(f"person {person.identity}: {len(person.track)} frames (from frame {person.track.start}), bone-length "
              f"std after {bone_lengths(person.poses_after).std(0).mean() * 1000:.1f} mm")
    print(f"{len(result.track)} frames with the {'first ' if result.people else ''}person, "
          f"{result.frames_rendered} rendered; "
          f"end to end {result.stats['end_to_end_fps']:.1f} frames/s ("
          + ", ".join(f"{s} {fps[s]:.1f}" for s in STAGES if s in fps) + " frames/s)")
    print(f"bone-length std over time (mean over bones): before {result.stats['length_std_before_mm']:.1f} mm, "
          f"after {result.stats['length_std_after_mm']:.1f} mm; left/right difference: before "
          f"{result.stats['symmetry_before_mm']:.1f} mm, after {result.stats['symmetry_after_mm']:.1f} mm")
    for name, path in result.files.items():
        print(f"{name}: {path}")
    return result


def main(argv=None) -> None:
    run_cli(argv)


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
