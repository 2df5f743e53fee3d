"""One way from a checkpoint to a model, for every script: VideoPose3D lifters, bone-length models, mix models.

The rule (the same everywhere):

* the checkpoint says what it is (:func:`common.utils.checkpoint.checkpoint_kind`): ``length_model.*`` +
  ``direction_model.*`` weights = a mix model; GRU weights = a bone-length model; ``expand_conv`` + ``shrink``
  = a VideoPose3D lifter;
* the **stored architecture wins**: filter widths and channels are read from the weights' shapes (exact for
  every checkpoint, ours and the published ones); ``causal``/``dense`` from what ``train.py`` stored (top level for
  ``-t pose``, ``mix_config`` for ``-t mix``); a flag that disagrees (``-arc``, ``-ch``, ``--causal``) gets a printed
  note and is not used. Published checkpoints store no ``causal``/``dense``: there the flags apply.
* bone-length models: Bi-GRU or causal, layers and sizes are read from the weights; ``-bi``/``-layer`` cannot be
  honoured when they disagree, so a disagreement is a one-line error (:func:`common.models.length_model.length_model_for_state`);
* ``lifter``: the name of the lifter implementation (:data:`common.inference.lifters.LIFTERS`) that new checkpoints store;
  checkpoints without it (older ones, the published ones) are ``videopose3d``.

Bare checkpoint names (``biGRU_all.bin``) are resolved by :func:`common.utils.checkpoint.resolve_checkpoint`, the one
resolver.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from common.utils.checkpoint import (expect_kind, load_checkpoint, load_weights, model_state, resolve_checkpoint,
                                     strip_module_prefix)
from common.utils.errors import UserError
from common.models.length_model import length_architecture, length_model_for_state
from common.models.mix_model import MixModel
from common.models.model import TemporalModel, parse_architecture
from common.core.skeleton import NUM_JOINTS

KINDS = ("lifter", "length", "mix")
LIFTER_ARCHITECTURE_KEYS = ("architecture", "channels", "causal", "dense")
CHECKPOINT_LIFTER = "videopose3d"  # the lifter a checkpoint holds: the trainers store it; a file without one is this


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint: ``kind`` (lifter/length/mix), the eval-form ``model`` (weights loaded,
    eval mode, on the requested device), the resolved ``path``, the raw ``checkpoint`` dict, the ``lifter``
    implementation name and the architecture used (lifter keys for lifter/mix, GRU keys for length)."""

    kind: str
    model: nn.Module
    path: Path
    checkpoint: dict[str, Any]
    lifter: str = CHECKPOINT_LIFTER
    architecture: dict[str, Any] = field(default_factory=dict)


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix`` with the prefix (and any ``module.``) removed."""
    state = strip_module_prefix(state)
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def lifter_architecture(state: dict[str, torch.Tensor], stored: dict[str, Any] | None, source: str,
                        requested: dict[str, Any] | None = None) -> dict[str, Any]:
    """The VideoPose3D architecture of ``state`` (``expand_conv``/``layers_conv`` weights, prefix removed):
    ``architecture`` (filter widths) and ``channels`` from the weights' shapes, ``causal``/``dense`` from
    ``stored`` (what the trainer saved) or else ``requested`` (the flags; default False). Every requested value
    that differs from the one used is named in one printed note."""
    # given flags only (None = not given; --causal/--dense are store_true flags, so False = not given)
    requested = {k: v for k, v in (requested or {}).items() if v is not None and v is not False}
    stored = stored or {}
    try:
        channels, _, first = state["expand_conv.weight"].shape
    except KeyError:
        raise UserError(f"{source} has no VideoPose3D lifter weights (expand_conv)") from None
    blocks = len([k for k in state if k.startswith("layers_conv.") and k.endswith(".weight")]) // 2
    widths = [int(first)] + [int(state[f"layers_conv.{2 * i}.weight"].shape[2]) for i in range(blocks)]
    arch = {"architecture": widths, "channels": int(channels),
            "causal": bool(stored.get("causal", requested.get("causal", False))),
            "dense": bool(stored.get("dense", requested.get("dense", False)))}
    if "architecture" in requested:
        requested["architecture"] = parse_architecture(requested["architecture"])
    differ = [f"{k} {requested[k]} -> {arch[k]}" for k in LIFTER_ARCHITECTURE_KEYS
              if k in requested and requested[k] != arch[k]]
    if differ:
        print(f"note: using the lifter architecture stored in {source}, not the flags: {', '.join(differ)}")
    return arch


def videopose3d_model(arch: dict[str, Any], dropout: float = 0.0) -> TemporalModel:
    """An (unloaded) inference-form VideoPose3D lifter, 17 joints 2D -> 3D, of architecture ``arch``."""
    return TemporalModel(NUM_JOINTS, 2, NUM_JOINTS, parse_architecture(arch["architecture"]), arch["causal"],
                         dropout, arch["channels"], arch["dense"])


def stored_lifter_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What a trainer stored about the lifter: ``mix_config`` (``-t mix``) or top-level keys (``-t pose``)."""
    if isinstance(checkpoint.get("mix_config"), dict):
        return checkpoint["mix_config"]
    return {k: checkpoint[k] for k in LIFTER_ARCHITECTURE_KEYS if k in checkpoint}


def load_model(name: str | Path, kinds: Sequence[str] = KINDS, *, architecture: Sequence[int] | str | None = None,
               channels: int | None = None, causal: bool | None = None, dense: bool | None = None,
               bidirectional: bool | None = None, num_layers: int | None = None,
               search: Sequence[str | Path] = (), device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model stored in checkpoint ``name`` (module docstring for the rule).

    kinds: the kinds the caller accepts (else a one-line error naming what the file holds); the remaining
    arguments are the user's flags (None = not given); ``search``: folders tried for a bare name before
    ``checkpoint/`` (e.g. a trainer's ``-c``). Returns a :class:`LoadedModel` in eval mode on ``device``.
    """
    path = resolve_checkpoint(name, *search)
    checkpoint = load_checkpoint(path)
    kind = expect_kind(checkpoint, kinds, str(path))
    state = strip_module_prefix(model_state(checkpoint, source=str(path)))
    requested = {"architecture": architecture, "channels": channels, "causal": causal, "dense": dense}
    lifter = str(checkpoint.get("lifter", CHECKPOINT_LIFTER))
    if kind == "length":
        arch = length_architecture(state, str(path))
        model: nn.Module = length_model_for_state(state, str(path), bidirectional, num_layers)
    elif kind == "lifter":
        arch = lifter_architecture(state, stored_lifter_config(checkpoint), str(path), requested)
        model = videopose3d_model(arch)
    else:
        length_state, lifter_state = sub_state(state, "length_model."), sub_state(state, "direction_model.")
        arch = lifter_architecture(lifter_state, stored_lifter_config(checkpoint), str(path), requested)
        model = MixModel(length_model_for_state(length_state, str(path), bidirectional, num_layers),
                         videopose3d_model(arch))
    load_weights(model, state, str(path))
    return LoadedModel(kind, model.to(device).eval(), path, checkpoint, lifter, arch)


__all__ = ["LoadedModel", "load_model", "lifter_architecture", "sub_state",
           "videopose3d_model", "stored_lifter_config"]
