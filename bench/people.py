"""Cost of following several people: the 2D stage (BlazePose + tracking) per frame with one person followed and
with everybody, side by side on the same frames.

Frames ``--start``..``--start + --frames`` of the video (default: the demo video's stretch where the walker and
the passer-by are both in view) are decoded into memory once; then, alternated ``--repeats`` times, each tracker
processes them: the single-person tracker (``--people one``), and :class:`common.vision.people.PeopleTracker`
with ``max_people`` 1 and 2 (``--people all``). Printed: frames/s of each (median over the repeats), people
followed, and the cost of the extra person (ms per frame). Lifting and adjustment with the defaults (BlazePose's
own 3D, lengths) cost under 1 ms a frame per person (``inference.py``'s stage timings) and decoding is the same for
all, so these rates bound ``--live --unpaced`` and the offline detect stage. On a machine shared with other jobs only the ratios measured side by side mean much.

    python -m bench.people [--video data/demo.mp4] [--start 50] [--frames 60] [--repeats 3] [--threads N]
"""
from __future__ import annotations

import sys
import time

import numpy as np

from common.utils.errors import cli
from common.utils.validation import ArgumentParser, number
from common.vision.detectors import BlazePoseSource
from common.vision.people import PeopleTracker
from common.vision.tracking import PersonTracker
from common.vision.video import VideoReader


def frames_of(video: str, start: int, count: int) -> list[np.ndarray]:
    """Frames start..start + count - 1 of ``video`` (RGB)."""
    frames = [frame for index, frame in enumerate(VideoReader(video, start + count)) if index >= start]
    return frames


def time_single(frames: list[np.ndarray], threads: int | None) -> tuple[float, int]:
    """Seconds for the single-person tracker over ``frames`` (after its first frame: start-up excluded), and
    the number of frames with the person."""
    detector = BlazePoseSource(threads=threads)
    tracker = PersonTracker(detector, frames[0].shape[1], frames[0].shape[0])
    try:
        tracker.update(frames[0])
        start = time.perf_counter()
        found = sum(tracker.update(frame) is not None for frame in frames[1:])
        return time.perf_counter() - start, found
    finally:
        detector.close()


def time_people(frames: list[np.ndarray], max_people: int, threads: int | None) -> tuple[float, float]:
    """Seconds for :class:`PeopleTracker` over ``frames`` (after its first frame), and the mean number of people
    followed per frame."""
    tracker = PeopleTracker(lambda t: BlazePoseSource(threads=threads if t is None else t),
                            frames[0].shape[1], frames[0].shape[0], max_people)
    try:
        tracker.update(frames[0])
        for identity in tracker.identities:  # build the followers' graphs before timing
            identity.follower.follow(frames[0])
        start = time.perf_counter()
        seen = [len(tracker.update(frame)) for frame in frames[1:]]
        return time.perf_counter() - start, float(np.mean(seen))
    finally:
        tracker.close()


def main(argv=None) -> None:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", default="data/demo.mp4")
    p.add_argument("--start", type=number(int, ge=0), default=50, help="first frame")
    p.add_argument("--frames", type=number(int, ge=2), default=60, help="frames timed (+1 warm-up)")
    p.add_argument("--repeats", type=number(int, ge=1), default=3)
    p.add_argument("--threads", type=number(int, ge=1), default=None, help="BlazePose threads (default: all cores)")
    args = p.parse_args(argv)
    frames = frames_of(args.video, args.start, args.frames + 1)
    size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
    runs: dict[str, list[float]] = {"one person (--people one)": [], "--people all, max 1": [],
                                    "--people all, max 2": []}
    followed: dict[str, float] = {}
    for _ in range(args.repeats):  # alternated: the shared machine's speed drifts
        seconds, found = time_single(frames, args.threads)
        runs["one person (--people one)"].append(seconds)
        followed["one person (--people one)"] = found / (len(frames) - 1)
        for most in (1, 2):
            seconds, seen = time_people(frames, most, args.threads)
            runs[f"--people all, max {most}"].append(seconds)
            followed[f"--people all, max {most}"] = seen
    timed = len(frames) - 1
    print(f"{args.video} frames {args.start + 1}-{args.start + timed} ({size}), {args.repeats} alternated repeats")
    print("| tracker | people followed per frame | 2D stage frames/s (median) | ms per frame |")
    print("|---|---|---|---|")
    median = {k: float(np.median(v)) for k, v in runs.items()}
    for name, seconds in median.items():
        print(f"| {name} | {followed[name]:.2f} | {timed / seconds:.1f} | {seconds / timed * 1000:.1f} |")
    extra = (median["--people all, max 2"] - median["--people all, max 1"]) / timed * 1000
    per_person = extra / max(followed["--people all, max 2"] - followed["--people all, max 1"], 1e-9)
    print(f"cost of the second person: {extra:.1f} ms per frame ({per_person:.1f} ms per extra person followed); "
          f"everybody vs one person: {median['--people all, max 2'] / median['one person (--people one)']:.2f}x "
          f"the time")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
