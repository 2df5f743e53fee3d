"""The real recordings with a 3D reference that the in-the-wild figures are measured on, one followed person each.

Every sequence of :data:`SEQUENCES` is a Pose2Sim demo (BSD-3-Clause, ``pose2sim==0.10.49`` wheel, extracted by
:func:`common.inference.multiview.fetch_pose2sim_demo` with its LICENSE next to the videos): 4 calibrated
1080x1920 60 fps views. The person is followed in each view with ``inference.py``'s tracker (the ``--person``
policy given per view) and the views are triangulated (:func:`common.inference.multiview.triangulate_tracks`);
frames whose median reprojection error exceeds :data:`MAX_REPROJECTION_PX` are dropped from the reference (a view's
tracker that moved to another person fails that test).

The 2D tracks (with BlazePose's world landmarks of the same pass) are cached in
``$BLAPOSE_CACHE/recording_tracks/`` so that the scripts measuring on these recordings run the detector once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.utils.downloads import cache_dir
from common.utils.errors import UserError
from common.utils.fileio import load_npz, save_npz
from common.inference.multiview import CalibratedCamera, fetch_pose2sim_demo, read_qca, triangulate_tracks
from common.vision.tracking import Track2D

MAX_REPROJECTION_PX = 30.0
MIN_KEPT = 0.8  # share of frames that must triangulate consistently
TRACK_CACHE_VERSION = 1  # bump when the detector or tracker changes what a track holds


@dataclass(frozen=True)
class Sequence:
    """One person in one Pose2Sim demo: the demo, who, the ``--person`` policy of cam01..cam04, frames used."""

    demo: str
    person: str
    policies: tuple[str, str, str, str]
    frames: int

    @property
    def name(self) -> str:
        return f"{self.demo} {self.person}"


# In the two-person demo cam01's tracker leaves the man for the woman after about 50 frames, so his sequence is
# the first 50 frames.
SEQUENCES = [Sequence("Demo_SinglePerson", "man", ("largest", "largest", "largest", "largest"), 100),
             Sequence("Demo_MultiPerson", "woman", ("largest", "0", "2", "1"), 100),
             Sequence("Demo_MultiPerson", "man", ("central", "largest", "largest", "largest"), 50)]


@dataclass
class Recording:
    """A followed sequence: its cameras, one 2D track per camera (same order) and the triangulated reference
    ``world`` (frames, 17, 3) metres, world frame, NaN on frames that do not triangulate consistently."""

    sequence: Sequence
    cameras: list[CalibratedCamera]
    tracks: list[Track2D]
    world: np.ndarray


def demo_folder(demo: str) -> Path:
    """The extracted Pose2Sim demo (fetched from the wheel on first use)."""
    return fetch_pose2sim_demo(cache_dir() / ("pose2sim_demo" if demo == "Demo_SinglePerson" else
                                              "pose2sim_demo_multiperson"), demo)


def cached_track(video: Path, policy: str, frames: int) -> Track2D:
    """``inference.py``'s 2D track of ``video``'s first ``frames`` frames with ``--person policy`` (cached)."""
    from common.inference.keypoints_2d import TrackOptions, extract_track
    from common.utils.timing import StageTimer
    from common.vision.video import VideoReader

    path = (cache_dir() / "recording_tracks" /
            f"v{TRACK_CACHE_VERSION}_{video.parent.parent.name}_{video.stem}_{policy}_{frames}.npz")
    if path.is_file():
        d = load_npz(path)
        return Track2D(d["positions"], d["confidence"], int(d["width"]), int(d["height"]),
                       [tuple(g) for g in np.asarray(d["gaps"]).reshape(-1, 2).tolist()], int(d["start"]),
                       d["world"] if d["world"].size else None)
    config = TrackOptions(video=str(video), person=policy, max_frames=frames, progress=False)
    track = extract_track(config, VideoReader(str(video), frames), StageTimer())
    save_npz(path, positions=track.positions, confidence=track.confidence, width=np.int64(track.width),
             height=np.int64(track.height), gaps=np.asarray(track.gaps, np.int64).reshape(-1, 2),
             start=np.int64(track.start), world=track.world if track.world is not None else np.zeros(0))
    return track


def load_recording(sequence: Sequence) -> Recording:
    """The tracks of one person in the 4 views and their triangulation (see the module docstring)."""
    folder = demo_folder(sequence.demo)
    cameras = read_qca(folder / "calibration" / "Calib.qca.txt")
    tracks = [cached_track(folder / "videos" / f"{cam.name}.mp4", policy, sequence.frames)
              for cam, policy in zip(cameras, sequence.policies)]
    world, error, _ = triangulate_tracks(cameras, tracks, sequence.frames)
    with np.errstate(all="ignore"):
        bad = ~(np.nanmedian(error, axis=1) <= MAX_REPROJECTION_PX)
    world[bad] = np.nan
    if (~bad).mean() < MIN_KEPT:
        raise UserError(f"{sequence.name} {sequence.policies}: only {(~bad).sum()}/{sequence.frames} frames "
                        f"triangulate within {MAX_REPROJECTION_PX:.0f} px (a view follows another person?)")
    return Recording(sequence, cameras, tracks, world)

