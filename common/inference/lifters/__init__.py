"""Lifters: a 2D keypoint sequence -> 3D poses, behind one small protocol, picked by name (``inference.py --lifter``).

A lifter is any object with the :class:`Lifter` attributes and method. To add one, write one file in this
package with a class that has a ``from_config(config)`` classmethod (``config``: the run's
:class:`common.inference.inference_pipeline.InferenceConfig`) and add one line to :data:`LIFTERS`.

Joint conventions (:data:`CONVENTIONS`): the 17 joints are always in Human3.6M order, but *where* a joint sits
differs between sources, which changes bone lengths (see docs/in_the_wild.md, "Joint conventions"):

* ``h36m``: Human3.6M's marker-skeleton joints (what VideoPose3D and the bone-length model are trained on;
  ankles low, hip joints ≈ 26 cm apart);
* ``blazepose``: BlazePose's anatomical landmarks mapped by :func:`common.vision.detectors.to_h36m` (shins ≈ 37 cm, hip
  joints ≈ 19 cm apart on a real recording).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from common.utils.errors import UserError
from common.vision.tracking import Track2D

if TYPE_CHECKING:
    from common.inference.inference_pipeline import InferenceConfig

CONVENTIONS = ("h36m", "blazepose")

# name -> "module:Class"; one line per lifter, imported only when picked.
LIFTERS: dict[str, str] = {
    "videopose3d": "common.inference.lifters.videopose3d:VideoPose3DLifter",
    "mediapipe": "common.inference.lifters.mediapipe:MediaPipeLifter",
    "mediapipe_raw": "common.inference.lifters.mediapipe:MediaPipeRawLifter",
    "poses": "common.inference.lifters.poses:PosesFileLifter",
}


@runtime_checkable
class Lifter(Protocol):
    """What every lifter offers.

    name: its registry name. convention: the joint convention of its poses (:data:`CONVENTIONS`).
    frame: ``camera`` (x right, y down, z forward, as VideoPose3D outputs) or ``world`` (z up).
    receptive_field: frames of 2D it reads per output frame (1 = each frame alone, 0 = the whole sequence).
    causal: True if output frame t depends only on 2D frames <= t (usable live).
    length_model: a bone-length model that comes with the lifter (the mix model's frozen one), else None.
    """

    name: str
    convention: str
    frame: str
    receptive_field: int
    causal: bool
    length_model: object | None

    def lift(self, track: Track2D) -> np.ndarray:
        """3D poses of the followed person: (T, 17, 3) metres in ``frame``, root-relative (pelvis at the origin)
        unless they carry a trajectory (e.g. world-frame poses from a file), one per frame of ``track`` (2D pixels (T, 17, 2) + confidence + frame size, and the
        detector's own 3D in ``track.world`` when it has one)."""
        ...


def lifter_class(name: str) -> type:
    """The class registered as ``name`` in :data:`LIFTERS` (one-line error for an unknown name)."""
    if name not in LIFTERS:
        raise UserError(f"unknown --lifter {name!r}: choose from {', '.join(LIFTERS)}")
    module, _, cls = LIFTERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_lifter(name: str, config: "InferenceConfig") -> Lifter:
    """Build the lifter ``name`` for a run (it reads the fields of ``config`` it needs: checkpoints, files)."""
    lifter = lifter_class(name).from_config(config)
    if lifter.convention not in CONVENTIONS:
        raise UserError(f"lifter {name!r} declares an unknown joint convention {lifter.convention!r}")
    return lifter
