"""Stage 1 of video inference: the followed person's 2D keypoints, from the detector run over the video's
frames (one pass, streamed) or from a precomputed keypoint file; with ``--people all`` every person's
(:func:`extract_people`)."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from common.vision.detectors import load_keypoints, make_detector
from common.utils.errors import UserError
from common.utils.timing import StageTimer
from common.vision.people import SEARCH_EVERY, PeopleTracker
from common.vision.tracking import PersonTracker, Track2D, fill_gaps, smooth_track
from common.vision.video import VideoReader


@dataclass
class TrackOptions:
    """Where the 2D comes from and how it is cleaned (the ``inference.py`` flags of the same names)."""

    video: str | None = None
    keypoints: str | None = None
    keypoint_format: str = "h36m"
    detector: str = "blazepose"
    detector_config: str | None = None
    detector_weights: str | None = None
    detector_threads: int | None = None
    person: str = "largest"
    people: str = "one"     # "all": every person (extract_people)
    max_people: int = 10
    search_every: int = SEARCH_EVERY  # --people all: frames between whole-frame searches
    max_gap: int = 30
    smooth: float = 0.0
    max_frames: int | None = None
    device: torch.device = torch.device("cpu")
    progress: bool = True


def extract_track(config: TrackOptions, reader: VideoReader | None, timer: StageTimer) -> Track2D:
    """The followed person's 2D keypoints (pixels; with the detector's own 3D when it has one, see
    :class:`Track2D`), gaps filled, optionally smoothed."""
    if config.keypoints:
        with timer.measure("detect"):
            loaded = load_keypoints(config.keypoints, config.keypoint_format)
            width = reader.info.width if reader is not None else loaded.width
            height = reader.info.height if reader is not None else loaded.height
            if width is None or height is None:
                raise UserError(f"{config.keypoints} states no video size: give --video")
            positions, confidence = loaded.positions, loaded.confidence
            video_frames = reader.info.frame_count if reader is not None else 0
            if config.max_frames is not None:
                positions, confidence = positions[:config.max_frames], confidence[:config.max_frames]
                video_frames = min(video_frames, config.max_frames)
            if len(positions) < video_frames:
                print(f"warning: {config.keypoints} holds {len(positions)} frame(s) of keypoints but {config.video} "
                      f"has {video_frames}: frames {len(positions)}-{video_frames - 1} are shown without a person "
                      f"(--max_frames {len(positions)} stops at the keypoints' end)", file=sys.stderr)
            raw = Track2D(positions, confidence, int(width), int(height))
            timer.frames["detect"] += len(positions)
    else:
        if reader is None:
            raise UserError("give --video (to run the 2D detector) or --keypoints <file>")
        detector = make_detector(config.detector, config.detector_config, config.detector_weights,
                                 str(config.device), config.detector_threads)
        try:
            tracker = PersonTracker(detector, reader.info.width, reader.info.height, config.person)
            detect_every_frame(tracker, reader, timer, config.progress, "detect 2D")
        finally:
            detector.close()
        raw = tracker.result()
        if tracker.people_seen > 1:
            print(f"note: {tracker.people_seen} people were seen; one is followed (--person {config.person}); "
                  "--people all follows everyone")
        if tracker.reacquired:
            print(f"the followed person was lost and a person picked again by --person {config.person} at "
                  f"frame(s) {tracker.reacquired}")
    track = fill_gaps(raw, config.max_gap)
    if track.gaps:
        print(f"interpolated {sum(b - a + 1 for a, b in track.gaps)} frame(s) without the person in "
              f"{len(track.gaps)} gap(s): " + ", ".join(f"{track.start + a}-{track.start + b}" for a, b in track.gaps))
    if track.start or len(track) < len(raw):
        print(f"person present in frames {track.start}-{track.start + len(track) - 1} of {len(raw)}")
    return smooth_track(track, config.smooth)


def detect_every_frame(tracker: PersonTracker | PeopleTracker, reader: VideoReader, timer: StageTimer,
                       progress: bool, desc: str) -> None:
    """Feed every decoded frame (H, W, 3) of ``reader`` to ``tracker.update``, timed as the decode and detect
    stages, with a progress bar."""
    for frame in tqdm(timer.timed("decode", reader), total=reader.info.frame_count or None, desc=desc,
                      disable=not progress):
        with timer.measure("detect", 1):
            tracker.update(frame)


MIN_PERSON_FRAMES = 5  # an identity seen in fewer frames is dropped (a passing false detection)


def extract_people(config: TrackOptions, reader: VideoReader | None, timer: StageTimer) -> list[tuple[int, Track2D]]:
    """``--people all``: every person's 2D keypoints (:class:`common.vision.people.PeopleTracker`), as
    (identity, track) pairs ordered by identity, each track cut to the frames from the person's first to last
    appearance (``start``) with the frames between interpolated (a gap longer than ``--max_gap`` is interpolated
    too, with a warning: the person keeps one track). Identities seen in fewer than :data:`MIN_PERSON_FRAMES`
    frames are dropped (noted)."""
    if config.keypoints or reader is None:
        raise UserError("--people all runs the detector on a --video (a keypoint file holds one person)")
    tracker = PeopleTracker(lambda threads: make_detector(config.detector, config.detector_config,
                                                          config.detector_weights, str(config.device),
                                                          config.detector_threads if threads is None else threads),
                            reader.info.width, reader.info.height, config.max_people,
                            search_every=config.search_every)
    try:
        detect_every_frame(tracker, reader, timer, config.progress, "detect 2D (people)")
    finally:
        tracker.close()
    people = []
    for identity, raw in tracker.result():
        seen = int((~np.isnan(raw.positions).any(axis=(1, 2))).sum())
        if seen < MIN_PERSON_FRAMES:
            print(f"person {identity}: seen in {seen} frame(s) only, dropped")
            continue
        track = fill_gaps(raw, len(raw))
        long = [(a, b) for a, b in track.gaps if b - a + 1 > config.max_gap]
        if long:
            print(f"warning: person {identity} is missing for more than --max_gap {config.max_gap} frames at "
                  + ", ".join(f"{track.start + a}-{track.start + b}" for a, b in long) + "; interpolated")
        print(f"person {identity}: frames {track.start}-{track.start + len(track) - 1}, seen in {seen}, "
              f"{sum(b - a + 1 for a, b in track.gaps)} interpolated")
        people.append((identity, smooth_track(track, config.smooth)))
    if tracker.given_back:
        print("identities given back (frame: person): " + ", ".join(f"{f}: {i}" for f, i in tracker.given_back))
    if not people:
        raise UserError(f"no person seen in {MIN_PERSON_FRAMES} frames or more")
    return people
