"""Deterministic randomness for the data pipeline.

Every random choice of the pipeline is a function of ``(seed, epoch, sample index)`` (or, for
a batch, of its number in the epoch), so a run is reproducible whatever the number of workers or
processes, and a resumed run sees the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import torch

_MASK = (1 << 63) - 1


def mix_seed(*values: int) -> int:
    """A 63-bit seed that depends on every value (stable across processes and runs)."""
    text = ",".join(str(int(v)) for v in values).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & _MASK


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded to ``seed``, then restore its state
    (torchvision's random transforms draw from that generator)."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


def generator(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded to ``seed``."""
    return torch.Generator().manual_seed(seed)
