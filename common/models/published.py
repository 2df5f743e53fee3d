"""The paper's published files (Hsu & Jang's BLAPose repository) and where they go in this project's layout.

The authors' ``setup.py`` downloads three Google Drive folders with ``gdown.download_folder``; the table below
lists them with the files they hold (as named in the authors' README) and their target folder here:

* ``10CLfvL5izh-V_IXPlbVYhDSwklXuMkQh`` -> ``data/``: synthetic SMPL bone lengths (the Drive folder
  ``synthetic_lengths/``): ``bone_lengths_h36m.npz``, ``bone_lengths_smpl_neutral_all.npz``,
  ``bone_lengths_smpl_neutral_train.npz``;
* ``1dwCqZs8HCqlijyHXD0KYOnKqGsGuoi8E`` -> ``checkpoint/``: ``biGRU_all.bin``, ``biGRU_train.bin``,
  ``videopose_finetuned.bin`` (and whatever else the folder holds);
* ``16N9hnOAkmmnfZGix_kTFKyjoQbfYBF4v`` -> ``3D_prediction/``: ``<Model>/prediction.pkl`` and
  ``<Model>/action_dict.pkl`` for Anatomy3D, D3DP, DiffPose, FinePose, KTPFormer, MHFormer, MixSTE,
  PoseFormer, PoseFormerV2, STCFormer, VideoPose3D.

Human3.6M itself is not published there (see VideoPose3D's DATASETS.md), nor is VideoPose3D's
``pretrained_h36m_cpn.bin`` (from the VideoPose3D repository).
Downloads go to a temporary folder first and are moved into place afterwards, so an interrupted or offline
run never touches existing files.
"""
from __future__ import annotations

import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common.utils.errors import UserError


@dataclass(frozen=True)
class PublishedFolder:
    drive_id: str
    description: str
    target: str  # folder relative to the project root
    expected: tuple[str, ...]  # files named in the authors' README (relative to the target)

    @property
    def url(self) -> str:
        return f"https://drive.google.com/drive/folders/{self.drive_id}"


PREDICTION_MODELS = ("Anatomy3D", "D3DP", "DiffPose", "FinePose", "KTPFormer", "MHFormer", "MixSTE", "PoseFormer",
                     "PoseFormerV2", "STCFormer", "VideoPose3D")
PUBLISHED = [
    PublishedFolder("10CLfvL5izh-V_IXPlbVYhDSwklXuMkQh", "synthetic bone lengths (SMPL)", "data",
                    ("bone_lengths_h36m.npz", "bone_lengths_smpl_neutral_all.npz",
                     "bone_lengths_smpl_neutral_train.npz")),
    PublishedFolder("1dwCqZs8HCqlijyHXD0KYOnKqGsGuoi8E", "checkpoints", "checkpoint",
                    ("biGRU_all.bin", "biGRU_train.bin", "videopose_finetuned.bin")),
    PublishedFolder("16N9hnOAkmmnfZGix_kTFKyjoQbfYBF4v", "third-party 3D predictions", "3D_prediction",
                    tuple(f"{m}/{f}" for m in PREDICTION_MODELS for f in ("prediction.pkl", "action_dict.pkl"))),
]


def network_reachable(host: str = "drive.google.com", port: int = 443, timeout: float = 3.0) -> bool:
    """True if a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_published(root: str | Path = ".", force: bool = False, timeout: float = 3.0) -> list[Path]:
    """Fetch every :data:`PUBLISHED` folder with gdown into a temporary folder, then move its files into the
    project layout under ``root`` (existing files are kept unless ``force``). Returns the files placed.
    Offline: raises UserError before anything is written."""
    if not network_reachable(timeout=timeout):
        raise UserError("cannot reach drive.google.com (network unreachable); nothing was downloaded or changed")
    import gdown

    root = Path(root)
    placed = []
    for folder in PUBLISHED:
        with tempfile.TemporaryDirectory(prefix=".download_", dir=root) as tmp:
            try:
                files = gdown.download_folder(url=folder.url, output=tmp, quiet=False)
            except Exception as exc:  # gdown raises many exception types (HTTP, parsing, quota)
                raise UserError(f"download of {folder.description} ({folder.url}) failed: {exc}") from None
            if not files:
                raise UserError(f"download of {folder.description} ({folder.url}) returned no files")
            base = Path(tmp)
            children = list(base.iterdir())
            if len(children) == 1 and children[0].is_dir():  # gdown keeps the Drive folder's own name
                base = children[0]
            for src in sorted(p for p in base.rglob("*") if p.is_file()):
                dest = root / folder.target / src.relative_to(base)
                if dest.exists() and not force:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), dest)
                placed.append(dest)
    return placed
