"""Lifters: a 2D keypoint sequence -> 3D poses, behind one small protocol, picked by name (``inference.py --lifter``),
offline and live alike.

A lifter is any object with the :class:`Lifter` attributes and ``lift``; a causal one also has ``step`` (one frame
at a time, for ``--live``). To add one, write one file in this package with such a class (built from its own
``Options`` dataclass, see :mod:`common.inference.registry`) and add one line to :data:`LIFTERS`.

Joint conventions (:data:`CONVENTIONS`): the 17 joints are always in Human3.6M order, but *where* a joint sits
differs between sources, which changes bone lengths (see docs/in_the_wild.md, "Joint conventions"):

* ``h36m``: Human3.6M's marker-skeleton joints (what VideoPose3D and the bone-length model are trained on;
  ankles low, hip joints ≈ 26 cm apart);
* ``blazepose``: BlazePose's anatomical landmarks mapped by :func:`common.vision.detectors.to_h36m` (shins ≈ 37 cm, hip
  joints ≈ 19 cm apart on a real recording).
"""
from __future__ import annotations

import sys
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from common.inference.registry import build, registered_class
from common.models.model_loading import CHECKPOINT_LIFTER
from common.utils.checkpoint import load_checkpoint, resolve_checkpoint
from common.utils.errors import UserError
from common.vision.tracking import Track2D

CONVENTIONS = ("h36m", "blazepose")

# name -> "module:Class"; one line per lifter, imported only when picked.
LIFTERS: dict[str, str] = {
    "videopose3d": "common.inference.lifters.videopose3d:VideoPose3DLifter",
    "mediapipe": "common.inference.lifters.mediapipe:MediaPipeLifter",
    "mediapipe_raw": "common.inference.lifters.mediapipe:MediaPipeRawLifter",
    "poses": "common.inference.lifters.poses:PosesFileLifter",
}
# inference.py's lifter when no flag implies one: the winner of bench/multiview.py (docs/in_the_wild.md).
DEFAULT_LIFTER = "mediapipe"
# The input flags that imply their lifter: --poses the ``poses`` lifter, a checkpoint the lifter it names
# (CHECKPOINT_LIFTER when it names none).
INPUT_FLAGS = ("poses", "finetuned_ckpt", "lifter_ckpt")


@runtime_checkable
class Lifter(Protocol):
    """What every lifter offers.

    name: its registry name. convention: the joint convention of its poses (:data:`CONVENTIONS`).
    frame: ``camera`` (x right, y down, z forward, as VideoPose3D outputs) or ``world`` (z up).
    receptive_field: frames of 2D it reads per output frame (1 = each frame alone, 0 = the whole sequence).
    causal: True if output frame t depends only on 2D frames <= t; a causal lifter also has
    ``step(frame: Track2D of one frame) -> (17, 3)``, the same pose as ``lift`` gives for that frame after the
    frames stepped before it (``--live``). A lifter that is not causal may name, as ``streaming_substitute``, the
    registered causal lifter ``--live`` uses in its place.
    length_model: a bone-length model that comes with the lifter (the mix model's frozen one), else None.
    A lifter may state the paper's name of the run as ``mode`` (exports; default: its name).
    """

    name: str
    convention: str
    frame: str
    receptive_field: int
    causal: bool
    length_model: object | None

    def lift(self, track: Track2D) -> np.ndarray:
        """3D poses of the followed person: (T, 17, 3) metres in ``frame``, root-relative (pelvis at the origin)
        unless they carry a trajectory (e.g. world-frame poses from a file), one per frame of ``track`` (2D pixels
        (T, 17, 2) + confidence + frame size, and the detector's own 3D in ``track.world`` when it has one)."""
        ...


def choose_lifter(settings: Mapping[str, Any]) -> str:
    """The lifter of a run: ``--lifter`` if given (checked against the inputs), else the one an input flag of
    :data:`INPUT_FLAGS` implies (``--poses``: ``poses``; a ``--finetuned_ckpt``/``--lifter_ckpt`` checkpoint: the
    lifter it names), else :data:`DEFAULT_LIFTER`."""
    given = [flag for flag in INPUT_FLAGS if settings.get(flag)]
    if len(given) > 1:
        raise UserError(f"give at most one of {', '.join('--' + f for f in INPUT_FLAGS)} (got "
                        f"{', '.join('--' + f for f in given)})")
    implied = None
    if given == ["poses"]:
        implied = "poses"
    elif given:
        implied = str(load_checkpoint(resolve_checkpoint(settings[given[0]])).get("lifter", CHECKPOINT_LIFTER))
    lifter = settings.get("lifter")
    if lifter and implied and lifter != implied:
        raise UserError(f"--lifter {lifter} conflicts with --{given[0]} (a {implied} input)")
    return lifter or implied or DEFAULT_LIFTER


def lifter_class(name: str) -> type:
    """The class registered as ``name`` in :data:`LIFTERS` (one-line error for an unknown name)."""
    return registered_class(LIFTERS, name, "--lifter")


def make_lifter(name: str, settings: Mapping[str, Any], live: bool = False) -> Lifter:
    """Build the lifter ``name`` from the run's ``settings`` (flag name -> value; the class takes the ones its
    ``Options`` names). ``live``: a causal lifter, the ``streaming_substitute`` of one that is not (with a note
    when ``--lifter`` named it), else a one-line error."""
    cls = lifter_class(name)
    substitute = getattr(cls, "streaming_substitute", None)
    if live and substitute:
        if settings.get("lifter"):
            print(f"note: --live uses --lifter {substitute} in place of --lifter {name}, which is not causal (its "
                  "output frames read later frames)", file=sys.stderr)
        return make_lifter(substitute, settings, live)
    lifter = build(cls, settings)
    if lifter.convention not in CONVENTIONS:
        raise UserError(f"lifter {name!r} declares an unknown joint convention {lifter.convention!r}")
    if live and not lifter.causal:
        raise UserError(f"--live needs a causal lifter (output frame t from the 2D of frames <= t); --lifter {name} "
                        f"is not (receptive field {lifter.receptive_field or 'the whole sequence'})")
    return lifter
