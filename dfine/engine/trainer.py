"""The training loop: one loop for AMP and full precision, EMA, warm-up and schedules, the
stop-epoch switch, COCO evaluation of the EMA model, atomic checkpoints, logs and plots.

``Trainer(cfg).fit()`` trains as the published ``train.py`` does and returns the final metrics;
``Trainer(cfg, test_only=True).val()`` evaluates. Every setup problem (missing data, a foreign
checkpoint, an unreachable pretrained backbone, an output folder that cannot be written, an input
size too small for the queries) is a one-line :class:`~dfine.errors.DfineError` raised by the
constructor, before any training; the output folder and the input size are checked before
anything is built.

Signals: the first SIGINT (Ctrl-C) or SIGTERM during :meth:`Trainer.fit` stops the run after the
step (or evaluation batch) in progress, leaves ``last.pth`` of the last finished epoch as it is
and prints how to resume and where the best weights so far are; a second one exits at once (checkpoints are written atomically, so
none is ever half-written; stale temporaries are removed at the next start). A signal during an
epoch's evaluation keeps that epoch's training: ``last.pth`` is written with the epoch finished and
its evaluation pending (``pending_eval``), and the resumed run evaluates it first (the same weights,
so the same AP, best files, EMA restart and log line as without the signal), then trains on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import re
import shlex
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from dfine import checkpoint as ckpt_io
from dfine.config import (Config, criterion_config, from_command_line, model_config, queries_override,
                          resolve_num_classes)
from dfine.data import build_dataloader, build_dataset, check_same_labels
from dfine.data.loader import DetectionDataLoader
from dfine.data.cocojson import DatasetError, none_in_common, other_classes
from dfine.data.tile import tiles_info, tiny_boxes_note
from dfine.device import SlowdownWatch, busy_cpu_note
from dfine.errors import DfineError
from dfine.loss import DFINECriterion
from dfine.models.config import encoder_tokens
from dfine.models.dfine import build_from_config
from dfine.models.postprocess import PostProcessor
from dfine.outputs import prepare_output_dir, removed_if_left_empty
from dfine.slicing import trained_tile, unsliced_note
from dfine.text import ap_text, counted, first_process

from . import dist
from .ema import ModelEMA
from .evaluator import CocoMetrics, conf_line, evaluate, write_evaluation
from .lock import earlier_run_files, output_lock
from .precision import choose_precision
from .summary import (DataCommand, classes_line, dataset_line, duration, images_folder, next_commands,
                      parameters_line, python_calls, tiled_commands, unmeasured_line, user_overrides)
from .optim import build_flat_cosine, build_lr_scheduler, build_optimizer, build_warmup
from .plots import evaluation_pictures, plot_evaluation, pyplot, save_figure

__all__ = ["Trainer", "BestTracker", "load_backbone", "check_input_size"]


def check_input_size(cfg: Config, train: bool = True) -> Tuple[Config, str]:
    """A one-line :class:`DfineError` when the evaluation size (or, training, the base size of
    the multi-scale range) gives fewer encoder tokens than ``num_queries``. Returns ``cfg`` with
    the multi-scale sizes that would give too few left out (``collate_fn.min_size``), and a
    one-line note saying so (``""`` when nothing was left out)."""
    from dfine.data.collate import multiscale_shape, multiscale_sizes

    mcfg = model_config(dataclasses.replace(cfg, num_classes=cfg.num_classes or 1))
    queries = mcfg.decoder.num_queries
    fix = f"use a larger --imgsz or fewer queries ({queries_override()})"
    if cfg.eval_spatial_size:
        hw = tuple(cfg.eval_spatial_size)
        tokens = encoder_tokens(mcfg, hw)
        if tokens < queries:
            raise DfineError(f"the input size {hw[0]}x{hw[1]} gives {tokens} encoder tokens, fewer than "
                             f"DFINETransformer.num_queries={queries}: {fix}")
    collate = cfg.train_dataloader.collate_fn
    if not train or collate.base_size_repeat is None or (collate.stop_epoch is not None and collate.stop_epoch <= 0):
        return cfg, ""
    sizes = sorted(set(multiscale_sizes(collate.base_size, collate.base_size_repeat, collate.min_size)))
    hw = tuple(cfg.eval_spatial_size or (collate.base_size, collate.base_size))

    def shape(s: int) -> Tuple[int, int]:  # a multi-scale batch's (h, w): non-square inputs keep their aspect
        return multiscale_shape(s, *hw)

    enough = [s for s in sizes if encoder_tokens(mcfg, shape(s)) >= queries]
    if not enough or enough[0] > collate.base_size:
        h, w = shape(collate.base_size)
        raise DfineError(f"the multi-scale base size {h}x{w} gives {encoder_tokens(mcfg, (h, w))} encoder tokens, "
                         f"fewer than DFINETransformer.num_queries={queries}: {fix}")
    if enough[0] == sizes[0]:
        return cfg, ""
    loader = dataclasses.replace(cfg.train_dataloader, collate_fn=dataclasses.replace(collate, min_size=enough[0]))
    note = (f"multi-scale training sizes {enough[0]}..{sizes[-1]} px (not from {sizes[0]}): smaller ones give fewer "
            f"encoder tokens ({encoder_tokens(mcfg, shape(sizes[0]))} at {sizes[0]}) than the {queries} queries")
    return dataclasses.replace(cfg, train_dataloader=loader), note


class BestTracker:
    """The published choice of best checkpoints: ``best_stg1.pth`` before the stop epoch,
    ``best_stg2.pth`` after it (only when above every earlier AP); after the stop epoch an
    epoch that does not improve restarts the EMA from ``best_stg1.pth`` with a lower decay."""

    def __init__(self) -> None:
        self.top1 = 0.0
        self.stage_best: Optional[float] = None

    def update(self, ap: float, epoch: int, stop_epoch: Optional[int]) -> str:
        """``"stg1"``/``"stg2"``: save that best file; ``"restart"``: restart EMA; ``""``: nothing."""
        stage2 = stop_epoch is not None and epoch >= stop_epoch
        improved = self.stage_best is None or ap > self.stage_best
        self.stage_best = ap if self.stage_best is None else max(self.stage_best, ap)
        if improved:
            if ap > self.top1:
                self.top1 = ap
                return "stg2" if stage2 else "stg1"
            return "" if stage2 else "stg1"
        if stage2:
            self.stage_best = None
            return "restart"
        return ""

    def state_dict(self) -> Dict[str, Any]:
        return {"top1": self.top1, "stage_best": self.stage_best}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.top1, self.stage_best = state.get("top1", 0.0), state.get("stage_best")


def load_backbone(model: nn.Module, cfg: Config) -> None:
    """Load the ImageNet-pretrained HGNetv2 of the recipe into ``model.backbone``: from
    ``HGNetv2.local_model_dir`` when the file is there, else from the download cache."""
    from dfine import hub, zoo

    entry = zoo.get(f"PPHGNetV2_{cfg.HGNetv2.name}_stage1")
    local = Path(cfg.HGNetv2.local_model_dir) / entry.file_name
    if local.is_file():
        path = local
    else:
        try:
            path = hub.fetch_weights(entry.name, progress=dist.is_main())
        except DfineError as e:
            raise DfineError(f"pretrained backbone: {e} (or {local}); to train from scratch instead, add "
                             f"-u HGNetv2.pretrained=False") from None
    state = dict(ckpt_io.model_state(ckpt_io.read_checkpoint(path), str(path)))
    own = model.backbone.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    ckpt_io.load_state(model.backbone, {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")},
                                        **state}, str(path))


def _rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _many_workers(cfg: Config) -> List[Tuple[str, int]]:
    """``(split, num_workers)`` of the loaders whose recipe workers (not the command line's) outnumber the cores."""
    many = [(split, getattr(cfg, f"{split}_dataloader").num_workers) for split in ("train", "val")]
    return [(split, n) for split, n in many
            if n > _cores() and not from_command_line(cfg, f"{split}_dataloader.num_workers")]


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    np_state = list(state["numpy"])
    np_state[1] = np.asarray(np_state[1], dtype=np.uint32)
    np.random.set_state(tuple(np_state))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(obj: Any) -> Any:
    """A config as nested dicts/lists of plain values (loadable with ``weights_only=True``)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("yaml", True)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


#: fewer val images than this get a note at the start of a run: AP on them is noise
FEW_VAL_IMAGES = 20


#: A batch above this, on the CPU, is said to be sized for GPUs (``dfine train --data`` uses 8 there)
CPU_BIG_BATCH = 16


class Trainer:
    """Everything a run needs, built and checked up front.

    ``max_nonfinite``: non-finite losses in a row after which the run stops (each one skips
    its step). ``max_steps``: stop each epoch after this many steps (quick runs and tests).
    ``patience``: stop when the validation AP has not improved for this many evaluations in a
    row (the best weights stay in ``best_stg*.pth``). ``progress``: tqdm bars. ``warmup_share``
    (``dfine train --data``): a recipe lr warmup longer than this share of the run's steps (as
    built: the train set's images, the batch, ``max_steps``) is shortened to it, in one line.
    ``command`` (``dfine train --data``): the run's own options, which the resume and evaluation
    hints it prints are written in (else the recipe and its ``-u`` keys).

    From Python: ``metrics = Trainer(load_config(path, overrides)).fit()``.
    """

    _evaluating = False  # inside evaluate(): a signal's first line says it stops after the batch being evaluated
    _unwinding = False  # the loop stopped for a signal: what is left is shutting the loaders down and saying so
    _epoch_whole = False  # the last train_one_epoch ran every one of its steps

    #: warn, at the start of a new run, of an earlier run's checkpoints in the output folder (the demo,
    #: which always starts over, says nothing)
    warn_earlier_run = True
    #: a second SIGINT / SIGTERM ends the process at once (the command line); from Python it raises
    #: ``KeyboardInterrupt`` (``SystemExit`` for SIGTERM) instead: a notebook's kernel died of it (a walk)
    exit_on_second_signal = False

    def __init__(self, cfg: Config, *, test_only: bool = False, max_nonfinite: int = 10,
                 max_steps: Optional[int] = None, progress: bool = True, patience: Optional[int] = None,
                 warmup_share: Optional[float] = None, command: Optional[DataCommand] = None) -> None:
        if patience is not None and patience < 1:
            raise DfineError(f"patience must be at least 1 evaluation, got {patience}")
        self.output_dir = Path(cfg.output_dir)
        created: List[Path] = []
        if first_process():
            created = prepare_output_dir(self.output_dir, "--output-dir")
            ckpt_io.remove_stale_temporaries(self.output_dir)
        with removed_if_left_empty(created):
            self._build(cfg, test_only, max_nonfinite, max_steps, progress, patience, warmup_share, command)

    def _build(self, cfg: Config, test_only: bool, max_nonfinite: int, max_steps: Optional[int], progress: bool,
               patience: Optional[int], warmup_share: Optional[float], command: Optional[DataCommand]) -> None:
        """The rest of ``__init__``: data, model, weights, loaders, optimiser and schedules."""
        cfg, self.size_note = check_input_size(cfg, train=not test_only)
        self.device = dist.setup(cfg.device)
        seed = cfg.seed if cfg.seed is not None else 0
        torch.manual_seed(seed + dist.rank())
        random.seed(seed + dist.rank())
        np.random.seed((seed + dist.rank()) % 2**32)
        # what the weights start from, for the start-up summary (a walk could not tell whether -t was read)
        self.start_weights = (f"{cfg.resume} (-r: the run continues)" if cfg.resume else
                              f"{cfg.tuning} (-t: fine-tuned from its weights, from epoch 1)" if cfg.tuning else
                              f"an ImageNet-pretrained HGNetv2-{cfg.HGNetv2.name} backbone, the rest random"
                              if cfg.HGNetv2.pretrained else "random (HGNetv2.pretrained=False: trained from nothing)")
        if cfg.resume or cfg.tuning:
            cfg = dataclasses.replace(cfg, HGNetv2=dataclasses.replace(cfg.HGNetv2, pretrained=False))
        self.test_only, self.max_nonfinite, self.max_steps, self.progress = test_only, max_nonfinite, max_steps, progress
        self.patience, self.command = patience, command
        resume = ckpt_io.read_checkpoint(cfg.resume) if cfg.resume else None
        tuning = ckpt_io.read_checkpoint(cfg.tuning) if cfg.tuning else None
        cfg, self.stage_note = (_kept_stage2(cfg, resume, cfg.resume) if resume is not None and not test_only
                                else (cfg, ""))

        # data first: a wrong path fails before the model is built
        self.val_set, self.train_set = _datasets(cfg, test_only, seed)
        labels = self.val_set.label_map if self.train_set is None else self.train_set.label_map
        if self.train_set is not None:
            check_same_labels(self.train_set.label_map, self.val_set.label_map)
        source = self.val_set if self.train_set is None else self.train_set
        declared = getattr(source, "declared_categories", {})
        self.cfg = cfg = resolve_num_classes(cfg, labels, {c: n for c, n in declared.items()
                                                           if c not in labels.category_ids})
        self.label_map = labels
        self.tiles = _trained_tiles(self.train_set)

        mcfg = model_config(cfg)
        model = build_from_config(mcfg)
        if cfg.HGNetv2.pretrained:
            load_backbone(model, cfg)
        # a -t checkpoint loaded whole (no class head starts fresh): its AP on this val set is the mark the run
        # has to beat, measured before the first epoch (a walk ended 3 points below its starting weights, unsaid)
        self._tuned_whole = False
        if tuning is not None:
            state = ckpt_io.model_state(tuning, cfg.tuning)
            # a --data run carries the class heads of the classes the -t model has by name (a COCO model's
            # person and car into a set of person and car start knowing them); a recipe's run re-initialises
            # them, as the published code does
            names = labels.names if command is not None else None
            self._tuned_whole = not ckpt_io.load_tuning(model, state, cfg.tuning,
                                                        cfg.obj365_ids or ckpt_io.OBJ365_TO_COCO, names,
                                                        ckpt_io.class_names_of(tuning, state) if names else None)
        self.criterion: nn.Module = DFINECriterion.from_config(criterion_config(cfg), num_classes=cfg.num_classes,
                                                               reg_max=mcfg.decoder.reg_max).to(self.device)
        self.postprocessor = PostProcessor(cfg.num_classes, cfg.DFINEPostProcessor.num_top_queries,
                                           use_focal_loss=cfg.use_focal_loss,
                                           category_ids=labels.category_ids).to(self.device)
        model.to(self.device)
        if cfg.sync_bn and dist.world_size() > 1:
            model = dist.convert_sync_bn(model, self.device)
        self.model = model
        self.ema = ModelEMA(model, cfg.ema.decay, cfg.ema.warmups, cfg.ema.start) if cfg.use_ema else None
        if dist.world_size() > 1:
            # the CCFF blocks' 1x1 cv4 convs (298 input channels in N) get channels-last gradients on the CPU,
            # which DDP copies into its bucket: one small copy a step, said by torch in four alarming lines
            # per process (a walk read them under torchrun); the copy stays, the lines go
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            self.model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)
        self._many_workers = _many_workers(cfg)
        DetectionDataLoader._worker_counts_said.update(n for _, n in self._many_workers)  # said by _workers_note,
        self.val_loader = build_dataloader(cfg, "val", self.val_set, seed=seed)  # with the key; torch's names none
        self.train_loader = None if test_only else build_dataloader(cfg, "train", self.train_set, seed=seed)

        self.optimizer = build_optimizer(cfg.optimizer, dist.unwrap(self.model))
        self.lr_groups = lr_series(cfg.optimizer, len(self.optimizer.param_groups))
        self.main_lr_group = main_lr_group(self.lr_groups)  # the lr the progress bar shows
        self.lr_scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.cfg, self.warmup_note = self._short_run_warmup(cfg, warmup_share)
        cfg = self.cfg
        self.lr_warmup_scheduler = build_warmup(cfg, self.optimizer)
        steps = len(self.train_loader) if self.train_loader is not None else 1
        self.flat_cosine = build_flat_cosine(cfg, self.optimizer, min(steps, max_steps or steps))
        self.precision = choose_precision(cfg, self.device)
        self.use_amp = self.precision.amp
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp and cfg.scaler.enabled
                                           and self.device.type == "cuda")
        self.last_epoch, self.step, self.best, self.nonfinite = -1, 0, BestTracker(), 0
        self.best_ap, self.best_epoch, self.evals_since_best = -1.0, -1, 0  # for the summary and --patience
        # an earlier run's checkpoints in the output folder: the warning fit() prints, and the best_stg*.pth
        # among them, never this run's best until it writes its own
        self._earlier_said, self._earlier_best = (("", set()) if resume is not None or test_only
                                                  else _earlier_run(Path(cfg.output_dir)))
        # "stg1" / "stg2": the score threshold with the best F1 on val of the weights in best_<stage>.pth
        self.conf_picks: Dict[str, Optional[Dict[str, float]]] = {}
        # the same, evaluated by this process, with the epoch evaluated: for the pictures
        self._stage_metrics: Dict[str, Tuple[CocoMetrics, int]] = {}
        self.stop_signal: Optional[str] = None  # "SIGINT" / "SIGTERM" once one arrived
        self._last_entry: Dict[str, Any] = {}
        self._epoch_start: Optional[float] = None  # time.time() when the epoch being run began
        self._epoch_seconds: List[float] = []  # each epoch this process ran, training and evaluation
        # {"epoch": E, "train": its training stats}: epoch E trained, a signal before its evaluation ended
        self.pending_eval: Optional[Dict[str, Any]] = None
        self._pictures: List[Path] = []  # what the run's end drew (named in its last lines)
        self._restarted_before: Optional[int] = None  # the epoch a stage-2 EMA restart (no improvement) preceded
        # a stage-2 epoch did not improve: the next epoch starts from best_stg1.pth (kept in last.pth, so that a
        # resumed or extended run makes it too: it was made after last.pth was written, and not after a last epoch)
        self.restart_pending = False
        self._plot_seconds = 0.5  # the time drawing loss.png, lr.png and map.png takes (measured once drawn)
        self.data_note = ""  # a resumed run whose train set changed since its checkpoint
        self.best_file: Optional[str] = None  # best_stg1.pth / best_stg2.pth: the one saved with the best AP
        self._seconds_before = 0.0  # what the sessions before a resume took (fit's, up to the checkpoint's save)
        self._fit_started: Optional[float] = None  # time.time() when this session's fit() began
        self.tuning_ap: Optional[float] = None  # the -t weights' AP on the val set before training (0..1)
        self._dense_said = False  # the evaluation's note on val images with more than 100 boxes, said once
        if resume is not None:
            self.load_resume(resume, cfg.resume, full=not test_only)
            theirs = dict(zip(resume.get("category_ids") or (), resume.get("class_names") or ()))
            ours = dict(zip(labels.category_ids, labels.names))
            trained_on = f" (--data {resume['data']})" if isinstance(resume.get("data"), str) else ""
            then = ("evaluate it on the data it was trained for" if test_only else  # resumed on other data (a walk)
                    f"continue it on the data it was trained on{trained_on}, or start a run from its weights with "
                    f"-t {cfg.resume}")
            unrelated = none_in_common(theirs, ours, labels.ann_file or "the val set", then)
            if unrelated:
                raise DfineError(f"{cfg.resume}: {unrelated}")
            said = other_classes(theirs, ours, labels.ann_file or "the val set")
            if said and dist.is_main():
                print(said, file=sys.stderr)
            before = (resume.get("progress") or {}).get("train_images")
            if not test_only and before is not None and self.train_set is not None and before != len(self.train_set):
                self.data_note = (f"note: the train set has {counted(len(self.train_set), 'image')}; "
                                  f"{Path(cfg.resume).name} was trained on {before} (epochs 1..{self.last_epoch + 1}): "
                                  f"the coming epochs train on these")
            for note in (_other_size_note(cfg, resume, cfg.resume), _unsliced_note(resume, cfg.resume, self.val_set)
                         ) if test_only else ():
                if note and dist.is_main():
                    print(note, file=sys.stderr)
        self.writer = None
        self.history: List[Dict[str, Any]] = []
        self.step_losses: List[float] = []  # total loss of each step of this process's run
        self.slowdown = SlowdownWatch("the training steps", python=self._python)  # other jobs taking the CPU: once

    # ---------------------------------------------------------------- state

    def state_dict(self) -> Dict[str, Any]:
        """Published checkpoint layout plus config, classes, counters and RNG states."""
        state = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "last_epoch": self.last_epoch,
            "model": dist.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "config": _plain(self.cfg), "label_map": self.label_map.to_dict(),
            **ckpt_io.deploy_metadata(model_config(self.cfg), self.label_map.names, self.label_map.category_ids),
            "step": self.step, "best": self.best.state_dict(), "rng": dist.all_gather_object(_rng_state()),
            "progress": {"best_ap": self.best_ap, "best_epoch": self.best_epoch,
                         "evals_since_best": self.evals_since_best, "conf": self.conf_picks, "best_file": self.best_file,
                         "tuning_ap": self.tuning_ap, "restart_pending": self.restart_pending,
                         "train_images": len(self.train_set) if self.train_set is not None else None,
                         "seconds": self._seconds_before + (time.time() - self._fit_started if self._fit_started else 0.0)},
            "pending_eval": self.pending_eval,
        }
        if getattr(self, "command", None) is not None:  # the --data folder (absolute): --auto-resume goes on with
            state["data"] = self.command.data  # a run of the same data only (a walk's continued another's)
            state["recipe"] = Path(self.cfg.config_file).name  # obj2custom: continued with it (recipes.data_run)
        if self.tiles is not None:
            state["tiles"] = self.tiles
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
            state["ema_decay"] = self.ema.decay
        for key in ("lr_scheduler", "lr_warmup_scheduler", "flat_cosine"):
            if getattr(self, key) is not None:
                state[key] = getattr(self, key).state_dict()
        return state

    def save(self, name: str) -> None:
        """Write ``output_dir/name`` atomically (main process only; all processes must call).
        A failed write (disk full) leaves the previous file as it was and stops the run with one
        line."""
        state = self.state_dict()
        state["recommended_conf"] = self._conf_of(name)
        self._earlier_best.discard(name)
        if dist.is_main():
            try:
                ckpt_io.save_atomic(state, self.output_dir / name)
            except DfineError as e:  # disk full: the previous file is intact
                raise DfineError(f"{e}; free space and resume with {self._resume_command()}") from None

    def _conf_of(self, name: str) -> Optional[float]:
        """The ``--conf`` with the best F1 measured on the weights ``name`` is written with (the
        latest evaluation's for last.pth and the checkpoints of every N epochs); None while those
        weights are not evaluated (a Ctrl-C during their evaluation) or no threshold was recommended."""
        if self.pending_eval is not None:
            return None
        pick = self.conf_picks.get(ckpt_io.RUN_FILE_STAGES.get(name, "last"))
        return float(pick["conf"]) if pick else None

    def load_resume(self, state: Dict[str, Any], name: str, full: bool = True, counters: bool = True) -> None:
        """Restore from a checkpoint: the weights (strict; EMA from the model when absent) and,
        with ``full``, the optimiser, scaler, schedulers and (``counters``) epoch, step, best
        AP, EMA decay and RNG states."""
        ckpt_io.load_state(dist.unwrap(self.model), state.get("model") or ckpt_io.model_state(state, name), name)
        if self.ema is not None:
            ema = state.get("ema") or {"module": dist.unwrap(self.model).state_dict(), "updates": 0}
            ckpt_io.load_state(self.ema.module, ema["module"], name)
            self.ema.updates = int(ema.get("updates", 0))
        if not full:
            return
        for key in ("optimizer", "lr_scheduler", "lr_warmup_scheduler", "flat_cosine", "scaler"):
            if getattr(self, key) is not None and state.get(key):
                getattr(self, key).load_state_dict(state[key])
        if not counters:
            return
        self.last_epoch = int(state.get("last_epoch", -1))
        self.step = int(state.get("step", 0))
        self.best.load_state_dict(state.get("best", {}))
        progress = state.get("progress", {})
        self.best_ap = float(progress.get("best_ap", -1.0))
        self.best_epoch = int(progress.get("best_epoch", -1))
        self.evals_since_best = int(progress.get("evals_since_best", 0))
        self.conf_picks = dict(progress.get("conf") or {})
        self._seconds_before = float(progress.get("seconds", 0.0))
        self.best_file = progress.get("best_file")
        self.tuning_ap = progress.get("tuning_ap")
        self.restart_pending = bool(progress.get("restart_pending", False))
        self.pending_eval = state.get("pending_eval")
        if self.ema is not None and "ema_decay" in state:
            self.ema.decay = float(state["ema_decay"])
        rng = state.get("rng")
        if rng:
            _set_rng_state(rng[min(dist.rank(), len(rng) - 1)])

    # ---------------------------------------------------------------- loop

    def _short_run_warmup(self, cfg: Config, share: Optional[float]) -> Tuple[Config, str]:
        """``cfg`` with the lr warmup shortened to ``share`` of the run's steps when the recipe's is
        longer (:func:`dfine.recipes.short_run_warmup`), and the line that says so; ``share`` ``None``
        (a ``-c`` recipe run) keeps the recipe's warmup and says when it is longer than a tenth of the run."""
        warm = cfg.lr_warmup_scheduler
        if warm is None or self.train_loader is None or cfg.epochs is None:
            return cfg, ""
        from dfine.recipes import WARMUP_SHARE, short_run_warmup

        batches = len(self.train_loader)
        short = short_run_warmup(warm.warmup_duration, cfg.epochs, min(batches, self.max_steps or batches),
                                 images=len(self.train_set), batch=cfg.train_dataloader.total_batch_size,
                                 capped=self.max_steps is not None and self.max_steps < batches,
                                 share=WARMUP_SHARE if share is None else share, python=self._python)
        if short is None:
            return cfg, ""
        if share is None:  # a recipe run: the recipe's warmup stays, said when it takes much of the run
            return cfg, short.kept_note()
        return dataclasses.replace(cfg, lr_warmup_scheduler=dataclasses.replace(warm, warmup_duration=short.warmup)), \
            short.note()

    @property
    def stop_epoch(self) -> Optional[int]:
        return self.cfg.stop_epoch

    def fit(self) -> Dict[str, Any]:
        """Train from ``last_epoch + 1`` to ``epochs`` (or until ``patience`` runs out, or a
        SIGINT / SIGTERM). Returns the final metrics: the last epoch's log entry (``test_AP``
        ... in 0..1, ``train_loss`` ...) plus ``best_AP``, ``best_epoch`` (0-based, -1: none),
        ``best_weights`` (path or ``None``), ``seconds``, ``stopped`` (``""``, ``"SIGINT"``,
        ``"SIGTERM"`` or ``"patience"``) and ``output_dir``."""
        cfg = self.cfg
        if cfg.epochs is None:
            raise DfineError(f"{cfg.config_file or 'config'}: epochs is not set; add -u epochs=N")
        with output_lock(self.output_dir) if dist.is_main() else contextlib.nullcontext():
            return self._fit()

    def _fit(self) -> Dict[str, Any]:
        """:meth:`fit` with the output folder locked."""
        cfg = self.cfg
        if self._earlier_said and self.warn_earlier_run and dist.is_main():
            print(self._earlier_said, file=sys.stderr)
        self._start_logs()
        self._print("\n".join(self.startup_summary()))
        entry: Dict[str, Any] = {}
        stopped, start = "", time.time()
        self._fit_started = start
        pending = self.pending_eval
        if self.last_epoch + 1 >= cfg.epochs and pending is None:
            done = self.last_epoch + 1  # 5 more than it finished (a walk's epoch 8 of 4 was told '--epochs 9')
            more = (f"-u epochs={done + 5} trains 5 more" if self.command is None else
                    f"epochs={done + 5} trains 5 more" if self.command.python else f"--epochs {done + 5} trains 5 more")
            of = f"of {cfg.epochs}" if done == cfg.epochs else f"(this run asks for {cfg.epochs})"
            self._print(f"nothing to train: the checkpoint has finished epoch {done} {of} "
                        f"({more}" + (", in stage 2 as it ended)" if self.stop_epoch is not None
                                      and self.last_epoch >= self.stop_epoch else ")"))
        with self._signals():
            if self._tuned_whole and self.last_epoch < 0 and self.tuning_ap is None and pending is None:
                stopped = self._score_tuning()
            if pending is not None:
                # a signal in the epoch's last step stops it before its evaluation begins (a re-walk read 'its
                # evaluation stopped' of one that never started)
                self._print(f"epoch {pending['epoch'] + 1} was trained and a signal stopped the run before its "
                            f"evaluation ended: evaluating it first")
                stopped = self._finish_epoch(pending["epoch"], dict(pending["train"])) or ""
                entry = self._last_entry if not stopped else entry
            for epoch in range(self.last_epoch + 1, cfg.epochs):
                if stopped:
                    break
                self._epoch_start = time.time()
                stopped = self._run_epoch(epoch) or ""
                if not stopped:
                    entry = self._last_entry
        self._finish_logs(stopped)
        result = {**entry, **self._final(time.time() - start, stopped)}
        return result

    def _score_tuning(self) -> str:
        """Evaluate the ``-t`` weights before the first epoch (:attr:`tuning_ap`), RNG states kept: the
        training is the one it would be without; the reason to stop (a signal), or ``""``."""
        self._print(f"evaluating the -t weights before training (the AP this run has to beat): {self.cfg.tuning}")
        rng = _rng_state()
        metrics = self.evaluate()
        _set_rng_state(rng)
        if metrics is None:
            self._print(f"stopped by {self.stop_signal} while evaluating the -t weights: nothing was trained; run "
                        f"the same command to start again")
            return self.stop_signal or "SIGINT"
        self.tuning_ap = metrics.ap
        self._print(f"the -t weights before training: {metrics.summary()}")
        return ""

    def _run_epoch(self, epoch: int) -> Optional[str]:
        """Train, evaluate, save and log epoch ``epoch``; the reason to stop, if any."""
        cfg = self.cfg
        self.train_loader.set_epoch(epoch)
        if epoch == self.stop_epoch:
            self._restart_ema(cfg.train_dataloader.collate_fn.ema_restart_decay, epoch)
        elif self.restart_pending and self.ema is not None:
            why = (f"epoch {epoch} did not improve on stage 2's best AP: the published stage-2 rule goes back to "
                   f"best_stg1.pth with a lower decay; the best weights stay where they are")
            if self._restart_ema(self.ema.decay - 0.0001, epoch, why):
                self._restarted_before = epoch  # marked in this epoch's log entry, and so in the plots
        self.restart_pending = False
        train_stats = self.train_one_epoch(epoch)
        stop = self._should_stop()
        if stop and not self._epoch_whole:
            return self._interrupted(epoch)
        if self.lr_scheduler is not None and self.flat_cosine is None and (
                self.lr_warmup_scheduler is None or self.lr_warmup_scheduler.finished()):
            self.lr_scheduler.step()
        if stop:  # the signal came in the epoch's last step: its training is whole, kept as one stopped evaluating
            self.last_epoch, self.pending_eval = epoch, {"epoch": epoch, "train": train_stats}  # (a walk lost it)
            self.save("last.pth")
            return self._interrupted(epoch, evaluating=True, started=False)
        return self._finish_epoch(epoch, train_stats)

    def _finish_epoch(self, epoch: int, train_stats: Dict[str, Any]) -> Optional[str]:
        """Evaluate, save and log epoch ``epoch``, whose training has finished (``train_stats``);
        the reason to stop, if any. A signal during the evaluation keeps the training: ``last.pth``
        with the epoch finished and its evaluation pending, done first when the run is resumed."""
        cfg = self.cfg
        rng = _rng_state()
        metrics = self.evaluate()
        if metrics is None:  # interrupted
            _set_rng_state(rng)  # as the epoch's training left it: the resumed evaluation starts from there
            self.last_epoch = epoch
            self.pending_eval = {"epoch": epoch, "train": train_stats}
            self.save("last.pth")
            return self._interrupted(epoch, evaluating=True)
        self.pending_eval = None
        self.last_epoch = epoch
        self._track_best(metrics, epoch)
        action = self.best.update(metrics.ap, epoch, self.stop_epoch)
        self.restart_pending = action == "restart"  # made as the next epoch starts (saved in last.pth below)
        pick = metrics.confidence.pick() if metrics.confidence is not None else None
        # last.pth is the best weights while no evaluation scored above AP 0: its pick and pictures too
        self.conf_picks["last"], self._stage_metrics["last"] = pick, (metrics, epoch)
        if action in ("stg1", "stg2"):
            self.conf_picks[action], self._stage_metrics[action] = pick, (metrics, epoch)
            if self.best_epoch == epoch:  # the best AP so far: this file holds it (saved with it, below)
                self.best_file = f"best_{action}.pth"
            self.save(f"best_{action}.pth")
        self.save("last.pth")
        if (epoch + 1) % cfg.checkpoint_freq == 0:
            self.save(f"checkpoint{epoch:04}.pth")
        self._last_entry = self._log_epoch(epoch, train_stats, metrics)
        if self.patience is not None and self.evals_since_best >= self.patience and epoch + 1 < cfg.epochs:
            self._print(f"early stop after epoch {epoch + 1}: val AP has not improved for {self.evals_since_best} "
                        f"evaluations (--patience {self.patience}); best AP {ap_text(self.best_ap)} at epoch "
                        f"{self.best_epoch + 1}")
            return "patience"
        return None

    def _track_best(self, metrics: CocoMetrics, epoch: int) -> None:
        if metrics.ap > self.best_ap:
            self.best_ap, self.best_epoch, self.evals_since_best = metrics.ap, epoch, 0
        else:
            self.evals_since_best += 1

    # ---------------------------------------------------------------- signals

    @contextlib.contextmanager
    def _signals(self):
        """SIGINT / SIGTERM during training: the first stops after the current step, a second
        exits at once. Handlers are installed in the main thread only and restored after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        owner = os.getpid()

        def handler(signum: int, frame: Any) -> None:
            if os.getpid() != owner:  # a data-loading worker forked with this handler: the main process decides
                return
            name = signal.Signals(signum).name
            if self.stop_signal is not None:
                last = self.output_dir / "last.pth"
                kept = (f"{last} is intact" if last.is_file()
                        else "no epoch had finished, so there is no last.pth to resume from")
                if self.exit_on_second_signal:
                    self._say_now(f"{name} again: exiting now (checkpoints are written atomically; {kept})")
                    os._exit(128 + signum)
                if self._unwinding:  # raised in the loaders' shutdown, it printed torch's traceback (a re-walk)
                    self._say_now(f"{name} again: already stopping (the data loaders are shutting down)")
                    return
                self._say_now(f"{name} again: stopping now (checkpoints are written atomically; {kept})")
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                raise SystemExit(128 + signum)
            self.stop_signal = name
            where = "this batch of the evaluation" if self._evaluating else "this step"
            again = "press Ctrl-C again" if name == "SIGINT" else f"send {name} again"
            self._say_now(f"{name}: stopping after {where} ({again} to quit at once)")

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _say_now(self, text: str) -> None:
        """One line on stderr from a signal handler (main process): an unbuffered ``os.write``, as
        ``print`` there raises "reentrant call" when the signal came while the main thread was
        printing (a progress bar refresh), and that error would end the run with a traceback. Where
        ``sys.stderr`` is not the process's (a notebook's cell: the line went to the server's terminal,
        a walk), written there, and by ``os.write`` when that fails."""
        if not dist.is_main():
            return
        stream = sys.stderr
        if stream is not None and stream is not sys.__stderr__:
            try:
                stream.write(f"\n{text}\n")
                stream.flush()
                return
            except Exception:  # noqa: BLE001 - a stream busy in the main thread: the process's own stderr
                pass
        os.write(2, f"\n{text}\n".encode(errors="replace"))

    def _stop_evaluating(self) -> bool:
        """:meth:`_should_stop` for the evaluation's batches, marking the run as unwinding when it stops."""
        self._unwinding = self._should_stop()
        return self._unwinding

    def _should_stop(self) -> bool:
        """Whether a signal asked this run (any of its processes) to stop."""
        stop = self.stop_signal is not None
        if dist.is_dist():
            flag = torch.tensor([float(stop)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
            self.stop_signal = self.stop_signal or ("SIGTERM" if stop else None)
        return stop

    def _interrupted(self, epoch: int, evaluating: bool = False, started: bool = True) -> str:
        """Say what was kept and how to go on; the reason to stop. ``evaluating``: the signal came
        while the epoch's training had finished and its evaluation ran (``started``) or was to run
        (``last.pth`` was written with that epoch trained and its evaluation pending)."""
        last = self.output_dir / "last.pth"
        if evaluating:
            then = f", then trains epoch {epoch + 2}" if epoch + 1 < self.cfg.epochs else " and ends the run"
            kept = (f"its training is kept in {last} (epoch {epoch + 1} trained, not evaluated); resuming evaluates "
                    f"it first{then}: {self._resume_command()}")
        elif self.last_epoch >= 0 and last.is_file():
            kept = (f"{last} (epoch {self.last_epoch + 1}, finished) is kept as it was; epoch {epoch + 1} "
                    f"starts again when you resume: {self._resume_command()}")
        else:
            kept = "no epoch had finished, so there is nothing to resume; run the same command to start again"
            sibling = self._stopped_sibling()
            if sibling:  # the same command typed again after a Ctrl-C, stopped again (a walk)
                kept = f"no epoch of this run had finished; {sibling}"
        where = (f"epoch {epoch + 1}" if not evaluating else f"the evaluation of epoch {epoch + 1}" if started
                 else f"epoch {epoch + 1}'s last step")
        self._print(f"stopped by {self.stop_signal} during {where}: {kept}")
        best = self._best_weights() if self.last_epoch >= 0 else None  # else any file there is another run's
        if best is not None:
            score = (f"AP {ap_text(self.best_ap)} at epoch {self.best_epoch + 1}" if self.best_ap > 0
                     else "no evaluation scored above AP 0 yet: the most trained weights")
            self._print(f"best weights so far: {best.resolve()} ({score})")
        return self.stop_signal or "SIGINT"

    def _stopped_sibling(self) -> str:
        """For a new ``--data`` run in a numbered folder (``..._3``): a stopped run of its siblings that
        ``--auto-resume`` continues (:func:`dfine.recipes.stopped_sibling`), ``""`` otherwise."""
        if self.command is None or self.cfg.resume or self.last_epoch >= 0:
            return ""
        from dfine.recipes import stopped_sibling

        base = re.sub(r"_\d+$", "", self.output_dir.name)
        return stopped_sibling(self.output_dir.with_name(base)) if base != self.output_dir.name else ""

    def _resume_command(self) -> str:
        """The command that resumes this run from ``last.pth`` (recipe and checkpoint as absolute paths,
        so it also works from another folder when the overrides hold no relative path), with the
        run's ``--max-steps``, ``--patience`` and ``--max-nonfinite``; a ``dfine train --data`` run's
        own command (:class:`DataCommand`) with ``-r``."""
        if self.command is not None:
            return self.command.resume(self.output_dir)
        config = str(Path(self.cfg.config_file).resolve()) if self.cfg.config_file else "CONFIG"
        parts = ["dfine train -c", shlex.quote(config)]
        overrides = user_overrides(self.cfg, leave_out=("resume", "tuning"))
        if overrides:
            parts += ["-u"] + [shlex.quote(o) for o in overrides]
        # the run's own options, which the recipe does not hold: without them the resumed run would
        # train whole epochs (--max-steps) or never stop early (--patience)
        for option, value, default in (("--max-steps", self.max_steps, None), ("--patience", self.patience, None),
                                       ("--max-nonfinite", self.max_nonfinite, 10)):
            if value != default:
                parts += [option, str(value)]
        return " ".join(parts + ["-r", shlex.quote(str((self.output_dir / "last.pth").resolve()))])

    # ---------------------------------------------------------------- summaries

    def startup_summary(self) -> List[str]:
        """What the run is about to do, in a few lines (printed before the first step)."""
        cfg = self.cfg
        model = dist.unwrap(self.model)
        steps = min(len(self.train_loader), self.max_steps or len(self.train_loader))
        size = "x".join(map(str, cfg.eval_spatial_size)) if cfg.eval_spatial_size else "the images' own size"
        first = self.last_epoch + 2
        if self.last_epoch < 0:
            epochs = counted(cfg.epochs, "epoch")
        elif first < cfg.epochs:
            epochs = f"epochs {first}..{cfg.epochs} of {cfg.epochs} (resumed)"
        elif first == cfg.epochs:
            epochs = f"epoch {first} of {cfg.epochs} (resumed)"
        elif first - 1 == cfg.epochs:  # it read 'epochs 4..3 of 3'
            epochs = f"all {counted(cfg.epochs, 'epoch')} finished (resumed)"
        else:  # a checkpoint past this run's epochs (it read 'all 4 epochs finished' of one at epoch 8)
            epochs = (f"the checkpoint finished {counted(first - 1, 'epoch')}, more than the {cfg.epochs} asked "
                      f"(resumed)")
        lines = [f"train data: {dataset_line(self.train_set)}",
                 f"val data:   {dataset_line(self.val_set)}",
                 f"classes: {classes_line(self.train_set)}",
                 f"model: {Path(cfg.config_file).name or 'D-FINE'} (HGNetv2-{cfg.HGNetv2.name}), "
                 f"{parameters_line(model)}, input {size}",
                 f"weights: {self.start_weights}",
                 f"device: {self.device}, {counted(torch.get_num_threads(), 'thread')}, precision {self.precision.name}"
                 + (f", {counted(dist.world_size(), 'process', 'processes')}" if dist.world_size() > 1 else ""),
                 f"schedule: {epochs}, {counted(steps, 'step')} per epoch "
                 f"(batch {self.train_loader.batch_size} per process)" + self._left_out_note(steps)
                 + (f", early stop after {counted(self.patience, 'evaluation')} without improvement"
                    if self.patience else ""),
                 f"output: {self.output_dir}"]
        unmeasured = unmeasured_line(self.train_set, self.val_set) if self.train_set is not None else None
        if unmeasured:
            lines.insert(3, unmeasured)  # under the classes line
        if self.train_set is not None and 0 < len(self.val_set) < FEW_VAL_IMAGES:  # a walk: 6 val images, not a word
            lines.insert(2, f"note: the val set has only {counted(len(self.val_set), 'image')}: its AP moves a lot "
                            f"from epoch to epoch, and the best weights are chosen on it; {FEW_VAL_IMAGES} or more "
                            f"measure better")
        busy = busy_cpu_note("the training steps", python=self._python) if self.device.type == "cpu" else None
        warm, live = self.cfg.lr_warmup_scheduler, self.lr_warmup_scheduler
        # a resumed run past its warmup has none to come (a walk read 'lr warmup 14 steps' as a new one), and one
        # whose checkpoint ran another warmup goes on with that one (a -c resume of a --data run's 3 steps said
        # the recipe's 500 'rise for the whole run')
        warming = self.warmup_note if warm is None or live is None or (
            not live.finished() and live.warmup_duration == warm.warmup_duration) else None
        lines[:0] = [note for note in (self.precision.note, self.size_note, self.stage_note, self.data_note,
                                       warming, busy,
                                       self._large_images_note(), self._tiny_boxes_note(), self._queries_note(),
                                       self._cpu_batch_note(("train", "val")),
                                       self._no_stage2_note(), self._workers_note()) if note]
        sibling = self._stopped_sibling()
        if sibling:  # last, beside the progress bar: said first only, it scrolled away (a walk)
            lines.append(f"note: a new run; {sibling} instead")
        return lines

    def _no_stage2_note(self) -> Optional[str]:
        """A recipe's stop epoch at or past the run's end (``-u epochs=3`` on the custom recipe, whose
        stage 2 starts at epoch 201): every epoch trains with the strong augmentations and no
        ``best_stg2.pth`` comes; said with the override (a walk found it out from the missing file)."""
        stop, epochs = self.stop_epoch, self.cfg.epochs
        if stop is None or epochs is None or stop < epochs or self.last_epoch + 1 >= epochs \
                or from_command_line(self.cfg, "train_dataloader.collate_fn.stop_epoch"):
            return None
        from dfine.recipes import stop_epoch_for
        suggest = stop_epoch_for(epochs)  # the published share of stage 2, as --data runs
        return (f"note: stage 2 (its last epochs without the strong augmentations, best_stg2.pth) starts at epoch "
                f"{stop + 1}, after this run's {counted(epochs, 'epoch')}: it never comes; "
                f"-u train_dataloader.collate_fn.stop_epoch={suggest} starts it at epoch {suggest + 1}")

    def _workers_note(self) -> Optional[str]:
        """The recipe's loader workers above this machine's cores (:func:`_many_workers`), with the override
        (torch's own warning, which names no key, is not given for them: a walk read both)."""
        many, cores = self._many_workers, _cores()
        if not many:
            return None
        return (f"note: {', '.join(f'{split} {n}' for split, n in many)} data-loading workers on {counted(cores, 'core')}: "
                f"-u {' '.join(f'{split}_dataloader.num_workers={cores}' for split, _ in many)} fits them")

    def _cpu_batch_note(self, splits: Tuple[str, ...]) -> Optional[str]:
        """On the CPU, the recipe's GPU-sized batches of ``splits`` (above :data:`CPU_BIG_BATCH`) said
        with the override that shrinks them, as ``--data`` runs do (a walk's val set went through in one
        46 s batch of 171 images at 640 px, without a progress bar to watch; larger sets run out of memory)."""
        if self.device.type != "cpu":
            return None
        big = [(split, getattr(self.cfg, f"{split}_dataloader").total_batch_size) for split in splits]
        big = [(split, b) for split, b in big if b > CPU_BIG_BATCH
               and not from_command_line(self.cfg, f"{split}_dataloader.total_batch_size")]
        if not big:
            return None
        from dfine.recipes import CPU_BATCH
        said = ", ".join(f"{split} {b}" for split, b in big)
        fix = " ".join(f"{split}_dataloader.total_batch_size={CPU_BATCH}" for split, _ in big)
        return (f"note: the recipe's batch{'es are' if len(big) > 1 else ' is'} ({said}) sized for GPUs: on the CPU "
                f"{'each takes' if len(big) > 1 else 'it takes'} many GB of memory and one long step; -u {fix} as dfine "
                f"train --data uses")

    def _queries_note(self) -> Optional[str]:
        """Images holding more boxes than the model has queries (dense scenes: shelves, cells, crowds):
        each query is matched to one box, so the rest of such an image is never learned nor found;
        said with the override that raises them (a walk's images held up to 376 boxes, unsaid)."""
        queries = model_config(self.cfg).decoder.num_queries
        over, most, images = [], (0, ""), 0
        for split, ds in (("train", self.train_set), ("val", self.val_set)):
            if ds is None or not hasattr(ds, "boxes_per_image") or not len(ds):
                continue
            per = ds.boxes_per_image()
            count = int((per > queries).sum())
            if count:
                over.append(counted(count, f"{split} image"))
                images += count
                most = max(most, (int(per.max()), ds.image_path(int(per.argmax())).name))
        if not over:
            return None
        n = -(-(most[0] + 1) // 100) * 100  # the next hundred above the most
        verb = "holds" if images == 1 else "hold"
        return (f"note: {' and '.join(over)} {verb} more boxes than the model's {queries} queries (up to {most[0]} "
                f"in {most[1]}): each query learns and finds one box, so the rest of such an image is never learned nor "
                f"found; {queries_override(n)} raises them "
                f"(more memory and time a step)")

    def _large_images_note(self) -> Optional[str]:
        """Train images larger than the model can use (phone photos at a small --imgsz) are read shrunk
        (:meth:`~dfine.data.transforms.DetectionTransform.source_short_side`): said, with how much less
        there is to decode and augment (a walk: 10-17 s per step on 12 MP photos at 320 px)."""
        ds = self.train_set
        side = ds.transforms.source_short_side() if ds is not None and ds.transforms is not None else None
        count, (width, height) = ds.larger_than(side) if side else (0, (0, 0))
        if not count:
            return None
        fewer = (min(width, height) / side) ** 2
        return (f"note: {count} of {counted(len(ds), 'train image')} (up to {width}x{height}) are larger than the "
                f"model can use and are read with {side} px on the short side, the smallest crop of the augmentations "
                f"still filling the input: up to {f'{fewer:.1f}'.rstrip('0').rstrip('.')}x fewer pixels to decode and "
                f"augment")

    def _tiny_boxes_note(self) -> Optional[str]:
        """Train boxes mostly too small at the model's input (drone photos shrunk to 640: a walk's
        12 px cars became 2 px, and nothing said why nothing was learned): :func:`dfine.data.tile.tiny_boxes_note`."""
        ds = self.train_set
        size = ds.transforms.resize_size() if ds is not None and ds.transforms is not None else None
        if size is None or not hasattr(ds, "box_sides_at"):
            return None
        return tiny_boxes_note(*ds.box_sides_at(size), size, self.command.data if self.command is not None else None,
                               "train boxes")

    def _left_out_note(self, steps: int) -> str:
        """What the loader's drop_last leaves out of each epoch when the batch does not divide the
        images (``""`` when nothing is, or ``--max-steps`` stops the epoch before its end)."""
        loader = self.train_loader
        images, batch = len(loader.sampler), loader.batch_size
        left = images % batch if loader.drop_last else 0
        if not left or steps < len(loader):
            return ""
        which = (f"shuffled, so another {left} each epoch" if getattr(loader.sampler, "shuffle", False)
                 else "the same ones every epoch")
        return (f"; {left} of {images} images sit out each epoch (the last, partial batch is dropped; "
                f"{which})")

    def _best_weights(self) -> Optional[Path]:
        """``best_stg2.pth`` over ``best_stg1.pth``; ``last.pth`` when no evaluation scored above
        AP 0 (then the first epoch's weights are no better than the most trained ones)."""
        names = ("best_stg2.pth", "best_stg1.pth") if self.best_ap > 0 else ()
        if self.best_file in names:  # an extended run's stage 1 can beat its stage 2 (best_stg2.pth is then older)
            names = (self.best_file, *(n for n in names if n != self.best_file))
        for name in (*names, "last.pth"):
            if name not in self._earlier_best and (self.output_dir / name).is_file():
                return self.output_dir / name
        return None

    def _best_and_stage(self) -> Tuple[Optional[Path], Optional[str]]:
        """:meth:`_best_weights` and its key in ``conf_picks`` (``"stg1"``, ``"stg2"``, ``"last"``)."""
        best = self._best_weights()
        return best, ckpt_io.RUN_FILE_STAGES.get(best.name) if best is not None else None

    def _final(self, seconds: float, stopped: str) -> Dict[str, Any]:
        """Print the end-of-run summary; the values :meth:`fit` adds to its result (``best_conf``:
        the best-F1 score threshold on val of ``best_weights``, as :meth:`ConfidenceCurve.pick` gives it)."""
        best, stage = self._best_and_stage()
        pick = self.conf_picks.get(stage) if stage else None
        result = {"best_AP": self.best_ap, "best_epoch": self.best_epoch, "best_weights": best,
                  "best_conf": pick, "seconds": seconds, "stopped": stopped, "output_dir": self.output_dir,
                  "tuning_AP": self.tuning_ap}
        if stopped in ("SIGINT", "SIGTERM") or not dist.is_main():
            return result
        last = self.history[-1].get("test_AP") if self.history else None
        lines = [f"done in {duration(seconds)}" + (" (early stop)" if stopped == "patience" else "")
                 + (f" (this session; {duration(self._seconds_before + seconds)} with the sessions before its resume)"
                    if self._seconds_before > 0 else "")]
        if self.best_epoch >= 0 and self.best_ap <= 0:  # 'best AP 0.0 at epoch 1' beside 'best weights: last.pth' read
            lines.append(f"no evaluation scored above AP 0 (epochs 1..{self.last_epoch + 1}): the best weights are the "
                         f"most trained ones")  # as a contradiction in a walk
        elif self.best_epoch >= 0:
            lines.append(f"best AP {ap_text(self.best_ap)} at epoch {self.best_epoch + 1}"
                         + (f", last AP {ap_text(last)} (epoch {self.last_epoch + 1})" if last is not None else "")
                         + (f"; the -t weights: AP {ap_text(self.tuning_ap)} before training"
                            if self.tuning_ap is not None else ""))
        if best is not None:
            lines.append(f"best weights: {best.resolve()}")  # absolute, as the commands under it (a walk)
            commands = next_commands(self.cfg, best, images_folder(self.val_set, self.train_set), self.command,
                                     conf=pick["conf"] if pick else None)
            tiles = tiles_info(self.val_set.ann_file) if self.val_set is not None else None
            if tiles:  # trained on tiles (dfine data tile): used on whole images with --slice
                commands = tiled_commands(commands, best, tiles, conf=pick["conf"] if pick else None)
                lines.append(f"  (trained on tiles of {tiles.get('source')}: predict slices whole images into "
                             f"tiles as they were cut; whole: its AP so, on the source's val split)")
            if self._python and self.command is not None:
                commands = python_calls(commands, best, self.command, conf=pick["conf"] if pick else None,
                                        tiles=tiles)
            lines += [f"  {k + ':':8s} {v}" for k, v in commands.items()]
            evaluated = self._stage_metrics.get(stage) if stage else None
            if evaluated is not None and not evaluated[0].has_ground_truth:  # not the model's fault (a walk)
                lines.append("  no --conf is recommended: the val set has no boxes to measure one on")
            elif stage in self.conf_picks:
                lines.append(f"  {conf_line(pick, 'the val set', python=self._python)}")
        not_beaten = self.tuning_ap is not None and self.best_epoch >= 0 and self.best_ap < self.tuning_ap
        prelabels = self._val_prelabels() if not_beaten else None
        made = self._val_labels_of_the_tuning() if not_beaten and not prelabels else None
        if prelabels:
            # a re-walk's -t model had made these labels: 'AP 100%, deploy them instead'
            lines.append(f"this run did not beat the -t weights {self.cfg.tuning} (AP {ap_text(self.tuning_ap)}) on "
                         f"val labels that are the uncorrected pre-labels of {prelabels}: that AP measures agreement "
                         f"with the model that made them, not which weights are better; correct the labels, then "
                         f"compare")
        elif made:  # corrected, yet mostly its own boxes: a walk's -t model read AP 96.1 on them (49.9 on truth)
            lines.append(f"this run did not beat the -t weights {self.cfg.tuning} (AP {ap_text(self.tuning_ap)}) on "
                         f"val labels that began as their own pre-labels ({made}), corrected since: every box left as "
                         f"they made it favours them, so that AP is not a fair mark; compare on labels no model made")
        elif not_beaten:
            # after the commands for the run's own best weights, which a walk copied: the -t ones are better
            start = shlex.quote(os.path.abspath(self.cfg.tuning)) if os.path.isfile(self.cfg.tuning) else self.cfg.tuning
            kept = self._tuning_classes()
            if kept is None:
                lines.append(f"this run did not beat the weights it started from: {self.cfg.tuning} (AP "
                             f"{ap_text(self.tuning_ap)} on this val set) remain the better weights; deploy them "
                             f"instead of the above (dfine export -r {start} --format onnx)")
            else:  # a COCO model's 80 classes: its export was told of, and no evaluation on this data takes it (a walk)
                shown = " ".join(shlex.quote(n) for n in kept)
                lines.append(f"this run did not beat the weights it started from: {self.cfg.tuning}, its heads of "
                             f"these classes carried (AP {ap_text(self.tuning_ap)} on this val set before training), "
                             f"remains better; it scores classes of its own besides these, so deploy it keeping "
                             f"these: dfine predict -m {start} IMAGES --classes {shown} (its names and category ids)")
        if self._pictures:  # a walk had to list the folder to find them
            lines.append(f"pictures: {', '.join(p.name for p in self._pictures)} (in {self.output_dir})")
        self._print("\n".join(lines))
        return result

    def _tuning_classes(self) -> Optional[List[str]]:
        """The ``-t`` model's names of this run's classes when it scores other classes too (a COCO model's 80
        carried into a set of 5 by name), so that it is deployed keeping these; None when it scores exactly this
        run's classes, or its file is not at hand."""
        try:
            path, _ = ckpt_io.resolve_source(self.cfg.tuning)  # a zoo name: its file in the cache since the start
            ckpt = ckpt_io.read_checkpoint(path)
            state = ckpt_io.model_state(ckpt, str(path))
            head = state.get("decoder.enc_score_head.weight")
            if head is None or head.shape[0] == self.cfg.num_classes:
                return None
            theirs = ckpt_io.class_names_of(ckpt, state)
        except (DfineError, OSError):
            return None
        found = ckpt_io.head_rows_by_name(self.label_map.names, theirs or [])
        return [theirs[r] for r in found] if theirs and all(r is not None for r in found) else None

    def _val_labels_of_the_tuning(self) -> Optional[str]:
        """What made the val labels (``dfine predict -m MODEL ...``) when they began as the pre-labels of the ``-t``
        weights themselves, corrected since; None otherwise."""
        ann = getattr(self.val_set, "ann_file", None) if self.val_set is not None and self.cfg.tuning else None
        from dfine.data.convert import uncorrected_prelabels
        made = uncorrected_prelabels(Path(ann), corrected=True) if ann else None
        words = shlex.split(made) if made else []
        model = words[words.index("-m") + 1] if "-m" in words[:-1] else None
        if model is None:
            return None
        same = model == self.cfg.tuning or (os.path.exists(model) and os.path.exists(self.cfg.tuning)
                                            and os.path.samefile(model, self.cfg.tuning))
        return made if same else None

    def _val_prelabels(self) -> Optional[str]:
        """What made the val labels when they are ``dfine predict --save-dataset``'s, not corrected yet."""
        ann = getattr(self.val_set, "ann_file", None) if self.val_set is not None else None
        if not ann:
            return None
        from dfine.data.convert import uncorrected_prelabels
        return uncorrected_prelabels(Path(ann))

    def _restart_ema(self, decay: float, epoch: int,
                     why: str = "stage 2 of the published recipe: its last epochs train without the strong "
                                "augmentations") -> bool:
        """Published stop-epoch refresh: reload ``best_stg1.pth`` (weights, EMA, optimiser,
        schedulers) and continue with EMA decay ``decay``; ``why`` ends the line that says so (the
        stop epoch, or a stage-2 epoch that did not improve). Not reloaded while no evaluation has
        scored above AP 0: that file is then the first epoch's weights, and reloading it at every
        restart would throw away all training since (a hard dataset, a short run). Whether it was reloaded."""
        path = self.output_dir / "best_stg1.pth"
        dist.barrier()
        reload = path.is_file() and self.best.top1 > 0
        if reload:
            self.load_resume(ckpt_io.read_checkpoint(path), str(path), counters=False)
        if self.ema is not None:
            self.ema.decay = decay
            # one parenthesis: '(best_stg1.pth not reloaded ...) (... goes back to best_stg1.pth ...)' read as a
            # contradiction (a walk)
            kept = "" if reload or not path.is_file() else (f"; {path.name} is not reloaded, though: no evaluation has "
                                                             f"scored above AP 0 yet, so it is no better than the "
                                                             f"current weights")
            self._print(f"epoch {epoch + 1}: EMA restarted from {path.name if reload else 'current weights'} "
                        f"with decay {decay} ({why}{kept})")
        return reload

    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        """One pass over the training loader; returns mean losses and the last LR."""
        self.model.train()
        self.criterion.train()
        loader = self.train_loader
        total = min(len(loader), self.max_steps or len(loader))
        bar = self._bar(total, f"epoch {epoch + 1}/{self.cfg.epochs}")
        sums: Dict[str, float] = {}
        count, skipped, start = 0, 0, time.time()
        self._epoch_whole = False  # every step of the epoch ran (a signal in its last one keeps the epoch)
        epoch_losses: List[float] = []
        epoch_lrs: Dict[str, List[float]] = {name: [] for name in self.lr_groups}
        batches = iter(loader)
        try:  # a bar left open by an error redrew itself in a notebook's later cells (a walk)
            for i in range(total):
                if self._should_stop():
                    self._unwinding = True
                    break
                try:
                    images, targets = next(batches)
                except StopIteration:
                    break
                except RuntimeError:  # Ctrl-C also reaches the loader's workers, which then exit
                    if self.stop_signal is not None:
                        self._unwinding = True
                        break
                    raise
                lrs = [self.optimizer.param_groups[g]["lr"] for g in self.lr_groups.values()]  # what this step runs at
                self.slowdown.start()
                losses = self.train_step(images, targets, epoch * total + i)
                slowed = self.slowdown.stop() if self.device.type == "cpu" else None
                if slowed:
                    self._print(slowed)
                if losses is None:
                    skipped += 1
                    continue
                for values, lr in zip(epoch_lrs.values(), lrs):
                    values.append(lr)
                loss = float(sum(losses.values()))
                self.step_losses.append(loss)
                epoch_losses.append(loss)
                for k, v in [("loss", loss)] + [(k, float(v)) for k, v in losses.items()]:
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                lr = self.optimizer.param_groups[self.main_lr_group]["lr"]
                if bar is not None:  # the epoch's mean so far: one step's loss (0.0002 on a batch of background
                    # tiles) read beside the epoch's 7.4 in a walk's log as a model that had learned everything
                    bar.set_postfix(mean_loss=f"{sums['loss'] / count:.4f}", lr=f"{lr:.2e}", refresh=False)
                    bar.update(1)
                if self.writer is not None and self.step % 10 == 0:
                    self.writer.add_scalar("Loss/total", loss, self.step)
                    for j, g in enumerate(self.optimizer.param_groups):
                        self.writer.add_scalar(f"Lr/pg_{j}", g["lr"], self.step)
                if self.cfg.print_freq and (i + 1) % self.cfg.print_freq == 0 and bar is None:
                    self._print(f"epoch {epoch + 1} [{i + 1}/{total}] loss {loss:.4f} "
                                f"(epoch mean {sums['loss'] / count:.4f}) lr {lr:.3e}")
        finally:
            if bar is not None:
                bar.close()
        self._epoch_whole = count + skipped == total
        stats = {k: v / max(count, 1) for k, v in sums.items()}
        stats.update(lr=self.optimizer.param_groups[0]["lr"], skipped_steps=skipped, step_losses=epoch_losses,
                     step_lr=epoch_lrs,
                     images_per_s=count * loader.batch_size * dist.world_size() / max(time.time() - start, 1e-9))
        return stats

    def train_step(self, images: torch.Tensor, targets: List[Dict[str, torch.Tensor]], it: int
                   ) -> Optional[Dict[str, torch.Tensor]]:
        """One optimiser step (AMP or not); ``None`` when the loss was not finite (step skipped)."""
        images = images.to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
        try:
            return self._step(images, targets, it)
        except torch.OutOfMemoryError:
            raise self._out_of_memory(images) from None
        except RuntimeError as e:
            if "can't allocate memory" in str(e) or "not enough memory" in str(e):
                raise self._out_of_memory(images) from None
            raise

    def _out_of_memory(self, images: torch.Tensor) -> DfineError:
        """One line naming the batch and image size of the step that ran out of memory."""
        batch, (h, w) = images.shape[0], images.shape[-2:]
        smaller = max(32, (max(h, w) * 3 // 4) // 32 * 32)
        where = "GPU" if self.device.type == "cuda" else "CPU"
        return DfineError(f"out of {where} memory in a training step at batch size {batch} per process and image "
                          f"size {h}x{w}; try a smaller batch (-u train_dataloader.total_batch_size="
                          f"{max(1, batch // 2) * dist.world_size()}) or a smaller size (--imgsz {smaller})")

    def _step(self, images: torch.Tensor, targets: List[Dict[str, torch.Tensor]], it: int
              ) -> Optional[Dict[str, torch.Tensor]]:
        with torch.autocast(self.device.type, dtype=self.precision.dtype, enabled=self.use_amp):
            outputs = self.model(images, targets=targets)
        with torch.autocast(self.device.type, enabled=False):
            loss_dict = self.criterion(outputs, targets)
        loss = sum(loss_dict.values())
        finite = torch.isfinite(loss.detach()).float()
        if dist.is_dist():
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not bool(finite):
            self.nonfinite += 1
            self.optimizer.zero_grad(set_to_none=True)
            self._print(f"non-finite loss at step {self.step} ({self.nonfinite} in a row); step skipped")
            if self.nonfinite >= self.max_nonfinite:
                raise DfineError(f"training stopped: {self.nonfinite} non-finite losses in a row (epoch "
                                 f"{self.last_epoch + 2}, step {self.step}); last good checkpoint: "
                                 f"{self.output_dir / 'last.pth'}; try a lower lr or clip_max_norm")
            return None
        self.nonfinite = 0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_max_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        if self.flat_cosine is not None:
            self.flat_cosine.step(it)
        elif self.lr_warmup_scheduler is not None:
            self.lr_warmup_scheduler.step()
        self.step += 1
        return dist.reduce_dict({k: v.detach() for k, v in loss_dict.items()})

    # ---------------------------------------------------------------- evaluation

    def evaluate(self) -> Optional[CocoMetrics]:
        """COCO AP of the EMA model (the model without EMA) on the validation set; ``None``
        when a signal stopped it."""
        module = self.ema.module if self.ema is not None else dist.unwrap(self.model)
        self._evaluating = True  # what a signal's first line says it stops after
        try:
            metrics = evaluate(module, self.postprocessor, self.val_loader, self.device, self.val_set.ann_file,
                               progress=self.progress, should_stop=self._stop_evaluating,
                               max_dets=self.cfg.evaluator.max_dets)
        finally:
            self._evaluating = False
        return None if metrics is None else dataclasses.replace(metrics, classes=tuple(self.label_map.category_ids))

    def val(self) -> CocoMetrics:
        """``--test-only``: evaluate, print the 12-line COCO summary, the per-class table and the AP line,
        write ``eval.json``."""
        where = (f"the {self.command.split} split of {self.command.data}" if self.command is not None
                 else str(self.val_set.ann_file or "the val set"))
        count = counted(len(self.val_set), "image")
        if hasattr(self.val_set, "boxes_per_class"):
            count += f", {counted(int(self.val_set.boxes_per_class().sum()), 'box', 'boxes')}"
        self._print(f"{self.cfg.resume} on {where} ({count}):")
        big = self._cpu_batch_note(("val",))
        if big:
            self._print(big)
        metrics = self.evaluate()
        self._print("\n".join(t for t in (metrics.coco_summary(), metrics.table(), metrics.dense_note(), metrics.summary())
                               if t))
        pick = None
        if metrics.confidence is not None and metrics.has_ground_truth:
            pick = metrics.confidence.pick()
            self._print(conf_line(pick, "this set", python=self._python))
        if dist.is_main():
            path = self.output_dir / (self.command.eval_file if self.command is not None else "eval.json")
            write_evaluation(path, metrics.to_json(), model=self.cfg.resume or "", num_images=len(self.val_set),
                             ann_file=None if self.command is not None else self.val_set.ann_file,
                             data=self.command.data if self.command is not None else None)
            self._print(f"metrics: {os.path.abspath(path)}")
            split = self.command.split if self.command is not None else "val"
            what = (f"{Path(self.cfg.resume or 'model').name}, "
                    f"{split if self.command is not None else Path(self.val_set.ann_file).name}")
            self._print(evaluation_pictures(metrics, path, what, (self.val_set.ann_file, self.val_set.img_folder),
                                            pick, split))
        return metrics

    # ---------------------------------------------------------------- logs

    @property
    def _python(self) -> bool:
        """Whether the run was started by :func:`dfine.train` (its notes then give Python's words)."""
        command = getattr(self, "command", None)
        return bool(command is not None and command.python)

    def _print(self, text: str) -> None:
        if dist.is_main():
            from tqdm import tqdm
            tqdm.write(text)

    def _bar(self, total: int, desc: str) -> Any:
        if not (self.progress and dist.is_main()):
            return None
        from dfine.text import progress_bar  # its last line once into a log file
        return progress_bar(total=total, desc=desc, dynamic_ncols=True, unit="it")

    def _start_logs(self) -> None:
        if not dist.is_main():
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        log = self.output_dir / "log.jsonl"
        if log.is_file():  # earlier epochs of a resumed run, for the plots
            self.history, bad = read_log(log, self.last_epoch)
            if bad:
                self._print(f"note: {log} line {bad[0]} is not a whole JSON line (cut off by a crash?); "
                            f"{counted(len(bad), 'line')} left out of the plots")
            # the file keeps this run's epochs only: a new run into the folder of an earlier one appended
            # to that run's log, and its plots then drew both runs (two epoch-1 points, two loss curves)
            _write_log(log, self.history)
        try:
            import matplotlib  # noqa: F401
            plots = True
        except ImportError:  # the run said the plots were written, and none were
            plots = False
            self._print("note: no PNG plots of the loss, lr and AP (matplotlib is not installed: pip install "
                        "\"dfine[plots]\")")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._print("note: no TensorBoard scalars (tensorboard is not installed: pip install \"dfine[tensorboard]\"); "
                        f"log.jsonl{' and the PNG plots' if plots else ''} go{'' if plots else 'es'} to "
                        f"{self.output_dir}")
            return
        self.writer = SummaryWriter(self.cfg.summary_dir or str(self.output_dir / "summary"))

    def _log_epoch(self, epoch: int, train: Dict[str, Any], metrics: CocoMetrics) -> Dict[str, Any]:
        step_losses = [float(f"{v:.5g}") for v in train.pop("step_losses", [])]
        step_lr = {k: [float(f"{v:.5g}") for v in values] for k, values in train.pop("step_lr", {}).items()}
        entry = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
                 **{f"test_{k}": v for k, v in metrics.as_dict().items()}, "step": self.step,
                 "train_step_losses": step_losses, "train_step_lr": step_lr,
                 # a stage-2 epoch that began by going back to best_stg1.pth (it did not improve before)
                 **({"ema_restart": True} if self._restarted_before == epoch else {}),
                 # the -t weights' AP before training, in the first epoch's entry (map.png draws it)
                 **({"tuning_AP": self.tuning_ap} if epoch == 0 and self.tuning_ap is not None else {}),
                 # the published log's keys: the 12 COCO statistics in COCO's order, the trainable parameters
                 "test_coco_eval_bbox": list(metrics.stats),
                 "n_parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad)}
        if not dist.is_main():
            return entry
        self._print(f"{metrics.coco_summary()}\n{metrics.table()}")
        if not self._dense_said and metrics.dense_note():  # once a session: dense val images count 300 detections
            self._dense_said = True
            self._print(metrics.dense_note())
        self._print(f"epoch {epoch + 1}/{self.cfg.epochs}: loss {train.get('loss', float('nan')):.4f}  "
                    f"{metrics.summary()}" + (f"  ({counted(train['skipped_steps'], 'step')} skipped: non-finite loss)"
                                              if train.get("skipped_steps") else "") + self._pace(epoch))
        self.history.append(entry)
        with (self.output_dir / "log.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")
        _link_published_log(self.output_dir)  # once log.jsonl is there (a run stopped before left a dangling link)
        if self.writer is not None:
            for k, v in metrics.as_dict().items():
                self.writer.add_scalar(f"Test/{k}", v, epoch)
            self.writer.add_scalar("Train/loss", train.get("loss", math.nan), epoch)
            self.writer.flush()
        self._draw_history_now()
        return entry

    def _draw_history_now(self) -> None:
        """``loss.png``, ``lr.png`` and ``map.png`` after an epoch, so that they show a run while it
        trains (and one killed or asleep as far as it got: they were drawn at the run's end only),
        when the epoch took at least 20 times as long as drawing them (about 0.5 s)."""
        took = self._epoch_seconds[-1] if self._epoch_seconds else 0.0
        if took < 20 * self._plot_seconds:
            return
        start = time.perf_counter()
        plot_history(self.history, self.output_dir, lr_labels(self.cfg.optimizer, self.lr_groups), self.stop_epoch)
        self._plot_seconds = max(time.perf_counter() - start, 0.05)

    def _pace(self, epoch: int) -> str:
        """``"  1m05s, about 2h10m to go"``: how long epoch ``epoch`` took (training and evaluation)
        and the epochs left at this run's mean pace (``""`` for an epoch not timed: an evaluation
        resumed on its own)."""
        if self._epoch_start is None:
            return ""
        self._epoch_seconds.append(time.time() - self._epoch_start)
        self._epoch_start = None
        left = self.cfg.epochs - epoch - 1
        text = f"  {duration(self._epoch_seconds[-1])}"
        if left > 0:
            mean = sum(self._epoch_seconds) / len(self._epoch_seconds)
            text += f", about {duration(mean * left)} to go"
        return text

    def _finish_logs(self, stopped: str = "") -> None:
        best, stage = self._best_and_stage()
        evaluated = self._stage_metrics.get(stage) if stage else None
        if evaluated is None and best is not None and self._epoch_seconds and stopped not in ("SIGINT", "SIGTERM"):
            evaluated = self._evaluate_again(best)  # every process: the evaluation is shared among them
        if not dist.is_main():
            return
        if self.writer is not None:
            self.writer.close()
        self._pictures = plot_history(self.history, self.output_dir, lr_labels(self.cfg.optimizer, self.lr_groups),
                                      self.stop_epoch)
        if evaluated is not None:  # titled with the epoch of those weights (last.pth's said the best AP's epoch)
            metrics, epoch = evaluated
            pick = self.conf_picks.get(stage)
            self._pictures = plot_evaluation(metrics, self.output_dir, f"{best.name}, epoch {epoch + 1}, val",
                                             val=(self.val_set.ann_file, self.val_set.img_folder),
                                             conf=pick["conf"] if pick else None) + self._pictures

    def _evaluate_again(self, best: Path) -> Optional[Tuple[CocoMetrics, int]]:
        """The metrics of the weights in ``best`` and their epoch, evaluated now: a resumed run's best weights
        evaluated in a session before the resume (a walk's run, killed after its best epoch and resumed, ended
        with the pictures of the weights before them, titled with their epoch). ``None`` when a signal stops it."""
        state = ckpt_io.read_checkpoint(best)
        epoch = int(state.get("last_epoch", self.last_epoch))
        self._print(f"{best.name} (epoch {epoch + 1}) was evaluated before this run was resumed: evaluating it "
                    f"again for its pictures")
        self.load_resume(state, str(best), full=False)
        metrics = self.evaluate()
        return None if metrics is None else (metrics, epoch)


def _earlier_run(out: Path) -> Tuple[str, set]:
    """The warning for a new run into ``out`` when an earlier run's checkpoints are there (``""``
    when none are), and which ``best_stg*.pth`` they include: the new run overwrites what it writes,
    and an earlier ``best_stg2.pth`` it does not rewrite stayed beside its files and was named its best."""
    found = earlier_run_files(out)
    if not found:
        return "", set()
    return (f"warning: {out} holds an earlier run's {', '.join(found)}: this run overwrites the files it writes "
            f"(and starts log.jsonl afresh) and never takes the earlier ones for its own; to continue that run "
            f"instead, resume from {out / 'last.pth'} (-r, or --auto-resume), or choose another output folder to "
            f"keep both"), {n for n in found if n.startswith("best_")}


def read_log(path: Path, last_epoch: int) -> Tuple[List[Dict[str, Any]], List[int]]:
    """The entries of a run's ``log.jsonl`` up to epoch ``last_epoch`` (0-based), one per epoch
    (the last line of an epoch: a log written before :func:`_write_log` could hold an earlier
    run's lines before this run's), and the numbers of the lines that are not JSON objects (a line
    cut off when the process was killed mid-write)."""
    entries: Dict[Any, Dict[str, Any]] = {}
    bad: List[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            bad.append(number)
        elif entry.get("epoch", -1) <= last_epoch:
            entries[entry.get("epoch")] = entry  # a later line of an epoch replaces the earlier
    return sorted(entries.values(), key=lambda e: e.get("epoch", -1)), bad


def _link_published_log(folder: Path) -> None:
    """``folder/log.txt``, the published implementation's log name, as a link to ``log.jsonl`` (its
    lines carry the published keys too), so scripts reading the published log find it; nothing
    where a file of that name is there already or links cannot be made (some Windows setups)."""
    link = folder / "log.txt"
    if link.exists() or link.is_symlink():
        return
    try:
        link.symlink_to("log.jsonl")
    except OSError:
        pass


def _write_log(path: Path, entries: List[Dict[str, Any]]) -> None:
    """``path`` rewritten with ``entries``, one JSON line each, atomically (temporary file, rename)."""
    from dfine.data.convert import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(entry) + "\n" for entry in entries))


def lr_series(cfg: Any, groups: int) -> Dict[str, int]:
    """One optimiser param group per configured learning rate, named by its config key(s):
    ``{"optimizer.params[0].lr, optimizer.params[1].lr": 0, "optimizer.lr": 2}`` for the N recipe
    (the groups follow ``cfg.params``' order, the rest last; every schedule scales them alike)."""
    by_lr: Dict[float, List[Tuple[str, int]]] = {}
    for g in range(groups):
        entry = cfg.params[g] if g < len(cfg.params) else None
        key = f"optimizer.params[{g}].lr" if entry is not None and entry.lr is not None else "optimizer.lr"
        lr = entry.lr if key != "optimizer.lr" else cfg.lr
        by_lr.setdefault(lr, []).append((key, g))
    out: Dict[str, int] = {}
    for keys in by_lr.values():
        names = list(dict.fromkeys(k for k, _ in keys))
        out[", ".join(names)] = keys[0][1]
    return out


def lr_labels(cfg: Any, groups: Dict[str, int]) -> Dict[str, str]:
    """A legend line for each of :func:`lr_series`' ``groups``, in words: the model parts its ``params``
    patterns name (backbone, encoder, decoder) and how many parameter groups share the lr (``backbone
    (2 parameter groups)`` and ``the rest`` for the published recipes; the legend read 'optimizer.params[0].lr,
    optimizer.params[1].lr', config keys, not words: a walk); ``parameter groups 0 and 1`` where no part is named."""
    out = {}
    for key in groups:
        if "optimizer.lr" in key.split(", "):
            out[key] = "the rest"
            continue
        numbers = [int(i) for i in re.findall(r"params\[(\d+)\]", key)]
        patterns = [cfg.params[i].params for i in numbers]
        parts = [part for part in ("backbone", "encoder", "decoder") if any(part in str(p) for p in patterns)]
        many = f"{len(numbers)} parameter groups" if len(numbers) > 1 else ""
        if parts:
            out[key] = " + ".join(parts) + (f" ({many})" if many else "")
        else:
            listed = ", ".join(str(i) for i in numbers[:-1]) + (" and " if len(numbers) > 1 else "") + str(numbers[-1])
            out[key] = f"parameter group{'s' if many else ''} {listed}"
    return out


def main_lr_group(groups: Dict[str, int]) -> int:
    """The param group that runs at the recipe's own ``optimizer.lr`` (the parameters no ``params``
    entry names), from :func:`lr_series`'s ``groups``: the lr to show beside the loss. Group 0 is, in
    the published recipes, the backbone's smaller lr (N: 4e-4 against 8e-4)."""
    return next((g for key, g in groups.items() if "optimizer.lr" in key.split(", ")), 0)


def _per_step(history: List[Dict[str, Any]], key: str) -> Tuple[Dict[str, Tuple[List[int], List[float]]], List[int]]:
    """``{name: (steps, values)}`` of the per-step lists under ``key`` (a list, or a dict of named
    lists) of each epoch, numbered by the run's step counter, and the steps that end the epochs."""
    series: Dict[str, Tuple[List[int], List[float]]] = {}
    bounds = []
    for e in history:
        named = e.get(key) or {}
        named = named if isinstance(named, dict) else {"": named}
        for name, values in named.items():
            first = e.get("step", 0) - len(values)
            steps, ys = series.setdefault(name, ([], []))
            steps += list(range(first + 1, first + len(values) + 1))
            ys += values
        bounds.append(e.get("step", 0))
    return series, bounds


def _stage2_step(history: List[Dict[str, Any]], stop_epoch: Optional[int]) -> Optional[float]:
    """The x of the line between stage 1 and stage 2 on a per-step axis: after the last step of the
    epoch before ``stop_epoch`` (0-based); ``None`` when the history does not reach into stage 2 or
    holds no epoch before it."""
    if stop_epoch is None or not any(e["epoch"] >= stop_epoch for e in history):
        return None
    before = [e.get("step", 0) for e in history if e["epoch"] == stop_epoch - 1]
    return before[0] + 0.5 if before else None


def _stage2_epoch(history: List[Dict[str, Any]], stop_epoch: Optional[int]) -> Optional[float]:
    """The x of the stage line on a per-epoch axis (epochs drawn from 1): between the last epoch of
    stage 1 and the first of stage 2; ``None`` when the history has no epoch on both sides."""
    if stop_epoch is None or not any(e["epoch"] >= stop_epoch for e in history) \
            or not any(e["epoch"] < stop_epoch for e in history):
        return None
    return stop_epoch + 0.5


def _restart_steps(history: List[Dict[str, Any]]) -> List[float]:
    """The x of each stage-2 EMA restart on a per-step axis: before the first step of an epoch whose
    log entry says it began by going back to ``best_stg1.pth``."""
    ends = {e["epoch"]: e.get("step", 0) for e in history}
    return [ends[e["epoch"] - 1] + 0.5 for e in history if e.get("ema_restart") and e["epoch"] - 1 in ends]


def _restart_epochs(history: List[Dict[str, Any]]) -> List[float]:
    """The same on a per-epoch axis (epochs drawn from 1): between the epoch before and that epoch."""
    return [e["epoch"] + 0.5 for e in history if e.get("ema_restart")]


def _mark_restarts(ax: Any, xs: List[float]) -> None:
    """A dotted line at each ``xs`` labelled "back to best_stg1": the published stage-2 rule after an
    epoch that did not improve (the AP and loss jump there had no explanation in the pictures, a walk)."""
    for i, x in enumerate(xs):
        ax.axvline(x, color="tab:orange", lw=1, ls=":")
        if i == 0:
            ax.text(x, 0.93, " back to best_stg1", transform=ax.get_xaxis_transform(), color="tab:orange", fontsize=7,
                    va="top", ha="left")


def _mark_stage2(ax: Any, x: Optional[float]) -> None:
    """A dashed line at ``x`` labelled "stage 2" at the top of the axes (augmentation off, EMA
    restarted from best_stg1.pth: the loss drops and the AP jumps there)."""
    if x is None:
        return
    ax.axvline(x, color="tab:red", lw=1, ls="--")
    ax.text(x, 1.0, " stage 2", transform=ax.get_xaxis_transform(), color="tab:red", fontsize=8, va="top", ha="left")


def _mark_epoch_ends(ax: Any, bounds: List[int], stage2: Optional[float]) -> str:
    """A dotted line after the last step of each epoch but the last (``bounds``: those steps), none
    where the stage-2 line is drawn; the x label, naming the dotted lines only when there are any (a
    walk read 'dotted: epoch ends' over a plot whose one epoch end was under the stage-2 line)."""
    xs = [b + 0.5 for b in bounds[:-1] if stage2 is None or b + 0.5 != stage2]
    for x in xs:
        ax.axvline(x, color="grey", lw=0.6, ls=":")
    return "step (dotted: epoch ends)" if xs else "step"


def smooth(values: List[float], weight: float = 0.9) -> List[float]:
    """Exponential moving average with bias correction (what TensorBoard's smoothing shows)."""
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** (i + 1)))
    return out


def _plot_loss(history: List[Dict[str, Any]], path: Path, plt: Any, stop_epoch: Optional[int] = None) -> None:
    """Loss per step (raw and smoothed) on the left, mean loss per epoch on the right; stage 2 (from
    ``stop_epoch``, 0-based) marked on both."""
    series, bounds = _per_step(history, "train_step_losses")
    steps, losses = series.get("", ([], []))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if losses:
        left.plot(steps, losses, color="tab:blue", alpha=0.25, lw=1, label="per step")
        # a marker on each step of a short run: a line through one point draws nothing
        left.plot(steps, smooth(losses, 0.9 if len(losses) > 20 else 0.6), color="tab:blue", lw=2, label="smoothed",
                  marker="o" if len(losses) <= 20 else None, ms=4)
        stage2 = _stage2_step(history, stop_epoch)
        left.set_xlabel(_mark_epoch_ends(left, bounds, stage2))
        _mark_stage2(left, stage2)
        _mark_restarts(left, _restart_steps(history))
        left.legend()
    else:
        left.set_xlabel("step")
    _whole_ticks(left)
    left.set_title("train loss per step")
    epochs = [e["epoch"] + 1 for e in history]
    right.plot(epochs, [e.get("train_loss", math.nan) for e in history], marker="o")
    right.set_xlabel("epoch")
    _whole_ticks(right)
    right.set_title("train loss per epoch (mean)")
    _mark_stage2(right, _stage2_epoch(history, stop_epoch))
    _mark_restarts(right, _restart_epochs(history))
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _whole_ticks(ax: Any) -> None:
    """Whole-number ticks on an x axis of steps or epochs (where the lines drawn have one x value,
    that tick alone: matplotlib would label 0.96 ... 1.04)."""
    xs = {float(x) for line in ax.get_lines() for x in line.get_xdata()}
    if len(xs) == 1:
        ax.set_xticks(sorted(xs))
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


def _plot_lr(history: List[Dict[str, Any]], path: Path, plt: Any, names: Dict[str, str],
             stop_epoch: Optional[int] = None) -> None:
    """The learning rate of each step, one line per configured lr (a warm-up shorter than an epoch
    shows); a log without per-step values (written before they were recorded): one point per epoch."""
    series, bounds = _per_step(history, "train_step_lr")
    fig, ax = plt.subplots(figsize=(6, 4))
    if any(steps for steps, _ in series.values()):
        for name, (steps, values) in series.items():
            ax.plot(steps, values, lw=1.5, marker="." if len(steps) <= 50 else None, label=names.get(name, name))
        stage2 = _stage2_step(history, stop_epoch)
        ax.set_xlabel(_mark_epoch_ends(ax, bounds, stage2))
        _mark_stage2(ax, stage2)
    else:
        ax.plot([e["epoch"] + 1 for e in history], [e.get("train_lr", math.nan) for e in history], marker="o",
                label="lr at the end of the epoch")
        _mark_stage2(ax, _stage2_epoch(history, stop_epoch))
        ax.set_xlabel("epoch")
    _whole_ticks(ax)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_title("learning rate")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _plot_map(history: List[Dict[str, Any]], path: Path, plt: Any, stop_epoch: Optional[int] = None) -> None:
    """COCO AP, AP50 and AP75 per epoch in percent, as the terminal and ``metrics.summary()`` print
    them; a statistic COCO could not compute (-1) is left out, not drawn at -100."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [e["epoch"] + 1 for e in history]
    colors = {}
    for key in ("AP", "AP50", "AP75"):
        values = [e.get(f"test_{key}", math.nan) for e in history]
        line, = ax.plot(epochs, [100 * v if v >= 0 else math.nan for v in values], marker="o", label=key)
        colors[key] = line.get_color()
    _whole_ticks(ax)
    ax.set_ylim(bottom=0)  # a run at AP 0 drew an axis from -0.05 to 0.05 (a walk)
    _mark_stage2(ax, _stage2_epoch(history, stop_epoch))
    _mark_restarts(ax, _restart_epochs(history))
    start = next((e["tuning_AP"] for e in history if e.get("tuning_AP") is not None), None)
    if start is not None:  # the -t weights' AP before training: the mark the run had to beat
        # its AP in the legend, drawn over the axis: at AP 0 it lay under the x axis, named but unseen (a walk)
        ax.axhline(100 * start, color=colors["AP"], lw=1.5, ls=":", zorder=3, clip_on=False,
                   label=f"the -t weights before training: AP {ap_text(start)}")
        if 100 * start >= ax.get_ylim()[1]:  # above every epoch: it was drawn over the title (a walk)
            ax.set_ylim(0, 100 * start * 1.1 + 0.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("AP (%)")
    ax.set_title("COCO AP on the validation set")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_history(history: List[Dict[str, Any]], out: Path, lr_names: Optional[Dict[str, str]] = None,
                 stop_epoch: Optional[int] = None) -> List[Path]:
    """``loss.png`` (per step and per epoch), ``lr.png`` and ``map.png`` over epochs in ``out``
    (needs matplotlib), each written atomically: a Ctrl-C while drawing leaves the last ones.
    ``lr_names``: the legend of each lr series (:func:`lr_labels`; default: its config keys).
    ``stop_epoch`` (0-based): where stage 2 starts, marked on each plot the run reached it in (the
    terminal said it; the loss drop and AP jump there had no explanation in the pictures, a walk).
    Nothing is drawn without a finished epoch (a run stopped in its first epoch left three empty
    plots, ``map.png`` with axes around 0 and no point)."""
    if not history:
        return []
    try:
        plt = pyplot()
    except DfineError:  # no matplotlib: said once at the start of the run
        return []
    _plot_loss(history, out / "loss.png", plt, stop_epoch)
    _plot_lr(history, out / "lr.png", plt, lr_names or {}, stop_epoch)
    _plot_map(history, out / "map.png", plt, stop_epoch)
    return [out / "loss.png", out / "lr.png", out / "map.png"]


def _kept_stage2(cfg: Config, state: Dict[str, Any], name: str) -> Tuple[Config, str]:
    """``cfg`` resuming ``state`` (read from ``name``), with the checkpoint's stop epoch kept when its run
    had reached stage 2 and ``cfg``'s (more ``--epochs``: a later stop epoch) would put the coming epochs
    back in stage 1; and the note that says so (``""`` otherwise). Extending a finished run that way
    trained them with the strong augmentations again and then restarted the EMA from ``best_stg1.pth``,
    the weights of before stage 2: the extension was thrown away (a walk)."""
    done = int(state.get("last_epoch", -1))
    collate = ((state.get("config") or {}).get("train_dataloader") or {}).get("collate_fn") or {}
    before = collate.get("stop_epoch")
    now = cfg.train_dataloader.collate_fn.stop_epoch
    if before is None or done < int(before) or (now is not None and now <= done) or cfg.epochs is None:
        return cfg, ""
    before = int(before)
    collate = dataclasses.replace(cfg.train_dataloader.collate_fn, stop_epoch=before)
    kept = dataclasses.replace(cfg, train_dataloader=dataclasses.replace(cfg.train_dataloader, collate_fn=collate))
    if cfg.no_aug_epoch is not None:
        kept = dataclasses.replace(kept, no_aug_epoch=cfg.epochs - before)
    def span(a: int, b: int) -> str:  # 1-based, both included
        return f"epoch {a}" if a == b else f"epochs {a}..{b}"

    if now is None:
        instead = "this schedule has no stage 2: they would have trained with the augmentations again"
    elif done + 2 > now:  # the next epoch would be the new stop epoch ('epochs 4..3 would have trained', a walk)
        instead = f"{cfg.epochs} epochs put stage 2 at epoch {now + 1}, which would have restarted from best_stg1.pth"
    else:
        instead = (f"{cfg.epochs} epochs put stage 2 at epoch {now + 1}: {span(done + 2, now)} would have trained with "
                   f"the augmentations again, then restarted from best_stg1.pth")
    return kept, (f"note: {Path(name).name} had reached stage 2 (epoch {before + 1} on): {span(done + 2, cfg.epochs)} "
                  f"stay{'s' if done + 2 == cfg.epochs else ''} in it: no strong augmentations, and an epoch that does "
                  f"not improve stage 2's best AP goes back to best_stg1.pth, as stage 2 does ({instead}); for more "
                  f"training with the augmentations, fine-tune from its best weights with -t")


def _other_size_note(cfg: Config, state: Dict[str, Any], name: str) -> str:
    """A note when ``cfg`` evaluates at the recipe's input size while the checkpoint ``state`` (read
    from ``name``) was trained at another (``--imgsz``, ``-u eval_spatial_size``): the published
    command evaluates at the recipe's, which scores a 320 px model at 640 px; ``""`` otherwise (the
    size given on the command line, or a checkpoint without its config)."""
    trained = (state.get("config") or {}).get("eval_spatial_size")
    here = cfg.eval_spatial_size
    if not trained or not here or list(trained) == list(here) or from_command_line(cfg, "eval_spatial_size"):
        return ""
    h, w = (int(v) for v in trained)
    size = str(h) if h == w else f"{h} {w}"
    return (f"note: evaluating at {here[0]}x{here[1]}, the recipe's eval_spatial_size; {Path(name).name} was trained at "
            f"{h}x{w}: add --imgsz {size} to evaluate it at its own size")


def _trained_tiles(train_set: Any) -> Optional[Dict[str, Any]]:
    """The checkpoints' ``tiles`` entry of a run whose train set is a tiling (``dfine data tile``):
    ``{"size": [h, w], "overlap": f}``; None otherwise."""
    info = tiles_info(train_set.ann_file) if train_set is not None and getattr(train_set, "ann_file", None) else None
    tile = trained_tile(info)
    return {"size": list(tile), "overlap": float(info.get("overlap", 0.2))} if tile is not None else None


def _unsliced_note(state: Dict[str, Any], name: str, val_set: Any) -> str:
    """A note when the checkpoint ``state`` (read from ``name``) was trained on tiles and is evaluated
    unsliced on val images :data:`~dfine.slicing.UNSLICED_SHRINK` times them or more (a walk: AP 0.3
    whole, 2.0 sliced, and no word why); ``""`` otherwise (on tiles, or images near their size)."""
    tile = trained_tile(state.get("tiles"))
    if tile is None or tiles_info(val_set.ann_file) is not None:
        return ""
    return unsliced_note(Path(name).name, tile, val_set.image_sizes(), val=True) or ""


def _datasets(cfg: Config, test_only: bool, seed: int) -> Tuple[Any, Any]:
    """The val and (unless ``test_only``) train datasets; the check errors of both files said in one
    ``DatasetError`` (each file's summary with its commands), not the val file's alone and the train
    file's on the next run."""
    built, errors = {}, []
    for split in ("val",) if test_only else ("train", "val"):  # train's error first, as a recipe lists them
        try:
            built[split] = build_dataset(cfg, split, seed=seed)
        except DatasetError as exc:
            errors.append(str(exc))
    if errors:  # one file for both splits gives one error, said once
        raise DatasetError("\n".join(dict.fromkeys(errors)))
    train = built.get("train")
    if train is not None and len(train) and not train.boxes_per_image().any():  # a walk trained on 0 boxes
        raise DatasetError(f"the train set has no box to learn from: its {counted(len(train), 'image')} are all "
                           f"background in {train.ann_file} (crowd boxes are ignored); dfine data check "
                           f"{shlex.quote(str(train.ann_file))} says what it holds")
    return built["val"], train
