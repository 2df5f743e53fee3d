"""2D keypoint sources: detectors behind one small interface, and precomputed keypoint files.

Every source yields Human3.6M 17-joint keypoints (:mod:`common.core.skeleton` order) in **pixels** of the video,
with a per-joint confidence in [0, 1].

* :class:`BlazePoseSource` (default): MediaPipe BlazePose (``mediapipe==0.10.21``, legacy
  ``mediapipe.solutions.pose``, ``model_complexity=1`` whose weights ship in the wheel; complexities 0 and 2
  would download at run time and are not offered). BlazePose finds one person per image, so it is run on
  image regions: overlapping tiles when searching for people, a box around the followed person otherwise,
  in its streaming mode (:meth:`Keypoint2DSource.track`) while the followed person stays in view.
* :class:`MMPoseSource` (optional): a top-down mmpose model from a local config + checkpoint, only when
  mmpose is installed; nothing is ever downloaded.
* :func:`load_keypoints`: VideoPose3D custom-dataset npz files or plain ``(T, 17, 2|3)`` arrays in Human3.6M
  or COCO-17 order.

Mapping to Human3.6M (the same for BlazePose's 33 landmarks and COCO's 17 keypoints; mediapipe's and COCO's
"left" is the subject's left): pelvis = mid(hips), hips/knees/ankles/shoulders/elbows/wrists directly,
thorax = mid(shoulders), spine = mid(pelvis, thorax), neck/nose = nose, head = mid(ears) + 0.5 (mid(ears) -
thorax), i.e. above the ears along the neck's direction (H36M's head joint is near the top of the head).
A derived joint's confidence is the minimum of the confidences it is built from.
"""
from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.utils.errors import UserError
from common.utils.fileio import existing_file, load_npy, load_npz
from common.core.skeleton import NUM_JOINTS

# Landmark indices of the body parts used by the mapping, per layout.
BLAZEPOSE_PARTS = {
    "nose": 0, "l_eye": 2, "r_eye": 5, "l_ear": 7, "r_ear": 8, "l_shoulder": 11, "r_shoulder": 12,
    "l_elbow": 13, "r_elbow": 14, "l_wrist": 15, "r_wrist": 16, "l_hip": 23, "r_hip": 24,
    "l_knee": 25, "r_knee": 26, "l_ankle": 27, "r_ankle": 28,
}
COCO_PARTS = {
    "nose": 0, "l_eye": 1, "r_eye": 2, "l_ear": 3, "r_ear": 4, "l_shoulder": 5, "r_shoulder": 6,
    "l_elbow": 7, "r_elbow": 8, "l_wrist": 9, "r_wrist": 10, "l_hip": 11, "r_hip": 12,
    "l_knee": 13, "r_knee": 14, "l_ankle": 15, "r_ankle": 16,
}
HEAD_ABOVE_EARS = 0.5
BLAZEPOSE_GRAPH = "mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb"  # in the mediapipe wheel
BLANK_FRAME = np.zeros((64, 64, 3), np.uint8)  # shown to BlazePose's streaming mode to make it forget its person
KEYPOINT_FORMATS = ("h36m", "coco")


def to_h36m(points: np.ndarray, confidence: np.ndarray, parts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map keypoints of another layout to the Human3.6M 17 joints.

    points: (..., K, C) pixels (C = 2) or metres (C = 3, world landmarks); confidence: (..., K); parts: body-part
    name -> index in that layout (:data:`BLAZEPOSE_PARTS`, :data:`COCO_PARTS`). Returns ((..., 17, C),
    (..., 17) confidence).
    """
    p = {name: points[..., i, :] for name, i in parts.items()}
    c = {name: confidence[..., i] for name, i in parts.items()}
    pelvis = (p["l_hip"] + p["r_hip"]) / 2
    thorax = (p["l_shoulder"] + p["r_shoulder"]) / 2
    ears = (p["l_ear"] + p["r_ear"]) / 2
    head = ears + HEAD_ABOVE_EARS * (ears - thorax)
    joints = [pelvis, p["r_hip"], p["r_knee"], p["r_ankle"], p["l_hip"], p["l_knee"], p["l_ankle"],
              (pelvis + thorax) / 2, thorax, p["nose"], head, p["l_shoulder"], p["l_elbow"], p["l_wrist"],
              p["r_shoulder"], p["r_elbow"], p["r_wrist"]]
    c_pelvis = np.minimum(c["l_hip"], c["r_hip"])
    c_thorax = np.minimum(c["l_shoulder"], c["r_shoulder"])
    c_head = np.minimum(np.minimum(c["l_ear"], c["r_ear"]), c_thorax)
    conf = [c_pelvis, c["r_hip"], c["r_knee"], c["r_ankle"], c["l_hip"], c["l_knee"], c["l_ankle"],
            np.minimum(c_pelvis, c_thorax), c_thorax, c["nose"], c_head, c["l_shoulder"], c["l_elbow"],
            c["l_wrist"], c["r_shoulder"], c["r_elbow"], c["r_wrist"]]
    return np.stack(joints, axis=-2).astype(np.float32), np.stack(conf, axis=-1).astype(np.float32)


@dataclass
class PersonPose:
    """One detected person in one frame: keypoints (17, 2) pixels (H36M order), confidence (17,),
    bbox (4,) = x0, y0, x1, y1 pixels around all the detector's landmarks, and ``world`` (17, 3) metres when
    the detector also estimates 3D (BlazePose's world landmarks, mapped like the 2D; see
    :func:`blazepose_person`), else None."""

    keypoints: np.ndarray
    confidence: np.ndarray
    bbox: np.ndarray
    world: np.ndarray | None = None

    @property
    def score(self) -> float:
        return float(self.confidence.mean())

    @property
    def area(self) -> float:
        return float(max(self.bbox[2] - self.bbox[0], 0) * max(self.bbox[3] - self.bbox[1], 0))

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2])


class Keypoint2DSource(ABC):
    """A 2D pose detector: finds people in an RGB frame, optionally only inside a region of interest."""

    name = "detector"

    @abstractmethod
    def detect(self, rgb: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> list[PersonPose]:
        """People in ``rgb`` (H, W, 3) uint8, restricted to ``roi`` = (x0, y0, x1, y1) pixels if given.
        Keypoints are in full-frame pixels. A region detector may return at most one person."""

    def detect_regions(self, rgb: np.ndarray, regions: list[tuple[int, int, int, int]]) -> list[list[PersonPose]]:
        """:meth:`detect` on each region, in order (the same results; a source may run them in parallel)."""
        return [self.detect(rgb, region) for region in regions]

    def track(self, rgb: np.ndarray, window: tuple[int, int, int, int] | None = None) -> PersonPose | None:
        """Streaming mode, for consecutive frames: the person followed since the last :meth:`reset_tracking`
        inside the same ``window`` (x0, y0, x1, y1 pixels; None = the whole frame), found from the previous
        frame's pose, which is cheaper than :meth:`detect`. Sources without such a mode return None (callers
        then use :meth:`detect`)."""
        return None

    def reset_tracking(self) -> None:
        """Forget the streaming-mode state (call when the window moves or the person changes)."""

    def prepare(self, regions: bool = False, tracking: bool = False) -> None:
        """Build now what the first :meth:`detect_regions` (``regions``) and :meth:`track` (``tracking``) calls
        would build (models, graphs), so that no frame waits for it; the results are the same. Sources without
        such a cost: nothing to do."""

    def close(self) -> None:
        """Release native resources (graphs, sessions)."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def blazepose_solution(static_image_mode: bool, min_detection_confidence: float = 0.5, threads: int | None = None):
    """A BlazePose solution: the graph, side inputs and thresholds of ``mediapipe.solutions.pose.Pose``
    (``model_complexity=1``, no segmentation, no landmark smoothing; ``min_tracking_confidence`` 0.5) whose two
    TFLite models (person detector, landmark model) run on ``threads`` XNNPACK threads (None: every available
    core). ``Pose`` itself runs them on one thread on desktop CPUs; the landmarks are the same numbers whatever the
    thread count (bit-identical on the demo video; ``tests/test_detectors.py`` compares 1 and 2 threads).

    Returns a ``mediapipe.python.solution_base.SolutionBase``: ``process(rgb (H, W, 3) uint8)`` -> results with
    ``pose_landmarks`` and ``pose_world_landmarks``; ``reset()``; ``close()``."""
    from mediapipe.calculators.tensor import inference_calculator_pb2
    from mediapipe.framework import calculator_pb2
    from mediapipe.python import solution_base
    from mediapipe.python._framework_bindings import validated_graph_config

    threads = available_cores() if threads is None else int(threads)
    if threads < 1:
        raise UserError(f"BlazePose threads must be >= 1, got {threads}")
    package_root = Path(solution_base.__file__).resolve().parents[2]
    validated = validated_graph_config.ValidatedGraphConfig()
    validated.initialize(binary_graph_path=str(package_root / BLAZEPOSE_GRAPH))
    graph = calculator_pb2.CalculatorGraphConfig()
    graph.ParseFromString(validated.binary_config)  # subgraphs expanded: the inference nodes are reachable
    options = inference_calculator_pb2.InferenceCalculatorOptions.ext
    inference = [node for node in graph.node if node.calculator.startswith("InferenceCalculator")]
    if len(inference) != 2:
        raise RuntimeError(f"unexpected BlazePose graph: {len(inference)} inference nodes (mediapipe==0.10.21 has 2)")
    for node in inference:
        node.options.Extensions[options].delegate.xnnpack.num_threads = threads
    return solution_base.SolutionBase(
        graph_config=graph,
        side_inputs={"model_complexity": 1, "smooth_landmarks": False, "enable_segmentation": False,
                     "smooth_segmentation": not static_image_mode, "use_prev_landmarks": not static_image_mode},
        calculator_params={
            "posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": min_detection_confidence,
            "poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__ThresholdingCalculator.threshold": 0.5},
        outputs=["pose_landmarks", "pose_world_landmarks", "segmentation_mask"])


class BlazePoseSource(Keypoint2DSource):
    """MediaPipe BlazePose (legacy solution graph, model_complexity=1), one person per region, on ``threads``
    cores (None: all available). Streaming mode (:meth:`track`): one graph whose models use ``threads`` XNNPACK
    threads. Single-image mode (:meth:`detect`, :meth:`detect_regions`): up to ``threads`` graphs on one thread
    each, the regions of one search spread over them (XNNPACK's second thread gained ~10 % on these small
    single-image passes, a second graph ~2x). Graphs are built on first use."""

    name = "blazepose"

    def __init__(self, min_detection_confidence: float = 0.5, threads: int | None = None):
        if importlib.util.find_spec("mediapipe") is None:
            raise UserError("mediapipe is not importable; install mediapipe==0.10.21")
        self._min_detection_confidence = min_detection_confidence
        self.threads = available_cores() if threads is None else threads
        self._static: list = []  # BlazePose's single-image mode, one graph per parallel search worker
        self._pool: ThreadPoolExecutor | None = None  # the search workers
        self._tracking = None  # BlazePose's streaming mode, created on the first call to track()

    @staticmethod
    def _person(result, x0: int, y0: int, x1: int, y1: int) -> PersonPose | None:
        """A BlazePose result on the crop (x0, y0, x1, y1) -> :class:`PersonPose` in full-frame pixels."""
        if result.pose_landmarks is None:
            return None
        marks = np.array([(m.x, m.y, m.visibility) for m in result.pose_landmarks.landmark], dtype=np.float32)
        pixels = marks[:, :2] * np.array([x1 - x0, y1 - y0], dtype=np.float32) + np.array([x0, y0], np.float32)
        world = None
        if result.pose_world_landmarks is not None:
            world = np.array([(m.x, m.y, m.z) for m in result.pose_world_landmarks.landmark], dtype=np.float32)
        return blazepose_person(pixels, marks[:, 2], world)

    @staticmethod
    def _crop(rgb: np.ndarray, region: tuple[int, int, int, int] | None) -> tuple[np.ndarray, tuple[int, ...]]:
        x0, y0, x1, y1 = region if region is not None else (0, 0, rgb.shape[1], rgb.shape[0])
        return np.ascontiguousarray(rgb[y0:y1, x0:x1]), (x0, y0, x1, y1)

    def _static_graphs(self, count: int) -> list:
        """At least ``count`` single-image graphs (1 XNNPACK thread each)."""
        while len(self._static) < count:
            self._static.append(blazepose_solution(True, self._min_detection_confidence, 1))
        return self._static

    def _detect_with(self, solution, rgb: np.ndarray, roi: tuple[int, int, int, int] | None) -> list[PersonPose]:
        crop, box = self._crop(rgb, roi)
        if crop.size == 0:
            return []
        person = self._person(solution.process(crop), *box)
        return [] if person is None else [person]

    def detect(self, rgb: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> list[PersonPose]:
        return self._detect_with(self._static_graphs(1)[0], rgb, roi)

    def detect_regions(self, rgb: np.ndarray, regions: list[tuple[int, int, int, int]]) -> list[list[PersonPose]]:
        """:meth:`detect` on each region; region k runs on graph k mod ``threads`` in its own worker thread
        (single-image mode keeps no state, so the results are the same as one after the other)."""
        workers = min(self.threads, len(regions))
        if workers <= 1:
            return super().detect_regions(rgb, regions)
        graphs = self._static_graphs(workers)
        if self._pool is None:  # its threads start as they are needed, at most self.threads
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="blazepose")

        def work(k: int) -> list[list[PersonPose]]:
            return [self._detect_with(graphs[k], rgb, region) for region in regions[k::workers]]

        found: list[list[PersonPose]] = [[] for _ in regions]
        for k, results in enumerate(self._pool.map(work, range(workers))):
            found[k::workers] = results
        return found

    def track(self, rgb: np.ndarray, window: tuple[int, int, int, int] | None = None) -> PersonPose | None:
        """BlazePose's streaming mode (``static_image_mode=False``, no landmark smoothing): its person detector
        runs only until somebody is found in the window, then the landmark model follows them from the
        previous frame's landmarks."""
        crop, box = self._crop(rgb, window)
        return None if crop.size == 0 else self._person(self._streaming().process(crop), *box)

    def reset_tracking(self) -> None:
        """Clear the streaming state by showing BlazePose a small blank frame: nobody is found there, so it drops
        the previous landmarks and resets its landmark filters, and the next frame runs the person detector -- the
        same landmarks as restarting the graph (``tests/test_detectors.py``), which would cost ~0.1 s (the models'
        interpreters are rebuilt) instead of one landmark pass on the blank frame."""
        if self._tracking is not None and self._tracking.process(BLANK_FRAME).pose_landmarks is not None:
            self._tracking.reset()  # somebody "seen" in the blank frame: restart the graph

    def prepare(self, regions: bool = False, tracking: bool = False) -> None:
        """Build the graphs now (``regions``: the ``threads`` single-image graphs; ``tracking``: the streaming one) and
        run each on a small blank frame: their models load and XNNPACK packs their weights on a graph's first
        frame (~0.15-0.25 s of CPU each). Nobody is found there, so a single-image graph keeps no state and the
        streaming graph is where :meth:`reset_tracking` leaves it (the same landmarks as a new graph)."""
        graphs = (self._static_graphs(self.threads)[:self.threads] if regions else []) + \
            ([self._streaming()] if tracking else [])
        for solution in graphs:
            if solution.process(BLANK_FRAME).pose_landmarks is not None:
                solution.reset()  # somebody "seen" in the blank frame: restart the graph (state as new)

    def _streaming(self):
        """The streaming-mode graph (``threads`` XNNPACK threads), built on first use."""
        if self._tracking is None:
            self._tracking = blazepose_solution(False, self._min_detection_confidence, self.threads)
        return self._tracking

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for solution in self._static + [self._tracking]:
            if solution is not None:
                solution.close()
        self._static, self._pool, self._tracking = [], None, None


def blazepose_person(landmarks: np.ndarray, visibility: np.ndarray, world: np.ndarray | None = None) -> PersonPose:
    """BlazePose's 33 landmarks (33, 2) pixels + visibility (33,) -> :class:`PersonPose` in H36M order.

    world: optional (33, 3) world landmarks of the same pass (metres, origin between the hips, x right, y down,
    z away from the camera: camera-aligned axes), mapped to the 17 joints with the same :func:`to_h36m` as the
    2D so that both follow one joint convention."""
    keypoints, confidence = to_h36m(landmarks, np.clip(visibility, 0.0, 1.0), BLAZEPOSE_PARTS)
    bbox = np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)]).astype(np.float32)
    world_h36m = None if world is None else to_h36m(world, np.ones(len(world), np.float32), BLAZEPOSE_PARTS)[0]
    return PersonPose(keypoints, confidence, bbox, world_h36m)


class MMPoseSource(Keypoint2DSource):
    """A top-down COCO-17 mmpose model loaded from local files (``config``, ``weights``); the region of
    interest is used as the person box. Requires mmpose to be installed; never downloads anything."""

    name = "mmpose"

    def __init__(self, config: str | None, weights: str | None, device: str = "cpu"):
        if importlib.util.find_spec("mmpose") is None:
            raise UserError("--detector mmpose: mmpose is not installed (use the default blazepose detector)")
        for flag, path in (("--detector_config", config), ("--detector_weights", weights)):
            if not path or not Path(path).is_file():
                raise UserError(f"--detector mmpose needs a local file for {flag} (got {path!r}); "
                                "weights are never downloaded")
        from mmpose.apis import inference_topdown, init_model

        self._infer = inference_topdown
        self._model = init_model(config, weights, device=device)

    def detect(self, rgb: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> list[PersonPose]:
        box = np.array([roi if roi is not None else (0, 0, rgb.shape[1], rgb.shape[0])], dtype=np.float32)
        results = self._infer(self._model, rgb[..., ::-1].copy(), bboxes=box, bbox_format="xyxy")
        people = []
        for sample in results:
            points = np.asarray(sample.pred_instances.keypoints, dtype=np.float32)[0]
            scores = np.clip(np.asarray(sample.pred_instances.keypoint_scores, dtype=np.float32)[0], 0, 1)
            keypoints, confidence = to_h36m(points, scores, COCO_PARTS)
            bbox = np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)
            people.append(PersonPose(keypoints, confidence, bbox))
        return people


def make_detector(name: str, config: str | None = None, weights: str | None = None,
                  device: str = "cpu", threads: int | None = None) -> Keypoint2DSource:
    """The detector called ``name`` (``blazepose`` or ``mmpose``); ``threads``: BlazePose's inference threads
    (None: every available core)."""
    if name == "blazepose":
        return BlazePoseSource(threads=threads)
    if name == "mmpose":
        return MMPoseSource(config, weights, device)
    raise UserError(f"unknown --detector {name!r}: use blazepose or mmpose")


@dataclass
class PrecomputedKeypoints:
    """Keypoints read from a file: positions (T, 17, 2) pixels H36M order (NaN rows = person missing),
    confidence (T, 17) (1 where the file has none), and the video size if the file states it."""

    positions: np.ndarray
    confidence: np.ndarray
    width: int | None
    height: int | None


def _array_to_h36m(name: str, array: np.ndarray, keypoint_format: str) -> tuple[np.ndarray, np.ndarray]:
    """A (T, 17, 2|3) array in ``keypoint_format`` order -> H36M positions (T, 17, 2) and confidence (T, 17)."""
    try:
        array = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError):
        raise UserError(f"{name}: not a numeric array") from None
    if array.ndim != 3 or array.shape[1] != NUM_JOINTS or array.shape[2] not in (2, 3) or len(array) == 0:
        raise UserError(f"{name}: expected keypoints of shape (T, 17, 2) or (T, 17, 3), got {array.shape}")
    if np.isinf(array).any():
        raise UserError(f"{name}: contains inf values")
    points = array[..., :2]
    confidence = np.clip(array[..., 2], 0.0, 1.0) if array.shape[2] == 3 else np.ones(array.shape[:2], np.float32)
    confidence = np.where(np.isnan(points).any(axis=-1), 0.0, np.nan_to_num(confidence)).astype(np.float32)
    if keypoint_format == "coco":
        points, confidence = to_h36m(points, confidence, COCO_PARTS)
    elif keypoint_format != "h36m":
        raise UserError(f"unknown --keypoint_format {keypoint_format!r}: use one of {KEYPOINT_FORMATS}")
    # A frame whose joints are all missing or all zero-confidence is a frame without the person.
    missing = np.isnan(points).any(axis=(1, 2)) | (confidence.max(axis=1) <= 0)
    points = np.where(missing[:, None, None], np.nan, points).astype(np.float32)
    return points, confidence


def load_keypoints(path: str | Path, keypoint_format: str = "h36m") -> PrecomputedKeypoints:
    """Read precomputed 2D keypoints (pixels) of one person.

    Accepted files:
    * VideoPose3D custom-dataset npz: ``positions_2d`` -> ``{video: {'custom': [(T, 17, 2)]}}`` and
      ``metadata`` with ``layout_name`` (``coco`` or ``h36m``; overrides ``keypoint_format``) and
      ``video_metadata`` -> ``{video: {'w', 'h'}}``; the first video and its first person are used.
    * npz with one array (or key ``keypoints``) / ``.npy``: ``(T, 17, 2)`` or ``(T, 17, 3)`` (x, y,
      confidence) in ``keypoint_format`` order (``h36m`` or ``coco``). Rows of NaN mark frames without
      the person (interpolated later if the gap is short).
    """
    path = existing_file(path, "keypoint file")
    width = height = None
    if path.suffix.lower() == ".npy":
        array = load_npy(path)
    else:
        data = load_npz(path)
        if "positions_2d" in data:
            videos = data["positions_2d"]
            if not isinstance(videos, dict) or not videos:
                raise UserError(f"{path}: positions_2d must map a video name to {{'custom': [(T, 17, 2)]}}")
            video, content = next(iter(videos.items()))
            try:
                array = content["custom"][0]
            except (KeyError, IndexError, TypeError):
                raise UserError(f"{path}: positions_2d[{video!r}] has no 'custom' keypoint list") from None
            metadata = data.get("metadata", {}) if isinstance(data.get("metadata", {}), dict) else {}
            layout = str(metadata.get("layout_name", keypoint_format)).lower()
            keypoint_format = "h36m" if layout.startswith("h36m") else layout
            size = metadata.get("video_metadata", {}).get(video, {})
            width, height = size.get("w"), size.get("h")
        else:
            arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray) and v.dtype != object}
            if "keypoints" in arrays:
                array = arrays["keypoints"]
            elif len(arrays) == 1:
                array = next(iter(arrays.values()))
            else:
                raise UserError(f"{path}: expected key 'positions_2d' (VideoPose3D custom), 'keypoints' or a "
                                f"single array; found {sorted(data)}")
    positions, confidence = _array_to_h36m(str(path), array, keypoint_format)
    return PrecomputedKeypoints(positions, confidence, None if width is None else int(width),
                                None if height is None else int(height))
