"""Extra real motion for the in-the-wild lifter (``train.py --cameras virtual --extra_motion``) and for the
bone-length model (``train.py -t length --extra_motion``, also through the dataset's own cameras:
:func:`dataset_camera_views`).

Three BVH clips shipped in Debian's ``assimp-testmodels`` package (``/usr/share/assimp/models/BVH``), 91 s in
all, none of them in the demo dataset:

* ``01_01.bvh`` (22.9 s) and ``01_03.bvh`` (37.6 s): trials 1 and 3 of subject 1 of the CMU Graphics Lab
  Motion Capture Database, in B. Hahne's cgspeed BVH conversion, 120 Hz, CMU length units
  (1/0.45 inch = 0.05644 m), Y up. Licence: "free for use in research and commercial projects worldwide"
  (mocap.cs.cmu.edu; the converter adds no restriction: ``01_nn.bvh.source.txt`` in the package).
* ``Boxing_Toes.bvh`` (30.7 s, 100 Hz, centimetres, Y up): a boxing clip of the assimp test models, BSD-3-Clause
  per the package's ``debian/copyright`` (``Files: *``, ASSIMP Development Team).

Each clip is read with :mod:`common.datasets.mocap` (its own parser and forward kinematics; the table of joints per
skeleton is below), resampled to 50 fps, split into unit bone directions and recomposed with the bone lengths of one of
the demo's training subjects (:func:`common.datasets.demo.subjects.sample_subject_bone_lengths`), its pelvis
trajectory scaled by the leg-length ratio and its lowest joint put 7 cm above the floor. Other sources that a
survey listed were not used: the AMP clips of the ``isaaclab`` wheel (19 s; the wheel declares "NVIDIA
Proprietary Software", and they retarget DeepMimic clips the demo already uses, its test clip ``dance_b``
possibly among them) and the two C3D trials of Debian's ``dart-doc`` (30 s of raw markers that need joint-centre
regression).

Fetching (once, cached under ``$BLAPOSE_CACHE/extra_motion`` with ``LICENCE.md`` next to the files):
``apt-get download assimp-testmodels`` into ``$BLAPOSE_CACHE/dists`` (or a ``.deb`` already placed there), then
the three BVH files are extracted from the package with Python (no dpkg). Offline or without apt: one line
saying what to place where.
"""
from __future__ import annotations

import io
import lzma
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.core.bones import bone_directions, bone_lengths, recompose
from common.core.camera import Camera, normalize_screen_coordinates
from common.datasets.dataset import Sequence3D
from common.datasets.demo.motion import FPS
from common.datasets.demo.build import project_views
from common.datasets.demo.config import DemoConfig
from common.datasets.demo.subjects import (LOWEST_JOINT_HEIGHT, MarginField, build_sequence,
                                           sample_subject_bone_lengths)
from common.datasets.virtual_cameras import segment_starts
from common.utils.downloads import cache_dir
from common.utils.errors import UserError
from common.utils.fileio import atomic_write
from common.datasets.mocap import bvh_to_motion, forward_kinematics, parse_bvh, resample

DEB_PACKAGE = "assimp-testmodels"
DEB_GLOB = "assimp-testmodels_*_all.deb"
BVH_FOLDER = "usr/share/assimp/models/BVH/"
CMU_UNITS_TO_METRES = 0.0254 / 0.45  # CMU's ASF length unit: 1/0.45 inch

# Human3.6M joint -> (BVH joint, offset in that joint's frame, file units); the pelvis is the hips' midpoint.
CMU_MARKERS = {
    "r_hip": ("RightUpLeg", (0, 0, 0)), "r_knee": ("RightLeg", (0, 0, 0)), "r_ankle": ("RightFoot", (0, 0, 0)),
    "l_hip": ("LeftUpLeg", (0, 0, 0)), "l_knee": ("LeftLeg", (0, 0, 0)), "l_ankle": ("LeftFoot", (0, 0, 0)),
    "spine": ("Spine1", (0, 0, 0)), "thorax": ("Neck1", (0, 0, 0)), "neck": ("Head", (0, 0.3, 1.5)),
    "head": ("Head", (0, 1.8, 0)), "l_shoulder": ("LeftArm", (0, 0, 0)), "l_elbow": ("LeftForeArm", (0, 0, 0)),
    "l_wrist": ("LeftHand", (0, 0, 0)), "r_shoulder": ("RightArm", (0, 0, 0)),
    "r_elbow": ("RightForeArm", (0, 0, 0)), "r_wrist": ("RightHand", (0, 0, 0)),
}
BOXING_MARKERS = {
    "r_hip": ("RightHip", (0, 0, 0)), "r_knee": ("RightKnee", (0, 0, 0)), "r_ankle": ("RightAnkle", (0, 0, 0)),
    "l_hip": ("LeftHip", (0, 0, 0)), "l_knee": ("LeftKnee", (0, 0, 0)), "l_ankle": ("LeftAnkle", (0, 0, 0)),
    "spine": ("Chest", (0, 0, 0)), "thorax": ("Neck", (0, 0, 0)), "neck": ("Head", (0, 3.0, 9.0)),
    "head": ("Head", (0, 16.0, 0)), "l_shoulder": ("LeftShoulder", (0, 0, 0)),
    "l_elbow": ("LeftElbow", (0, 0, 0)), "l_wrist": ("LeftWrist", (0, 0, 0)),
    "r_shoulder": ("RightShoulder", (0, 0, 0)), "r_elbow": ("RightElbow", (0, 0, 0)),
    "r_wrist": ("RightWrist", (0, 0, 0)),
}


@dataclass(frozen=True)
class ExtraClip:
    """One extra clip: ``file`` in the package's BVH folder, its units and joint table, the action name."""

    key: str
    file: str
    units_to_metres: float
    markers: dict
    action: str
    licence: str


EXTRA_CLIPS = [
    ExtraClip("cmu_01_01", "01_01.bvh", CMU_UNITS_TO_METRES, CMU_MARKERS, "Mocap CMU01_01",
              "CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu), free for research and commercial use; "
              "BVH conversion by B. Hahne (cgspeed), no added restriction"),
    ExtraClip("cmu_01_03", "01_03.bvh", CMU_UNITS_TO_METRES, CMU_MARKERS, "Mocap CMU01_03",
              "as cmu_01_01"),
    ExtraClip("boxing", "Boxing_Toes.bvh", 0.01, BOXING_MARKERS, "Boxing",
              "assimp test model, BSD-3-Clause (ASSIMP Development Team; Debian's assimp-testmodels copyright)"),
]


def _deb_member(deb: Path, member: str) -> bytes:
    """A file from a Debian package (an ``ar`` archive holding ``data.tar.xz``), read without dpkg."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise UserError(f"{deb} is not a Debian package")
    pos = 8
    while pos + 60 <= len(raw):
        name, size = raw[pos:pos + 16].decode().strip().rstrip("/"), int(raw[pos + 48:pos + 58].decode().strip())
        body = raw[pos + 60:pos + 60 + size]
        if name == "data.tar.xz":
            with tarfile.open(fileobj=io.BytesIO(lzma.decompress(body))) as tar:
                for candidate in (member, "./" + member):
                    try:
                        handle = tar.extractfile(candidate)
                    except KeyError:
                        continue
                    if handle is not None:
                        return handle.read()
            raise UserError(f"{deb} has no {member}")
        pos += 60 + size + (size % 2)
    raise UserError(f"{deb} has no data.tar.xz")


def _package(dists: Path) -> Path:
    found = sorted(dists.glob(DEB_GLOB))
    if found:
        return found[-1]
    dists.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=dists, check=True, capture_output=True,
                       timeout=300)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        raise UserError(f"could not fetch Debian's {DEB_PACKAGE} (offline, or no apt-get?): place its .deb in "
                        f"{dists} and rerun") from None
    found = sorted(dists.glob(DEB_GLOB))
    if not found:
        raise UserError(f"apt-get download {DEB_PACKAGE} wrote no {DEB_GLOB} in {dists}")
    return found[-1]


def fetch_extra_clips() -> dict[str, Path]:
    """The extra BVH files (key -> path), extracted once into ``$BLAPOSE_CACHE/extra_motion`` with a
    ``LICENCE.md`` beside them; later calls only read the cache."""
    folder = cache_dir() / "extra_motion"
    paths = {clip.key: folder / clip.file for clip in EXTRA_CLIPS}
    if all(p.is_file() for p in paths.values()) and (folder / "LICENCE.md").is_file():
        return paths
    deb = _package(cache_dir() / "dists")
    folder.mkdir(parents=True, exist_ok=True)
    for clip in EXTRA_CLIPS:
        data = _deb_member(deb, BVH_FOLDER + clip.file)
        atomic_write(paths[clip.key], lambda fh, d=data: fh.write(d))
    notes = "\n".join([
        "# Extra motion for the in-the-wild lifter (`train.py --cameras virtual --extra_motion`)", "",
        f"Extracted from `{deb.name}` (Debian package {DEB_PACKAGE}, folder /{BVH_FOLDER}).", "",
        "| file | licence |", "|---|---|",
        *[f"| {clip.file} | {clip.licence} |" for clip in EXTRA_CLIPS], "",
        "CMU asks publications to acknowledge: \"The data used in this project was obtained from "
        "mocap.cs.cmu.edu. The database was created with funding from NSF EIA-0196217.\"", ""])
    atomic_write(folder / "LICENCE.md", lambda fh: fh.write(notes.encode()))
    return paths


def clip_positions(path: Path, clip: ExtraClip) -> np.ndarray:
    """A clip's 17 Human3.6M joints at :data:`FPS`: (T, 17, 3) metres, Z up, its own skeleton's lengths."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    motion = bvh_to_motion(parse_bvh(text), clip.key, clip.units_to_metres, clip.markers)
    return forward_kinematics(resample(motion, np.arange(0.0, motion.duration, 1.0 / FPS)))


def extra_motions(subjects: list[str], clips: list[str] | None = None) -> list[tuple[str, str, np.ndarray]]:
    """(subject, action, (T, 17, 3) world metres, Z up, 50 fps) of the extra clips (all, or the ``clips`` keys):
    clip *i* is performed by ``subjects[i % len(subjects)]``, i.e. recomposed with that demo subject's bone
    lengths (:func:`common.datasets.demo.subjects.sample_subject_bone_lengths`), and put on the floor."""
    paths = fetch_extra_clips()
    chosen = [c for c in EXTRA_CLIPS if clips is None or c.key in clips]
    out = []
    for index, clip in enumerate(chosen):
        subject = subjects[index % len(subjects)]
        poses = clip_positions(paths[clip.key], clip)
        lengths = sample_subject_bone_lengths(subject, DemoConfig().seed)
        legs = [1, 2, 4, 5]
        trajectory = poses[:, 0] * (lengths[legs].mean() / bone_lengths(poses)[:, legs].mean())
        world = recompose(bone_directions(poses), lengths) + trajectory[:, None]
        world[..., 2] += LOWEST_JOINT_HEIGHT - world[..., 2].min()
        out.append((subject, clip.action, world.astype(np.float32)))
    return out


def dataset_camera_views(motions: list[tuple[str, str, np.ndarray]], cameras: dict[str, list[Camera]],
                         segment_frames: int, seed: int) -> tuple[list[Sequence3D], int]:
    """Film world motion through a dataset's own calibrated cameras (``train.py -t length --extra_motion`` with the
    dataset's cameras): each motion (subject, action, (T, 17, 3) world metres, Z up, as :func:`extra_motions`
    gives them) is cut into windows of ``segment_frames`` (:func:`common.datasets.virtual_cameras.segment_starts`),
    and each window is placed in its subject's capture volume the way the demo dataset places its clips
    (:func:`common.datasets.demo.subjects.build_sequence`: turned to a seeded heading, every joint of every frame
    inside all of the subject's camera images) and filmed by every camera of the subject.

    Returns (views, windows skipped because no placement keeps them inside every image). Each view: ``action``
    ``"<action> part <k>"``, ``poses_2d`` (S, 17, 2) exact projections in normalised screen coordinates (the demo's, :func:`common.datasets.demo.build.project_views`),
    ``poses_3d`` (S, 17, 3) metres, camera frame, the pelvis trajectory in joint 0 and the other joints
    root-relative (as :meth:`common.datasets.dataset.PoseDataset.fetch` returns views)."""
    if segment_frames < 2:
        raise ValueError("segment_frames must be >= 2")
    rng = np.random.default_rng([seed, 17])
    fields: dict[str, MarginField] = {}
    views: list[Sequence3D] = []
    skipped = 0
    for subject, action, world in motions:
        rig = cameras[subject]
        field = fields.setdefault(subject, MarginField(rig))
        world = np.asarray(world, dtype=np.float64)
        lengths = bone_lengths(world[:1])[0]  # the clip is recomposed with one body: every frame has these lengths
        for part, start in enumerate(segment_starts(len(world), segment_frames)):
            try:
                placed = build_sequence(world[start:start + segment_frames], lengths, rig, False, rng, field)
            except RuntimeError:
                skipped += 1
                continue
            for index, (camera, pixels) in enumerate(zip(rig, project_views(placed, rig))):
                local = camera.world_to_camera(placed)
                local[:, 1:] -= local[:, :1]
                views.append(Sequence3D(subject, f"{action} part {part}", index, camera,
                                        normalize_screen_coordinates(pixels, camera.res_w, camera.res_h),
                                        local.astype(np.float32)))
    return views, skipped
