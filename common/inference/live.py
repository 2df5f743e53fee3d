"""Live (streaming, causal) inference: ``inference.py --live SOURCE``.

Per frame, using only that frame and the past:

1. **capture** (:class:`FrameSource`): a camera index, a video file played at its own frame rate, or a stream
   URL OpenCV opens. A capture thread keeps only the *latest* frame: frames that arrive while the pipeline is
   busy replace the waiting one and are counted as dropped; nothing queues up. ``unpaced`` reads every frame
   of a file source as fast as the pipeline goes (a decoding thread keeps at most 2 frames ready; no drops),
   so a run is deterministic and its output for the first N frames does not depend on what follows.
2. **detect**: BlazePose in its streaming mode on the whole frame (:meth:`common.vision.detectors.BlazePoseSource.track`:
   the person detector runs only until a person is found, then the landmark model follows them from the
   previous frame's landmarks), 17 Human3.6M joints plus its 3D world landmarks.
3. **lift**: ``mediapipe_raw`` (BlazePose's world landmarks, one frame alone) or ``videopose3d`` (a *causal*
   VideoPose3D checkpoint run on a ring buffer of its receptive field, the first frame repeated before the
   stream starts). Optional one-euro smoothing of the lifted joints (off by default; before the adjustment,
   so it never touches the adjusted bone lengths).
4. **lengths** (:class:`LiveLengths`): a target per frame, then a bounded step towards it. Targets:
   ``self`` = running per-bone median of the lifter's own lengths over every frame so far (1 mm histogram
   bins, constant memory), ``model`` = the causal GRU carrying its state frame to frame, ``file`` = the
   file's lengths. The lengths start at a prior (``--length_prior`` file, else the population mean of the
   lifter's joint convention; none: the first target) and move towards the
   target by at most ``max_step_mm`` per bone per frame (default 1 mm: 3 cm/s at 30 frames/s), so the
   skeleton is steady from the first frame and never jumps. Left/right pairs are averaged.
5. **adjust**: each bone keeps the lifted direction and gets the current length.

Output per frame: one JSON line (:mod:`common.output.pose_tables`; joints in camera-aligned axes: x right, y down,
z away from the camera, metres, pelvis at the origin) with ``detected`` and ``latency_ms`` (capture ->
pose out), and optionally the annotated video (OpenCV drawing: video + 2D, lifted and adjusted 3D).
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from common.core.bones import adjust_bone_lengths, average_symmetric, bone_lengths
from common.core.camera import normalize_screen_coordinates
from common.vision.detectors import BlazePoseSource
from common.datasets.generators import merge_flipped
from common.utils.errors import UserError
from common.output.pose_tables import JsonLinesWriter, jsonl_header, jsonl_record
from common.core.skeleton import NUM_BONES, NUM_JOINTS, flip_poses
from common.utils.timing import StageTimer
from common.vision.video import VideoReader

LIVE_STAGES = ("capture", "detect", "lift", "adjust", "output", "render")
LIVE_FRAME = ("camera-aligned axes (x right, y down, z away from the camera), metres, pelvis at the origin; "
              "bone lengths adjusted")
LIVE_LIFTERS = ("mediapipe_raw", "videopose3d")
LIVE_LENGTHS = ("self", "model", "file")
HISTOGRAM_BIN = 0.001  # metres
HISTOGRAM_MAX = 1.5  # metres: longer per-frame lengths are clipped into the last bin
PREFETCH = 2  # frames decoded ahead in unpaced mode


# ----------------------------------------------------------------------------------------------- capture
@dataclass
class CapturedFrame:
    """One frame: index in the source, stream time (s), capture time (perf_counter), (H, W, 3) RGB."""

    index: int
    time_s: float
    captured: float
    rgb: np.ndarray


class FrameSource:
    """Frames of a camera (``"0"``), a video file or a stream URL; see the module docstring (step 1)."""

    def __init__(self, source: str, paced: bool = True, max_frames: int | None = None):
        self.source = source
        self.is_file = Path(source).is_file()
        if not self.is_file and not source.isdigit() and "://" not in source:
            raise UserError(f"--live {source!r}: not a camera index, an existing video file or a stream URL")
        if not paced and not self.is_file:
            raise UserError("--unpaced reads a video file; a camera or stream delivers frames at its own pace")
        self.capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
        if not self.capture.isOpened():
            raise UserError(f"--live {source!r}: OpenCV cannot open it")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if np.isfinite(fps) and fps > 0 else 30.0
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.paced = paced
        self.max_frames = max_frames
        self.read_frames = 0
        self.dropped = 0
        self._latest: CapturedFrame | None = None
        self._done = False
        self._stop = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def _read(self, index: int, start: float) -> CapturedFrame | None:
        if self.max_frames is not None and index >= self.max_frames:
            return None
        ok, bgr = self.capture.read()
        if not ok:
            return None
        captured = time.perf_counter()
        stream_time = index / self.fps if self.is_file else captured - start
        self.read_frames += 1
        return CapturedFrame(index, stream_time, captured, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def _capture_loop(self) -> None:
        start = time.perf_counter()
        index = 0
        try:
            while not self._stop:
                if self.is_file:  # play the file at its own rate
                    delay = start + index / self.fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                frame = self._read(index, start)
                if frame is None:
                    break
                index += 1
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = frame
                    self._cond.notify()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self) -> Iterator[CapturedFrame]:
        if not self.paced:  # every frame, decoded ahead by VideoReader's thread
            for index, rgb in enumerate(VideoReader(self.source, self.max_frames, prefetch=PREFETCH)):
                self.read_frames += 1
                yield CapturedFrame(index, index / self.fps, time.perf_counter(), rgb)
            return
        self._thread = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        self._thread.start()
        while True:
            with self._cond:
                while self._latest is None and not self._done:
                    self._cond.wait()
                frame, self._latest = self._latest, None
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.capture.release()


# ----------------------------------------------------------------------------------------------- lift
class CausalVideoPose3D:
    """A causal VideoPose3D lifter stepped frame by frame on a ring buffer of its receptive field (normalised
    2D); before the stream has filled it, the first frame is repeated (as the offline edge padding does)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        if not getattr(model, "causal", False):
            raise UserError("--live with the videopose3d lifter needs a causal VideoPose3D checkpoint "
                            "(train.py -t pose --causal); a symmetric one looks at future frames")
        self.model = model.eval()
        self.device = device
        self.window = np.zeros((model.receptive_field(), NUM_JOINTS, 2), np.float32)
        self.started = False

    @torch.no_grad()
    def step(self, keypoints: np.ndarray) -> np.ndarray:
        """keypoints (17, 2) normalised screen coordinates -> (17, 3) metres, camera frame, root-relative;
        test-time flip averaged as offline."""
        if not self.started:
            self.window[:] = keypoints
            self.started = True
        else:
            self.window = np.concatenate([self.window[1:], keypoints[None]])
        x = torch.from_numpy(self.window).to(self.device)
        pose = merge_flipped(self.model(torch.stack([x, flip_poses(x)])))[-1].cpu().numpy()
        return pose - pose[:1]


# ----------------------------------------------------------------------------------------------- smooth
class OneEuroFilter:
    """The one-euro filter (Casiez et al., CHI 2012) on arrays of any shape, each entry filtered alone.

    min_cutoff (Hz): cutoff at rest (lower = smoother); beta: how fast the cutoff rises with speed (lower lag
    on fast moves); d_cutoff (Hz): cutoff of the speed estimate. Call with the value and its time (s)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise UserError("one-euro filter: cutoffs must be > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time = 0.0

    @staticmethod
    def _alpha(dt: float, cutoff) -> np.ndarray:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.value is None:
            self.value, self.speed, self.time = x.copy(), np.zeros_like(x), t
            return x.copy()
        if t <= self.time:  # no time has passed: nothing new to filter
            return self.value.copy()
        dt = t - self.time
        a_d = self._alpha(dt, self.d_cutoff)
        self.speed = a_d * (x - self.value) / dt + (1 - a_d) * self.speed
        a = self._alpha(dt, self.min_cutoff + self.beta * np.abs(self.speed))
        self.value = a * x + (1 - a) * self.value
        self.time = t
        return self.value.copy()


# ----------------------------------------------------------------------------------------------- lengths
class RunningMedian:
    """Per-bone median of every value seen so far, from 1 mm histograms (16 x 1500 counts: constant memory).

    update(lengths (16,) metres); median() -> (16,) metres (bin centres), None before any update."""

    def __init__(self, bins: int = int(round(HISTOGRAM_MAX / HISTOGRAM_BIN))):
        self.counts = np.zeros((NUM_BONES, bins), np.int64)
        self.total = 0

    def update(self, lengths: np.ndarray) -> None:
        index = np.clip((np.asarray(lengths) / HISTOGRAM_BIN).astype(np.int64), 0, self.counts.shape[1] - 1)
        self.counts[np.arange(NUM_BONES), index] += 1
        self.total += 1

    def median(self) -> np.ndarray | None:
        if self.total == 0:
            return None
        half = np.argmax(np.cumsum(self.counts, axis=1) * 2 >= self.total, axis=1)
        return (half + 0.5) * HISTOGRAM_BIN


class LiveLengths:
    """Bone lengths that start at a prior and follow a per-frame target by at most ``max_step`` metres per bone
    per frame (see the module docstring, step 4). ``prior`` None: the first target is taken as is."""

    def __init__(self, prior: np.ndarray | None, max_step: float):
        if max_step <= 0:
            raise UserError("--max_length_step_mm must be > 0")
        self.current = None if prior is None else average_symmetric(np.asarray(prior, np.float64))
        self.max_step = max_step

    def step(self, target: np.ndarray | None) -> np.ndarray | None:
        """Move towards ``target`` (16,) metres (None: stay); returns the current lengths (16,)."""
        if target is not None:
            target = average_symmetric(np.asarray(target, np.float64))
            if self.current is None:
                self.current = target
            else:
                self.current = self.current + np.clip(target - self.current, -self.max_step, self.max_step)
        return None if self.current is None else self.current.copy()


def training_mean_lengths(data_dir: str | Path = "data") -> tuple[np.ndarray, Path] | None:
    """The mean (16,) metres of the synthetic bone-length bank a length model trains on by default
    (:data:`common.train.train_length.DEFAULT_BANKS`, first one present in ``data_dir``), and its path; None if
    there is none."""
    from common.utils.fileio import load_npz
    from common.train.train_length import DEFAULT_BANKS

    for name in DEFAULT_BANKS:
        path = Path(data_dir) / name
        if path.is_file():
            bank = np.asarray(load_npz(path, required=["data"])["data"], np.float64)
            if bank.ndim == 2 and bank.shape[1] == NUM_BONES:
                return average_symmetric(bank.mean(axis=0)), path
    return None


class CausalGRULengths:
    """The causal bone-length GRU stepped one frame at a time, carrying its hidden state (the same numbers as
    one pass over the whole sequence)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        if getattr(model, "bidirectional", True):
            raise UserError("--live --lengths model needs a causal (unidirectional) length model; a Bi-GRU reads "
                            "the whole sequence. Use --lengths self or a causal checkpoint.")
        self.model, self.device, self.state = model.eval(), device, None

    @torch.no_grad()
    def step(self, keypoints: np.ndarray) -> np.ndarray:
        """keypoints (17, 2) normalised -> lengths (16,) metres after this frame."""
        x = torch.from_numpy(np.asarray(keypoints, np.float32))[None, None].to(self.device)
        lengths, self.state = self.model(x, self.state, return_state=True)
        return lengths[0, -1].cpu().numpy().astype(np.float64)


# ----------------------------------------------------------------------------------------------- run
@dataclass
class LiveConfig:
    """Settings of a live run (``inference.py --live ... --help``)."""

    source: str
    unpaced: bool = False
    max_frames: int | None = None
    lifter: str = "mediapipe_raw"
    lifter_model: torch.nn.Module | None = None  # a loaded causal VideoPose3D (lifter videopose3d)
    lengths: str = "self"
    length_model: torch.nn.Module | None = None  # a loaded causal length model (lengths model)
    prior: np.ndarray | None = None  # (16,) metres
    fixed_lengths: np.ndarray | None = None  # (16,) metres (lengths file)
    max_step_mm: float = 1.0
    smooth: tuple[float, float] | None = None  # one-euro (min_cutoff Hz, beta) or None
    jsonl: str = "-"  # "-" = stdout
    video_out: str | None = None
    panel_height: int = 480
    device: torch.device = torch.device("cpu")
    detector_threads: int | None = None  # BlazePose's inference threads (None: every available core)


@dataclass
class LiveResult:
    """Counters and timings of a live run."""

    frames_in: int  # frames the source delivered
    frames_out: int  # frames processed (= frames_in - dropped)
    dropped: int
    detected: int
    seconds: float
    latency_ms: np.ndarray  # (frames_out,) capture -> pose out
    timer: StageTimer
    max_length_change_mm: float  # largest per-frame change of any bone length

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else float("nan")


def _world_like(pose: np.ndarray) -> np.ndarray:
    """Camera-aligned (17, 3) -> the renderer's z-up frame (x, z, -y), lowest joint on the ground."""
    out = pose[:, [0, 2, 1]] * np.array([1, 1, -1])
    out[:, 2] -= out[:, 2].min()
    return out


def run_live(config: LiveConfig) -> LiveResult:
    """Run the causal pipeline over ``config.source`` (module docstring); writes JSON lines and optionally a
    video; returns counters and timings. Status lines go to stderr (stdout may carry the JSON lines)."""
    if config.lifter not in LIVE_LIFTERS:
        raise UserError(f"--live supports the lifters {LIVE_LIFTERS}, got {config.lifter!r}")
    if config.lengths not in LIVE_LENGTHS:
        raise UserError(f"--live supports --lengths {LIVE_LENGTHS}, got {config.lengths!r}")
    lifter = CausalVideoPose3D(config.lifter_model, config.device) if config.lifter == "videopose3d" else None
    gru = CausalGRULengths(config.length_model, config.device) if config.lengths == "model" else None
    if config.lengths == "file" and config.fixed_lengths is None:
        raise UserError("--lengths file needs --lengths_file")
    source = FrameSource(config.source, paced=not config.unpaced, max_frames=config.max_frames)
    detector = BlazePoseSource(threads=config.detector_threads)
    timer = StageTimer(LIVE_STAGES)
    prior = config.fixed_lengths if config.lengths == "file" else config.prior
    lengths = LiveLengths(prior, config.max_step_mm / 1000.0)
    median = RunningMedian()
    smoother = OneEuroFilter(*config.smooth) if config.smooth else None
    writer = JsonLinesWriter(sys.stdout if config.jsonl == "-" else config.jsonl)
    writer.write(jsonl_header(LIVE_FRAME, source.fps, source=config.source, lifter=config.lifter,
                              lengths=config.lengths, max_length_step_mm=config.max_step_mm,
                              smoothing=None if smoother is None else {"one_euro_min_cutoff": config.smooth[0],
                                                                        "one_euro_beta": config.smooth[1]}))
    renderer = video = None
    if config.video_out:
        from common.vision.video import VideoWriter
        from common.output.visualization import FrameRenderer

        renderer = FrameRenderer(source.width, source.height, config.panel_height)
        video = VideoWriter(config.video_out, renderer.width, renderer.height, source.fps)
    latencies, changes = [], []
    previous = None
    processed = detected = 0
    start = time.perf_counter()
    try:
        frames = timer.timed("capture", source)
        for frame in frames:
            with timer.measure("detect", 1):
                found = detector.track(frame.rgb)  # streaming mode on the whole frame
            pose = None
            with timer.measure("lift", 1):
                if found is not None:
                    keypoints = normalize_screen_coordinates(found.keypoints, source.width, source.height)
                    pose = (found.world - found.world[:1]) if lifter is None else lifter.step(keypoints)
                    if smoother is not None:
                        pose = smoother(pose, frame.time_s)
            with timer.measure("adjust", 1):
                target = None
                if pose is not None:
                    if config.lengths == "self":
                        median.update(average_symmetric(bone_lengths(pose)))
                        target = median.median()
                    elif gru is not None:
                        target = gru.step(keypoints)
                    else:
                        target = config.fixed_lengths
                current = lengths.step(target)
                adjusted = adjust_bone_lengths(pose, current) if pose is not None else None
            with timer.measure("output", 1):
                latency = (time.perf_counter() - frame.captured) * 1000
                writer.write(jsonl_record(frame.index, frame.time_s, adjusted, current,
                                          detected=found is not None, latency_ms=round(latency, 2)))
            if renderer is not None:
                with timer.measure("render", 1):
                    status = [f"frame {frame.index}  dropped {source.dropped}"]
                    video.write(renderer.render(frame.rgb, found.keypoints if found else None,
                                                found.confidence if found else None,
                                                _world_like(pose) if pose is not None else None,
                                                _world_like(adjusted) if adjusted is not None else None,
                                                status, ["lifted"], ["adjusted"]))
            latencies.append(latency)
            if current is not None and previous is not None:
                changes.append(float(np.abs(current - previous).max()))
            previous = current
            processed += 1
            detected += found is not None
    finally:
        source.close()
        detector.close()
        writer.close()
        if video is not None:
            video.close()
    seconds = time.perf_counter() - start
    return LiveResult(source.read_frames, processed, source.dropped, detected, seconds, np.asarray(latencies),
                      timer, max(changes, default=0.0) * 1000)
