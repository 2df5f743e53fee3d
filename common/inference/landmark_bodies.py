"""Anny bodies measured in BlazePose's landmark convention: the source of the limb prior and of the BlazePose
length model's training bank.

Anny's COCO keypoint regressor (shoulders, elbows, wrists, hips, knees, ankles, nose, eyes, ears: anatomical
landmarks like BlazePose's) on rest-pose adult bodies (:class:`common.datasets.body_model.AnnySampler`), mapped to
the 17 joints as the detectors map BlazePose's landmarks (:func:`common.vision.detectors.to_h36m`).

* :func:`coco_limb_lengths`: limbs, bones, statures and standing head/ankle heights of sampled bodies
  (``data/bone_length/generate_limb_prior.py``);
* :func:`blazepose_bank`: (N, 16) bone lengths in BlazePose's landmark convention, the four limbs moved by the
  prior's convention offset (centred log lengths, ``limb_prior.json``'s ``convention_offset_log``) or another one
  (``data/bone_length/generate_blazepose_bank.py``; ``train.py -t length --length_convention blazepose``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from common.core.bones import average_symmetric
from common.core.skeleton import JOINT_NAMES
from common.inference.length_sources import PRIOR_LIMBS, offset_limbs

# COCO keypoint names of Anny's regressor, per limb: (parent, child) for the left and the right side.
COCO_LIMBS = {
    "thigh": (("left_hip", "left_knee"), ("right_hip", "right_knee")),
    "calf": (("left_knee", "left_ankle"), ("right_knee", "right_ankle")),
    "upper_arm": (("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow")),
    "lower_arm": (("left_elbow", "left_wrist"), ("right_elbow", "right_wrist")),
}
COCO_17 = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
           "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
           "right_ankle"]  # the COCO order of common.vision.detectors.COCO_PARTS


class AnnyMeasures(NamedTuple):
    """What :func:`coco_limb_lengths` measures on each sampled rest-pose body (metres; N bodies)."""

    limbs: np.ndarray              # (N, 4) :data:`PRIOR_LIMBS` order, left/right averaged
    bones: np.ndarray              # (N, 16) of the 17 joints mapped from the COCO keypoints
    statures: np.ndarray           # (N,) the mesh's extent along the up direction (ankles' midpoint -> nose)
    head_above_ankles: np.ndarray  # (N,) the head joint (:func:`~common.vision.detectors.to_h36m`) above the ankles
    ankles_above_floor: np.ndarray  # (N,) the ankles' midpoint above the mesh's lowest point (the sole)


def coco_limb_lengths(amount: int, seed: int, batch: int = 500) -> AnnyMeasures:
    """Anny bodies measured as :class:`AnnyMeasures` (limbs, bones and statures: the limb prior; the head and ankle
    heights of the standing body: the height read through a calibrated camera, :mod:`common.inference.camera_size`).
    Heights are along the direction from the ankles' midpoint to the nose."""
    import anny
    import torch

    from common.datasets.body_model import AnnySampler
    from common.core.bones import bone_lengths
    from common.vision.detectors import COCO_PARTS, to_h36m

    sampler = AnnySampler(seed=seed)
    labels = COCO_17
    regressor = anny.KeypointsRegressor.coco(sampler.model, labels=labels)
    out, bones, statures, heads, ankles = [], [], [], [], []
    for start in range(0, amount, batch):
        phenotype, local = sampler.sample_parameters(min(batch, amount - start))
        with torch.no_grad():
            vertices = sampler.model(phenotype_kwargs=phenotype, local_changes_kwargs=local)["rest_vertices"]
            points = regressor({"vertices": vertices}).double().cpu().numpy()
        lengths = [np.mean([np.linalg.norm(points[:, labels.index(b)] - points[:, labels.index(a)], axis=-1)
                            for a, b in COCO_LIMBS[limb]], axis=0) for limb in PRIOR_LIMBS]
        out.append(np.stack(lengths, axis=1))
        joints, _ = to_h36m(points, np.ones(points.shape[:2]), COCO_PARTS)
        bones.append(bone_lengths(joints.astype(np.float64)))
        ankle_mid = (points[:, labels.index("left_ankle")] + points[:, labels.index("right_ankle")]) / 2
        up = points[:, labels.index("nose")] - ankle_mid
        up /= np.linalg.norm(up, axis=-1, keepdims=True)
        heights = np.einsum("bvc,bc->bv", vertices.double().cpu().numpy(), up)
        statures.append(heights.max(axis=1) - heights.min(axis=1))
        ankle = np.einsum("bc,bc->b", ankle_mid, up)
        heads.append(np.einsum("bc,bc->b", joints[:, JOINT_NAMES.index("head")].astype(np.float64), up) - ankle)
        ankles.append(ankle - heights.min(axis=1))
    return AnnyMeasures(*(np.concatenate(x) for x in (out, bones, statures, heads, ankles)))


def blazepose_bank(amount: int, seed: int, offset: np.ndarray) -> np.ndarray:
    """(amount, 16) float32 bone lengths (metres, :data:`common.core.skeleton.BONE_NAMES` order, left/right
    averaged) of Anny bodies in BlazePose's landmark convention: :func:`coco_limb_lengths`' bones with the limbs
    moved by ``offset`` (4,) (:func:`common.inference.length_sources.offset_limbs`)."""
    bones = coco_limb_lengths(amount, seed).bones
    return average_symmetric(offset_limbs(bones, offset)).astype(np.float32)
