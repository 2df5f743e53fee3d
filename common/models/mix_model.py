"""BLAPose's fine-tuning model: a frozen bone-length model composed with a VideoPose3D direction branch.

The direction branch (any lifter mapping ``(B, T, 17, 2)`` normalised keypoints to ``(B, T_out, 17, 3)`` poses,
e.g. :class:`common.models.model.TemporalModel` or its strided training twin) only contributes the *unit bone
directions* of its poses; the bone *lengths* come from the length model, which reads the whole 2D sequence,
or are given precomputed (``data/lengths_list.npz``). Output poses are rebuilt from the pelvis outwards with
:func:`common.core.bones.recompose`, so every output frame has exactly the given lengths.

The length model is frozen: its parameters never require gradients, its forward runs under ``no_grad`` and it
stays in eval mode (BatchNorm/dropout) even when the mix model is put in training mode. State-dict names are
``length_model.*`` and ``direction_model.*`` (the published mix checkpoints' layout).
"""
from __future__ import annotations

import torch
from torch import nn

from common.core.bones import average_symmetric, bone_directions, recompose
from common.core.skeleton import NUM_BONES, flip_poses


class MixModel(nn.Module):
    """Frozen length model + trainable direction model.

    length_model: ``(B, T, 17, 2) -> (B, 16)`` metres (one vector per sequence) or ``(B, T, 16)`` (causal,
    per frame). direction_model: ``(B, T, 17, 2) -> (B, T_out, 17, 3)`` metres, camera frame, root-relative.
    """

    def __init__(self, length_model: nn.Module, direction_model: nn.Module) -> None:
        super().__init__()
        self.length_model = length_model
        self.direction_model = direction_model
        for parameter in self.length_model.parameters():
            parameter.requires_grad_(False)
        self.length_model.eval()

    def train(self, mode: bool = True) -> "MixModel":
        """Set the direction branch's mode; the frozen length model always stays in eval mode."""
        super().train(mode)
        self.length_model.eval()
        return self

    def receptive_field(self) -> int:
        """Frames of 2D context the direction branch needs per output frame."""
        return self.direction_model.receptive_field()

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters fine-tuning updates (the direction branch's)."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def predict_lengths(self, poses_2d: torch.Tensor) -> torch.Tensor:
        """Bone lengths of whole 2D sequences with left/right pairs averaged.

        poses_2d: (B, T, 17, 2) normalised screen coordinates -> (B, 16) metres, or (B, T, 16) for a causal
        (per-frame) length model. Never tracks gradients.
        """
        self.length_model.eval()
        return average_symmetric(self.length_model(poses_2d))

    def forward(self, poses_2d: torch.Tensor, lengths: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Recompose the direction branch's bone directions with the sequence's bone lengths.

        poses_2d: (B, T, 17, 2) normalised; lengths: (B, 16) metres per sequence, (B, T_out, 16) per output
        frame, or None to predict them from ``poses_2d`` (the whole input is the sequence; left/right
        averaged; a per-frame length model must then output T_out frames, so pass its lengths explicitly
        when the input is padded). Returns ``(poses (B, T_out, 17, 3) metres root-relative (pelvis at 0),
        directions (B, T_out, 16, 3) unit vectors)``.
        """
        if lengths is None:
            lengths = self.predict_lengths(poses_2d)
        if lengths.shape[-1] != NUM_BONES:
            raise ValueError(f"expected lengths (..., {NUM_BONES}), got {tuple(lengths.shape)}")
        raw = self.direction_model(poses_2d)
        directions = bone_directions(raw)
        if lengths.dim() == 2:
            lengths = lengths[:, None, :]
        elif lengths.shape[:2] != raw.shape[:2]:
            raise ValueError(f"per-frame lengths {tuple(lengths.shape)} do not match the direction branch's "
                             f"output frames {tuple(raw.shape[:2])}")
        lengths = lengths.detach().to(directions.dtype)
        return recompose(directions, lengths), directions

    @torch.no_grad()
    def predict_sequence(self, inputs_2d: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Inference on one padded sequence, with optional test-time flip.

        inputs_2d: (A, T + receptive_field - 1, 17, 2) normalised, A = 1, or 2 with the second row mirrored
        (:class:`common.datasets.generators.UnchunkedGenerator`); lengths: (16,) or (T, 16) metres of the unmirrored
        sequence. The mirrored branch's directions are mirrored back and averaged with the others (then
        renormalised) *before* recomposition, so the output keeps exactly ``lengths``: (T, 17, 3) metres,
        camera frame, pelvis at the origin.
        """
        raw = self.direction_model(inputs_2d)
        directions = bone_directions(raw[0])
        if raw.shape[0] == 2:
            summed = directions + bone_directions(flip_poses(raw[1]))
            directions = summed / torch.linalg.vector_norm(summed, dim=-1, keepdim=True).clamp_min(1e-8)
        elif raw.shape[0] != 1:
            raise ValueError(f"expected 1 or 2 input rows (plain, mirrored), got {raw.shape[0]}")
        return recompose(directions, lengths.to(directions))
