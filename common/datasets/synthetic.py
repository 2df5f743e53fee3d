"""Synthetic training batches for the bone-length model, built entirely as batched tensor operations.

The paper's recipe: take ground-truth 3D motion, split it into unit bone directions, recombine the
directions of each 512-frame chunk with a sampled bone-length vector, add the root trajectory plus a random
translation ~ N(0, 0.5 m), project through the sequence's real camera with lens distortion, and regress the
sampled lengths from the resulting 2D sequence. Left/right flip augmentation mirrors the camera-frame poses,
the camera (``cx``, ``p1``) and the lengths.

The paper's placement keeps the original pelvis trajectory, so a taller synthetic body's feet sink below the floor
and a shorter one's hover, and the random translation moves it anywhere in 3D: where a body stands in the image says
nothing of its size. ``placement="floor"`` (not in the paper) keeps people on the floor instead: each recomposed
chunk is raised or lowered along the world's up direction so that its lower ankle stays, on average over the
chunk's frames, at the original motion's lower-ankle height, and the random translation is drawn in the floor plane
only (its component along the up direction removed). Through fixed calibrated cameras a foot's image position then
fixes the distance and the image extent the size, as in real footage. The up direction in the camera frame comes from
each view's extrinsics (:func:`common.core.camera.world_up_in_camera`).
``yaw=True`` (not in the paper; the frame-evidence model's default, :mod:`common.models.proportion_model`) turns
each chunk's motion by a random angle, uniform over the full circle, about the world's up direction through the
chunk's mean pelvis position before it is placed: the same motion seen from every side, not only from the few
directions of the dataset's cameras, so that what a pose's 2D says of each bone's foreshortening is learnt from every
viewpoint. Heights above the floor do not change.
``limb_mix=p`` (not in the paper; off by default) gives each limb (either arm, either leg) of a chunk, with probability
``p`` per limb, the limb of another chunk of the batch, frame by frame: the donor's bone directions are expressed in
the donor's body frame (pelvis for a leg, thorax for an arm: the left-right axis of the hips or shoulders and the
spine's up direction) and set into the receiving body's frame, so that the limb keeps its pose *relative to the
body* while the combination is new: more distinct poses than the training motion holds, for a per-frame reader of
foreshortening that must work on motion it has not seen.
Optionally (not in the paper; off by default) detector-like noise
is added to the projected 2D: per chunk, joint and axis the AR(1) process of :mod:`common.datasets.keypoint_noise` over
the frames with a stationary std of ``noise_2d_px`` pixels, so that the model also sees jittery keypoints.
``jitter_chunks=q`` (off by default) instead gives a share ``q`` of the chunks the demo detections' jitter (the same
AR(1) process with :data:`common.datasets.keypoint_noise.NOISE_STD_PX` per joint) and marks them
(``SyntheticBatch.jittered``), so that the evidence model's per-frame likelihood can leave them out: a frame that
says less would be read closer to the bank mean, and the pooled reading would keep that pull.
``person_chunks=K`` (off, 1, by default) makes every K consecutive chunks of a batch one person: one bank row
through K motions and cameras (``SyntheticBatch.person``), for the evidence model's measurements, trained on a
person's many sequences pooled (``train.py -t length --person_chunks``).

Every sequence of the training set is stored once on the device (directions ``(F, 16, 3)``, trajectories
``(F, 3)``, one intrinsic vector per sequence); a batch is a gather of chunk frame indices followed by one
recomposition and one projection: no Python loop over samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from common.core.bones import average_symmetric, bone_directions, recompose
from common.core.camera import camera_features, flip_intrinsic, project_to_2d, world_up_in_camera
from common.datasets.dataset import Sequence3D
from common.utils.errors import UserError
from common.datasets.keypoint_noise import NOISE_STD_PX, ar1_noise
from common.core.skeleton import NUM_BONES, NUM_JOINTS, flip_bone_lengths, flip_poses

MIN_DEPTH = 1.0  # metres: the closest a synthetic pelvis trajectory may come to the camera
PLACEMENTS = ("paper", "floor")  # where a recomposed body goes: the paper's recipe, or feet kept on the floor
ANKLES = (3, 6)  # r_ankle, l_ankle
# Limb mixing: each limb's bones and the body frame it is moved in, given by bones (left, right, up):
# the pelvis frame (l_hip, r_hip, spine bones) for a leg, the thorax frame (l_shoulder, r_shoulder, thorax) for an arm.
PELVIS_FRAME, THORAX_FRAME = (3, 0, 6), (10, 13, 7)
LIMBS = (((1, 2), PELVIS_FRAME), ((4, 5), PELVIS_FRAME), ((11, 12), THORAX_FRAME), ((14, 15), THORAX_FRAME))
# The bone-length banks (N, 16) metres a length model trains on by default, the first one present in data/.
DEFAULT_BANKS = ["bone_lengths_smpl_neutral_all.npz", "bone_lengths_anny_neutral_train.npz"]


@dataclass
class SyntheticBatch:
    """keypoints_2d (B, L, 17, 2) normalised; lengths (B, 16) metres (the regression target);
    poses_3d (B, L, 17, 3) camera frame metres (absolute, the projected skeletons); intrinsic (B, 9);
    camera (B, 8) :func:`common.core.camera.camera_features` of the (mirrored, where flipped) camera."""

    keypoints_2d: torch.Tensor
    lengths: torch.Tensor
    poses_3d: torch.Tensor
    intrinsic: torch.Tensor
    camera: torch.Tensor
    jittered: torch.Tensor | None = None  # (B,) bool: the chunks given a detector's jitter (``jitter_chunks``)
    person: torch.Tensor | None = None  # (B,) long: chunks with the same id are one person (``person_chunks``)


class LengthSampler:
    """Draws bone-length vectors (B, 16) metres on the device, symmetric pairs equal.

    kind: ``smpl`` (rows of a body-model bank, e.g. ``bone_lengths_anny_neutral_train.npz``), ``random_unif``
    (every sample: a subject's lengths times U(0.8, 1.2) per bone), ``random_norm_train`` /
    ``random_norm_all`` (N(mean, std) of the training / all subjects' lengths, per bone).
    bank: (N, 16) for ``smpl``; subject_lengths: (S, 16) per-subject lengths for the ``random_*`` kinds.
    """

    UNIFORM_RANGE = (0.8, 1.2)

    def __init__(self, kind: str, device: torch.device, bank: np.ndarray | None = None,
                 subject_lengths: np.ndarray | None = None) -> None:
        self.kind = kind
        if kind == "smpl":
            if bank is None or bank.ndim != 2 or bank.shape[1] != NUM_BONES or len(bank) == 0:
                raise UserError("--length_aug_type smpl needs a bone-length bank of shape (N, 16)")
            self.bank = average_symmetric(torch.as_tensor(bank, dtype=torch.float32, device=device))
        elif kind in ("random_unif", "random_norm_train", "random_norm_all"):
            if subject_lengths is None or len(subject_lengths) == 0:
                raise UserError(f"--length_aug_type {kind} needs the subjects' ground-truth lengths")
            subj = torch.as_tensor(np.asarray(subject_lengths), dtype=torch.float32, device=device)
            self.bank = average_symmetric(subj)
            self.mean = self.bank.mean(dim=0)
            self.std = self.bank.std(dim=0, unbiased=False) if len(self.bank) > 1 else 0.05 * self.mean
        else:
            raise UserError(f"unknown --length_aug_type {kind!r}")

    def spread_proportions(self, factor: float) -> "LengthSampler":
        """Spread the bank's proportions about their mean by ``factor`` (``smpl`` banks only): each row's centred log
        lengths ``p`` become ``mean(p) + factor (p - mean(p))`` at its own size (mean log length), then every bone is
        rescaled by one factor so that the bank's per-bone mean stays what it was (the model starts there and the
        "bank mean" reference row is unchanged; the sizes all move by the same ~0.1 %). Returns self."""
        if self.kind != "smpl":
            raise UserError("--proportion_spread spreads a body-model bank: it needs --length_aug_type smpl")
        before = self.bank.mean(0)
        log_lengths = torch.log(self.bank)
        size = log_lengths.mean(-1, keepdim=True)
        proportions = log_lengths - size
        centre = proportions.mean(0, keepdim=True)
        spread = torch.exp(size + centre + factor * (proportions - centre))
        self.bank = spread * (before / spread.mean(0))
        return self

    @property
    def mean_lengths(self) -> torch.Tensor:
        """(16,) metres: the mean of the lengths this sampler draws."""
        return self.bank.mean(dim=0) if self.kind in ("smpl", "random_unif") else self.mean

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        device = self.bank.device
        if self.kind in ("smpl", "random_unif"):
            rows = torch.randint(len(self.bank), (n,), generator=generator, device=device)
            lengths = self.bank[rows]
            if self.kind == "random_unif":
                low, high = self.UNIFORM_RANGE
                lengths = lengths * (low + (high - low) * torch.rand(lengths.shape, generator=generator,
                                                                      device=device))
        else:
            noise = torch.randn((n, NUM_BONES), generator=generator, device=device)
            lengths = self.mean + noise * self.std
        return average_symmetric(lengths.clamp_min(0.01))


def lower_ankle_height(poses: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Per frame, the height along ``up`` of the lower ankle: poses (..., L, 17, 3) absolute camera frame
    metres, up (..., 3) unit camera-frame vectors -> (..., L) metres (the camera centre at 0)."""
    heights = (poses[..., ANKLES, :] * up[..., None, None, :]).sum(-1)
    return heights.amin(-1)


def body_frame(directions: torch.Tensor, left: int, right: int, up: int) -> torch.Tensor:
    """directions: (..., 16, 3) unit bone directions -> (..., 3, 3) rotation whose columns are the body's
    right-to-left axis (bone ``left`` minus bone ``right``), the ``up`` bone's direction made orthogonal to it, and
    their cross product."""
    across = directions[..., left, :] - directions[..., right, :]
    across = across / torch.linalg.vector_norm(across, dim=-1, keepdim=True).clamp_min(1e-6)
    upward = directions[..., up, :]
    upward = upward - (upward * across).sum(-1, keepdim=True) * across
    upward = upward / torch.linalg.vector_norm(upward, dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.stack([across, upward, torch.linalg.cross(across, upward, dim=-1)], dim=-1)


def mix_limbs(directions: torch.Tensor, donors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """directions: (B, L, 16, 3); donors: (B,) long, the chunk each chunk takes limbs from; mask: (B, 4) bool, which
    of :data:`LIMBS` it takes. Returns new directions: each taken limb is the donor's, frame by frame, moved from the
    donor's body frame into the receiver's (:func:`body_frame`)."""
    donor = directions[donors]
    mixed = directions.clone()
    frames = {}
    for index, (bones, frame) in enumerate(LIMBS):
        if frame not in frames:
            frames[frame] = body_frame(directions, *frame) @ body_frame(donor, *frame).transpose(-1, -2)
        moved = torch.einsum("blij,blkj->blki", frames[frame], donor[:, :, list(bones)])
        take = mask[:, index, None, None, None]
        mixed[:, :, list(bones)] = torch.where(take, moved, directions[:, :, list(bones)])
    return mixed


def rotation_about(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (B, 3, 3) by ``angle`` (B,) radians about the unit ``axis`` (B, 3) (Rodrigues)."""
    k = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True).clamp_min(1e-9)
    zero = torch.zeros_like(k[:, 0])
    cross = torch.stack([torch.stack([zero, -k[:, 2], k[:, 1]], -1),
                         torch.stack([k[:, 2], zero, -k[:, 0]], -1),
                         torch.stack([-k[:, 1], k[:, 0], zero], -1)], dim=1)
    eye = torch.eye(3, dtype=k.dtype, device=k.device).expand_as(cross)
    sin, cos = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return eye + sin * cross + (1.0 - cos) * (cross @ cross)


class SyntheticBatchBuilder:
    """Holds the training motion on the device and turns chunk indices into synthetic 2D batches.

    sequences: camera views with 3D (``poses_3d`` camera frame, joint 0 = pelvis trajectory, other joints
    root-relative, as :meth:`common.datasets.dataset.PoseDataset.fetch` returns them). Chunks are windows of
    ``chunk_len`` frames starting every ``segment_shift`` frames (sequences shorter than a chunk are skipped).
    translation_std: metres, std of the random translation (camera frame); noise_2d_px: stationary std (pixels
    of each sequence's camera) of the optional AR(1) 2D noise, 0 = clean projections (the paper);
    placement: ``paper`` or ``floor`` (module docstring); yaw: turn each chunk by a random angle about the up
    direction (module docstring); limb_mix: probability per limb of taking another chunk's limb (module docstring).
    """

    def __init__(self, sequences: Sequence[Sequence3D], chunk_len: int, segment_shift: int,
                 device: torch.device, translation_std: float = 0.5, noise_2d_px: float = 0.0,
                 placement: str = "paper", yaw: bool = False, limb_mix: float = 0.0, jitter_chunks: float = 0.0,
                 person_chunks: int = 1) -> None:
        if chunk_len < 2 or segment_shift < 1:
            raise UserError("chunk length must be >= 2 and segment shift >= 1")
        if not 0.0 <= limb_mix <= 1.0:
            raise UserError(f"the limb mixing probability must be in [0, 1], got {limb_mix}")
        if not 0.0 <= jitter_chunks <= 1.0:
            raise UserError(f"the share of jittered chunks must be in [0, 1], got {jitter_chunks}")
        if person_chunks < 1:
            raise UserError(f"the chunks per synthetic person must be >= 1, got {person_chunks}")
        if translation_std < 0 or noise_2d_px < 0:
            raise UserError("the translation std and the 2D noise must be >= 0")
        if placement not in PLACEMENTS:
            raise UserError(f"unknown synthetic placement {placement!r} (choose from {', '.join(PLACEMENTS)})")
        directions, trajectories, intrinsics, starts, seq_of_chunk, ups, feet = [], [], [], [], [], [], []
        pixel_scale, heights = [], []
        offset = 0
        for index, view in enumerate(sequences):
            if view.poses_3d is None:
                raise UserError(f"{view.subject}/{view.action}: synthetic batches need 3D ground truth")
            poses = np.asarray(view.poses_3d, dtype=np.float32)
            rel = poses.copy()
            rel[:, 0] = 0.0
            directions.append(bone_directions(rel))
            trajectories.append(poses[:, 0])
            ups.append(world_up_in_camera(view.camera))
            heights.append(float(np.asarray(view.camera.translation)[2]))  # camera above the floor (world Z = 0)
            absolute = torch.as_tensor(rel + poses[:, :1])
            feet.append(lower_ankle_height(absolute, torch.as_tensor(ups[-1])).numpy())
            intrinsics.append(np.asarray(view.camera.intrinsic, dtype=np.float32))
            pixel_scale.append(2.0 / view.camera.res_w)  # one pixel in normalised screen units
            n_frames = len(poses)
            if n_frames >= chunk_len:
                chunk_starts = np.arange(0, n_frames - chunk_len + 1, segment_shift)
                starts.append(chunk_starts + offset)
                seq_of_chunk.append(np.full(len(chunk_starts), index))
            offset += n_frames
        if not starts:
            raise UserError(f"no training sequence is at least {chunk_len} frames long; lower -l/--chunk_len")
        self.device = device
        self.chunk_len = chunk_len
        self.translation_std = translation_std
        self.placement = placement
        self.yaw = yaw
        self.limb_mix = limb_mix
        self.ups = torch.as_tensor(np.stack(ups), device=device)  # (S, 3) world up, camera frame
        self.camera_heights = torch.as_tensor(heights, dtype=torch.float32, device=device)  # (S,) metres
        self.foot_heights = torch.as_tensor(np.concatenate(feet), device=device)  # (F,) original lower ankle
        self.directions = torch.as_tensor(np.concatenate(directions), device=device)
        self.trajectories = torch.as_tensor(np.concatenate(trajectories), device=device)
        self.intrinsics = torch.as_tensor(np.stack(intrinsics), device=device)
        self.chunk_starts = torch.as_tensor(np.concatenate(starts), dtype=torch.long, device=device)
        self.chunk_sequence = torch.as_tensor(np.concatenate(seq_of_chunk), dtype=torch.long, device=device)
        self._frame_offsets = torch.arange(chunk_len, device=device)
        self.noise_2d_px = noise_2d_px
        self.jitter_chunks = jitter_chunks
        self.person_chunks = person_chunks
        self.pixel_scale = torch.as_tensor(pixel_scale, dtype=torch.float32, device=device)

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_starts)

    def build(self, chunk_ids: torch.Tensor, lengths: torch.Tensor, flip: torch.Tensor,
              translation: torch.Tensor, yaw: torch.Tensor | None = None,
              limbs: tuple[torch.Tensor, torch.Tensor] | None = None) -> SyntheticBatch:
        """chunk_ids (B,) long; lengths (B, 16) metres; flip (B,) bool; translation (B, 3) metres, camera frame;
        yaw (B,) radians or None: the motion turned about the world's up direction through the chunk's mean pelvis
        position (before the placement below); limbs: (donors (B,) long, mask (B, 4) bool) or None: limb mixing
        (:func:`mix_limbs`, after the yaw).

        ``paper`` placement: the translation's depth component is raised where needed so that the pelvis stays
        at least :data:`MIN_DEPTH` in front of the camera over the whole chunk. ``floor``: the translation loses
        its component along the up direction, the body is shifted along it so that its mean lower-ankle height
        over the chunk is the original motion's, and a body too close is moved away along the floor (the
        optical axis projected onto the floor plane) instead.
        """
        frames = self.chunk_starts[chunk_ids][:, None] + self._frame_offsets  # (B, L)
        sequence = self.chunk_sequence[chunk_ids]
        trajectory = self.trajectories[frames]  # (B, L, 3)
        directions = self.directions[frames]  # (B, L, 16, 3)
        if yaw is not None:
            turn = rotation_about(self.ups[sequence], yaw)  # (B, 3, 3)
            centre = trajectory.mean(dim=1, keepdim=True)
            trajectory = torch.einsum("bij,blj->bli", turn, trajectory - centre) + centre
            directions = torch.einsum("bij,blkj->blki", turn, directions)
        if limbs is not None:
            directions = mix_limbs(directions, *limbs)
        depth_floor = MIN_DEPTH - trajectory[..., 2].amin(dim=1)  # (B,)
        poses = recompose(directions, lengths[:, None, :])  # (B, L, 17, 3) root-relative
        poses = poses + trajectory[:, :, None, :]
        if self.placement == "floor":
            up = self.ups[sequence]  # (B, 3)
            translation = translation - (translation * up).sum(-1, keepdim=True) * up
            lift = (self.foot_heights[frames] - lower_ankle_height(poses, up)).mean(dim=1)  # (B,)
            translation = translation + lift[:, None] * up
            forward = torch.zeros_like(up)
            forward[:, 2] = 1.0
            forward = forward - up[:, 2:] * up
            forward = forward / torch.linalg.vector_norm(forward, dim=-1, keepdim=True).clamp_min(1e-6)
            step = (depth_floor - translation[:, 2]).clamp_min(0.0) / forward[:, 2].clamp_min(0.1)
            translation = translation + step[:, None] * forward
        else:
            translation = translation.clone()
            translation[:, 2] = torch.maximum(translation[:, 2], depth_floor)
        poses = poses + translation[:, None, None, :]
        intrinsic = self.intrinsics[sequence]
        flip_mask = flip[:, None, None, None]
        poses = torch.where(flip_mask, flip_poses(poses), poses)
        intrinsic = torch.where(flip[:, None], flip_intrinsic(intrinsic), intrinsic)
        lengths = torch.where(flip[:, None], flip_bone_lengths(lengths), lengths)
        keypoints = project_to_2d(poses, intrinsic[:, None, :])
        mirror = torch.ones(3, device=self.device)
        mirror[0] = -1.0  # the mirrored camera sees the world's up with its x component negated
        up = torch.where(flip[:, None], self.ups[sequence] * mirror, self.ups[sequence])
        camera = camera_features(intrinsic, up, self.camera_heights[sequence])
        return SyntheticBatch(keypoints, lengths, poses, intrinsic, camera)

    def noise(self, chunk_ids: torch.Tensor, generator: torch.Generator, std_px: torch.Tensor | None = None
              ) -> torch.Tensor:
        """(B, L, 17, 2) detector-like AR(1) 2D noise (:func:`common.datasets.keypoint_noise.ar1_noise`) in normalised
        units: std ``noise_2d_px`` pixels of each chunk's camera, or ``std_px`` pixels (per chunk and joint:
        broadcast against (B, 1, 17, 1))."""
        white = torch.randn((len(chunk_ids), self.chunk_len, NUM_JOINTS, 2),
                            generator=generator, device=self.device)
        pixel = self.pixel_scale[self.chunk_sequence[chunk_ids]]
        if std_px is None:
            return ar1_noise(white) * (self.noise_2d_px * pixel)[:, None, None, None]
        return ar1_noise(white) * std_px * pixel[:, None, None, None]

    def sample(self, chunk_ids: torch.Tensor, flip: torch.Tensor, sampler: LengthSampler,
               generator: torch.Generator, person_chunks: int | None = None) -> SyntheticBatch:
        """Draw lengths and translations (and, where enabled, the yaw and the 2D noise) for the given chunks and
        build the batch (all on the device). person_chunks: consecutive chunks per person (None: the builder's)."""
        n = len(chunk_ids)
        per_person = self.person_chunks if person_chunks is None else person_chunks
        person = torch.arange(n, device=self.device) // per_person  # consecutive chunks: one person
        lengths = sampler.sample(-(-n // per_person), generator)[person]
        translation = torch.randn((n, 3), generator=generator, device=self.device) * self.translation_std
        yaw = (torch.rand(n, generator=generator, device=self.device) * (2.0 * np.pi) if self.yaw else None)
        limbs = None
        if self.limb_mix > 0:
            limbs = (torch.randperm(n, generator=generator, device=self.device),
                     torch.rand((n, len(LIMBS)), generator=generator, device=self.device) < self.limb_mix)
        batch = self.build(chunk_ids, lengths, flip, translation, yaw, limbs)
        if per_person > 1:
            batch.person = person
        if self.noise_2d_px > 0:
            batch.keypoints_2d = batch.keypoints_2d + self.noise(chunk_ids, generator)
        if self.jitter_chunks > 0:
            # the demo detections' jitter (per-joint std, no swaps or jumps) on the marked chunks, zero on the others
            batch.jittered = torch.rand(n, generator=generator, device=self.device) < self.jitter_chunks
            std = (torch.as_tensor(NOISE_STD_PX, dtype=torch.float32, device=self.device)[None, None, :, None]
                   * batch.jittered.to(torch.float32)[:, None, None, None])
            batch.keypoints_2d = batch.keypoints_2d + self.noise(chunk_ids, generator, std)
        return batch


def epoch_order(num_chunks: int, augment: bool, generator: torch.Generator,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A shuffled epoch: every chunk once (and once flipped when ``augment``). Returns (chunk_ids, flip)."""
    ids = torch.arange(num_chunks, device=device)
    flips = torch.zeros(num_chunks, dtype=torch.bool, device=device)
    if augment:
        ids = torch.cat([ids, ids])
        flips = torch.cat([flips, ~flips])
    order = torch.randperm(len(ids), generator=generator, device=device)
    return ids[order], flips[order]
