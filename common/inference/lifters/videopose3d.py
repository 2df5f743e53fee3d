"""``--lifter videopose3d``: our VideoPose3D checkpoints (``train.py -t pose``, the published
``pretrained_h36m_cpn.bin``) or the direction branch of a fine-tuned mix model (``--finetuned_ckpt``, whose
frozen length model then serves ``--lengths model``). Joint convention: ``h36m``.
"""
from __future__ import annotations

import numpy as np
import torch

from common.core.camera import normalize_screen_coordinates
from common.utils.errors import UserError
from common.datasets.generators import merge_flipped
from common.models.model import TemporalModel
from common.models.model_loading import load_model
from common.core.skeleton import flip_poses
from common.vision.tracking import Track2D

LIFT_CHUNK = 512  # output frames per lifter window


@torch.no_grad()
def lift_sequence(lifter: TemporalModel, keypoints_2d: np.ndarray, device: torch.device,
                  chunk_frames: int = LIFT_CHUNK) -> np.ndarray:
    """A VideoPose3D lifter on a whole normalised 2D sequence (T, 17, 2) -> (T, 17, 3) metres, camera frame,
    root-relative. The sequence is edge-padded for the receptive field and run in windows of ``chunk_frames``
    output frames (identical to one pass, memory independent of T); test-time flip averaged."""
    lifter.eval()
    pad = (lifter.receptive_field() - 1) // 2
    shift = lifter.total_causal_shift()
    padded = np.pad(keypoints_2d.astype(np.float32), ((pad + shift, pad - shift), (0, 0), (0, 0)), mode="edge")
    context = lifter.receptive_field() - 1
    pieces = []
    for start in range(0, len(keypoints_2d), chunk_frames):
        window = torch.from_numpy(padded[start:start + chunk_frames + context]).to(device)
        pieces.append(merge_flipped(lifter(torch.stack([window, flip_poses(window)]))).cpu().numpy())
    poses = np.concatenate(pieces).astype(np.float32)
    return poses - poses[:, :1]  # the lifter is trained root-relative: its pelvis output is not used


class VideoPose3DLifter:
    name = "videopose3d"
    convention = "h36m"
    frame = "camera"

    def __init__(self, model: TemporalModel, device: torch.device, length_model: torch.nn.Module | None = None):
        self.model, self.device, self.length_model = model, device, length_model
        self.receptive_field = model.receptive_field()
        self.causal = model.total_causal_shift() > 0 or self.receptive_field == 1

    @classmethod
    def from_config(cls, config) -> "VideoPose3DLifter":
        """From ``config.finetuned_ckpt`` (a mix model: its direction branch + length model) or
        ``config.lifter_ckpt`` (a plain lifter); architecture per :mod:`common.models.model_loading`."""
        flags = {"architecture": config.architecture, "channels": config.channels,
                 "bidirectional": config.bidirectional or None, "num_layers": config.num_layers,
                 "device": config.device}
        if config.finetuned_ckpt:
            loaded = load_model(config.finetuned_ckpt, ("mix",), **flags)
            return cls(loaded.model.direction_model, config.device, loaded.model.length_model)
        if not config.lifter_ckpt:
            raise UserError("--lifter videopose3d needs --lifter_ckpt <lifter> or --finetuned_ckpt <mix model>")
        return cls(load_model(config.lifter_ckpt, ("lifter",), **flags).model, config.device)

    def lift(self, track: Track2D) -> np.ndarray:
        keypoints = normalize_screen_coordinates(track.positions, track.width, track.height)
        return lift_sequence(self.model, keypoints, self.device)
