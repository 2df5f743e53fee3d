"""``--lifter poses`` (the paper's ``--poses``): any external lifter's poses read from a file.

The file: npz with key ``poses`` (or a single array) or a ``.npy``, shape (T, 17, 3) metres, Human3.6M joint order,
one pose per video frame from frame 0; ``--poses_frame`` states its frame (``camera``: x right, y down, z forward,
as VideoPose3D outputs; ``world``: z up). Joint convention: ``h36m`` (external lifters are trained on Human3.6M).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.utils.errors import UserError
from common.utils.fileio import check_array, load_npy, load_npz
from common.core.skeleton import NUM_JOINTS, PARENTS
from common.vision.tracking import Track2D
from common.utils.validation import check_pose_units


def load_pose_file(path: str) -> np.ndarray:
    """(T, 17, 3) float32 poses from an npz (key ``poses`` or its single array) or a .npy file."""
    if Path(path).suffix.lower() == ".npy":
        array = load_npy(path)
    else:
        data = {k: v for k, v in load_npz(path).items() if isinstance(v, np.ndarray) and v.dtype != object}
        if "poses" in data:
            array = data["poses"]
        elif len(data) == 1:
            array = next(iter(data.values()))
        else:
            raise UserError(f"{path}: expected key 'poses' or a single array, found {sorted(data)}")
    return check_array(f"{path}", array, (None, NUM_JOINTS, 3))


@dataclass
class PosesFileOptions:
    """The pose file (``--poses``) and its frame (``--poses_frame``)."""

    poses: str | None = None
    poses_frame: str = "camera"


class PosesFileLifter:
    name = "poses"
    convention = "h36m"
    receptive_field = 1
    causal = False  # the file's lifter is unknown
    length_model = None
    Options = PosesFileOptions

    def __init__(self, options: PosesFileOptions):
        if not options.poses:
            raise UserError("--lifter poses needs --poses <npz/npy of (T, 17, 3) poses>")
        if options.poses_frame not in ("camera", "world"):
            raise UserError(f"--poses_frame must be camera or world, got {options.poses_frame!r}")
        self.path, self.frame = options.poses, options.poses_frame
        self.poses = load_pose_file(options.poses)

    def lift(self, track: Track2D) -> np.ndarray:
        """The file's poses for the video frames the track covers, as given (not made root-relative: poses in
        a world frame may carry a trajectory)."""
        end = track.start + len(track)
        if len(self.poses) < end:
            raise UserError(f"{self.path} holds {len(self.poses)} poses but the 2D keypoints cover video frames "
                            f"{track.start}-{end - 1}: give one pose per video frame")
        check_pose_units(self.path, self.poses[track.start:end], PARENTS)
        return self.poses[track.start:end]
