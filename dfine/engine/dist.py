"""Distributed helpers: process group from ``torchrun`` environment, rank queries, reductions."""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any, Dict, List

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["setup", "cleanup", "is_dist", "rank", "world_size", "is_main", "barrier", "unwrap",
           "reduce_dict", "all_gather_object"]


def setup(device: str = "") -> torch.device:
    """Join the process group when launched by ``torchrun`` (NCCL on GPU, gloo on CPU) and
    return the device of this process (``device``: ``cpu``, ``cuda``, ``cuda:1``; empty: CUDA
    when available)."""
    from dfine.device import resolve_device

    dev = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_dist():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if dev.type == "cuda":
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    elif dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    return dev


def cleanup() -> None:
    """Leave the process group (if any). Called from a ``finally``: when an exception is on its
    way out, the other processes may be waiting in a collective that this one will never join,
    so it leaves without the barrier (a barrier there would hang the whole run instead of letting
    it fail)."""
    if is_dist():
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


@torch.no_grad()
def reduce_dict(values: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The mean over processes of each scalar tensor (same keys on every process)."""
    if not is_dist() or not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(stacked)
    stacked /= world_size()
    return dict(zip(keys, stacked))


def all_gather_object(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]``."""
    if not is_dist():
        return [obj]
    out: List[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes with a gradient: each process's input gradient is the sum of the
    output gradients of all processes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics cover the whole batch across processes, for CPU
    (gloo) runs, where ``nn.SyncBatchNorm`` is not available. Same state as ``BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_dist()):
            return super().forward(x)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0)
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp(min=1)), alpha=m)
            self.num_batches_tracked += 1
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else y


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norms synchronised across processes: ``nn.SyncBatchNorm`` on GPU,
    :class:`CpuSyncBatchNorm` on CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = CpuSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            sync.load_state_dict(child.state_dict())
            setattr(model, name, sync)
        else:
            convert_sync_bn(child, device)
    return model
