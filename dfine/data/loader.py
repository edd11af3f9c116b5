"""Datasets and data loaders from a :class:`dfine.config.Config`.

Reproducible: item ``i`` of epoch ``e`` is augmented with seed ``(seed, e, i)``, a batch's
multi-scale size is drawn from ``(seed, e, batch number)`` and the shuffle order from
``(seed, e)`` (``DistributedSampler``, also with one process), so a run gives the same batches
whatever the number of workers, and a resumed run continues as the uninterrupted one would.
Call :meth:`DetectionDataLoader.set_epoch` before each epoch.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Literal, Optional, Set, Tuple

import torch
from torch.utils.data import DataLoader, DistributedSampler

from dfine.config import Config, ConfigError, DataloaderConfig, source_of
from dfine.data.check import preflight
from dfine.data.coco import CocoDetection, DatasetError, LabelMap, LabelMode
from dfine.data.collate import BatchCollate
from dfine.data.rng import generator, mix_seed
from dfine.data.transforms import build_transforms
from dfine.text import counted

__all__ = ["DetectionDataLoader", "build_dataset", "build_dataloader", "check_same_labels", "label_mode"]

Split = Literal["train", "val"]


class DetectionDataLoader(DataLoader):
    """A ``DataLoader`` whose :meth:`set_epoch` reaches the sampler, the dataset (augmentation
    policy and seeds) and the collate function (multi-scale). Workers are not persistent, so
    each epoch's workers see the epoch that was set."""

    def set_epoch(self, epoch: int) -> None:
        """Prepare epoch ``epoch`` (0-based); worker seeds then depend on ``(seed, epoch)`` too."""
        self.generator.manual_seed(mix_seed(self.sampler.seed, epoch))
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        self.collate_fn.set_epoch(epoch)

    #: worker counts torch's "more workers than cores" warning was given for, in this process
    _worker_counts_said: Set[int] = set()

    def __iter__(self):
        self.collate_fn.start()  # workers copy the collate function as it is now
        return super().__iter__()

    def check_worker_number_rationality(self) -> None:
        """torch's warning when ``num_workers`` is above the cores this process may use, once per
        process and worker count: torch gives it each epoch, as drawing the plots resets Python's
        once-per-place memory of warnings (4 copies in a 3-epoch run on 2 cores)."""
        if self.num_workers in self._worker_counts_said:
            return
        DetectionDataLoader._worker_counts_said.add(self.num_workers)
        super().check_worker_number_rationality()


def label_mode(cfg: Config) -> LabelMode:
    """The label space the config asks for (see :mod:`dfine.data.coco`)."""
    if cfg.remap_mscoco_category:
        return "mscoco"
    return "category_id" if cfg.category_ids_as_labels else "contiguous"


def _loader_cfg(cfg: Config, split: Split) -> Tuple[str, DataloaderConfig]:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    name = f"{split}_dataloader"
    return name, getattr(cfg, name)


def build_dataset(cfg: Config, split: Split, *, seed: Optional[int] = None, check: bool = True) -> CocoDetection:
    """The ``train`` or ``val`` dataset of ``cfg`` with its transforms (seed: ``cfg.seed`` or 0).
    ``check``: run :func:`dfine.data.check.preflight` first (image headers read, errors stop with a
    summary, on-the-fly repairs logged once)."""
    name, loader = _loader_cfg(cfg, split)
    ds = loader.dataset
    if ds.type != "CocoDetection":
        raise ConfigError(f"{source_of(cfg, name + '.dataset.type')}: {name}.dataset.type {ds.type} is not "
                          f"supported; convert the dataset to COCO format and use CocoDetection "
                          f"(dfine data convert --from voc {ds.root or 'VOC_FOLDER'})")
    for key in ("img_folder", "ann_file"):
        if not getattr(ds, key):
            raise ConfigError(f"{cfg.config_file or 'config'}: {name}.dataset.{key} is not set")
    if not os.path.exists(ds.ann_file):  # 'annotation file X not found; set ann_file' named neither (a walk)
        relative = "" if os.path.isabs(ds.ann_file) else f", read from the working folder {os.getcwd()}"
        where = source_of(cfg, name + ".dataset.ann_file")
        what = "" if where.startswith("command line") else f" {name}.dataset.ann_file {ds.ann_file}"
        raise DatasetError(f"{where}:{what} not found{relative}; point it at your COCO-format JSON file")
    if check:
        preflight(ds.ann_file, ds.img_folder, split=split)
    transforms = build_transforms(ds.transforms, loader.collate_fn.stop_epoch)
    return CocoDetection(ds.img_folder, ds.ann_file, transforms, label_mode=label_mode(cfg),
                         seed=_seed(cfg, seed))


def build_dataloader(cfg: Config, split: Split, dataset: Optional[Any] = None, *, seed: Optional[int] = None,
                     world_size: Optional[int] = None, rank: Optional[int] = None) -> DetectionDataLoader:
    """The ``train`` or ``val`` loader of ``cfg`` (``dataset``: built by :func:`build_dataset`
    when not given). ``world_size`` / ``rank`` default to the initialised process group, else
    1 / 0; the batch per process is ``total_batch_size / world_size``."""
    name, loader = _loader_cfg(cfg, split)
    world_size, rank = _world(world_size, rank)
    seed = _seed(cfg, seed)
    dataset = build_dataset(cfg, split, seed=seed) if dataset is None else dataset
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=loader.shuffle,
                                 seed=seed, drop_last=False)
    collate = BatchCollate(loader.collate_fn.base_size, loader.collate_fn.base_size_repeat,
                           loader.collate_fn.stop_epoch, seed=seed, min_size=loader.collate_fn.min_size)
    batch = loader.batch_size_per_rank(world_size)
    if len(dataset) == 0:
        raise DatasetError(f"{name}: {loader.dataset.ann_file} holds no images; nothing to "
                           f"{'train' if split == 'train' else 'evaluate'} on")
    if loader.drop_last and len(sampler) < batch:
        fits = max(1, len(dataset) // world_size) * world_size
        raise DatasetError(f"{name}: {counted(len(dataset), 'image')} ({len(sampler)} per process), fewer than one "
                           f"batch of {batch} per process, and an incomplete batch is dropped, so not one step would "
                           f"train; lower the batch to at most {fits}: --batch {fits} (dfine train --data) or "
                           f"-u {name}.total_batch_size={fits}")
    return DetectionDataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=loader.num_workers,
                               collate_fn=collate, drop_last=loader.drop_last, pin_memory=loader.pin_memory,
                               generator=generator(seed), worker_init_fn=ignore_stop_signals)


def ignore_stop_signals(worker_id: int) -> None:
    """In a data-loading worker: ignore SIGINT and SIGTERM, which the main process handles (it stops
    after the step and shuts its workers down). ``timeout``, job schedulers and service managers send
    SIGTERM to every process of the job; torch's worker handler then ended the worker, and torch raised
    "DataLoader worker is killed by signal" in the middle of the main process's step: a traceback
    instead of the resume line (a walk). A worker still ends with its main process (torch's watchdog)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check_same_labels(train: LabelMap, val: LabelMap) -> None:
    """``DatasetError`` when the training and validation files give different labels."""
    if train.category_ids != val.category_ids:
        raise DatasetError(f"{val.ann_file} ({val.describe()}) and {train.ann_file} ({train.describe()}) have "
                           f"different categories; both splits need the same 'categories' list")


def _seed(cfg: Config, seed: Optional[int]) -> int:
    if seed is not None:
        return seed
    return cfg.seed if cfg.seed is not None else 0


def _world(world_size: Optional[int], rank: Optional[int]) -> Tuple[int, int]:
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    return world_size, rank
