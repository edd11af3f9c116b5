"""A detector's predictions beside the ground truth of a COCO dataset, in the FiftyOne app.

``dfine fiftyone -m MODEL --images DIR --ann-file JSON`` builds a FiftyOne dataset whose
samples hold ``ground_truth`` and ``predictions`` (both ``Detections``), evaluates the
predictions COCO-style (per-sample ``eval_tp`` / ``eval_fp`` / ``eval_fn`` counts, per-box
``eval`` = tp/fp/fn, and the mAP) and opens the app. Without ``--ann-file`` the samples hold
the predictions only.

FiftyOne is optional (``pip install dfine[fiftyone]``) and imported only when a dataset is
built; the conversions to FiftyOne's box format are plain functions over dicts.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from dfine.errors import DfineError

__all__ = ["ImageRecord", "import_fiftyone", "relative_box", "prediction_dicts", "ground_truth_dicts",
           "coco_records", "folder_records", "pick", "build_dataset", "launch"]


def import_fiftyone() -> Any:
    """The ``fiftyone`` module; a one-line ``DfineError`` when it is not installed."""
    try:
        import fiftyone
    except ImportError:
        raise DfineError("the FiftyOne view needs FiftyOne: pip install \"dfine[fiftyone]\"") from None
    return fiftyone


def relative_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> List[float]:
    """FiftyOne's box ``[x, y, w, h]`` in 0..1 of the image from a pixel xyxy box of an image of
    ``width`` x ``height`` pixels."""
    return [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]


def prediction_dicts(dets: Any, names: Optional[Mapping[int, str]] = None) -> List[Dict[str, Any]]:
    """One ``{"label", "bounding_box", "confidence"}`` per detection of a
    :class:`dfine.inference.Detections` (``boxes [K, 4]`` xyxy pixels, ``scores [K]``).

    ``names`` maps category ids to labels (the ground truth's, so both sides use the same names);
    a category missing from it keeps the model's class name."""
    width, height = dets.image_size
    out = []
    for box, score, cat, name in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.category_ids.tolist(),
                                     dets.names):
        label = (names or {}).get(int(cat), name)
        out.append({"label": str(label), "bounding_box": relative_box(*box, width, height),
                    "confidence": float(score)})
    return out


def ground_truth_dicts(annotations: Sequence[Mapping[str, Any]], names: Mapping[int, str], width: int,
                       height: int) -> List[Dict[str, Any]]:
    """One ``{"label", "bounding_box", "iscrowd"}`` per COCO annotation (``bbox`` [x, y, w, h] in
    pixels of a ``width`` x ``height`` image); ``names`` maps category ids to labels."""
    out = []
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        cat = int(ann["category_id"])
        out.append({"label": names.get(cat, str(cat)), "bounding_box": relative_box(x, y, x + w, y + h, width, height),
                    "iscrowd": int(ann.get("iscrowd", 0))})
    return out


@dataclass
class ImageRecord:
    """One image: its path and, for a COCO dataset, its ground truth (FiftyOne dicts)."""

    path: Path
    ground_truth: Optional[List[Dict[str, Any]]] = None


def coco_records(images_dir: Path, ann_file: Path) -> Tuple[List[ImageRecord], Dict[int, str]]:
    """The images of a COCO annotation file with their ground truth, in file order, and the
    category names by id. ``DfineError`` for a missing folder or a bad annotation file."""
    from dfine.data.coco import read_coco_json
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DfineError(f"images folder {images_dir} not found; --images is the folder the file_names of "
                         f"{ann_file} are relative to")
    data = read_coco_json(ann_file)
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
    by_image: Dict[Any, List[Mapping[str, Any]]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    records = [ImageRecord(images_dir / im["file_name"],
                           ground_truth_dicts(by_image.get(im["id"], []), names, im["width"], im["height"]))
               for im in data["images"]]
    return records, names


def folder_records(source: str) -> List[ImageRecord]:
    """The images of a folder, a glob or one image file, without ground truth."""
    from dfine.commands.predict import collect_source
    kind, paths = collect_source(source)
    if kind != "images":
        raise DfineError(f"{source} is a video; the FiftyOne view takes images (a folder, a glob or a file)")
    return [ImageRecord(p) for p in paths]


def pick(records: Sequence[ImageRecord], max_samples: int, seed: int) -> List[ImageRecord]:
    """``max_samples`` records drawn at random with ``seed`` (kept in their order); all when
    ``max_samples`` is 0 or at least their number."""
    if max_samples <= 0 or max_samples >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), max_samples))
    return [records[i] for i in keep]


def _detections(fo: Any, dicts: Sequence[Mapping[str, Any]]) -> Any:
    return fo.Detections(detections=[fo.Detection(**d) for d in dicts])


def build_dataset(detector: Any, records: Sequence[ImageRecord], name: str = "dfine",
                  names: Optional[Mapping[int, str]] = None, persistent: bool = False,
                  progress: bool = True) -> Tuple[Any, Optional[float], List[Tuple[Path, str]]]:
    """A FiftyOne dataset ``name`` (replacing one of that name) with ``predictions`` from
    ``detector`` (a :class:`dfine.Detector`) and, where the records have it, ``ground_truth``,
    evaluated with ``eval_key="eval"``. Returns ``(dataset, mAP or None, unreadable images)``."""
    from tqdm import tqdm
    from dfine.inference import load_image
    fo = import_fiftyone()
    dataset = fo.Dataset(name, overwrite=True, persistent=persistent)
    samples, bad = [], []
    step = detector.batch_size
    for start in tqdm(range(0, len(records), step), desc="predict", unit="batch", disable=not progress):
        chunk, images = [], []
        for rec in records[start:start + step]:
            try:
                images.append(load_image(rec.path))
                chunk.append(rec)
            except DfineError as e:
                bad.append((rec.path, str(e)))
        for rec, dets in zip(chunk, detector.predict_pil(images, [str(r.path) for r in chunk]) if images else []):
            fields = {"predictions": _detections(fo, prediction_dicts(dets, names))}
            if rec.ground_truth is not None:
                fields["ground_truth"] = _detections(fo, rec.ground_truth)
            w, h = dets.image_size
            samples.append(fo.Sample(filepath=str(rec.path.resolve()), metadata=fo.ImageMetadata(width=w, height=h),
                                     **fields))
    if not samples:
        raise DfineError(f"none of the {len(records)} images could be read"
                         + (f" (first: {bad[0][0]}: {bad[0][1]})" if bad else ""))
    dataset.add_samples(samples, progress=progress)
    mean_ap = None
    if any(rec.ground_truth is not None for rec in records):
        results = dataset.evaluate_detections("predictions", gt_field="ground_truth", eval_key="eval",
                                              compute_mAP=True, progress=progress)
        mean_ap = float(results.mAP())
    return dataset, mean_ap, bad


def launch(dataset: Any, port: int = 5151, address: Optional[str] = None, remote: bool = False) -> None:
    """Open the FiftyOne app on ``dataset`` (most false positives first when evaluated) and wait
    until it is closed or Ctrl-C. ``remote``: serve only, open no browser (for a server)."""
    fo = import_fiftyone()
    view = dataset.sort_by("eval_fp", reverse=True) if dataset.has_sample_field("eval_fp") else dataset.view()
    session = fo.launch_app(dataset, view=view, port=port, address=address, remote=remote)
    print(f"FiftyOne app at {session.url} (Ctrl-C to stop)", file=sys.stderr)
    try:
        session.wait()
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
