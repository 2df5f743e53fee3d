"""Files fetched from PyPI with pip (the only registry the project uses) and the cache they are kept in.

* :func:`cache_dir` — ``$BLAPOSE_CACHE`` or ``~/.cache/blapose``: downloads, the Anny cache, test datasets;
* :func:`pip_download` — one distribution, ``pip download --no-deps``, reused when present;
* :func:`fetch_bvh` — the MocapBank BVH of the bvhtoolbox sdist (a demo-dataset motion source);
* :func:`fetch_demo_video` — ``data/demo.mp4`` from the sports2d wheel.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from common.utils.errors import UserError
from common.utils.fileio import atomic_write

BVH_SDIST = "bvhtoolbox==0.1.3"
BVH_MEMBER = "bvhtoolbox-0.1.3/tests/example_files/test_mocapbank.bvh"
VIDEO_WHEEL = "sports2d==0.8.34"
VIDEO_MEMBER = "Sports2D/Demo/demo.mp4"


def cache_dir() -> Path:
    """``$BLAPOSE_CACHE`` or ``~/.cache/blapose``."""
    return Path(os.environ.get("BLAPOSE_CACHE", Path.home() / ".cache" / "blapose")).expanduser()



def pip_download(requirement: str, dest: Path, sdist: bool, timeout: float = 300) -> Path:
    """``pip download --no-deps`` one distribution into ``dest`` (cached: reused when present)."""
    dest.mkdir(parents=True, exist_ok=True)
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}*" if not sdist else f"{name}-{version}.tar.gz"
    found = sorted(dest.glob(pattern))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        raise UserError(f"could not download {requirement} from PyPI (network unreachable?)") from None
    found = sorted(dest.glob(pattern))
    if not found:
        raise UserError(f"pip download of {requirement} produced no file in {dest}")
    return found[0]


def fetch_bvh() -> Path:
    """The MocapBank BVH from the bvhtoolbox sdist, extracted into the cache; returns its path."""
    target = cache_dir() / "test_mocapbank.bvh"
    if target.is_file():
        return target
    sdist = pip_download(BVH_SDIST, cache_dir() / "dists", sdist=True)
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(BVH_MEMBER)
        if member is None:
            raise UserError(f"{sdist} has no {BVH_MEMBER}")
        data = member.read()
    atomic_write(target, lambda fh: fh.write(data))
    return target


def fetch_demo_video(out_path: str | Path) -> Path:
    """Extract ``Sports2D/Demo/demo.mp4`` from the sports2d wheel (downloaded to the cache) to ``out_path``."""
    out_path = Path(out_path)
    wheel = pip_download(VIDEO_WHEEL, cache_dir() / "dists", sdist=False)
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(VIDEO_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"{wheel}: cannot extract {VIDEO_MEMBER} ({exc})") from None
    atomic_write(out_path, lambda fh: fh.write(data))
    return out_path
