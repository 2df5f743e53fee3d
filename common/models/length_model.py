"""BLAPose's recurrent bone-length model and its inference helper.

Input: normalised 2D keypoints ``(B, T, 17, 2)`` (see :func:`common.core.camera.normalize_screen_coordinates`).
Output: bone lengths in metres, in :data:`common.core.skeleton.BONE_NAMES` order.

* Bidirectional (``-bi``, "Bi-GRU"): one bidirectional GRU reads the whole sequence; the last layer's final
  hidden states of both directions give one length vector per sequence ``(B, 16)``.
* Unidirectional (causal): two separate forward GRUs; at every frame their last-layer states give that
  frame's lengths ``(B, T, 16)`` from the frames seen so far.

Head of both variants (as in the published model, so its checkpoints load and behave the same):
``Linear(34 -> 256) -> ReLU -> Dropout -> GRU(s) -> concat(2 x hidden) -> sigmoid -> Linear(no bias) -> 16``.
State-dict names: ``expand_conv.{weight,bias}``, ``gru.*`` (bidirectional) or ``gru.0.*``/``gru.1.*``,
``fc.weight``. For the bidirectional model the published code concatenates the *backward* final state
before the forward one; this order is kept.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from common.utils.device import autocast_dtype
from common.core.bones import average_symmetric
from common.core.camera import CAMERA_FEATURES
from common.utils.device import evaluation_mode
from common.utils.errors import UserError
from common.core.skeleton import FLIP_BONES, NUM_JOINTS, flip_poses
from common.models.proportion_model import (FRAME_FEATURES, ProportionLengthModel, is_proportion_state,
                                            proportion_architecture, proportion_model_for_state)

CausalState = list[torch.Tensor]  # per GRU: (num_layers, B, hidden)
INFERENCE_BUDGET_MB = 192.0  # activations of one packed inference batch


class BoneLengthModel(nn.Module):
    """GRU bone-length regressor. See the module docstring for shapes and the architecture."""

    def __init__(self, num_joints: int = NUM_JOINTS, embed_dim: int = 256, hidden_size: int = 512,
                 num_layers: int = 1, dropout: float = 0.25, bidirectional: bool = True) -> None:
        super().__init__()
        if num_layers < 1 or hidden_size < 1:
            raise UserError("the bone-length model needs -layer >= 1 and --hidden >= 1")
        self.num_joints = num_joints
        self.embed_dim = embed_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        gru_dropout = dropout if num_layers > 1 else 0.0
        self.expand_conv = nn.Linear(num_joints * 2, embed_dim)
        if bidirectional:
            self.gru = nn.GRU(embed_dim, hidden_size, num_layers, dropout=gru_dropout,
                              bidirectional=True, batch_first=True)
        else:
            self.gru = nn.ModuleList([nn.GRU(embed_dim, hidden_size, num_layers, dropout=gru_dropout,
                                             batch_first=True) for _ in range(2)])
        self.fc = nn.Linear(2 * hidden_size, num_joints - 1, bias=False)
        self.drop = nn.Dropout(dropout)

    def config(self) -> dict[str, Any]:
        """Architecture hyper-parameters (stored in checkpoints so inference can rebuild the model)."""
        return {"embed_dim": self.embed_dim, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "bidirectional": self.bidirectional}

    @torch.no_grad()
    def initialise_output(self, mean_lengths: torch.Tensor, spread: float = 0.05) -> None:
        """Start near a mean length vector (16,) metres: at initialisation the sigmoid features are ~0.5, so
        ``fc.weight = mean / hidden`` makes the first predictions ~mean; the default random weights are kept,
        scaled by ``spread``, to break symmetry. Training then only has to learn the deviations."""
        mean = torch.as_tensor(mean_lengths, dtype=self.fc.weight.dtype, device=self.fc.weight.device)
        features = self.fc.weight.shape[1]
        self.fc.weight.mul_(spread).add_((mean / (0.5 * features))[:, None])

    def _embed(self, keypoints_2d: torch.Tensor) -> torch.Tensor:
        if keypoints_2d.ndim != 4 or keypoints_2d.shape[-2:] != (self.num_joints, 2):
            raise UserError(f"bone-length model expects 2D keypoints (B, T, {self.num_joints}, 2), "
                            f"got {tuple(keypoints_2d.shape)}")
        b, t = keypoints_2d.shape[:2]
        return self.drop(torch.relu(self.expand_conv(keypoints_2d.reshape(b, t, -1))))

    def forward(self, keypoints_2d: torch.Tensor, state: CausalState | None = None,
                return_state: bool = False):
        """keypoints_2d: (B, T, 17, 2) normalised.

        Bidirectional: returns lengths (B, 16) metres. Causal: returns per-frame lengths (B, T, 16); with
        ``return_state`` also the GRU states to continue the same sequences with the next frames.
        """
        x = self._embed(keypoints_2d)
        if self.bidirectional:
            if state is not None:
                raise ValueError("the bidirectional model reads whole sequences; it takes no carried state")
            _, h_n = _run_gru(self.gru, x)
            features = torch.cat([h_n[-1], h_n[-2]], dim=-1)  # backward, forward (published order)
            return self.fc(torch.sigmoid(features))
        outputs, new_state = [], []
        for i, gru in enumerate(self.gru):
            out, h_n = _run_gru(gru, x, None if state is None else state[i])
            outputs.append(out)
            new_state.append(h_n)
        lengths = self.fc(torch.sigmoid(torch.cat(outputs, dim=-1)))
        return (lengths, new_state) if return_state else lengths


LengthModel = BoneLengthModel | ProportionLengthModel  # what -t length trains (--length_arch)


def _run_gru(gru: nn.GRU, x: torch.Tensor, state: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``gru(x, state)``; inside ``torch.autocast`` the GRU runs in the autocast dtype (bfloat16): CPU autocast
    does not cover ``nn.GRU``, so its input, state and weights are cast explicitly. The float32 parameters
    stay the leaves (gradients flow back through the casts in float32)."""
    dtype = autocast_dtype(x.device)
    if dtype is None:
        return gru(x, state)
    params = {name: p.to(dtype) for name, p in gru.named_parameters()}
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.func.functional_call(gru, params, (x.to(dtype), None if state is None else state.to(dtype)))


def build_length_model(bidirectional: bool, num_layers: int = 1, hidden_size: int = 512,
                       dropout: float = 0.0, embed_dim: int = 256) -> BoneLengthModel:
    return BoneLengthModel(embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                           dropout=dropout, bidirectional=bidirectional)


@torch.no_grad()
def predict_lengths(model: LengthModel, keypoints_2d, chunk_frames: int = 4096,
                    flip_augment: bool = False, symmetric: bool = True, camera=None) -> np.ndarray:
    """Predict bone lengths (metres) of one or several 2D sequences, left/right pairs averaged.

    keypoints_2d: (T, 17, 2) or (B, T, 17, 2) normalised screen coordinates (numpy or torch).
    Returns numpy float32: bidirectional -> (16,) or (B, 16); causal -> (T, 16) or (B, T, 16), row t being
    the estimate after frames 0..t. Long sequences run in pieces of ``chunk_frames``: the causal GRUs carry
    their state across pieces (identical to one pass); the bidirectional GRU needs the whole sequence at once,
    which in inference mode costs only O(T x hidden) memory (50 000 frames ~ 0.3 GB).
    flip_augment: also predict from the mirrored 2D and average (with the left/right bones swapped back).
    camera: (8,) or (B, 8) :func:`common.core.camera.camera_features` of the filming camera (NaN or None: unknown),
    read by proportion models with camera inputs only (not with ``flip_augment``: the mirrored camera differs).
    """
    squeeze = False
    x = torch.as_tensor(np.asarray(keypoints_2d) if not isinstance(keypoints_2d, torch.Tensor)
                        else keypoints_2d, dtype=torch.float32)
    if x.ndim == 3:
        x, squeeze = x[None], True
    if x.ndim != 4 or x.shape[-2:] != (NUM_JOINTS, 2) or x.shape[1] < 1:
        raise UserError(f"expected 2D keypoints (T, 17, 2) or (B, T, 17, 2), got {tuple(x.shape)}")
    if camera is not None:
        if flip_augment:
            raise UserError("predict_lengths: flip_augment with a camera is not supported")
        camera = torch.as_tensor(np.asarray(camera, dtype=np.float32)).reshape(-1, CAMERA_FEATURES)
    with evaluation_mode(model) as device:
        lengths = _predict(model, x, device, chunk_frames, camera)
        if flip_augment:
            lengths = (lengths + _predict(model, flip_poses(x), device, chunk_frames)[..., FLIP_BONES]) / 2
    if symmetric:
        lengths = average_symmetric(lengths)
    out = lengths.cpu().numpy().astype(np.float32)
    return out[0] if squeeze else out


def _predict(model: LengthModel, x: torch.Tensor, device: torch.device, chunk_frames: int,
             camera: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(model, ProportionLengthModel):
        return model(x.to(device), camera=camera).float().cpu()
    if model.bidirectional:
        return model(x.to(device)).float().cpu()
    state, pieces = None, []
    for start in range(0, x.shape[1], chunk_frames):
        out, state = model(x[:, start:start + chunk_frames].to(device), state, return_state=True)
        pieces.append(out.float().cpu())
    return torch.cat(pieces, dim=1)


def inference_frame_budget(model: LengthModel, budget_mb: float = INFERENCE_BUDGET_MB) -> int:
    """Padded frames per packed inference batch so that its activations stay under ``budget_mb`` MB: per frame
    the embedding, each GRU direction's precomputed input gates (3 x hidden) and output (hidden), float32
    (proportion model: its frame features and two activations per layer)."""
    if isinstance(model, ProportionLengthModel):
        per_frame = 4 * (FRAME_FEATURES + 2 * model.depth * model.width)
        return max(1, int(budget_mb * 1024 ** 2 // per_frame))
    directions = 2  # one Bi-GRU, or two causal GRUs
    per_frame = 4 * (model.embed_dim + directions * model.num_layers * 4 * model.hidden_size)
    return max(1, int(budget_mb * 1024 ** 2 // per_frame))


@torch.no_grad()
def predict_sequences(model: LengthModel, sequences: Sequence[np.ndarray], frame_budget: int | None = None,
                      symmetric: bool = True, cameras: np.ndarray | None = None) -> list[np.ndarray]:
    """Predict many 2D sequences of different lengths in packed batches (no per-sequence model call).

    sequences: list of (T_i, 17, 2) normalised. Sequences are sorted by length and grouped so that each packed
    batch holds at most ``frame_budget`` padded frames (default :func:`inference_frame_budget`, a bounded
    memory; a longer single sequence goes alone, through :func:`predict_lengths`). Returns, in input order,
    (16,) per sequence (bidirectional) or (T_i, 16) (causal). cameras: (N, 8) each sequence's
    :func:`common.core.camera.camera_features` (NaN rows or None: unknown; see :func:`predict_lengths`).
    """
    if frame_budget is None:
        frame_budget = inference_frame_budget(model)
    out: list[np.ndarray | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    with evaluation_mode(model) as device:
        start = 0
        while start < len(order):
            longest = len(sequences[order[start]])
            size = max(1, frame_budget // max(1, longest))
            group = order[start:start + size]
            start += len(group)
            if len(group) == 1:
                out[group[0]] = predict_lengths(model, sequences[group[0]], symmetric=symmetric,
                                                camera=None if cameras is None else cameras[group[0]])
                continue
            tensors = [torch.as_tensor(np.asarray(sequences[i]), dtype=torch.float32) for i in group]
            frame_counts = torch.tensor([len(t) for t in tensors])
            padded = nn.utils.rnn.pad_sequence(tensors, batch_first=True).to(device)
            camera = None if cameras is None else torch.as_tensor(np.asarray(cameras, np.float32)[group])
            pred = _packed_forward(model, padded, frame_counts, camera).cpu()
            if symmetric:
                pred = average_symmetric(pred)
            for row, i in enumerate(group):
                value = pred[row] if model.bidirectional else pred[row, : frame_counts[row]]
                out[i] = value.numpy().astype(np.float32)
    return out  # type: ignore[return-value]


def _packed_forward(model: LengthModel, padded: torch.Tensor, frame_counts: torch.Tensor,
                    camera: torch.Tensor | None = None) -> torch.Tensor:
    """Model forward on a padded batch (B, T, 17, 2) of sequences of ``frame_counts`` (B,) frames (camera (B, 8)
    or None, proportion models only): (B, 16) bone lengths, or (B, T, 16) per frame for a causal model."""
    if isinstance(model, ProportionLengthModel):
        return model(padded, frame_counts, camera)
    x = model._embed(padded)
    packed = nn.utils.rnn.pack_padded_sequence(x, frame_counts, batch_first=True, enforce_sorted=False)
    if model.bidirectional:
        _, h_n = model.gru(packed)
        return model.fc(torch.sigmoid(torch.cat([h_n[-1], h_n[-2]], dim=-1)))
    outputs = [nn.utils.rnn.pad_packed_sequence(gru(packed)[0], batch_first=True)[0] for gru in model.gru]
    return model.fc(torch.sigmoid(torch.cat(outputs, dim=-1)))


def per_bone_error_mm(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean absolute error per bone in mm. pred/target: (N, 16) metres -> (16,)."""
    return (np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)) * 1000.0).mean(0)


def length_architecture(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, Any]:
    """Hyper-parameters of a bone-length model read from its state dict's shapes and names (``module.``
    prefix already removed): works for our checkpoints and the published ones alike (the proportion model:
    :func:`common.models.proportion_model.proportion_architecture`)."""
    if is_proportion_state(state):
        return proportion_architecture(state)
    try:
        embed_dim, in_features = state["expand_conv.weight"].shape
        hidden = state["fc.weight"].shape[1] // 2
    except KeyError:
        raise UserError(f"{source} is not a bone-length model (no expand_conv/fc weights)") from None
    bidirectional = not any(k.startswith("gru.0.") for k in state)
    prefix = "gru.weight_ih_l" if bidirectional else "gru.0.weight_ih_l"
    layers = len({k for k in state if k.startswith(prefix) and not k.endswith("_reverse")})
    return {"num_joints": int(in_features) // 2, "embed_dim": int(embed_dim), "hidden_size": int(hidden),
            "num_layers": layers, "bidirectional": bidirectional}


def length_model_for_state(state: dict[str, torch.Tensor], source: str = "checkpoint",
                           bidirectional: bool | None = None, num_layers: int | None = None) -> LengthModel:
    """An (unloaded) bone-length model shaped like ``state``: the paper's GRU or the proportion model.
    ``bidirectional``/``num_layers`` are what the user asked for (``-bi``, ``-layer``); when given they must agree
    with the weights, else a one-line UserError."""
    if is_proportion_state(state):
        if bidirectional is False:
            raise UserError(f"{source} holds a proportion length model (one vector per sequence, no per-frame "
                            "estimate): add -bi / drop --causal")
        if num_layers not in (None, 1):
            raise UserError(f"{source} holds a proportion length model (no GRU layers): drop -layer")
        return proportion_model_for_state(state)
    arch = length_architecture(state, source)
    if bidirectional is not None and arch["bidirectional"] != bidirectional:
        kind = "a bidirectional" if arch["bidirectional"] else "a causal (unidirectional)"
        raise UserError(f"{source} holds {kind} GRU length model: {'add' if arch['bidirectional'] else 'drop'} -bi")
    if num_layers is not None and num_layers != arch["num_layers"]:
        raise UserError(f"{source} has {arch['num_layers']} GRU layer(s), not -layer {num_layers}")
    return BoneLengthModel(dropout=0.0, **arch)


__all__ = ["BoneLengthModel", "LengthModel", "build_length_model", "predict_lengths", "predict_sequences",
           "length_model_for_state", "length_architecture", "per_bone_error_mm"]
