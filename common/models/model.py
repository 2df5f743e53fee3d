"""VideoPose3D's temporal convolutional lifter (Pavllo et al., CVPR 2019): 2D keypoint sequences -> 3D poses.

Two variants share one state-dict layout (``expand_conv``, ``expand_bn``, ``layers_conv.<i>``, ``layers_bn.<i>``,
``shrink``), so weights move freely between them and the published ``pretrained_h36m_cpn.bin`` loads unchanged:

* :class:`TemporalModel`: dilated convolutions, for whole-sequence inference; input ``(B, T, 17, 2)`` gives
  ``(B, T - receptive_field + 1, 17, 3)``.
* :class:`TemporalModelOptimized1f`: the same network written with strided convolutions, cheaper when each
  training sample predicts one frame (input ``(B, receptive_field, 17, 2)`` -> ``(B, 1, 17, 3)``).

Outputs are root-relative poses in the camera frame, in the units of the training targets (metres here).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from common.utils.errors import UserError


def parse_architecture(text: str | Sequence[int]) -> list[int]:
    """``'3,3,3'`` -> ``[3, 3, 3]``; every filter width must be an odd positive integer."""
    try:
        widths = [int(w) for w in text.split(",")] if isinstance(text, str) else [int(w) for w in text]
    except ValueError:
        raise UserError(f"-arc must be comma-separated integers, got {text!r}") from None
    if not widths or any(w < 1 or w % 2 == 0 for w in widths):
        raise UserError(f"-arc filter widths must be odd positive integers, got {text!r}")
    return widths


class _TemporalModelBase(nn.Module):
    """Shared layers and bookkeeping: padding per block, causal shifts, BatchNorm momentum."""

    def __init__(self, num_joints_in: int, in_features: int, num_joints_out: int, filter_widths: Sequence[int],
                 causal: bool, dropout: float, channels: int) -> None:
        super().__init__()
        self.filter_widths = parse_architecture(filter_widths)
        self.num_joints_in = num_joints_in
        self.in_features = in_features
        self.num_joints_out = num_joints_out
        self.causal = causal
        self.channels = channels
        self.drop = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)
        self.pad = [self.filter_widths[0] // 2]
        self.causal_shift = [self.filter_widths[0] // 2 if causal else 0]
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.shrink = nn.Conv1d(channels, num_joints_out * 3, 1)

    def set_bn_momentum(self, momentum: float) -> None:
        """Set the momentum of every BatchNorm layer (VideoPose3D decays it during training)."""
        self.expand_bn.momentum = momentum
        for bn in self.layers_bn:
            bn.momentum = momentum

    def receptive_field(self) -> int:
        """Number of input frames that determine one output frame."""
        return 1 + 2 * sum(self.pad)

    def total_causal_shift(self) -> int:
        """How many frames the causal model's window is shifted into the past (0 when symmetric): a causal
        model's output frame t depends on inputs t - receptive_field + 1 .. t."""
        return sum(self.pad) if self.causal else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, J_in, in_features) -> (B, T - receptive_field + 1, J_out, 3)."""
        if x.dim() != 4 or x.shape[-2] != self.num_joints_in or x.shape[-1] != self.in_features:
            raise ValueError(f"expected input (B, T, {self.num_joints_in}, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        batch = x.shape[0]
        x = x.reshape(batch, x.shape[1], -1).permute(0, 2, 1)
        x = self._forward_blocks(x)
        return x.permute(0, 2, 1).reshape(batch, -1, self.num_joints_out, 3)

    def _build_blocks(self, first_conv, causal_shift) -> None:
        """Residual blocks after ``expand_conv``: per filter width, ``first_conv(width, dilation)`` (the
        variant's temporal convolution) + BN, then a 1x1 convolution + BN. ``causal_shift(width, dilation)``:
        frames the block's window is moved into the past when causal. Fills ``layers_conv``/``layers_bn``."""
        convs, bns = [], []
        dilation = self.filter_widths[0]
        for width in self.filter_widths[1:]:
            self.pad.append((width - 1) * dilation // 2)
            self.causal_shift.append(causal_shift(width, dilation) if self.causal else 0)
            convs += [first_conv(width, dilation), nn.Conv1d(self.channels, self.channels, 1, bias=False)]
            bns += [nn.BatchNorm1d(self.channels, momentum=0.1), nn.BatchNorm1d(self.channels, momentum=0.1)]
            dilation *= width
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(bns)

    def _residual(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """The frames of ``x`` that block ``block``'s output lines up with."""
        raise NotImplementedError

    def _forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i in range(len(self.pad) - 1):
            residual = self._residual(x, i + 1)
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = residual + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        return self.shrink(x)


class TemporalModel(_TemporalModelBase):
    """Dilated temporal convolutions over a whole sequence.

    filter_widths: e.g. ``[3, 3, 3]`` (27 frames), ``[3, 3, 3, 3]`` (81), ``[3, 3, 3, 3, 3]`` (243).
    causal: the window only looks at past frames (output frame t uses inputs t - rf + 1 .. t).
    dense: ordinary (non-dilated) convolutions of the same receptive field, as VideoPose3D's ``--dense``.
    """

    def __init__(self, num_joints_in: int, in_features: int, num_joints_out: int, filter_widths: Sequence[int],
                 causal: bool = False, dropout: float = 0.25, channels: int = 1024, dense: bool = False) -> None:
        super().__init__(num_joints_in, in_features, num_joints_out, filter_widths, causal, dropout, channels)
        widths = self.filter_widths
        self.expand_conv = nn.Conv1d(num_joints_in * in_features, channels, widths[0], bias=False)

        def temporal_conv(width: int, dilation: int) -> nn.Conv1d:
            if dense:  # same receptive field without dilation
                return nn.Conv1d(channels, channels, (width - 1) * dilation + 1, bias=False)
            return nn.Conv1d(channels, channels, width, dilation=dilation, bias=False)

        self._build_blocks(temporal_conv, lambda width, dilation: width // 2 * dilation)

    def _residual(self, x: torch.Tensor, block: int) -> torch.Tensor:
        pad, shift = self.pad[block], self.causal_shift[block]
        return x[:, :, pad + shift: x.shape[2] - pad + shift]


class TemporalModelOptimized1f(_TemporalModelBase):
    """The same network with strided convolutions: each input window of ``receptive_field()`` frames gives
    one output frame. Only for training on single-frame targets; use :class:`TemporalModel` for inference."""

    def __init__(self, num_joints_in: int, in_features: int, num_joints_out: int, filter_widths: Sequence[int],
                 causal: bool = False, dropout: float = 0.25, channels: int = 1024) -> None:
        super().__init__(num_joints_in, in_features, num_joints_out, filter_widths, causal, dropout, channels)
        widths = self.filter_widths
        self.expand_conv = nn.Conv1d(num_joints_in * in_features, channels, widths[0], stride=widths[0],
                                     bias=False)
        self._build_blocks(lambda width, dilation: nn.Conv1d(channels, channels, width, stride=width, bias=False),
                           lambda width, dilation: width // 2)

    def _residual(self, x: torch.Tensor, block: int) -> torch.Tensor:
        width = self.filter_widths[block]
        return x[:, :, self.causal_shift[block] + width // 2:: width]


def build_lifter(filter_widths: Sequence[int] | str, channels: int = 1024, dropout: float = 0.25,
                 causal: bool = False, dense: bool = False, num_joints: int = 17, optimized: bool = True
                 ) -> tuple[TemporalModelOptimized1f | TemporalModel, TemporalModel]:
    """The (training, inference) pair of lifters for 17 joints, 2D in, 3D out.

    The training model is the strided single-frame variant unless ``dense`` (which has no strided form) or
    ``optimized`` is False (needed to train on chunks longer than one frame), in which case both are
    :class:`TemporalModel` instances. Copy weights with ``load_state_dict``.
    """
    widths = parse_architecture(filter_widths)
    if dense or not optimized:
        train_model: nn.Module = TemporalModel(num_joints, 2, num_joints, widths, causal, dropout, channels, dense)
    else:
        train_model = TemporalModelOptimized1f(num_joints, 2, num_joints, widths, causal, dropout, channels)
    eval_model = TemporalModel(num_joints, 2, num_joints, widths, causal, dropout, channels, dense)
    return train_model, eval_model
