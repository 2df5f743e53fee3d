"""Benchmark of inference.py: frames per second per stage and end to end, and peak memory, for the demo video
and for the same video looped N times (default 10). Memory must not grow with the video's length.

Each run happens in a fresh child process so its peak resident memory (ru_maxrss) is its own. Without
--finetuned_ckpt the models are the paper's default sizes (lifter -arc 3,3,3,3,3 -ch 1024, Bi-GRU hidden 512)
with random weights: timing and memory do not depend on the weights.

  python -m bench.inference [--video data/demo.mp4] [--loops 10] [--finetuned_ckpt videopose_finetuned.bin -bi]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from common.utils.device import add_device_argument, select_device
from common.utils.errors import UserError, cli
from common.inference.inference_pipeline import STAGES, InferenceConfig, run
from common.vision.video import VideoReader, VideoWriter


def _this_script() -> list[str]:
    """How to run this file again in a child process: as a module when started with ``python -m``."""
    return ["-m", __spec__.name] if __spec__ is not None else [__file__]


def loop_video(source: str, loops: int, path: Path) -> int:
    """Write ``source`` repeated ``loops`` times to ``path`` (streaming); returns the frame count."""
    reader = VideoReader(source)
    frames = 0
    with VideoWriter(path, reader.info.width, reader.info.height, reader.info.fps) as writer:
        for _ in range(loops):
            for frame in reader:
                writer.write(frame)
                frames += 1
    return frames


def random_mix_checkpoint(path: Path) -> None:
    """The paper's default-sized mix model with random weights, saved in the published layout."""
    import torch

    from common.utils.checkpoint import save_checkpoint
    from common.models.length_model import BoneLengthModel
    from common.models.mix_model import MixModel
    from common.models.model import TemporalModel

    torch.manual_seed(0)
    mix = MixModel(BoneLengthModel(hidden_size=512, bidirectional=True),
                   TemporalModel(17, 2, 17, [3, 3, 3, 3, 3], channels=1024))
    save_checkpoint(path, {"model_pos": mix.state_dict(), "epoch": 0})


def child(args: argparse.Namespace) -> None:
    """One inference run; prints a JSON line with fps per stage, end-to-end fps and peak memory."""
    import torch

    torch.set_num_threads(max(1, args.threads))
    config = InferenceConfig(video=args.child, finetuned_ckpt=args.finetuned_ckpt, bidirectional=args.bidirectional,
                             output=args.output, device=select_device(args.device), progress=False)
    result = run(config)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": result.frames_rendered, "fps": result.timer.fps(),
                      "end_to_end": result.stats["end_to_end_fps"], "seconds": result.stats["seconds"],
                      "peak_mb": peak_mb}))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default="data/demo.mp4")
    p.add_argument("--loops", type=int, default=10)
    p.add_argument("--finetuned_ckpt", default=None)
    p.add_argument("-bi", "--bidirectional", action="store_true")
    p.add_argument("--threads", type=int, default=2, help="torch threads in the child runs")
    p.add_argument("--output", default=None, help="output folder of the runs (default: a temp folder)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_device_argument(p)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return
    if not Path(args.video).is_file():
        raise UserError(f"video not found: {args.video} (run setup.py or pass --video)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.finetuned_ckpt is None:
            args.finetuned_ckpt, args.bidirectional = str(tmp / "random_mix.bin"), True
            random_mix_checkpoint(Path(args.finetuned_ckpt))
            print("models: paper-sized mix model with random weights (-arc 3,3,3,3,3 -ch 1024, Bi-GRU 512)")
        looped = tmp / f"looped_{args.loops}x.mp4"
        print(f"writing {args.video} looped {args.loops}x ...", flush=True)
        loop_video(args.video, args.loops, looped)
        rows = {}
        for name, video in (("1x", args.video), (f"{args.loops}x", str(looped))):
            command = [sys.executable, *_this_script(), "--child", video, "--finetuned_ckpt", args.finetuned_ckpt,
                       "--threads", str(args.threads), "--device", args.device,
                       "--output", args.output or str(tmp / f"out_{name}")]
            if args.bidirectional:
                command.append("-bi")
            proc = subprocess.run(command, capture_output=True, text=True)
            if proc.returncode != 0:
                raise UserError(f"benchmark run {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
            rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'video':>6} {'frames':>7} " + " ".join(f"{s:>8}" for s in STAGES) + f" {'end2end':>8} {'peak MB':>8}")
    for name, row in rows.items():
        print(f"{name:>6} {row['frames']:>7} " + " ".join(f"{row['fps'].get(s, float('nan')):>8.1f}" for s in STAGES)
              + f" {row['end_to_end']:>8.2f} {row['peak_mb']:>8.0f}")
    first, last = rows["1x"], rows[f"{args.loops}x"]
    print(f"(frames per second per stage; decode counts both passes.) peak memory {args.loops}x / 1x = "
          f"{last['peak_mb'] / first['peak_mb']:.3f} for {last['frames'] / first['frames']:.0f}x the frames")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
