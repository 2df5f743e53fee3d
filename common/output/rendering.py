"""The output video of ``inference.py``: video frame + 2D keypoints beside the 3D skeleton before and after
adjustment, streamed one frame at a time (see :mod:`common.output.visualization` for the panels), plus PNGs of its
first, middle and last frames; with ``--people all`` (:func:`render_people`) everybody, one colour per identity.
The video gets its final name only once complete, the PNGs are written atomically (an interrupted run leaves the
previous files as they were)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from common.core.bones import bone_lengths
from common.utils.errors import UserError
from common.utils.fileio import atomic_write
from common.utils.timing import StageTimer
from common.vision.tracking import Track2D
from common.vision.video import VideoReader, VideoWriter
from common.output.visualization import FrameRenderer


def render_paths(output: str | Path, stem: str, gif: bool = False) -> dict[str, Path]:
    """The files :func:`render` writes: the video and the PNGs of its first, middle and last frames."""
    out = Path(output)
    return {"video": out / f"{stem}_blapose.{'gif' if gif else 'mp4'}",
            **{f"png_{pick}": out / f"{stem}_frame_{pick}.png" for pick in ("first", "middle", "last")}}


def _save_png(path: Path, rgb: np.ndarray) -> None:
    """Atomically write an (H, W, 3) uint8 RGB image as PNG."""
    import cv2

    ok, encoded = cv2.imencode(".png", rgb[..., ::-1])
    if not ok:
        raise UserError(f"cannot encode {path} as PNG")
    atomic_write(path, lambda fh: fh.write(encoded.tobytes()))


def render(output: str | Path, stem: str, reader: VideoReader | None, track: Track2D, before: np.ndarray,
           after: np.ndarray, fps: float, timer: StageTimer, gif: bool = False, panel_height: int = 480,
           progress: bool = True) -> tuple[dict[str, Path], int]:
    """Stream the output video (MP4 or GIF) and save its first, middle and last frames as PNGs.

    before/after: (T, 17, 3) metres, world-like frame, for the track's frames; frames of the video outside the
    track show "no person". Returns ({name: path}, number of frames rendered)."""
    out = Path(output)
    width = reader.info.width if reader is not None else track.width
    height = reader.info.height if reader is not None else track.height
    renderer = FrameRenderer(width, height, panel_height)
    total = reader.info.frame_count if reader is not None else len(track) + track.start
    before_len, after_len = bone_lengths(before), bone_lengths(after)
    interpolated = {track.start + t for a, b in track.gaps for t in range(a, b + 1)}
    frames = timer.timed("decode", reader) if reader is not None else iter([None] * total)

    def compose(index: int, frame: np.ndarray | None) -> np.ndarray:
        t = index - track.start
        inside = 0 <= t < len(track)
        status = ("2D interpolated" if index in interpolated else "2D detected") if inside else "no person"
        video_lines = [f"frame {index}  {status}"]
        lines_b, lines_a = [], []
        if inside:
            for lens, lines in ((before_len[t], lines_b), (after_len[t], lines_a)):
                lines.append(f"thigh L/R {lens[4] * 1000:.0f}/{lens[1] * 1000:.0f} mm")
                lines.append(f"upper arm L/R {lens[11] * 1000:.0f}/{lens[14] * 1000:.0f} mm")
        return renderer.render(frame, track.positions[t] if inside else None,
                               track.confidence[t] if inside else None,
                               before[t] if inside else None, after[t] if inside else None,
                               video_lines, lines_b, lines_a)

    return write_video(render_paths(out, stem, gif), renderer, frames, total, compose, fps, timer, progress)


def write_video(paths: dict[str, Path], renderer: FrameRenderer, frames: Iterable, total: int,
                compose: Callable[[int, np.ndarray | None], np.ndarray], fps: float, timer: StageTimer,
                progress: bool) -> tuple[dict[str, Path], int]:
    """Write ``compose(index, frame)`` for every frame to ``paths["video"]`` (renamed into place only when
    complete) and the first, middle and last composed frames to the ``png_*`` paths. frames: decoded (H, W, 3)
    RGB frames or None; total: their number when known (0: unknown). Returns ({name: path}, frames rendered)."""
    picks = {0: "first", max(total - 1, 0) // 2: "middle"}
    files = {"video": paths["video"]}
    composed, index = None, -1
    with VideoWriter(paths["video"], renderer.width, renderer.height, fps) as writer:
        for index, frame in enumerate(tqdm(frames, total=total or None, desc="render", disable=not progress)):
            with timer.measure("render", 1):
                composed = compose(index, frame)
                writer.write(composed)
                if index in picks:
                    files[f"png_{picks[index]}"] = paths[f"png_{picks[index]}"]
                    _save_png(files[f"png_{picks[index]}"], composed)
        if composed is None:  # inside the writer: an empty video never gets the final name
            raise UserError("no frame to render")
    files["png_last"] = paths["png_last"]
    _save_png(files["png_last"], composed)
    return files, index + 1


BODY_HEIGHT_M = 1.7  # metres per person height in pixels, to place people side by side in the 3D panels


def render_people(output: str | Path, stem: str, reader: VideoReader, people: list, fps: float, timer: StageTimer,
                  gif: bool = False, panel_height: int = 480, progress: bool = True) -> tuple[dict[str, Path], int]:
    """:func:`render` for ``--people all``: every person in their identity's colour. people:
    :class:`common.inference.inference_pipeline.PersonResult` list. In the 3D panels each person (root-relative
    lifters put everybody at the origin) is shifted along x by their pelvis' horizontal distance from the image
    centre, in metres at :data:`BODY_HEIGHT_M` per median person height in pixels (side by side as in the image,
    not a metric placement). Returns ({name: path}, number of frames rendered)."""
    renderer = FrameRenderer(reader.info.width, reader.info.height, panel_height)
    shifts = []
    for p in people:
        spans = p.track.positions[..., 1].max(axis=1) - p.track.positions[..., 1].min(axis=1)
        metres = BODY_HEIGHT_M / max(float(np.median(spans)), 1.0)
        shift = np.zeros((len(p.track), 1, 3), np.float32)
        shift[:, 0, 0] = (p.track.positions[:, 0, 0] - reader.info.width / 2) * metres
        shifts.append(shift)

    def compose(index: int, frame: np.ndarray) -> np.ndarray:
        shown = []
        for p, shift in zip(people, shifts):
            t = index - p.track.start
            if 0 <= t < len(p.track):
                shown.append({"identity": p.identity, "keypoints": p.track.positions[t],
                              "before": p.poses_before[t] + shift[t], "after": p.poses_after[t] + shift[t]})
        lines = [f"frame {index}  people " + (" ".join(f"#{s['identity']}" for s in shown) or "none")]
        return renderer.render_people(frame, shown, lines)

    return write_video(render_paths(output, stem, gif), renderer, timer.timed("decode", reader),
                       reader.info.frame_count, compose, fps, timer, progress)
