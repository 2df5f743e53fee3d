"""common/vision/people.py: every person followed with an identity of their own (fake detectors on drawn frames)."""
import numpy as np
import pytest

from common.utils.errors import UserError
from common.vision.detectors import Keypoint2DSource, PersonPose
from common.vision.people import PeopleTracker, appearance, identity_switches, similarity
from common.vision.tracking import box_iou

W, H = 640, 480
COLOURS = {1: (200, 30), 2: (20, 220), 3: (120, 120)}   # green, blue of each person's pixels (red = their id)


def _person(x0, y0, x1, y1, score=0.9) -> PersonPose:
    """Keypoints spread over the box (the torso joints inside it) like a standing person."""
    xs = np.linspace(x0 + 2, x1 - 2, 17)
    ys = np.linspace(y0 + 2, y1 - 2, 17)[::-1]
    keypoints = np.stack([xs, ys], -1).astype(np.float32)
    return PersonPose(keypoints, np.full(17, score, np.float32), np.array([x0, y0, x1, y1], np.float32))


class Rectangles(Keypoint2DSource):
    """A person is a rectangle whose red value is its id. ``detect``: the most confident person in the region
    (as BlazePose: one per region); ``track``: the rectangle overlapping the last one returned (a landmark model
    fed the previous pose)."""

    def __init__(self):
        self.state = None

    def _people(self, rgb, region):
        x0, y0, x1, y1 = region if region is not None else (0, 0, rgb.shape[1], rgb.shape[0])
        crop = rgb[y0:y1, x0:x1, 0]
        return [_person(xs.min() + x0, ys.min() + y0, xs.max() + 1 + x0, ys.max() + 1 + y0)
                for pid in np.unique(crop[crop > 0]) for ys, xs in [np.nonzero(crop == pid)] if len(xs) > 200]

    def detect(self, rgb, roi=None):
        return sorted(self._people(rgb, roi), key=lambda p: -p.area)[:1]

    def track(self, rgb, window=None):
        people = self._people(rgb, window)
        if self.state is not None:
            people = sorted((p for p in people if box_iou(p.bbox, self.state.bbox) > 0),
                            key=lambda p: -box_iou(p.bbox, self.state.bbox))
        self.state = people[0] if people else None
        return self.state

    def reset_tracking(self):
        self.state = None


def _frame(boxes: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """Draw people back to front (later ones in front)."""
    frame = np.zeros((H, W, 3), np.uint8)
    for pid, (x0, y0, x1, y1) in boxes.items():
        frame[y0:y1, x0:x1] = (pid, *COLOURS[pid])
    return frame


def _run(frames, **kwargs):
    tracker = PeopleTracker(lambda threads: Rectangles(), W, H, search_every=5, **kwargs)
    for frame in frames:
        tracker.update(frame)
    return tracker, tracker.result()


def _x(track) -> np.ndarray:
    return track.positions[:, 0, 0]


def test_two_people_crossing_keep_their_identities():
    frames = []
    for k in range(40):
        a = (40 + 12 * k, 100, 120 + 12 * k, 300)        # person 1 walks right
        b = (520 - 12 * k, 110, 600 - 12 * k, 310)       # person 2 walks left, in front of person 1
        frames.append(_frame({1: a, 2: b}))
    tracker, tracks = _run(frames)
    assert [i for i, _ in tracks] == [0, 1]
    first = {int(np.rint(_x(t)[0])): t for _, t in tracks}
    one, two = first[42], first[522]                     # keypoint 0 sits 2 px inside the box
    seen_one, seen_two = ~np.isnan(_x(one)), ~np.isnan(_x(two))
    # wherever an identity is seen it is on its own person (person 1 is hidden while person 2 covers them)
    np.testing.assert_allclose(_x(one)[seen_one], 42 + 12 * np.flatnonzero(seen_one), atol=1)
    np.testing.assert_allclose(_x(two)[seen_two], 522 - 12 * np.flatnonzero(seen_two), atol=1)
    assert seen_two.all() and seen_one[:15].all() and seen_one[-12:].all()
    reference = np.stack([_person(40 + 12 * k, 100, 120 + 12 * k, 300).keypoints for k in range(40)])[None]
    reference = np.concatenate([reference, np.stack([_person(520 - 12 * k, 110, 600 - 12 * k, 310).keypoints
                                                     for k in range(40)])[None]])
    assert identity_switches(reference, np.stack([one.positions, two.positions]), 20.0) == 0


def test_a_person_who_leaves_and_comes_back_gets_their_identity_back_a_newcomer_does_not():
    frames = []
    for k in range(90):
        boxes = {}
        if k < 20 or k >= 70:                            # person 1 leaves for 50 frames, back elsewhere
            boxes[1] = (60, 100, 140, 300) if k < 20 else (400, 120, 480, 320)
        boxes[2] = (250, 100, 330, 300)                  # person 2 stays
        if k >= 40:
            boxes[3] = (500, 150, 560, 290)              # a newcomer
        frames.append(_frame(boxes))
    tracker, tracks = _run(frames)
    assert len(tracks) == 3
    ids = {int(np.rint(np.nanmin(_x(t)))): i for i, t in tracks}
    one = dict(tracks)[ids[62]]
    assert not np.isnan(_x(one)[:20]).any() and np.isnan(_x(one)[25:70]).all()
    assert np.nanmax(_x(one)) == pytest.approx(402, abs=1)   # the same identity back at its new place
    assert any(i == ids[62] for _, i in tracker.given_back)
    assert np.isnan(_x(dict(tracks)[ids[502]])[:40]).all()   # the newcomer: a new identity from frame 40


def test_appearance_tells_colours_apart():
    frame = _frame({1: (60, 100, 140, 300), 2: (250, 100, 330, 300)})
    a = appearance(frame, _person(60, 100, 140, 300))
    b = appearance(frame, _person(250, 100, 330, 300))
    assert a.sum() == pytest.approx(1) and similarity(a, a) == pytest.approx(1) and similarity(a, b) < 0.1


def test_more_people_than_max_people_warns_and_nobody_is_an_error(capsys):
    frames = [_frame({1: (60, 100, 140, 300), 2: (250, 100, 330, 300)})] * 3
    _, tracks = _run(frames, max_people=1)
    assert len(tracks) == 1 and "more people than --max_people 1" in capsys.readouterr().err
    tracker = PeopleTracker(lambda threads: Rectangles(), W, H)
    tracker.update(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(UserError, match="no person found"):
        tracker.result()


def test_identity_switches_counts_changes_of_the_paired_identity():
    reference = np.zeros((1, 6, 17, 2))
    tracked = np.full((2, 6, 17, 2), np.nan)
    tracked[0, :3] = 0.5
    tracked[1, 3:] = 0.5                                # identity 1 takes over at frame 3
    assert identity_switches(reference, tracked, 5.0) == 1
    tracked[1, 3:] = 50.0                               # too far: not paired, no switch
    assert identity_switches(reference, tracked, 5.0) == 0
