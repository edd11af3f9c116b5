"""Batching with multi-scale training sizes (published ``BatchImageCollateFunction``)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info

from dfine.data.rng import generator, mix_seed

__all__ = ["multiscale_sizes", "multiscale_shape", "BatchCollate"]

Item = Tuple[torch.Tensor, Dict[str, torch.Tensor]]


def multiscale_sizes(base_size: int, base_size_repeat: int, min_size: Optional[int] = None) -> Tuple[int, ...]:
    """The published size list: multiples of 32 from 0.75x up to the base size, the base
    size ``base_size_repeat`` times, then down from 1.25x. 640, 3 -> 480 512 544 576 608
    640 640 640 800 768 736 704 672. Sizes under ``min_size`` (px) are left out."""
    low = int(base_size * 0.75 / 32) * 32
    high = int(base_size * 1.25 / 32) * 32
    steps = (base_size - low) // 32
    sizes = (tuple(low + 32 * i for i in range(steps)) + (base_size,) * base_size_repeat
             + tuple(high - 32 * i for i in range(steps)))
    return sizes if min_size is None else tuple(s for s in sizes if s >= min_size)


def multiscale_shape(size: int, height: int, width: int) -> Tuple[int, int]:
    """The ``(height, width)`` a batch of ``height x width`` images is resized to for the multi-scale
    ``size``: ``(size, size)`` for square images (as published); for non-square ones (tiles of
    ``dfine data tile --size H W``) the longer side is ``size`` and the shorter keeps the aspect,
    rounded to a multiple of 32 (the model's largest stride; 32 at least)."""
    if height == width:
        return size, size
    short = max(32, int(round(size * min(height, width) / max(height, width) / 32)) * 32)
    return (size, short) if height > width else (short, size)


class BatchCollate:
    """Stack ``(image, target)`` items into ``(images [B, 3, H, W], targets list)``.

    Before ``stop_epoch`` (and when ``base_size_repeat`` is set) each batch is resized to a
    size drawn uniformly from :func:`multiscale_sizes` (nearest-neighbour, as published;
    none under ``min_size``; non-square images keep their aspect, :func:`multiscale_shape`);
    boxes are normalised so targets are unchanged. The draw is seeded by ``(seed, epoch, batch
    number in the epoch)``, so every DDP process resizes its share of a batch to the size one
    process would use for the whole batch. From ``stop_epoch`` on, images keep their size.

    The batch number counts the calls since :meth:`start`; in a worker of a ``DataLoader`` it
    is ``calls * num_workers + worker id`` (the loader deals batches to workers in turn).
    """

    def __init__(self, base_size: int = 640, base_size_repeat: Optional[int] = None,
                 stop_epoch: Optional[int] = None, seed: int = 0, min_size: Optional[int] = None) -> None:
        self.base_size = base_size
        self.sizes = (multiscale_sizes(base_size, base_size_repeat, min_size) if base_size_repeat is not None
                      else None)
        self.stop_epoch = stop_epoch
        self.seed = seed
        self.epoch = 0
        self.calls = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the next batches (numbered from 0 again)."""
        self.epoch = epoch
        self.start()

    def start(self) -> None:
        """The next batch is batch 0 (a new pass over the loader)."""
        self.calls = 0

    def batch_number(self) -> int:
        """Number of the batch being collated within the pass; advances the count."""
        info = get_worker_info()
        number = self.calls * info.num_workers + info.id if info is not None else self.calls
        self.calls += 1
        return number

    def multiscale(self) -> bool:
        """Whether batches of the current epoch are resized."""
        return self.sizes is not None and (self.stop_epoch is None or self.epoch < self.stop_epoch)

    def size_for(self, batch: int) -> Optional[int]:
        """The size of batch number ``batch`` (a side: :func:`multiscale_shape`), ``None`` to keep the
        images' own size."""
        if not self.multiscale():
            return None
        pick = torch.randint(len(self.sizes), (1,), generator=generator(mix_seed(self.seed, self.epoch, batch)))
        return self.sizes[int(pick)]

    def __call__(self, items: Sequence[Item]) -> Tuple[torch.Tensor, List[Dict[str, torch.Tensor]]]:
        shapes = {tuple(image.shape) for image, _ in items}
        if len(shapes) > 1:
            raise ValueError(f"images of one batch differ in size {sorted(shapes)}; end the transforms with a "
                             f"Resize to a fixed size")
        images = torch.stack([image for image, _ in items])
        targets = [target for _, target in items]
        size = self.size_for(self.batch_number())
        if size is not None:
            h, w = images.shape[-2:]
            images = F.interpolate(images, size=size if h == w else multiscale_shape(size, h, w))
        return images, targets

    def __repr__(self) -> str:
        return (f"BatchCollate(base_size={self.base_size}, sizes={self.sizes}, stop_epoch={self.stop_epoch})")
