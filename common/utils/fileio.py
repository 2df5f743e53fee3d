"""Safe reading and writing of the project's data files.

Third-party pickles (``prediction.pkl``, ``action_dict.pkl``) and the pickled dicts inside VideoPose3D's npz
files are read with a *restricted unpickler* that only rebuilds numpy arrays, lists, dicts, tuples, numbers
and strings: a pickle that names any other callable is refused instead of executed.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from common.utils.errors import UserError

# (module, name) pairs a data pickle may reference: numpy array/dtype reconstruction and builtin containers.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside arrays, containers, numbers and strings."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' (only arrays, lists, dicts, "
                                     "tuples, numbers and strings are allowed)")


def restricted_loads(data: bytes) -> Any:
    return RestrictedUnpickler(io.BytesIO(data)).load()


def existing_file(path: str | Path, what: str = "file", hint: str = "") -> Path:
    """``path`` as a Path when it is a file; else the one-line UserError ``<what> not found: <path>`` (+ hint)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}{f' ({hint})' if hint else ''}")
    return path


def load_pickle(path: str | Path) -> Any:
    """Load a third-party pickle with :class:`RestrictedUnpickler`; problems become one-line UserErrors."""
    path = existing_file(path)
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise UserError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def _read_npy(raw: bytes) -> np.ndarray:
    """Parse one .npy member; object arrays go through the restricted unpickler."""
    fh = io.BytesIO(raw)
    version = np.lib.format.read_magic(fh)
    shape, fortran, dtype = np.lib.format._read_array_header(fh, version)  # noqa: SLF001 - public format
    if dtype.hasobject:
        return restricted_loads(fh.read())
    fh.seek(0)
    return np.lib.format.read_array(fh, allow_pickle=False)


def load_npz(path: str | Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """Load every member of an npz file (object members unpickled safely; a 0-d object array becomes its item).

    required: keys that must be present. Errors (missing, truncated, not a zip, wrong keys) are UserErrors.
    """
    path = existing_file(path)
    out: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    continue
                value = _read_npy(zf.read(member))
                if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
                    value = value.item()
                out[member[:-4]] = value
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: {exc}") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as exc:
        raise UserError(f"{path}: not a readable npz file ({exc})") from None
    missing = [k for k in required if k not in out]
    if missing:
        raise UserError(f"{path}: missing key(s) {missing}; found {sorted(out)}")
    return out


def load_nested(path: str | Path, key: str, layout: str) -> dict:
    """The dict stored under ``key`` of an npz file (e.g. ``positions_3d``: subject -> action -> array); anything
    else is the one-line UserError ``<path>: '<key>' must be a dict <layout>``."""
    table = load_npz(path, required=[key])[key]
    if not isinstance(table, dict):
        raise UserError(f"{path}: '{key}' must be a dict {layout}")
    return table


def load_npy(path: str | Path) -> np.ndarray:
    """A plain ``.npy`` array (no pickles); a missing or unreadable file is a one-line UserError."""
    path = existing_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a readable .npy array ({exc})") from None


def check_array(name: str, array: Any, shape: tuple[int | None, ...], finite: bool = True) -> np.ndarray:
    """Validate a numeric array's shape (``None`` = any size) and finiteness; returns it as float32.

    name: how the array is called in the one-line error (e.g. ``'S9/Walking camera 2'``).
    """
    try:
        arr = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError):
        raise UserError(f"{name}: not a numeric array") from None
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise UserError(f"{name}: expected shape {want}, got {arr.shape}")
    if finite and not np.isfinite(arr).all():
        raise UserError(f"{name}: contains NaN or inf values")
    return arr


# .<name>.<pid>.<random>.tmp, or .<name>.<pid>.<random>.tmp.<ext> for writers that need the extension (videos)
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
_OLD_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # written before the pid was added


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the ``.<name>.<pid>.<random>.tmp`` files that :func:`atomic_write` left in ``folder`` when its
    process was killed mid-write (the pid is no longer running). Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        stale = bool(match) and not _process_alive(int(match.group("pid")))
        if not match:
            old = _OLD_TEMP_NAME.match(entry.name)
            stale = bool(old) and os.path.exists(os.path.join(folder, old.group("target")))
        if stale and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def temp_file(path: str | Path, keep_extension: bool = False) -> tuple[int, Path]:
    """Create the temporary file a write of ``path`` goes to first: ``.<name>.<pid>.<random>.tmp`` in the same
    folder (``...tmp<ext>`` with ``keep_extension``, for writers that pick the format by extension), with the
    usual permissions. Temp files of killed writers in that folder are removed first. Returns (open fd, path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp" + (path.suffix if keep_extension else ""), dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    return fd, Path(tmp)


def commit_temp_file(tmp: str | Path, path: str | Path) -> None:
    """Flush a finished temp file of :func:`temp_file` to disk and rename it to ``path`` (atomic: ``path`` is
    the old file or the whole new one, never part of it)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write(path: str | Path, write) -> None:
    """Write a file atomically: ``write(file_object)`` into a :func:`temp_file` in the same folder, then
    rename."""
    path = Path(path)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz(path: str | Path, **arrays: Any) -> None:
    """Atomically write a compressed npz; non-array values (dicts, lists) are stored as pickled 0-d objects."""
    packed = {}
    for key, value in arrays.items():
        if isinstance(value, np.ndarray):
            packed[key] = value
        else:
            obj = np.empty((), dtype=object)
            obj[()] = value
            packed[key] = obj
    atomic_write(path, lambda fh: np.savez_compressed(fh, **packed))


def save_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=1).encode()))


def save_pickle(path: str | Path, obj: Any) -> None:
    """Atomically pickle plain data (arrays, lists, dicts) to ``path``."""
    atomic_write(path, lambda fh: pickle.dump(obj, fh, protocol=4))
