"""common/vision/people.py: every person followed with an identity of their own (fake detectors on drawn frames)."""
import numpy as np
import pytest

from common.utils.errors import UserError
from common.vision.detectors import Keypoint2DSource, PersonPose
from common.vision.people import PeopleTracker, appearance, hide_people, identity_switches, similarity
from common.vision.tracking import box_iou, search_regions

W, H = 640, 480
COLOURS = {1: (200, 30), 2: (20, 220), 3: (120, 120)}   # green, blue of each person's pixels (red = their id)
TORSO_MARK = 255   # green value of a person's torso patch (the middle of their box, 25-45 % of its height down)


# A standing stick figure in box coordinates (0-1 across, 0-1 down), H36M joint order.
FIGURE_U = [0.5, 0.3, 0.3, 0.3, 0.7, 0.7, 0.7, 0.5, 0.5, 0.5, 0.5, 0.8, 0.9, 0.95, 0.2, 0.1, 0.05]
FIGURE_V = [0.5, 0.5, 0.75, 0.97, 0.5, 0.75, 0.97, 0.38, 0.25, 0.12, 0.03, 0.25, 0.38, 0.5, 0.25, 0.38, 0.5]


def _person(x0, y0, x1, y1, score=0.9) -> PersonPose:
    """A standing person's joints filling the box (pelvis, joint 0, at its centre)."""
    keypoints = np.stack([x0 + np.array(FIGURE_U) * (x1 - x0), y0 + np.array(FIGURE_V) * (y1 - y0)], -1)
    return PersonPose(keypoints.astype(np.float32), np.full(17, score, np.float32),
                      np.array([x0, y0, x1, y1], np.float32))


class Rectangles(Keypoint2DSource):
    """A person is a rectangle whose red value is its id; it is seen (with the box of its visible pixels) when at
    least 200 of its pixels and some of its torso patch show (a body, not a strip of one or the scraps around a
    painted-over one). ``detect``: the largest person seen in the region (as BlazePose: one per region); ``track``: the largest
    person seen overlapping the last one returned (a landmark model fed the previous pose, drawn to the more
    visible of two people who overlap; of two as visible, to the one it overlaps more)."""

    def __init__(self):
        self.state = None

    def _people(self, rgb, region):
        x0, y0, x1, y1 = region if region is not None else (0, 0, rgb.shape[1], rgb.shape[0])
        crop = rgb[y0:y1, x0:x1]
        people = []
        for pid in np.unique(crop[..., 0][crop[..., 0] > 0]):
            mine = crop[..., 0] == pid
            ys, xs = np.nonzero(mine)
            if len(xs) > 200 and (mine & (crop[..., 1] == TORSO_MARK)).any():
                people.append(_person(xs.min() + x0, ys.min() + y0, xs.max() + 1 + x0, ys.max() + 1 + y0))
        return people

    def detect(self, rgb, roi=None):
        return sorted(self._people(rgb, roi), key=lambda p: -p.area)[:1]

    def track(self, rgb, window=None):
        people = self._people(rgb, window)
        if self.state is not None:
            people = [p for p in people if box_iou(p.bbox, self.state.bbox) > 0]
        self.state = max(people, key=lambda p: (p.area, box_iou(p.bbox, self.state.bbox) if self.state else 0)) \
            if people else None
        return self.state

    def reset_tracking(self):
        self.state = None


def _frame(boxes: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """Draw people back to front (later ones in front), each with their torso patch."""
    frame = np.zeros((H, W, 3), np.uint8)
    for pid, (x0, y0, x1, y1) in boxes.items():
        frame[y0:y1, x0:x1] = (pid, *COLOURS[pid])
        cx, height = (x0 + x1) // 2, y1 - y0
        frame[y0 + height // 4:y0 + height * 9 // 20, cx - 6:cx + 6, 1] = TORSO_MARK
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
    one, two = first[80], first[560]                     # the pelvis (joint 0) sits at the box's centre
    seen_one, seen_two = ~np.isnan(_x(one)), ~np.isnan(_x(two))
    # wherever an identity is seen it is on its own person (person 1 is hidden while person 2 covers them; while
    # half hidden their visible half is what the fake detector reports)
    full_one = np.abs(40 + 12 * np.arange(40) - (520 - 12 * np.arange(40))) >= 80
    np.testing.assert_allclose(_x(one)[seen_one & full_one], 80 + 12 * np.flatnonzero(seen_one & full_one), atol=1)
    np.testing.assert_allclose(_x(two)[seen_two], 560 - 12 * np.flatnonzero(seen_two), atol=1)
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
    one = dict(tracks)[ids[100]]
    assert not np.isnan(_x(one)[:20]).any() and np.isnan(_x(one)[25:70]).all()
    assert np.nanmax(_x(one)) == pytest.approx(440, abs=1)   # the same identity back at its new place
    assert any(i == ids[100] for _, i in tracker.given_back)
    assert np.isnan(_x(dict(tracks)[ids[530]])[:40]).all()   # the newcomer: a new identity from frame 40


def test_a_person_behind_another_keeps_their_identity_while_visible_and_after_leaving_and_coming_back():
    """Person 1 stands still; person 2, in front and larger, walks past covering more and more of them, then all
    of them for a few frames, then less; then person 1 leaves for 15 frames and comes back elsewhere. Person 1's follower is
    drawn onto person 2 while they overlap (the fake's ``track``), so only the second look, with person 2
    painted over, finds them."""
    frames, truth = [], []
    for k in range(100):
        boxes = {}
        one = (300, 100, 350, 300) if k < 75 else (500, 100, 550, 300) if k >= 90 else None
        if one is not None:
            boxes[1] = one
        two = (480 - 4 * k, 90, 544 - 4 * k, 330)          # from x = 480 to the left, 4 px a frame
        boxes[2] = two
        frames.append(_frame(boxes))
        hidden = 0 if one is None else max(0, min(one[2], two[2]) - max(one[0], two[0])) / (one[2] - one[0])
        truth.append((one, hidden))
    tracker, tracks = _run(frames)
    assert [i for i, _ in tracks] == [0, 1]                # nobody else: no scraps of a painted person
    by_first_x = {int(np.rint(_x(t)[0])): (i, t) for i, t in tracks}
    (first_id, one), (_, two) = by_first_x[325], by_first_x[512]
    assert not np.isnan(_x(two)).any()
    for k, (box, hidden) in enumerate(truth):
        if box is not None and hidden < 0.5:               # visible, at least half of them: followed, and on them
            assert _x(one)[k] == pytest.approx(box[0] + 25, abs=13), k
        if box is None:
            assert np.isnan(_x(one)[k]), k
    assert np.isfinite(_x(one)[95:]).all() and any(i == first_id for _, i in tracker.given_back)
    reference = np.full((2, 100, 17, 2), np.nan)
    for k, (box, _) in enumerate(truth):
        reference[1, k] = _person(480 - 4 * k, 90, 544 - 4 * k, 330).keypoints
        if box is not None:
            reference[0, k] = _person(*box).keypoints
    assert identity_switches(reference, np.stack([one.positions, two.positions]), 30.0) == 0


def test_hide_people_paints_a_body_over_and_leaves_the_rest():
    frame = _frame({1: (60, 100, 110, 300), 2: (250, 100, 300, 300)})
    painted = hide_people(frame, [_person(60, 100, 110, 300)])
    assert (painted[:, 200:] == frame[:, 200:]).all()      # the other person untouched
    covered = (painted[100:300, 60:110, 0] != 1).mean()
    assert covered > 0.6 and Rectangles().detect(painted, (0, 0, 200, 480)) == []


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


@pytest.mark.slow
def test_followers_and_searches_in_parallel_give_the_same_people(real_clip):
    """Concurrency changes no number: on real frames with two people (the demo clip's frame beside its mirror
    image), BlazePose followers in parallel worker threads and the searches' regions spread over 2 graphs give
    bit-identical keypoints, confidences, world joints and identities to everything one after the other."""
    from common.vision.detectors import BlazePoseSource
    from common.vision.video import VideoReader

    frames = [np.concatenate([f, f[:, ::-1]], axis=1) for f in VideoReader(real_clip, max_frames=8)]

    def run(workers: int) -> tuple[list, bool]:
        tracker = PeopleTracker(lambda threads: BlazePoseSource(threads=workers if threads is None else threads),
                                frames[0].shape[1], frames[0].shape[0], search_every=4, workers=workers)
        for frame in frames:
            tracker.update(frame)
        tracks = tracker.result()
        parallel = tracker._pool is not None
        tracker.close()
        return tracks, parallel

    (one_by_one, sequential), (concurrent, parallel) = run(1), run(2)
    assert parallel and not sequential and len(concurrent) == len(one_by_one) >= 2
    seen = np.stack([np.isfinite(track.positions).all(axis=(1, 2)) for _, track in one_by_one])
    assert (seen.sum(axis=0) >= 2).sum() >= 2  # frames where two people were followed at once
    for (a, s), (b, t) in zip(one_by_one, concurrent):
        assert a == b
        for field in ("positions", "confidence", "world"):
            assert np.array_equal(getattr(s, field), getattr(t, field), equal_nan=True)


class _Built(Exception):
    """Raised by the stand-in tracker once built: the run stops there."""


def test_search_every_reaches_the_people_tracker_offline_and_live(monkeypatch, tmp_path):
    """``inference.py --search_every N`` builds the people tracker with N, offline and ``--live``; the default is
    :data:`common.vision.people.SEARCH_EVERY`; N < 1 is a one-line error."""
    import common.inference.keypoints_2d as keypoints_2d
    import common.vision.people as people
    import inference
    from common.vision.video import VideoWriter

    video = tmp_path / "blank.mp4"
    with VideoWriter(video, 64, 48, 25.0) as writer:
        for _ in range(3):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    built: list[int] = []

    def stand_in(*args, search_every, **kwargs):
        built.append(search_every)
        raise _Built

    monkeypatch.setattr(keypoints_2d, "PeopleTracker", stand_in)
    monkeypatch.setattr(people, "PeopleTracker", stand_in)
    for argv in (["--video", str(video), "--output", str(tmp_path / "out")],
                 ["--live", str(video), "--unpaced", "--live_output", str(tmp_path / "p.jsonl")]):
        for extra in ([], ["--search_every", "7"]):
            with pytest.raises(_Built):
                inference.run_cli(argv + ["--people", "all", "--no_progress"] + extra)
    assert built == [people.SEARCH_EVERY, 7, people.SEARCH_EVERY, 7]
    with pytest.raises(UserError, match="--search_every: must be >= 1"):
        inference.main(["--video", str(video), "--people", "all", "--search_every", "0"])


def test_a_followers_search_for_a_lost_person_runs_on_the_shared_search_detector():
    """A follower that loses its person looks again around them and then searches the regions nearby; both go to
    the tracker's search detector (its graphs on every core), through one lock, never to the follower's own
    detector (its streaming mode only). The identities are those of the person-leaves-and-comes-back scenario
    (the fake detector has no state)."""
    import threading
    import time

    from common.vision.people import SharedSearch

    calls = {}

    class Counting(Rectangles):
        def __init__(self, threads):
            super().__init__()
            self.threads = threads
            calls[id(self)] = [threads, 0]

        def detect(self, rgb, roi=None):
            calls[id(self)][1] += 1
            return super().detect(rgb, roi)

    frames = []
    for k in range(40):
        boxes = {2: (250, 100, 330, 300)}
        if k < 20 or k >= 30:                            # person 1 leaves for 10 frames, back elsewhere
            boxes[1] = (60, 100, 140, 300) if k < 20 else (400, 120, 480, 320)
        frames.append(_frame(boxes))
    tracker = PeopleTracker(lambda threads: Counting(threads), W, H, search_every=5)
    for frame in frames:
        tracker.update(frame)
    assert len(tracker.result()) == 2 and tracker.given_back
    searches = len(range(0, len(frames), 5))
    assert all(f.follower.searcher is tracker._search for f in tracker.identities)
    assert [n for threads, n in calls.values() if threads == 1] == [0] * (len(calls) - 1)  # followers: none
    whole_frame = searches * len(search_regions(W, H))  # the whole-frame searches' regions, one call each
    assert [n for threads, n in calls.values() if threads is None][0] > whole_frame  # + the lost person's

    inside, most = [0], [0]

    class Slow(Rectangles):
        def detect_regions(self, rgb, regions):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            inside[0] -= 1
            return []

    shared = SharedSearch(Slow())
    workers = [threading.Thread(target=shared.detect_regions, args=(frames[0], [(0, 0, W, H)])) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert most[0] == 1  # one call at a time
