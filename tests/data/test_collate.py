"""Multi-scale batch collate."""

from __future__ import annotations

import pytest
import torch

from dfine.data import BatchCollate, multiscale_sizes


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


def test_no_multiscale_without_repeat():
    collate = BatchCollate(640, None, stop_epoch=100)  # the N recipes: base_size_repeat: ~
    images, _ = collate(_items())
    assert images.shape == (4, 3, 640, 640) and not collate.multiscale()


def test_size_is_a_function_of_seed_epoch_and_images():
    a, b = BatchCollate(640, 3, seed=1), BatchCollate(640, 3, seed=1)
    targets = [t for _, t in _items(first_id=7)]
    sizes = []
    for epoch in range(20):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert a.size_for(targets) == b.size_for(targets)
        sizes.append(a.size_for(targets))
    assert len(set(sizes)) > 1


def test_mixed_sizes_are_refused():
    items = _items(2)
    items[1] = (torch.rand(3, 320, 320), items[1][1])
    with pytest.raises(ValueError, match="end the transforms with a Resize"):
        BatchCollate()(items)
