"""Data set-up (as in the paper's repository; NOT a packaging script).

Default: build the embedded demo dataset into ``data/`` offline (``data_3d_demo.npz``, ``data_2d_demo_gt.npz``,
``data_2d_demo_detections.npz``, ``DEMO_DATA.md``; see :mod:`common.datasets.demo`), fetch the demo video
``data/demo.mp4`` (from the sports2d wheel on PyPI, cached under ``${BLAPOSE_CACHE:-~/.cache/blapose}``) and
print a summary. A second run finds the files current (``data/demo_manifest.json``: builder fingerprint and
file hashes) and does nothing; ``--force`` rebuilds.

``--download``: fetch the paper's published files (synthetic bone lengths, checkpoints, third-party
predictions; :mod:`common.models.published`) with gdown into ``data/``, ``checkpoint/`` and ``3D_prediction/``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.datasets.demo.build import build_demo_dataset
from common.datasets.demo.config import SMALL_CONFIG, DemoConfig
from common.datasets.demo.manifest import record_video, recorded_summary, stale_reason, video_stale_reason
from common.utils.device import add_device_argument, select_device
from common.utils.downloads import fetch_demo_video
from common.utils.errors import cli
from common.models.published import download_published
from common.utils.validation import ArgumentParser, check_output_dir, number


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description="Build the demo dataset and fetch the demo video, or download "
                                                 "the paper's published files (--download).")
    parser.add_argument("--data_dir", default="data", help="where the demo dataset and video go (default: data)")
    parser.add_argument("--force", action="store_true", help="rebuild / re-download even if files are present")
    parser.add_argument("--frames", type=number(int, ge=600), default=DemoConfig.frames,
                        help="frames per demo sequence at 50 fps, >= 600 so sequences hold 512-frame chunks "
                             "(default: %(default)s)")
    parser.add_argument("--small", action="store_true",
                        help="build the small test-sized variant (2 clips per subject, 640 frames) instead")
    parser.add_argument("--no_video", action="store_true", help="do not fetch the demo video")
    parser.add_argument("--download", action="store_true",
                        help="download the paper's published data/checkpoints/predictions with gdown instead")
    parser.add_argument("--root", default=".", help="project root for --download (default: current folder)")
    add_device_argument(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    select_device(args.device)  # validated for consistency; building the data runs on the CPU
    if args.download:
        check_output_dir(args.root, "--root")
        placed = download_published(args.root, force=args.force)
        print(f"downloaded {len(placed)} file(s) into {Path(args.root).resolve()}")
        return
    data_dir = check_output_dir(args.data_dir, "--data_dir")
    config = SMALL_CONFIG if args.small else DemoConfig(frames=args.frames)
    video = data_dir / "demo.mp4"
    data_reason = "--force" if args.force else stale_reason(data_dir, config)
    video_reason = None if args.no_video else "--force" if args.force else video_stale_reason(data_dir, video.name)
    if data_reason is None and video_reason is None:
        summary = recorded_summary(data_dir)
        print(f"demo data in {data_dir}/ is up to date (fingerprint {summary.fingerprint}); nothing to do "
              "(--force rebuilds)")
        print("\n".join(summary.lines()))
        return
    if data_reason is not None:
        print(f"{data_reason}: rebuilding the demo dataset")
        summary = build_demo_dataset(data_dir, config)
        print(f"wrote {data_dir}/data_3d_demo.npz, data_2d_demo_gt.npz, data_2d_demo_detections.npz, DEMO_DATA.md")
    else:
        summary = recorded_summary(data_dir)
    if video_reason is not None:
        print(f"{video_reason}: fetching the demo video")
        fetch_demo_video(video)
        record_video(data_dir, video.name)
        print(f"wrote {video}")
    print("\n".join(summary.lines()))


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
