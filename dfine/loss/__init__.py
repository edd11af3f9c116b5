"""D-FINE losses: Hungarian matcher, VFL, L1 + GIoU, FGL and DDF; ``build_criterion(name)``.

The configs are plain dataclasses (no torch); the criterion and matcher are imported on first
use, so reading a recipe (``dfine.config``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import CriterionConfig, MatcherConfig

if TYPE_CHECKING:
    from .criterion import DFINECriterion, build_criterion
    from .matcher import HungarianMatcher

_LAZY = {"DFINECriterion": ".criterion", "build_criterion": ".criterion", "HungarianMatcher": ".matcher"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dfine.loss' has no attribute {name!r}")


__all__ = ["CriterionConfig", "MatcherConfig", "DFINECriterion", "HungarianMatcher", "build_criterion"]
