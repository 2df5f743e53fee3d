"""Streaming video input and output.

Frames are handled one at a time so memory stays constant in the video's length:

* :class:`VideoReader` decodes a file with OpenCV; frames are ``(H, W, 3)`` uint8 **RGB**; the frame rate,
  size and frame count come from the file. A thread decodes up to ``prefetch`` frames ahead (a bounded queue:
  the decoding overlaps the caller's work on the previous frame; memory stays constant).
* :class:`VideoWriter` writes RGB frames to an MP4 (OpenCV, ``mp4v``) or to an animated GIF, under a
  temporary name renamed to the final one when the video is complete (a killed or failed run never leaves an
  unreadable file under the final name, nor replaces a finished run's video). The GIF is
  written frame by frame: each frame is palette-encoded by Pillow on its own and its image block is appended
  to the open file with a local colour table, so no frame list is ever kept. A thread encodes up to
  ``queue`` frames behind the caller (bounded: the encoding overlaps the drawing of the next frame).
"""
from __future__ import annotations

import io
import math
import os
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import Iterator

import cv2
import numpy as np
from PIL import Image

from common.utils.errors import UserError
from common.utils.fileio import commit_temp_file, temp_file
from common.utils.threads import ahead

# FFmpeg's own messages (e.g. "moov atom not found") would precede our one-line error; silence them unless
# the user asked for a level.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@dataclass(frozen=True)
class VideoInfo:
    """Properties read from a video file: size in pixels, frames per second, number of frames (may be an
    estimate from the container; the reader stops at the real end)."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int


def warn_if_short(path: str | Path, decoded: int, expected: int, max_frames: int | None) -> bool:
    """Print one warning when decoding a file ended more than one frame before ``expected`` (the count the
    container states, or ``max_frames`` when smaller): a truncated or damaged file whose tail is skipped. One
    frame of slack: some containers round their estimate. Returns whether it warned."""
    if decoded >= expected - 1:
        return False
    print(f"warning: {path}: only {decoded} of the {expected} frames "
          f"{'asked for' if max_frames == expected else 'the file states'} could be decoded (truncated or damaged "
          "file); the rest is skipped", file=sys.stderr)
    return True


class VideoReader:
    """Iterate over a video's frames as RGB ``(H, W, 3)`` uint8 arrays, optionally only the first
    ``max_frames``. Each iteration re-opens the file, so the reader can be traversed more than once
    (the pipeline decodes once to detect and once to render)."""

    def __init__(self, path: str | Path, max_frames: int | None = None, prefetch: int = 2):
        self.path = Path(path)
        self.prefetch = prefetch
        if not self.path.is_file():
            raise UserError(f"video not found: {self.path}")
        capture = self._open()
        try:
            ok, frame = capture.read()
            if not ok or frame is None:
                raise UserError(f"{self.path}: cannot decode any frame (not a readable video)")
            fps = capture.get(cv2.CAP_PROP_FPS)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        if not np.isfinite(fps) or fps <= 0:
            raise UserError(f"{self.path}: the file states no valid frame rate")
        self.max_frames = max_frames
        if max_frames is not None:
            count = min(count, max_frames) if count > 0 else max_frames
        self.info = VideoInfo(str(self.path), int(frame.shape[1]), int(frame.shape[0]), float(fps), max(count, 0))
        self._warned_short = False

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise UserError(f"{self.path}: cannot open video (unsupported or corrupt file)")
        return capture

    def _decode(self) -> Iterator[np.ndarray]:
        capture = self._open()
        try:
            index = 0
            while self.max_frames is None or index < self.max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()
        self._warn_if_short(index)

    def _warn_if_short(self, decoded: int) -> None:
        if not self._warned_short:
            self._warned_short = warn_if_short(self.path, decoded, self.info.frame_count, self.max_frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from ahead(self._decode(), self.prefetch, "decode")


_END = object()  # end of the frames to encode
DISCARD_WAIT_S = 5.0  # longest wait for the encoding thread when a video is discarded (then it is left, a daemon)


class _GifStream:
    """Animated GIF written frame by frame (each frame with its own 256-colour local palette)."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        self.fh = open(path, "wb")
        self.delay = max(2, int(round(100.0 / fps)))  # hundredths of a second; browsers clamp < 2
        self.fh.write(b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0))
        # NETSCAPE2.0 application extension: loop forever.
        self.fh.write(b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00")

    def write(self, rgb: np.ndarray) -> None:
        image = Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                              dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        image.save(buffer, format="GIF")
        self.fh.write(_gif_frame_block(buffer.getvalue(), self.delay))

    def close(self) -> None:
        self.fh.write(b"\x3b")
        self.fh.close()


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """Position just after a chain of GIF data sub-blocks starting at ``pos``."""
    while data[pos] != 0:
        pos += data[pos] + 1
    return pos + 1


def _gif_frame_block(single: bytes, delay: int) -> bytes:
    """Turn a single-frame GIF file into one animation frame: graphic control extension (delay) + image
    descriptor whose global colour table becomes a local one + the LZW image data."""
    flags = single[10]
    table = b""
    pos = 13
    if flags & 0x80:
        size_bits = flags & 0x07
        table = single[pos:pos + 3 * (2 << size_bits)]
        pos += len(table)
    while single[pos] == 0x21:  # skip the single frame's own extensions
        pos = _skip_sub_blocks(single, pos + 2)
    if single[pos] != 0x2C:
        raise ValueError("unexpected GIF structure from the encoder")
    descriptor = bytearray(single[pos:pos + 10])
    pos += 10
    if descriptor[9] & 0x80:  # already a local table: keep it
        size_bits = descriptor[9] & 0x07
        table = single[pos:pos + 3 * (2 << size_bits)]
        pos += len(table)
    elif table:
        descriptor[9] = (descriptor[9] & 0x40) | 0x80 | (flags & 0x07)
    end = _skip_sub_blocks(single, pos + 1)  # LZW minimum code size byte, then data sub-blocks
    control = b"\x21\xf9\x04" + struct.pack("<BHB", 0x04, delay, 0) + b"\x00"
    return control + bytes(descriptor) + table + single[pos:end]


class VideoWriter:
    """Write RGB frames of a fixed size to ``path`` (``.mp4`` via OpenCV or ``.gif``), streaming.

    The frames go to a temporary file next to ``path`` (:func:`common.utils.fileio.temp_file`); :meth:`close`
    finishes the file and renames it to ``path``, :meth:`discard` deletes it (``path`` keeps what it held).
    As a context manager: closed on success, discarded when the block raises. Frames must be
    ``(height, width, 3)`` uint8 RGB. ``write`` hands a private copy of the frame to an encoding thread that
    runs at most ``queue`` frames behind (0: encode in the caller); an encoding error is raised by the next
    ``write`` or by ``close``.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, queue: int = 2):
        self.path = Path(path)
        self.size = (int(width), int(height))
        self.frames = 0
        self._gif: _GifStream | None = None
        self._cv: cv2.VideoWriter | None = None
        if not (math.isfinite(fps) and fps > 0):
            raise UserError(f"cannot write video {self.path}: frame rate must be > 0, got {fps:g}")
        if width < 2 or height < 2:
            raise UserError(f"cannot write video {self.path}: size {width}x{height} is too small")
        if self.path.suffix.lower() not in (".gif", ".mp4"):
            raise UserError(f"unsupported output video type {self.path.suffix!r}: use .mp4 or .gif")
        self._queue: Queue | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._abandon = threading.Event()  # discard: the encoding thread stops without emptying its queue
        fd, self._tmp = temp_file(self.path, keep_extension=True)
        os.close(fd)
        if self.path.suffix.lower() == ".gif":
            self._gif = _GifStream(self._tmp, width, height, fps)
        else:
            self._cv = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), self.size)
            if not self._cv.isOpened():
                self.discard()
                raise UserError(f"cannot write video {self.path} (no MP4 encoder in this OpenCV build?)")
        if queue > 0:
            self._queue = Queue(maxsize=queue)
            self._thread = threading.Thread(target=self._encode_loop, name="encode", daemon=True)
            self._thread.start()

    def _encode(self, frame: np.ndarray) -> None:
        """Encode one private frame (BGR for MP4, RGB for GIF)."""
        if self._gif is not None:
            self._gif.write(frame)
        else:
            self._cv.write(frame)

    def _encode_loop(self) -> None:
        while not self._abandon.is_set():
            try:
                frame = self._queue.get(timeout=0.1)
            except Empty:
                continue
            if frame is _END:
                return
            if self._error is None:
                try:
                    self._encode(frame)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller by write()/close()
                    self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape != (self.size[1], self.size[0], 3):
            raise ValueError(f"frame shape {rgb.shape} does not match writer size {self.size}")
        self._raise_error()
        # the private copy: BGR for OpenCV, the frame itself for the GIF stream
        frame = rgb.copy() if self._gif is not None else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if self._queue is None:
            self._encode(frame)
        else:
            self._queue.put(frame)
        self.frames += 1

    def _finish(self, abandon: bool = False) -> None:
        """Stop the encoding thread and finish the temporary file (a readable video of the frames so far).
        ``abandon`` (the video is discarded): the queued frames are dropped and the queue is not touched, so
        that an interrupted run ends even when the interrupt left the queue's lock held (an interrupt raised
        inside ``queue.Queue``); an encoding thread still busy after :data:`DISCARD_WAIT_S` is left, and so is
        its encoder (not finished under it)."""
        if self._thread is not None:
            if abandon:
                self._abandon.set()
                self._thread.join(DISCARD_WAIT_S)
                if self._thread.is_alive():
                    self._gif = self._cv = None
            else:
                self._queue.put(_END)
                self._thread.join()
            self._thread = None
        if self._gif is not None:
            self._gif.close()
            self._gif = None
        if self._cv is not None:
            self._cv.release()
            self._cv = None

    def close(self) -> None:
        """Finish the video and give it its final name (an encoding error discards it and is raised)."""
        if self._tmp is None:
            return
        self._finish()
        if self._error is not None:
            self.discard()
            self._raise_error()
        commit_temp_file(self._tmp, self.path)
        self._tmp = None

    def discard(self) -> None:
        """Stop and delete the temporary file; the final name keeps whatever it held before."""
        if self._tmp is None:
            return
        try:
            self._finish(abandon=True)
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
