"""2D keypoint sources: BlazePose/COCO -> H36M mapping, precomputed formats, person tracking, gaps, smoothing."""
from __future__ import annotations

import numpy as np
import pytest

from common.vision.detectors import (BLAZEPOSE_PARTS, COCO_PARTS, HEAD_ABOVE_EARS, Keypoint2DSource, PersonPose,
                              blazepose_person, load_keypoints, to_h36m)
from common.utils.errors import UserError
from common.utils.fileio import save_npz
from common.vision.tracking import (PersonTracker, Track2D, box_iou, choose_person, fill_gaps, find_people,
                             parse_person_policy, search_regions, smooth_track)


RNG = np.random.default_rng(0)


def _named_points() -> dict[str, np.ndarray]:
    """Distinct pixel positions per body part (a person standing, subject's left on image right)."""
    return {
        "nose": [100, 40], "l_eye": [104, 36], "r_eye": [96, 36], "l_ear": [110, 40], "r_ear": [90, 42],
        "l_shoulder": [120, 70], "r_shoulder": [80, 72], "l_elbow": [128, 100], "r_elbow": [72, 101],
        "l_wrist": [131, 130], "r_wrist": [69, 129], "l_hip": [112, 140], "r_hip": [88, 142],
        "l_knee": [113, 190], "r_knee": [87, 191], "l_ankle": [114, 240], "r_ankle": [86, 238],
    }


def _expected_h36m(p: dict[str, np.ndarray]) -> np.ndarray:
    p = {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}
    pelvis = (p["l_hip"] + p["r_hip"]) / 2
    thorax = (p["l_shoulder"] + p["r_shoulder"]) / 2
    ears = (p["l_ear"] + p["r_ear"]) / 2
    return np.array([pelvis, p["r_hip"], p["r_knee"], p["r_ankle"], p["l_hip"], p["l_knee"], p["l_ankle"],
                     (pelvis + thorax) / 2, thorax, p["nose"], ears + HEAD_ABOVE_EARS * (ears - thorax),
                     p["l_shoulder"], p["l_elbow"], p["l_wrist"], p["r_shoulder"], p["r_elbow"], p["r_wrist"]])


def _layout(parts: dict[str, int], count: int, named: dict[str, np.ndarray]) -> np.ndarray:
    points = RNG.uniform(0, 300, size=(count, 2)).astype(np.float32)  # unused landmarks: noise
    for name, index in parts.items():
        points[index] = named[name]
    return points


def test_blazepose_mapping_on_known_landmarks():
    named = _named_points()
    landmarks = _layout(BLAZEPOSE_PARTS, 33, named)
    visibility = np.full(33, 0.9, np.float32)
    visibility[BLAZEPOSE_PARTS["l_hip"]] = 0.2
    visibility[BLAZEPOSE_PARTS["r_ear"]] = 0.4
    person = blazepose_person(landmarks, visibility)
    np.testing.assert_allclose(person.keypoints, _expected_h36m(named), atol=1e-4)
    # Derived joints take the weakest confidence of their sources.
    assert person.confidence[0] == pytest.approx(0.2)      # pelvis from l_hip
    assert person.confidence[7] == pytest.approx(0.2)      # spine from pelvis
    assert person.confidence[10] == pytest.approx(0.4)     # head from r_ear
    assert person.confidence[4] == pytest.approx(0.2) and person.confidence[1] == pytest.approx(0.9)
    np.testing.assert_allclose(person.bbox, [*landmarks.min(0), *landmarks.max(0)])
    # Head sits above the ears (smaller y) and the subject's left hip is mediapipe's left (23).
    assert person.keypoints[10, 1] < person.keypoints[9, 1]
    np.testing.assert_allclose(person.keypoints[4], landmarks[23])


def test_coco_and_blazepose_agree_on_the_same_body():
    named = _named_points()
    coco, _ = to_h36m(_layout(COCO_PARTS, 17, named)[None], np.ones((1, 17), np.float32), COCO_PARTS)
    blaze, _ = to_h36m(_layout(BLAZEPOSE_PARTS, 33, named)[None], np.ones((1, 33), np.float32), BLAZEPOSE_PARTS)
    np.testing.assert_allclose(coco, blaze, atol=1e-4)
    np.testing.assert_allclose(coco[0], _expected_h36m(named), atol=1e-4)


def _coco_sequence(frames: int) -> np.ndarray:
    base = _layout(COCO_PARTS, 17, _named_points())
    return (base[None] + np.arange(frames)[:, None, None] * np.array([2.0, 0.5])).astype(np.float32)


def test_videopose3d_custom_npz(tmp_path):
    coco = _coco_sequence(12)
    path = tmp_path / "data_2d_custom_myvideos.npz"
    save_npz(path, positions_2d={"clip.mp4": {"custom": [coco]}},
             metadata={"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": [[1, 3], [2, 4]],
                       "video_metadata": {"clip.mp4": {"w": 640, "h": 480}}})
    loaded = load_keypoints(path, "h36m")  # the file's own layout (coco) wins
    expected, _ = to_h36m(coco, np.ones(coco.shape[:2], np.float32), COCO_PARTS)
    np.testing.assert_allclose(loaded.positions, expected, atol=1e-4)
    assert (loaded.width, loaded.height) == (640, 480)
    assert loaded.confidence.shape == (12, 17) and np.all(loaded.confidence == 1)


def test_h36m_array_npz_and_coco_npy_with_confidence(tmp_path):
    h36m = RNG.uniform(0, 500, size=(9, 17, 2)).astype(np.float32)
    np.savez(tmp_path / "k.npz", anything=h36m)
    loaded = load_keypoints(tmp_path / "k.npz", "h36m")
    np.testing.assert_allclose(loaded.positions, h36m)
    assert loaded.width is None

    coco = np.concatenate([_coco_sequence(7), np.full((7, 17, 1), 0.5, np.float32)], axis=-1)
    coco[:, COCO_PARTS["l_ear"], 2] = 0.1
    np.save(tmp_path / "k.npy", coco)
    loaded = load_keypoints(tmp_path / "k.npy", "coco")
    assert loaded.positions.shape == (7, 17, 2)
    assert np.all(loaded.confidence[:, 10] == pytest.approx(0.1)) and loaded.confidence[0, 3] == pytest.approx(0.5)

    np.savez(tmp_path / "two.npz", keypoints=h36m, other=np.zeros(3))
    np.testing.assert_allclose(load_keypoints(tmp_path / "two.npz").positions, h36m)


def test_keypoint_file_errors_and_missing_rows(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((5, 16, 2)))
    with pytest.raises(UserError, match=r"\(T, 17, 2\)"):
        load_keypoints(tmp_path / "bad.npy")
    np.savez(tmp_path / "many.npz", a=np.zeros((5, 17, 2)), b=np.zeros((5, 17, 2)))
    with pytest.raises(UserError, match="single array"):
        load_keypoints(tmp_path / "many.npz")
    with pytest.raises(UserError, match="not found"):
        load_keypoints(tmp_path / "nope.npz")
    with pytest.raises(UserError, match="keypoint_format"):
        load_keypoints(_save(tmp_path / "ok.npy", np.zeros((3, 17, 2))), "openpose")
    arr = RNG.uniform(0, 100, (6, 17, 3)).astype(np.float32)
    arr[2, :, :2] = np.nan   # a frame without the person
    arr[4, :, 2] = 0.0       # all joints with zero confidence: also missing
    loaded = load_keypoints(_save(tmp_path / "gaps.npy", arr), "h36m")
    missing = np.isnan(loaded.positions).any(axis=(1, 2))
    assert missing.tolist() == [False, False, True, False, True, False]


def _save(path, array):
    np.save(path, array)
    return path


def _track(positions: np.ndarray) -> Track2D:
    return Track2D(positions.astype(np.float32), np.ones(positions.shape[:2], np.float32), 640, 480)


def test_fill_gaps_interpolates_trims_and_reports():
    t = np.arange(20, dtype=np.float32)
    truth = np.stack([np.stack([t * 3 + j, 100 - t * 2 + j], -1) for j in range(17)], axis=1)  # linear motion
    raw = truth.copy()
    raw[[0, 1, 6, 7, 8, 13, 19]] = np.nan
    filled = fill_gaps(_track(raw), max_gap=3)
    assert filled.start == 2 and len(filled) == 17              # frames 2..18 kept
    np.testing.assert_allclose(filled.positions, truth[2:19], atol=1e-4)
    assert filled.gaps == [(4, 6), (11, 11)]                     # indices within the kept track
    np.testing.assert_array_equal(np.flatnonzero(~filled.observed), [4, 5, 6, 11])
    assert np.all(filled.confidence[[4, 5, 6, 11]] == 0) and np.all(filled.confidence[[3, 7]] == 1)
    with pytest.raises(UserError, match="lost for 3 frames"):
        fill_gaps(_track(raw), max_gap=2)
    with pytest.raises(UserError, match="no person"):
        fill_gaps(_track(np.full((5, 17, 2), np.nan)), max_gap=3)


def test_smoothing_reduces_jitter_and_keeps_constants():
    noisy = np.full((200, 17, 2), 50.0) + RNG.normal(0, 2.0, (200, 17, 2))
    smooth = smooth_track(_track(noisy), 2.0).positions
    assert smooth.std() < noisy.std() / 2
    assert abs(smooth.mean() - 50.0) < 0.2
    np.testing.assert_allclose(smooth_track(_track(np.full((10, 17, 2), 7.0)), 3.0).positions, 7.0, atol=1e-4)
    np.testing.assert_array_equal(smooth_track(_track(noisy), 0.0).positions, noisy.astype(np.float32))


def _person(x0, y0, x1, y1, score=0.9) -> PersonPose:
    keypoints = np.stack([np.linspace(x0, x1, 17), np.linspace(y0, y1, 17)], -1).astype(np.float32)
    return PersonPose(keypoints, np.full(17, score, np.float32), np.array([x0, y0, x1, y1], np.float32))


def test_choose_person_policies():
    small_centre = _person(300, 200, 340, 280)
    big_left = _person(10, 50, 150, 400)
    right = _person(500, 100, 560, 300)
    people = [small_centre, big_left, right]
    assert choose_person(people, "largest", 640, 480) is big_left
    assert choose_person(people, "central", 640, 480) is small_centre
    assert choose_person(people, "0", 640, 480) is big_left
    assert choose_person(people, "2", 640, 480) is right
    assert choose_person(people, "3", 640, 480) is None
    assert choose_person([], "largest", 640, 480) is None
    with pytest.raises(UserError):
        parse_person_policy("tallest")


class RectangleDetector(Keypoint2DSource):
    """Fake image detector: a person is a rectangle of pixels whose red value is its id (score from
    ``scores``); like BlazePose it returns only the most confident person in the searched region."""

    def __init__(self, scores):
        self.scores = scores

    def detect(self, rgb, roi=None):
        x0, y0, x1, y1 = roi if roi is not None else (0, 0, rgb.shape[1], rgb.shape[0])
        crop = rgb[y0:y1, x0:x1, 0]
        people = []
        for pid in np.unique(crop[crop > 0]):
            ys, xs = np.nonzero(crop == pid)
            people.append(_person(xs.min() + x0, ys.min() + y0, xs.max() + 1 + x0, ys.max() + 1 + y0,
                                  self.scores[int(pid)]))
        return sorted(people, key=lambda p: -p.score)[:1]


def _draw(frame, box, pid):
    frame[box[1]:box[3], box[0]:box[2], 0] = pid


def test_tracker_follows_one_person_and_records_gaps():
    width, height = 640, 480
    frames = []
    for k in range(8):
        frame = np.zeros((height, width, 3), np.uint8)
        _draw(frame, (560 - 60 * k, 120, 620 - 60 * k, 280), 2)        # passer-by crossing right to left
        if k not in (3, 4):                                             # the walker is hidden in frames 3-4
            _draw(frame, (100 + 10 * k, 100, 180 + 10 * k, 300), 1)     # walker, larger, moving right
        frames.append(frame)
    tracker = PersonTracker(RectangleDetector({1: 0.9, 2: 0.99}), width, height, "largest")
    for frame in frames:
        tracker.update(frame)
    raw = tracker.result()
    missing = np.isnan(raw.positions).any(axis=(1, 2))
    assert missing.tolist() == [False, False, False, True, True, False, False, False]
    followed = raw.positions[~missing, 0, 0]
    np.testing.assert_allclose(followed, [100 + 10 * k for k in (0, 1, 2, 5, 6, 7)])
    filled = fill_gaps(raw, max_gap=5)
    assert filled.gaps == [(3, 4)]
    np.testing.assert_allclose(filled.positions[3:5, 0, 0], [130, 140], atol=1e-4)


class StreamingRectangleDetector(RectangleDetector):
    """RectangleDetector with a streaming mode: after a reset it detects in the window, then it follows the
    rectangle that overlaps the one it returned last (as a landmark model fed the previous pose would)."""

    def __init__(self, scores):
        super().__init__(scores)
        self.state = None
        self.calls = {"detect": 0, "track": 0, "reset": 0}

    def detect(self, rgb, roi=None):
        self.calls["detect"] += 1
        return super().detect(rgb, roi)

    def track(self, rgb, window=None):
        self.calls["track"] += 1
        x0, y0, x1, y1 = window
        crop = rgb[y0:y1, x0:x1, 0]
        people = [_person(xs.min() + x0, ys.min() + y0, xs.max() + 1 + x0, ys.max() + 1 + y0, self.scores[int(pid)])
                  for pid in np.unique(crop[crop > 0]) for ys, xs in [np.nonzero(crop == pid)]]
        if self.state is not None:  # the one that overlaps the last pose most
            people = sorted((p for p in people if box_iou(p.bbox, self.state.bbox) > 0),
                            key=lambda p: -box_iou(p.bbox, self.state.bbox))
        self.state = (people[0] if self.state is not None else max(people, key=lambda p: p.score)) if people else None
        return self.state

    def reset_tracking(self):
        self.calls["reset"] += 1
        self.state = None


def test_tracker_follows_in_streaming_mode_and_moves_its_window():
    width, height = 640, 480
    detector = StreamingRectangleDetector({1: 0.9, 2: 0.99})
    tracker = PersonTracker(detector, width, height, "largest")
    for k in range(12):
        frame = np.zeros((height, width, 3), np.uint8)
        _draw(frame, (560 - 50 * k, 330, 600 - 50 * k, 470), 2)       # more confident passer-by, lower down
        _draw(frame, (60 + 40 * k, 100, 140 + 40 * k, 300), 1)        # walker, larger, moving right
        tracker.update(frame)
    raw = tracker.result()
    np.testing.assert_allclose(raw.positions[:, 0, 0], [60 + 40 * k for k in range(12)])  # never the passer-by
    # the first frame searches the whole frame; afterwards the streaming mode does the work, its window
    # re-centred when the walker comes near its edge (it moves 440 px)
    assert detector.calls["track"] == 11 and detector.calls["detect"] == len(search_regions(width, height))
    assert 2 <= detector.calls["reset"] < 11


def test_find_people_near_an_area_searches_fewer_regions():
    detector = StreamingRectangleDetector({1: 0.9})
    frame = np.zeros((480, 640, 3), np.uint8)
    _draw(frame, (20, 20, 80, 200), 1)
    everywhere = find_people(detector, frame)
    assert detector.calls["detect"] == 13  # the frame + 4 x 3 tiles of 312 px at x 0/109/218/328, y 0/84/168
    detector.calls["detect"] = 0
    near = find_people(detector, frame, area=(0, 0, 150, 250))
    assert detector.calls["detect"] == 7  # the frame + the tiles starting at x 0 or 109 (all three rows)
    np.testing.assert_allclose(near[0].bbox, everywhere[0].bbox)


def test_tracker_reports_nobody_and_missing_index():
    tracker = PersonTracker(RectangleDetector({}), 640, 480)
    for _ in range(2):
        tracker.update(np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(UserError, match="no person found in any of the 2 frames"):
        tracker.result()
    tracker = PersonTracker(RectangleDetector({1: 0.9}), 640, 480, "1")
    frame = np.zeros((480, 640, 3), np.uint8)
    _draw(frame, (10, 10, 100, 200), 1)
    tracker.update(frame)
    with pytest.raises(UserError, match="only 1 person"):
        tracker.result()


def test_search_regions_cover_the_frame():
    regions = np.array(search_regions(1768, 994))
    assert tuple(regions[0]) == (0, 0, 1768, 994)
    tiles = regions[1:]
    assert len(tiles) > 4 and np.all(tiles[:, 2] <= 1768) and np.all(tiles[:, 3] <= 994)
    assert tiles[:, 0].min() == 0 and tiles[:, 2].max() == 1768 and tiles[:, 3].max() == 994
    assert np.all(tiles[:, 2] - tiles[:, 0] == tiles[:, 3] - tiles[:, 1])


def test_tracker_picks_a_person_again_after_a_long_loss():
    """Like the end of a looped video: the person leaves on the right and comes back far to the left."""
    frames = []
    for k in range(20):
        frame = np.zeros((480, 640, 3), np.uint8)
        if k < 5:
            _draw(frame, (500 + 10 * k, 100, 560 + 10 * k, 300), 1)
        elif k >= 8:
            _draw(frame, (40, 100, 100, 300), 1)
        frames.append(frame)
    tracker = PersonTracker(RectangleDetector({1: 0.9}), 640, 480, "largest", reacquire_after=4)
    for frame in frames:
        tracker.update(frame)
    missing = np.isnan(tracker.result().positions).any(axis=(1, 2))
    # Frames 5-7: nobody; frame 8: somebody far away (not taken yet); frame 9: 4 frames lost -> picked again.
    assert missing.tolist() == [False] * 5 + [True] * 4 + [False] * 11
    assert tracker.reacquired == [9]


def _landmarks(result) -> np.ndarray | None:
    """A BlazePose result's 2D and world landmarks as one (33, 6) array (None: nobody)."""
    if result.pose_landmarks is None:
        return None
    return np.array([(a.x, a.y, a.visibility, b.x, b.y, b.z) for a, b in
                     zip(result.pose_landmarks.landmark, result.pose_world_landmarks.landmark)])


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all((x is None and y is None) or (x is not None and y is not None
                                                                  and np.array_equal(x, y)) for x, y in zip(a, b))


@pytest.mark.slow
def test_blazepose_speed_settings_give_the_same_landmarks(real_clip):
    """The faster BlazePose set-up changes no number: our graph with 2 inference threads against mediapipe's own
    Pose (1 thread) in both modes; a search's regions in parallel against one after the other; the blank-frame
    reset of the streaming mode against restarting the graph (and a reset does change what follows)."""
    from mediapipe.python.solutions import pose as mp_pose

    from common.vision.detectors import BlazePoseSource, blazepose_solution
    from common.vision.video import VideoReader

    frames = list(VideoReader(real_clip, max_frames=12))
    for static in (False, True):
        ours = blazepose_solution(static, threads=2)
        with mp_pose.Pose(static_image_mode=static, model_complexity=1, smooth_landmarks=False) as theirs:
            a = [_landmarks(ours.process(f)) for f in frames]
            b = [_landmarks(theirs.process(f)) for f in frames]
        ours.close()
        assert sum(x is not None for x in a) >= 6 and _same(a, b)

    source = BlazePoseSource(threads=2)
    regions = search_regions(frames[0].shape[1], frames[0].shape[0])
    parallel = source.detect_regions(frames[0], regions)
    one_by_one = [source.detect(frames[0], region) for region in regions]
    assert sum(map(len, parallel)) >= 2 and [len(p) for p in parallel] == [len(p) for p in one_by_one]
    assert all(np.array_equal(p.keypoints, q.keypoints) and np.array_equal(p.world, q.world)
               for ps, qs in zip(parallel, one_by_one) for p, q in zip(ps, qs))

    def stream(reset) -> list:
        """Frames 0-5 in a window on the left, then the whole frame after ``reset`` (None: no reset)."""
        source = BlazePoseSource(threads=1)
        out = []
        for k, frame in enumerate(frames):
            if k == 6 and reset is not None:
                reset(source)
            person = source.track(frame, (0, 0, 1100, frame.shape[0]) if k < 6 else None)
            out.append(None if person is None else np.concatenate([person.keypoints, person.world], axis=1))
        source.close()
        return out

    blank = stream(BlazePoseSource.reset_tracking)
    restarted = stream(lambda source: source._tracking.reset())  # mediapipe's reset: close and restart the graph
    assert sum(x is not None for x in blank) >= 10 and _same(blank, restarted)
    assert not _same(blank, stream(None))
