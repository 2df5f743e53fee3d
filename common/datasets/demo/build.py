"""The embedded demo dataset: real motion capture, per-subject bodies, Human3.6M cameras, VideoPose3D files.

What :func:`build_demo_dataset` makes (see ``data/DEMO_DATA.md``, written next to the files):

* ``data_3d_demo.npz``: ``positions_3d`` -> ``subject -> action -> (T, 32, 3)`` float32, world frame (Z up),
  metres, 50 fps. The 17 used joints sit at :data:`common.core.skeleton.H36M_32_TO_17`; the 15 others copy a
  neighbour (toes/sites = ankle, hand sites = wrist, shoulder anchors = thorax, joint 11 = pelvis).
* ``data_2d_demo_gt.npz``: ``positions_2d`` -> ``subject -> action -> [4 × (T, 17, 2)]`` pixels, the exact
  projection (with lens distortion) through the subject's four Human3.6M cameras; ``metadata``.
* ``data_2d_demo_detections.npz``: the same plus detector-like noise
  (:func:`common.datasets.keypoint_noise.detector_noise`).

Motion: each clip (DeepMimic or BVH, :mod:`common.datasets.mocap`) is resampled to 50 fps, looped (``wrap`` clips, each
cycle continuing from where the previous one ended) or played back and forth (other clips) to the requested
length, split into unit bone directions, steered on a gentle curve (a constant yaw rate, so the trajectory
stays in the capture volume), and recomposed with the subject's own bone lengths; the pelvis trajectory is
scaled by the subject's leg length over the clip's. The lowest joint of the sequence is put at
:data:`common.datasets.demo.subjects.LOWEST_JOINT_HEIGHT` above the floor, and the placement (start heading, yaw rate,
position) is the first of a seeded list of candidates for which every joint stays inside all four images at
positive depth.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.core.camera import Camera, load_cameras
from common.datasets.demo.config import DemoConfig, subject_assignments
from common.datasets.demo.manifest import FILES, DemoSummary, write_manifest
from common.datasets.demo.motion import CLIP_BY_KEY, CLIPS, FPS, load_clip, unrolled_clip
from common.datasets.demo.report import demo_notes
from common.datasets.demo.subjects import SUBJECT_NUMBERS, MarginField, build_sequence, sample_subject_bone_lengths
from common.utils.downloads import fetch_bvh
from common.utils.fileio import atomic_write, save_npz
from common.datasets.keypoint_noise import detector_noise
from common.core.skeleton import H36M_32_TO_17, JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS

# The 15 Human3.6M joints that the 17-joint layout drops, filled with a copy of a neighbour (32-index: source).
EXTRA_32_FROM = {4: 3, 5: 3, 9: 8, 10: 8, 11: 0, 16: 13, 20: 19, 21: 19, 22: 19, 23: 19, 24: 13,
                 28: 27, 29: 27, 30: 27, 31: 27}



def project_views(world: np.ndarray, cameras: list[Camera]) -> list[np.ndarray]:
    """world (T, 17, 3) metres -> [4 × (T, 17, 2) float32 pixels], exact projection with distortion."""
    return [cam.project(cam.world_to_camera(world.astype(np.float32))).astype(np.float32) for cam in cameras]



def to_32_joints(poses: np.ndarray) -> np.ndarray:
    """(T, 17, 3) -> (T, 32, 3) in Human3.6M's 32-joint layout (unused joints copy a neighbour)."""
    out = np.zeros((poses.shape[0], 32, 3), dtype=np.float32)
    out[:, H36M_32_TO_17] = poses
    for target, source in EXTRA_32_FROM.items():
        out[:, target] = out[:, source]
    return out



def build_demo_dataset(out_dir: str | Path, config: DemoConfig = DemoConfig(), bvh_path: Path | None = None,
                       progress: bool = True, write_notes: bool = True) -> DemoSummary:
    """Build the three demo npz files (and ``DEMO_DATA.md``, ``demo_manifest.json``) into ``out_dir``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the many small camera projections run far faster single-threaded
    try:
        return _build(Path(out_dir), config, bvh_path, progress, write_notes)
    finally:
        torch.set_num_threads(threads)


def _build(out_dir: Path, config: DemoConfig, bvh_path: Path | None, progress: bool,
           write_notes: bool) -> DemoSummary:
    started = time.time()
    cameras = load_cameras()
    fields = {}
    assignments = subject_assignments(config)
    keys = sorted({k for ks in assignments.values() for k in ks})
    if "mocapbank" in keys and bvh_path is None:
        bvh_path = fetch_bvh()
    motions = {k: load_clip(CLIP_BY_KEY[k], bvh_path) for k in keys}
    unrolled = {k: unrolled_clip(m, config.frames) for k, m in motions.items()}
    loops = {k: m.loop for k, m in motions.items()}

    positions_3d, gt_2d, det_2d = {}, {}, {}
    lengths_by_subject, frames = {}, {}
    jobs = [(s, k) for s, ks in assignments.items() for k in ks]
    for subject, key in tqdm(jobs, desc="demo sequences", disable=not progress):
        lengths = sample_subject_bone_lengths(subject, config.seed)
        lengths_by_subject[subject] = lengths
        number = SUBJECT_NUMBERS[subject]
        rng = np.random.default_rng([config.seed, number, 1 + CLIPS.index(CLIP_BY_KEY[key])])
        if subject not in fields:
            fields[subject] = MarginField(cameras[subject])
        world = build_sequence(unrolled[key], lengths, cameras[subject], loops[key], rng, fields[subject])
        action = CLIP_BY_KEY[key].action
        positions_3d.setdefault(subject, {})[action] = to_32_joints(world)
        views = project_views(world, cameras[subject])
        gt_2d.setdefault(subject, {})[action] = views
        noisy = detector_noise(np.stack(views), rng, FPS)
        det_2d.setdefault(subject, {})[action] = list(noisy)
        frames.setdefault(subject, {})[action] = int(len(world))

    metadata = {"layout_name": "h36m", "num_joints": NUM_JOINTS, "keypoints_symmetry": [JOINTS_LEFT, JOINTS_RIGHT]}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npz(out_dir / FILES[0], positions_3d=positions_3d)
    save_npz(out_dir / FILES[1], positions_2d=gt_2d, metadata=metadata)
    save_npz(out_dir / FILES[2], positions_2d=det_2d, metadata=metadata)
    summary = DemoSummary({s: {CLIP_BY_KEY[k].action: k for k in ks} for s, ks in assignments.items()}, frames,
                          {s: [float(v) for v in lengths_by_subject[s]] for s in assignments},
                          time.time() - started, config.fingerprint())
    if write_notes:
        atomic_write(out_dir / "DEMO_DATA.md", lambda fh: fh.write(demo_notes(config, summary).encode()))
    write_manifest(out_dir, config, summary)
    return summary
