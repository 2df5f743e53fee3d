"""Where the bone lengths of the adjustment come from (``inference.py --lengths``).

* ``model`` (the paper): the bone-length model reads the whole 2D sequence and predicts 16 lengths in the
  Human3.6M joint convention (a mix model brings its own; else ``--length_ckpt``).
* ``self``: the lifter's own poses, one robust length per bone over the sequence (median), left/right averaged
  (:func:`median_lengths`).
* ``prior``: ``self``, with the four limbs' proportions combined with a population prior of limb proportions in
  the lifter's joint convention (:func:`prior_lengths`; prior from Anny bodies,
  ``data/bone_length/generate_limb_prior.py``, moved into BlazePose's landmark convention by an offset measured on
  triangulated BlazePose 2D, ``data/bone_length/blazepose_convention_offset.py``). A single view measures a limb
  poorly when it is seldom seen across the image plane; the combination weighs the sequence's own evidence by its
  per-frame spread.
* ``file``: lengths the user measured (:func:`read_lengths_file`, format below).

Lengths are only meaningful in the joint convention of the lifter they adjust (see :mod:`common.inference.lifters`).

Lengths file (``--lengths file --lengths_file F``), metres:

* JSON: ``{"units": "metres", "lengths": {"l_thigh": 0.41, "r_thigh": 0.41, "calf": 0.38, ...}}`` or the
  ``lengths`` mapping alone; names from :data:`common.core.skeleton.BONE_NAMES`, or a side-less name (``hip``,
  ``thigh``, ``calf``, ``shoulder``, ``upper_arm``, ``lower_arm``) for both sides; or a list of the 16 lengths in
  ``BONE_NAMES`` order; or ``inference.py``'s ``<video>_bone_lengths.json`` (its ``predicted`` lengths);
* npz: ``lengths`` (16,) in ``BONE_NAMES`` order, or one scalar per bone name as above; npy: a (16,) array.

Bones the file does not name take the ``self`` estimate (printed). Unknown names, values that are not metres
(outside 0.02-1.0 m) or a ``units`` other than metres are one-line errors.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from common.core.bones import average_symmetric, bone_lengths
from common.core.camera import normalize_screen_coordinates
from common.utils.errors import UserError
from common.utils.fileio import existing_file, load_npy, load_npz
from common.models.length_model import predict_lengths
from common.core.skeleton import BONE_NAMES, NUM_BONES, SYMMETRIC_BONES
from common.vision.tracking import Track2D

LENGTH_SOURCES = ("model", "self", "prior", "file")
PRIOR_LIMBS = ("thigh", "calf", "upper_arm", "lower_arm")
LIMB_PRIOR_FILE = Path(__file__).resolve().parents[1] / "resources" / "limb_prior.json"
MAD_TO_SD = 1.4826  # median absolute deviation -> standard deviation of a normal distribution
SIDELESS = {name[2:]: [i for i, n in enumerate(BONE_NAMES) if n[2:] == name[2:] and n[:2] in ("l_", "r_")]
            for name in BONE_NAMES if name[:2] in ("l_", "r_")}
PLAUSIBLE_METRES = (0.02, 1.0)


def model_lengths(model: torch.nn.Module, track: Track2D) -> np.ndarray:
    """The bone-length model's lengths from the track's 2D: (16,) metres (Bi-GRU) or (T, 16) (causal GRU, the
    estimate after frames 0..t), left/right averaged, Human3.6M convention."""
    keypoints = normalize_screen_coordinates(track.positions, track.width, track.height)
    lengths = predict_lengths(model, keypoints)
    if (lengths <= 0).any():
        bad = sorted({BONE_NAMES[b] for b in np.nonzero(lengths <= 0)[-1]})
        print(f"warning: the length model predicts non-positive lengths for {bad}: is the checkpoint trained?")
    return lengths


def median_lengths(poses: np.ndarray) -> np.ndarray:
    """The plain own-length baseline: per bone the median over the sequence, then left/right pairs averaged.

    poses: (T, 17, 3) metres (any frame). Returns (16,) metres, float32."""
    return average_symmetric(np.median(bone_lengths(np.asarray(poses, np.float64)), axis=0)).astype(np.float32)


def load_limb_prior(convention: str, path: str | Path = LIMB_PRIOR_FILE) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (4,) of the centred log limb lengths (:data:`PRIOR_LIMBS`) of a population in
    a joint convention; one-line error when there is no prior for it. The mean is the bodies' (``mean_centred_log``)
    plus, when the file has one, the offset from the bodies' landmarks to the convention's
    (``convention_offset_log``, centred log lengths; ``data/bone_length/blazepose_convention_offset.py``)."""
    try:
        content = json.loads(Path(path).read_text())[convention]
    except (OSError, ValueError, KeyError):
        raise UserError(f"--lengths prior: no population prior of limb proportions for the {convention!r} joint "
                        f"convention in {path}; use --lengths self, model or file") from None
    if tuple(content["limbs"]) != PRIOR_LIMBS:
        raise UserError(f"{path}: limbs must be {PRIOR_LIMBS}, got {content['limbs']}")
    mean = np.asarray(content["mean_centred_log"], np.float64)
    return mean + _convention_offset(content), np.asarray(content["sd_centred_log"], np.float64)


def _convention_offset(content: dict) -> np.ndarray:
    """(4,) centred log offset of :data:`PRIOR_LIMBS` from the prior bodies' landmarks to the convention's (the
    entry's ``convention_offset_log``; zeros when it has none)."""
    return np.asarray(content.get("convention_offset_log", np.zeros(len(PRIOR_LIMBS))), np.float64)


def population_mean_lengths(convention: str, path: str | Path = LIMB_PRIOR_FILE) -> np.ndarray | None:
    """Mean (16,) metres of all bones of a population in a joint convention (left/right averaged), or None when
    the prior file has none for it (``data/bone_length/generate_limb_prior.py`` writes it for ``blazepose``).
    The four limbs carry the file's ``convention_offset_log`` as :func:`load_limb_prior`'s mean does (each limb
    times exp(offset); the offset is centred, so the limbs' overall size stays the population's)."""
    try:
        content = json.loads(Path(path).read_text())[convention]
        values = content["mean_bone_lengths_m"]
    except (OSError, ValueError, KeyError):
        return None
    lengths = np.asarray(values, np.float64)
    if lengths.shape != (NUM_BONES,):
        return None
    for limb, shift in zip(PRIOR_LIMBS, _convention_offset(content)):
        lengths[SIDELESS[limb]] *= np.exp(shift)
    return lengths


def prior_lengths(poses: np.ndarray, convention: str, path: str | Path = LIMB_PRIOR_FILE) -> np.ndarray:
    """``--lengths prior``: (T, 17, 3) metres -> (16,) metres; :func:`combine_with_prior` with the convention's
    population prior (:func:`load_limb_prior`)."""
    mean, sd = load_limb_prior(convention, path)
    return combine_with_prior(poses, mean, sd)


def centred_log_limbs(lengths: np.ndarray) -> np.ndarray:
    """(..., 16) bone lengths -> (..., 4) centred log lengths of :data:`PRIOR_LIMBS` (left/right averaged log
    length minus the mean over the four: the limbs' proportions, free of the person's size)."""
    logs = np.stack([np.log(np.asarray(lengths, np.float64)[..., SIDELESS[limb]]).mean(axis=-1)
                     for limb in PRIOR_LIMBS], axis=-1)
    return logs - logs.mean(axis=-1, keepdims=True)


def combine_with_prior(poses: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """(T, 17, 3) metres + a prior of the four limbs' centred log lengths (mean, sd: (4,)) -> (16,) metres.

    Start from :func:`median_lengths`. For the four limbs, work with centred log lengths (log length minus the
    mean over the four: proportions, free of the person's size). Each limb's own value, with variance s^2 = its
    relative per-frame spread squared (robust: MAD of length / median), is combined with the prior (mean m, sd p)
    by inverse-variance weighting: (c / s^2 + m / p^2) / (1 / s^2 + 1 / p^2). The per-frame spread, not its
    standard error, is the own value's uncertainty because a single view's errors persist while the view does
    (they are not independent from frame to frame). The overall size (mean log length) stays the sequence's own.
    """
    lengths = median_lengths(poses).astype(np.float64)
    per_frame = bone_lengths(np.asarray(poses, np.float64))
    index = [SIDELESS[limb] for limb in PRIOR_LIMBS]                            # [[right, left], ...]
    own = np.log([lengths[i[0]] for i in index])
    spread = np.array([np.mean([np.median(np.abs(per_frame[:, b] / np.median(per_frame[:, b]) - 1)) * MAD_TO_SD
                                for b in i]) for i in index])
    spread = np.maximum(spread, 1e-3)
    centred = own - own.mean()
    combined = (centred / spread ** 2 + mean / sd ** 2) / (1 / spread ** 2 + 1 / sd ** 2)
    for limb_index, value in zip(index, np.exp(combined + own.mean())):
        lengths[limb_index] = value
    return lengths.astype(np.float32)


def _named_lengths(source: str, mapping: dict) -> dict[int, float]:
    out: dict[int, float] = {}
    for name, value in mapping.items():
        indices = [BONE_NAMES.index(name)] if name in BONE_NAMES else SIDELESS.get(name)
        if indices is None:
            raise UserError(f"{source}: unknown bone {name!r}; use {', '.join(BONE_NAMES)} or a side-less "
                            f"name ({', '.join(SIDELESS)})")
        try:
            length = float(np.asarray(value, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            raise UserError(f"{source}: bone {name!r} must be one number in metres, got {value!r}") from None
        for index in indices:
            out[index] = length
    return out


def _ordered_lengths(path: Path, values) -> dict[int, float]:
    """16 lengths in ``BONE_NAMES`` order -> bone index -> metres (one-line error for another shape)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: lengths must be numbers") from None
    if array.shape != (NUM_BONES,):
        raise UserError(f"{path}: expected 16 lengths, shape (16,), in bone order {BONE_NAMES}; got {array.shape}")
    return dict(enumerate(array.tolist()))


def read_lengths_file(path: str | Path) -> dict[int, float]:
    """A user's measured lengths: bone index -> metres (module docstring for the format and checks)."""
    path = existing_file(path, "lengths file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            content = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(content, dict) and isinstance(content.get("predicted"), dict):  # inference.py's file
            content = {"units": content.get("units", "metres"), "lengths": content["predicted"]}
        if isinstance(content, list):
            named = _ordered_lengths(path, content)
        elif isinstance(content, dict):
            units = content.get("units", "metres")
            if str(units).lower() not in ("m", "metre", "metres", "meter", "meters"):
                raise UserError(f"{path}: units must be metres, got {units!r}")
            mapping = content.get("lengths", {k: v for k, v in content.items() if k != "units"})
            if not isinstance(mapping, dict):
                raise UserError(f"{path}: 'lengths' must map bone names to metres")
            named = _named_lengths(str(path), mapping)
        else:
            raise UserError(f"{path}: expected a JSON object of bone name -> metres or a list of 16 lengths")
    elif suffix == ".npy":
        named = _ordered_lengths(path, load_npy(path))
    else:
        data = load_npz(path)
        named = _ordered_lengths(path, data["lengths"]) if "lengths" in data else _named_lengths(str(path), data)
    if not named:
        raise UserError(f"{path}: no bone lengths in the file")
    low, high = PLAUSIBLE_METRES
    bad = {BONE_NAMES[i]: v for i, v in named.items() if not (np.isfinite(v) and low <= v <= high)}
    if bad:
        raise UserError(f"{path}: lengths must be metres between {low} and {high}, got {bad} (millimetres?)")
    return named


def complete_lengths(path: str | Path) -> np.ndarray:
    """(16,) metres from a lengths file that names every bone (side-less names count for both sides); a file
    that leaves bones out is a one-line error (there are no poses here to fill them in from)."""
    named = read_lengths_file(path)
    missing = [BONE_NAMES[i] for i in range(NUM_BONES) if i not in named]
    if missing:
        raise UserError(f"{path} must name every bone here; missing {missing}")
    return np.array([named[i] for i in range(NUM_BONES)], dtype=np.float64)


def file_lengths(path: str | Path, poses: np.ndarray) -> np.ndarray:
    """(16,) metres: the file's lengths, the other bones from :func:`median_lengths` of ``poses`` (T, 17, 3)."""
    named = read_lengths_file(path)
    lengths = median_lengths(poses)
    missing = [BONE_NAMES[i] for i in range(NUM_BONES) if i not in named]
    if missing:
        print(f"lengths file {path} does not name {missing}: those come from the lifter's own lengths")
    lengths[list(named)] = list(named.values())
    unequal = [(BONE_NAMES[a], BONE_NAMES[b]) for a, b in SYMMETRIC_BONES if abs(lengths[a] - lengths[b]) > 1e-6]
    if unequal:
        print(f"note: left/right lengths differ in {path} for {unequal}: kept as given")
    return lengths.astype(np.float32)
