"""Cost of following several people: the 2D stage (BlazePose + tracking) per frame with one person followed and
with everybody, side by side on the same frames, then the whole pipeline offline and live.

Frames ``--start``..``--start + --frames`` of the video (default: the demo video's stretch where the walker and
the passer-by are both in view) are decoded into memory once; then, alternated ``--repeats`` times, each tracker
processes them: the single-person tracker (``--people one``), and :class:`common.vision.people.PeopleTracker`
with ``max_people`` 1 and 2 (``--people all``), and with 2 on one thread (followers and a search's regions one
after the other: what the parallel workers gain). Printed: frames/s of each (median over the repeats), the CPU time
per frame (all the process's threads: less sensitive than the wall clock to other jobs on a shared machine),
people followed, and the cost of the extra person (ms per frame). Then the whole-frame search
(:func:`common.vision.tracking.find_people`, run every 15 frames by ``--people all``) on the first frame as it is
and with the people it finds painted over (:func:`common.vision.people.hide_people`, as the tracker searches), and
one BlazePose pass on the first search tile of the painted frame at its own size and downscaled to the person detector's 224 px input
(CPU ms, median of ``--repeats``).

``--search_every N ...``: :class:`common.vision.people.PeopleTracker` (max 2) from the video's first frame to
``--start + --frames`` with each interval between searches: the frame where each identity is first seen (how long a
newcomer waits) and the CPU ms per frame; with ``--end_to_end`` also ``inference.py --people all --search_every N``
offline and live for each N other than the default.

End to end (``--end_to_end``, from the video's first frame to ``--start + --frames``, so it includes frames with
one person before the second comes in): ``inference.py`` with its defaults offline (decode + 2D + lift + adjust,
the rendering of the output video left out), ``inference.py --live --unpaced`` (every frame as fast as the
pipeline goes; the 2D stage in its own thread, running ahead) and the same with ``--detect_ahead 0`` (the 2D
stage and the rest one after the other: what the overlap gains), each with ``--people one`` and ``--people all``,
alternated ``--repeats`` times (medians); live runs also print their CPU ms per frame (every thread). On a machine
shared with other jobs only the ratios measured side by side and the CPU times mean much; the load average is
printed.

    python -m bench.people [--video data/demo.mp4] [--start 50] [--frames 60] [--repeats 3] [--threads N]
        [--search_every 15 30] [--end_to_end]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common.inference.live import DETECT_AHEAD
from common.utils.errors import cli
from common.utils.validation import ArgumentParser, number
from common.vision.detectors import BlazePoseSource, available_cores
from common.vision.people import SEARCH_EVERY, PeopleTracker, hide_people
from common.vision.tracking import PersonTracker, find_people, search_regions
from common.vision.video import VideoReader


def frames_of(video: str, start: int, count: int) -> list[np.ndarray]:
    """Frames start..start + count - 1 of ``video`` (RGB)."""
    frames = [frame for index, frame in enumerate(VideoReader(video, start + count)) if index >= start]
    return frames


def time_single(frames: list[np.ndarray], threads: int | None) -> tuple[float, float, int]:
    """Wall and CPU seconds for the single-person tracker over ``frames`` (after its first frame: start-up
    excluded), and the number of frames with the person."""
    detector = BlazePoseSource(threads=threads)
    tracker = PersonTracker(detector, frames[0].shape[1], frames[0].shape[0])
    try:
        tracker.update(frames[0])
        start, cpu = time.perf_counter(), time.process_time()
        found = sum(tracker.update(frame) is not None for frame in frames[1:])
        return time.perf_counter() - start, time.process_time() - cpu, found
    finally:
        detector.close()


def time_people(frames: list[np.ndarray], max_people: int, threads: int | None,
                workers: int | None = None) -> tuple[float, float, float]:
    """Wall and CPU seconds for :class:`PeopleTracker` over ``frames`` (after its first frame), and the mean
    number of people followed per frame; ``workers``: its followers' threads (None: one per core)."""
    tracker = PeopleTracker(lambda t: BlazePoseSource(threads=threads if t is None else t),
                            frames[0].shape[1], frames[0].shape[0], max_people, workers=workers)
    try:
        tracker.update(frames[0])
        for identity in tracker.identities:  # build the followers' graphs before timing
            identity.follower.follow(frames[0])
        start, cpu = time.perf_counter(), time.process_time()
        seen = [len(tracker.update(frame)) for frame in frames[1:]]
        return time.perf_counter() - start, time.process_time() - cpu, float(np.mean(seen))
    finally:
        tracker.close()


def cpu_ms(work, repeats: int) -> float:
    """Median CPU milliseconds (every thread of the process) of ``work()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append((time.process_time() - start) * 1000)
    return float(np.median(times))


def search_costs(frame: np.ndarray, repeats: int) -> None:
    """Print the CPU cost of a whole-frame search with and without the people found painted over, and of one
    BlazePose pass on a tile of the painted frame at its size and downscaled to 224 px (module docstring)."""
    import cv2

    detector = BlazePoseSource(threads=1)
    try:
        people = find_people(detector, frame)
        painted = hide_people(frame, people)
        regions = search_regions(frame.shape[1], frame.shape[0])
        raw = cpu_ms(lambda: find_people(detector, frame), repeats)
        hidden = cpu_ms(lambda: find_people(detector, painted), repeats)
        x0, y0, x1, y1 = regions[1]
        tile = np.ascontiguousarray(painted[y0:y1, x0:x1])
        small = cv2.resize(tile, (224, 224), interpolation=cv2.INTER_AREA)
        at_size = cpu_ms(lambda: detector.detect(tile), repeats)
        downscaled = cpu_ms(lambda: detector.detect(small), repeats)
    finally:
        detector.close()
    print(f"whole-frame search ({len(regions)} regions, {len(people)} people in view), CPU ms: as the frame is "
          f"{raw:.0f}, with them painted over {hidden:.0f}; one BlazePose pass on a {x1 - x0} px tile of the painted "
          f"frame: {at_size:.1f} CPU ms, downscaled to 224 px first {downscaled:.1f}")


def search_intervals(video: str, frames: int, intervals: list[int], threads: int | None) -> None:
    """Print, for each interval between whole-frame searches, :class:`PeopleTracker` (max 2 people) over the first
    ``frames`` frames of ``video`` (streamed): the frame where each identity was first seen (a newcomer waits for
    the next search) and the CPU ms per frame (every thread of the process)."""
    print(f"search interval, frames 0-{frames - 1}:")
    print("| search every | first frame of each identity | CPU ms per frame |")
    print("|---|---|---|")
    for every in intervals:
        reader = VideoReader(video, frames)
        tracker = PeopleTracker(lambda t: BlazePoseSource(threads=threads if t is None else t),
                                reader.info.width, reader.info.height, 2, search_every=every)
        try:
            cpu = time.process_time()
            for frame in reader:
                tracker.update(frame)
            cpu = time.process_time() - cpu
            first = [int(np.flatnonzero(np.isfinite(track.positions).all(axis=(1, 2)))[0])
                     for _, track in tracker.result()]
        finally:
            tracker.close()
        print(f"| {every} | {', '.join(map(str, first))} | {cpu / tracker.frame * 1000:.1f} |")


def end_to_end(video: str, frames: int, people: str, threads: int | None, live: int | None,
               search_every: int = SEARCH_EVERY) -> tuple[float, float]:
    """Frames/s of ``inference.py`` with its defaults on the first ``frames`` frames and, live, the CPU ms per
    frame (every thread of the process over the same span; NaN offline); ``search_every``: ``--search_every``.
    ``live`` None: offline, frames over the decode + 2D + lift + adjust time (rendering left out); else ``--live --unpaced --detect_ahead live``, processed
    frames over the run's time (its loop: the detectors' graphs are built and loaded before it)."""
    import inference

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--max_frames", str(frames), "--people", people, "--no_progress", "--search_every", str(search_every)]
        argv += ["--detector_threads", str(threads)] if threads else []
        if live is not None:
            result = inference.run_cli(argv + ["--live", video, "--unpaced", "--detect_ahead", str(live),
                                               "--live_output", str(Path(tmp) / "p.jsonl")])
            return result.fps, result.cpu_seconds / result.frames_out * 1000
        result = inference.run_cli(argv + ["--video", video, "--output", tmp])
        seconds = sum(v for k, v in result.timer.seconds.items() if k != "render")
        return result.frames_rendered / seconds, float("nan")


def main(argv=None) -> None:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", default="data/demo.mp4")
    p.add_argument("--start", type=number(int, ge=0), default=50, help="first frame")
    p.add_argument("--frames", type=number(int, ge=2), default=60, help="frames timed (+1 warm-up)")
    p.add_argument("--repeats", type=number(int, ge=1), default=3)
    p.add_argument("--threads", type=number(int, ge=1), default=None, help="BlazePose threads (default: all cores)")
    p.add_argument("--search_every", type=number(int, ge=1), nargs="*", default=[],
                   help="also run --people all from frame 0 with these intervals between whole-frame searches")
    p.add_argument("--end_to_end", action="store_true",
                   help="also time inference.py offline and --live --unpaced, one person and everybody")
    args = p.parse_args(argv)
    frames = frames_of(args.video, args.start, args.frames + 1)
    size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
    serial = "--people all, max 2, one thread (followers and search regions one after the other)"
    runs: dict[str, list[tuple[float, float]]] = {"one person (--people one)": [], "--people all, max 1": [],
                                                  "--people all, max 2": [], serial: []}
    followed: dict[str, float] = {}
    for _ in range(args.repeats):  # alternated: the shared machine's speed drifts
        seconds, cpu, found = time_single(frames, args.threads)
        runs["one person (--people one)"].append((seconds, cpu))
        followed["one person (--people one)"] = found / (len(frames) - 1)
        for most in (1, 2):
            seconds, cpu, seen = time_people(frames, most, args.threads)
            runs[f"--people all, max {most}"].append((seconds, cpu))
            followed[f"--people all, max {most}"] = seen
        seconds, cpu, seen = time_people(frames, 2, 1, workers=1)
        runs[serial].append((seconds, cpu))
        followed[serial] = seen
    timed = len(frames) - 1
    print(f"{args.video} frames {args.start + 1}-{args.start + timed} ({size}), {args.repeats} alternated repeats, "
          f"BlazePose threads {args.threads or 'all'}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| tracker | people followed per frame | 2D stage frames/s (median) | ms per frame | CPU ms per frame |")
    print("|---|---|---|---|---|")
    median = {k: float(np.median([w for w, _ in v])) for k, v in runs.items()}
    cpu = {k: float(np.median([c for _, c in v])) for k, v in runs.items()}
    for name, seconds in median.items():
        print(f"| {name} | {followed[name]:.2f} | {timed / seconds:.1f} | {seconds / timed * 1000:.1f} | "
              f"{cpu[name] / timed * 1000:.1f} |")
    extra = (median["--people all, max 2"] - median["--people all, max 1"]) / timed * 1000
    extra_cpu = (cpu["--people all, max 2"] - cpu["--people all, max 1"]) / timed * 1000
    per_person = extra / max(followed["--people all, max 2"] - followed["--people all, max 1"], 1e-9)
    print(f"cost of the second person: {extra:.1f} ms per frame ({per_person:.1f} ms per extra person followed; "
          f"CPU {extra_cpu:.1f} ms); everybody vs one person: "
          f"{median['--people all, max 2'] / median['one person (--people one)']:.2f}x the time; in parallel vs one "
          f"after the other: {median[serial] / median['--people all, max 2']:.2f}x faster")
    search_costs(frames[0], max(args.repeats, 3))
    if args.search_every:
        search_intervals(args.video, args.start + args.frames, args.search_every, args.threads)
    if args.end_to_end:
        last = args.start + args.frames
        load = os.getloadavg()[0]
        runs_e2e = {"offline (decode + 2D + lift + adjust; no rendering)": None,
                    f"--live --unpaced (2D stage {DETECT_AHEAD} frame ahead in its own thread, the default)": DETECT_AHEAD,
                    "--live --unpaced --detect_ahead 0 (2D stage, then lift + adjust, one after the other)": 0}
        everies = [e for e in dict.fromkeys(args.search_every) if e != SEARCH_EVERY]
        rates: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.repeats):  # alternated, as above
            for name, live in runs_e2e.items():
                for people in ("one", "all"):
                    rates.setdefault((name, people), []).append(end_to_end(args.video, last, people, args.threads, live))
            for every in everies:
                for name, live in (("offline", None), ("live", DETECT_AHEAD)):
                    rates.setdefault((name, str(every)), []).append(
                        end_to_end(args.video, last, "all", args.threads, live, every))
        print(f"end to end, frames 0-{last - 1}, median of {args.repeats} alternated repeats, load average {load:.1f} "
              f"at the start, {os.getloadavg()[0]:.1f} at the end:")
        cores = available_cores()
        print(f"| run | --people one frames/s | --people all frames/s | CPU ms per frame, one / all | --people all "
              f"frames/s with the {cores} cores always busy (cores / CPU time) |")
        print("|---|---|---|---|---|")
        for name in runs_e2e:
            fps = [float(np.median([r for r, _ in rates[(name, p)]])) for p in ("one", "all")]
            cpu = [float(np.median([c for _, c in rates[(name, p)]])) for p in ("one", "all")]
            cpu_text = "-" if np.isnan(cpu[0]) else f"{cpu[0]:.1f} / {cpu[1]:.1f}"
            ceiling = "-" if np.isnan(cpu[1]) else f"{cores * 1000 / cpu[1]:.1f}"
            print(f"| {name} | {fps[0]:.1f} | {fps[1]:.1f} | {cpu_text} | {ceiling} |")
        if everies:
            print(f"--people all with other intervals between whole-frame searches (the default is {SEARCH_EVERY}), "
                  "same frames and repeats:")
            print("| --search_every | offline frames/s | --live --unpaced frames/s | live CPU ms per frame |")
            print("|---|---|---|---|")
            for every in everies:
                offline = float(np.median([r for r, _ in rates[("offline", str(every))]]))
                live_fps = float(np.median([r for r, _ in rates[("live", str(every))]]))
                live_cpu = float(np.median([c for _, c in rates[("live", str(every))]]))
                print(f"| {every} | {offline:.1f} | {live_fps:.1f} | {live_cpu:.1f} |")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
