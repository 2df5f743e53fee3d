"""Which of the 16 landmark distances a body holds constant, per joint convention, and what the adjustment does
with the others.

Not every distance between two landmarks is a bone: the spine bends and compresses, the neck and head
"bones" of the 17 joints join the nose and a point above the ears to the shoulders' midpoint, and shoulders
shrug. :data:`RIGIDITY_FILE` (``common/resources/rigidity.json``, written by ``python -m bench.wild_recordings
--measure``) holds, per joint convention, the bones that stay rigid and each other bone's natural variation
over time (relative standard deviation, measured on triangulated real recordings); ``docs/in_the_wild.md`` has
the figures.

The adjustment (:func:`rigidity_lengths`) gives every rigid bone its one length and every other bone, per
frame, a length that follows the lifter (:data:`NONRIGID_MODES`):

* ``rigid``: every bone held constant (the paper's adjustment; what ``bone_adjust.py`` does on Human3.6M work);
* ``free``: a non-rigid bone keeps the lifter's per-frame length, rescaled by the ratio of the bone's given
  length to the lifter's median of it (so a user's or the prior's size applies to it too);
* ``soft``: shrinkage between the two: the lifter's per-frame relative deviation from its median is scaled by
  w = v_body / (v_body + v_noise), v_body the bone's natural relative variance (the file's), v_noise the
  lifter's own per-frame relative variance measured on this sequence's rigid limbs (the posterior mean of the
  true deviation when both are Gaussian).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.core.bones import average_symmetric, bone_lengths
from common.core.skeleton import BONE_NAMES, NUM_BONES
from common.utils.errors import UserError

RIGIDITY_FILE = Path(__file__).resolve().parents[1] / "resources" / "rigidity.json"
NONRIGID_MODES = ("rigid", "free", "soft")
DEFAULT_NONRIGID = "soft"  # docs/in_the_wild.md, "Rigid only where the body is rigid"
MAD_TO_SD = 1.4826  # median absolute deviation -> standard deviation of a normal distribution
LIMBS = ("r_thigh", "r_calf", "l_thigh", "l_calf", "l_upper_arm", "l_lower_arm", "r_upper_arm", "r_lower_arm")
FLEXION_BINS = ((0.0, 20.0, "standing (< 20°)"), (20.0, 60.0, "20–60°"), (60.0, 180.1, "> 60°"))


def robust_sd(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """MAD-based standard deviation along ``axis`` (NaN ignored), same units."""
    # without NaN np.median gives the same values as np.nanmedian, which goes through masked arrays on small
    # inputs (~1 ms a call: --live pools the warm-up's frames anew every frame)
    median_of = np.nanmedian if np.isnan(values).any() else np.median
    median = median_of(values, axis=axis, keepdims=True)
    return median_of(np.abs(values - median), axis=axis) * MAD_TO_SD


def relative_spread(lengths: np.ndarray) -> np.ndarray:
    """(T, 16) lengths -> (16,) robust standard deviation over time divided by the median (NaN frames ignored)."""
    return robust_sd(lengths) / np.nanmedian(lengths, axis=0)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors (..., 3)."""
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-9)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def flexion(poses: np.ndarray) -> np.ndarray:
    """(T, 17, 3) poses (any frame, any units) -> (T,) degrees: the largest of the four knee and hip flexions.

    Knee flexion: angle between thigh (hip -> knee) and shin (knee -> ankle), 0 when straight. Hip flexion:
    angle between the thigh and the trunk pointing down (thorax -> pelvis), 0 when standing upright."""
    down = poses[:, 0] - poses[:, 8]
    angles = []
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        thigh, shin = poses[:, knee] - poses[:, hip], poses[:, ankle] - poses[:, knee]
        angles += [_angle(thigh, shin), _angle(thigh, down)]
    return np.max(angles, axis=0)


def flexion_bins(poses: np.ndarray) -> dict[str, np.ndarray]:
    """(T, 17, 3) -> {bin label: (T,) bool} over :data:`FLEXION_BINS` (NaN frames in none)."""
    angle = flexion(poses)
    return {label: (angle >= low) & (angle < high) for low, high, label in FLEXION_BINS}


def load_rigidity(convention: str, path: str | Path = RIGIDITY_FILE) -> tuple[np.ndarray, np.ndarray]:
    """(rigid (16,) bool, natural relative variance (16,)) of a joint convention (variance 0 for rigid bones).
    A convention the file does not name is held fully rigid (the paper's adjustment)."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable rigidity file ({exc})") from None
    entry = content.get(convention)
    if entry is None:
        return np.ones(NUM_BONES, bool), np.zeros(NUM_BONES)
    unknown = [n for n in entry["rigid"] + list(entry.get("natural_relative_sd", {})) if n not in BONE_NAMES]
    if unknown:
        raise UserError(f"{path}: unknown bone name(s) {unknown} for {convention!r}")
    rigid = np.array([name in entry["rigid"] for name in BONE_NAMES])
    sd = entry.get("natural_relative_sd", {})
    variance = np.array([0.0 if r else float(sd.get(name, 0.0)) ** 2 for name, r in zip(BONE_NAMES, rigid)])
    return rigid, variance


def nonrigid_reference(poses: np.ndarray, rigid: np.ndarray, variance: np.ndarray, mode: str
                       ) -> tuple[np.ndarray, np.ndarray]:
    """What the adjustment needs from the lifter's poses to treat the non-rigid bones (module docstring): each
    bone's median length over ``poses`` (T, 17, 3) metres -> (16,) metres, and the weight (16,) of the lifter's
    per-frame relative deviation from it (0 for a held bone; ``free``: 1; ``soft``: v_body / (v_body + v_noise),
    v_noise measured on the rigid limbs of ``poses``). Offline ``poses`` is the whole sequence; live, the frames
    of the warm-up (:class:`common.inference.live.LiveAdjustment`)."""
    if mode not in NONRIGID_MODES:
        raise UserError(f"--nonrigid must be one of {', '.join(NONRIGID_MODES)}, got {mode!r}")
    own = bone_lengths(np.asarray(poses, np.float64))                     # (T, 16)
    median = np.maximum(np.median(own, axis=0), 1e-9)
    weight = np.where(rigid, 0.0, 1.0)
    if mode == "rigid":
        weight[:] = 0.0
    elif mode == "soft" and not rigid.all():
        limbs = [BONE_NAMES.index(n) for n in LIMBS if rigid[BONE_NAMES.index(n)]]
        noise = float(np.median(robust_sd(own[:, limbs] / median[limbs] - 1) ** 2)) if limbs else 0.0
        weight = np.where(rigid, 0.0, np.where(variance + noise > 0, variance / np.maximum(variance + noise, 1e-12),
                                                1.0))
    return median, weight


def nonrigid_lengths(own: np.ndarray, lengths: np.ndarray, median: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-frame target lengths: the lifter's own lengths ``own`` (..., 16) metres, the one length of each bone
    ``lengths`` (16,) metres and :func:`nonrigid_reference`'s (median, weight) -> (..., 16) metres, left/right
    equal: ``lengths * (1 + weight * (own / median - 1))`` (a held bone, weight 0, keeps its one length)."""
    relative = np.asarray(own, np.float64) / median - 1
    return average_symmetric(np.asarray(lengths, np.float64) * (1 + weight * relative))


def rigidity_lengths(poses: np.ndarray, lengths: np.ndarray, rigid: np.ndarray, variance: np.ndarray,
                     mode: str) -> np.ndarray:
    """Per-frame target lengths for the adjustment (see the module docstring).

    poses: (T, 17, 3) the lifter's poses (metres, any frame); lengths: (16,) metres, the one length of each bone
    (a length source's); rigid: (16,) bool; variance: (16,) natural relative variance of the non-rigid bones.
    Returns (16,) when every bone is held (``mode`` rigid or all rigid), else (T, 16) metres, left/right equal."""
    median, weight = nonrigid_reference(poses, rigid, variance, mode)
    lengths = np.asarray(lengths, np.float64)
    if not weight.any() or lengths.ndim != 1:
        return lengths.astype(np.float32)
    return nonrigid_lengths(bone_lengths(np.asarray(poses, np.float64)), lengths, median, weight).astype(np.float32)


def describe_adjustment(meta: dict) -> str:
    """The printed line of an adjustment's choices, offline and live alike (``meta``: the metadata of
    :func:`common.inference.inference_pipeline.adjust_lengths` or :class:`common.inference.live.LiveAdjustment`)."""
    return (f"size: {meta['size']}; held rigid: {len(meta['rigid_bones'])} of 16 bones, the others --nonrigid "
            f"{meta['nonrigid']}")
