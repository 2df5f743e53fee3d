"""Benchmark of ``inference.py --live``: the demo video as a live source, with and without the video overlay.

Five runs of the causal pipeline as ``inference.py --live`` runs it by default (BlazePose streaming mode, its
world landmarks as the lifter, running-median lengths from the population prior, per-frame adjustment), side by
side in one process:

* ``unpaced``: every frame, as fast as the pipeline goes: its frames/s is the pipeline's capacity;
* ``paced``: the file played at its own frame rate by the capture thread, as a camera would deliver it: frames
  the pipeline cannot keep up with are dropped (counted);

each without and with the annotated video (``+video``), and ``unpaced 1thr``: unpaced with BlazePose's models on
one thread (mediapipe's own setting; the landmarks are the same). Printed per run: frames in / processed / dropped,
end-to-end frames/s (processed frames / wall time), frames/s per stage (``capture`` is the time the pipeline
waited for a frame: decoding when unpaced, mostly idle waiting when paced), and the latency from frame capture
to pose out (median, 95th percentile).

  python -m bench.live [--video data/demo.mp4] [--max_frames N] [--threads 2] [--detector_threads N]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from common.utils.errors import UserError, cli
from common.inference.inference_pipeline import InferenceConfig, make_models
from common.inference.live import LIVE_STAGES, LiveConfig, LiveResult, run_live


WARM_UP = 30  # frames


def _poses(path: Path) -> list[dict]:
    """The JSON-lines records of a run without their latency (which differs from run to run)."""
    records = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return [{k: v for k, v in record.items() if k != "latency_ms"} for record in records]


def _run(config: LiveConfig) -> LiveResult:
    """One live run with ``inference.py --live``'s default lifter and length source (built afresh: they keep
    state from frame to frame)."""
    return run_live(config, *make_models(InferenceConfig(), live=True))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default="data/demo.mp4")
    p.add_argument("--max_frames", type=int, default=None)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--panel_height", type=int, default=480, help="height of the annotated video")
    p.add_argument("--detector_threads", type=int, default=None,
                   help="BlazePose's inference threads (default: every available core)")
    args = p.parse_args(argv)
    if not Path(args.video).is_file():
        raise UserError(f"video not found: {args.video} (run setup.py or pass --video)")
    torch.set_num_threads(max(1, args.threads))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        # a short warm-up first (libraries, caches, the models' first passes), so that no measured run pays it
        _run(LiveConfig(source=args.video, unpaced=True, max_frames=WARM_UP, jsonl=str(Path(tmp) / "warm.jsonl"),
                        detector_threads=args.detector_threads))
        for name, unpaced, overlay, threads in (
                ("unpaced", True, False, args.detector_threads), ("unpaced 1thr", True, False, 1),
                ("unpaced+video", True, True, args.detector_threads), ("paced", False, False, args.detector_threads),
                ("paced+video", False, True, args.detector_threads)):
            print(f"run {name} ...", file=sys.stderr, flush=True)
            rows[name] = _run(LiveConfig(
                source=args.video, unpaced=unpaced, max_frames=args.max_frames, jsonl=str(Path(tmp) / f"{name}.jsonl"),
                video_out=str(Path(tmp) / f"{name}.mp4") if overlay else None, panel_height=args.panel_height,
                detector_threads=threads))
        same = _poses(Path(tmp) / "unpaced.jsonl") == _poses(Path(tmp) / "unpaced 1thr.jsonl")
    print(f"{'run':>14} {'in':>5} {'done':>5} {'dropped':>7} {'end2end':>8} "
          + " ".join(f"{s:>8}" for s in LIVE_STAGES) + f" {'lat p50':>8} {'lat p95':>8}")
    for name, r in rows.items():
        fps = r.timer.fps()
        print(f"{name:>14} {r.frames_in:>5} {r.frames_out:>5} {r.dropped:>7} {r.fps:>8.1f} "
              + " ".join(f"{fps.get(s, float('nan')):>8.1f}" for s in LIVE_STAGES)
              + f" {np.percentile(r.latency_ms, 50):>6.1f}ms {np.percentile(r.latency_ms, 95):>6.1f}ms")
    base = rows["unpaced"].fps
    print(f"(frames/s; latency = capture -> pose out.) capacity with the video overlay / without = "
          f"{rows['unpaced+video'].fps / base:.2f}; BlazePose on all cores / on 1 thread = "
          f"{base / rows['unpaced 1thr'].fps:.2f} (JSON lines identical apart from latency: {same}); "
          f"goals: >= 50 frames/s without, >= 30 with the overlay")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
