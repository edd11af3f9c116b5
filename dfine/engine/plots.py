"""Evaluation pictures: per-class precision-recall curves, F1 / precision / recall by score
threshold and a detection confusion matrix, computed from faster-coco-eval's results and the
evaluator's :class:`~dfine.engine.evaluator.ConfidenceCurve` (needs matplotlib: ``pip install dfine[plots]``).

Any evaluation can write them: :func:`plot_pr_curves` reads the precision array of a
:class:`~dfine.engine.evaluator.CocoMetrics`, :func:`confusion_matrix` matches COCO results to
the ground truth with faster-coco-eval.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DfineError
from ..text import cut_middle, no_font_note

__all__ = ["pyplot", "plot_pr_curves", "plot_confidence", "plot_prediction_grid", "plot_val_predictions",
           "confusion_matrix", "plot_confusion_matrix", "plot_evaluation", "save_figure"]

PathLike = Union[str, os.PathLike]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or a one-line install hint."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DfineError("pictures need matplotlib: pip install \"dfine[plots]\"") from None
    warnings.filterwarnings("ignore", message=_MISSING_GLYPH.pattern)  # said once, by save_figure
    return plt


# matplotlib's warning for a letter its fonts lack (a class name in Chinese: one warning per letter and draw)
_MISSING_GLYPH = re.compile(r"Glyph \d+ \((.*)\) missing from")
_GLYPHS_SAID: set = set()


def _say_missing_glyphs(caught: Sequence[warnings.WarningMessage]) -> None:
    """One note for the letters no font drew in a picture (matplotlib warns per letter, twice per figure);
    the other warnings go on as they came."""
    lost = []
    for w in caught:
        found = _MISSING_GLYPH.match(str(w.message))
        if found is None:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        letter = found.group(1)
        try:  # matplotlib names it '\\N{CJK UNIFIED IDEOGRAPH-978B}' or '\\U0010fffd'
            letter = letter.encode("ascii").decode("unicode_escape")
        except (UnicodeError, ValueError):
            pass
        lost.append(letter)
    new = sorted(set(lost) - _GLYPHS_SAID)
    if new:
        _GLYPHS_SAID.update(new)
        print(no_font_note("letters", "".join(new), "the pictures show",
                           "in the pictures' names (class names, file names, titles)"), file=sys.stderr)


SAVE_DPI = 110  # pictures' resolution


def save_figure(fig: Any, path: PathLike, dpi: int = SAVE_DPI, tight: bool = False) -> Path:
    """Write ``fig`` to ``path`` (PNG, or the format its suffix names) atomically and close it; ``tight``:
    cropped to what is drawn, labels included (a long class name and the axis title were cut at the edge otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tight = _fit_title(fig) or tight
    # the temporary file keeps the suffix: matplotlib writes the format it names (labels.jpg: a JPEG, not a PNG)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix or '.png'}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
        _say_missing_glyphs(caught)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C, a full disk: the previous picture stays, no half-written one
        tmp.unlink(missing_ok=True)
        raise
    finally:
        pyplot().close(fig)
    return path


def _fit_title(fig: Any) -> bool:
    """Fit ``fig``'s title (``suptitle``) to its width: one wider than the figure is broken into lines
    (:func:`_fit_width`) and the layout redone (``dfine data check --plot``'s grid of one image cut 'a_annotated:
    1 image of 1, boxes as the annotation file has them' at both edges); whether a title still runs past an edge
    (a word wider than the figure), for the picture to be saved cropped to what is drawn, that title included."""
    heading = getattr(fig, "_suptitle", None)
    renderer = fig.canvas.get_renderer()
    room = fig.bbox.width
    if heading is not None and heading.get_text() and heading.get_window_extent(renderer).width > room:
        heading.set_text(_fit_width(fig, heading.get_text(), heading.get_fontsize()))
        if heading.get_in_layout():
            fig.tight_layout()
    titles = list(fig.texts) + [t for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title)]
    return any(t.get_text() and t.get_visible() and (t.get_window_extent(renderer).x0 < -0.5
                                                     or t.get_window_extent(renderer).x1 > room + 0.5) for t in titles)


LEGEND_CLASSES = 12  # more classes than this: their curves in grey and the mean over them in colour


def plot_pr_curves(metrics: Any, path: PathLike, title: str = "precision-recall") -> Path:
    """One precision-recall curve per class at IoU 0.50 (solid) and 0.75 (dashed), all areas,
    100 detections per image, from ``metrics.raw["precision"]`` (COCOeval's ``[T, R, K, A, M]``
    array over its 101 recall thresholds); the legend gives each class's AP50 and AP. With more
    than :data:`LEGEND_CLASSES` classes (a legend past the figure's height) each class is a thin
    grey curve and the mean over the classes, whose AP is the run's, the coloured one."""
    plt = pyplot()
    precision = np.asarray(metrics.raw["precision"])
    recall = np.linspace(0.0, 1.0, precision.shape[1])
    fig, ax = plt.subplots(figsize=(8.4, 4.8))
    shown = [(k, cat) for k, cat in enumerate(metrics.per_class) if not (precision[0, :, k, 0, -1] < 0).all()]
    many = len(shown) > LEGEND_CLASSES
    # a colour each: tab10's repeated from the 11th class on (a walk), tab20's pairs are told apart beside each other
    colors = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    for i, (k, cat) in enumerate(shown):  # classes without ground truth left out
        p50, p75 = precision[0, :, k, 0, -1], precision[5, :, k, 0, -1]
        if many:
            ax.plot(recall, np.clip(p50, 0, None), color="grey", lw=0.6, alpha=0.35)
            continue
        name = metrics.names.get(cat, str(cat))
        ap50 = float(p50[p50 > -1].mean())
        line, = ax.plot(recall, np.clip(p50, 0, None), color=colors(i), lw=2,
                        label=f"{name}  AP50 {100 * ap50:.1f}  AP {100 * metrics.per_class[cat]:.1f}")
        ax.plot(recall, np.clip(p75, 0, None), color=line.get_color(), lw=1, ls="--")
    if many:
        ks = [k for k, _ in shown]
        mean50, mean75 = (np.clip(precision[t, :, ks, 0, -1], 0, None).mean(0) for t in (0, 5))
        ap = np.mean([metrics.per_class[cat] for _, cat in shown])
        ax.plot(recall, mean50, color="tab:blue", lw=2.5,
                label=f"mean of {len(shown)} classes\nAP50 {100 * mean50.mean():.1f}  AP {100 * ap:.1f}")
        ax.plot(recall, mean75, color="tab:blue", lw=1.5, ls="--")
        ax.plot([], [], color="grey", lw=0.6, label="each class, IoU 0.50\n(AP per class: the\nprinted table)")
    # the line-style keys in black: grey is tab10's 8th class colour, and the two keys read as one (a walk)
    ax.plot([], [], color="black", lw=2, label="IoU 0.50")
    ax.plot([], [], color="black", lw=1, ls="--", label="IoU 0.75")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    # beside the axes, not on the curves' low-precision tails; AP in percent, as the terminal prints it
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="AP in %", title_fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confidence(curve: Any, path: PathLike, title: str = "by score threshold") -> Path:
    """F1, precision and recall of the detections above each score threshold (``--conf``) of a
    :class:`~dfine.engine.evaluator.ConfidenceCurve`, with the threshold of the best F1 marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(curve.conf, curve.f1, color="black", lw=2.2, label="F1")
    ax.plot(curve.conf, curve.precision, color="tab:blue", lw=1.3, label="precision")
    ax.plot(curve.conf, curve.recall, color="tab:orange", lw=1.3, label="recall")
    pick = curve.pick()
    if pick is not None:
        ax.axvline(pick["conf"], color="grey", ls="--", lw=1)
        right = pick["conf"] < 0.7  # the label on the side with room, at the foot of the line
        ax.annotate(f"--conf {pick['conf']:.2f}: F1 {pick['f1']:.2f}", (pick["conf"], 0.03),
                    xytext=(5 if right else -5, 0), textcoords="offset points", fontsize=9,
                    ha="left" if right else "right", va="bottom",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
    # the legend in a band of its own above 1.0: at the top right it hid the precision curve running along 1.0 (a walk)
    ax.set(xlabel="--conf (score threshold)", ylabel="all classes together", xlim=(0, 1), ylim=(0, 1.14),
           yticks=np.linspace(0, 1, 6), title=f"{title} (IoU {curve.iou:g}, {curve.boxes} boxes)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", ncol=3, fontsize=8, borderpad=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_prediction_grid(images: Sequence[Any], predictions: Sequence[Any], truths: Sequence[Sequence[Tuple]],
                         class_names: Sequence[str], path: PathLike, conf: float = 0.5, cols: int = 4,
                         source: str = "ONNX Runtime", files: Optional[Sequence[str]] = None,
                         note: str = "", split: str = "val") -> Path:
    """A grid of images with predicted boxes (class colour, name and score) above ``conf`` and
    the ground truth as thin dashed white boxes, those no detection found (same class, IoU 0.5)
    dashed red with their class name (a walk could not tell which true box was the rare class).

    ``images``: PIL images; ``predictions``: :class:`~dfine.inference.Detections` per image (or
    anything with ``boxes`` xyxy px, ``scores`` and ``labels`` indexing ``class_names``);
    ``truths``: per image ``(label, (x0, y0, x1, y1))`` pairs; ``source``: what predicted, in the title;
    ``files``: the images' file names, above each panel's counts (a walk could not tell which image a
    panel was); ``note``: a second line of the title; ``split``: the set the images are of, in the title.
    """
    plt = pyplot()
    colors = plt.get_cmap("tab10")
    cols = max(1, min(cols, len(images)))  # a 1-image set drew a 1320 px canvas, its photo in the left quarter
    side = 3 if cols > 1 else 6  # one image: a panel twice as large, not a 330 px thumbnail
    rows = max(1, math.ceil(len(images) / cols))
    # panels as tall as the tallest image needs (a 4:3 photo alone left a blank band under it), titles beside
    tall = max([min(1.0, max(0.4, im.height / im.width)) for im in images] or [1.0])
    # laid out at the dpi save_figure writes with: a label measured at another dpi came out ~5% wider than
    # measured (the font's hinting), and a label placed to end at the image's right border was cut there
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows), squeeze=False, dpi=SAVE_DPI)
    for ax in axes.flat:
        ax.axis("off")
    labels = []
    for k, (ax, image, det, truth) in enumerate(zip(axes.flat, images, predictions, truths)):
        ax.imshow(image)
        found = _found(det, truth, conf)
        for (label, (x0, y0, x1, y1)), hit in zip(truth, found):
            # a missed box above the detections' (a walk's missed stop sign was hidden under a wrong box)
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white" if hit else _MISSED,
                                       lw=1 if hit else 1.5, ls="--", zorder=1 if hit else 3))
            if not hit:  # placed after the detections' labels (first in the list: the lowest priority)
                text = ax.text(x0, y0, _short(class_names[int(label)]), color="white", fontsize=6, va="top",
                               bbox=dict(facecolor=_MISSED, edgecolor="none", pad=_LABEL_PAD, alpha=0.7),
                               clip_on=True, in_layout=False)
                labels.insert(0, (ax, text, (x0, y0, x1, y1), image.size))
        for i in np.argsort(det.scores, kind="stable"):  # the best last: its label on top of a duplicate's
            (x0, y0, x1, y1), score, label = det.boxes[i], det.scores[i], det.labels[i]
            if score <= conf:  # score > conf kept, as Detector and the --conf curve keep them
                continue
            c = colors(int(label) % 10)
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=c, lw=2))
            text = ax.text(x0, y0, f"{_short(class_names[int(label)])} {score:.2f}", color="white", fontsize=7, va="top",
                           bbox=dict(facecolor=c, edgecolor="none", pad=_LABEL_PAD, alpha=0.85), clip_on=True,
                           in_layout=False)
            labels.append((ax, text, (x0, y0, x1, y1), image.size))
        counts = f"{sum(s > conf for s in det.scores)} found, {int(found.sum())} right / {len(truth)} true"
        ax.set_title(f"{cut_middle(files[k], _FILE_CHARS)}\n{counts}" if files else counts, fontsize=8)
    title = (f"{split} predictions ({source}, score > {conf:g}); dashed: ground truth, red with its class: missed"
             + (f"\n{note}" if note else ""))

    def lay_out(title: str) -> None:  # wide images: panels as tall as they need, with room for the titles
        heading = fig.suptitle(_fit_width(fig, title, 10), fontsize=10)  # (a 4:3 photo alone: a blank band under it)
        heading.set_in_layout(False)  # its room kept here: tight_layout misjudged it beside imshow's aspect
        top = 0.2 * (heading.get_text().count("\n") + 1) + 0.1  # inches of the title's lines
        if tall < 1:
            fig.set_figheight(rows * (side * tall + 0.4) + top)
        fig.tight_layout(rect=(0, 0, 1, 1 - top / fig.get_figheight()))

    lay_out(title)
    labels, tiny = _without_tiny(labels)
    if tiny:  # a 4000 px drone image in a 330 px panel: its 40 px cars were dots under their neighbours' labels
        lay_out(title + f"\nlabels left off: {tiny} {'box' if tiny == 1 else 'boxes'} under {TINY_BOX_PX} px here")
    _place_labels(fig, labels)
    return save_figure(fig, path)


#: Boxes whose longer side is drawn smaller than this (px of the saved picture) have their labels left off in a grid
TINY_BOX_PX = 12


def _without_tiny(labels: Sequence[Tuple[Any, Any, Tuple[float, ...], Tuple[int, int]]]
                  ) -> Tuple[List[Tuple[Any, Any, Tuple[float, ...], Tuple[int, int]]], int]:
    """The ``(axes, text, box, image size)`` labels whose box (x0, y0, x1, y1 image px) is drawn
    :data:`TINY_BOX_PX` or more on its longer side, and how many were not (their texts removed)."""
    kept, tiny = [], 0
    for label in labels:
        ax, text, (x0, y0, x1, y1), _ = label
        if max(x1 - x0, y1 - y0) / _image_px_per_display_px(ax) < TINY_BOX_PX:
            text.remove()
            tiny += 1
        else:
            kept.append(label)
    return kept, tiny


def _image_px_per_display_px(ax: Any) -> float:
    """Image pixels per display pixel of an ``imshow`` axes (square pixels), as laid out now."""
    ax.apply_aspect()  # where imshow's square pixels put the image (else done only when drawn)
    (x_a, _), (x_b, _) = ax.transData.transform([(0, 0), (1, 1)])
    return 1 / abs(x_b - x_a)


def _fit_width(fig: Any, text: str, fontsize: float) -> str:
    """``text`` with each line wider than ``fig`` broken into lines that fit it: at its ``"; "`` where the
    clauses fit, else between words (a 1-image grid's title was cut at both edges)."""
    from matplotlib.font_manager import FontProperties
    renderer = fig.canvas.get_renderer()
    prop = FontProperties(size=fontsize)
    room = 0.96 * fig.get_figwidth() * fig.dpi

    def fits(line: str) -> bool:
        return renderer.get_text_width_height_descent(line, prop, ismath=False)[0] <= room

    out: List[str] = []
    for line in text.split("\n"):
        clauses = [c + ";" for c in line.split("; ")]
        clauses[-1] = clauses[-1][:-1]
        current = ""
        for part in clauses if all(fits(c) for c in clauses) else line.split(" "):
            if current and not fits(f"{current} {part}"):
                out.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
        out.append(current)
    return "\n".join(out)


_LABEL_PAD = 1  # points around a label's text, its coloured band
_NAME_CHARS = 18  # a longer class name is cut in a grid's labels, so that the score beside it stays in the tile


_FILE_CHARS = 36  # a longer file name is cut in the middle in a grid panel's title (its start and end kept)


def _short(name: str, most: int = _NAME_CHARS) -> str:
    return name if len(name) <= most else name[:most - 1].rstrip() + "\u2026"


_MISSED = "#e0301e"  # a true box no detection found


def _found(det: Any, truth: Sequence[Tuple], conf: float, iou: float = 0.5) -> np.ndarray:
    """``[T]`` bool: which ``truth`` boxes (``(label, xyxy)``) the detections of ``det`` above ``conf``
    find, as the --conf curve counts them (:func:`~dfine.engine.evaluator.match_boxes`)."""
    from .evaluator import match_boxes

    def row(label: int, box: Sequence[float]) -> dict:
        x0, y0, x1, y1 = (float(v) for v in box)
        return {"category_id": int(label), "bbox": [x0, y0, x1 - x0, y1 - y0]}

    kept = [i for i in np.argsort(-np.asarray(det.scores), kind="stable") if det.scores[i] > conf]
    return match_boxes([row(det.labels[i], det.boxes[i]) for i in kept], [row(*t) for t in truth], iou)[1]


def _place_labels(fig: Any, labels: Sequence[Tuple[Any, Any, Tuple[float, ...], Tuple[int, int]]]) -> None:
    """Move each ``(axes, text, box, image size)`` label (a text anchored at its top left; per axes in
    rising score) to where :func:`dfine.drawing.place_label` puts the labels of ``dfine predict``: none
    cut at the picture's border, none over a better box's label when a free place is near (a walk: the
    labels of overlapping boxes hid each other's scores), none over much of another box drawn in its panel
    (:data:`dfine.drawing.COVER_SHARE`); sizes in image pixels, measured now that the layout is final."""
    from ..drawing import COVER_SHARE, place_label
    renderer = fig.canvas.get_renderer()
    taken: dict = {}
    boxes: dict = {}  # each panel's boxes drawn (x0, y0, x1, y1 image px)
    for ax in {id(ax): ax for ax, *_ in labels}.values():
        boxes[id(ax)] = np.array([[p.get_x(), p.get_y(), p.get_x() + p.get_width(), p.get_y() + p.get_height()]
                                  for p in ax.patches if hasattr(p, "get_width")], dtype=np.float64).reshape(-1, 4)
    for ax, text, box, size in reversed(labels):  # the best first: its label gets the first choice
        per_px = _image_px_per_display_px(ax)
        pad = _LABEL_PAD * fig.dpi / 72 * per_px
        extent = text.get_window_extent(renderer)
        placed = taken.setdefault(id(ax), [])
        others = boxes[id(ax)]
        others = others[~np.isclose(others, np.asarray(box, dtype=np.float64), atol=1e-3).all(axis=1)]  # not its own
        rect = place_label(box, (extent.width * per_px + 2 * pad, extent.height * per_px + 2 * pad), size, placed,
                           others, COVER_SHARE)
        if rect is None:  # a crowd: the box without its label, which would show half-covered as another score
            text.remove()
            continue
        placed.append(rect)
        text.set_position((rect[0] + pad, rect[1] + pad))


def plot_val_predictions(metrics: Any, ann: Mapping[str, Any], images_dir: Union[PathLike, Mapping[int, Path]],
                         path: PathLike, conf: float, source: str, note: str = "", split: str = "val") -> Path:
    """:func:`plot_prediction_grid` of the images an evaluation kept (``metrics.samples``: COCO
    results by image id) with their ground truth from ``ann`` (the parsed annotation file whose
    images are in ``images_dir``, or ``{image id: file}``), the detections above ``conf``; ``source``
    names the weights; ``note``: a second line of the title; ``split``: the set, in the title."""
    from types import SimpleNamespace

    from ..inference import load_image
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in ann["categories"]}
    # a detection of a category the file does not declare (a COCO model on a subset's file): drawn as its id, where
    # a KeyError ended a walk's run after its epoch
    names.update({int(d["category_id"]): f"category {int(d['category_id'])}" for found in metrics.samples.values()
                  for d in found if int(d["category_id"]) not in names})
    cat_ids = sorted(names)
    label = {c: i for i, c in enumerate(cat_ids)}
    files = {int(im["id"]): im["file_name"] for im in ann["images"]}
    truth: dict = {}
    for a in ann.get("annotations", []):
        if not a.get("iscrowd", 0) and int(a["image_id"]) in metrics.samples:
            x, y, w, h = a["bbox"]
            truth.setdefault(int(a["image_id"]), []).append((label[int(a["category_id"])], (x, y, x + w, y + h)))
    images, dets = [], []
    for image_id, found in metrics.samples.items():
        images.append(load_image(images_dir[image_id] if isinstance(images_dir, Mapping)
                                 else Path(images_dir) / files[image_id]))
        xyxy = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in found)]
        dets.append(SimpleNamespace(boxes=np.asarray(xyxy, np.float32).reshape(-1, 4),
                                    scores=np.asarray([d["score"] for d in found], np.float32),
                                    labels=np.asarray([label[int(d["category_id"])] for d in found], np.int64)))
    return plot_prediction_grid(images, dets, [truth.get(i, []) for i in metrics.samples],
                                [names[c] for c in cat_ids], path, conf=conf, source=source,
                                files=[Path(str(files[i])).name for i in metrics.samples], note=note, split=split)


def confusion_matrix(ann: Union[PathLike, Mapping[str, Any]], detections: Sequence[Mapping[str, Any]],
                     iou: float = 0.5, min_score: float = 0.5) -> Tuple[np.ndarray, List[str]]:
    """A detection confusion matrix ``[K + 1, K + 1]`` (counts) and its K class names.

    Detections with ``score >= min_score`` are matched to ground truth boxes at ``iou``
    regardless of class (faster-coco-eval's ``PreviewResults``). Row ``i < K``: ground truth of
    class ``i``, by predicted class (column ``K``: missed). Row ``K``: detections matching no
    ground truth (background), by predicted class. Crowd regions are not ground truth here (COCO
    ignores them; counted as missed, a crowd box read as a class the model never finds).
    """
    from faster_coco_eval import COCO
    from faster_coco_eval.extra import PreviewResults

    with contextlib.redirect_stdout(io.StringIO()):
        if not isinstance(ann, Mapping):
            with open(ann, "rb") as f:
                ann = json.load(f)
        gt = COCO()
        gt.dataset = {**ann, "annotations": [a for a in ann.get("annotations", []) if not a.get("iscrowd", 0)]}
        gt.createIndex()
        names = [str(c["name"]) for c in gt.dataset["categories"]]
        k = len(names)
        kept = [dict(d) for d in detections if d["score"] >= min_score]
        out = np.zeros((k + 1, k + 1), dtype=np.int64)
        if not kept:  # nothing detected: every ground truth box is missed
            for a in gt.dataset["annotations"]:
                out[list(gt.cats).index(a["category_id"]), k] += 1
            return out, names
        preview = PreviewResults(gt, gt.loadRes(kept), iouType="bbox", iou_tresh=iou, useCats=False)
        cm = preview.compute_confusion_matrix()  # [K, K + 2]: predicted classes, then FP and FN
    out[:k, :k] = cm[:, :k]
    out[:k, k] = cm[:, k + 1]
    out[k, :k] = cm[:, k]
    return out, names


#: classes from which a confusion matrix leaves out those with no box and no detection
MANY_CLASSES = 20


def model_classes_only(matrix: np.ndarray, names: Mapping[int, str], classes: Sequence[int]
                       ) -> Tuple[np.ndarray, List[str], int]:
    """``matrix [K + 1, K + 1]`` of the categories ``names`` (by id, in the matrix's order) and their names,
    less the categories with no count in their row or column that are not the model's ``classes`` (a Roboflow
    set's unused root category, which training leaves out, was an empty row and column: a walk; ``classes``
    empty: not known), or that are any of more than :data:`MANY_CLASSES` (a re-walk's COCO model on a set of
    one class drew 80 x 80 cells, 3099 px wide); and how many of the model's classes were so left out."""
    ids = list(names)
    many = len(ids) > MANY_CLASSES
    drop = [i for i, c in enumerate(ids) if ((classes and c not in classes) or many)
            and not matrix[i].any() and not matrix[:, i].any()]
    keep = [i for i in range(len(ids) + 1) if i not in drop]
    left = sum(1 for i in drop if not classes or ids[i] in classes)
    return matrix[np.ix_(keep, keep)], [str(names[ids[i]]) for i in keep[:-1]], left


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: PathLike, iou: float = 0.5,
                          min_score: float = 0.5, what: str = "", left: int = 0) -> Path:
    """Draw a :func:`confusion_matrix`: colour is the share of its row, text the count; ``what`` (the weights
    and the split) heads the title, as the evaluation's other pictures (a val and a test one looked alike);
    ``left``: the classes left out (:func:`model_classes_only`), said in the title."""
    plt = pyplot()
    labels = list(names) + ["background"]
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    many = len(labels) > 21  # 53 classes drew a 41-inch figure: smaller cells, and the zeros left blank
    side = 1.2 + (max(0.32, 16 / len(labels)) if many else 0.75) * len(labels)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if i == j == len(names) or (many and matrix[i, j] == 0):
                continue
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=6 if many else 10)
    ax.set_xticks(range(len(labels)), labels[:-1] + ["missed"], rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    gone = f"; {left} classes with no box and no detection left out" if left else ""
    ax.set(xlabel="predicted", ylabel="ground truth",
           title=f"{what + chr(10) if what else ''}confusion matrix (IoU {iou:.2f}, score >= {min_score:.2f}{gone})")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of row")
    fig.tight_layout()
    return save_figure(fig, path, tight=True)


def plot_evaluation(metrics: Any, out: Path, what: str,
                    val: Optional[Tuple[Union[PathLike, Mapping[str, Any], None], Any]] = None,
                    conf: Optional[float] = None, prefix: str = "", split: str = "val") -> List[Path]:
    """``pr_curves.png`` (per class), ``confidence.png`` (F1, precision and recall by ``--conf``)
    and ``confusion_matrix.png`` (at the best F1's ``--conf``) of one evaluation (a
    :class:`~dfine.engine.evaluator.CocoMetrics`) in ``out``, each name after ``prefix``
    (``eval_test_``: ``eval_test_pr_curves.png``); ``what`` names the weights and data in the titles.
    With ``val`` (the annotation file evaluated, or its parsed content, and its images folder, or
    ``{image id: file}``) also ``val_predictions.png`` (with a ``prefix``: ``predictions.png``, of the
    ``split`` named in its title): the images the evaluation kept with their detections above ``conf``
    (default 0.5) and ground truth. Nothing without matplotlib (its caller says so) or without a box to
    evaluate against."""
    if not metrics.has_ground_truth:
        return []
    try:
        pyplot()
    except DfineError:
        return []
    out = Path(out)
    paths = [plot_pr_curves(metrics, out / f"{prefix}pr_curves.png", title=f"precision-recall: {what}")]
    if metrics.confidence is not None:
        paths.append(plot_confidence(metrics.confidence, out / f"{prefix}confidence.png", title=what))
    matrix = metrics.confusion()
    if matrix is not None:
        matrix, names, left = model_classes_only(matrix, metrics.names, metrics.classes)
        paths.append(plot_confusion_matrix(matrix, names, out / f"{prefix}confusion_matrix.png",
                                           min_score=metrics.confusion_conf, what=what, left=left))
    if val is not None and val[0] and metrics.samples:
        from ..data.coco import read_coco_json
        from ..inference import DEFAULT_CONF
        from .evaluator import MIN_F1
        ann = val[0] if isinstance(val[0], Mapping) else read_coco_json(Path(val[0]))
        # twelve panels of '0 found' at 0.5 told a walk nothing of why
        note = ""
        if conf is None and metrics.confidence is not None:
            note = (f"no --conf is recommended (none gives an F1 of {MIN_F1:g} on this set: the model finds next to "
                    f"nothing yet), so drawn at {DEFAULT_CONF:g}")
        # an evaluation's of the test split was 'eval_test_val_predictions.png', titled 'val predictions' (a walk)
        name = f"{prefix}predictions.png" if prefix else "val_predictions.png"
        # its title names the split first: 'test predictions (m.onnx, score > ...)', not '(m.onnx, test, ...)' again
        tail = f", {split}"  # only the split itself: a file val_super.json read 'm.onnx_super.json' (a walk)
        source = what[:-len(tail)] if what.endswith(tail) else what
        paths.append(plot_val_predictions(metrics, ann, val[1], out / name, conf=DEFAULT_CONF if conf is None else conf,
                                          source=source, note=note, split=split))
    return paths


#: What :func:`plot_evaluation` may draw, each name after a prefix
EVALUATION_PICTURES = ("pr_curves.png", "confidence.png", "confusion_matrix.png", "predictions.png")


def evaluation_prefix(metrics_file: Path) -> str:
    """The prefix of an evaluation's pictures: its metrics file's name without ``.json``, and ``_``."""
    name = Path(metrics_file).name
    return (name[:-len(".json")] if name.endswith(".json") else name) + "_"


def evaluation_pictures(metrics: Any, metrics_file: Path, what: str, val: Tuple[Any, Any],
                        pick: Optional[Mapping[str, float]], split: str = "val") -> str:
    """Draw :func:`plot_evaluation` of one ``dfine eval`` beside its ``metrics_file`` (``eval.json`` ->
    ``eval_pr_curves.png``, ``model.onnx.eval_test.json`` -> ``model.onnx.eval_test_pr_curves.png``),
    ``eval_predictions.png`` at ``pick``'s ``--conf`` (the best F1 on this set; 0.5 without one) titled
    with the ``split``, and return the line that names them (or says why there are none)."""
    try:
        pyplot()
    except DfineError:
        return "pictures: none (matplotlib is not installed: pip install \"dfine[plots]\")"
    paths = plot_evaluation(metrics, metrics_file.parent, what, val=val, conf=pick["conf"] if pick else None,
                            prefix=evaluation_prefix(metrics_file), split=split)
    if not paths:
        return "pictures: none (the set holds no box to score against)"
    return f"pictures: {', '.join(p.name for p in paths)} (in {os.path.abspath(metrics_file.parent)})"
