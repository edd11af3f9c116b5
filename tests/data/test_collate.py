"""Multi-scale batch collate."""

from __future__ import annotations

import pytest
import torch

from dfine.data import BatchCollate, multiscale_sizes
from dfine.data.collate import multiscale_shape


def _items(n=4, size=640, first_id=1):
    return [(torch.rand(3, size, size), {"image_id": torch.tensor(first_id + i), "boxes": torch.rand(2, 4),
                                         "labels": torch.tensor([0, 1])}) for i in range(n)]


def test_published_size_list():
    assert multiscale_sizes(640, 3) == (480, 512, 544, 576, 608, 640, 640, 640, 800, 768, 736, 704, 672)
    assert multiscale_sizes(640, 20).count(640) == 20
    assert len(multiscale_sizes(640, 20)) == 30


def test_sizes_drawn_before_stop_epoch_and_base_after():
    collate = BatchCollate(640, 3, stop_epoch=5, seed=0)
    seen = set()
    for epoch in range(5):
        collate.set_epoch(epoch)
        for first in range(0, 80, 4):
            images, targets = collate(_items(n=1, size=16, first_id=first))
            assert images.shape[-1] == images.shape[-2] and images.shape[-1] in multiscale_sizes(640, 3)
            seen.add(images.shape[-1])
    assert len(seen) >= 8  # sizes do vary
    collate.set_epoch(5)
    for first in range(0, 40, 4):
        items = _items(first_id=first)
        images, targets = collate(items)
        assert images.shape == (4, 3, 640, 640)
        assert torch.equal(images, torch.stack([im for im, _ in items]))  # untouched
        assert targets == [t for _, t in items]


def test_non_square_batches_keep_their_aspect_and_square_ones_the_published_size():
    """Tiles of dfine data tile --size 256 384 (train --imgsz 256 384): each multi-scale size is the
    longer side, the shorter keeps the aspect in multiples of 32 (a square size stretched them)."""
    assert multiscale_shape(640, 640, 640) == (640, 640)
    assert multiscale_shape(384, 256, 384) == (256, 384) and multiscale_shape(480, 256, 384) == (320, 480)
    assert multiscale_shape(288, 384, 256) == (288, 192) and multiscale_shape(64, 32, 640) == (32, 64)
    collate = BatchCollate(384, 3, stop_epoch=5, seed=0)
    shapes = set()
    for first in range(0, 80, 4):
        items = [(torch.rand(3, 256, 384), t) for _, t in _items(n=2, size=8, first_id=first)]
        images, targets = collate(items)
        h, w = images.shape[-2:]
        assert w in multiscale_sizes(384, 3) and h % 32 == 0 and abs(h / w - 256 / 384) <= 16 / w
        shapes.add((h, w))
    assert len(shapes) >= 4 and (256, 384) in shapes


def test_no_multiscale_without_repeat():
    collate = BatchCollate(640, None, stop_epoch=100)  # the N recipes: base_size_repeat: ~
    images, _ = collate(_items())
    assert images.shape == (4, 3, 640, 640) and not collate.multiscale()


def test_size_is_a_function_of_seed_epoch_and_batch_number():
    a, b = BatchCollate(640, 3, seed=1), BatchCollate(640, 3, seed=1)
    sizes = []
    for epoch in range(20):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert a.size_for(3) == b.size_for(3)
        sizes.append(a.size_for(3))
    assert len(set(sizes)) > 1
    a.set_epoch(0)
    assert len({a.size_for(i) for i in range(40)}) > 1


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.items = _items(n, size=8)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def set_epoch(self, epoch):
        pass


def _sizes(world_size: int, rank: int, batch: int, workers: int, epoch: int = 0):
    from torch.utils.data import DistributedSampler

    from dfine.data.loader import DetectionDataLoader

    data = _Images(24)
    sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=0)
    loader = DetectionDataLoader(data, batch_size=batch, sampler=sampler, num_workers=workers,
                                 collate_fn=BatchCollate(640, 3, seed=0), generator=torch.Generator())
    loader.set_epoch(epoch)
    return [(images.shape[-1], sorted(int(t["image_id"]) for t in targets)) for images, targets in loader]


def test_every_process_and_worker_draws_the_size_of_the_whole_batch():
    """Batch k of each DDP process holds its share of batch k of one process (same total
    batch), and is resized to the same size, whatever the number of workers."""
    whole = _sizes(1, 0, 4, 0, epoch=2)
    assert len({size for size, _ in whole}) > 1
    assert _sizes(1, 0, 4, 2, epoch=2) == whole
    shares = [_sizes(2, rank, 2, workers, epoch=2) for rank, workers in ((0, 0), (1, 2))]
    for k, (size, ids) in enumerate(whole):
        assert [shares[0][k][0], shares[1][k][0]] == [size, size]
        assert sorted(shares[0][k][1] + shares[1][k][1]) == ids


def test_mixed_sizes_are_refused():
    items = _items(2)
    items[1] = (torch.rand(3, 320, 320), items[1][1])
    with pytest.raises(ValueError, match="end the transforms with a Resize"):
        BatchCollate()(items)
