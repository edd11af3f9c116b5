"""Data loaders: reproducible batches, the stop epoch, distributed sharding."""

from __future__ import annotations

import itertools

import pytest
import torch

from dfine.config import ConfigError
from dfine.data import build_dataloader, build_dataset, check_same_labels
from dfine.data.collate import multiscale_sizes


def _batches(loader, epoch, n=3):
    loader.set_epoch(epoch)
    return list(itertools.islice(iter(loader), n))


def _same(a, b):
    assert len(a) == len(b)
    for (ia, ta), (ib, tb) in zip(a, b):
        assert torch.equal(ia, ib)
        for x, y in zip(ta, tb):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_fixed_seed_gives_identical_batches(coco128_config):
    cfg = coco128_config("seed=3")
    first = _batches(build_dataloader(cfg, "train"), epoch=1)
    second = _batches(build_dataloader(cfg, "train"), epoch=1)
    _same(first, second)
    other = _batches(build_dataloader(coco128_config("seed=4"), "train"), epoch=1)
    assert [t["image_id"].item() for t in other[0][1]] != [t["image_id"].item() for t in first[0][1]]


def test_batches_do_not_depend_on_worker_count(coco128_config):
    cfg = coco128_config("seed=3")
    _same(_batches(build_dataloader(cfg, "train"), epoch=2, n=2),
          _batches(build_dataloader(coco128_config("seed=3", "train_dataloader.num_workers=2"), "train"), epoch=2, n=2))


def test_batch_layout(coco128_config):
    images, targets = _batches(build_dataloader(coco128_config(), "train"), epoch=0, n=1)[0]
    assert images.dtype == torch.float32 and images.shape[:2] == (4, 3) and images.shape[-1] == images.shape[-2]
    assert images.shape[-1] in multiscale_sizes(640, 20)  # the S recipe: base_size_repeat 20
    assert len(targets) == 4
    for t in targets:
        assert t["labels"].dtype == torch.int64 and t["boxes"].shape == (len(t["labels"]), 4)
        assert t["orig_size"].shape == (2,) and t["image_id"].ndim == 0


def test_no_multiscale_after_stop_epoch(coco128_config):
    cfg = coco128_config()
    loader = build_dataloader(cfg, "train")
    before = {images.shape[-1] for images, _ in _batches(loader, epoch=cfg.stop_epoch - 1, n=6)}
    after = {images.shape[-1] for images, _ in _batches(loader, epoch=cfg.stop_epoch, n=6)}
    assert after == {640}
    assert before != {640}


def test_epochs_shuffle_differently_and_val_keeps_order(coco128_config):
    cfg = coco128_config()
    train = build_dataloader(cfg, "train")
    ids = lambda batches: [t["image_id"].item() for _, ts in batches for t in ts]  # noqa: E731
    assert ids(_batches(train, 0, 1)) != ids(_batches(train, 1, 1))
    val = build_dataloader(cfg, "val")
    ordered = ids(_batches(val, 0, 2))
    assert ordered == sorted(ordered) and ordered[0] == 9


def test_distributed_shards_split_the_data(coco128_config):
    cfg = coco128_config("train_dataloader.total_batch_size=8")
    dataset = build_dataset(cfg, "train")
    ranks = [build_dataloader(cfg, "train", dataset, world_size=2, rank=r) for r in (0, 1)]
    for loader in ranks:
        loader.set_epoch(0)
        assert loader.batch_size == 4
    idx = [set(iter(loader.sampler)) for loader in ranks]
    assert not idx[0] & idx[1] and len(idx[0] | idx[1]) == 128


def test_total_batch_size_must_divide(coco128_config):
    cfg = coco128_config("train_dataloader.total_batch_size=6")
    with pytest.raises(ConfigError, match="total_batch_size=6 is not divisible by the 4 processes"):
        build_dataloader(cfg, "train", world_size=4, rank=0)


def test_train_and_val_labels_must_agree(coco128_config):
    cfg = coco128_config()
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    check_same_labels(train.label_map, val.label_map)


def test_a_train_set_smaller_than_one_batch_is_refused(coco128_config):
    """A one-image YOLO export trained with the CPU batch of 8 ran 0 steps an epoch and ended 'done'
    with loss nan; now it stops before training, saying the batch to give."""
    from dfine.data import DatasetError

    cfg = coco128_config("train_dataloader.total_batch_size=200", "val_dataloader.total_batch_size=200")
    dataset = build_dataset(cfg, "train")
    with pytest.raises(DatasetError) as err:
        build_dataloader(cfg, "train", dataset)
    assert str(err.value) == ("train_dataloader: 128 images (128 per process), fewer than one batch of 200 per "
                              "process, and an incomplete batch is dropped, so not one step would train; lower the "
                              "batch to at most 128: --batch 128 (dfine train --data) or "
                              "-u train_dataloader.total_batch_size=128")
    assert len(build_dataloader(cfg, "val", dataset)) == 1  # val keeps its incomplete batch


def test_more_workers_than_cores_is_warned_once_per_process_and_count(monkeypatch):
    """torch warns on every iterator; drawing a run's plots (a ``catch_warnings``) reset Python's
    once-per-place memory, so a 3-epoch run on 2 cores printed it 4 times."""
    import os
    import warnings

    from dfine.data.loader import DetectionDataLoader
    monkeypatch.setattr(DetectionDataLoader, "_worker_counts_said", set(), raising=False)
    many = len(os.sched_getaffinity(0)) + 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # what the reset memory amounts to
        for _ in range(3):
            DetectionDataLoader(list(range(4)), num_workers=many).check_worker_number_rationality()
        DetectionDataLoader(list(range(4)), num_workers=many + 1).check_worker_number_rationality()
    said = [str(w.message) for w in caught if "worker processes" in str(w.message)]
    assert len(said) == 2 and f"create {many} worker" in said[0] and f"create {many + 1} worker" in said[1]
