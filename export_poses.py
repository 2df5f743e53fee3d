"""Convert any 17-joint 3D poses (T, 17, 3) + bone lengths to BVH / CSV / JSON lines.

  python export_poses.py --poses output/demo_poses_3d.npz --format bvh,csv
  python export_poses.py --poses my_lifter.npy --frame camera --fps 50 --lengths lengths.json --format bvh

``--poses``: an npz written by inference.py (key ``poses_after``; its ``bone_lengths`` and fps are used) or
any npz (key ``poses`` or a single array) / .npy of shape (T, 17, 3) metres, Human3.6M joint order.
The poses are adjusted to ``--lengths`` (a lengths file in the format of ``inference.py --lengths_file``, see
common/inference/length_sources.py; bones it does not name take the poses' own lengths); without it, to the npz's stored
lengths, else to the poses' own per-bone median lengths (left/right averaged). ``--frame camera`` poses (x right, y down,
z forward, as lifters output) are turned upright like inference.py's exports; ``world`` poses are z up.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common.core.bones import adjust_bone_lengths
from common.core.camera import WORLD_LIKE_FRAMES, camera_to_world_like, place_on_ground
from common.utils.errors import UserError, cli
from common.utils.fileio import check_array, existing_file, load_npy, load_npz
from common.inference.length_sources import file_lengths
from common.core.bones import median_lengths
from common.output.exports import PoseExport, parse_export_formats, requestable_formats, table_paths, write_exports
from common.core.skeleton import NUM_BONES, NUM_JOINTS, PARENTS
from common.utils.validation import (ArgumentParser, check_inputs_survive, check_length_units, check_output_file,
                                     check_pose_units, number)


def load_pose_array(path: str, key: str | None) -> tuple[np.ndarray, dict]:
    """(T, 17, 3) poses and the other arrays/metadata of the file (empty for .npy)."""
    existing_file(path)
    if Path(path).suffix.lower() == ".npy":
        return check_array(path, load_npy(path), (None, NUM_JOINTS, 3)), {}
    data = load_npz(path)
    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray) and v.dtype != object and v.ndim == 3}
    name = key or next((k for k in ("poses_after", "poses") if k in arrays), None)
    if name is None:
        if len(arrays) != 1:
            raise UserError(f"{path}: give --key, one of {sorted(arrays)}")
        name = next(iter(arrays))
    if name not in data:
        raise UserError(f"{path}: no key {name!r} (keys: {sorted(data)})")
    return check_array(f"{path}[{name}]", data[name], (None, NUM_JOINTS, 3)), data


def _stored_fps(path: str, meta: dict) -> float:
    """The frame rate in the npz's metadata (50 when it states none); anything but a positive number is a
    one-line error asking for --fps."""
    value = meta.get("fps")
    if value is None:
        return 50.0
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise UserError(f"{path}: stored fps {value!r} is not a positive frame rate; give --fps")
    return float(value)


def _frame_indices(path: str, stored, count: int) -> np.ndarray:
    """(T,) video frame index of each pose: the npz's ``frame_indices`` (integers, one per pose), else 0..T-1."""
    if stored is None:
        return np.arange(count)
    frames = np.asarray(stored)
    if frames.shape != (count,) or not np.issubdtype(frames.dtype, np.integer):
        raise UserError(f"{path}: 'frame_indices' must hold {count} integers (one per pose), got "
                        f"{frames.dtype} of shape {frames.shape}")
    return frames


def main(argv=None) -> None:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--poses", required=True, help="npz/npy of (T, 17, 3) poses, metres")
    p.add_argument("--key", default=None, help="array name inside the npz (default poses_after, poses, or the only one)")
    p.add_argument("--lengths", default=None, help="bone lengths file (json/npz, metres; as --lengths_file)")
    p.add_argument("--frame", choices=["camera", "world"], default=None,
                   help="frame of the poses (default: world for inference.py files, else camera)")
    p.add_argument("--fps", type=number(float, gt=0), default=None, help="frame rate (default: the file's, else 50)")
    p.add_argument("--format", default=",".join(requestable_formats()),
                   help=f"comma-separated subset of {', '.join(requestable_formats())} (common/output/exports.py)")
    p.add_argument("--output", default=None, help="output path without extension (default: next to --poses)")
    args = p.parse_args(argv)
    formats = parse_export_formats(args.format, "--format")
    if not formats:
        raise UserError(f"--format: give at least one of {', '.join(requestable_formats())}")
    stem = Path(args.output) if args.output else Path(args.poses).with_suffix("")
    paths = table_paths(stem, formats)
    outputs = [("--output", path) for path in paths.values()]
    for flag, path in outputs:
        check_output_file(path, flag)
    check_inputs_survive([("--poses", args.poses), ("--lengths", args.lengths)], outputs)
    poses, data = load_pose_array(args.poses, args.key)
    check_pose_units(args.poses, poses, PARENTS)
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    fps = args.fps or _stored_fps(args.poses, meta)
    frame = args.frame or ("world" if "poses_after" in data else "camera")
    stored = data.get("bone_lengths")
    if args.lengths:
        lengths = file_lengths(args.lengths, poses).astype(np.float64)
    elif isinstance(stored, np.ndarray) and stored.shape == (NUM_BONES,):
        lengths = stored.astype(np.float64)
    else:
        lengths = median_lengths(poses).astype(np.float64)
        print("bone lengths: the poses' own per-bone medians, left/right averaged")
    check_length_units("bone lengths", lengths)
    adjusted = adjust_bone_lengths(poses.astype(np.float64), lengths)
    if frame == "camera":
        adjusted = place_on_ground(camera_to_world_like(adjusted, adjusted))
        description = WORLD_LIKE_FRAMES["camera"]
    else:
        description = str(meta.get("frame") or WORLD_LIKE_FRAMES["world"])
    frames = _frame_indices(args.poses, data.get("frame_indices"), len(poses))
    export = PoseExport(stem.name, None, None, None, adjusted, lengths, fps, frame, "", "", "", "", frames=frames,
                        frame_description=description)
    for name, path in write_exports(export, paths, formats).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
