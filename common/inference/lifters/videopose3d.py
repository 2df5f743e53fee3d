"""``--lifter videopose3d``: our VideoPose3D checkpoints (``train.py -t pose``, the published
``pretrained_h36m_cpn.bin``) or the direction branch of a fine-tuned mix model (``--finetuned_ckpt``, whose
frozen length model then serves ``--lengths model``). Joint convention: ``h36m``. A causal checkpoint
(``train.py -t pose --causal``) also runs live, stepped frame by frame on a ring buffer of its receptive field.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common.core.camera import normalize_screen_coordinates
from common.datasets.dataset import resolve_dataset_name
from common.utils.checkpoint import default_checkpoint
from common.models.model import TemporalModel
from common.models.model_loading import load_model
from common.core.skeleton import flip_poses, merge_flipped
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


@dataclass
class VideoPose3DOptions:
    """The checkpoint (a mix model's, else a plain lifter's) and the architecture flags checked against it."""

    finetuned_ckpt: str | None = None
    lifter_ckpt: str | None = None
    architecture: list[int] | None = None
    channels: int | None = None
    bidirectional: bool = False
    num_layers: int | None = None
    device: torch.device = torch.device("cpu")


class VideoPose3DLifter:
    name = "videopose3d"
    convention = "h36m"
    frame = "camera"
    Options = VideoPose3DOptions

    def __init__(self, options: VideoPose3DOptions):
        """From ``options.lifter_ckpt`` (a plain lifter) or ``options.finetuned_ckpt`` (a mix model: its
        direction branch + length model; by default the dataset's, :func:`common.utils.checkpoint.default_checkpoint`);
        architecture per :mod:`common.models.model_loading`. ``mode``: the paper's name of the run (``lifter`` or
        ``finetuned``)."""
        flags = {"architecture": options.architecture, "channels": options.channels,
                 "bidirectional": options.bidirectional or None, "num_layers": options.num_layers,
                 "device": options.device}
        self.length_model = None
        if options.lifter_ckpt:
            self.model, self.mode = load_model(options.lifter_ckpt, ("lifter",), **flags).model, "lifter"
        else:  # without a checkpoint: the published fine-tuned model (the main job's for the demo dataset)
            loaded = load_model(options.finetuned_ckpt or default_checkpoint("finetuned", resolve_dataset_name("auto")),
                                ("mix",), **flags).model
            self.model, self.length_model, self.mode = loaded.direction_model, loaded.length_model, "finetuned"
        self.model.eval()
        self.device = options.device
        self.receptive_field = self.model.receptive_field()
        self.causal = self.model.total_causal_shift() > 0 or self.receptive_field == 1
        self._window: np.ndarray | None = None  # (receptive field, 17, 2) normalised 2D of the last frames stepped

    def lift(self, track: Track2D) -> np.ndarray:
        keypoints = normalize_screen_coordinates(track.positions, track.width, track.height)
        return lift_sequence(self.model, keypoints, self.device)

    @torch.no_grad()
    def step(self, frame: Track2D) -> np.ndarray:
        """One more frame (a one-frame track) -> its (17, 3) metres, camera frame, root-relative, test-time flip
        averaged: the model on the ring buffer of the last receptive-field frames, the first frame repeated
        before the stream has filled it (as :func:`lift_sequence`'s edge padding)."""
        keypoints = normalize_screen_coordinates(frame.positions, frame.width, frame.height).astype(np.float32)
        if self._window is None:
            self._window = np.repeat(keypoints, self.receptive_field, axis=0)
        else:
            self._window = np.concatenate([self._window[1:], keypoints])
        x = torch.from_numpy(self._window).to(self.device)
        pose = merge_flipped(self.model(torch.stack([x, flip_poses(x)])))[-1].cpu().numpy()
        return pose - pose[:1]
