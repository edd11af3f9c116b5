"""Optimiser with the published regex parameter groups, linear warm-up and LR schedules."""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from dfine.config import Config, ConfigError, OptimizerConfig

__all__ = ["param_groups", "build_optimizer", "LinearWarmup", "FlatCosine", "build_lr_scheduler",
           "build_warmup"]


def param_groups(cfg: OptimizerConfig, model: nn.Module) -> List[Dict[str, Any]]:
    """One group per ``cfg.params`` entry holding the trainable parameters whose name matches
    its regex (``re.search``), with that entry's ``lr`` / ``weight_decay`` / ``betas``; the
    trainable parameters matched by none form a last group with the optimiser's defaults.
    A parameter matched by two entries is an error (as published)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not cfg.params:
        return [{"params": [p for _, p in named]}]
    groups, seen = [], set()
    for entry in cfg.params:
        names = [n for n, _ in named if re.search(entry.params, n)]
        twice = [n for n in names if n in seen]
        if twice:
            raise ConfigError(f"optimizer.params regex {entry.params!r} also matches {twice[0]}, already in an "
                              f"earlier group; make the regexes exclusive")
        seen.update(names)
        group: Dict[str, Any] = {"params": [p for n, p in named if n in set(names)]}
        for key in ("lr", "weight_decay", "betas"):
            if getattr(entry, key) is not None:
                group[key] = getattr(entry, key)
        groups.append(group)
    rest = [p for n, p in named if n not in seen]
    if rest:
        groups.append({"params": rest})
    return groups


def build_optimizer(cfg: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """``AdamW`` (or ``Adam`` / ``SGD``) over :func:`param_groups`."""
    groups = param_groups(cfg, model)
    if cfg.type == "SGD":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    kind = torch.optim.AdamW if cfg.type == "AdamW" else torch.optim.Adam
    return kind(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


class LinearWarmup:
    """Linear warm-up over the first ``duration`` iterations: iteration ``i`` runs at
    ``min(1, (i + 1) / duration)`` times each group's target LR. Built after the epoch
    scheduler; applies iteration 0's factor at once and moves on with :meth:`step`."""

    def __init__(self, optimizer: torch.optim.Optimizer, duration: int) -> None:
        self.optimizer = optimizer
        self.warmup_duration = int(duration)
        self.warmup_end_values = [g["lr"] for g in optimizer.param_groups]
        self.last_step = -1
        self.step()

    def step(self) -> None:
        """Advance one iteration."""
        self.last_step += 1
        if self.finished():
            return
        factor = min(1.0, (self.last_step + 1) / self.warmup_duration)
        for group, end in zip(self.optimizer.param_groups, self.warmup_end_values):
            group["lr"] = factor * end

    def finished(self) -> bool:
        return self.last_step >= self.warmup_duration

    def state_dict(self) -> Dict[str, Any]:
        return {"last_step": self.last_step, "warmup_duration": self.warmup_duration,
                "warmup_end_values": list(self.warmup_end_values)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for key in ("last_step", "warmup_duration", "warmup_end_values"):
            if key in state:
                setattr(self, key, state[key])


class FlatCosine:
    """Published flat-cosine schedule, set per iteration: quadratic warm-up over
    ``warmup_iter`` iterations, flat until ``flat_epoch``, cosine down to ``lr_gamma`` times
    the base LR, then flat at that minimum over the last ``no_aug_epoch`` epochs."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr_gamma: float, iters_per_epoch: int, epochs: int,
                 warmup_iter: int, flat_epoch: int, no_aug_epoch: int) -> None:
        self.optimizer = optimizer
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.min_lrs = [lr * lr_gamma for lr in self.base_lrs]
        self.total = int(iters_per_epoch * epochs)
        self.warmup = int(warmup_iter)
        self.flat = int(iters_per_epoch * flat_epoch)
        self.no_aug = int(iters_per_epoch * no_aug_epoch)

    def lr(self, it: int, base: float, low: float) -> float:
        """The LR of iteration ``it`` for a group with base ``base`` and minimum ``low``."""
        if it <= self.warmup:
            return base * (it / float(max(self.warmup, 1))) ** 2
        if it <= self.flat:
            return base
        if it >= self.total - self.no_aug:
            return low
        span = max(self.total - self.flat - self.no_aug, 1)
        return low + (base - low) * 0.5 * (1 + math.cos(math.pi * (it - self.flat) / span))

    def step(self, it: int) -> None:
        """Set every group's LR for iteration ``it`` (0-based over the whole run)."""
        for group, base, low in zip(self.optimizer.param_groups, self.base_lrs, self.min_lrs):
            group["lr"] = self.lr(it, base, low)

    def state_dict(self) -> Dict[str, Any]:
        return {"base_lrs": self.base_lrs, "min_lrs": self.min_lrs}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.base_lrs, self.min_lrs = list(state["base_lrs"]), list(state["min_lrs"])


def build_lr_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> Optional[Any]:
    """The epoch scheduler of the recipe (``MultiStepLR`` / ``CosineAnnealingLR``), or ``None``."""
    sched = cfg.lr_scheduler
    if sched is None:
        return None
    if sched.type == "MultiStepLR":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(sched.milestones), gamma=sched.gamma)
    t_max = sched.T_max if sched.T_max is not None else (cfg.epochs or 1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=sched.eta_min)


def build_warmup(cfg: Config, optimizer: torch.optim.Optimizer) -> Optional[LinearWarmup]:
    """The recipe's linear warm-up (after :func:`build_lr_scheduler`), or ``None``."""
    if cfg.lr_warmup_scheduler is None or cfg.lrsheduler is not None:
        return None
    return LinearWarmup(optimizer, cfg.lr_warmup_scheduler.warmup_duration)


def build_flat_cosine(cfg: Config, optimizer: torch.optim.Optimizer, iters_per_epoch: int) -> Optional[FlatCosine]:
    """The flat-cosine schedule when the recipe sets ``lrsheduler: flatcosine``, else ``None``."""
    if cfg.lrsheduler is None:
        return None
    missing = [k for k in ("epochs", "lr_gamma", "warmup_iter", "flat_epoch", "no_aug_epoch") if getattr(cfg, k) is None]
    if missing:
        raise ConfigError(f"{cfg.config_file or 'config'}: lrsheduler: flatcosine needs {', '.join(missing)}")
    return FlatCosine(optimizer, cfg.lr_gamma, iters_per_epoch, cfg.epochs, cfg.warmup_iter, cfg.flat_epoch,
                      cfg.no_aug_epoch)
