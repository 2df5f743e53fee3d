"""Video -> 2D keypoints -> 3D poses -> bone-length adjustment -> exports and pictures (``inference.py``).

Stages (each timed by :class:`common.utils.timing.StageTimer`), each in its own module:

* ``decode`` + ``detect`` — :mod:`common.inference.keypoints_2d`: the followed person's 2D keypoints (BlazePose by default,
  which also gives its own 3D world landmarks in the same pass), or a precomputed keypoint file;
* ``lift`` — :mod:`common.inference.lifters`: the registered lifter picked by ``--lifter`` -> (T, 17, 3) metres in its
  frame and joint convention;
* ``adjust`` — :mod:`common.inference.length_sources`: 16 bone lengths from the registered source picked by
  ``--lengths``, given the person's size (``--height``, else the lifter's raw 3D for sources whose size is the
  lifter's: :mod:`common.inference.body_size`); the bones a body holds rigid in the lifter's joint convention keep
  that one length, the others follow the lifter per frame as ``--nonrigid`` says
  (:mod:`common.adjustment.rigidity`); every bone keeps its direction and gets its length
  (:func:`common.core.bones.adjust_bone_lengths`); then the world-like frame of
  :data:`common.core.camera.WORLD_LIKE_FRAMES` and the ground at z = 0;
* exports — :mod:`common.output.exports`; ``render`` — :mod:`common.output.rendering` (output video + PNGs).

The lifter and the length source are built by :func:`make_models`, which ``--live`` (:mod:`common.inference.live`)
uses as well: both registries are the only places that know names.

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

from common.adjustment.rigidity import DEFAULT_NONRIGID, NONRIGID_MODES, load_rigidity, rigidity_lengths
from common.core.bones import adjust_bone_lengths, bone_lengths
from common.core.camera import camera_to_world_like, place_on_ground
from common.core.metrics import symmetry_error
from common.core.skeleton import BONE_NAMES
from common.inference.body_size import as_heights, height_of, height_size, person_size, rescale
from common.inference.camera_size import calibration_camera, check_upright, check_video_size, read_stature
from common.inference.keypoints_2d import TrackOptions, extract_people, extract_track
from common.inference.length_sources import LengthSource, choose_lengths, make_length_source
from common.inference.lifters import Lifter, choose_lifter, make_lifter
from common.inference.multiview import CalibratedCamera
from common.inference.registry import options_from
from common.output.exports import (DEFAULT_EXPORTS, PoseExport, everybody_formats, export_paths, write_exports,
                                   write_people_exports)
from common.output.rendering import render, render_people
from common.utils.errors import UserError
from common.utils.timing import STAGES, StageTimer
from common.vision.people import SEARCH_EVERY
from common.vision.tracking import Track2D
from common.vision.video import VideoReader


@dataclass
class InferenceConfig:
    """Settings of one inference run (see ``inference.py --help``; each field is the flag of the same name).
    ``lifter``/``lengths`` None = the default for the given inputs (:func:`common.inference.lifters.choose_lifter`,
    :func:`common.inference.length_sources.choose_lengths`). The stages take their own options from it."""

    video: str | None = "data/demo.mp4"
    keypoints: str | None = None
    keypoint_format: str = "h36m"
    detector: str = "blazepose"
    detector_config: str | None = None
    detector_weights: str | None = None
    detector_threads: int | None = None  # BlazePose's inference threads (None: every available core)
    person: str = "largest"
    people: str = "one"        # "all": every person, one identity each (common.vision.people)
    max_people: int = 10
    search_every: int = SEARCH_EVERY  # --people all: frames between whole-frame searches
    max_gap: int = 30
    smooth: float = 0.0
    max_frames: int | None = None
    fps: float = 50.0
    lifter: str | None = None
    lengths: str | None = None
    lengths_file: str | None = None
    # standing height(s), metres: one, or one per identity in order with --people all (height_of); None: the
    # video's own evidence
    height: float | tuple[float, ...] | None = None
    # a calibration file (.toml / .qca.txt) and its camera that filmed the video: each person's height read through
    # it (common.inference.camera_size) where --height gives none; the floor at world z = floor_z (z up)
    calibration: str | None = None
    camera: str | None = None
    floor_z: float = 0.0
    nonrigid: str = DEFAULT_NONRIGID  # what the adjustment does with distances a body does not hold rigid
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
    people: list["PersonResult"] = field(default_factory=list)  # --people all: everybody (the first also above)
    adjustment: dict = field(default_factory=dict)  # adjust_lengths' metadata (of the first person)


@dataclass
class PersonResult:
    """One person of a ``--people all`` run: identity, 2D track, poses (T, 17, 3) world-like metres over the
    track's frames before/after adjustment, the lengths used ((16,) or (T, 16) metres)."""

    identity: int
    track: Track2D
    poses_before: np.ndarray
    poses_after: np.ndarray
    lengths: np.ndarray
    adjustment: dict = field(default_factory=dict)  # adjust_lengths' metadata


def make_models(config: InferenceConfig, live: bool = False) -> tuple[Lifter, LengthSource]:
    """The run's lifter and length source from the registries, their pre-flight checks passed (models and files
    loaded, so that bad input fails before the slow detection). ``live``: causal ones, for ``--live``."""
    settings = vars(config)
    lifter = make_lifter(choose_lifter(settings), settings, live)
    source = make_length_source(choose_lengths(settings, lifter), settings, lifter, live)
    if config.nonrigid not in NONRIGID_MODES:
        raise UserError(f"--nonrigid must be one of {', '.join(NONRIGID_MODES)}, got {config.nonrigid!r}")
    check_heights(config.height, config.people, source, lifter.convention)
    if config.calibration is not None or config.camera is not None:
        calibrated_camera(config, source, lifter, live)
    return lifter, source


def calibrated_camera(config: InferenceConfig, source: LengthSource, lifter: Lifter,
                      live: bool = False) -> CalibratedCamera:
    """``--calibration``/``--camera``'s camera, after the pre-flight checks: a calibration file, a video (not a
    keypoint file: its pixels must be the camera's; ``live``: the stream), a length source whose size is the
    lifter's, a lifter whose joint convention has a limb-to-stature ratio (the read height sizes its lengths)."""
    if config.calibration is None:
        raise UserError("--camera names a camera of --calibration FILE; give the calibration file too")
    if not config.video and not live:
        raise UserError("--calibration reads each person's height from the video's pixels: give --video")
    if not source.own_size:
        raise UserError(f"--calibration sizes lengths estimated from the video (a source whose size is the lifter's, "
                        f"e.g. --lengths prior); --lengths {source.name} has a size of its own")
    try:
        height_size(1.7, lifter.convention)
    except UserError:
        raise UserError(f"--calibration sizes lengths from a height through the population's limb-to-stature ratio, "
                        f"which common/resources/limb_prior.json has not for --lifter {lifter.name}'s "
                        f"{lifter.convention!r} joints; use --lifter mediapipe") from None
    if not np.isfinite(config.floor_z):
        raise UserError(f"--floor_z must be a finite number of metres, got {config.floor_z}")
    camera = calibration_camera(config.calibration, config.camera)
    check_upright(camera, config.floor_z)
    return camera


def person_heights(config: InferenceConfig, tracks: list[tuple[int, Track2D]], fps: float,
                   camera: CalibratedCamera | None) -> dict[int, tuple[float | None, str | None]]:
    """Each person's height (metres) and where it comes from: their ``--height``
    (:func:`~common.inference.body_size.height_of`), else, with a calibrated ``camera``, the stature read through it
    (:func:`common.inference.camera_size.read_stature`; None when it cannot be read); None: the video's own size.
    identity -> (height or None, a description of the camera read or None)."""
    heights = {}
    for identity, track in tracks:
        given = height_of(config.height, identity)
        if given is not None or camera is None:
            heights[identity] = (given, None)
            continue
        read, frames = read_stature(track, camera, fps, config.floor_z)
        heights[identity] = (read, f"read through calibrated camera {camera.name} on {frames} frames" if read is not None
                             else f"not readable through camera {camera.name}: {frames} frames planted and upright")
    return heights


def describe_heights(heights: dict[int, tuple[float | None, str | None]]) -> str:
    """The run's ``sizes:`` line (:func:`person_heights`' result)."""
    def one(height: float | None, how: str | None) -> str:
        if height is None:
            return "the video's own" + (f" ({how})" if how else "")
        return f"{height:.3f} m {how}" if how else f"--height {height:g} m"

    return "sizes: " + ", ".join(f"person {i} {one(*h)}" for i, h in heights.items())


def check_heights(heights: float | tuple[float, ...] | None, people: str, source: LengthSource,
                  convention: str) -> None:
    """``--height``'s pre-flight checks: a length source whose size is the lifter's, each height in range, and one
    height unless every person is followed (``people`` ``all``)."""
    if heights is None:
        return
    if not source.own_size:
        raise UserError(f"--height sizes lengths estimated from the video (a source whose size is the "
                        f"lifter's); --lengths {source.name} brings its own")
    heights = as_heights(heights)
    if len(heights) > 1 and people != "all":
        raise UserError(f"--height gives {len(heights)} heights but one person is followed: give one, or "
                        "--people all (then one per person, in identity order)")
    for height in heights:
        height_size(height, convention)


def adjust_lengths(lifter: Lifter, source: LengthSource, poses: np.ndarray, track: Track2D,
                   height: float | None = None, nonrigid: str = DEFAULT_NONRIGID,
                   rigidity: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, dict]:
    """The adjustment's target lengths for the lifter's poses (T, 17, 3) metres: ``source``'s, at the person's
    size (:func:`common.inference.body_size.person_size`), rigid bones held at one length and the others treated as
    ``nonrigid`` says (:func:`common.adjustment.rigidity.rigidity_lengths`). Returns ((16,) or (T, 16) metres,
    metadata: the non-rigid mode, the rigid bones and where the size came from). ``rigidity``: (rigid (16,) bool,
    natural relative variance (16,)) in place of the lifter's convention's in the rigidity file (a held-out fit)."""
    lengths = source.lengths(poses, track)
    size, size_source = person_size(lifter.convention, track, height, source.own_size)
    if size is not None:
        lengths = rescale(lengths, size)
    rigid, variance = load_rigidity(lifter.convention) if rigidity is None else rigidity
    lengths = rigidity_lengths(poses, lengths, rigid, variance, nonrigid)
    return lengths, {"nonrigid": nonrigid, "rigid_bones": [n for n, r in zip(BONE_NAMES, rigid) if r],
                     "size": size_source}


def _adjust(lifter: Lifter, source: LengthSource, before: np.ndarray, track: Track2D, config: InferenceConfig,
            height: tuple[float | None, str | None]) -> tuple[np.ndarray, dict, np.ndarray, np.ndarray]:
    """Lengths of ``source`` for a person's lifted poses (T, 17, 3) at their height (:func:`person_heights`)
    and the poses before and after the adjustment, both in the world-like frame on the ground: (lengths (16,) or
    (T, 16), their metadata, before, after)."""
    lengths, meta = adjust_lengths(lifter, source, before, track, height[0], config.nonrigid)
    if height[1] is not None:
        meta["size"] = (f"height {height[0]:.3f} m {height[1]} (population limb-to-stature ratio)"
                        if height[0] is not None else f"{meta['size']}; height {height[1]}")
    after = adjust_bone_lengths(before - before[:, :1], lengths) + before[:, :1]
    if lifter.frame == "camera":
        before, after = camera_to_world_like(before, after), camera_to_world_like(after, after)
    return lengths, meta, place_on_ground(before), place_on_ground(after)


def _stats(before: np.ndarray, after: np.ndarray, rendered: int, seconds: float) -> dict[str, float]:
    """End-to-end rate and the bone-length spread over time and left/right difference, before and after (mm)."""
    lb, la = bone_lengths(before), bone_lengths(after)
    return {"end_to_end_fps": rendered / seconds, "seconds": seconds,
            "length_std_before_mm": float(lb.std(0).mean() * 1000),
            "length_std_after_mm": float(la.std(0).mean() * 1000),
            "symmetry_before_mm": float(symmetry_error(lb).mean() * 1000),
            "symmetry_after_mm": float(symmetry_error(la).mean() * 1000)}


def run(config: InferenceConfig) -> InferenceResult:
    """All stages; see the module docstring. Raises UserError on bad input."""
    timer = StageTimer()
    start = time.perf_counter()
    reader = VideoReader(config.video, config.max_frames) if config.video else None
    fps = reader.info.fps if reader is not None else config.fps
    lifter, source = make_models(config)
    camera = calibration_camera(config.calibration, config.camera) if config.calibration is not None else None
    if camera is not None:
        check_video_size(camera, reader.info.width, reader.info.height)
    options = options_from(TrackOptions, vars(config))
    if config.people == "all":
        tracks = extract_people(options, reader, timer)
    else:
        tracks = [(0, extract_track(options, reader, timer))]
    heights = person_heights(config, tracks, fps, camera)
    if config.height is not None or camera is not None:
        print(describe_heights(heights))
    stem = Path(config.video).stem if config.video else Path(config.keypoints).stem
    people, files = [], {}
    for identity, track in tracks:  # each person: their own 3D, lengths and adjustment
        with timer.measure("lift", len(track)):
            lifted = lifter.lift(track)
        with timer.measure("adjust", len(track)):
            lengths, meta, before, after = _adjust(lifter, source, lifted, track, config, heights[identity])
        people.append(PersonResult(identity, track, before, after, lengths, meta))
        export = PoseExport(stem if config.people != "all" else f"{stem}_person{identity}", config.video, track,
                            before, after, lengths, fps, lifter.frame, getattr(lifter, "mode", lifter.name),
                            lifter.name, source.name, lifter.convention,
                            None if config.poses else lifted, adjustment=meta)  # lifter's poses unless --poses
        formats = DEFAULT_EXPORTS + tuple(config.export_formats)
        if config.people == "all":  # CSV and JSON lines: one file for everybody with a person column (below)
            formats = tuple(f for f in formats if f not in everybody_formats())
        written = write_exports(export, export_paths(export.stem, config.output, formats), formats)
        files.update(written if config.people != "all" else {f"person{identity}_{k}": v for k, v in written.items()})
    if config.people == "all":
        files.update(write_people_exports(
            stem, people, config.video, fps, lifter.frame,
            {"mode": getattr(lifter, "mode", lifter.name), "lifter": lifter.name, "lengths": source.name,
             "joint_convention": lifter.convention}, config.output,
            tuple(f for f in config.export_formats if f in everybody_formats())))
        video_files, rendered = render_people(config.output, stem, reader, people, fps, timer, config.gif,
                                              config.panel_height, config.progress)
    else:
        video_files, rendered = render(config.output, stem, reader, people[0].track, people[0].poses_before,
                                       people[0].poses_after, fps, timer, config.gif, config.panel_height,
                                       config.progress)
    files.update(video_files)
    first = people[0]
    seconds = time.perf_counter() - start
    each = [_stats(p.poses_before, p.poses_after, rendered, seconds) for p in people]  # mean over people
    stats = {k: float(np.mean([e[k] for e in each])) for k in each[0]}
    return InferenceResult(files, first.track, first.poses_before, first.poses_after, first.lengths, timer, rendered,
                           lifter.name, source.name, stats, people if config.people == "all" else [],
                           first.adjustment)

__all__ = ["InferenceConfig", "InferenceResult", "PersonResult", "STAGES", "run", "make_models", "adjust_lengths"]
