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
3. **lift**: the run's lifter (:func:`common.inference.inference_pipeline.make_models`, the same registry as
   offline) stepped one frame at a time: a causal lifter's ``step`` (``mediapipe_raw``: BlazePose's world
   landmarks, one frame alone; ``videopose3d``: a causal checkpoint on a ring buffer of its receptive field).
   Optional one-euro smoothing of the lifted joints (off by default; before the adjustment, so it never touches
   the adjusted bone lengths).
4. **lengths** (:class:`LiveLengths`): a target per frame from the length source's ``step`` (``self``: running
   median of the lifter's own lengths; ``model``: the causal GRU carrying its state; ``file``: the file's
   lengths; :mod:`common.inference.length_sources`), then a bounded step towards it. The lengths start at the
   source's own (a file's), else a prior (``--length_prior`` file, else
   :func:`common.inference.length_sources.stream_start_lengths` of the lifter's joint convention; none: the first
   target) and move towards the target by at most ``max_step_mm`` per bone per frame (default 1 mm: 3 cm/s at
   30 frames/s), so the skeleton is steady from the first frame and never jumps. Left/right pairs are averaged.
5. **adjust** (:class:`LiveAdjustment`): offline's adjustment
   (:func:`common.inference.inference_pipeline.adjust_lengths`) made causal. The person's size
   (:func:`common.inference.body_size.person_size`: ``--height``, else, for a source whose size is the lifter's,
   BlazePose's raw world landmarks) and the non-rigid bones' reference
   (:func:`common.adjustment.rigidity.nonrigid_reference`, ``--nonrigid``) are computed by the offline functions
   on the frames seen so far during the warm-up (``--warmup_frames``, default :data:`WARMUP_FRAMES`) and the
   length source's target is read, rescaled to that size; after the warm-up all three are frozen. The bones held
   rigid get the bounded lengths (constant once they reach the frozen target) and the others follow the lifter
   per frame as offline (:func:`common.adjustment.rigidity.nonrigid_lengths`). Each bone keeps the lifted
   direction and gets its length.

The 2D stage (steps 1-2; with ``--people all``, :class:`common.vision.people.PeopleTracker`) runs in a thread of
its own, up to ``--detect_ahead`` frames (default :data:`DETECT_AHEAD`) ahead of steps 3-5
(:func:`common.utils.threads.ahead`): frame t + 1's detection overlaps frame t's lifting, adjustment and output
(MediaPipe releases the GIL while its graphs run). The tracker never reads what the later steps compute, so the
output is the same as one frame after the other (``--detect_ahead 0``; ``tests/test_live.py``); each step still
sees only its frame and the past.

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

from common.adjustment.rigidity import DEFAULT_NONRIGID, describe_adjustment, load_rigidity, nonrigid_lengths, nonrigid_reference
from common.core.bones import adjust_bone_lengths, average_symmetric, bone_lengths
from common.core.skeleton import BONE_NAMES
from common.inference.body_size import as_heights, height_of, height_size, person_size, rescale, size_rule
from common.inference.camera_size import calibration_camera, check_video_size, read_stature
from common.inference.length_sources import LengthSource, complete_lengths, stream_start_lengths
from common.inference.lifters import Lifter
from common.inference.multiview import CalibratedCamera
from common.output.rendering import BODY_HEIGHT_M
from common.output.pose_tables import JsonLinesWriter, jsonl_header, jsonl_record
from common.utils.errors import UserError, stop_at_safe_points
from common.utils.threads import ahead
from common.utils.timing import StageTimer
from common.vision.detectors import BlazePoseSource, PersonPose
from common.vision.people import SEARCH_EVERY
from common.vision.tracking import Track2D
from common.vision.video import VideoReader, warn_if_short

LIVE_STAGES = ("capture", "detect", "lift", "adjust", "output", "render")
LIVE_FRAME = ("camera-aligned axes (x right, y down, z away from the camera), metres, pelvis at the origin; "
              "bone lengths adjusted")
PREFETCH = 2  # frames decoded ahead in unpaced mode
WARMUP_FRAMES = 150  # frames with the person over which size and non-rigid reference are pooled (5 s at 30 fps)
DETECT_AHEAD = 1  # frames the 2D stage (its own thread) may have finished before the lifting takes them


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
                    if self.is_file:
                        stated = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
                        warn_if_short(self.source, index, min(stated, self.max_frames or stated), self.max_frames)
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


@dataclass
class CameraRead:
    """``--calibration``'s camera for a live run: each person's height is read through it over the warm-up
    (:func:`common.inference.camera_size.read_stature`; the source's frame rate scales its frame windows)."""

    camera: CalibratedCamera
    fps: float
    floor_z: float = 0.0


class LiveAdjustment:
    """One person's adjustment, frame by frame (module docstring, step 5): the same choices as offline
    (:func:`common.inference.inference_pipeline.adjust_lengths`), pooled causally.

    convention: the lifter's joint convention (its rigid bones, :func:`common.adjustment.rigidity.load_rigidity`);
    own_size: the length source's size is the lifter's estimate; height: metres or None; nonrigid: the
    ``--nonrigid`` mode; warmup: frames over which the size and the non-rigid reference are pooled before they
    are frozen; bounded: the rigid lengths' bounded follower. :meth:`step` returns (16,) metres or None."""

    def __init__(self, convention: str, own_size: bool, height: float | None, nonrigid: str, warmup: int,
                 bounded: LiveLengths, camera: CameraRead | None = None):
        if warmup < 1:
            raise UserError("--warmup_frames must be >= 1")
        self.convention, self.own_size, self.height, self.nonrigid = convention, own_size, height, nonrigid
        self.camera = camera if height is None and own_size else None
        self.read: float | None = None  # the height read through the camera so far (metres)
        self.rigid, self.variance = load_rigidity(convention)
        self.warmup, self.bounded = warmup, bounded
        self.poses: list[np.ndarray] = []
        self.frames: list[Track2D] = []
        self.size: float | None = None
        self.reference: tuple[np.ndarray, np.ndarray] | None = None
        self.target: np.ndarray | None = None

    @property
    def warming_up(self) -> bool:
        """True while the frames are still pooled (the length source's target is read only then)."""
        return len(self.poses) < self.warmup

    def metadata(self) -> dict:
        """The adjustment's choices as offline's metadata (``nonrigid``, ``rigid_bones``, ``size``) plus the warm-up."""
        size = size_rule(self.height, self.own_size)
        if self.camera is not None:
            size = (f"the height read through calibrated camera {self.camera.camera.name} (population limb-to-stature "
                    f"ratio; until it is readable: {size})")
        if self.own_size and self.height is None:
            size += f", pooled over the person's first {self.warmup} frames, then frozen"
        return {"nonrigid": self.nonrigid, "rigid_bones": [n for n, r in zip(BONE_NAMES, self.rigid) if r],
                "size": size, "warmup_frames": self.warmup}

    def step(self, pose: np.ndarray, frame: Track2D, target: np.ndarray | None) -> np.ndarray | None:
        """The lifted pose (17, 3) metres, its one-frame track and the length source's target (16,) metres or None
        (read only while :attr:`warming_up`) -> the adjustment's lengths (16,) metres for this frame (None before
        any estimate)."""
        if self.warming_up:  # pool over the frames so far with offline's functions; frozen after
            self.poses.append(np.asarray(pose, np.float64))
            self.frames.append(frame)
            seen = Track2D(np.concatenate([f.positions for f in self.frames]),
                           np.concatenate([f.confidence for f in self.frames]), frame.width, frame.height,
                           world=None if frame.world is None else np.concatenate([f.world for f in self.frames]))
            self.size = person_size(self.convention, seen, self.height, self.own_size)[0]
            if self.camera is not None:
                self.read = read_stature(seen, self.camera.camera, self.camera.fps, self.camera.floor_z)[0]
                if self.read is not None:
                    self.size = height_size(self.read, self.convention)
            self.reference = nonrigid_reference(np.stack(self.poses), self.rigid, self.variance, self.nonrigid)
            if target is not None:
                self.target = target if self.size is None else rescale(target, self.size)
        current = self.bounded.step(self.target)
        if current is None:
            return None
        return nonrigid_lengths(bone_lengths(np.asarray(pose, np.float64)), current, *self.reference)


# ----------------------------------------------------------------------------------------------- run
@dataclass
class LiveConfig:
    """Settings of a live run (``inference.py --live ... --help``); the lifter and the length source come built
    (:func:`common.inference.inference_pipeline.make_models` with ``live=True``)."""

    source: str
    unpaced: bool = False
    max_frames: int | None = None
    length_prior: str | None = None  # lengths file (every bone named) the lengths start from
    max_step_mm: float = 1.0
    smooth: tuple[float, float] | None = None  # one-euro (min_cutoff Hz, beta) or None
    jsonl: str = "-"  # "-" = stdout
    video_out: str | None = None
    panel_height: int = 480
    detector_threads: int | None = None  # BlazePose's inference threads (None: every available core)
    people: str = "one"  # "all": every person, one identity each
    max_people: int = 10
    search_every: int = SEARCH_EVERY  # --people all: frames between whole-frame searches
    # standing height(s), metres: one, or one per identity in order with --people all
    # (common.inference.body_size.height_of); None: the video's own evidence
    height: float | tuple[float, ...] | None = None
    calibration: str | None = None  # --calibration / --camera / --floor_z: heights read through that camera
    camera: str | None = None
    floor_z: float = 0.0
    nonrigid: str = DEFAULT_NONRIGID  # what the adjustment does with distances a body does not hold rigid
    warmup_frames: int = WARMUP_FRAMES  # frames pooled for the lengths, size and non-rigid reference, then frozen
    detect_ahead: int = DETECT_AHEAD  # frames the 2D stage may run ahead of the lifting (0: one after the other)


@dataclass
class LiveResult:
    """Counters and timings of a live run."""

    frames_in: int  # frames the source delivered
    frames_out: int  # frames processed (= frames_in - dropped)
    dropped: int
    detected: int
    seconds: float
    cpu_seconds: float  # CPU time of every thread of the process over the same span as ``seconds``
    latency_ms: np.ndarray  # (frames_out,) capture -> pose out
    timer: StageTimer
    max_length_change_mm: float  # largest per-frame change of a bone held rigid
    adjustment: dict  # LiveAdjustment.metadata(): the same choices as offline's adjust_lengths

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else float("nan")


def _world_like(pose: np.ndarray) -> np.ndarray:
    """Camera-aligned (17, 3) -> the renderer's z-up frame (x, z, -y), lowest joint on the ground."""
    out = pose[:, [0, 2, 1]] * np.array([1, 1, -1])
    out[:, 2] -= out[:, 2].min()
    return out


def start_lengths(lifter: Lifter, lengths: LengthSource, length_prior: str | None) -> np.ndarray | None:
    """The lengths (16,) metres a live run starts from: the source's own (a file's), else the ``length_prior``
    file's, else :func:`common.inference.length_sources.stream_start_lengths` of the lifter's joint convention
    (noted on stderr); None: the first target."""
    own = lengths.start()
    if own is not None:
        return own
    if length_prior:
        return complete_lengths(length_prior)
    start = stream_start_lengths(lifter.convention)
    if start is None:
        return None
    print(f"lengths start from {start[1]}", file=sys.stderr)
    return start[0]


def one_frame(found: PersonPose, width: int, height: int) -> Track2D:
    """A detection as a one-frame track (what the lifter's and the length source's ``step`` read)."""
    return Track2D(found.keypoints[None], found.confidence[None], width, height,
                   world=None if found.world is None else found.world[None])


class _Overlay:
    """The optional annotated video: the frame with its 2D, the lifted and the adjusted 3D (with several people:
    everybody in their identity's colour, :meth:`common.output.visualization.FrameRenderer.render_people`)."""

    def __init__(self, config: LiveConfig, source: FrameSource):
        from common.output.visualization import FrameRenderer
        from common.vision.video import VideoWriter

        self.renderer = FrameRenderer(source.width, source.height, config.panel_height)
        self.video = VideoWriter(config.video_out, self.renderer.width, self.renderer.height, source.fps)
        self.people = config.people == "all"
        self.width = source.width

    def write(self, frame: CapturedFrame, found: dict[int, PersonPose], results: dict, dropped: int) -> None:
        lines = [f"frame {frame.index}  dropped {dropped}"]
        if not self.people:
            person = found.get(0)
            pose, _, adjusted, _ = results.get(0, (None, None, None, None))
            self.video.write(self.renderer.render(frame.rgb, person.keypoints if person else None,
                                                  person.confidence if person else None,
                                                  _world_like(pose) if pose is not None else None,
                                                  _world_like(adjusted) if adjusted is not None else None,
                                                  lines, ["lifted"], ["adjusted"]))
            return
        shown = []
        for identity, (pose, _, adjusted, _) in results.items():
            person = found[identity]
            height = max(float(person.bbox[3] - person.bbox[1]), 1.0)
            shift = np.array([(person.keypoints[0, 0] - self.width / 2) * BODY_HEIGHT_M / height, 0.0, 0.0])
            shown.append({"identity": identity, "keypoints": person.keypoints, "before": _world_like(pose) + shift,
                          "after": _world_like(adjusted if adjusted is not None else pose) + shift})
        self.video.write(self.renderer.render_people(frame.rgb, shown, lines))


class LivePerson:
    """One person's causal state: their lifter and length source (each person their own copy: ring buffers, GRU
    state, running medians), bounded lengths, smoother and last lengths; ``identity`` picks their ``--height``."""

    def __init__(self, lifter: Lifter, lengths: LengthSource, start: np.ndarray | None, config: LiveConfig,
                 identity: int = 0, camera: CameraRead | None = None):
        self.lifter, self.lengths = lifter, lengths
        self.adjustment = LiveAdjustment(lifter.convention, lengths.own_size, height_of(config.height, identity),
                                         config.nonrigid, config.warmup_frames,
                                         LiveLengths(start, config.max_step_mm / 1000.0), camera)
        self.smoother = OneEuroFilter(*config.smooth) if config.smooth else None
        self.previous: np.ndarray | None = None

    def step(self, one: Track2D, time_s: float, timer: StageTimer
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float | None]:
        """One frame of this person (``one``: their detection as a one-frame track, :func:`one_frame`): (lifted
        (17, 3), lengths (16,) or None, adjusted (17, 3) or None, largest change of a rigid bone's length since
        their previous frame (metres) or None)."""
        with timer.measure("lift"):
            pose = self.lifter.step(one)
            if self.smoother is not None:
                pose = self.smoother(pose, time_s)
        with timer.measure("adjust"):
            target = self.lengths.step(pose, one) if self.adjustment.warming_up else None
            current = self.adjustment.step(pose, one, target)
            adjusted = adjust_bone_lengths(pose, current) if current is not None else None
        rigid = self.adjustment.rigid
        change = (None if current is None or self.previous is None else
                  float(np.abs(current - self.previous)[rigid].max(initial=0.0)))
        self.previous = current
        return pose, current, adjusted, change


def run_live(config: LiveConfig, lifter: Lifter, lengths: LengthSource) -> LiveResult:
    """Run the causal pipeline over ``config.source`` with a causal lifter and length source (module docstring);
    writes JSON lines and optionally a video; returns counters and timings. Status lines go to stderr (stdout
    may carry the JSON lines). ``config.people == "all"``: every person (:class:`common.vision.people.PeopleTracker`,
    the offline identity rule, causal by construction), each with their own copy of the lifter and length
    source (copied fresh when they first appear), one JSON line per person and frame with a ``person`` key."""
    import copy

    from common.vision.people import PeopleTracker

    starting = start_lengths(lifter, lengths, config.length_prior)
    source = FrameSource(config.source, paced=not config.unpaced, max_frames=config.max_frames)
    camera = None
    if config.calibration is not None:
        camera = CameraRead(calibration_camera(config.calibration, config.camera), source.fps, config.floor_z)
        check_video_size(camera.camera, source.width, source.height)
    everybody = config.people == "all"
    if everybody:
        tracker = PeopleTracker(lambda threads: BlazePoseSource(
            threads=config.detector_threads if threads is None else threads), source.width, source.height,
            config.max_people, search_every=config.search_every)
        pristine = (copy.deepcopy(lifter), copy.deepcopy(lengths))  # each new person starts from these
        detector = None
    else:
        detector = BlazePoseSource(threads=config.detector_threads)
        detector.prepare(tracking=True)  # its graph built and loaded before the first frame
    people: dict[int, LivePerson] = {} if everybody else {0: LivePerson(lifter, lengths, starting, config, 0, camera)}
    adjustment = LivePerson(lifter, lengths, starting, config, 0, camera).adjustment.metadata()
    print(f"live: lifter {lifter.name}, lengths {lengths.name}, {describe_adjustment(adjustment)}", file=sys.stderr)
    timer = StageTimer(LIVE_STAGES)
    writer = JsonLinesWriter(sys.stdout if config.jsonl == "-" else config.jsonl)
    writer.write(jsonl_header(LIVE_FRAME, source.fps, source=config.source, lifter=lifter.name,
                              lengths=lengths.name, max_length_step_mm=config.max_step_mm, people=config.people,
                              adjustment=adjustment,  # the first person's (below: every person's --height)
                              height_m=list(as_heights(config.height)) or None,
                              smoothing=None if not config.smooth else {"one_euro_min_cutoff": config.smooth[0],
                                                                        "one_euro_beta": config.smooth[1]}))
    overlay = _Overlay(config, source) if config.video_out else None
    latencies, changes = [], []
    detected = 0

    def people_2d() -> Iterator[tuple[CapturedFrame, dict[int, PersonPose]]]:
        """The 2D stage: each frame with identity -> pose of the people found in it."""
        for frame in timer.timed("capture", source):
            with timer.measure("detect", 1):
                if everybody:
                    found = tracker.update(frame.rgb)
                else:  # streaming mode on the whole frame
                    one = detector.track(frame.rgb)
                    found = {} if one is None else {0: one}
            yield frame, found

    with stop_at_safe_points() as stop:  # Ctrl-C / SIGTERM: the run stops between two frames
        stream = ahead(people_2d(), config.detect_ahead, "detect", interrupt=stop)
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            for frame, found in stream:
                results = {}
                for identity, pose_2d in found.items():
                    if identity not in people:
                        people[identity] = LivePerson(*copy.deepcopy(pristine), starting, config, identity, camera)
                    one = one_frame(pose_2d, source.width, source.height)
                    results[identity] = people[identity].step(one, frame.time_s, timer)
                    if results[identity][3] is not None:
                        changes.append(results[identity][3])
                timer.frames["lift"] += 1
                timer.frames["adjust"] += 1
                with timer.measure("output", 1):
                    latency = (time.perf_counter() - frame.captured) * 1000
                    extra = {"latency_ms": round(latency, 2)}
                    if not everybody:
                        _, current, adjusted, _ = results.get(
                            0, (None, people[0].adjustment.bounded.step(None), None, None))
                        writer.write(jsonl_record(frame.index, frame.time_s, adjusted, current,
                                                  detected=bool(found), **extra))
                    elif not results:
                        writer.write(jsonl_record(frame.index, frame.time_s, None, None, person=None,
                                                  detected=False, **extra))
                    for identity, (_, current, adjusted, _) in (results.items() if everybody else []):
                        writer.write(jsonl_record(frame.index, frame.time_s, adjusted, current, person=identity,
                                                  detected=True, **extra))
                if overlay is not None:
                    with timer.measure("render", 1):
                        overlay.write(frame, found, results, source.dropped)
                latencies.append(latency)
                detected += bool(found)
                if stop.is_set():
                    break
        finally:
            stream.close()  # the 2D thread has stopped before its detectors are closed
            source.close()
            if everybody:
                tracker.close()
            else:
                detector.close()
            writer.close()
            if overlay is not None:
                overlay.video.close()
    if stop.is_set():
        raise KeyboardInterrupt  # after every stream is closed and the video finished
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return LiveResult(source.read_frames, len(latencies), source.dropped, detected, seconds, cpu_seconds,
                      np.asarray(latencies), timer, max(changes, default=0.0) * 1000, adjustment)
