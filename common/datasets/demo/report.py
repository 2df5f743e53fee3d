"""``DEMO_DATA.md``: the provenance, body, noise and licence note written next to the demo files."""
from __future__ import annotations

from common.datasets.dataset import TRAIN_SUBJECTS
from common.datasets.demo.config import BUILDER_VERSION, DemoConfig
from common.datasets.demo.manifest import DemoSummary
from common.datasets.demo.motion import CLIP_BY_KEY, FPS
from common.datasets.demo.subjects import (BONE_CLIP, BONE_SD, IMAGE_MARGIN_PX, LOWEST_JOINT_HEIGHT, MIN_DEPTH_M,
                                  STATURE_CLIP, STATURE_SD)
from common.datasets.keypoint_noise import (DETECTOR_AR, JUMP_FRAMES, JUMP_PX, NOISE_STD_PX, OUTLIER_RATE_HZ,
                                   SWAP_FRAMES)
from common.core.skeleton import BONE_NAMES


def demo_notes(config: DemoConfig, summary: DemoSummary) -> str:
    """The provenance/licence note written next to the files (``DEMO_DATA.md``)."""
    rows = []
    for subject, actions in summary.clips.items():
        split = "train" if subject in TRAIN_SUBJECTS else "test"
        rows += [f"| {subject} | {split} | {action} | {CLIP_BY_KEY[k].source}: `{CLIP_BY_KEY[k].path}` "
                 f"| {summary.frames[subject][action]} |" for action, k in actions.items()]
    length_rows = [f"| {s} | " + " | ".join(f"{v * 1000:.0f}" for v in ls) + " |"
                   for s, ls in summary.bone_lengths.items()]
    return "\n".join([
        "# Demo dataset (embedded default, `-d demo`)",
        "",
        f"Built by `setup.py` (`common/datasets/demo/`, builder version {BUILDER_VERSION}, fingerprint "
        f"`{summary.fingerprint}`, seed {config.seed}). Deterministic: rebuilding "
        "gives the same numbers. Format: VideoPose3D's preprocessed Human3.6M files (see docs/file_formats.md).",
        "",
        f"{len(summary.clips)} subjects, {summary.num_sequences} sequences, {summary.num_frames} frames "
        f"at {FPS} fps, 4 cameras each. S1, S5, S6, S7, S8 train; S9, S11 test. The test subjects perform only "
        f"clips no training subject performs ({', '.join(config.test_clips)}).",
        "",
        "## Provenance: clip -> subject/action",
        "",
        "| subject | split | action | source clip | frames |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "## Motion",
        "",
        "Real motion capture: DeepMimic clips from `pybullet_data` (pybullet 3.2.7, `data/motions/`), forward "
        "kinematics through `pybullet_data/humanoid/humanoid.urdf` (offsets × 0.25), and the MocapBank BVH "
        "`tests/example_files/test_mocapbank.bvh` of the bvhtoolbox 0.1.3 sdist (own parser, cm -> m). Joints "
        "map to Human3.6M's 17 (nose and head top placed as fixed points in the head/neck frame). Each clip is "
        f"resampled to {FPS} fps (slerp), looped (wrap clips; each cycle continues rigidly from the last) or "
        f"played forwards then backwards (other clips) to {config.frames} frames, split into unit bone "
        "directions, recomposed with the subject's bone lengths (`common.core.bones.recompose`), steered on a "
        "constant yaw rate (looping clips on circles of radius 0.6-1.5 m, the others <= 0.15 rad/s), the "
        "pelvis trajectory scaled by the leg-length ratio, the "
        f"lowest joint of the sequence {LOWEST_JOINT_HEIGHT} m above the floor (Z up), and placed near the "
        "centre of the subject's four Human3.6M cameras with a random heading: of 24 seeded (heading, yaw rate) "
        "candidates, each tried at 81 positions within ±0.8 m of the rig's centre, the one with the widest "
        f"image margin is kept; every joint of every frame is inside every image (margin >= {IMAGE_MARGIN_PX:.0f} "
        f"px) at depth > {MIN_DEPTH_M} m. The 15 joints of the 32-joint layout that the 17-joint loader drops copy a "
        "neighbour (toes = ankle, hand sites = wrist, shoulder anchors = thorax, joint 11 = pelvis).",
        "",
        "## Bone lengths (mm), left/right symmetric, constant over time",
        "",
        f"Mean adult lengths × stature factor N(1, {STATURE_SD}) (clipped ±{STATURE_CLIP}) × one factor per "
        f"bone group N(1, {BONE_SD}) (clipped ±{BONE_CLIP}; left/right share theirs), seeded per subject.",
        "",
        "| subject | " + " | ".join(BONE_NAMES) + " |",
        "|---" * (len(BONE_NAMES) + 1) + "|",
        *length_rows,
        "",
        "## 2D keypoints",
        "",
        "* `data_2d_demo_gt.npz`: exact projection through each camera with its radial and tangential "
        "distortion (`common.core.camera.project_to_2d`), pixels.",
        "* `data_2d_demo_detections.npz` (detector-like): AR(1) noise per view, joint and axis with coefficient "
        f"{DETECTOR_AR} per frame and stationary std (px, joint order of common.core.skeleton) "
        f"{', '.join(f'{v:g}' for v in NOISE_STD_PX)}; plus outlier events, Poisson with {OUTLIER_RATE_HZ} "
        f"per second per view: half left/right swaps (wrists, elbow+wrist, ankles or knee+ankle) for "
        f"{SWAP_FRAMES[0]}-{SWAP_FRAMES[1]} frames, half jumps of one joint by {JUMP_PX[0]:g}-{JUMP_PX[1]:g} px "
        f"in a random direction for {JUMP_FRAMES[0]}-{JUMP_FRAMES[1]} frames.",
        "",
        "## Licences",
        "",
        "* DeepMimic motion clips and humanoid URDF: shipped in pybullet's `pybullet_data` (zlib licence).",
        "* MocapBank BVH: from the bvhtoolbox 0.1.3 sdist (MIT licence).",
        "* Camera parameters: Human3.6M's published calibration (as distributed with VideoPose3D); the "
        "Human3.6M images and motion are not used.",
        "* Demo video `data/demo.mp4`: from the sports2d 0.8.34 wheel (BSD-3-Clause).",
        "",
    ])
