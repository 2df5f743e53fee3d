"""Video -> 2D keypoints -> 3D poses -> bone-length adjustment -> pictures and exported numbers.

Stages (each timed by :class:`StageTimer`): ``decode`` (video frames), ``detect`` (2D keypoints of one
followed person, or a precomputed keypoint file), ``lift`` (the fine-tuned mix model's direction branch, a
plain VideoPose3D lifter, or poses read from ``--poses``), ``adjust`` (bone lengths predicted by the length
model from the whole 2D sequence; each bone keeps its direction and gets the predicted length), ``render``
(output video + PNGs).
The video is decoded twice (detect, then render), one frame at a time, and the lifter runs in windows, so
memory does not grow with the video's length beyond the per-frame numbers themselves (2D keypoints, poses:
a few hundred bytes per frame) and the Bi-GRU's pass over the whole 2D sequence (which it needs by design).

Output frame of the exported 3D poses ("world-like", metres):

* built from the camera frame (x right, y down, z forward) as X = x, Y = z, Z = -y, then rotated about X so
  that the sequence's mean torso direction (pelvis -> thorax) points straight up: this corrects the
  unknown camera pitch assuming the person is on average upright. X stays the camera's right axis; Y points
  away from the camera, horizontally. ``--poses_frame world`` poses are taken as already z-up (as in
  Human3.6M's world frame) and are not rotated.
* ground at Z = 0: root-relative poses (pelvis always at the origin, the usual lifter output) are shifted per
  frame so their lowest joint touches the ground, with the pelvis above X = Y = 0; poses that carry a
  trajectory keep it and are shifted once so the lowest joint of the whole sequence is at Z = 0.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from common.bones import adjust_bone_lengths, bone_lengths
from common.camera import normalize_screen_coordinates
from common.checkpoint import load_checkpoint, load_weights, model_state, resolve_checkpoint
from common.detectors import load_keypoints, make_detector
from common.errors import UserError
from common.fileio import atomic_write, check_array, load_npz, save_npz
from common.generators import merge_flipped
from common.length_model import (BoneLengthModel, length_model_for_state, length_model_from_checkpoint,
                                 predict_lengths)
from common.mix_model import MixModel
from common.model import TemporalModel, parse_architecture
from common.pose_tables import write_pose_formats
from common.skeleton import (BONE_NAMES, JOINT_NAMES, JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS, PARENTS,
                             SYMMETRIC_BONES, flip_poses)
from common.tracking import PersonTracker, Track2D, fill_gaps, smooth_track
from common.video import VideoReader, VideoWriter
from common.visualization import FrameRenderer, plot_bone_lengths_over_time

STAGES = ("decode", "detect", "lift", "adjust", "render")
LIFT_CHUNK = 512  # output frames per lifter window
FRAME_DESCRIPTION = {
    "camera": "world-like, metres: X = camera right, Y = forward away from the camera (horizontal after a "
              "pitch correction that makes the mean torso direction vertical), Z = up; ground at Z = 0 "
              "(root-relative input: each frame's lowest joint on the ground, pelvis above X = Y = 0)",
    "world": "the input's world frame (taken as Z up), metres; ground at Z = 0 (root-relative input: each "
             "frame's lowest joint on the ground, pelvis above X = Y = 0; else one shift for the sequence)",
}


class StageTimer:
    """Wall-clock seconds and item counts per stage; ``fps`` = items / seconds."""

    def __init__(self) -> None:
        self.seconds = {stage: 0.0 for stage in STAGES}
        self.frames = {stage: 0 for stage in STAGES}

    @contextmanager
    def measure(self, stage: str, frames: int = 0):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start
            self.frames[stage] += frames

    def timed(self, stage: str, items: Iterator) -> Iterator:
        """Wrap an iterator so the time spent producing each item is counted for ``stage``."""
        iterator = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.seconds[stage] += time.perf_counter() - start
                return
            self.seconds[stage] += time.perf_counter() - start
            self.frames[stage] += 1
            yield item

    def fps(self) -> dict[str, float]:
        return {s: self.frames[s] / self.seconds[s] for s in STAGES if self.seconds[s] > 0 and self.frames[s]}


@dataclass
class InferenceConfig:
    """Settings of one inference run (see ``inference.py --help``)."""

    video: str | None = "data/demo.mp4"
    keypoints: str | None = None
    keypoint_format: str = "h36m"
    detector: str = "blazepose"
    detector_config: str | None = None
    detector_weights: str | None = None
    person: str = "largest"
    max_gap: int = 30
    smooth: float = 0.0
    max_frames: int | None = None
    fps: float = 50.0
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
    gif: bool = False
    panel_height: int = 480
    device: torch.device = torch.device("cpu")
    progress: bool = True
    export_formats: tuple[str, ...] = ()


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
    stats: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- 2D
def extract_track(config: InferenceConfig, reader: VideoReader | None, timer: StageTimer) -> Track2D:
    """The followed person's 2D keypoints (pixels), gaps filled, optionally smoothed."""
    if config.keypoints:
        with timer.measure("detect"):
            loaded = load_keypoints(config.keypoints, config.keypoint_format)
            width = reader.info.width if reader is not None else loaded.width
            height = reader.info.height if reader is not None else loaded.height
            if width is None or height is None:
                raise UserError(f"{config.keypoints} states no video size: give --video")
            positions, confidence = loaded.positions, loaded.confidence
            if config.max_frames is not None:
                positions, confidence = positions[:config.max_frames], confidence[:config.max_frames]
            raw = Track2D(positions, confidence, int(width), int(height))
            timer.frames["detect"] += len(positions)
    else:
        if reader is None:
            raise UserError("give --video (to run the 2D detector) or --keypoints <file>")
        detector = make_detector(config.detector, config.detector_config, config.detector_weights,
                                 str(config.device))
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


# ----------------------------------------------------------------------------------------------- models
def build_lifter(state: dict[str, torch.Tensor], config: InferenceConfig, source: str,
                 stored: dict | None = None) -> TemporalModel:
    """A VideoPose3D TemporalModel shaped like ``state``. Filter widths and channels: ``-arc``/``-ch`` if
    given, else the trainer's ``mix_config`` (``stored``), else read from the weights' shapes; ``causal`` and
    ``dense`` come from ``stored`` (published checkpoints: symmetric, dilated)."""
    stored = stored or {}
    try:
        channels, _, first = state["expand_conv.weight"].shape
    except KeyError:
        raise UserError(f"{source} has no VideoPose3D direction model (direction_model.expand_conv)") from None
    widths = [int(first)] + [int(state[f"layers_conv.{2 * i}.weight"].shape[2])
                             for i in range(len([k for k in state if k.startswith("layers_conv.")]) // 2)]
    widths = parse_architecture(config.architecture or stored.get("architecture") or widths)
    channels = config.channels or int(stored.get("channels") or channels)
    return TemporalModel(NUM_JOINTS, 2, NUM_JOINTS, widths, causal=bool(stored.get("causal", False)),
                         dropout=0.0, channels=channels, dense=bool(stored.get("dense", False)))


def _sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_mix_model(config: InferenceConfig) -> MixModel:
    """The fine-tuned mix model (``length_model.*`` + ``direction_model.*``) from ``--finetuned_ckpt``."""
    path = resolve_checkpoint(config.finetuned_ckpt)
    checkpoint = load_checkpoint(path, kind="mix")
    state = model_state(checkpoint, source=str(path))
    length_state = _sub_state(state, "length_model.")
    if not length_state:
        raise UserError(f"{path} is not a mix model checkpoint (no length_model.* weights)")
    stored = checkpoint.get("mix_config") if isinstance(checkpoint.get("mix_config"), dict) else None
    mix = MixModel(length_model_for_state(length_state, str(path), config.bidirectional or None, config.num_layers),
                   build_lifter(_sub_state(state, "direction_model."), config, str(path), stored))
    load_weights(mix, state, str(path))
    return mix.to(config.device).eval()


def load_plain_lifter(config: InferenceConfig) -> TemporalModel:
    """A plain VideoPose3D lifter (``train.py -t pose`` or the published ``pretrained_h36m_cpn.bin``)."""
    path = resolve_checkpoint(config.lifter_ckpt)
    checkpoint = load_checkpoint(path, kind="lifter")
    state = _sub_state(model_state(checkpoint, source=str(path)), "")
    lifter = build_lifter(state, config, str(path), checkpoint)
    load_weights(lifter, state, str(path))
    return lifter.to(config.device).eval()


def load_length_model(config: InferenceConfig) -> BoneLengthModel:
    path = resolve_checkpoint(config.length_ckpt)
    model = length_model_from_checkpoint(load_checkpoint(path), config.bidirectional or None, config.num_layers,
                                         str(path))
    return model.to(config.device).eval()


# ----------------------------------------------------------------------------------------------- 3D
def load_poses(path: str, track: Track2D) -> np.ndarray:
    """A lifter's poses (T, 17, 3) metres from an npz (key ``poses`` or its single array) or .npy, one pose per
    video frame from frame 0; returns the frames the 2D track covers."""
    if Path(path).suffix.lower() == ".npy":
        if not Path(path).is_file():
            raise UserError(f"file not found: {path}")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserError(f"{path}: not a readable .npy array ({exc})") from None
    else:
        data = {k: v for k, v in load_npz(path).items() if isinstance(v, np.ndarray) and v.dtype != object}
        if "poses" in data:
            array = data["poses"]
        elif len(data) == 1:
            array = next(iter(data.values()))
        else:
            raise UserError(f"{path}: expected key 'poses' or a single array, found {sorted(data)}")
    poses = check_array(f"{path}", array, (None, NUM_JOINTS, 3))
    end = track.start + len(track)
    if len(poses) < end:
        raise UserError(f"{path} holds {len(poses)} poses but the 2D keypoints cover video frames "
                        f"{track.start}-{end - 1}: give one pose per video frame")
    return poses[track.start:end]


@torch.no_grad()
def lift(lifter: TemporalModel, keypoints_2d: np.ndarray, device: torch.device,
         chunk_frames: int = LIFT_CHUNK) -> np.ndarray:
    """A VideoPose3D lifter (e.g. the mix model's direction branch) on a whole normalised 2D sequence
    (T, 17, 2) -> (T, 17, 3) metres, camera frame, root-relative. The sequence is edge-padded for the
    receptive field and run in windows of ``chunk_frames`` output frames (identical to one pass, memory
    independent of T); test-time flip averaged."""
    lifter.eval()
    pad = (lifter.receptive_field() - 1) // 2
    shift = lifter.total_causal_shift()
    padded = np.pad(keypoints_2d.astype(np.float32), ((pad + shift, pad - shift), (0, 0), (0, 0)), mode="edge")
    context = lifter.receptive_field() - 1
    pieces = []
    for start in range(0, len(keypoints_2d), chunk_frames):
        window = torch.from_numpy(padded[start:start + chunk_frames + context]).to(device)
        pieces.append(merge_flipped(lifter(torch.stack([window, flip_poses(window)]))).cpu().numpy())
    poses = np.concatenate(pieces).astype(np.float32)
    return poses - poses[:, :1]  # the lifter is trained root-relative: its pelvis output is not used


def camera_to_world_like(poses: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Camera-frame poses (..., 17, 3) -> world-like axes (module docstring); the pitch correction is the one
    that makes ``reference``'s (T, 17, 3) mean torso direction vertical."""
    swap = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)  # X = x, Y = z, Z = -y
    torso = ((reference[:, 8] - reference[:, 0]) @ swap.T).mean(axis=0)
    angle = np.arctan2(torso[1], torso[2])
    pitch = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    return (poses @ (pitch @ swap).T).astype(np.float32)


def place_on_ground(poses: np.ndarray) -> np.ndarray:
    """Ground the poses (T, 17, 3) z-up at z = 0 (per frame if root-relative, else one shift)."""
    out = poses.astype(np.float32).copy()
    if np.abs(out[:, 0]).max() < 1e-6:
        out[..., 2] -= out[..., 2].min(axis=1, keepdims=True)
    else:
        out[..., 2] -= out[..., 2].min()
    return out


# ----------------------------------------------------------------------------------------------- outputs
def _json_dump(path: Path, content: dict) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(content, indent=1).encode()))


def symmetry_error(lengths: np.ndarray) -> np.ndarray:
    """Mean |left - right| over the 6 symmetric bone pairs, per row of (..., 16) lengths."""
    left, right = zip(*SYMMETRIC_BONES)
    return np.abs(lengths[..., list(left)] - lengths[..., list(right)]).mean(axis=-1)


def write_exports(config: InferenceConfig, stem: str, track: Track2D, before: np.ndarray, after: np.ndarray,
                  lengths: np.ndarray, fps: float, frame: str, mode: str) -> dict[str, Path]:
    """npz + json of the 3D poses, json of the predicted lengths, PNG of per-frame bone lengths."""
    out = Path(config.output)
    frames = np.arange(track.start, track.start + len(track))
    interpolated = [int(track.start + t) for a, b in track.gaps for t in range(a, b + 1)]
    meta = {"joint_names": JOINT_NAMES, "parents": PARENTS.tolist(), "bone_names": BONE_NAMES,
            "units": "metres", "frame": FRAME_DESCRIPTION[frame], "fps": fps, "mode": mode,
            "video": config.video, "keypoints_2d_units": "pixels of the video",
            "poses_before": "lifter output, its own bone lengths", "poses_after": "bone lengths adjusted"}
    files = {"poses_npz": out / f"{stem}_poses_3d.npz", "poses_json": out / f"{stem}_poses_3d.json",
             "lengths_json": out / f"{stem}_bone_lengths.json", "lengths_png": out / f"{stem}_bone_lengths.png",
             "keypoints_2d": out / f"{stem}_keypoints_2d.npz"}
    # 2D keypoints in VideoPose3D's custom-dataset layout (a valid --keypoints input); frames before the
    # person appears are NaN.
    padded = np.concatenate([np.full((track.start, NUM_JOINTS, 2), np.nan, np.float32), track.positions])
    video_name = Path(config.video).name if config.video else stem
    save_npz(files["keypoints_2d"], positions_2d={video_name: {"custom": [padded]}},
             metadata={"layout_name": "h36m", "num_joints": NUM_JOINTS,
                       "keypoints_symmetry": [JOINTS_LEFT, JOINTS_RIGHT],
                       "video_metadata": {video_name: {"w": track.width, "h": track.height}}})
    save_npz(files["poses_npz"], poses_before=before, poses_after=after, keypoints_2d=track.positions,
             confidence_2d=track.confidence, frame_indices=frames, bone_lengths=lengths,
             interpolated_frames=np.asarray(interpolated, dtype=np.int64), metadata=meta)
    _json_dump(files["poses_json"], {**meta, "frame_indices": frames.tolist(),
                                     "interpolated_frames": interpolated,
                                     "poses_before": np.round(before, 5).tolist(),
                                     "poses_after": np.round(after, 5).tolist(),
                                     "keypoints_2d": np.round(track.positions, 2).tolist()})
    lengths_doc = {"bone_names": BONE_NAMES, "units": "metres",
                   "predicted": (dict(zip(BONE_NAMES, np.round(lengths, 5).tolist())) if lengths.ndim == 1
                                 else {"per_frame": np.round(lengths, 5).tolist(), "frame_indices": frames.tolist()}),
                   "before_mean": dict(zip(BONE_NAMES, np.round(bone_lengths(before).mean(0), 5).tolist())),
                   "before_std": dict(zip(BONE_NAMES, np.round(bone_lengths(before).std(0), 5).tolist()))}
    _json_dump(files["lengths_json"], lengths_doc)
    plot_bone_lengths_over_time(bone_lengths(before), bone_lengths(after), fps, files["lengths_png"])
    if config.export_formats:  # the adjusted poses, in the same frame as the npz/json
        files.update(write_pose_formats(config.export_formats, out / f"{stem}_poses_3d", after, lengths, frames,
                                        fps, FRAME_DESCRIPTION[frame]))
    return files


def render(config: InferenceConfig, stem: str, reader: VideoReader | None, track: Track2D,
           before: np.ndarray, after: np.ndarray, fps: float, timer: StageTimer) -> tuple[dict[str, Path], int]:
    """Stream the output video (MP4 or GIF) and save its first, middle and last frames as PNGs."""
    import cv2

    out = Path(config.output)
    width = reader.info.width if reader is not None else track.width
    height = reader.info.height if reader is not None else track.height
    renderer = FrameRenderer(width, height, config.panel_height)
    video_path = out / f"{stem}_blapose.{'gif' if config.gif else 'mp4'}"
    total = reader.info.frame_count if reader is not None else len(track) + track.start
    picks = {0: "first", max(total - 1, 0) // 2: "middle"}
    files = {"video": video_path}
    before_len, after_len = bone_lengths(before), bone_lengths(after)
    interpolated = {track.start + t for a, b in track.gaps for t in range(a, b + 1)}
    frames = timer.timed("decode", reader) if reader is not None else iter([None] * total)
    composed, index = None, -1
    with VideoWriter(video_path, renderer.width, renderer.height, fps) as writer:
        for index, frame in enumerate(tqdm(frames, total=total or None, desc="render", disable=not config.progress)):
            with timer.measure("render", 1):
                t = index - track.start
                inside = 0 <= t < len(track)
                status = ("2D interpolated" if index in interpolated else "2D detected") if inside else "no person"
                video_lines = [f"frame {index}  {status}"]
                lines_b, lines_a = [], []
                if inside:
                    for name, lens, lines in (("before", before_len[t], lines_b), ("after", after_len[t], lines_a)):
                        lines.append(f"thigh L/R {lens[4] * 1000:.0f}/{lens[1] * 1000:.0f} mm")
                        lines.append(f"upper arm L/R {lens[11] * 1000:.0f}/{lens[14] * 1000:.0f} mm")
                composed = renderer.render(frame, track.positions[t] if inside else None,
                                           track.confidence[t] if inside else None,
                                           before[t] if inside else None, after[t] if inside else None,
                                           video_lines, lines_b, lines_a)
                writer.write(composed)
                if index in picks:
                    files[f"png_{picks[index]}"] = out / f"{stem}_frame_{picks[index]}.png"
                    cv2.imwrite(str(files[f"png_{picks[index]}"]), composed[..., ::-1])
    if composed is None:
        raise UserError("no frame to render")
    files["png_last"] = out / f"{stem}_frame_last.png"
    cv2.imwrite(str(files["png_last"]), composed[..., ::-1])
    return files, index + 1


# ----------------------------------------------------------------------------------------------- run
def run(config: InferenceConfig) -> InferenceResult:
    """All stages; see the module docstring. Raises UserError on bad input."""
    if sum(bool(x) for x in (config.poses, config.finetuned_ckpt, config.lifter_ckpt)) != 1:
        raise UserError("give exactly one of --finetuned_ckpt, --poses (another lifter's poses) or --lifter_ckpt")
    if config.poses_frame not in FRAME_DESCRIPTION:
        raise UserError(f"--poses_frame must be camera or world, got {config.poses_frame!r}")
    timer = StageTimer()
    start = time.perf_counter()
    reader = VideoReader(config.video, config.max_frames) if config.video else None
    fps = reader.info.fps if reader is not None else config.fps
    mode = "poses" if config.poses else "finetuned" if config.finetuned_ckpt else "lifter"
    # Load the models before the slow detection so a bad checkpoint fails fast.
    if mode == "finetuned":
        mix = load_mix_model(config)
        lifter, length_model = mix.direction_model, mix.length_model
    else:
        lifter = load_plain_lifter(config) if mode == "lifter" else None
        length_model = load_length_model(config)
    track = extract_track(config, reader, timer)
    keypoints = normalize_screen_coordinates(track.positions, track.width, track.height)

    with timer.measure("lift", len(track)):
        if lifter is not None:
            before = lift(lifter, keypoints, config.device)
            lifter_poses = before
            frame = "camera"
        else:
            before = load_poses(config.poses, track)
            frame = config.poses_frame
    with timer.measure("adjust", len(track)):
        lengths = predict_lengths(length_model, keypoints)
        if (lengths <= 0).any():
            bad = sorted({BONE_NAMES[b] for b in np.nonzero(lengths <= 0)[-1]})
            print(f"warning: the length model predicts non-positive lengths for {bad}: is the checkpoint trained?")
        after = adjust_bone_lengths(before - before[:, :1], lengths) + before[:, :1]
        if frame == "camera":
            before, after = camera_to_world_like(before, after), camera_to_world_like(after, after)
        before, after = place_on_ground(before), place_on_ground(after)

    stem = Path(config.video).stem if config.video else Path(config.keypoints).stem
    files = {}
    if lifter is not None:  # usable as --poses input: one pose per video frame from frame 0 (edge-padded)
        files["lifter_poses"] = Path(config.output) / f"{stem}_lifter_poses.npz"
        save_npz(files["lifter_poses"], poses=np.concatenate([lifter_poses[:1].repeat(track.start, 0), lifter_poses]),
                 metadata={"frame": "camera (x right, y down, z forward), root-relative", "units": "metres",
                           "joint_names": JOINT_NAMES, "mode": mode})
    files.update(write_exports(config, stem, track, before, after, lengths, fps, frame, mode))
    video_files, rendered = render(config, stem, reader, track, before, after, fps, timer)
    files.update(video_files)
    total = time.perf_counter() - start
    lb, la = bone_lengths(before), bone_lengths(after)
    stats = {"end_to_end_fps": rendered / total, "seconds": total,
             "length_std_before_mm": float(lb.std(0).mean() * 1000),
             "length_std_after_mm": float(la.std(0).mean() * 1000),
             "symmetry_before_mm": float(symmetry_error(lb).mean() * 1000),
             "symmetry_after_mm": float(symmetry_error(la).mean() * 1000)}
    return InferenceResult(files, track, before, after, lengths, timer, rendered, stats)
