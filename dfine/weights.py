"""Turning a training checkpoint into a weights file.

A training checkpoint holds the model, its EMA copy, the optimizer and scheduler states;
a weights file holds only what inference and fine-tuning need: the EMA weights, under
``"model"``, as the published weights files do.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import torch

from dfine.checkpoint import read_checkpoint
from dfine.errors import DfineError

__all__ = ["extract_ema"]

PathLike = Union[str, os.PathLike]


def extract_ema(src: PathLike, dst: Optional[PathLike] = None) -> Path:
    """Write the EMA weights of the training checkpoint ``src`` to ``dst`` as ``{"model": ...}``.

    ``dst`` defaults to ``<src stem>_converted<suffix>`` beside ``src``. The file is written
    atomically: a reader never sees it half-written. Returns ``dst``. Raises a one-line
    :class:`DfineError` when ``src`` is not a checkpoint or holds no EMA weights.
    """
    src = Path(src)
    dst = Path(dst) if dst is not None else src.with_name(f"{src.stem}_converted{src.suffix}")
    state = _ema_state(read_checkpoint(src), src)
    save_atomic({"model": state}, dst)
    return dst


def _ema_state(ckpt: Mapping, src: Path) -> Mapping[str, torch.Tensor]:
    """``ckpt["ema"]["module"]``, checked to be a state dict."""
    ema = ckpt.get("ema")
    if ema is None:
        keys = ", ".join(map(str, list(ckpt)[:8])) or "none"
        raise DfineError(f"{src} holds no EMA weights (no 'ema' entry; its keys: {keys}); "
                         f"it may be a weights file already, usable as it is")
    module = ema.get("module") if isinstance(ema, Mapping) else None
    if not isinstance(module, Mapping) or not module:
        raise DfineError(f"{src} has an 'ema' entry without a 'module' state dict; "
                         f"it was not written by a D-FINE trainer")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in module.items()):
        raise DfineError(f"{src}: 'ema.module' is not a state dict (names to tensors)")
    return module


def save_atomic(obj: object, dst: Union[str, os.PathLike]) -> Path:
    """``torch.save(obj, dst)`` through a temporary file in the same folder, fsynced and renamed
    over ``dst``: a crash leaves the old file or the new one, never half a file. Returns ``dst``."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst
