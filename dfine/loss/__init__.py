"""D-FINE losses: Hungarian matcher, VFL, L1 + GIoU, FGL and DDF; ``build_criterion(name)``."""

from .config import CriterionConfig, MatcherConfig
from .criterion import DFINECriterion, build_criterion
from .matcher import HungarianMatcher

__all__ = ["CriterionConfig", "MatcherConfig", "DFINECriterion", "HungarianMatcher", "build_criterion"]
