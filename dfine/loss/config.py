"""Typed criterion configuration (published section ``DFINECriterion`` and its ``matcher``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple


def _default_cost_weights() -> Dict[str, float]:
    return {"cost_class": 2.0, "cost_bbox": 5.0, "cost_giou": 2.0}


def _default_loss_weights() -> Dict[str, float]:
    return {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_fgl": 0.15, "loss_ddf": 1.5}


@dataclass(frozen=True)
class MatcherConfig:
    """Hungarian matcher (published ``DFINECriterion.matcher``)."""

    type: str = "HungarianMatcher"
    weight_dict: Dict[str, float] = field(default_factory=_default_cost_weights)
    alpha: float = 0.25
    gamma: float = 2.0
    use_focal_loss: bool = True


@dataclass(frozen=True)
class CriterionConfig:
    """D-FINE losses (published section ``DFINECriterion``).

    ``reg_max`` is not a field: it is the decoder's (``DFINETransformer.reg_max``), passed in when
    the criterion is built, so it lives in one place.
    """

    weight_dict: Dict[str, float] = field(default_factory=_default_loss_weights)
    losses: Tuple[str, ...] = ("vfl", "boxes", "local")
    alpha: float = 0.75
    gamma: float = 2.0
    boxes_weight_format: Optional[str] = None
    share_matched_indices: bool = False
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
