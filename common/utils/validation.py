"""Checks the scripts run before any work: one-line flag errors, numeric flag ranges, output paths (writable,
and never one of the run's inputs: :func:`check_inputs_survive`), and the units of poses and bone lengths
(metres) so that a file in millimetres cannot silently give wrong numbers."""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from common.utils.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors (unknown flag, bad value, out of range) are one-line UserErrors
    (``error: ...``, exit 2 under :func:`common.utils.errors.cli`) instead of a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")


def number(kind: type = float, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None) -> Callable[[str], int | float]:
    """An argparse ``type=`` that parses an int or a finite float and checks its range, e.g.
    ``number(float, gt=0)`` for a learning rate, ``number(float, ge=0, lt=1)`` for a dropout probability."""
    bounds = [(gt, ">", lambda v, b: v > b), (ge, ">=", lambda v, b: v >= b),
              (lt, "<", lambda v, b: v < b), (le, "<=", lambda v, b: v <= b)]
    wanted = " and ".join(f"{sign} {b:g}" for b, sign, _ in bounds if b is not None)

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if not all(check(value, b) for b, _, check in bounds if b is not None):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _nearest_existing(path: Path) -> Path:
    probe = Path(os.path.abspath(path))
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_can_create_in(folder: Path, flag: str, path: Path) -> None:
    """``folder`` (the nearest existing ancestor of what will be written) must be a writable directory."""
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: cannot write there, {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".blapose-write-check-", dir=folder)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | Path, flag: str) -> Path:
    """A folder a script will create or write into: it must be a folder (or not exist yet) somewhere writable.
    Checked before any work, so a bad ``-c``/``--out_dir``/``--output`` costs no computation."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder")
    _check_can_create_in(_nearest_existing(path), flag, path)
    return path


def check_output_file(path: str | Path, flag: str) -> Path:
    """A file a script will (atomically) write: not a folder or a device, in a folder that exists or can be
    created, and writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    if os.path.lexists(path) and not path.is_file():
        raise UserError(f"{flag} {path}: exists and is not a regular file")
    _check_can_create_in(_nearest_existing(path.parent), flag, path)
    return path


PathArg = str | os.PathLike | None


def _identity(path: str | os.PathLike) -> tuple[str, tuple[int, int] | None]:
    """(the absolute path with every link and ``..`` resolved, (device, inode) when it exists)."""
    real = os.path.realpath(path)
    try:
        stat = os.stat(real)
    except OSError:
        return real, None
    return real, (stat.st_dev, stat.st_ino)


def check_inputs_survive(inputs: Iterable[tuple[str, PathArg]], outputs: Iterable[tuple[str, PathArg]],
                         folders: Iterable[tuple[str, PathArg, Sequence[str]]] = ()) -> None:
    """Refuse, before any work, a run that would write over one of its own inputs.

    inputs: (flag, path) of every file the run reads (None: not given); outputs: (flag, path) of every file it
    writes; folders: (flag, folder, name patterns) for outputs whose names are only known as patterns (e.g. a
    trainer's ``epoch_*.bin``); the existing files there that match are outputs too. Paths are compared after
    resolving relative parts and symbolic links, and existing files by device and inode (hard links), so no
    spelling of a path gets an input overwritten. Two different output flags naming one file are refused too.
    A one-line UserError names both flags and paths."""
    inputs = [(flag, Path(path)) for flag, path in inputs if path not in (None, "")]
    outputs = [(flag, Path(path)) for flag, path in outputs if path not in (None, "")]
    for flag, folder, patterns in folders:
        if folder not in (None, "") and Path(folder).is_dir():
            outputs += [(flag, entry) for entry in sorted(Path(folder).iterdir())
                        if any(fnmatchcase(entry.name, pattern) for pattern in patterns)]
    read = [(flag, path, *_identity(path)) for flag, path in inputs if os.path.lexists(path)]
    written: list[tuple[str, Path, str, tuple[int, int] | None]] = []
    for flag, path in outputs:
        real, inode = _identity(path)
        for in_flag, in_path, in_real, in_inode in read:
            if real == in_real or (inode is not None and inode == in_inode):
                same = "" if os.path.abspath(path) == os.path.abspath(in_path) else " (the same file)"
                raise UserError(f"{flag} {path} would overwrite the input {in_flag} {in_path}{same}; write the "
                                "output elsewhere")
        for other_flag, other, other_real, other_inode in written:
            if other_flag != flag and (real == other_real or (inode is not None and inode == other_inode)):
                raise UserError(f"{flag} {path} and {other_flag} {other} name the same file; give each its own")
        written.append((flag, path, real, inode))


# A person's 16 Human3.6M bone lengths average about 0.26 m (adults; children less). A mean above this, in
# metres, is another unit (millimetres, centimetres). Small values are left alone: an untrained or collapsed
# model legitimately outputs them.
MEAN_BONE_MAX_M = 1.0
_TYPICAL_MEAN_BONE_M = 0.26
_UNITS = {3: "millimetres (divide by 1000)", 2: "centimetres (divide by 100)", 1: "decimetres (divide by 10)"}


def _unit_hint(mean_bone: float) -> str:
    power = round(math.log10(max(mean_bone, 1e-12) / _TYPICAL_MEAN_BONE_M))
    return f"; looks like {_UNITS[power]}" if power in _UNITS else ""


def check_length_units(name: str, lengths: np.ndarray) -> None:
    """Bone lengths ``(..., 16)`` must be metres: finite, every one > 0, and a median per-person mean of at
    most :data:`MEAN_BONE_MAX_M`. ``name`` says which file/sequence in the one-line error."""
    lengths = np.asarray(lengths, dtype=np.float64)
    if not np.isfinite(lengths).all():
        raise UserError(f"{name}: bone lengths contain NaN or inf")
    if lengths.size and lengths.min() <= 0:
        raise UserError(f"{name}: bone lengths must be positive metres, found {lengths.min():g}")
    if lengths.size:
        mean = float(np.median(lengths.reshape(-1, lengths.shape[-1]).mean(axis=1)))
        if mean > MEAN_BONE_MAX_M:
            raise UserError(f"{name}: mean bone length {mean:g} is too long for metres (at most "
                            f"{MEAN_BONE_MAX_M:g}){_unit_hint(mean)}")


def check_pose_units(name: str, poses: np.ndarray, parents: np.ndarray) -> None:
    """Poses ``(T, J, 3)`` must be metres: the median over frames of the mean bone length (bones from
    ``parents``, -1 for the root) must not exceed :data:`MEAN_BONE_MAX_M` (millimetres, centimetres). Small
    poses pass. Looks at <= 512 frames."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or not len(poses):
        return
    sample = poses[:: max(1, len(poses) // 512)]
    children = np.flatnonzero(np.asarray(parents) >= 0)
    bones = np.linalg.norm(sample[:, children] - sample[:, np.asarray(parents)[children]], axis=-1)
    mean = float(np.median(bones.mean(axis=1)))
    if not mean <= MEAN_BONE_MAX_M:
        raise UserError(f"{name}: median bone length {mean:g} is too long for metres (at most "
                        f"{MEAN_BONE_MAX_M:g}){_unit_hint(mean)}")
