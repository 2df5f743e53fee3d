"""The proportion length model (``--length_arch proportion``, the default for new ``-t length`` trainings).

The paper's Bi-GRU (:class:`common.models.length_model.BoneLengthModel`) reads raw normalised screen
coordinates, where a person's proportions are a small signal under their position and distance, and learns the
bank's mean. This model reads the 2D in a position- and scale-free form and predicts a person as *size times
proportions* (docs/length_model.md has the variants tried and their numbers):

* input per frame: root-relative 2D divided by the sequence's 2D size (RMS over its frames and joints), the 16
  bone vectors in the same units, and the 16 log bone image lengths centred over the bones;
* a per-frame MLP (``Linear -> LayerNorm -> ReLU -> (Linear -> ReLU) x (depth - 1)``) and the mean over the
  valid frames: one vector per sequence, any length, no recurrence (a max over frames grows with the sequence's
  length and with detector outliers, so training chunks and long test sequences would disagree);
* sequence statistics beside it: per bone the 25/50/75/90th percentiles over frames of the log image length
  (in sequence-size units) and the log 2D size itself;
* a head (``LayerNorm -> Linear -> ReLU -> Linear``, plus a linear map of the statistics alone; both zero at
  initialisation) gives the log size
  ``s`` (one number) and 16 log proportions ``p`` centred over the bones: lengths = ``mean * exp(s + p)``, where
  ``mean`` (16,) metres is the training bank's mean (buffer ``log_mean``). At initialisation it predicts the mean;
* a size branch (``size_inputs``, the default for new models) that only the size reads, so the proportions
  stay position- and scale-free: per frame the position-aware
  :func:`common.models.length_probe.size_frame_features` (image positions of pelvis, head and ankles, log 2D
  size) beside the scale-free pose through ``Linear -> LayerNorm -> ReLU``, on every :data:`SIZE_STRIDE`-th
  frame, averaged over the valid ones,
  then ``Linear -> ReLU -> Linear`` to the size (zero at initialisation), plus a linear map of the features'
  frame means alone (the probe's view). Through fixed calibrated cameras where a person's feet are in the image fixes their
  distance, and the image size then their size (docs/length_model.md, "Size").
* optionally (``camera_inputs``, ``train.py -t length --camera_input``) the camera that filmed the sequence, fed
  to the size branch only: :func:`common.core.camera.camera_features` (focal lengths, principal point, the
  world's up direction in the camera frame, i.e. pitch and roll against the floor, and the camera's height above
  it), a *known* flag and, per frame, what the camera reads off the 2D of a person on the floor
  (:func:`common.models.length_probe.floor_geometry`: the lower ankle's log depth and the log standing height),
  through a linear map added to the size branch's first layer before its normalisation; plus a linear map of the
  chunk's :data:`FLOOR_QUANTILE` of the log standing heights (the most upright frames) to the size. A row of NaN
  features (or ``camera=None``) means *camera unknown*: all of these zero, flag 0; training drops the camera at
  random so that this path gives the 2D-only size (callers without a calibrated camera: inference in the wild,
  the mix model). With the camera known, the eval-mode size is the network's alone (the probe's 2D-only size is
  not blended in; the proportions are).

* optionally (``evidence_width`` > 0: ``train.py -t length -bi --length_arch evidence``, what the main job trains) the
  proportions come from *per-frame evidence* instead of the pooled head: a per-frame MLP (:data:`EVIDENCE_DEPTH`
  layers of ``evidence_width``) reads the frame's pose normalised by the frame's own 2D size and gives, per bone, a
  correction of its log image length (how much the bone is foreshortened in this frame: a lifter's question, answered
  from the pose) and a log confidence; each frame's corrected log lengths, centred over the bones, are that frame's
  reading of the proportions, and the sequence's proportions are their average over the valid frames weighted per
  bone by ``softmax(-log scale)`` (frames where a bone faces the camera count most) in training, and in eval mode
  their *weighted median* with the same weights (:func:`weighted_median`; the value that maximises the frames'
  Laplace likelihood below, so that a few frames read wrong, e.g. a detector's left/right swap, do not pull the
  result: on the main job's checkpoints 0.02-0.22 mm size-free better on held-out people and 0.3-0.5 mm on the
  real S9+S11, every checkpoint measured, docs/length_model.md; :attr:`ProportionLengthModel.median_pooling`). Training
  (:meth:`ProportionLengthModel.forward` with ``target``) supervises every frame, not only the pooled result: a
  per-frame Laplace likelihood of the true proportions plus the pooled proportions' log error, while the length
  loss in metres reaches the size only. With a probe attached, only its size is blended in eval mode (in the
  scratch runs of docs/length_model.md blending its proportions too was 0.2 mm better at width 128 and 0.15 mm
  worse at width 256; not measured in the trainer). With ``evidence_acceleration`` the per-frame MLP also reads
  the frame's temporal second difference of that normalised pose (:func:`second_difference`, times
  :data:`ACCELERATION_GAIN`): a detector's jitter shows there and smooth motion hardly does, so that the reader,
  trained with jittered chunks beside exact ones (``train.py --jitter_chunks``), can tell the two apart
  (docs/length_model.md, issue 17's fifth round: the detector's jitter).

* optionally (``evidence_measurements``: ``train.py --person_chunks K``, what the main job trains) the evidence MLP
  gives a third 16 per frame, the frame's *measurements*: corrections of the log image lengths like the readings',
  trained only by a loss on the measurements pooled over every frame of one synthetic person's K chunks (K motions
  and cameras; the readings' confidences as weights, not trained by this loss). Each frame's reading is trained as
  a prediction from that frame (the per-frame likelihood), so it carries the bank's prior, and a median of many
  prior-pulled readings stays pulled however many sequences it pools; the measurements are trained as parts of a
  many-sequence estimate instead. In eval mode a sequence's proportions are its readings' as before, and within
  :func:`person_readings` its measurements' (``length_model_inference.py --per_subject`` pools those per person;
  docs/length_model.md, "Measurements for many sequences of one person").

* with a linear probe attached (:meth:`ProportionLengthModel.attach_probe`, what ``train.py -t length`` does:
  :class:`common.models.length_probe.LinearProbe` fitted on training batches before the network trains), the
  model in eval mode predicts the geometric mean of the network's lengths and the probe's (an ensemble of the
  two: on held-out people and on the real test subjects it beat each of them in every seed measured,
  docs/length_model.md); in training mode the network alone, which is what the loss trains.

* in eval mode, with frame evidence (and no camera input), the model reads each sequence twice, as filmed and mirrored
  (x -> -x with left and right swapped: the 2D of the mirror-image person through a camera whose principal
  point is the image centre), and averages the two log sizes and the two readings of the log proportions (the
  mirrored one with its left and right bones swapped back), so that a person and their mirror image get
  mirrored lengths when the bank mean's left and right bones are equal, as in every bank here (training samples
  both, :func:`common.core.skeleton.flip_poses`). On the main job's evidence
  checkpoint: held-out people 5.72 -> 5.48 mm size-free, real S9+S11 4.51 -> 4.36 (docs/length_model.md); the
  pooled model's readings are nearly mirror-symmetric already (within 0.03 mm), so it reads once.
  :attr:`ProportionLengthModel.mirror_average` switches it off.

Input ``(B, T, 17, 2)`` normalised screen coordinates (``frame_counts`` (B,) for padded batches); output (B, 16)
metres; ``camera`` (B, 8) the camera features (NaN rows: unknown; ignored by models without camera inputs).
State-dict names: ``frame_mlp.*``, ``head.*``, ``stats_linear.*``, ``log_mean`` and, with the size
branch, ``size_mlp.*``, ``size_out.*``, ``size_linear.*``; with camera inputs ``size_camera.*``, ``size_floor.*``; with frame
evidence ``evidence.*``; with a probe ``probe_weight``, ``probe_bias``. The architecture (width, depth, size branch,
camera inputs, frame evidence, its acceleration input and measurements, probe) is read back
from the weights' names and shapes, so checkpoints from before the camera inputs load unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from common.core.camera import CAMERA_FEATURES
from common.core.skeleton import BONE_CHILDREN, BONE_PARENTS, FLIP_BONES, FLIP_JOINTS, NUM_BONES, NUM_JOINTS
from common.models.length_probe import NUM_SIZE_FEATURES, floor_geometry, probe_features, size_frame_features
from common.utils.errors import UserError

ARCH_NAME = "proportion"
QUANTILES = (0.25, 0.5, 0.75, 0.9)  # no maximum: it grows with the sequence's length and with outliers
FRAME_FEATURES = 2 * NUM_JOINTS + 2 * NUM_BONES + NUM_BONES
ANKLE_HEIGHT_M = 0.10  # the floor plane of the camera reads: the lower ankle's usual height above the floor (the
# training subjects' median is 0.103 m, docs/length_model.md)
FLOOR_QUANTILE = 0.9  # of a chunk's per-frame standing heights read through the camera: its most upright frames
FLOOR_FEATURES = 2  # per frame: log ankle depth, log standing height (centred on 4 m and 1.6 m)
EVIDENCE_FEATURES = 2 * NUM_JOINTS + 2 * NUM_BONES + NUM_BONES  # per frame, in the frame's own 2D size units
ACCELERATION_FEATURES = 2 * NUM_JOINTS  # with evidence_acceleration: the frame's temporal second difference
ACCELERATION_GAIN = 20.0  # of the second difference (frame-size units per frame^2): near the other inputs' scale
EVIDENCE_DEPTH = 3  # layers of the per-frame evidence MLP (the last one before the output)
EVIDENCE_LOSS_WEIGHT = 1.0  # of the proportions' loss (log units) beside the length loss (metres, the size's)
SIZE_STRIDE = 4  # the size branch reads every 4th frame (12.5 a second at 50 fps): where a person stands and
# how big they look change slowly, and a quarter of the frames costs a quarter of the time
_EPS = 1e-6
# per frame: readings (B, T, 16), log confidence scales (B, T, 16), valid (B, T), measurements (B, T, 16) or None
FrameEvidence = tuple[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"]


class ProportionLengthModel(nn.Module):
    """Size-and-proportions bone-length model; see the module docstring. ``bidirectional`` is True: like the
    Bi-GRU it reads whole sequences and gives one vector per sequence."""

    bidirectional = True
    arch = ARCH_NAME
    mirror_average = True  # eval mode, frame evidence: average the readings of the sequence and its mirror image
    median_pooling = True  # eval mode, frame evidence: pool the frames' readings by their weighted median
    person_readings = False  # eval mode, with measurements: pool the measurements (for a person's many sequences)

    def __init__(self, width: int = 128, depth: int = 2, mean_lengths: torch.Tensor | None = None,
                 size_inputs: bool = True, probe_features: int = 0, camera_inputs: bool = False,
                 evidence_width: int = 0, evidence_acceleration: bool = False,
                 evidence_measurements: bool = False) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise UserError("the proportion length model needs --hidden >= 1 and depth >= 1")
        if camera_inputs and not size_inputs:
            raise UserError("the camera input feeds the size branch: it needs size_inputs")
        self.width, self.depth, self.size_inputs, self.camera_inputs = width, depth, size_inputs, camera_inputs
        self.evidence_width = evidence_width
        self.evidence_acceleration = bool(evidence_acceleration and evidence_width)
        self.evidence_measurements = bool(evidence_measurements and evidence_width)
        layers: list[nn.Module] = [nn.Linear(FRAME_FEATURES, width), nn.LayerNorm(width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        self.frame_mlp = nn.Sequential(*layers)
        stats = len(QUANTILES) * NUM_BONES + 1
        self.head = nn.Sequential(nn.LayerNorm(width + stats), nn.Linear(width + stats, width), nn.ReLU(),
                                  nn.Linear(width, 1 + NUM_BONES))
        self.stats_linear = nn.Linear(stats, 1 + NUM_BONES)  # the linear part, as the probe's, directly
        zero_init = [self.head[-1], self.stats_linear]
        if size_inputs:
            self.size_mlp = nn.Sequential(nn.Linear(NUM_SIZE_FEATURES + 2 * NUM_JOINTS, width), nn.LayerNorm(width),
                                          nn.ReLU())
            self.size_out = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
            self.size_linear = nn.Linear(NUM_SIZE_FEATURES, 1)
            zero_init += [self.size_out[-1], self.size_linear]
        if camera_inputs:  # camera features, known flag and floor reads, added to the size branch's first layer
            self.size_camera = nn.Linear(CAMERA_FEATURES + 1 + FLOOR_FEATURES, width)
            self.size_floor = nn.Linear(2, 1)  # the chunk's upright standing height read and the known flag
            zero_init.append(self.size_floor)
        if evidence_width:  # per frame: 16 log-length corrections, 16 log confidences (and 16 measurement corrections)
            inputs = EVIDENCE_FEATURES + (ACCELERATION_FEATURES if self.evidence_acceleration else 0)
            evidence: list[nn.Module] = [nn.Linear(inputs, evidence_width), nn.LayerNorm(evidence_width), nn.ReLU()]
            for _ in range(EVIDENCE_DEPTH - 1):
                evidence += [nn.Linear(evidence_width, evidence_width), nn.ReLU()]
            outputs = (3 if self.evidence_measurements else 2) * NUM_BONES
            self.evidence = nn.Sequential(*evidence, nn.Linear(evidence_width, outputs))
            zero_init.append(self.evidence[-1])
        for layer in zero_init:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        mean = torch.full((NUM_BONES,), 0.25) if mean_lengths is None else torch.as_tensor(mean_lengths).float()
        self.register_buffer("log_mean", torch.log(mean.clamp_min(_EPS)))
        if probe_features:  # the probe's ridge weights (F, 16) and bias (16,), log metres; see attach_probe
            self.register_buffer("probe_weight", torch.zeros(probe_features, NUM_BONES))
            self.register_buffer("probe_bias", torch.zeros(NUM_BONES))
        self.register_buffer("children_index", torch.as_tensor(BONE_CHILDREN), persistent=False)
        self.register_buffer("parents_index", torch.as_tensor(BONE_PARENTS), persistent=False)
        self.register_buffer("flip_joints", torch.as_tensor(FLIP_JOINTS), persistent=False)
        self.register_buffer("flip_bones", torch.as_tensor(FLIP_BONES), persistent=False)

    def config(self) -> dict[str, Any]:
        """Architecture hyper-parameters (stored in checkpoints; :func:`proportion_model_for_state` reads
        them back from the weights' shapes)."""
        return {"arch": ARCH_NAME, "width": self.width, "depth": self.depth, "size_inputs": self.size_inputs,
                "camera_inputs": self.camera_inputs, "probe_features": self.probe_features,
                "evidence_width": self.evidence_width, "evidence_acceleration": self.evidence_acceleration,
                "evidence_measurements": self.evidence_measurements}

    @property
    def probe_features(self) -> int:
        """How many probe features the attached probe reads (0: no probe)."""
        return int(self.probe_weight.shape[0]) if hasattr(self, "probe_weight") else 0

    @torch.no_grad()
    def attach_probe(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Blend the linear probe ``log lengths = features @ weight + bias`` (weight (F, 16), bias (16,); the
        features of :func:`common.models.length_probe.probe_features`, the first F) into the eval-mode output."""
        weight = torch.as_tensor(weight, dtype=torch.float32, device=self.log_mean.device)
        bias = torch.as_tensor(bias, dtype=torch.float32, device=self.log_mean.device)
        if weight.ndim != 2 or weight.shape[1] != NUM_BONES or bias.shape != (NUM_BONES,):
            raise ValueError(f"probe weight (F, {NUM_BONES}) and bias ({NUM_BONES},) expected, got "
                             f"{tuple(weight.shape)}, {tuple(bias.shape)}")
        self.register_buffer("probe_weight", weight.clone())
        self.register_buffer("probe_bias", bias.clone())

    @torch.no_grad()
    def initialise_output(self, mean_lengths: torch.Tensor) -> None:
        """Predict ``mean_lengths`` (16,) metres at initialisation (the last layer starts at zero)."""
        self.log_mean.copy_(torch.log(torch.as_tensor(mean_lengths, dtype=torch.float32).clamp_min(_EPS)))

    def size_and_proportions(self, keypoints_2d: torch.Tensor, frame_counts: torch.Tensor | None = None,
                             camera: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(log size (B,), log proportions (B, 16) centred over the bones): lengths (metres) are
        ``exp(log_mean + size[:, None] + proportions)``. frame_counts: (B,) valid frames of a padded batch;
        camera: (B, 8) :func:`common.core.camera.camera_features`, NaN rows or None = unknown (used only with
        ``camera_inputs``). With a probe attached and in eval mode: the mean of the network's and the probe's
        log size and, without frame evidence, log proportions; the average of the sequence's and its mirror
        image's readings with frame evidence unless ``mirror_average`` is off or the model reads the camera (module
        docstring)."""
        size, proportions, _ = self._parts(keypoints_2d, frame_counts, camera)
        if self.training or not (self.mirror_average and self.evidence_width) or self.camera_inputs:
            return size, proportions
        mirrored = keypoints_2d.index_select(-2, self.flip_joints) * keypoints_2d.new_tensor([-1.0, 1.0])
        mirror_size, mirror_proportions, _ = self._parts(mirrored, frame_counts, camera)
        # the deviations from the bank mean are averaged (its left and right bones are equal in every bank here)
        return 0.5 * (size + mirror_size), 0.5 * (proportions + mirror_proportions.index_select(-1, self.flip_bones))

    def _parts(self, keypoints_2d: torch.Tensor, frame_counts: torch.Tensor | None, camera: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor, FrameEvidence | None]:
        """:meth:`size_and_proportions` and, with frame evidence, the per-frame readings (log proportions
        (B, T, 16), log confidence scales (B, T, 16), valid (B, T) bool, the measurements (B, T, 16) or None) for
        the training loss."""
        if keypoints_2d.ndim != 4 or keypoints_2d.shape[-2:] != (NUM_JOINTS, 2):
            raise UserError(f"bone-length model expects 2D keypoints (B, T, {NUM_JOINTS}, 2), "
                            f"got {tuple(keypoints_2d.shape)}")
        x = keypoints_2d.float()
        b, t = x.shape[:2]
        if frame_counts is None:
            valid = torch.ones((b, t), dtype=torch.bool, device=x.device)
        else:
            valid = torch.arange(t, device=x.device)[None] < frame_counts.to(x.device)[:, None]
        weight = valid.float()
        count = weight.sum(1).clamp_min(1.0)
        relative = x - x[:, :, :1]
        mean_square = (relative.pow(2).sum(-1).mean(-1) * weight).sum(1) / count
        log_scale = 0.5 * torch.log(mean_square.clamp_min(_EPS))  # (B,) the sequence's 2D size
        relative = relative * torch.exp(-log_scale)[:, None, None, None]
        bones = relative.index_select(-2, self.children_index) - relative.index_select(-2, self.parents_index)
        log_bones = torch.log(torch.linalg.vector_norm(bones, dim=-1).clamp_min(1e-4))  # (B, T, 16)
        frame = torch.cat([relative.flatten(2), bones.flatten(2),
                           log_bones - log_bones.mean(-1, keepdim=True)], dim=-1)
        hidden = self.frame_mlp(frame)
        pooled = (hidden * weight[..., None]).sum(1) / count[:, None]
        masked_bones = log_bones.masked_fill(~valid[..., None], float("nan"))
        quantiles = torch.nanquantile(masked_bones, torch.tensor(QUANTILES, device=x.device), dim=1)
        stats = torch.cat([quantiles.permute(1, 0, 2).flatten(1), log_scale[:, None]], dim=-1)
        out = self.head(torch.cat([pooled, stats], dim=-1)) + self.stats_linear(stats)
        proportions = out[:, 1:] - out[:, 1:].mean(-1, keepdim=True)
        size = out[:, 0]
        frames = None
        if self.evidence_width:
            proportions, frames = self._evidence(relative, bones, log_bones, valid)
        if self.size_inputs:  # every SIZE_STRIDE-th frame, (B, T', 10) position-aware, before any normalisation
            placed = size_frame_features(x[:, ::SIZE_STRIDE])
            size_weight = weight[:, ::SIZE_STRIDE]
            size_count = size_weight.sum(1).clamp_min(1.0)
            size_hidden = self.size_mlp[0](torch.cat([placed, relative[:, ::SIZE_STRIDE].flatten(2)], dim=-1))
            if self.camera_inputs:
                cam = camera_input(camera, b, x.device)
                floor, upright = floor_inputs(x[:, ::SIZE_STRIDE], cam, size_weight > 0)
                size_hidden = size_hidden + self.size_camera(
                    torch.cat([cam[:, None].expand(-1, floor.shape[1], -1), floor], dim=-1))
                size = size + self.size_floor(torch.stack([upright, cam[:, -1]], dim=-1))[:, 0]
            size_hidden = self.size_mlp[2](self.size_mlp[1](size_hidden))
            size_pooled = (size_hidden * size_weight[..., None]).sum(1) / size_count[:, None]
            placed_mean = (placed * size_weight[..., None]).sum(1) / size_count[:, None]
            size = size + (self.size_out(size_pooled) + self.size_linear(placed_mean))[:, 0]
        if self.probe_features and not self.training:
            probe = self._probe_log_lengths(x, valid) - self.log_mean
            probe_size = probe.mean(-1)
            blended = 0.5 * (size + probe_size)
            if self.camera_inputs:  # with the camera known the size is the network's: the probe reads 2D only
                blended = torch.where(camera_input(camera, b, x.device)[:, -1] > 0, size, blended)
            size = blended
            if not self.evidence_width:
                proportions = 0.5 * (proportions + probe - probe_size[:, None])
        return size, proportions, frames

    def _evidence(self, relative: torch.Tensor, bones: torch.Tensor, log_bones: torch.Tensor, valid: torch.Tensor
                  ) -> tuple[torch.Tensor, FrameEvidence]:
        """The per-frame evidence (module docstring): relative (B, T, 17, 2) and bones (B, T, 16, 2) in the
        sequence's 2D size units, log_bones (B, T, 16) their log lengths, valid (B, T) -> (pooled log proportions
        (B, 16) relative to the bank mean's, (per-frame centred log lengths (B, T, 16), log scales (B, T, 16),
        valid, the measurements (B, T, 16) centred log lengths or None))."""
        frame_size = relative.pow(2).sum(-1).mean(-1).clamp_min(_EPS).sqrt()[..., None, None]  # (B, T, 1, 1)
        pose = relative / frame_size
        features = [pose.flatten(2), (bones / frame_size).flatten(2), log_bones - log_bones.mean(-1, keepdim=True)]
        if self.evidence_acceleration:
            features.append(ACCELERATION_GAIN * second_difference(pose, valid).flatten(2))
        out = self.evidence(torch.cat(features, dim=-1))
        corrected = log_bones + out[..., :NUM_BONES]
        readings = corrected - corrected.mean(-1, keepdim=True)
        log_scale = out[..., NUM_BONES:2 * NUM_BONES]
        measurements = None
        if self.evidence_measurements:
            measured = log_bones + out[..., 2 * NUM_BONES:]
            measurements = measured - measured.mean(-1, keepdim=True)
        weight = torch.softmax((-log_scale).masked_fill(~valid[..., None], float("-inf")), dim=1)
        mean_proportions = self.log_mean - self.log_mean.mean()
        pooling = measurements if (self.person_readings and measurements is not None and not self.training) \
            else readings
        if self.training or not self.median_pooling:
            pooled = (weight * pooling).sum(1)
        else:
            pooled = weighted_median(pooling, weight)
        return pooled - mean_proportions, (readings, log_scale, valid, measurements)

    def _probe_log_lengths(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, 16) the attached probe's log lengths from :func:`common.models.length_probe.probe_features` over
        the valid frames (x (B, T, 17, 2) as given, valid (B, T) bool)."""
        features = probe_features(x, valid)
        return features[:, :self.probe_features] @ self.probe_weight + self.probe_bias

    def forward(self, keypoints_2d: torch.Tensor, frame_counts: torch.Tensor | None = None,
                camera: torch.Tensor | None = None, target: torch.Tensor | None = None,
                frame_likelihood: torch.Tensor | None = None, person: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """keypoints_2d (B, T, 17, 2) normalised (camera (B, 8) features, NaN rows or None: unknown) -> bone
        lengths (B, 16) metres. With ``target`` (B, 16) metres (training): (lengths, the proportions' loss, a
        scalar: the mean absolute error of the pooled log proportions plus the mean over valid frames and bones
        of the frames' Laplace negative log-likelihood of the target's centred log lengths; 0 without frame
        evidence). With frame evidence the returned lengths carry no gradient to the proportions: a length loss
        on them trains the size, the proportions' loss the proportions. ``frame_likelihood`` (B,) bool: the
        sequences whose frames enter the likelihood (None: all; training leaves the jittered chunks out, see
        :mod:`common.datasets.synthetic`); the pooled error counts every sequence."""
        if target is None:
            size, proportions = self.size_and_proportions(keypoints_2d, frame_counts, camera)
            return torch.exp(self.log_mean + size[:, None] + proportions)
        size, proportions, frames = self._parts(keypoints_2d, frame_counts, camera)
        if frames is None:
            lengths = torch.exp(self.log_mean + size[:, None] + proportions)
            return lengths, lengths.new_zeros(())
        # the length loss on these lengths trains the size alone: an error of the size (the larger one, from 2D)
        # would otherwise push the long bones' proportions one way and the short ones' the other
        lengths = torch.exp(self.log_mean + size[:, None] + proportions.detach())
        readings, log_scale, valid, measurements = frames
        true = torch.log(target.float().clamp_min(_EPS))
        true = true - true.mean(-1, keepdim=True)
        pooled_error = (proportions - (true - (self.log_mean - self.log_mean.mean()))).abs().mean()
        nll = (readings - true[:, None]).abs() * torch.exp(-log_scale) + log_scale
        mask = valid if frame_likelihood is None else valid & frame_likelihood.to(valid.device)[:, None]
        mask = mask[..., None].float()
        loss = pooled_error + (nll * mask).sum() / (mask.sum() * NUM_BONES).clamp_min(1.0)
        if measurements is not None:  # every chunk its own person unless told otherwise
            person = torch.arange(len(true), device=true.device) if person is None else person.to(true.device)
            pooled_person = person_pooled(measurements, log_scale.detach(), valid, person)
            loss = loss + (pooled_person - person_mean(true, person)).abs().mean()
        return lengths, loss


def person_pooled(readings: torch.Tensor, log_scale: torch.Tensor, valid: torch.Tensor, person: torch.Tensor
                  ) -> torch.Tensor:
    """The frames' readings pooled per person over all of the person's sequences: readings, log_scale (B, T, 16),
    valid (B, T) bool, person (B,) long ids 0..P-1 -> (P, 16), per bone the average of the valid frames' readings
    weighted by ``softmax(-log scale)`` over every frame of the person's sequences (training's pooling, one
    person filmed in several sequences)."""
    count = int(person.max()) + 1
    logits = (-log_scale).masked_fill(~valid[..., None], float("-inf"))
    index = person[:, None].expand(-1, NUM_BONES)
    top = logits.new_full((count, NUM_BONES), float("-inf")).scatter_reduce(0, index, logits.amax(1), "amax")
    weight = torch.exp(logits - top[person][:, None])  # 0 on invalid frames
    total = logits.new_zeros((count, NUM_BONES)).index_add(0, person, weight.sum(1))
    summed = logits.new_zeros((count, NUM_BONES)).index_add(0, person, (weight * readings).sum(1))
    return summed / total.clamp_min(_EPS)


def person_mean(values: torch.Tensor, person: torch.Tensor) -> torch.Tensor:
    """values (B, K), person (B,) long ids 0..P-1 -> (P, K) the mean of each person's rows."""
    count = int(person.max()) + 1
    total = values.new_zeros((count, values.shape[1])).index_add(0, person, values)
    rows = values.new_zeros(count).index_add(0, person, torch.ones_like(values[:, 0]))
    return total / rows.clamp_min(1.0)[:, None]


def reads_people(model: nn.Module) -> bool:
    """Whether ``model`` (a length model, possibly wrapped) has frame measurements for pooling a person's many
    sequences (``train.py -t length --person_chunks K``)."""
    return bool(getattr(getattr(model, "module", model), "evidence_measurements", False))


@contextmanager
def person_readings(model: nn.Module) -> Iterator[None]:
    """Within the block a model with frame measurements (:func:`reads_people`) pools its frames' measurements
    instead of its per-sequence readings (what ``length_model_inference.py --per_subject`` pools per person);
    any other model is unchanged."""
    inner = getattr(model, "module", model)
    if not reads_people(inner):
        yield
        return
    inner.person_readings = True
    try:
        yield
    finally:
        del inner.person_readings  # back to the class default


def second_difference(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) per frame, valid (B, T) bool, the valid frames first -> (B, T, ...) ``x[t+1] - 2 x[t] + x[t-1]``
    with the neighbours clamped into each sequence's valid frames (the first and last valid frames repeat their
    neighbour's side: ``x[1] - x[0]`` at the start); zero on invalid frames. Jitter shows here, smooth motion
    hardly does (at 50 fps)."""
    t = x.shape[1]
    count = valid.sum(1, keepdim=True).clamp_min(1)  # (B, 1)
    index = torch.arange(t, device=x.device)[None].expand(x.shape[0], -1)
    last = count - 1
    following = torch.minimum(index + 1, last).clamp_min(0)
    previous = torch.minimum((index - 1).clamp_min(0), last)
    shape = (x.shape[0], t) + (1,) * (x.ndim - 2)
    take = lambda idx: torch.gather(x, 1, idx.reshape(shape).expand_as(x))  # noqa: E731
    out = take(following) - 2.0 * x + take(previous)
    return out * valid.reshape(shape).to(out.dtype)


def weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """values, weights: (B, T, K) with weights >= 0 summing to a positive number over T -> (B, K): per (b, k) the
    smallest value at which the cumulative weight of the sorted values reaches half the total (a zero-weight value,
    e.g. a padded frame, is never chosen unless every weight is zero)."""
    order = torch.argsort(values, dim=1)
    sorted_values = torch.gather(values, 1, order)
    cumulative = torch.gather(weights, 1, order).cumsum(1)
    below = cumulative < 0.5 * cumulative[:, -1:]
    index = below.sum(1, keepdim=True).clamp_max(values.shape[1] - 1)
    return torch.gather(sorted_values, 1, index)[:, 0]


def camera_input(camera: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
    """The size branch's camera input (B, 9): the :func:`common.core.camera.camera_features` (B, 8) and a known
    flag; a row with any NaN (or ``camera=None``: every row) is *unknown*: eight zeros and flag 0."""
    if camera is None:
        return torch.zeros((batch, CAMERA_FEATURES + 1), device=device)
    camera = torch.as_tensor(camera, dtype=torch.float32, device=device)
    if camera.shape != (batch, CAMERA_FEATURES):
        raise UserError(f"camera features ({batch}, {CAMERA_FEATURES}) expected, got {tuple(camera.shape)}")
    known = torch.isfinite(camera).all(-1, keepdim=True)
    return torch.cat([torch.where(known, camera, 0.0), known.float()], dim=-1)


def floor_inputs(keypoints_2d: torch.Tensor, camera: torch.Tensor, valid: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The size branch's floor reads through the camera: keypoints_2d (B, T, 17, 2) normalised, camera (B, 9)
    :func:`camera_input`, valid (B, T) bool -> (per frame (B, T, 2) ``[log depth - log 4 m, log standing height -
    log 1.6 m]`` of :func:`common.models.length_probe.floor_geometry`, clamped; per chunk (B,) the
    :data:`FLOOR_QUANTILE` of the valid frames' log standing height - log 1.6 m); zero where the camera is
    unknown."""
    depth, height, _ = floor_geometry(keypoints_2d.float(), camera[:, :CAMERA_FEATURES], ANKLE_HEIGHT_M)
    log_depth = torch.log(depth.clamp(0.5, 50.0) / 4.0)
    log_height = torch.log(height.clamp(0.05, 3.0) / 1.6)
    known = camera[:, -1]
    per_frame = torch.stack([log_depth, log_height], dim=-1) * known[:, None, None]
    upright = torch.nanquantile(log_height.masked_fill(~valid, float("nan")), FLOOR_QUANTILE, dim=1)
    return per_frame, torch.nan_to_num(upright) * known


def proportion_sample_bytes(model: ProportionLengthModel, chunk_len: int, precision: str = "fp32") -> int:
    """Estimated activation bytes one training chunk of ``chunk_len`` frames keeps for the backward pass: its
    frame features and, per MLP layer, the linear, normalisation and ReLU outputs."""
    per_frame = 2 * FRAME_FEATURES + 3 * model.depth * model.width
    if model.size_inputs:
        # its input, linear, norm and ReLU on every SIZE_STRIDE-th frame
        per_frame += (NUM_SIZE_FEATURES + 2 * NUM_JOINTS + 3 * model.width) / SIZE_STRIDE
    if model.evidence_width:  # its input, every layer's linear (+ norm) and ReLU outputs, its per-frame readings
        per_frame += EVIDENCE_FEATURES + (3 + 2 * (EVIDENCE_DEPTH - 1)) * model.evidence_width + 6 * NUM_BONES
        per_frame += 3 * NUM_BONES if model.evidence_measurements else 0
    if model.camera_inputs:  # the camera and floor-read input and its linear map, on the same frames
        per_frame += (CAMERA_FEATURES + 1 + FLOOR_FEATURES + model.width) / SIZE_STRIDE
    return int(chunk_len * per_frame * (2 if precision == "bf16" else 4))


def is_proportion_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict (``module.`` prefix removed) holds a :class:`ProportionLengthModel`."""
    return "log_mean" in state and any(k.startswith("frame_mlp.") for k in state)


def proportion_architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``{"arch", "width", "depth", "size_inputs", "camera_inputs", "probe_features", "evidence_width",
    "evidence_acceleration", "evidence_measurements"}`` of a
    proportion model's state dict, read from the weights' shapes (models from before the size branch have no
    ``size_mlp.*``, from before the camera input no ``size_camera.*``, models without a probe no ``probe_weight``,
    without frame evidence no ``evidence.*``)."""
    linears = [k for k in state if k.startswith("frame_mlp.") and k.endswith(".weight") and state[k].ndim == 2]
    return {"arch": ARCH_NAME, "width": int(state["frame_mlp.0.weight"].shape[0]), "depth": len(linears),
            "size_inputs": "size_mlp.0.weight" in state, "camera_inputs": "size_camera.weight" in state,
            "probe_features": int(state["probe_weight"].shape[0]) if "probe_weight" in state else 0,
            "evidence_width": int(state["evidence.0.weight"].shape[0]) if "evidence.0.weight" in state else 0,
            "evidence_acceleration": "evidence.0.weight" in state
            and int(state["evidence.0.weight"].shape[1]) == EVIDENCE_FEATURES + ACCELERATION_FEATURES,
            "evidence_measurements": _evidence_outputs(state) == 3 * NUM_BONES}


def _evidence_outputs(state: dict[str, torch.Tensor]) -> int:
    """Outputs per frame of a state dict's evidence MLP (its last linear layer; 0 without frame evidence)."""
    layers = [int(k.split(".")[1]) for k in state if k.startswith("evidence.") and k.endswith(".weight")
              and state[k].ndim == 2]
    return int(state[f"evidence.{max(layers)}.weight"].shape[0]) if layers else 0


def proportion_model_for_state(state: dict[str, torch.Tensor]) -> ProportionLengthModel:
    """An (unloaded) proportion model shaped like ``state``."""
    arch = proportion_architecture(state)
    return ProportionLengthModel(width=arch["width"], depth=arch["depth"], size_inputs=arch["size_inputs"],
                                 probe_features=arch["probe_features"], camera_inputs=arch["camera_inputs"],
                                 evidence_width=arch["evidence_width"],
                                 evidence_acceleration=arch["evidence_acceleration"],
                                 evidence_measurements=arch["evidence_measurements"])


__all__ = ["ProportionLengthModel", "ARCH_NAME", "camera_input", "person_readings", "reads_people", "proportion_sample_bytes", "is_proportion_state", "proportion_architecture",
           "proportion_model_for_state"]
