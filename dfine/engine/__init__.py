"""Training and evaluation: :class:`~dfine.engine.trainer.Trainer`, EMA, optimiser and
schedules, COCO evaluation, checkpoints."""

from .ema import ModelEMA
from .evaluator import CocoMetrics, coco_metrics, evaluate
from .trainer import Trainer

__all__ = ["CocoMetrics", "ModelEMA", "Trainer", "coco_metrics", "evaluate"]
