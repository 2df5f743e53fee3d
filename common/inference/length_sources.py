"""Where the bone lengths of the adjustment come from (``inference.py --lengths``), offline and live alike.

A length source is a :class:`LengthSource` subclass registered by one line in :data:`LENGTH_SOURCES` and built from
its own ``Options`` (:mod:`common.inference.registry`): a pre-flight check (:meth:`LengthSource.prepare`: what it
needs, what it refuses), the batch :meth:`LengthSource.lengths` and, where ``causal``, the streaming
:meth:`LengthSource.step` (``--live``). The registered sources:

* ``model`` (the paper): the bone-length model reads the whole 2D sequence and predicts 16 lengths in the
  joint convention of its training bank (stored in the checkpoint, ``length_convention``; a mix model brings its
  own; else ``--length_ckpt``). Human3.6M's (the paper's) for ``videopose3d``; for BlazePose's landmarks
  (``mediapipe``) a model trained with ``train.py -t length --length_convention blazepose``, whose proportions
  are used at the person's size (``--height`` or the lifter's own, as ``prior``; docs/in_the_wild.md).
* ``self``: the lifter's own poses, one robust length per bone over the sequence (median), left/right averaged
  (:func:`median_lengths`). Offline, ``self``, ``prior``, ``model_prior`` and ``file`` pool the frames where the
  person was detected, not those interpolated across a gap (:func:`observed_poses`), as live does.
* ``prior``: ``self``, with the four limbs' proportions combined with a population prior of limb proportions in
  the lifter's joint convention (:func:`prior_lengths`; prior from Anny bodies,
  ``data/bone_length/generate_limb_prior.py``, moved into BlazePose's landmark convention by an offset measured on
  triangulated BlazePose 2D, ``data/bone_length/blazepose_convention_offset.py``). A single view measures a limb
  poorly when it is seldom seen across the image plane; the combination weighs the sequence's own evidence by its
  per-frame spread.
* ``model_prior``: ``prior`` with the bone-length model's limb proportions in place of the population mean (the
  model's checkpoint as for ``model``; offline only): the model's reading of this person is weighed against the
  view's own limbs as the population is by ``prior``. With a BlazePose-convention evidence model, out of sample,
  it was closer to the triangulated proportions than ``prior`` on the woman for every training seed and on the men
  for some (docs/in_the_wild.md).
* ``file``: lengths the user measured (:func:`read_lengths_file`, format below).

Live (one frame at a time): ``self`` is a running per-bone median of every frame so far (:class:`RunningMedian`),
``model`` the causal GRU carrying its state, ``file`` the file's lengths, ``prior`` the same combination as
offline of every frame so far (running per-bone median and MAD); they start at the population mean
(:func:`stream_start_lengths`).

Lengths are only meaningful in the joint convention of the lifter they adjust (see :mod:`common.inference.lifters`).

Lengths file (``--lengths file --lengths_file F``), metres:

* JSON: ``{"units": "metres", "lengths": {"l_thigh": 0.41, "r_thigh": 0.41, "calf": 0.38, ...}}`` or the
  ``lengths`` mapping alone; names from :data:`common.core.skeleton.BONE_NAMES`, or a side-less name (``hip``,
  ``thigh``, ``calf``, ``shoulder``, ``upper_arm``, ``lower_arm``) for both sides; or a list of the 16 lengths in
  ``BONE_NAMES`` order; or ``inference.py``'s ``<video>_bone_lengths.json`` (its ``predicted`` lengths; per-frame
  ones, e.g. with non-rigid distances, give their medians over the frames);
* npz: ``lengths`` (16,) in ``BONE_NAMES`` order, or one scalar per bone name as above; npy: a (16,) array.

Bones the file does not name take the ``self`` estimate (printed). Unknown names, values that are not metres
(outside 0.02-1.0 m) or a ``units`` other than metres are one-line errors.
"""
from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from common.core.bones import average_symmetric, bone_lengths, median_lengths
from common.core.camera import normalize_screen_coordinates
from common.utils.errors import UserError
from common.utils.fileio import existing_file, load_npy, load_npz
from common.datasets.synthetic import DEFAULT_BANKS
from common.inference.lifters import Lifter
from common.inference.registry import build, registered_class
from common.models.length_model import predict_lengths
from common.models.model_loading import load_model
from common.core.skeleton import BONE_NAMES, NUM_BONES, SYMMETRIC_BONES
from common.vision.tracking import Track2D

# name -> "module:Class"; one line per length source, imported only when picked.
LENGTH_SOURCES: dict[str, str] = {
    "model": "common.inference.length_sources:ModelLengths",
    "model_prior": "common.inference.length_sources:ModelPriorLengths",
    "self": "common.inference.length_sources:SelfLengths",
    "prior": "common.inference.length_sources:PriorLengths",
    "file": "common.inference.length_sources:FileLengths",
}
# The length source used when --lengths is not given, per joint convention of the lifter: the bone-length model
# predicts Human3.6M-convention lengths (the paper's setting); for anatomical (BlazePose) joints the lifter's own
# lengths combined with the population prior won bench/multiview.py (docs/in_the_wild.md).
DEFAULT_LENGTHS = {"h36m": "model", "blazepose": "prior"}
HISTOGRAM_BIN = 0.001  # metres: resolution of the running median
HISTOGRAM_MAX = 1.5  # metres: longer per-frame lengths are clipped into the last bin
PRIOR_LIMBS = ("thigh", "calf", "upper_arm", "lower_arm")
LIMB_PRIOR_FILE = Path(__file__).resolve().parents[1] / "resources" / "limb_prior.json"
MAD_TO_SD = 1.4826  # median absolute deviation -> standard deviation of a normal distribution
SIDELESS = {name[2:]: [i for i, n in enumerate(BONE_NAMES) if n[2:] == name[2:] and n[:2] in ("l_", "r_")]
            for name in BONE_NAMES if name[:2] in ("l_", "r_")}
PLAUSIBLE_METRES = (0.02, 1.0)


def observed_poses(poses: np.ndarray, track: Track2D) -> np.ndarray:
    """The lifter's poses (T, 17, 3) of the track's frames restricted to those where the person was detected
    (:attr:`Track2D.observed`), the frames a pooled length comes from: an interpolated frame is no measurement (its
    joints are a straight-line blend of the gap's ends, which shortens every bone that turns across the gap), and
    ``--live`` never sees one. All frames when ``poses`` is not one per track frame or none was detected."""
    observed = track.observed
    return poses[observed] if len(poses) == len(track) and observed.any() else poses


def model_lengths(model: torch.nn.Module, track: Track2D) -> np.ndarray:
    """The bone-length model's lengths from the track's 2D: (16,) metres (Bi-GRU) or (T, 16) (causal GRU, the
    estimate after frames 0..t), left/right averaged, Human3.6M convention."""
    keypoints = normalize_screen_coordinates(track.positions, track.width, track.height)
    lengths = predict_lengths(model, keypoints)
    if (lengths <= 0).any():
        bad = sorted({BONE_NAMES[b] for b in np.nonzero(lengths <= 0)[-1]})
        print(f"warning: the length model predicts non-positive lengths for {bad}: is the checkpoint trained?")
    return lengths




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


def convention_offset(measured: Mapping[str, list[np.ndarray]], bodies_mean: np.ndarray) -> np.ndarray:
    """The offset (4,) of :data:`PRIOR_LIMBS`' centred log lengths from a population's landmarks to a detector's
    convention: ``measured`` maps each person to the centred log limbs (4,) of their triangulated sequences
    (:func:`centred_log_limbs` of the median lengths); each person's sequences are averaged first, then the mean
    over people minus ``bodies_mean`` (4,) (``data/bone_length/blazepose_convention_offset.py``)."""
    return np.mean([np.mean(values, axis=0) for values in measured.values()], axis=0) - bodies_mean


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
    return offset_limbs(lengths, _convention_offset(content))


def offset_limbs(lengths: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(..., 16) bone lengths (float64 copy) with each of the four limbs (:data:`PRIOR_LIMBS`, both sides) times
    exp(offset) (offset (4,): centred log lengths, so the limbs' overall size stays); the other bones unchanged."""
    out = np.array(lengths, dtype=np.float64)
    for limb, shift in zip(PRIOR_LIMBS, np.asarray(offset, np.float64)):
        out[..., SIDELESS[limb]] *= np.exp(shift)
    return out


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
    """(T, 17, 3) metres + a prior of the four limbs' centred log lengths (mean, sd: (4,)) -> (16,) metres:
    :func:`prior_combination` of the sequence's per-bone medians and relative spreads (MAD x 1.4826 / median)."""
    per_frame = bone_lengths(np.asarray(poses, np.float64))
    median = np.median(per_frame, axis=0)
    spread = np.median(np.abs(per_frame / median - 1), axis=0) * MAD_TO_SD
    return prior_combination(median, spread, mean, sd)


def prior_combination(median: np.ndarray, spread: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Per-bone median lengths (16,) metres and relative per-frame spreads (16,) + a prior of the four limbs'
    centred log lengths (mean, sd: (4,)) -> (16,) metres, left/right equal.

    Start from the medians, left/right averaged (:func:`median_lengths`). For the four limbs, work with centred
    log lengths (log length minus the mean over the four: proportions, free of the person's size). Each limb's own
    value, with variance s^2 = its relative spread squared (mean of the two sides), is combined with the prior
    (mean m, sd p) by inverse-variance weighting: (c / s^2 + m / p^2) / (1 / s^2 + 1 / p^2). The per-frame spread,
    not its standard error, is the own value's uncertainty because a single view's errors persist while the view
    does (they are not independent from frame to frame). The overall size (mean log length) stays the sequence's
    own. Offline the statistics come from the whole sequence (:func:`combine_with_prior`), live from the frames
    so far (:class:`PriorLengths`)."""
    lengths = average_symmetric(np.asarray(median, np.float64))
    index = [SIDELESS[limb] for limb in PRIOR_LIMBS]                            # [[right, left], ...]
    own = np.log([lengths[i[0]] for i in index])
    spread = np.maximum([np.mean(np.asarray(spread, np.float64)[i]) for i in index], 1e-3)
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
            raise UserError(f"{source}: unknown bone {reprlib.repr(name)}; use {', '.join(BONE_NAMES)} or a side-less "
                            f"name ({', '.join(SIDELESS)})")
        try:
            length = float(np.asarray(value, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            raise UserError(f"{source}: bone {name!r} must be one number in metres, got {reprlib.repr(value)}") from None
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
        except RecursionError:
            raise UserError(f"{path}: JSON nested too deeply to be a lengths file") from None
        if isinstance(content, dict) and isinstance(content.get("predicted"), dict):  # inference.py's file
            predicted = content["predicted"]
            if "per_frame" in predicted:  # per-frame lengths (non-rigid distances, a causal model): their medians
                try:
                    content = np.median(np.asarray(predicted["per_frame"], np.float64), axis=0).tolist()
                except (TypeError, ValueError):
                    raise UserError(f"{path}: 'per_frame' must be a list of 16 lengths per frame") from None
            else:
                content = {"units": content.get("units", "metres"), "lengths": predicted}
        if isinstance(content, list):
            named = _ordered_lengths(path, content)
        elif isinstance(content, dict):
            units = content.get("units", "metres")
            if str(units).lower() not in ("m", "metre", "metres", "meter", "meters"):
                raise UserError(f"{path}: units must be metres, got {reprlib.repr(units)}")
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


# ----------------------------------------------------------------------------------------------- live helpers
class RunningMedian:
    """Per-bone median of every value seen so far, from 1 mm histograms (16 x 1500 counts: constant memory).

    update(lengths (16,) metres); median() -> (16,) metres (bin centres), None before any update."""

    def __init__(self, bins: int = int(round(HISTOGRAM_MAX / HISTOGRAM_BIN))):
        self.counts = np.zeros((NUM_BONES, bins), np.int64)
        self.total = 0

    def update(self, lengths: np.ndarray) -> None:
        index = np.clip((np.asarray(lengths) / HISTOGRAM_BIN).astype(np.int64), 0, self.counts.shape[1] - 1)
        self.counts[np.arange(NUM_BONES), index] += 1
        self.total += 1

    def median(self) -> np.ndarray | None:
        if self.total == 0:
            return None
        half = np.argmax(np.cumsum(self.counts, axis=1) * 2 >= self.total, axis=1)
        return (half + 0.5) * HISTOGRAM_BIN

    def mad(self) -> np.ndarray | None:
        """(16,) metres: each bone's median absolute deviation from its median (:meth:`median`), from the same
        histograms (resolution one bin); None before any update."""
        median = self.median()
        if median is None:
            return None
        centres = (np.arange(self.counts.shape[1]) + 0.5) * HISTOGRAM_BIN
        deviation = np.abs(centres[None] - median[:, None])                     # (16, bins)
        order = np.argsort(deviation, axis=1, kind="stable")
        counts = np.take_along_axis(self.counts, order, axis=1)
        half = np.argmax(np.cumsum(counts, axis=1) * 2 >= self.total, axis=1)
        return np.take_along_axis(deviation, order, axis=1)[np.arange(NUM_BONES), half]


def training_mean_lengths(data_dir: str | Path = "data") -> tuple[np.ndarray, Path] | None:
    """The mean (16,) metres of the synthetic bone-length bank a length model trains on by default
    (:data:`common.datasets.synthetic.DEFAULT_BANKS`, first one present in ``data_dir``), and its path; None if
    there is none."""
    for name in DEFAULT_BANKS:
        path = Path(data_dir) / name
        if path.is_file():
            bank = np.asarray(load_npz(path, required=["data"])["data"], np.float64)
            if bank.ndim == 2 and bank.shape[1] == NUM_BONES:
                return average_symmetric(bank.mean(axis=0)), path
    return None


def stream_start_lengths(convention: str) -> tuple[np.ndarray, str] | None:
    """The lengths (16,) metres a live run starts from in a joint convention, and where they come from: the
    population mean of :data:`LIMB_PRIOR_FILE` when it has the convention, else (Human3.6M) the mean of the
    length model's default training bank; None when neither exists."""
    population = population_mean_lengths(convention)
    if population is not None:
        return population, f"the population mean in {LIMB_PRIOR_FILE}"
    mean = training_mean_lengths()
    return None if mean is None else (mean[0], f"the training mean of {mean[1]}")


# ----------------------------------------------------------------------------------------------- registry
class LengthSource:
    """Where 16 bone lengths come from. Subclasses set ``name`` (their registry name) and ``causal`` (True: the
    lengths after frame t use frames <= t only, and :meth:`step` exists), declare their settings as an ``Options``
    dataclass when they have any (built as ``Class(options)``, see :mod:`common.inference.registry`) and set
    ``own_size`` when their overall size is only the lifter's estimate (then the pipeline gives them the person's
    size: ``--height``, or :func:`common.inference.body_size.person_size`)."""

    name = ""
    causal = False
    own_size = False  # True: the overall size is the lifter's estimate (replaced by --height or the person's own)

    def prepare(self, lifter: Lifter, live: bool) -> None:
        """Pre-flight, before the slow detection: load what the source needs for ``lifter``'s poses and raise a
        one-line UserError for what it refuses (``live``: a streaming run)."""

    def lengths(self, poses: np.ndarray, track: Track2D) -> np.ndarray:
        """Batch: the lifter's poses (T, 17, 3) metres and the 2D track -> (16,) metres, or (T, 16) (row t: the
        estimate after frames 0..t)."""
        raise NotImplementedError

    def step(self, pose: np.ndarray, frame: Track2D) -> np.ndarray | None:
        """Streaming (causal sources): one more frame's lifted pose (17, 3) metres and its 2D (a one-frame track)
        -> the lengths (16,) metres after it (None: no estimate yet)."""
        raise NotImplementedError

    def start(self) -> np.ndarray | None:
        """The lengths (16,) metres a live run starts from when the source has its own (else None: the
        ``--length_prior`` or :func:`stream_start_lengths`)."""
        return None


class SelfLengths(LengthSource):
    """``self``: the lifter's own lengths, per-bone median over the frames, left/right averaged."""

    name = "self"
    causal = True
    own_size = True

    def __init__(self) -> None:
        self.median = RunningMedian()

    def lengths(self, poses: np.ndarray, track: Track2D) -> np.ndarray:
        return median_lengths(observed_poses(poses, track))

    def step(self, pose: np.ndarray, frame: Track2D) -> np.ndarray | None:
        self.median.update(bone_lengths(pose))
        median = self.median.median()
        return average_symmetric(median)  # as offline (:func:`median_lengths`): the pairs' medians averaged


class PriorLengths(LengthSource):
    """``prior``: ``self`` with the limbs' proportions combined with the convention's population prior; live, the
    same combination of every frame so far (per-bone running median and MAD, :class:`RunningMedian`)."""

    name = "prior"
    causal = True
    own_size = True

    def __init__(self) -> None:
        self.histograms = RunningMedian()

    def prepare(self, lifter: Lifter, live: bool) -> None:
        self.prior = load_limb_prior(lifter.convention)  # (mean, sd) (4,): replaceable, e.g. by a held-out fit

    def lengths(self, poses: np.ndarray, track: Track2D) -> np.ndarray:
        return combine_with_prior(observed_poses(poses, track), *self.prior)

    def step(self, pose: np.ndarray, frame: Track2D) -> np.ndarray | None:
        self.histograms.update(bone_lengths(np.asarray(pose, np.float64)))
        median = self.histograms.median()
        return prior_combination(median, self.histograms.mad() / median * MAD_TO_SD, *self.prior)


@dataclass
class FileOptions:
    lengths_file: str | None = None


class FileLengths(LengthSource):
    """``file``: the user's measured lengths (offline, bones the file does not name take ``self``'s)."""

    name = "file"
    causal = True
    Options = FileOptions

    def __init__(self, options: FileOptions):
        self.path = options.lengths_file
        self.fixed: np.ndarray | None = None

    def prepare(self, lifter: Lifter, live: bool) -> None:
        if not self.path:
            raise UserError("--lengths file needs --lengths_file <json/npz of bone lengths in metres>")
        if live:  # no poses to fill in unnamed bones from
            self.fixed = complete_lengths(self.path)
        else:
            read_lengths_file(self.path)

    def lengths(self, poses: np.ndarray, track: Track2D) -> np.ndarray:
        return file_lengths(self.path, observed_poses(poses, track))

    def step(self, pose: np.ndarray, frame: Track2D) -> np.ndarray | None:
        return self.fixed

    def start(self) -> np.ndarray | None:
        return self.fixed


@dataclass
class ModelOptions:
    length_ckpt: str | None = None
    bidirectional: bool = False
    num_layers: int | None = None
    device: torch.device = torch.device("cpu")


class ModelLengths(LengthSource):
    """``model``: the bone-length model on the 2D (the lifter's own when it brings one, else ``--length_ckpt``);
    causal when it is a unidirectional GRU (stepped frame by frame, carrying its state). The checkpoint's joint
    convention must be the lifter's; for BlazePose's landmarks only the model's proportions are used and the size
    is the person's (``own_size``, as ``prior``)."""

    name = "model"
    Options = ModelOptions

    def __init__(self, options: ModelOptions):
        self.options = options
        self.state = None

    def prepare(self, lifter: Lifter, live: bool) -> None:
        self.model = lifter.length_model
        convention = "h36m"
        if self.model is None:
            try:
                loaded = load_model(self.options.length_ckpt, ("length",),
                                    bidirectional=self.options.bidirectional or None,
                                    num_layers=self.options.num_layers, device=self.options.device)
            except UserError as exc:
                if lifter.convention == "h36m":
                    raise
                raise UserError(f"--lengths {self.name} for the {lifter.convention}-convention joints of --lifter "
                                f"{lifter.name} needs a --length_ckpt trained with train.py -t length "
                                f"--length_convention {lifter.convention} (docs/in_the_wild.md; the paper's models "
                                f"predict Human3.6M-convention lengths): {exc}") from None
            self.model, convention = loaded.model, str(loaded.checkpoint.get("length_convention", "h36m"))
        if convention != lifter.convention:
            raise UserError(f"--lengths {self.name}: {self.options.length_ckpt} predicts {convention}-convention "
                            f"lengths, which distort the {lifter.convention}-convention joints of --lifter {lifter.name} "
                            f"(docs/in_the_wild.md, 'Joint conventions'); give a --length_ckpt trained with "
                            f"train.py -t length --length_convention {lifter.convention}, or use --lengths self or "
                            f"--lengths file")
        self.own_size = convention != "h36m"  # one view reads proportions, not size (docs/length_model.md)
        self.model.eval()
        self.causal = not self.model.bidirectional
        if live and not self.causal:
            raise UserError("--live --lengths model needs a causal (unidirectional) length model; a Bi-GRU reads "
                            "the whole sequence. Use --lengths self or a causal checkpoint.")

    def lengths(self, poses: np.ndarray, track: Track2D) -> np.ndarray:
        return model_lengths(self.model, track)

    @torch.no_grad()
    def step(self, pose: np.ndarray, frame: Track2D) -> np.ndarray | None:
        keypoints = normalize_screen_coordinates(frame.positions, frame.width, frame.height)
        x = torch.from_numpy(np.asarray(keypoints, np.float32))[None].to(self.options.device)
        lengths, self.state = self.model(x, self.state, return_state=True)
        return lengths[0, -1].cpu().numpy().astype(np.float64)


class ModelPriorLengths(ModelLengths):
    """``model_prior``: ``prior``'s combination (:func:`combine_with_prior`) of the sequence's own limbs with the
    bone-length model's limb proportions (the centred log limbs of its prediction) in place of the population
    mean, the population's sd kept; the size is the person's (``own_size``). Offline only: the model reads the
    whole sequence. With BlazePose's landmarks and the evidence model, out of sample, it was closer than ``prior``
    on the woman for every training seed and on the men for some (docs/in_the_wild.md: the per-frame evidence
    model in BlazePose's convention)."""

    name = "model_prior"
    own_size = True

    def prepare(self, lifter: Lifter, live: bool) -> None:
        super().prepare(lifter, live=False)
        self.own_size, self.causal = True, False
        self.sd = load_limb_prior(lifter.convention)[1]

    def lengths(self, poses: np.ndarray, track: Track2D) -> np.ndarray:
        return combine_with_prior(observed_poses(poses, track), centred_log_limbs(model_lengths(self.model, track)),
                                  self.sd)


def choose_lengths(settings: Mapping[str, Any], lifter: Lifter) -> str:
    """``--lengths`` if given (``file`` implied by ``--lengths_file``), else :data:`DEFAULT_LENGTHS` of the
    lifter's convention."""
    return settings.get("lengths") or ("file" if settings.get("lengths_file") else DEFAULT_LENGTHS[lifter.convention])


def make_length_source(name: str, settings: Mapping[str, Any], lifter: Lifter, live: bool = False) -> LengthSource:
    """Build the length source ``name`` from the run's ``settings`` and run its pre-flight for ``lifter``.
    ``live``: a causal source, else a one-line error."""
    cls = registered_class(LENGTH_SOURCES, name, "--lengths")
    source = build(cls, settings)
    source.prepare(lifter, live)
    if live and not source.causal:
        raise UserError(f"--live needs a causal length source (lengths after frame t from frames <= t); "
                        f"--lengths {name} is not")
    return source
