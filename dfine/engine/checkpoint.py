"""Training checkpoints: atomic writes, fine-tuning loads with class-head adaptation."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from dfine.checkpoint import DERIVED
from dfine.errors import DfineError

__all__ = ["OBJ365_TO_COCO", "head_names", "tuning_state", "load_tuning"]

# Objects365 class (0-based, without the background row) of each of the 80 COCO labels: the
# published Objects365 -> COCO correspondence used to carry classification heads across.
OBJ365_TO_COCO: Tuple[int, ...] = (
    0, 46, 5, 58, 114, 55, 116, 65, 21, 40, 176, 127, 249, 24, 56, 139, 92, 78, 99, 96,
    144, 295, 178, 180, 38, 39, 13, 43, 120, 219, 148, 173, 165, 154, 137, 113, 145, 146, 204, 8,
    35, 10, 88, 84, 93, 26, 112, 82, 265, 104, 141, 152, 234, 143, 150, 97, 2, 50, 25, 75,
    98, 153, 37, 73, 115, 132, 106, 61, 163, 134, 277, 81, 133, 18, 94, 30, 169, 70, 328, 226,
)


def head_names(state: Mapping[str, torch.Tensor]) -> List[str]:
    """The classification-head entries of a D-FINE state dict (their size is the class count)."""
    return [k for k in state if k.startswith(("decoder.enc_score_head.", "decoder.dec_score_head."))
            or k == "decoder.denoising_class_embed.weight"]


def _remap(own: torch.Tensor, theirs: torch.Tensor, name: str, ids: Sequence[int]) -> Optional[torch.Tensor]:
    """Carry a score head across the Objects365 <-> COCO correspondence, or ``None``."""
    if name.endswith("denoising_class_embed.weight") or len(ids) == 0 or own.shape[1:] != theirs.shape[1:]:
        return None
    out = own.detach().clone()
    if own.shape[0] == len(ids) and theirs.shape[0] > max(ids) + 1:  # Objects365 -> COCO
        out[:] = theirs[[i + 1 for i in ids]]
        return out
    if theirs.shape[0] == len(ids) and own.shape[0] > max(ids) + 1:  # COCO -> Objects365
        out[[i + 1 for i in ids]] = theirs
        return out
    return None


def tuning_state(model: nn.Module, state: Mapping[str, torch.Tensor], name: str,
                 obj365_ids: Sequence[int] = OBJ365_TO_COCO) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """What of ``state`` fine-tuning loads into ``model``: entries of the same shape, and the
    class heads remapped between Objects365 and COCO when their sizes are those two. Returns
    ``(loadable, remapped, reinitialised)``; a checkpoint of another model size is an error.
    Anchors computed for another input size are left to the model (it recomputes them)."""
    own = model.state_dict()
    loadable, remapped, reinit = {}, [], []
    heads = set(head_names(own))
    for key, value in own.items():
        theirs = state.get(key)
        if key in DERIVED and (theirs is None or theirs.shape != value.shape):
            continue
        if theirs is not None and theirs.shape == value.shape:
            loadable[key] = theirs
        elif theirs is not None and key in heads:
            mapped = _remap(value, theirs, key, obj365_ids)
            if mapped is not None:
                loadable[key] = mapped
                remapped.append(key)
            else:
                reinit.append(key)
    mismatched = [k for k in own if k not in loadable and k not in reinit and k in state and k not in DERIVED]
    if mismatched or len(loadable) < len(own) // 2:
        raise DfineError(f"{name} does not fit this model (another size?): {len(mismatched)} entries differ in shape "
                         f"and {len([k for k in own if k not in state])} are missing, e.g. "
                         f"{(mismatched or [k for k in own if k not in state])[0]}")
    return loadable, remapped, reinit


def load_tuning(model: nn.Module, state: Mapping[str, torch.Tensor], name: str,
                obj365_ids: Sequence[int] = OBJ365_TO_COCO) -> List[str]:
    """Fine-tuning load (``-t``): everything that matches; class heads of another class count
    are remapped (Objects365 <-> COCO) or left freshly initialised, with a warning naming them.
    Returns the re-initialised entries."""
    loadable, remapped, reinit = tuning_state(model, state, name, obj365_ids)
    model.load_state_dict(loadable, strict=False)
    if remapped:
        warnings.warn(f"{name}: class heads remapped Objects365 <-> COCO: {', '.join(remapped)}", stacklevel=2)
    if reinit:
        warnings.warn(f"{name} has another number of classes; re-initialised: {', '.join(reinit)}", stacklevel=2)
    return reinit
