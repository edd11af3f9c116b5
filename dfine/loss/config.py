"""Typed criterion configuration (published section ``DFINECriterion`` and its ``matcher``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Optional, Tuple

LOSS_TERMS: Dict[str, Tuple[str, ...]] = {
    "vfl": ("loss_vfl",),
    "focal": ("loss_focal",),
    "boxes": ("loss_bbox", "loss_giou"),
    "local": ("loss_fgl", "loss_ddf"),
}
"""Each entry of ``losses`` and the published names of the terms it produces."""

BOXES_WEIGHT_FORMATS = (None, "iou", "giou")
COST_NAMES = ("cost_class", "cost_bbox", "cost_giou")


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


def _check_weights(where: str, weights: Dict[str, float], allowed) -> None:
    for key, value in weights.items():
        if key not in allowed:
            raise TypeError(f"unknown key {where}.{key}; valid keys: {', '.join(allowed)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{where}.{key} must be a number, got {value!r}")


def validate(cfg: CriterionConfig) -> CriterionConfig:
    """Check the values of ``cfg``; raise a one-line ``ValueError``/``TypeError`` naming the key."""
    for name in cfg.losses:
        if name not in LOSS_TERMS:
            raise ValueError(f"unknown loss {name!r} in losses; choose among {', '.join(LOSS_TERMS)}")
    _check_weights("weight_dict", cfg.weight_dict, [t for terms in LOSS_TERMS.values() for t in terms])
    if cfg.boxes_weight_format not in BOXES_WEIGHT_FORMATS:
        raise ValueError(f"boxes_weight_format must be one of None, 'iou', 'giou', got {cfg.boxes_weight_format!r}")
    m = cfg.matcher
    if m.type != "HungarianMatcher":
        raise ValueError(f"matcher.type must be 'HungarianMatcher', got {m.type!r}")
    _check_weights("matcher.weight_dict", m.weight_dict, COST_NAMES)
    missing = [k for k in COST_NAMES if k not in m.weight_dict]
    if missing:
        raise ValueError(f"matcher.weight_dict lacks {', '.join(missing)}")
    return cfg


def _merged(where: str, current: Any, value: Any, cls) -> Any:
    """``current`` (a dataclass) updated by ``value`` (a dict of its fields, or a ready instance)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be a dict or a {cls.__name__}, got {type(value).__name__}")
    names = [f.name for f in fields(cls)]
    changes = {}
    for key, val in value.items():
        if key not in names:
            raise TypeError(f"unknown option {where}.{key}; valid options: {', '.join(names)}")
        if key == "weight_dict":
            val = {**current.weight_dict, **val} if isinstance(val, dict) else val
        elif key == "losses" and isinstance(val, list):
            val = tuple(val)
        changes[key] = val
    return replace(current, **changes)


def apply_overrides(cfg: CriterionConfig, **overrides: Any) -> CriterionConfig:
    """``cfg`` with ``overrides`` applied and validated.

    Keys are the fields of :class:`CriterionConfig`. ``weight_dict`` entries are merged into the
    current ones (``weight_dict={"loss_fgl": 0.3}`` changes one weight); ``matcher`` is a dict of
    :class:`MatcherConfig` fields (its ``weight_dict`` merged the same way) or a ``MatcherConfig``.
    An unknown key is a ``TypeError`` naming it.
    """
    overrides = dict(overrides)
    matcher = overrides.pop("matcher", None)
    cfg = _merged("criterion", cfg, overrides, CriterionConfig)
    if matcher is not None:
        cfg = replace(cfg, matcher=_merged("matcher", cfg.matcher, matcher, MatcherConfig))
    return validate(cfg)
