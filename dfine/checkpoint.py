"""Loading published (and our own) checkpoints into a model, with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import torch
import torch.nn as nn

from .errors import DfineError

# Buffers that are a pure function of the model's input size: recomputed, never a reason to fail.
DERIVED = ("decoder.anchors", "decoder.valid_mask")
# Training-only weights: a model built without denoising ignores them, and a model with denoising
# keeps its initial embedding when a checkpoint has none (e.g. one saved from a deploy-form model).
_OPTIONAL = DERIVED + ("decoder.denoising_class_embed.weight",)


def read_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a one-line :class:`DfineError` for a missing,
    truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise DfineError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler raises many kinds on foreign bytes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DfineError(f"{path} is not a readable PyTorch checkpoint ({first[:160]})") from None
    if not isinstance(obj, dict):
        raise DfineError(f"{path} is not a checkpoint: it holds a {type(obj).__name__}, not a dict of weights")
    return obj


def model_state(ckpt: Mapping[str, Any], name: str = "checkpoint") -> Mapping[str, torch.Tensor]:
    """The weights a checkpoint is used through: ``ema.module`` when present, else ``model``, else the
    dict itself when it is a plain state dict."""
    ema = ckpt.get("ema")
    if isinstance(ema, Mapping) and isinstance(ema.get("module"), Mapping):
        return ema["module"]
    if isinstance(ckpt.get("model"), Mapping):
        return ckpt["model"]
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise DfineError(f"{name} has no model weights (expected a 'model' or 'ema.module' entry; "
                     f"found keys: {', '.join(list(ckpt)[:8])})")


def _first(keys, n: int = 3) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], name: str = "checkpoint") -> None:
    """Strictly load ``state`` into ``model``; a mismatch is one :class:`DfineError` line naming
    the file and the first mismatched keys (and the shapes, for a size mismatch)."""
    own = model.state_dict()
    state = {k: v for k, v in state.items()
             if not (k in _OPTIONAL and k not in own) and not (k in DERIVED and own[k].shape != v.shape)}
    shape_errors = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                    for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and k not in _OPTIONAL]
    unexpected = [k for k in state if k not in own]
    if shape_errors:
        raise DfineError(f"{name} does not fit this model (another size or class count?): "
                         f"{len(shape_errors)} shape mismatches, first: {_first(shape_errors, 2)}")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {_first(unexpected)}")
        raise DfineError(f"{name} does not fit this model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)


def load_checkpoint(model: nn.Module, checkpoint: Union[str, os.PathLike, Mapping[str, Any]]) -> nn.Module:
    """Load a published D-FINE checkpoint (or one of ours) into ``model``, strictly.

    ``checkpoint`` is a path or an already-loaded dict; its ``ema.module`` weights are used when
    present, else ``model``. Returns ``model``.
    """
    if isinstance(checkpoint, Mapping):
        ckpt, name = checkpoint, "checkpoint"
    else:
        ckpt, name = read_checkpoint(checkpoint), str(checkpoint)
    load_state(model, model_state(ckpt, name), name)
    return model
