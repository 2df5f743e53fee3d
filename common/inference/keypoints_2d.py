"""Stage 1 of video inference: the followed person's 2D keypoints, from the detector run over the video's
frames (one pass, streamed) or from a precomputed keypoint file."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

from common.vision.detectors import load_keypoints, make_detector
from common.utils.errors import UserError
from common.utils.timing import StageTimer
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
            frames = timer.timed("decode", reader)
            for frame in tqdm(frames, total=reader.info.frame_count or None, desc="detect 2D",
                              disable=not config.progress):
                with timer.measure("detect", 1):
                    tracker.update(frame)
        finally:
            detector.close()
        raw = tracker.result()
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
