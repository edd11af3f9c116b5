"""COCO box AP of a model on a loader, with faster-coco-eval (all processes' detections)."""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from dfine.config import queries_override
from dfine.data.cocojson import boxes_per_image
from dfine.text import ap_text, counted, first_few

from . import dist

__all__ = ["NO_BOXES", "STAT_NAMES", "CocoMetrics", "ConfidenceCurve", "coco_metrics", "confidence_curve", "detections_of",
           "evaluate", "match_detections", "write_evaluation"]

# The 12 standard COCO box statistics, in COCOeval.stats order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# (kind, IoU, area, maxDets) of each, as the COCO summary prints them
_SUMMARY_ROWS = tuple((k, iou, area, dets) for k, iou, area, dets in (
    ("AP", "0.50:0.95", "all", 100), ("AP", "0.50", "all", 100), ("AP", "0.75", "all", 100),
    ("AP", "0.50:0.95", "small", 100), ("AP", "0.50:0.95", "medium", 100), ("AP", "0.50:0.95", "large", 100),
    ("AR", "0.50:0.95", "all", 1), ("AR", "0.50:0.95", "all", 10), ("AR", "0.50:0.95", "all", 100),
    ("AR", "0.50:0.95", "small", 100), ("AR", "0.50:0.95", "medium", 100), ("AR", "0.50:0.95", "large", 100)))
#: the per-class table: up to TABLE_ROWS classes one a line, more side by side within TABLE_WIDTH characters
TABLE_ROWS, TABLE_WIDTH, TABLE_COLUMNS = 12, 100, 4
#: COCO's detections an image (its last ``maxDets``); a val set with more boxes in an image is scored with
#: all the model's detections instead (:func:`coco_metrics`)
COCO_MAX_DETS = 100
# the score thresholds a ConfidenceCurve measures: what --conf can be given, in its steps of 0.01
CONF_GRID = np.round(np.arange(1, 100) / 100, 2)
# the F1 below which no --conf is recommended: the boxes kept are then nearly all wrong, and a checkpoint
# carries the recommendation into predict's default (F1 0.02 at --conf 0.05 drew 300 boxes an image: a walk)
MIN_F1 = 0.1
NO_BOXES = ("the validation set has no boxes (only background images): AP cannot be computed; "
            "add annotated images to the validation annotations (a val split drawn from one file: dfine data "
            "convert --seed N draws another)")


@dataclass(frozen=True)
class ConfidenceCurve:
    """What a score threshold (``dfine predict --conf``) keeps: at each threshold of ``conf``
    (0.01 .. 0.99), the ``precision``, ``recall`` and ``f1`` of the detections scoring above it,
    all classes counted together. A detection is right when it covers a box of its class at IoU >=
    ``iou`` that no higher-scoring detection took (COCO's matching at one IoU); ``boxes``: the
    ground-truth boxes (crowd regions left out)."""

    conf: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    boxes: int
    iou: float = 0.5

    @property
    def best(self) -> int:
        """Index of the threshold with the highest F1: the middle of the widest run of thresholds
        that reach it (its ends sit next to some detection's score, so they would move with the data)."""
        top = np.flatnonzero(self.f1 >= self.f1.max() - 1e-9)
        runs = np.split(top, np.flatnonzero(np.diff(top) > 1) + 1)
        widest = max(runs, key=len)
        return int(widest[(len(widest) - 1) // 2])

    def pick(self) -> Optional[Dict[str, float]]:
        """``{"conf", "f1", "precision", "recall", "iou"}`` at the best threshold; None when no
        threshold reaches an F1 of :data:`MIN_F1` (a model that finds next to nothing yet: a walk got
        '--conf 0.01 gives the best F1: 0.00', i.e. draw every box)."""
        i = self.best
        if self.f1[i] < MIN_F1:
            return None
        return {"conf": float(self.conf[i]), "f1": float(self.f1[i]), "precision": float(self.precision[i]),
                "recall": float(self.recall[i]), "iou": float(self.iou)}


def conf_line(pick: Optional[Mapping[str, float]], where: str, python: bool = False) -> str:
    """``--conf 0.35 gives the best F1 on the val set: 0.71 (precision 0.74, recall 0.68; IoU 0.5, all
    classes together)``; a line saying that no threshold reaches :data:`MIN_F1` when ``pick`` is None.
    ``python``: ``conf=0.35``, the word of ``Detector`` and ``dfine.train``'s result (a walk's notebook)."""
    if pick is None:
        return (f"no {'conf' if python else '--conf'} gives an F1 of {MIN_F1:g} or more on {where} at IoU 0.5 (the "
                f"model finds next to nothing yet), so none is recommended")
    said = f"conf={pick['conf']:.2f}" if python else f"--conf {pick['conf']:.2f}"
    return (f"{said} gives the best F1 on {where}: {pick['f1']:.2f} (precision "
            f"{pick['precision']:.2f}, recall {pick['recall']:.2f}; IoU {pick['iou']:g}, all classes together)")


@dataclass
class CocoMetrics:
    """COCO statistics (``stats`` in :data:`STAT_NAMES` order, 0..1), AP per category and the
    raw evaluation arrays (published ``eval.pth`` content)."""

    stats: List[float]
    per_class: Dict[int, float] = field(default_factory=dict)  # category id -> AP (-1: no GT)
    names: Dict[int, str] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)
    classes: Tuple[int, ...] = ()  # the model's category ids, when known: the table lists each of them
    confidence: Optional[ConfidenceCurve] = field(default=None, repr=False)
    # the detections of up to SAMPLE_IMAGES images with ground truth, spread over the set: image id -> results
    samples: Dict[int, List[Mapping[str, Any]]] = field(default_factory=dict, repr=False)
    max_dets: int = COCO_MAX_DETS  # detections an image the AP and AR count (COCO's last maxDets)
    max_dets_fixed: bool = False  # max_dets given by the recipe (evaluator.max_dets), not chosen by the set
    sliced: bool = False  # the detections of sliced inference (a dense set's max_dets: sliced_max_dets)
    most_boxes: int = 0  # the most (non-crowd) boxes one evaluated image holds
    # how the images were sliced (tile [h, w], overlap, merge, iou, full), recorded in the metrics file; None unsliced
    slicing: Optional[Dict[str, Any]] = None
    boxes: Dict[int, int] = field(default_factory=dict)  # category id -> its (non-crowd) boxes in the evaluated images
    confusion_conf: float = 0.5  # the --conf of :meth:`confusion` (the best F1's, else 0.5)
    # what confusion() counts, compact (a run keeps up to three evaluations): the categories, the evaluated
    # image ids, their non-crowd boxes [N, 6] (image id, category id, x, y, w, h) and the detections at
    # confusion_conf or above [M, 7] (the same and the score)
    confusion_source: Optional[Tuple[List[Dict[str, Any]], np.ndarray, np.ndarray, np.ndarray]] = field(
        default=None, repr=False, compare=False)
    counted_confusion: Optional[np.ndarray] = field(default=None, repr=False, compare=False)  # confusion()'s

    def confusion(self) -> Optional[np.ndarray]:
        """:func:`~dfine.engine.plots.confusion_matrix` ``[K + 1, K + 1]`` of the detections at
        :attr:`confusion_conf`, counted when first asked (as costly as the evaluation itself on a large
        set, and needed for the best weights' only); None without a box to count against."""
        if self.confusion_source is None:
            return None
        if self.counted_confusion is None:
            from .plots import confusion_matrix
            categories, image_ids, truth, dets = self.confusion_source
            ann = {"categories": categories, "images": [{"id": int(i)} for i in image_ids],
                   "annotations": [{"id": n + 1, "image_id": int(r[0]), "category_id": int(r[1]),
                                    "bbox": [float(v) for v in r[2:6]], "area": float(r[4] * r[5]), "iscrowd": 0}
                                   for n, r in enumerate(truth)]}
            results = [{"image_id": int(r[0]), "category_id": int(r[1]), "bbox": [float(v) for v in r[2:6]],
                        "score": float(r[6])} for r in dets]
            self.counted_confusion = confusion_matrix(ann, results, min_score=self.confusion_conf)[0]
        return self.counted_confusion

    @property
    def ap(self) -> float:
        return self.stats[0]

    @property
    def has_ground_truth(self) -> bool:
        """False when the evaluated images hold no (non-crowd) box: every statistic is then -1."""
        return any(s >= 0 for s in self.stats) or any(ap >= 0 for ap in self.per_class.values())

    def as_dict(self) -> Dict[str, float]:
        return dict(zip(STAT_NAMES, self.stats))

    def to_json(self) -> Dict[str, Any]:
        """What ``eval.json`` holds: ``stats`` by name, ``per_class`` AP and ``names`` by category id
        (as strings, JSON's keys); ``slice``: how a sliced evaluation cut the images."""
        out = {"stats": self.as_dict(), "per_class": {str(k): v for k, v in self.per_class.items()},
               "names": {str(k): v for k, v in self.names.items()}, "max_dets": self.max_dets,
               "boxes": {str(k): v for k, v in self.boxes.items()}}
        if self.confidence is not None:
            out["best_conf"] = self.confidence.pick()
        if self.slicing is not None:
            out["slice"] = dict(self.slicing)
        return out

    def summary(self) -> str:
        """One line: AP, AP50, AP75, APs/m/l and AR100 (``AR300`` when :attr:`max_dets` is 300) in
        percent; ``-`` for a statistic COCO could not compute (-1: no ground-truth box of that size),
        which read ``-100.0``."""
        if not self.has_ground_truth:
            return NO_BOXES
        d = self.as_dict()
        shown = {"AR100": f"AR{self.max_dets}"}
        return "  ".join(f"{shown.get(k, k)} {ap_text(d[k])}" if d[k] >= 0 else f"{shown.get(k, k)} -"
                         for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"))  # ap_text: 0.007, not 0.0

    def dense_note(self) -> Optional[str]:
        """A line when the evaluated images hold more boxes than COCO's 100 detections an image: that
        AP and AR count the model's :attr:`max_dets` instead, and when an image holds more boxes than
        even those, how to raise them; None otherwise (COCO's own sets)."""
        if self.most_boxes <= COCO_MAX_DETS:
            return None
        if self.max_dets_fixed:
            return (f"note: an evaluated image holds up to {self.most_boxes} boxes: AP and AR count the top "
                    f"{self.max_dets} detections of each image, as the recipe's evaluator.max_dets says"
                    + (" (the published evaluation's)" if self.max_dets == COCO_MAX_DETS else "")
                    + ("; more boxes than that can never all be found" if self.most_boxes > self.max_dets else ""))
        if self.sliced:
            return (f"note: an evaluated image holds up to {self.most_boxes} boxes: AP and AR count the top "
                    f"{self.max_dets} detections of each image (twice its {self.most_boxes} boxes, rounded up to "
                    f"hundreds: sliced inference gives an image thousands, and a limit of the set's compares any "
                    f"two models), not COCO's {COCO_MAX_DETS}, which would cap the recall")
        text = (f"note: an evaluated image holds up to {self.most_boxes} boxes: AP and AR count the top {self.max_dets} "
                f"detections of each image, not COCO's {COCO_MAX_DETS}, which would cap the recall (the published "
                f"evaluation counts {COCO_MAX_DETS})")
        if self.most_boxes > self.max_dets:
            text += (f"; more boxes than the model's {self.max_dets} detections can never all be found: train with "
                     f"{queries_override()} (N above {self.most_boxes})")
        return text

    def coco_summary(self) -> str:
        """The 12 lines every COCO tool prints (``Average Precision  (AP) @[ IoU=0.50:0.95 |
        area=   all | maxDets=100 ] = 0.412``), or one line saying that there is no box to
        evaluate against."""
        if not self.has_ground_truth:
            return NO_BOXES
        return "\n".join(f" {'Average Precision' if kind == 'AP' else 'Average Recall':<18} ({kind}) @[ IoU={iou:<9} | "
                         f"area={area:>6s} | maxDets={self.max_dets if dets == COCO_MAX_DETS else dets:>3d} ] = "
                         f"{value:0.3f}" for (kind, iou, area, dets), value in zip(_SUMMARY_ROWS, self.stats))

    def table(self) -> str:
        """Per-category AP table of the categories with ground truth; with ``classes`` known, a
        last line names the model's classes without a box in the evaluated set (such a class, e.g.
        one box in train and none in val, was left out of the table without a word)."""
        rows = [(self.names.get(c, str(c)), ap, self.boxes.get(c)) for c, ap in self.per_class.items() if ap >= 0]
        if not rows:
            return "(no categories with ground truth)"
        width = max(len(n) for n, _, _ in rows)
        # the boxes each AP rests on: a rare class's 0.0 on 5 boxes read as a 0.0 on 50 (a walk)
        counts = [f"  {n:>5}" if n is not None else "" for _, _, n in rows]
        tail = max(len(c) for c in counts)
        if tail or len(rows) > TABLE_ROWS:
            width = max(width, len("category"))  # the headers line up with their columns
        # many classes side by side, filled down each column (53 cards were 54 lines an epoch, a walk)
        per_row = 1
        if len(rows) > TABLE_ROWS:
            per_row = max(1, min(TABLE_COLUMNS, TABLE_WIDTH // (width + 11 + tail)))
        cells = [f"{n.ljust(width)}  {100 * ap:5.1f}{c.rjust(tail)}" for (n, ap, _), c in zip(rows, counts)]
        tall = -(-len(cells) // per_row)
        head = f"{'category'.ljust(width)}  {'AP %':>{5 if per_row > 1 or tail else 4}}" + ("  boxes" if tail else "")
        lines = ["    ".join([head] * min(per_row, len(cells)))]
        lines += ["    ".join(cells[r + k * tall] for k in range(per_row) if r + k * tall < len(cells)).rstrip()
                  for r in range(tall)]
        absent = [self.names.get(c, str(c)) for c in self.classes if self.per_class.get(c, -1.0) < 0]
        if absent:
            shown = first_few(absent, 8)
            lines.append(f"not in this set (no box to score): {counted(len(absent), 'class', 'classes')}: {shown}"
                         if len(absent) > 1 else f"not in this set (no box to score): {shown}")
        foreign = self._not_the_models()
        if foreign:
            lines.append(foreign)
        return "\n".join(lines)

    def _not_the_models(self) -> Optional[str]:
        """With ``classes`` known, a line naming the set's classes with boxes that the model has not (a walk's
        horse in a bull-and-pig model's val file: counted as AP 0 in the mean without a word), and the AP over
        the model's own; None when every class with boxes is the model's."""
        if not self.classes:
            return None
        foreign = [c for c, ap in self.per_class.items() if ap >= 0 and c not in self.classes]
        if not foreign:
            return None
        shown = first_few([f"{self.names.get(c, str(c))} ({counted(self.boxes[c], 'box', 'boxes')})"
                           if c in self.boxes else self.names.get(c, str(c)) for c in foreign], 6)
        own = [self.per_class[c] for c in self.classes if self.per_class.get(c, -1.0) >= 0]
        mean = (f"; the AP over the model's {counted(len(own), 'class', 'classes')} alone: "
                f"{100 * sum(own) / len(own):.1f}%" if own else "")
        return f"not the model's classes (it cannot find them; the mean AP counts them as 0): {shown}{mean}"


def _gt(ann: Union[str, Mapping[str, Any]]) -> Any:
    """The ground truth, annotation ids re-numbered 1..M: faster-coco-eval uses them as match
    markers where 0 means unmatched, so a file whose ids start at 0 (Roboflow exports) would be
    scored wrongly. The user's file is not touched."""
    from faster_coco_eval import COCO

    if isinstance(ann, str):
        with open(ann, "rb") as f:
            data = json.load(f)
    else:
        data = copy.deepcopy(dict(ann))
    data["annotations"] = [{**a, "id": i + 1} for i, a in enumerate(data.get("annotations", []))]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        return gt


def sliced_max_dets(most: int) -> int:
    """The detections an image AP and AR count for sliced inference on a set whose images hold up
    to ``most`` boxes (more than COCO's 100): twice that, rounded up to hundreds. Sliced inference
    gives an image every tile's detections (thousands), so "every detection" would be a limit of
    the model's, not the set's."""
    return max(COCO_MAX_DETS, 100 * math.ceil(2 * most / 100))


def coco_metrics(ann: Union[str, Mapping[str, Any]], detections: Sequence[Mapping[str, Any]],
                 image_ids: Optional[Iterable[int]] = None, max_dets: Optional[int] = None,
                 sliced: bool = False) -> CocoMetrics:
    """Box AP of ``detections`` (COCO results: ``image_id``, ``category_id``, ``bbox`` xywh,
    ``score``) against the annotation file (or parsed JSON) ``ann``, on ``image_ids`` (default:
    every image of ``ann``); ``max_dets``: the detections an image AP and AR count (the recipe's
    ``evaluator.max_dets``), None: COCO's 100, or on a set with an image of more than 100 boxes
    every detection (``sliced`` inference's: :func:`sliced_max_dets`)."""
    from faster_coco_eval import COCOeval_faster

    gt = _gt(ann)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([dict(d) for d in detections]) if detections else _empty(gt)
        ev = COCOeval_faster(gt, dt, iouType="bbox", print_function=lambda *a, **k: None)
        if image_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in image_ids)
        most = max(boxes_per_image(gt.dataset, ev.params.imgIds).values(), default=0)
        fixed = max_dets is not None
        if not fixed:
            max_dets = COCO_MAX_DETS
            if most > COCO_MAX_DETS and sliced:
                max_dets = sliced_max_dets(most)
            elif most > COCO_MAX_DETS:  # a dense set (shelves, cells): every detection the model gives an image counts
                given = collections.Counter(int(d["image_id"]) for d in detections)
                max_dets = max(COCO_MAX_DETS, max(given.values(), default=0))
        if max_dets != COCO_MAX_DETS:
            ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in np.asarray(ev.stats)[:12]]
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[int(cat)] = float(p.mean()) if p.size else -1.0
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in gt.dataset.get("categories", [])}
    curve = confidence_curve(gt.dataset, detections, ev.params.imgIds)
    pick = curve.pick() if curve is not None else None
    conf = pick["conf"] if pick else 0.5
    evaluated = set(int(i) for i in ev.params.imgIds)
    truth = [a for a in gt.dataset.get("annotations", [])
             if int(a["image_id"]) in evaluated and not a.get("iscrowd", 0)]
    boxes = collections.Counter(int(a["category_id"]) for a in truth)
    source = None
    if truth:
        kept = [d for d in detections if d["score"] >= conf and int(d["image_id"]) in evaluated]
        source = (list(gt.dataset.get("categories", [])), np.asarray(sorted(evaluated), np.int64),
                  np.asarray([[a["image_id"], a["category_id"], *a["bbox"]] for a in truth], np.float64).reshape(-1, 6),
                  np.asarray([[d["image_id"], d["category_id"], *d["bbox"], d["score"]] for d in kept],
                             np.float64).reshape(-1, 7))
    return CocoMetrics(stats, per_class, names, raw={"precision": precision, "recall": np.asarray(ev.eval["recall"])},
                       confidence=curve, samples=_samples(gt.dataset, detections, ev.params.imgIds),
                       max_dets=max_dets, max_dets_fixed=fixed, sliced=sliced, most_boxes=most,
                       boxes={int(c): boxes.get(int(c), 0) for c in ev.params.catIds},
                       confusion_conf=conf, confusion_source=source)


#: Images whose detections an evaluation keeps for its picture (``val_predictions.png``)
SAMPLE_IMAGES = 12


def _samples(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], image_ids: Iterable[int]
             ) -> Dict[int, List[Mapping[str, Any]]]:
    """The detections of up to :data:`SAMPLE_IMAGES` evaluated images that hold a (non-crowd) box,
    evenly spread over them in id order, by image id."""
    boxed = {int(a["image_id"]) for a in gt.get("annotations", []) if not a.get("iscrowd", 0)}
    ids = [i for i in sorted(int(i) for i in image_ids) if i in boxed]
    if len(ids) > SAMPLE_IMAGES:
        ids = [ids[round(k * (len(ids) - 1) / (SAMPLE_IMAGES - 1))] for k in range(SAMPLE_IMAGES)]
    chosen: Dict[int, List[Mapping[str, Any]]] = {i: [] for i in ids}
    for d in detections:
        if int(d["image_id"]) in chosen:
            chosen[int(d["image_id"])].append(d)
    return chosen


def _by_image(rows: Iterable[Mapping[str, Any]], ids: set, keep: Callable[[Mapping[str, Any]], bool]
              ) -> Dict[int, List[Mapping[str, Any]]]:
    out: Dict[int, List[Mapping[str, Any]]] = {}
    for row in rows:
        if row["image_id"] in ids and keep(row):
            out.setdefault(row["image_id"], []).append(row)
    return out


def _xyxy(rows: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    xywh = torch.tensor([r["bbox"] for r in rows], dtype=torch.float64).reshape(-1, 4)
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)


def match_detections(dets: Sequence[Mapping[str, Any]], boxes: Sequence[Mapping[str, Any]], iou: float) -> np.ndarray:
    """``[D]`` bool: which of ``dets`` (one image, highest score first) take a box of ``boxes`` of
    their class at IoU >= ``iou``, each box taken once, by the best-overlapping detection's turn."""
    return match_boxes(dets, boxes, iou)[0]


def match_boxes(dets: Sequence[Mapping[str, Any]], boxes: Sequence[Mapping[str, Any]], iou: float
                ) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`match_detections` and ``[B]`` bool: which of ``boxes`` a detection took (found)."""
    hit, taken = np.zeros(len(dets), dtype=bool), np.zeros(len(boxes), dtype=bool)
    if not boxes or not dets:
        return hit, taken
    from torchvision.ops import box_iou

    overlap = box_iou(_xyxy(dets), _xyxy(boxes)).numpy()
    same = np.equal.outer([d["category_id"] for d in dets], [b["category_id"] for b in boxes])
    overlap = np.where(same & (overlap >= iou), overlap, -1.0)
    for i in np.flatnonzero((overlap >= 0).any(axis=1)):
        free = np.where(taken, -1.0, overlap[i])
        j = int(np.argmax(free))
        if free[j] >= 0:
            taken[j] = hit[i] = True
    return hit, taken


def confidence_curve(ann: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], image_ids: Iterable[int],
                     iou: float = 0.5) -> ConfidenceCurve:
    """The :class:`ConfidenceCurve` of ``detections`` (COCO results) against the COCO dataset
    ``ann`` (parsed) on ``image_ids``. Detections at or below the lowest threshold (0.01) are not
    matched: no ``--conf`` of the curve keeps them."""
    ids = set(int(i) for i in image_ids)
    floor = float(CONF_GRID[0])
    truth = _by_image(ann.get("annotations", []), ids, lambda a: not a.get("iscrowd", 0))
    found = _by_image(detections, ids, lambda d: d["score"] > floor)
    scores: List[float] = []
    hits: List[np.ndarray] = []
    for image_id, dets in found.items():
        dets = sorted(dets, key=lambda d: -d["score"])
        scores += [d["score"] for d in dets]
        hits.append(match_detections(dets, truth.get(image_id, []), iou))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    right = np.cumsum(np.concatenate(hits)[order]) if hits else np.zeros(0)
    kept = len(sorted_scores) - np.searchsorted(sorted_scores[::-1], CONF_GRID, side="right")  # scores > conf
    tp = np.where(kept > 0, right[np.maximum(kept - 1, 0)] if len(right) else 0, 0).astype(np.float64)
    boxes = sum(len(b) for b in truth.values())
    precision = np.divide(tp, kept, out=np.zeros_like(tp), where=kept > 0)
    recall = tp / boxes if boxes else np.zeros_like(tp)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return ConfidenceCurve(CONF_GRID.copy(), precision, recall, f1, boxes, iou)


PathLike = Union[str, os.PathLike]


def write_evaluation(path: Path, content: Dict[str, Any], *, model: PathLike, ann_file: Optional[PathLike],
                     data: Optional[PathLike], num_images: int) -> None:
    """An ``eval.json``: ``content`` (the metrics), the model file and what it was evaluated on (the
    annotation file, and the dataset folder of ``--data``), atomically. The evaluation of another set
    it replaces is said in a note (the val result was gone without a word after one on the test split)."""
    from dfine.data.convert import write_json_atomic
    where = {"ann_file": os.path.abspath(ann_file) if ann_file else None,
             **({"data": os.path.abspath(data)} if data else {})}
    try:
        before = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        before = {}
    before = before if isinstance(before, dict) else {}
    was, now = before.get("data") or before.get("ann_file"), where.get("data") or where["ann_file"]
    # a zoo name (dfine eval -r dfine_n_coco) as given, not joined to the working folder (a walk's file named none)
    now_model = os.path.abspath(model) if os.path.exists(model) else str(model)
    was_model = before.get("model")
    it = _replaced_words(path)
    if was and now and was != now:
        print(f"note: {path} held the evaluation on {was}; this one on {now} replaces {it}", file=sys.stderr)
    elif was_model and was_model != now_model:  # best_stg1, best_stg2 and last of a run share their folder's file
        print(f"note: {path} held the evaluation of {Path(was_model).name}; this one of {Path(now_model).name} "
              f"replaces {it}", file=sys.stderr)
    write_json_atomic(path, {**content, "model": now_model, **where, "num_images": num_images})


def _replaced_words(path: Path) -> str:
    """What an evaluation into ``path`` replaces: the file, and the pictures drawn beside it when they are
    there (``eval_pr_curves.png``, ...; a walk's note named only the file), with where to write instead."""
    from .plots import EVALUATION_PICTURES, evaluation_prefix
    prefix = evaluation_prefix(path)
    if any((path.parent / (prefix + name)).is_file() for name in EVALUATION_PICTURES):
        return f"it and its pictures ({prefix}*.png; -o DIR writes them elsewhere)"
    return "it (-o DIR writes it elsewhere)"


def _empty(gt: Any) -> Any:
    from faster_coco_eval import COCO

    dt = COCO()
    dt.dataset = {"images": gt.dataset.get("images", []), "categories": gt.dataset.get("categories", []),
                  "annotations": []}
    dt.createIndex()
    return dt


def detections_of(results: Sequence[Mapping[str, torch.Tensor]], image_ids: Sequence[int]) -> List[Dict[str, Any]]:
    """Post-processor output (labels already category ids, boxes xyxy pixels) -> COCO results."""
    out = []
    for image_id, r in zip(image_ids, results):
        boxes = r["boxes"].detach().float().cpu()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for cat, box, score in zip(r["labels"].tolist(), xywh, r["scores"].detach().float().cpu().tolist()):
            if cat >= 0:
                out.append({"image_id": int(image_id), "category_id": int(cat), "bbox": box, "score": score})
    return out


@torch.no_grad()
def evaluate(model: nn.Module, postprocessor: nn.Module, loader: Iterable, device: torch.device,
             ann: Union[str, Mapping[str, Any]], progress: bool = False,
             should_stop: Optional[Callable[[], bool]] = None,
             max_dets: Optional[int] = None) -> Optional[CocoMetrics]:
    """Run ``model`` (eval mode) over ``loader``, gather every process's detections and compute
    COCO box AP against ``ann`` (``max_dets``: as :func:`coco_metrics` takes it). ``postprocessor``
    must map labels to category ids. ``should_stop``: asked before each batch (all processes);
    ``None`` is returned when it says so."""
    model.eval()
    per_image: Dict[int, List[Dict[str, Any]]] = {}
    batches = loader
    if progress and dist.is_main():
        from ..text import progress_bar  # erased in a terminal, one line in a log
        batches = progress_bar(iterable=loader, desc="eval", leave=False, dynamic_ncols=True)
    try:  # the bar closed however the loop ends (one left open redrew itself in a notebook's later cells)
        for images, targets in batches:
            if should_stop is not None and should_stop():
                return None
            outputs = model(images.to(device))
            sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
            ids = [int(t["image_id"]) for t in targets]
            for image_id, result in zip(ids, postprocessor(outputs, sizes)):
                per_image[image_id] = detections_of([result], [image_id])
    finally:
        if hasattr(batches, "close"):
            batches.close()
    merged: Dict[int, List[Dict[str, Any]]] = {}
    for part in dist.all_gather_object(per_image):  # a sampler pads with repeats: keep one copy
        for image_id, dets in part.items():
            merged.setdefault(image_id, dets)
    all_dets = [d for dets in merged.values() for d in dets]
    all_ids = sorted(merged)
    return coco_metrics(ann, all_dets, all_ids, max_dets=max_dets)
