"""Following one person through a video, filling short gaps and optional temporal smoothing.

:class:`PersonTracker` takes one frame at a time (streaming): while nobody is followed it searches the whole
frame (full view plus overlapping square tiles, so that small people far from the camera are found too) and
picks a person by the ``--person`` policy (``largest`` box, most ``central`` box, or the ``<index>``-th person
counted left to right); afterwards it follows them with the detector's streaming mode (BlazePose's landmark
model fed the previous frame's pose, no person detector) inside a window of 2.5 person sizes, re-centred (and
the streaming state reset) when the person comes within 4 % of the window's side from an edge that is not
the frame's border. A streaming
result counts only if it overlaps the person's last position; otherwise (or for detectors without a streaming
mode) it looks in a box around the person's last position with a fresh detection and accepts a
detection only if it overlaps that position, so it does not jump to a passer-by. When the person is lost it
searches again, in the search regions around where the person was last seen, for the candidate nearest to
that place within half a box size (growing by 20 % per lost frame, at most 1.5 box sizes); after ``reacquire_after`` lost frames
(the person left, or the video cuts) it picks a person by the policy again, as at the start.

Positions are (T, 17, 2) pixels, H36M order; missing frames are NaN until :func:`fill_gaps`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from common.vision.detectors import Keypoint2DSource, PersonPose
from common.utils.errors import UserError
from common.core.skeleton import NUM_JOINTS

ROI_SCALE = 1.6        # side of the follow box relative to the person's larger box side
MIN_ROI = 192          # pixels
TILE_FRACTION = 0.65   # search tile side relative to the frame's shorter side
NMS_OVERLAP = 0.5     # detections overlapping more (relative to the smaller box) are one person
TRACK_WINDOW_SCALE = 2.5  # side of the streaming-mode window relative to the person's larger box side
TRACK_MARGIN = 0.04       # re-centre the window when the person's box is this close (fraction of the side) to an edge


@dataclass
class Track2D:
    """One person's 2D keypoints over a video: positions (T, 17, 2) pixels (NaN = not found), confidence
    (T, 17), video size, and after :func:`fill_gaps` the filled gaps as (first, last) frame pairs
    (inclusive, frame indices of the track) plus the number of leading frames dropped. ``world``: the
    detector's 3D of the same pass (BlazePose world landmarks mapped to H36M: (T, 17, 3) metres, camera-aligned
    axes x right / y down / z forward, origin between the hips; NaN where the person was not found), or None."""

    positions: np.ndarray
    confidence: np.ndarray
    width: int
    height: int
    gaps: list[tuple[int, int]] = field(default_factory=list)
    start: int = 0
    world: np.ndarray | None = None  # (T, 17, 3) metres: the detector's own 3D of the same pass, if it has one

    def replace(self, **changes) -> "Track2D":
        """A copy with some fields changed (dataclasses.replace)."""
        return dataclasses.replace(self, **changes)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def observed(self) -> np.ndarray:
        """(T,) bool: the frames where the person was detected, i.e. every frame but those :func:`fill_gaps`
        filled in (``gaps``)."""
        observed = np.ones(len(self), bool)
        for first, last in self.gaps:
            observed[first:last + 1] = False
        return observed


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area (1 when one box lies inside the other)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / smaller) if smaller > 0 else 0.0


def search_regions(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """The whole frame plus overlapping square tiles (half-tile stride) covering it."""
    side = int(min(width, height) * TILE_FRACTION)
    regions = [(0, 0, width, height)]
    if side < MIN_ROI:
        return regions
    xs = np.linspace(0, width - side, max(1, int(np.ceil((width - side) / (side / 2))) + 1)).astype(int)
    ys = np.linspace(0, height - side, max(1, int(np.ceil((height - side) / (side / 2))) + 1)).astype(int)
    regions += [(int(x), int(y), int(x) + side, int(y) + side) for y in ys for x in xs]
    return regions


def find_people(detector: Keypoint2DSource, rgb: np.ndarray,
                area: tuple[float, float, float, float] | None = None) -> list[PersonPose]:
    """Everybody the detector finds over the search regions (only those that intersect ``area`` = x0, y0, x1,
    y1 pixels, if given); duplicates (a tile may see part of a person: boxes overlapping by more than half of
    the smaller one) are merged keeping the most confident."""
    regions = search_regions(rgb.shape[1], rgb.shape[0])
    if area is not None:
        regions = [r for r in regions if r[0] < area[2] and area[0] < r[2] and r[1] < area[3] and area[1] < r[3]]
    found = [p for people in detector.detect_regions(rgb, regions) for p in people]
    found.sort(key=lambda p: -p.score)
    kept: list[PersonPose] = []
    for person in found:
        if all(box_overlap(person.bbox, k.bbox) <= NMS_OVERLAP for k in kept):
            kept.append(person)
    return kept


def choose_person(people: list[PersonPose], policy: str, width: int, height: int) -> PersonPose | None:
    """Pick one person: ``largest`` box, most ``central`` box centre, or an integer index counted from the
    left (by box centre). Returns None if ``people`` is empty or the index does not exist (yet)."""
    if not people:
        return None
    if policy == "largest":
        return max(people, key=lambda p: p.area)
    if policy == "central":
        return min(people, key=lambda p: float(np.linalg.norm(p.centre - [width / 2, height / 2])))
    ordered = sorted(people, key=lambda p: p.centre[0])
    index = int(policy)
    return ordered[index] if index < len(ordered) else None


def parse_person_policy(text: str) -> str:
    """Validate ``--person``: largest, central or a non-negative integer."""
    if text in ("largest", "central") or (text.isdigit()):
        return text
    raise UserError(f"--person must be largest, central or a person index >= 0, got {text!r}")


class PersonTracker:
    """Follow one person frame by frame with a :class:`Keypoint2DSource`; see the module docstring."""

    def __init__(self, detector: Keypoint2DSource, width: int, height: int, policy: str = "largest",
                 min_score: float = 0.3, reacquire_after: int = 10, searcher: Keypoint2DSource | None = None):
        self.detector = detector
        # single-image detection: the fresh look around the person and the searches' regions (a detector whose
        # single-image mode gives the same people, possibly on more cores: common.vision.people shares one among its
        # followers); None: ``detector`` (whose streaming mode follows the person either way)
        self.searcher = detector if searcher is None else searcher
        self.width, self.height = width, height
        self.policy = parse_person_policy(policy)
        self.min_score = min_score
        self.last: PersonPose | None = None
        self.positions: list[np.ndarray] = []
        self.confidence: list[np.ndarray] = []
        self.world: list[np.ndarray] = []
        self.people_seen = 0
        self.lost = 0  # consecutive frames without the followed person
        self.reacquire_after = reacquire_after
        self.reacquired: list[int] = []  # frames where a person was picked again after a long loss
        self.window: tuple[int, int, int, int] | None = None  # streaming-mode window (None: to be placed)

    def _roi(self, bbox: np.ndarray, scale: float = ROI_SCALE) -> tuple[int, int, int, int]:
        """Square region of ``scale`` x the box's larger side (at least MIN_ROI) centred on it, kept inside
        the frame."""
        side = max(MIN_ROI, scale * max(bbox[2] - bbox[0], bbox[3] - bbox[1]))
        cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
        x0 = int(np.clip(cx - side / 2, 0, max(0, self.width - side)))
        y0 = int(np.clip(cy - side / 2, 0, max(0, self.height - side)))
        return x0, y0, int(min(self.width, x0 + side)), int(min(self.height, y0 + side))

    def _in_roi(self, rgb: np.ndarray) -> PersonPose | None:
        """The followed person inside the box around its last position. If the detector picks somebody else
        there (no overlap with the last position), that person is blacked out and the box searched again."""
        x0, y0, x1, y1 = roi = self._roi(self.last.bbox)
        found = self.searcher.detect(rgb, roi)
        for attempt in range(2):
            mine = [p for p in found if p.score >= self.min_score and box_iou(p.bbox, self.last.bbox) > 0.1]
            if mine:
                return max(mine, key=lambda p: box_iou(p.bbox, self.last.bbox))
            if not found or attempt:
                return None
            crop = rgb[y0:y1, x0:x1].copy()
            for other in found:
                bx0, by0, bx1, by1 = np.round(other.bbox - [x0, y0, x0, y0]).astype(int)
                crop[max(by0, 0):max(by1, 0), max(bx0, 0):max(bx1, 0)] = 0
            offset = np.array([x0, y0], np.float32)
            found = [PersonPose(p.keypoints + offset, p.confidence, p.bbox + np.tile(offset, 2), p.world)
                     for p in self.searcher.detect(crop)]
        return None

    def _streamed(self, rgb: np.ndarray) -> PersonPose | None:
        """The followed person from the detector's streaming mode inside the window, or None."""
        x0, y0, x1, y1 = self.window or (0, 0, 0, 0)
        bbox = self.last.bbox
        margin = TRACK_MARGIN * max(x1 - x0, y1 - y0)
        # a window edge on the frame's border needs no margin: the window could not move that way anyway
        inside = ((x0 == 0 or bbox[0] >= x0 + margin) and (y0 == 0 or bbox[1] >= y0 + margin)
                  and (x1 == self.width or bbox[2] <= x1 - margin) and (y1 == self.height or bbox[3] <= y1 - margin))
        if self.window is None or not inside:
            self.window = self._roi(bbox, TRACK_WINDOW_SCALE)
            self.detector.reset_tracking()
        person = self.detector.track(rgb, self.window)
        if person is not None and person.score >= self.min_score and box_iou(person.bbox, bbox) > 0.1:
            return person
        self.window = None  # lost or somebody else: the next streaming call starts afresh
        return None

    def follow(self, rgb: np.ndarray) -> PersonPose | None:
        """The followed person in the next frame (streaming mode, then a fresh detection around their last
        position, then a search nearby), or None; does not record anything (:meth:`update` does)."""
        person = self._streamed(rgb) or self._in_roi(rgb)
        if person is not None:
            return person
        size = max(self.last.bbox[2] - self.last.bbox[0], self.last.bbox[3] - self.last.bbox[1])
        reach = size * min(1.5, 0.5 * (1 + 0.2 * self.lost))  # grows while the person stays lost
        # only the search regions that can hold a person (of about the same size) whose centre is within reach
        (cx, cy), extent = self.last.centre, reach + size / 2
        area = (cx - extent, cy - extent, cx + extent, cy + extent)
        people = [p for p in find_people(self.searcher, rgb, area) if p.score >= self.min_score]
        near = [p for p in people if np.linalg.norm(p.centre - self.last.centre) < reach]
        return min(near, key=lambda p: float(np.linalg.norm(p.centre - self.last.centre))) if near else None

    def update(self, rgb: np.ndarray) -> PersonPose | None:
        """Process the next frame (H, W, 3) RGB; returns the followed person's pose or None (missing)."""
        if self.last is None or self.lost >= self.reacquire_after:
            people = [p for p in find_people(self.searcher, rgb) if p.score >= self.min_score]
            self.people_seen = max(self.people_seen, len(people))
            person = choose_person(people, self.policy, self.width, self.height)
            self.window = None
            if person is not None and self.last is not None:
                self.reacquired.append(len(self.positions))
        else:
            person = self.follow(rgb)
        self.lost = 0 if person is not None else self.lost + 1
        if person is not None:
            self.last = person
            self.positions.append(person.keypoints)
            self.confidence.append(person.confidence)
            self.world.append(person.world if person.world is not None else np.full((NUM_JOINTS, 3), np.nan, np.float32))
        else:
            self.positions.append(np.full((NUM_JOINTS, 2), np.nan, np.float32))
            self.confidence.append(np.zeros(NUM_JOINTS, np.float32))
            self.world.append(np.full((NUM_JOINTS, 3), np.nan, np.float32))
        return person

    def result(self) -> Track2D:
        """The raw track so far (missing frames NaN); raises UserError if nobody was ever found."""
        if self.last is None and self.positions and self.policy.isdigit() and self.people_seen:
            raise UserError(f"--person {self.policy}: only {self.people_seen} person(s) found in the video")
        require_people(len(self.positions), self.last is not None)
        world = np.stack(self.world)
        return Track2D(np.stack(self.positions), np.stack(self.confidence), self.width, self.height,
                       world=None if np.isnan(world).all() else world)


def require_people(frames: int, found: bool) -> None:
    """The one-line errors for a video without frames (``frames`` 0) or without anybody in them (not ``found``)."""
    if not frames:
        raise UserError("the video has no frames")
    if not found:
        raise UserError(f"no person found in any of the {frames} frames")


def missing_runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a (T,) bool array as inclusive (first, last) index pairs."""
    padded = np.concatenate([[False], missing, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def fill_gaps(track: Track2D, max_gap: int) -> Track2D:
    """Drop leading/trailing frames without the person and interpolate the missing frames in between
    linearly (per joint and coordinate). Gaps longer than ``max_gap`` frames are a UserError naming them.

    Returns a new track whose ``start`` is the first kept frame of the input, ``gaps`` the filled gaps
    (indices in the new track); filled frames get confidence 0.
    """
    missing = np.isnan(track.positions).any(axis=(1, 2))
    found = np.flatnonzero(~missing)
    require_people(len(missing), len(found) > 0)
    first, last = int(found[0]), int(found[-1])
    positions = track.positions[first:last + 1].copy()
    confidence = track.confidence[first:last + 1].copy()
    missing = missing[first:last + 1]
    gaps = missing_runs(missing)
    too_long = [(a, b) for a, b in gaps if b - a + 1 > max_gap]
    if too_long:
        a, b = too_long[0]
        raise UserError(f"the person is lost for {b - a + 1} frames (frames {first + track.start + a}-"
                        f"{first + track.start + b}), more than --max_gap {max_gap}")
    world = None if track.world is None else track.world[first:last + 1]
    if world is not None and np.isnan(world).any():  # the detector's 3D missing where its 2D is not: not usable
        world = None if np.isnan(world[~missing]).any() else world
    if gaps:
        t = np.arange(len(positions))
        before = np.maximum.accumulate(np.where(missing, 0, t))
        after = np.minimum.accumulate(np.where(missing, len(t) - 1, t)[::-1])[::-1]
        weight = ((t - before) / np.maximum(after - before, 1))[:, None, None]
        positions = ((1 - weight) * positions[before] + weight * positions[after]).astype(np.float32)
        if world is not None:
            world = ((1 - weight) * world[before] + weight * world[after]).astype(np.float32)
        confidence[missing] = 0.0
    return Track2D(positions, confidence, track.width, track.height, gaps, track.start + first, world)


def smooth_track(track: Track2D, sigma: float) -> Track2D:
    """Gaussian temporal smoothing of the positions (sigma in frames; 0 = unchanged), edges held."""
    if sigma <= 0:
        return track
    positions = gaussian_filter1d(track.positions, sigma, axis=0, mode="nearest").astype(np.float32)
    return track.replace(positions=positions)
