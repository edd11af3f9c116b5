"""Cost and latency measurements shared by ``dfine benchmark`` and ``benchmarks/cpu_latency.py``."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, Tuple

import torch
import torch.nn as nn

__all__ = ["count_flops", "count_params", "time_call"]


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, imgsz: Tuple[int, int], batch: int = 1) -> float:
    """FLOPs of one forward pass on ``[batch, 3, H, W]`` (``torch.utils.flop_counter``; a
    multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.rand(batch, 3, *imgsz, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return float(counter.get_total_flops())


def time_call(fn: Callable[[], object], warmup: int = 3, runs: int = 20, sync: Callable[[], None] = lambda: None
              ) -> Dict[str, float]:
    """Median, min and mean wall time of ``fn()`` in milliseconds after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "mean_ms": statistics.fmean(times)}
