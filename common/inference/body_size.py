"""The person's overall size: from the video's own evidence, or from a height the user gives.

A length source decides the bones' proportions; the overall size (one scale factor on all 16 lengths) comes from:

* :func:`world_size`: the lifter's metric estimate of the person, pooled robustly over the sequence: BlazePose's
  raw world landmarks' four limbs (left/right averaged), each the median over the frames where both its
  landmarks are confidently visible in 2D (the frames where the 3D head measures it best), combined as their
  geometric mean;
* :func:`height_size`: a user-given standing height (metres) times the population's limb size per metre of
  stature (``common/resources/limb_prior.json``: ``limb_to_stature_log``, the mean over Anny bodies of the four
  limbs' log length minus the log stature; the convention offset is centred, so it leaves the size as it is).

:func:`person_size` picks between them for a run; :func:`limb_size` is the size of a set of 16 lengths (the geometric mean of the four left/right-averaged limbs);
:func:`rescale` gives 16 lengths another size and keeps their proportions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.core.skeleton import BONE_CHILDREN, BONE_NAMES, BONE_PARENTS
from common.utils.errors import UserError
from common.vision.tracking import Track2D

LIMB_PAIRS = {"thigh": ("l_thigh", "r_thigh"), "calf": ("l_calf", "r_calf"),
              "upper_arm": ("l_upper_arm", "r_upper_arm"), "lower_arm": ("l_lower_arm", "r_lower_arm")}
MIN_CONFIDENCE = 0.5  # BlazePose visibility at or above which a landmark counts as confidently visible
HEIGHT_RANGE_M = (0.5, 2.5)


def limb_size(lengths: np.ndarray) -> np.ndarray:
    """(..., 16) bone lengths -> (...) geometric mean of the four left/right-averaged limbs, same units."""
    lengths = np.asarray(lengths, np.float64)
    logs = [np.log((lengths[..., BONE_NAMES.index(a)] + lengths[..., BONE_NAMES.index(b)]) / 2)
            for a, b in LIMB_PAIRS.values()]
    return np.exp(np.mean(logs, axis=0))


def rescale(lengths: np.ndarray, size: float) -> np.ndarray:
    """(16,) or (T, 16) lengths with their limb size set to ``size`` (metres); proportions unchanged. For (T, 16)
    the median over time of the per-frame limb size is what becomes ``size``."""
    lengths = np.asarray(lengths, np.float64)
    current = float(np.median(limb_size(lengths)))
    return (lengths * (size / current)).astype(np.float32)


def world_size(track: Track2D, min_confidence: float = MIN_CONFIDENCE, quantile: float = 0.5) -> float | None:
    """Limb size (metres) of the detector's raw 3D (``track.world`` (T, 17, 3)) over confidently visible frames
    (module docstring; each limb's ``quantile`` over those frames, the median by default; ``min_confidence`` 0:
    every frame); None when the track has no 3D or a limb is never confidently seen on either side."""
    if track.world is None:
        return None
    world = np.asarray(track.world, np.float64)
    lengths = np.linalg.norm(world[:, BONE_CHILDREN] - world[:, BONE_PARENTS], axis=-1)          # (T, 16)
    seen = np.minimum(track.confidence[:, BONE_CHILDREN], track.confidence[:, BONE_PARENTS]) >= min_confidence
    logs = []
    for pair in LIMB_PAIRS.values():
        values = np.concatenate([lengths[seen[:, BONE_NAMES.index(n)], BONE_NAMES.index(n)] for n in pair])
        values = values[np.isfinite(values)]
        if not len(values):
            return None
        logs.append(np.log(np.quantile(values, quantile)))
    return float(np.exp(np.mean(logs)))


def height_size(height: float, convention: str, path: str | Path | None = None) -> float:
    """Population limb size (metres) of a person ``height`` metres tall in a joint convention."""
    from common.inference.length_sources import LIMB_PRIOR_FILE

    low, high = HEIGHT_RANGE_M
    if not (np.isfinite(height) and low <= height <= high):
        raise UserError(f"--height is the person's standing height in metres ({low}-{high}), got {height}")
    path = Path(path or LIMB_PRIOR_FILE)
    try:
        content = json.loads(path.read_text())[convention]
        ratio = np.asarray(content["limb_to_stature_log"], np.float64)
    except (OSError, ValueError, KeyError):
        raise UserError(f"--height: {path} has no limb-to-stature ratio for the {convention!r} joint convention "
                        "(data/bone_length/generate_limb_prior.py writes it)") from None
    return float(height * np.exp(np.mean(ratio)))


def parse_heights(text: str) -> tuple[float, ...]:
    """``--height``: one standing height in metres, or several, comma-separated, one per person in identity order
    (``--people all``: person 0, 1, ...). An argparse ``type=``: each item as :func:`common.utils.validation.number`
    checks a number > 0; the range is checked by :func:`height_size`."""
    import argparse

    from common.utils.validation import number

    one = number(float, gt=0)
    try:
        return tuple(one(item) for item in text.split(","))
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected metres, e.g. 1.78 or 1.78,1.62 ({exc})") from None


def as_heights(heights: float | tuple[float, ...] | None) -> tuple[float, ...]:
    """``--height`` as a tuple of metres, persons 0, 1, ... in order (one number: person 0's; None: empty)."""
    if heights is None:
        return ()
    return (float(heights),) if isinstance(heights, (int, float)) else tuple(float(h) for h in heights)


def height_of(heights: float | tuple[float, ...] | None, identity: int) -> float | None:
    """The standing height (metres) given for person ``identity`` (0 for the only person of ``--people one``,
    :func:`as_heights`); None for a person beyond them (their size then comes from the video, :func:`person_size`)."""
    heights = as_heights(heights)
    return heights[identity] if identity < len(heights) else None


def size_rule(height: float | None, own_size: bool, measured: bool = True) -> str:
    """Where :func:`person_size`'s size comes from, in words (the run's printed line and metadata); ``measured``:
    the video's own evidence gave a size (else the length source keeps its own)."""
    if height is not None:
        return f"--height {height:g} m (population limb-to-stature ratio)"
    if own_size and measured:
        return "the lifter's raw 3D: median limb lengths over confidently visible frames"
    return "the length source's own"


def person_size(convention: str, track: Track2D, height: float | None, own_size: bool) -> tuple[float | None, str]:
    """The run's person size (metres, :func:`limb_size` units) and where it comes from (:func:`size_rule`):
    ``height`` (metres) when the user gives one, else, for a length source whose size is the lifter's estimate
    (``own_size``), :func:`world_size` when the track has the detector's raw 3D; None (the length source's own
    size) otherwise."""
    if height is not None:
        return height_size(height, convention), size_rule(height, own_size)
    size = world_size(track) if own_size else None
    return size, size_rule(height, own_size, size is not None)
