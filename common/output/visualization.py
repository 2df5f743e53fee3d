"""Pictures of the inference output, drawn with OpenCV one frame at a time (constant memory).

A rendered frame is three panels side by side, all ``panel_height`` pixels high:

1. the video frame with the followed person's 2D keypoints (joint dots shaded by confidence);
2. the 3D skeleton *before* adjustment (the lifter's own bone lengths);
3. the 3D skeleton *after* adjustment (the predicted bone lengths).

3D panels draw poses given in the world-like frame of :data:`common.core.camera.WORLD_LIKE_FRAMES` (metres, x right,
y forward, z up, ground z = 0) with a fixed orthographic view (``azimuth`` about z, ``elevation`` above the
ground), centred horizontally on the pelvis, over a 0.5 m ground grid. Right-side bones are red, left-side
blue, the spine and head grey. :func:`plot_bone_lengths_over_time` writes the per-frame bone-length figure.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.output.plots import plot_bone_length_series
from common.core.skeleton import JOINTS_LEFT, JOINTS_RIGHT, NUM_BONES, PARENTS

RIGHT_COLOUR = (220, 40, 40)
LEFT_COLOUR = (40, 90, 230)
CENTRE_COLOUR = (90, 90, 90)
BONE_COLOURS = [RIGHT_COLOUR if j in JOINTS_RIGHT else LEFT_COLOUR if j in JOINTS_LEFT else CENTRE_COLOUR
                for j in range(1, len(PARENTS))]
PANEL_RANGE = 1.1  # metres shown either side of the pelvis (and 2 x this in height)
# one colour per identity (--people all), RGB, cycled
IDENTITY_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
                    (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128)]


def identity_colour(identity: int) -> tuple[int, int, int]:
    """The RGB colour of a person's identity in pictures (cycled over :data:`IDENTITY_COLOURS`)."""
    return IDENTITY_COLOURS[identity % len(IDENTITY_COLOURS)]


def _view_rotation(azimuth: float, elevation: float) -> np.ndarray:
    """(3, 3) rotation taking world-like points to view axes (u right, depth forward, up)."""
    a, e = np.radians(azimuth), np.radians(elevation)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return rx @ rz


class FrameRenderer:
    """Compose output frames of size (height, width) = (panel_height, video panel + 2 square panels).

    video_width/video_height: input video size in pixels (the video panel keeps its aspect ratio).
    """

    def __init__(self, video_width: int, video_height: int, panel_height: int = 480,
                 azimuth: float = 35.0, elevation: float = 15.0):
        self.panel = int(panel_height) // 2 * 2
        self.video_width = int(round(video_width * self.panel / video_height)) // 2 * 2
        self.scale = self.panel / video_height
        self.width = self.video_width + 2 * self.panel
        self.height = self.panel
        self.rotation = _view_rotation(azimuth, elevation)
        self.pixels_per_metre = self.panel / (2 * PANEL_RANGE)
        self.thickness = max(2, self.panel // 160)
        grid = np.arange(-1.5, 1.51, 0.5)
        starts = [(g, -1.5) for g in grid] + [(-1.5, g) for g in grid]
        ends = [(g, 1.5) for g in grid] + [(1.5, g) for g in grid]
        self.grid = np.array([[[*s, 0.0], [*e, 0.0]] for s, e in zip(starts, ends)])  # (L, 2, 3)

    def _project(self, points: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World-like points (..., 3) -> panel pixels (..., 2) and depth (...), centred on ``centre`` (x, y)."""
        shifted = points - np.array([centre[0], centre[1], 0.0])
        view = shifted @ self.rotation.T
        u = self.panel / 2 + view[..., 0] * self.pixels_per_metre
        v = self.panel * 0.92 - view[..., 2] * self.pixels_per_metre
        return np.stack([u, v], axis=-1), view[..., 1]

    def _panel_3d(self, pose: np.ndarray | None, title: str, lines: list[str]) -> np.ndarray:
        canvas = np.full((self.panel, self.panel, 3), 250, np.uint8)
        centre = pose[0] if pose is not None else np.zeros(3)
        grid, _ = self._project(self.grid, centre)
        for a, b in np.round(grid).astype(np.int32):
            cv2.line(canvas, tuple(a), tuple(b), (205, 205, 205), 1, cv2.LINE_AA)
        if pose is not None:
            pixels, depth = self._project(pose, centre)
            pixels = np.round(pixels).astype(np.int32)
            bone_depth = (depth[1:] + depth[PARENTS[1:]]) / 2
            for bone in np.argsort(-bone_depth):  # far bones first
                child = bone + 1
                cv2.line(canvas, tuple(pixels[PARENTS[child]]), tuple(pixels[child]), BONE_COLOURS[bone],
                         self.thickness + 1, cv2.LINE_AA)
            for point in pixels:
                cv2.circle(canvas, tuple(point), self.thickness + 1, (30, 30, 30), -1, cv2.LINE_AA)
        self._text(canvas, [title] + lines)
        return canvas

    def _panel_people_3d(self, poses: list[tuple[np.ndarray, tuple[int, int, int]]], title: str) -> np.ndarray:
        """Several people's poses (17, 3) world-like metres, each in its colour, in one panel wide enough for all
        (centred on the mean pelvis)."""
        canvas = np.full((self.panel, self.panel, 3), 250, np.uint8)
        pelvises = np.array([pose[0] for pose, _ in poses]) if poses else np.zeros((1, 3))
        centre = pelvises.mean(axis=0)
        reach = max(PANEL_RANGE, float(np.abs(pelvises[:, :2] - centre[:2]).max()) + 0.8)
        scale = self.pixels_per_metre
        self.pixels_per_metre = self.panel / (2 * reach)
        try:
            grid, _ = self._project(self.grid * reach / PANEL_RANGE, centre)
            for a, b in np.round(grid).astype(np.int32):
                cv2.line(canvas, tuple(a), tuple(b), (205, 205, 205), 1, cv2.LINE_AA)
            for pose, colour in sorted(poses, key=lambda pc: -float(self._project(pc[0][:1], centre)[1][0])):
                pixels = np.round(self._project(pose, centre)[0]).astype(np.int32)
                for child in range(1, len(PARENTS)):
                    cv2.line(canvas, tuple(pixels[PARENTS[child]]), tuple(pixels[child]), colour, self.thickness,
                             cv2.LINE_AA)
        finally:
            self.pixels_per_metre = scale
        self._text(canvas, [title])
        return canvas

    def render_people(self, frame: np.ndarray | None, people: list[dict], video_lines: list[str]) -> np.ndarray:
        """One output frame with several people, each in their identity's colour (:func:`identity_colour`):
        the video with every person's 2D skeleton and id, then everybody's 3D before and after adjustment in one
        scene each. people: dicts with ``identity``, ``keypoints`` (17, 2) pixels, ``before``/``after`` (17, 3)
        world-like metres (placed side by side by the caller)."""
        canvas = self._panel_video(frame, None, None, video_lines)
        for person in people:
            colour = identity_colour(person["identity"])
            pixels = np.round(person["keypoints"] * self.scale).astype(np.int32)
            for child in range(1, len(PARENTS)):
                cv2.line(canvas, tuple(pixels[PARENTS[child]]), tuple(pixels[child]), colour, self.thickness,
                         cv2.LINE_AA)
            top = pixels[:, 1].min() - 6
            cv2.putText(canvas, f"#{person['identity']}", (int(pixels[:, 0].min()), int(max(top, 12))),
                        cv2.FONT_HERSHEY_SIMPLEX, self.panel / 900, colour, max(1, self.thickness), cv2.LINE_AA)
        return np.concatenate([
            canvas,
            self._panel_people_3d([(p["before"], identity_colour(p["identity"])) for p in people], "before adjustment"),
            self._panel_people_3d([(p["after"], identity_colour(p["identity"])) for p in people], "after adjustment"),
        ], axis=1)

    def _text(self, canvas: np.ndarray, lines: list[str]) -> None:
        """Black text with a white outline (readable on video and on the 3D panels)."""
        size = self.panel / 900
        weight = max(1, int(2 * size))
        for i, line in enumerate(lines):
            origin = (8, int(48 * size * (i + 1)))
            cv2.putText(canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255), weight + 3,
                        cv2.LINE_AA)
            cv2.putText(canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), weight, cv2.LINE_AA)

    def _panel_video(self, frame: np.ndarray | None, keypoints: np.ndarray | None,
                     confidence: np.ndarray | None, lines: list[str]) -> np.ndarray:
        if frame is None:
            canvas = np.full((self.panel, self.video_width, 3), 40, np.uint8)
        else:
            canvas = cv2.resize(frame, (self.video_width, self.panel), interpolation=cv2.INTER_LINEAR)
        if keypoints is not None:
            pixels = np.round(keypoints * self.scale).astype(np.int32)
            for bone in range(NUM_BONES):
                child = bone + 1
                cv2.line(canvas, tuple(pixels[PARENTS[child]]), tuple(pixels[child]), BONE_COLOURS[bone],
                         self.thickness, cv2.LINE_AA)
            shade = (255 * np.clip(confidence if confidence is not None else 1.0, 0, 1)).astype(np.uint8)
            for point, s in zip(pixels, np.broadcast_to(shade, len(pixels))):
                cv2.circle(canvas, tuple(point), self.thickness + 1, (255, int(s), 0), -1, cv2.LINE_AA)
        self._text(canvas, lines)
        return canvas

    def render(self, frame: np.ndarray | None, keypoints: np.ndarray | None, confidence: np.ndarray | None,
               before: np.ndarray | None, after: np.ndarray | None, video_lines: list[str],
               before_lines: list[str], after_lines: list[str]) -> np.ndarray:
        """One output frame (height, width, 3) uint8 RGB.

        frame: (H, W, 3) RGB video frame or None (grey); keypoints: (17, 2) video pixels; confidence (17,);
        before/after: (17, 3) metres, world-like frame; *_lines: text written on each panel. Pass None for
        the pose arrays on frames without the person.
        """
        return np.concatenate([
            self._panel_video(frame, keypoints, confidence, video_lines),
            self._panel_3d(before, "before adjustment", before_lines),
            self._panel_3d(after, "after adjustment", after_lines),
        ], axis=1)


def plot_bone_lengths_over_time(before: np.ndarray, after: np.ndarray, fps: float, path: str | Path,
                                title: str = "") -> Path:
    """PNG with one small plot per bone: length (mm) against time (s), before and after adjustment.

    before: (T, 16) metres; after: (T, 16) or (16,) metres (constant predicted lengths).
    """
    before = np.asarray(before)
    after = np.broadcast_to(np.asarray(after), before.shape)
    return plot_bone_length_series({"before": before, "after": after}, path, fps=fps,
                                   title=title or "bone lengths per frame: lifter (before) and adjusted (after)")
