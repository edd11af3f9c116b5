"""Exponential moving average of a model's weights (published ``ModelEMA``)."""

from __future__ import annotations

import copy
import math
from typing import Any, Dict

import torch
import torch.nn as nn

from .dist import unwrap

__all__ = ["ModelEMA"]


class ModelEMA:
    """A frozen copy of the model whose floating-point state (parameters and buffers) follows
    the trained model: ``ema = d * ema + (1 - d) * model`` after every optimiser step, with
    ``d = decay * (1 - exp(-updates / warmups))`` (``d = decay`` when ``warmups`` is 0). The
    first ``start`` updates are skipped."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmups: int = 1000, start: int = 0) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmups = warmups
        self.start = start
        self.before_start = 0
        self.updates = 0

    def decay_at(self, updates: int) -> float:
        """The averaging factor of update number ``updates``."""
        if self.warmups == 0:
            return self.decay
        return self.decay * (1 - math.exp(-updates / self.warmups))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average the trained ``model`` in (call after each optimiser step)."""
        if self.before_start < self.start:
            self.before_start += 1
            return
        self.updates += 1
        d = self.decay_at(self.updates)
        current = unwrap(model).state_dict()
        for name, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(current[name].detach(), alpha=1 - d)

    def to(self, *args: Any, **kwargs: Any) -> "ModelEMA":
        self.module.to(*args, **kwargs)
        return self

    def state_dict(self) -> Dict[str, Any]:
        """Published layout: ``{"module": weights, "updates": n}``."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"], strict=False)
        self.updates = int(state.get("updates", self.updates))

    def __repr__(self) -> str:
        return f"ModelEMA(decay={self.decay}, warmups={self.warmups}, updates={self.updates})"
