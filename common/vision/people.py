"""Following every person in a video, one identity each (``inference.py --people all``), causally.

:class:`PeopleTracker` takes one frame at a time. Each identity has its own follower
(:class:`common.vision.tracking.PersonTracker`'s :meth:`~common.vision.tracking.PersonTracker.follow`: the
detector's streaming mode in a window around the person, a fresh detection around their last position, a search
nearby) with its own detector instance, so that every person keeps their own streaming state; the fresh detections
and searches nearby run on the whole-frame search's detector (:class:`SharedSearch`: its graphs on every core, the
same people). Per frame:

1. every identity seen within the last :data:`FOLLOW_FOR` frames is followed;
2. two identities that land on the same person (boxes overlapping by more than :data:`SAME_PERSON` IoU, as when
   one person walks in front of the other) cannot both keep it: it goes to the identity whose appearance it
   matches better (ties: whose last box it overlaps more);
3. an identity left without a person whose last box touches somebody found in this frame (hidden behind them, or
   its follower drawn onto them) is followed again, afresh, in the frame with everybody found painted over
   (:func:`hide_people`), so that the detector, which sees one person per region, can only find what is left;
4. on the first frame and every ``search_every`` frames the whole frame is searched
   (:func:`common.vision.tracking.find_people`) with everybody found painted over; a person found there is
   either an identity given back (identity rule below), or a new identity when their box overlaps nobody found
   by more than :data:`NEW_PERSON_OVERLAP` of the smaller box (else they may be a part of somebody that the
   painting left visible: ignored), at most ``max_people`` (beyond, a warning and they are not followed).

Identity rule (who gets their identity back): a person who reappears is given the identity, among those not seen
in this frame, whose appearance (a hue/saturation histogram of the torso box, :func:`appearance`, averaged over
the frames they were seen) is most similar (histogram intersection, 0-1), if that similarity is at least
:data:`SAME_LOOK` and their box height is within a factor :data:`SIZE_RATIO` of the identity's last one; within
:data:`NEARBY_FOR` frames of losing them a looser :data:`SAME_LOOK_NEARBY` suffices when the person is found
within a reach of their last position (1 box height, growing by 10 % a frame). Otherwise they are a new identity.
Every decision uses only the current and past frames, so ``--live`` applies the same rule.

Positions are per identity (T, 17, 2) pixels on the video's frames (NaN where that person was not seen).
"""
from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from common.core.skeleton import NUM_JOINTS, PARENTS
from common.utils.errors import UserError
from common.vision.detectors import Keypoint2DSource, PersonPose, available_cores
from common.vision.tracking import PersonTracker, Track2D, box_iou, box_overlap, find_people, require_people

FOLLOW_FOR = 3          # frames an identity is still followed after it was last seen (then only searches find it)
SAME_PERSON = 0.5       # IoU above which two identities' boxes are one person
NEW_PERSON_OVERLAP = 0.3  # a new identity's box overlaps nobody found by more than this (of the smaller box)
LIMB_WIDTH = 0.4        # width of a painted-over limb, relative to the person's pelvis-thorax distance
HEAD_RADIUS = 0.35      # radius of a painted-over head, same unit
SAME_LOOK = 0.7         # histogram intersection that gives an identity back after a long absence
SAME_LOOK_NEARBY = 0.5  # ... shortly after losing them, near where they were
NEARBY_FOR = 30         # frames after the loss during which position counts
SIZE_RATIO = 1.5        # largest ratio of box heights of one person across a loss
HUE_BINS, SATURATION_BINS = 16, 8
APPEARANCE_MEMORY = 0.9  # weight of the past in the running mean of an identity's appearance
SEARCH_EVERY = 15       # frames between whole-frame searches (``inference.py --search_every``)

# Torso keypoints (H36M order): hips 1 and 4, shoulders 11 and 14.
TORSO = [1, 4, 11, 14]


def appearance(rgb: np.ndarray, person: PersonPose) -> np.ndarray | None:
    """A person's look: the hue (:data:`HUE_BINS`) x saturation (:data:`SATURATION_BINS`) histogram of the box
    around their shoulders and hips in ``rgb`` (H, W, 3) uint8, summing to 1; None when that box is empty."""
    import cv2

    torso = person.keypoints[TORSO]
    if np.isnan(torso).any():
        return None
    x0, y0 = np.floor(torso.min(axis=0)).astype(int)
    x1, y1 = np.ceil(torso.max(axis=0)).astype(int) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256]).ravel()
    total = hist.sum()
    return hist / total if total > 0 else None


def hide_people(rgb: np.ndarray, people: list[PersonPose]) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3) uint8 with each person's body painted over in the frame's mean colour: their
    torso (the hull of hips and shoulders), every bone as a band :data:`LIMB_WIDTH` x their pelvis-thorax distance
    wide and their head as a disc of :data:`HEAD_RADIUS` that distance. A flat body-shaped patch is not taken
    for a person (a black one is); a person behind keeps whatever of them is outside it."""
    import cv2

    hidden = np.zeros(rgb.shape[:2], np.uint8)
    for person in people:
        joints = np.nan_to_num(person.keypoints)
        torso = float(np.linalg.norm(joints[0] - joints[8]))
        points = np.round(joints).astype(np.int32)
        cv2.fillConvexPoly(hidden, cv2.convexHull(points[TORSO]), 1)
        width = max(2, int(round(LIMB_WIDTH * torso)))
        for child, parent in zip(range(1, NUM_JOINTS), PARENTS[1:]):
            cv2.line(hidden, tuple(points[child].tolist()), tuple(points[parent].tolist()), 1, width)
        cv2.circle(hidden, tuple(points[10].tolist()), max(1, int(round(HEAD_RADIUS * torso))), 1, -1)
    out = rgb.copy()
    out[hidden > 0] = rgb[::8, ::8].reshape(-1, 3).mean(axis=0).astype(np.uint8)
    return out


def similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Histogram intersection of two :func:`appearance` histograms (1 = the same colours; 0 if either is None)."""
    return 0.0 if a is None or b is None else float(np.minimum(a, b).sum())


def box_height(person: PersonPose) -> float:
    return float(person.bbox[3] - person.bbox[1])


@dataclass
class Identity:
    """One tracked person: id (0, 1, ... in order of first appearance), their follower, last pose and the frame
    it was seen, running appearance, and per-frame keypoints (pixels, NaN where not seen), confidence, world."""

    id: int
    follower: PersonTracker
    last_frame: int
    look: np.ndarray | None
    positions: list[np.ndarray] = field(default_factory=list)
    confidence: list[np.ndarray] = field(default_factory=list)
    world: list[np.ndarray] = field(default_factory=list)

    @property
    def last(self) -> PersonPose:
        return self.follower.last


class SharedSearch:
    """One detector's single-image detection (:meth:`~common.vision.detectors.Keypoint2DSource.detect`,
    :meth:`~common.vision.detectors.Keypoint2DSource.detect_regions`) shared by several threads, one call at a
    time: the whole-frame searches, every follower's fresh look around its person and its search near a lost
    person run on the search detector's graphs (one per core) instead of graphs of the follower's own. Single-image
    detection keeps no state, so the people found are the same (``tests/test_people.py``); a follower's search no
    longer holds up the frame on one core while the other waits, and no follower loads a second graph."""

    def __init__(self, detector: Keypoint2DSource):
        self.detector = detector
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> list[PersonPose]:
        with self._lock:
            return self.detector.detect(rgb, roi)

    def detect_regions(self, rgb: np.ndarray, regions: list[tuple[int, int, int, int]]) -> list[list[PersonPose]]:
        with self._lock:
            return self.detector.detect_regions(rgb, regions)


class PeopleTracker:
    """Follow everybody frame by frame; see the module docstring. ``make_detector(threads)`` builds a detector
    (one for the searches with ``threads=None``: every core; one per identity's follower with ``threads=1``: the
    followers of one frame run in parallel worker threads, one core each; the search's graphs and the first
    identity's follower are built and loaded before the first frame, :meth:`Keypoint2DSource.prepare`, later
    identities' followers when they appear); ``max_people``: most identities;
    ``search_every``: frames between searches for people not followed yet; ``workers``: most followers run at once
    (None: one per available core; 1: one after the other, the same numbers)."""

    def __init__(self, make_detector: Callable[[int | None], Keypoint2DSource], width: int, height: int,
                 max_people: int = 10, search_every: int = SEARCH_EVERY, min_score: float = 0.3,
                 workers: int | None = None):
        if max_people < 1 or search_every < 1 or (workers is not None and workers < 1):
            raise UserError(f"max_people, search_every and workers must be >= 1, got {max_people}, {search_every}, "
                            f"{workers}")
        self.workers = available_cores() if workers is None else workers
        self.make_detector = make_detector
        self.search_detector = make_detector(None)
        self.search_detector.prepare(regions=True)
        self._search = SharedSearch(self.search_detector)
        self._ready = make_detector(1)  # the first identity's follower, built before the first frame
        self._ready.prepare(tracking=True)
        self._pool: ThreadPoolExecutor | None = None  # the followers' workers
        self.width, self.height = width, height
        self.max_people, self.search_every, self.min_score = max_people, search_every, min_score
        self.identities: list[Identity] = []
        self.frame = 0
        self.turned_away = 0   # most people found at once beyond max_people
        self.given_back: list[tuple[int, int]] = []  # (frame, identity) where a person got their identity back

    def _new_identity(self, person: PersonPose, look: np.ndarray | None) -> Identity:
        detector = self._ready if self._ready is not None else self.make_detector(1)
        self._ready = None
        follower = PersonTracker(detector, self.width, self.height, min_score=self.min_score, searcher=self._search)
        follower.last = person
        identity = Identity(len(self.identities), follower, self.frame, look)
        missing = self.frame
        identity.positions = [np.full((NUM_JOINTS, 2), np.nan, np.float32)] * missing
        identity.confidence = [np.zeros(NUM_JOINTS, np.float32)] * missing
        identity.world = [np.full((NUM_JOINTS, 3), np.nan, np.float32)] * missing
        self.identities.append(identity)
        return identity

    def _give_back(self, person: PersonPose, look: np.ndarray | None, absent: list[Identity]) -> Identity | None:
        """The absent identity this person is (module docstring's rule), or None."""
        best, best_score = None, 0.0
        for identity in absent:
            ratio = box_height(person) / max(box_height(identity.last), 1.0)
            if not 1 / SIZE_RATIO <= ratio <= SIZE_RATIO:
                continue
            score = similarity(look, identity.look)
            lost = self.frame - identity.last_frame
            reach = box_height(identity.last) * (1 + 0.1 * lost)
            near = lost <= NEARBY_FOR and np.linalg.norm(person.centre - identity.last.centre) <= reach
            if score >= (SAME_LOOK_NEARBY if near else SAME_LOOK) and score > best_score:
                best, best_score = identity, score
        return best

    def _follow(self, identities: list[Identity], rgb: np.ndarray) -> dict[int, PersonPose]:
        """Each identity's follower on ``rgb`` (in up to ``workers`` parallel threads): id -> pose found."""
        parallel = len(identities) > 1 and self.workers > 1
        if parallel and self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="follower")
        poses = (self._pool.map(lambda i: i.follower.follow(rgb), identities) if parallel
                 else [i.follower.follow(rgb) for i in identities])
        return {i.id: person for i, person in zip(identities, poses) if person is not None}

    def _settle(self, found: dict[int, PersonPose], looks: dict[int, np.ndarray | None]) -> None:
        """Two identities on one person (IoU above :data:`SAME_PERSON`): the one whose appearance matches better
        (ties: whose last box it overlaps more) keeps them; the other is removed from ``found`` (in place) and its
        follower starts afresh."""
        def fit(k: int) -> tuple[float, float]:
            me = self.identities[k]
            return similarity(looks[k], me.look), box_iou(found[k].bbox, me.last.bbox)

        for a in sorted(found):
            for b in sorted(found):
                if a < b and a in found and b in found and box_iou(found[a].bbox, found[b].bbox) > SAME_PERSON:
                    loser = b if fit(a) >= fit(b) else a
                    del found[loser]
                    self.identities[loser].follower.window = None

    def update(self, rgb: np.ndarray) -> dict[int, PersonPose]:
        """Process the next frame (H, W, 3) RGB; returns identity -> pose of everybody seen in it."""
        followed = [i for i in self.identities if self.frame - i.last_frame <= FOLLOW_FOR]
        found = self._follow(followed, rgb)
        looks = {k: appearance(rgb, p) for k, p in found.items()}
        self._settle(found, looks)
        hidden = [i for i in followed if i.id not in found
                  and any(box_overlap(i.last.bbox, p.bbox) > 0 for p in found.values())]
        if hidden:  # followed again with everybody found painted over
            painted = hide_people(rgb, list(found.values()))
            for identity in hidden:
                identity.follower.window = None
            again = self._follow(hidden, painted)
            looks.update({k: appearance(rgb, p) for k, p in again.items()})
            found.update(again)
            self._settle(found, looks)
        if self.frame % self.search_every == 0:
            view = hide_people(rgb, list(found.values())) if found else rgb
            people = [p for p in find_people(self._search, view) if p.score >= self.min_score]
            fresh = [p for p in people if all(box_iou(p.bbox, q.bbox) <= SAME_PERSON for q in found.values())]
            for person in sorted(fresh, key=lambda p: -p.score):
                look = appearance(rgb, person)
                absent = [i for i in self.identities if i.id not in found]
                identity = self._give_back(person, look, absent)
                if identity is not None:
                    self.given_back.append((self.frame, identity.id))
                    identity.follower.window = None
                elif any(box_overlap(person.bbox, q.bbox) > NEW_PERSON_OVERLAP for q in found.values()):
                    continue  # part of somebody found that the painting left visible, or too entangled to tell
                elif len(self.identities) < self.max_people:
                    identity = self._new_identity(person, look)
                else:
                    self.turned_away = max(self.turned_away, len(people) - self.max_people)
                    continue
                found[identity.id] = person
                looks[identity.id] = look
        for identity in self.identities:
            person = found.get(identity.id)
            if person is None:
                identity.follower.lost += 1
                identity.positions.append(np.full((NUM_JOINTS, 2), np.nan, np.float32))
                identity.confidence.append(np.zeros(NUM_JOINTS, np.float32))
                identity.world.append(np.full((NUM_JOINTS, 3), np.nan, np.float32))
                continue
            identity.follower.last, identity.follower.lost, identity.last_frame = person, 0, self.frame
            look = looks.get(identity.id)
            if look is not None:
                identity.look = look if identity.look is None else \
                    APPEARANCE_MEMORY * identity.look + (1 - APPEARANCE_MEMORY) * look
            identity.positions.append(person.keypoints)
            identity.confidence.append(person.confidence)
            identity.world.append(person.world if person.world is not None
                                  else np.full((NUM_JOINTS, 3), np.nan, np.float32))
        self.frame += 1
        return found

    def result(self) -> list[tuple[int, Track2D]]:
        """(identity, raw track over every frame so far: NaN where not seen) per identity; UserError if nobody
        was ever found. Warns on stderr when more people were seen than ``max_people``."""
        require_people(self.frame, bool(self.identities))
        if self.turned_away:
            print(f"warning: up to {self.turned_away} more people than --max_people {self.max_people} were seen and "
                  "not followed", file=sys.stderr)
        tracks = []
        for identity in self.identities:
            world = np.stack(identity.world)
            tracks.append((identity.id, Track2D(np.stack(identity.positions), np.stack(identity.confidence),
                                                self.width, self.height,
                                                world=None if np.isnan(world).all() else world)))
        return tracks

    def close(self) -> None:
        """Release every detector and the workers."""
        if self._pool is not None:
            self._pool.shutdown()
        self.search_detector.close()
        if self._ready is not None:
            self._ready.close()
        for identity in self.identities:
            identity.follower.detector.close()


def identity_switches(reference: np.ndarray, tracked: np.ndarray, max_distance: float) -> int:
    """Identity switches of a tracker against a reference labelling (the CLEAR-MOT count): reference (R, T, J, 2)
    and tracked (P, T, J, 2) pixels, NaN where absent. Each frame the reference people and the tracked identities
    are paired one to one (Hungarian assignment on the mean joint distance, pairs under ``max_distance`` pixels);
    a switch is a reference person paired with another identity than the last time they were paired."""
    import warnings

    from scipy.optimize import linear_sum_assignment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames where a person is absent: all-NaN means
        distance = np.nanmean(np.linalg.norm(reference[:, None] - tracked[None], axis=-1), axis=-1)  # (R, P, T)
    distance = np.where(np.isfinite(distance) & (distance < max_distance), distance, np.inf)
    last = np.full(len(reference), -1)
    switches = 0
    for t in range(distance.shape[2]):  # one small assignment per frame
        rows, cols = linear_sum_assignment(np.where(np.isinf(distance[..., t]), 1e12, distance[..., t]))
        for r, c in zip(rows, cols):
            if np.isfinite(distance[r, c, t]):
                switches += int(last[r] not in (-1, c))
                last[r] = c
    return switches
