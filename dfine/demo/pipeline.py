"""``dfine demo``: generate the shapes dataset, train a D-FINE N on the CPU from the custom
recipe, evaluate, export ONNX, predict on the val images with ONNX Runtime, and write
``runs/demo/``: checkpoints, ``metrics.json`` and pictures.

:func:`demo_config` is the recipe as the demo runs it (the starting point measured in issue
13): from scratch (no pretrained backbone), 192 px, batch 8, float32, lr 8e-4 for all groups,
100 queries, 50 warm-up steps, EMA warm-up 200, 7 epochs with the lr drop and the plain
(no strong augmentation) pipeline in the last one; of the recipe's augmentations only the
photometric distortion and the horizontal flip.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import DfineError
from ..recipes import RECIPES_DIR
from .shapes import ShapesDataset, ShapesSpec, make_shapes_dataset

__all__ = ["DemoSettings", "DemoResult", "RECIPE", "demo_config", "run_demo"]

RECIPE = RECIPES_DIR / "dfine" / "custom" / "dfine_hgnetv2_n_custom.yml"
PICTURES = ("curves.png", "pr_curves.png", "confusion_matrix.png", "predictions.png", "fdr.png")


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains and where it writes. ``max_steps``: stop each epoch after this many
    steps (tests); ``threads``: torch CPU threads (default: torch's own choice)."""

    output_dir: Path = Path("runs/demo")
    shapes: ShapesSpec = field(default_factory=ShapesSpec)
    image_size: int = 192
    epochs: int = 7
    batch_size: int = 8
    lr: float = 8e-4
    num_queries: int = 100
    num_denoising: int = 100
    warmup_steps: int = 50
    ema_warmups: int = 200
    max_steps: Optional[int] = None
    threads: Optional[int] = None
    seed: int = 0
    progress: bool = True
    num_preview: int = 16

    @property
    def data_dir(self) -> Path:
        return self.output_dir / "data"


@dataclass
class DemoResult:
    """``metrics`` as written to ``metrics.json``; ``pictures`` the PNG files written."""

    metrics: Dict[str, Any]
    pictures: List[Path]
    checkpoint: Path
    onnx: Path


def demo_config(settings: DemoSettings, data: ShapesDataset) -> Any:
    """The custom N recipe with the demo's overrides (see the module docstring)."""
    from ..config import load_config

    if not RECIPE.is_file():
        raise DfineError(f"the demo needs the recipe {RECIPE}; run it from a clone of the repository "
                         f"(pip install -e .)")
    s, last = settings, settings.epochs - 1
    no_decay = ("[{params: '^(?=.*backbone)(?=.*norm|bn).*$', weight_decay: 0.0}, "
                "{params: '^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$', weight_decay: 0.0}]")
    overrides = [
        f"train_dataloader.dataset.img_folder={data.images('train')}",
        f"train_dataloader.dataset.ann_file={data.ann_file('train')}",
        f"val_dataloader.dataset.img_folder={data.images('val')}",
        f"val_dataloader.dataset.ann_file={data.ann_file('val')}",
        "HGNetv2.pretrained=False", "use_amp=False", "device=cpu", "sync_bn=False", f"seed={s.seed}",
        f"eval_spatial_size=[{s.image_size}, {s.image_size}]",
        f"train_dataloader.total_batch_size={s.batch_size}", "train_dataloader.num_workers=0",
        "val_dataloader.total_batch_size=16", "val_dataloader.num_workers=0",
        f"optimizer.lr={s.lr}", f"optimizer.params={no_decay}",  # one lr for every group
        f"epochs={s.epochs}", f"lr_scheduler.milestones=[{last}]",
        f"lr_warmup_scheduler.warmup_duration={s.warmup_steps}", f"ema.warmups={s.ema_warmups}",
        f"train_dataloader.collate_fn.stop_epoch={last}",
        # light augmentation: the recipe's zoom-out and IoU crop slow a 7-epoch run down (shrunk or cut shapes)
        "train_dataloader.dataset.transforms.ops=[{type: RandomPhotometricDistort, p: 0.5}, {type: RandomHorizontalFlip}, "
        f"{{type: Resize, size: [{s.image_size}, {s.image_size}]}}, {{type: SanitizeBoundingBoxes, min_size: 1}}, "
        "{type: ConvertPILImage, dtype: float32, scale: true}, {type: ConvertBoxes, fmt: cxcywh, normalize: true}]",
        "train_dataloader.dataset.transforms.policy.ops=[RandomPhotometricDistort]",
        f"DFINETransformer.num_queries={s.num_queries}", f"DFINETransformer.num_denoising={s.num_denoising}",
        f"DFINEPostProcessor.num_top_queries={s.num_queries}",
        f"output_dir={s.output_dir}", "checkpoint_freq=1000", "print_freq=0",
    ]
    return load_config(RECIPE, overrides)


def _check(settings: DemoSettings) -> None:
    """One-line errors for settings the model cannot run with."""
    size = settings.image_size
    if size < 32 or size % 32:
        raise DfineError(f"demo image size {size} is not a positive multiple of 32 (e.g. {max(32, round(size / 32) * 32)})")
    tokens = (size // 16) ** 2 + (size // 32) ** 2  # the N encoder's two levels, strides 16 and 32
    if tokens < settings.num_queries:
        raise DfineError(f"demo image size {size} gives {tokens} encoder tokens, fewer than the {settings.num_queries} "
                         f"queries; use an image size of at least 160")


def _say(text: str) -> None:
    from tqdm import tqdm
    tqdm.write(text)


def _train(settings: DemoSettings, cfg: Any) -> Tuple[Any, float]:
    """Train with :class:`~dfine.engine.trainer.Trainer`; prints the run's ETA after each epoch.
    Returns the trainer and the seconds it took (per-epoch evaluation and checkpoints included)."""
    from ..engine.trainer import Trainer

    class DemoTrainer(Trainer):
        warn_earlier_run = False  # the demo starts over: its advice to resume with -r is not for dfine demo
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.first_epoch, self.started = self.last_epoch + 1, time.perf_counter()
            self.warmup_note = ""  # its warmup (DemoSettings.warmup_steps) is chosen for its own few steps

        def _interrupted(self, epoch: int, evaluating: bool = False) -> str:
            # the demo has no resume: its steps after training would not follow a resumed training
            _say(f"stopped by {self.stop_signal} during epoch {epoch + 1} of {self.cfg.epochs}: the demo ends here "
                 f"(no export, predictions or pictures of a half-trained model); the same dfine demo command "
                 f"starts it again")
            return self.stop_signal or "SIGINT"

        def train_one_epoch(self, epoch: int) -> Dict[str, float]:
            stats = super().train_one_epoch(epoch)
            done = epoch + 1 - self.first_epoch
            left = (time.perf_counter() - self.started) / max(done, 1) * (self.cfg.epochs - epoch - 1)
            _say(f"epoch {epoch + 1}/{self.cfg.epochs} trained; about {left / 60:.1f} min of training left")
            return stats

    from ..engine.summary import data_command
    # the eval command it prints at the end of training: the dataset folder's, not the recipe's 600 characters
    command = data_command(settings.data_dir, "dfine_n", [("--imgsz", settings.image_size)])
    trainer = DemoTrainer(cfg, max_steps=settings.max_steps, progress=settings.progress, command=command)
    if trainer.fit()["stopped"] in ("SIGINT", "SIGTERM"):  # it went on to export and draw the half-trained model
        raise KeyboardInterrupt
    return trainer, time.perf_counter() - trainer.started


def _truth(ann: Dict[str, Any]) -> Dict[int, List[Tuple[int, Tuple[float, float, float, float]]]]:
    """Ground truth per image id: ``(label, (x0, y0, x1, y1))`` with labels in category order."""
    labels = {c["id"]: i for i, c in enumerate(sorted(ann["categories"], key=lambda c: c["id"]))}
    out: Dict[int, List] = {im["id"]: [] for im in ann["images"]}
    for a in ann["annotations"]:
        x, y, w, h = a["bbox"]
        out[a["image_id"]].append((labels[a["category_id"]], (x, y, x + w, y + h)))
    return out


def _predict_onnx(onnx_path: Path, data: ShapesDataset, ann: Dict[str, Any], progress: bool
                  ) -> Tuple[List[Any], List[Dict[str, Any]], float]:
    """Every val image through ONNX Runtime one at a time: detections (all scores), COCO
    results and the median latency per image in ms (reading the file excluded)."""
    import statistics

    from ..inference import Detector, load_image

    detector = Detector(onnx_path, backend="onnxruntime", conf=0.0, batch_size=1, clip=False)  # evaluated: raw boxes
    images = [(im["id"], load_image(data.images("val") / im["file_name"])) for im in ann["images"]]
    for _ in range(3):  # warm-up
        detector.predict_pil([images[0][1]])
    items = images
    if progress:
        from ..text import progress_bar
        items = progress_bar(iterable=images, desc="predict (ONNX Runtime)", unit="img", leave=False,
                             dynamic_ncols=True)
    dets, results, times = [], [], []
    for image_id, image in items:
        start = time.perf_counter()
        det = detector.predict_pil([image])[0]
        times.append(time.perf_counter() - start)
        dets.append(det)
        results.extend(det.to_coco(image_id))
    return dets, results, 1000 * statistics.median(times)


def _pictures(out: Path, trainer: Any, model: Any, data: ShapesDataset, ann: Dict[str, Any], dets: Sequence[Any],
              results: Sequence[Dict[str, Any]], metrics: Any, names: List[str], num_preview: int) -> List[Path]:
    """Write the five pictures of :data:`PICTURES` into ``out``."""
    import numpy as np
    import torch

    from ..engine.plots import confusion_matrix, plot_confusion_matrix, plot_pr_curves
    from ..inference import load_image
    from .pictures import plot_curves, plot_fdr, plot_prediction_grid, trace_fdr

    truth = _truth(ann)
    shown = ann["images"][:num_preview]
    images = [load_image(data.images("val") / im["file_name"]) for im in shown]
    busiest = max(range(len(shown)), key=lambda i: (len(truth[shown[i]["id"]]), -i))  # FDR on the busiest image
    tensor = torch.from_numpy(np.asarray(images[busiest], dtype=np.float32) / 255).permute(2, 0, 1)
    matrix, matrix_names = confusion_matrix(ann, results, iou=0.5, min_score=0.5)
    model.eval()
    return [
        plot_curves(trainer.step_losses, trainer.history, out / "curves.png"),
        plot_pr_curves(metrics, out / "pr_curves.png", title=f"precision-recall, val ({len(ann['images'])} images)"),
        plot_confusion_matrix(matrix, matrix_names, out / "confusion_matrix.png"),
        plot_prediction_grid(images, dets[:len(shown)], [truth[im["id"]] for im in shown], names,
                             out / "predictions.png"),
        plot_fdr(images[busiest], trace_fdr(model, tensor), names, out / "fdr.png", truth=truth[shown[busiest]["id"]]),
    ]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def run_demo(settings: DemoSettings = DemoSettings()) -> DemoResult:
    """The whole demo; returns what it measured and wrote. See the module docstring."""
    import torch

    from ..checkpoint import load_checkpoint, load_model
    from ..models.dfine import build_from_config
    from ..engine.evaluator import coco_metrics
    from ..export.onnx import export_onnx

    _check(settings)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _say(f"[1/5] shapes dataset: {settings.shapes.num_train} train + {settings.shapes.num_val} val images of "
         f"{settings.shapes.num_classes} classes -> {settings.data_dir}")
    data = make_shapes_dataset(settings.data_dir, settings.shapes, progress=settings.progress)
    cfg = demo_config(settings, data)
    _say(f"[2/5] training D-FINE N from scratch on the CPU ({torch.get_num_threads()} threads): "
         f"{settings.epochs} epochs at {settings.image_size} px, batch {settings.batch_size}")
    trainer, train_seconds = _train(settings, cfg)
    checkpoint = out / "last.pth"

    _say("[3/5] exporting ONNX")
    loaded = load_model(checkpoint, num_top_queries=settings.num_queries)
    onnx_path = export_onnx(loaded, out / "model.onnx")

    _say("[4/5] predicting the val images with ONNX Runtime and evaluating")
    ann = json.loads(data.ann_file("val").read_text())
    dets, results, latency_ms = _predict_onnx(onnx_path, data, ann, settings.progress)
    metrics = coco_metrics(ann, results)

    _say("[5/5] pictures")
    model = build_from_config(loaded.config)  # not deployed: the FDR picture reads every decoder layer
    load_checkpoint(model, checkpoint)  # the EMA weights, as exported
    pictures = _pictures(out, trainer, model, data, ann, dets, results, metrics, list(loaded.class_names),
                         settings.num_preview)
    stats = metrics.as_dict()
    last = trainer.history[-1] if trainer.history else {}
    record = {
        "mAP": stats["AP"], "mAP50": stats["AP50"], "mAP75": stats["AP75"],
        "per_class_AP": {metrics.names[c]: ap for c, ap in metrics.per_class.items()},
        "train_seconds": round(train_seconds, 1), "total_seconds": round(time.perf_counter() - started, 1),
        "onnx_latency_ms_per_image": round(latency_ms, 2),
        "torch_last_epoch": {"mAP": last.get("test_AP"), "mAP50": last.get("test_AP50")},
        "evaluated_with": "ONNX Runtime predictions on the val images (faster-coco-eval)",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(settings).items()},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average": list(os.getloadavg()), "cpu": platform.processor() or platform.machine()},
    }
    _write_json(out / "metrics.json", record)
    return DemoResult(record, pictures, checkpoint, onnx_path)
