"""Video -> 2D keypoints -> 3D poses -> bone-length adjustment -> exports and pictures (``inference.py``).

Stages (each timed by :class:`common.utils.timing.StageTimer`), each in its own module:

* ``decode`` + ``detect`` — :mod:`common.inference.keypoints_2d`: the followed person's 2D keypoints (BlazePose by default,
  which also gives its own 3D world landmarks in the same pass), or a precomputed keypoint file;
* ``lift`` — :mod:`common.inference.lifters`: the lifter picked by ``--lifter`` (``mediapipe``, ``videopose3d``, ``poses``,
  or any registered one) -> (T, 17, 3) metres in its frame and joint convention;
* ``adjust`` — :mod:`common.inference.length_sources`: 16 bone lengths (``--lengths model|self|file``); every bone keeps
  its direction and gets that length (:func:`common.core.bones.adjust_bone_lengths`); then the world-like frame of
  :data:`common.core.camera.WORLD_LIKE_FRAMES` and the ground at z = 0;
* exports — :mod:`common.output.exports`; ``render`` — :mod:`common.output.rendering` (output video + PNGs).

The video is decoded twice (detect, then render), one frame at a time, and the VideoPose3D lifter runs in
windows, so memory does not grow with the video's length beyond the per-frame numbers themselves (2D keypoints,
poses: a few hundred bytes per frame) and the Bi-GRU's pass over the whole 2D sequence (which it needs by
design).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.core.bones import adjust_bone_lengths, bone_lengths
from common.core.camera import camera_to_world_like, place_on_ground
from common.utils.checkpoint import load_checkpoint, resolve_checkpoint
from common.utils.errors import UserError
from common.output.exports import DEFAULT_EXPORTS, PoseExport, write_exports
from common.inference.keypoints_2d import extract_track
from common.inference.length_sources import (LENGTH_SOURCES, file_lengths, load_limb_prior, median_lengths, model_lengths,
                                   prior_lengths, read_lengths_file)
from common.inference.lifters import Lifter, make_lifter
from common.core.metrics import symmetry_error
from common.models.model_loading import load_model
from common.output.rendering import render
from common.utils.timing import STAGES, StageTimer
from common.vision.tracking import Track2D
from common.vision.video import VideoReader

DEFAULT_LIFTER = "mediapipe"  # the winner of bench/multiview.py (docs/in_the_wild.md)
# The length source used when --lengths is not given, per joint convention of the lifter: the bone-length model
# predicts Human3.6M-convention lengths (the paper's setting); for anatomical (BlazePose) joints the lifter's own
# lengths combined with the population prior won bench/multiview.py (docs/in_the_wild.md).
DEFAULT_LENGTHS = {"h36m": "model", "blazepose": "prior"}


@dataclass
class InferenceConfig:
    """Settings of one inference run (see ``inference.py --help``). ``lifter``/``lengths`` None = the default
    for the given inputs (see :func:`choose_lifter`, :data:`DEFAULT_LENGTHS`)."""

    video: str | None = "data/demo.mp4"
    keypoints: str | None = None
    keypoint_format: str = "h36m"
    detector: str = "blazepose"
    detector_config: str | None = None
    detector_weights: str | None = None
    detector_threads: int | None = None  # BlazePose's inference threads (None: every available core)
    person: str = "largest"
    max_gap: int = 30
    smooth: float = 0.0
    max_frames: int | None = None
    fps: float = 50.0
    lifter: str | None = None
    lengths: str | None = None
    lengths_file: str | None = None
    poses: str | None = None
    poses_frame: str = "camera"
    length_ckpt: str = "biGRU_all.bin"
    finetuned_ckpt: str | None = None
    lifter_ckpt: str | None = None
    bidirectional: bool = False
    num_layers: int | None = None
    architecture: list[int] | None = None
    channels: int | None = None
    output: str = "output"
    export_formats: tuple[str, ...] = ()  # extra formats of the adjusted poses (bvh, csv, jsonl)
    gif: bool = False
    panel_height: int = 480
    device: torch.device = torch.device("cpu")
    progress: bool = True


@dataclass
class InferenceResult:
    """What a run produced: file paths, the track, poses (T, 17, 3) world-like metres, lengths, timings."""

    files: dict[str, Path]
    track: Track2D
    poses_before: np.ndarray
    poses_after: np.ndarray
    lengths: np.ndarray
    timer: StageTimer
    frames_rendered: int
    lifter: str = ""
    length_source: str = ""
    stats: dict[str, float] = field(default_factory=dict)


def choose_lifter(config: InferenceConfig) -> str:
    """The lifter of a run: ``--lifter`` if given (checked against the inputs), else ``poses`` with ``--poses``,
    the lifter a ``--finetuned_ckpt``/``--lifter_ckpt`` checkpoint names (``videopose3d`` when it names none),
    else :data:`DEFAULT_LIFTER`."""
    given = [flag for flag, value in (("--poses", config.poses), ("--finetuned_ckpt", config.finetuned_ckpt),
                                      ("--lifter_ckpt", config.lifter_ckpt)) if value]
    if len(given) > 1:
        raise UserError(f"give at most one of --poses, --finetuned_ckpt, --lifter_ckpt (got {', '.join(given)})")
    implied = None
    if config.poses:
        implied = "poses"
    elif given:
        implied = str(load_checkpoint(resolve_checkpoint(config.finetuned_ckpt or config.lifter_ckpt))
                      .get("lifter", "videopose3d"))
    if config.lifter and implied and config.lifter != implied:
        raise UserError(f"--lifter {config.lifter} conflicts with {given[0]} (a {implied} input)")
    return config.lifter or implied or DEFAULT_LIFTER


def choose_lengths(config: InferenceConfig, lifter: Lifter) -> str:
    """``--lengths`` if given (``file`` implied by ``--lengths_file``), else :data:`DEFAULT_LENGTHS` of the
    lifter's convention. The length model is refused for lifters outside its (Human3.6M) convention."""
    source = config.lengths or ("file" if config.lengths_file else DEFAULT_LENGTHS[lifter.convention])
    if source not in LENGTH_SOURCES:
        raise UserError(f"--lengths must be one of {', '.join(LENGTH_SOURCES)}, got {source!r}")
    if source == "file" and not config.lengths_file:
        raise UserError("--lengths file needs --lengths_file <json/npz of bone lengths in metres>")
    if source == "model" and lifter.convention != "h36m":
        raise UserError(f"--lengths model: the bone-length model predicts Human3.6M-convention lengths, which "
                        f"distort the {lifter.convention}-convention joints of --lifter {lifter.name} "
                        f"(docs/in_the_wild.md, 'Joint conventions'); use --lengths self or --lengths file")
    return source


def adjusted_lengths(source: str, config: InferenceConfig, lifter: Lifter, poses: np.ndarray, track: Track2D,
                     length_model: torch.nn.Module | None) -> np.ndarray:
    """The 16 lengths (metres; (T, 16) for a causal length model) of ``source`` for the lifter's ``poses``."""
    if source == "model":
        return model_lengths(length_model, track)
    if source == "file":
        return file_lengths(config.lengths_file, poses)
    if source == "prior":
        return prior_lengths(poses, lifter.convention)
    return median_lengths(poses)


def run(config: InferenceConfig) -> InferenceResult:
    """All stages; see the module docstring. Raises UserError on bad input."""
    timer = StageTimer()
    start = time.perf_counter()
    name = choose_lifter(config)
    if name == "videopose3d" and not (config.finetuned_ckpt or config.lifter_ckpt):
        raise UserError("--lifter videopose3d needs --finetuned_ckpt <mix model> or --lifter_ckpt <lifter>")
    reader = VideoReader(config.video, config.max_frames) if config.video else None
    fps = reader.info.fps if reader is not None else config.fps
    # Models and files are loaded before the slow detection so that bad input fails fast.
    lifter = make_lifter(name, config)
    source = choose_lengths(config, lifter)
    length_model = lifter.length_model
    if source == "model" and length_model is None:
        length_model = load_model(config.length_ckpt, ("length",), bidirectional=config.bidirectional or None,
                                  num_layers=config.num_layers, device=config.device).model
    if source == "file":
        read_lengths_file(config.lengths_file)
    if source == "prior":
        load_limb_prior(lifter.convention)
    track = extract_track(config, reader, timer)

    with timer.measure("lift", len(track)):
        before = lifter.lift(track)
    lifter_poses = before if name != "poses" else None
    with timer.measure("adjust", len(track)):
        lengths = adjusted_lengths(source, config, lifter, before, track, length_model)
        after = adjust_bone_lengths(before - before[:, :1], lengths) + before[:, :1]
        if lifter.frame == "camera":
            before, after = camera_to_world_like(before, after), camera_to_world_like(after, after)
        before, after = place_on_ground(before), place_on_ground(after)

    stem = Path(config.video).stem if config.video else Path(config.keypoints).stem
    mode = {"poses": "poses"}.get(name, "finetuned" if config.finetuned_ckpt else "lifter" if config.lifter_ckpt
                                  else name)
    export = PoseExport(stem, config.video, track, before, after, lengths, fps, lifter.frame, mode, name, source,
                        lifter.convention, lifter_poses)
    files = write_exports(export, config.output, DEFAULT_EXPORTS + tuple(config.export_formats))
    video_files, rendered = render(config.output, stem, reader, track, before, after, fps, timer, config.gif,
                                   config.panel_height, config.progress)
    files.update(video_files)
    total = time.perf_counter() - start
    lb, la = bone_lengths(before), bone_lengths(after)
    stats = {"end_to_end_fps": rendered / total, "seconds": total,
             "length_std_before_mm": float(lb.std(0).mean() * 1000),
             "length_std_after_mm": float(la.std(0).mean() * 1000),
             "symmetry_before_mm": float(symmetry_error(lb).mean() * 1000),
             "symmetry_after_mm": float(symmetry_error(la).mean() * 1000)}
    return InferenceResult(files, track, before, after, lengths, timer, rendered, name, source, stats)


__all__ = ["InferenceConfig", "InferenceResult", "STAGES", "run", "choose_lifter", "choose_lengths",
           "DEFAULT_LIFTER", "DEFAULT_LENGTHS"]
