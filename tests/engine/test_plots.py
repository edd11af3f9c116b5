"""The evaluation pictures: precision-recall curves for few and for many classes."""

import types
import warnings

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from dfine.engine import plots  # noqa: E402


def _metrics(classes: int) -> types.SimpleNamespace:
    """COCOeval-shaped precision ``[10 IoUs, 101 recalls, K, 4 areas, 3 maxDets]``, falling with recall."""
    fall = np.linspace(1.0, 0.0, 101)[None, :, None, None, None] ** np.linspace(0.5, 3, classes)[None, None, :, None, None]
    precision = np.broadcast_to(fall, (10, 101, classes, 4, 3)).copy()
    return types.SimpleNamespace(raw={"precision": precision}, per_class={i + 1: 0.3 for i in range(classes)},
                                 names={i + 1: f"class number {i}" for i in range(classes)})


@pytest.mark.parametrize("classes", [3, 10, 11, 12])
def test_pr_curves_give_each_class_its_own_colour(tmp_path, monkeypatch, classes):
    """tab10's colours came round again from the 11th class: two classes' curves looked the same; and the
    8th class's grey was the colour of the IoU line-style keys (a walk)."""
    from matplotlib.colors import to_rgba
    colours, keys = {}, {}
    real = plots.save_figure

    def keep(fig, path, dpi=110):
        legend = fig.axes[0].get_legend()
        for t, h in zip(legend.get_texts(), legend.legend_handles):
            (colours if t.get_text().startswith("class") else keys)[t.get_text()] = to_rgba(h.get_color())
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_pr_curves(_metrics(classes), tmp_path / "pr.png")
    assert len(colours) == classes and len(set(colours.values())) == classes
    assert {"IoU 0.50", "IoU 0.75"} <= set(keys)
    nearest = min(float(np.abs(np.subtract(keys[k], c)).max()) for k in ("IoU 0.50", "IoU 0.75") for c in colours.values())
    assert nearest > 0.2, nearest  # told apart at a glance ('grey' and tab10's 8th differ by 0.002)


@pytest.mark.parametrize("classes", [3, 61])
def test_pr_curves_legend_fits_the_picture(tmp_path, monkeypatch, classes):
    """61 classes (a COCO-like set): the legend ran past the figure's foot, cut off, and matplotlib
    warned 'Tight layout not applied' in the middle of the training output."""
    saved = {}
    real = plots.save_figure

    def keep(fig, path, dpi=110):
        fig.canvas.draw()
        legend = fig.axes[0].get_legend().get_window_extent()
        saved["inside"] = legend.y0 >= 0 and legend.y1 <= fig.bbox.y1 and legend.x1 <= fig.bbox.x1
        saved["labels"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.plot_pr_curves(_metrics(classes), tmp_path / "pr.png").is_file()
    assert saved["inside"]
    if classes == 3:
        assert saved["labels"][0].startswith("class number 0  AP50")
    else:
        assert saved["labels"][0].startswith("mean of 61 classes") and "AP 30.0" in saved["labels"][0]
        assert not any(label.startswith("class number") for label in saved["labels"])


def test_an_evaluation_keeps_a_spread_of_images_with_boxes():
    from dfine.engine.evaluator import SAMPLE_IMAGES, coco_metrics
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(1, 41)]
    boxed = [i for i in range(1, 41) if i % 3]  # every third image holds no box
    ann = {"images": images, "categories": [{"id": 7, "name": "cup"}],
           "annotations": [{"id": i, "image_id": i, "category_id": 7, "bbox": [10, 10, 30, 30], "area": 900,
                            "iscrowd": 0} for i in boxed]}
    dets = [{"image_id": i, "category_id": 7, "bbox": [12, 11, 30, 30], "score": 0.9} for i in range(1, 41)]
    kept = coco_metrics(ann, dets).samples
    assert len(kept) == SAMPLE_IMAGES and set(kept) <= set(boxed)
    assert min(kept) == boxed[0] and max(kept) == boxed[-1]  # spread over the set, ends included
    assert all(found == [d for d in dets if d["image_id"] == i] for i, found in kept.items())


def test_val_predictions_draw_truth_and_detections_above_conf(coco128, tmp_path, monkeypatch):
    import json

    from dfine.engine.evaluator import coco_metrics
    ann = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    ann["images"] = ann["images"][:3]
    ids = {im["id"] for im in ann["images"]}
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in ids]
    truth = [a for a in ann["annotations"] if not a.get("iscrowd")]
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": s}
            for a in truth for s in (0.8, 0.2)]  # each true box found twice: once sure, once not
    metrics = coco_metrics(ann, dets)
    drawn = {}

    def keep(fig, path, dpi=110):
        drawn["titles"] = [ax.get_title() for ax in fig.axes if ax.get_title()]
        drawn["labels"] = [t.get_text() for ax in fig.axes for t in ax.texts]
        drawn["suptitle"] = fig._suptitle.get_text()
        return real(fig, path, dpi)

    real = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", keep)
    path = plots.plot_val_predictions(metrics, ann, coco128 / "train2017", tmp_path / "v.png", conf=0.5, source="best.pth")
    assert path.is_file()
    per_image = [sum(a["image_id"] == i for a in truth) for i in metrics.samples]
    files = {im["id"]: im["file_name"] for im in ann["images"]}  # each panel names its image (a walk could not tell)
    assert drawn["titles"] == [f"{files[i]}\n{n} found, {n} right / {n} true" for i, n in zip(metrics.samples, per_image)]
    names = {c["id"]: c["name"] for c in ann["categories"]}
    from collections import Counter
    expected = Counter(f"{names[a['category_id']]} 0.80" for a in truth)
    # a label covering a quarter of another box is left off (of two oranges side by side, the one on the other)
    assert Counter(drawn["labels"]) <= expected and len(drawn["labels"]) >= sum(expected.values()) - 3
    assert drawn["suptitle"] == ("val predictions (best.pth, score > 0.5); dashed: ground truth, red with its class: "
                                 "missed")  # as predict keeps them
    plots.plot_val_predictions(metrics, ann, coco128 / "train2017", tmp_path / "n.png", conf=0.5, source="best.pth",
                               note="a second line")
    assert drawn["suptitle"].endswith("missed\na second line")
    plots.plot_val_predictions(metrics, ann, coco128 / "train2017", tmp_path / "t.png", conf=0.5, source="best.pth",
                               split="test")  # an evaluation of the test split: titled so (it said 'val', a walk)
    assert drawn["suptitle"].startswith("test predictions (best.pth, score > 0.5)")
    # a detection of a category the file does not declare (a COCO model on a subset's file): drawn with its id,
    # where a KeyError ended a walk's run after its epoch
    metrics.samples[next(iter(metrics.samples))].append({"image_id": next(iter(metrics.samples)), "category_id": 43,
                                                         "bbox": [1, 1, 30, 30], "score": 0.9})
    ann["categories"] = [c for c in ann["categories"] if c["id"] != 43]
    plots.plot_val_predictions(metrics, ann, coco128 / "train2017", tmp_path / "u.png", conf=0.5, source="best.pth")
    assert "category 43 0.90" in drawn["labels"]


def test_grid_captions_count_right_finds_and_labels_keep_their_score(tmp_path, monkeypatch):
    """'1 found / 1 true' was written over a tile whose one detection had the wrong class, and a long
    class name pushed the score past the tile's edge ('... padi- 0.3' for 0.33; a walk)."""
    from types import SimpleNamespace

    from PIL import Image
    names = ["rice leaf roller -penggulung daun padi-", "wereng"]
    truth = [(1, (10, 10, 50, 50)), (1, (60, 60, 90, 90))]
    dets = SimpleNamespace(boxes=np.array([[11, 11, 50, 52], [60, 60, 90, 90], [0, 0, 100, 100]], np.float32),
                           scores=np.array([0.9, 0.8, 0.7], np.float32), labels=np.array([1, 0, 1]))
    seen = {}

    def keep(fig, path, dpi=110):
        seen["title"] = fig.axes[0].get_title()
        seen["labels"] = [t.get_text() for t in fig.axes[0].texts]
        seen["dashed"] = [(p.get_xy(), p.get_edgecolor()) for p in fig.axes[0].patches if p.get_linestyle() == "--"]

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_prediction_grid([Image.new("RGB", (100, 100))], [dets], [truth], names, tmp_path / "g.png", cols=1)
    assert seen["title"] == "3 found, 1 right / 2 true"  # the wrong class and the whole-image box find nothing
    # the true box found by no detection of its class is red, named (a walk: which true box was which class?)
    assert sorted(seen["labels"]) == sorted(["rice leaf roller\u2026 0.80", "wereng 0.90", "wereng 0.70", "wereng"])
    from matplotlib.colors import to_rgba
    assert seen["dashed"] == [((10, 10), to_rgba("white")), ((60, 60), to_rgba(plots._MISSED))]


def test_a_label_at_the_right_border_stays_whole_at_the_saved_resolution(tmp_path, monkeypatch):
    """Placed with the text measured at the figure's 100 dpi, a label ending at the image's right border
    came out ~5% wider in the 110-dpi file and lost its score's last digit ('0.3' for 0.33; a walk)."""
    from types import SimpleNamespace

    from PIL import Image
    dets = SimpleNamespace(boxes=np.array([[200, 200, 319, 300]], np.float32), scores=np.array([0.8], np.float32),
                           labels=np.array([0]))
    inside = {}

    def at_saved_dpi(fig, path, dpi=plots.SAVE_DPI):
        fig.set_dpi(dpi)
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        (x_left, _), (x_right, _) = ax.transData.transform([(0, 0), (320, 0)])
        band = ax.texts[0].get_window_extent(renderer)
        inside["label"] = band.x1 <= x_right + 0.5 and band.x0 >= x_left - 0.5

    monkeypatch.setattr(plots, "save_figure", at_saved_dpi)
    plots.plot_prediction_grid([Image.new("RGB", (320, 320))], [dets], [[]], ["rice leaf roller -penggulung daun padi-"],
                               tmp_path / "g.png", cols=1)
    assert inside["label"]


def test_labels_of_overlapping_boxes_do_not_cover_each_other(tmp_path, monkeypatch):
    """Two boxes at nearly one place (a duplicate of another class, a walk): each label whole, the
    best's above its box as predict puts it, the other in the next free place."""
    from types import SimpleNamespace

    from PIL import Image
    dets = SimpleNamespace(boxes=np.array([[100, 120, 220, 260], [104, 118, 224, 262]], np.float32),
                           scores=np.array([0.9, 0.6], np.float32), labels=np.array([0, 1]))
    bands = {}

    def measure(fig, path, dpi=plots.SAVE_DPI):
        fig.set_dpi(dpi)
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        ax = fig.axes[0]
        bands["image"] = ax.transData.transform([(0, 0), (320, 320)])
        bands["box_top"] = ax.transData.transform([(0, 120)])[0][1]
        bands.update({t.get_text(): t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts})

    monkeypatch.setattr(plots, "save_figure", measure)
    plots.plot_prediction_grid([Image.new("RGB", (320, 320))], [dets], [[]], ["bird", "plane"], tmp_path / "g.png",
                               cols=1)
    best, other = bands["bird 0.90"], bands["plane 0.60"]
    assert not best.overlaps(other), (best, other)
    assert best.y0 >= bands["box_top"] - 0.5  # above the box (display y grows upwards)


def test_a_crowd_leaves_out_the_labels_without_a_free_place(tmp_path, monkeypatch):
    """Many boxes on one spot (a young model's duplicates on blood cells, a walk): a label covered
    half read as another score ('rbc 0.40837'); now each drawn label is whole, the best's among them,
    and the labels without a free place are left out (their boxes stay)."""
    from types import SimpleNamespace

    from PIL import Image
    n = 12
    dets = SimpleNamespace(boxes=np.array([[100 + i, 100 + i, 160 + i, 160 + i] for i in range(n)], np.float32),
                           scores=np.linspace(0.9, 0.4, n).astype(np.float32), labels=np.zeros(n, np.int64))
    seen = {}

    def measure(fig, path, dpi=plots.SAVE_DPI):
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        ax = fig.axes[0]
        seen["bands"] = {t.get_text(): t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts}
        seen["boxes"] = len(ax.patches)

    monkeypatch.setattr(plots, "save_figure", measure)
    plots.plot_prediction_grid([Image.new("RGB", (320, 320))], [dets], [[]], ["rbc"], tmp_path / "g.png", cols=1,
                               conf=0.3)
    bands = seen["bands"]
    assert "rbc 0.90" in bands and 1 < len(bands) < n
    assert not any(a.overlaps(b) for i, a in enumerate(bands.values()) for b in list(bands.values())[:i])
    assert seen["boxes"] >= n  # every box drawn (and the label bands)


def test_evaluation_pictures_say_why_there_are_none(tmp_path, monkeypatch):
    """dfine eval names its pictures, or says why it drew none (matplotlib missing, no box to score)."""
    from dfine.errors import DfineError

    metrics = _metrics(3)
    metrics.has_ground_truth, metrics.confidence, metrics.samples = False, None, {}
    assert plots.evaluation_pictures(metrics, tmp_path / "eval.json", "m", (None, None), None) == (
        "pictures: none (the set holds no box to score against)")
    metrics.has_ground_truth, metrics.confusion = True, lambda: None
    line = plots.evaluation_pictures(metrics, tmp_path / "m.onnx.eval_test.json", "m", (None, None), None)
    assert line == f"pictures: m.onnx.eval_test_pr_curves.png (in {tmp_path})"
    assert (tmp_path / "m.onnx.eval_test_pr_curves.png").is_file()

    def missing():
        raise DfineError("matplotlib is not installed")
    monkeypatch.setattr(plots, "pyplot", missing)
    assert plots.evaluation_pictures(metrics, tmp_path / "eval.json", "m", (None, None), None) == (
        "pictures: none (matplotlib is not installed: pip install \"dfine[plots]\")")


def test_val_predictions_say_why_they_are_drawn_at_the_default_conf(tmp_path, monkeypatch):
    """With no --conf recommended (no F1 of 0.1 on the set) val_predictions were drawn at 0.5: a walk got twelve
    panels of '0 found' and no word why. The title says it; with a recommended --conf nothing is added."""
    drawn = {}
    monkeypatch.setattr(plots, "plot_pr_curves", lambda *a, **k: tmp_path / "pr.png")
    monkeypatch.setattr(plots, "plot_confidence", lambda *a, **k: tmp_path / "c.png")
    monkeypatch.setattr(plots, "plot_val_predictions", lambda *a, **k: drawn.update(k) or tmp_path / "v.png")
    metrics = types.SimpleNamespace(has_ground_truth=True, confidence=object(), confusion=lambda: None,
                                    samples={1: []})
    plots.plot_evaluation(metrics, tmp_path, "m", val=({"images": []}, {}), conf=None)
    assert drawn["conf"] == 0.5 and drawn["note"] == (
        "no --conf is recommended (none gives an F1 of 0.1 on this set: the model finds next to nothing yet), so "
        "drawn at 0.5")
    plots.plot_evaluation(metrics, tmp_path, "m", val=({"images": []}, {}), conf=0.35)
    assert drawn["conf"] == 0.35 and drawn["note"] == ""
    # 'test predictions (m.onnx, test, ...)' said the split twice (a re-walk): the title names it first, once
    plots.plot_evaluation(metrics, tmp_path, "m.onnx, test", val=({"images": []}, {}), conf=0.35, split="test")
    assert drawn["source"] == "m.onnx" and drawn["split"] == "test"
    # a file named after the split is not cut: 'm.onnx_super.json' (a walk's val_super.json)
    plots.plot_evaluation(metrics, tmp_path, "m.onnx, val_super.json", val=({"images": []}, {}), conf=0.35)
    assert drawn["source"] == "m.onnx, val_super.json"


def test_confidence_legend_sits_above_the_curves(tmp_path, monkeypatch):
    """The legend at the top right hid the precision curve where it runs along 1.0 (a walk): it has a band
    of its own above 1.0."""
    from dfine.engine.evaluator import ConfidenceCurve
    conf = np.linspace(0, 1, 101)
    precision, recall = np.clip(0.4 + conf, 0, 1), 1 - conf
    curve = ConfidenceCurve(conf, precision, recall, 2 * precision * recall / (precision + recall + 1e-9), 12)
    foot = {}
    real = plots.save_figure

    def keep(fig, path, dpi=110):
        fig.canvas.draw()
        ax = fig.axes[0]
        box = ax.get_legend().get_window_extent()
        foot["y"] = ax.transData.inverted().transform((box.x0, box.y0))[1]
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    assert plots.plot_confidence(curve, tmp_path / "c.png").is_file()
    assert foot["y"] > 1.0, foot


def test_confusion_matrix_leaves_out_a_category_the_model_has_not():
    """A Roboflow set's root category ('pieces', no box, left out of training) was an empty row and column
    of every confusion matrix (a walk); a class of the model's stays, counted or not."""
    names = {0: "pieces", 1: "pawn", 2: "rook", 3: "king"}
    matrix = np.zeros((5, 5), np.int64)
    matrix[1, 1], matrix[2, 4], matrix[4, 2] = 3, 1, 2  # pawn right, a rook missed, a rook on background
    kept, shown, left = plots.model_classes_only(matrix, names, (1, 2, 3))
    assert shown == ["pawn", "rook", "king"] and kept.shape == (4, 4) and left == 0
    assert kept[0, 0] == 3 and kept[1, 3] == 1 and kept[3, 1] == 2 and kept.sum() == matrix.sum()
    assert plots.model_classes_only(matrix, names, ())[1] == list(names.values())  # the model's classes unknown
    matrix[0, 4] = 1  # a box of it in the set: its row stays
    assert plots.model_classes_only(matrix, names, (1, 2, 3))[1] == list(names.values())


def saved_titles(monkeypatch) -> list:
    """The titles of the figures saved from here on (their first axes'), in order."""
    titles = []
    real = plots.save_figure

    def keep(fig, path, dpi=110, **kw):
        titles.append(fig.axes[0].get_title())
        return real(fig, path, dpi, **kw)

    monkeypatch.setattr(plots, "save_figure", keep)
    return titles


def test_a_confusion_matrix_of_many_classes_leaves_out_those_never_seen(tmp_path, monkeypatch):
    """A re-walk's COCO model evaluated on a set of one class drew an 80 x 80 matrix (3099 px wide) of zeros but
    a few cells. Of more than 20 classes, those with no box and no detection are left out, said in the title;
    of fewer, every class stays."""
    names = {i + 1: f"c{i}" for i in range(80)}
    matrix = np.zeros((81, 81), np.int64)
    matrix[43, 43], matrix[43, 80], matrix[80, 61] = 5, 2, 1  # c43 found and missed, a c61 on background
    kept, shown, left = plots.model_classes_only(matrix, names, tuple(names))
    assert shown == ["c43", "c61"] and left == 78 and kept.sum() == matrix.sum()
    assert kept.tolist() == [[5, 0, 2], [0, 0, 0], [0, 1, 0]]
    few = {i + 1: f"c{i}" for i in range(5)}
    assert plots.model_classes_only(np.zeros((6, 6), np.int64), few, tuple(few))[1:] == (list(few.values()), 0)
    titles = saved_titles(monkeypatch)
    plots.plot_confusion_matrix(kept, shown, tmp_path / "c.png", left=left)
    assert titles[0] == "confusion matrix (IoU 0.50, score >= 0.50; 78 classes with no box and no detection left out)"


def test_confusion_matrix_title_names_the_weights_and_split(tmp_path, monkeypatch):
    """A val and a test confusion matrix of one model looked alike: the title named neither (a walk)."""
    titles = saved_titles(monkeypatch)
    plots.plot_confusion_matrix(np.eye(3, dtype=np.int64), ["a", "b"], tmp_path / "c.png", what="m.onnx, test")
    assert titles[0].splitlines() == ["m.onnx, test", "confusion matrix (IoU 0.50, score >= 0.50)"]


def _title_inside(png) -> None:
    """The title rows of a saved picture (white background) reach neither its left nor its right edge: no word cut."""
    from PIL import Image
    pixels = np.asarray(Image.open(png).convert("L"))
    top = pixels[:40]
    assert (top < 128).any()  # a title there is
    assert (top[:, :3] > 200).all() and (top[:, -3:] > 200).all()


def test_a_one_image_grid_fits_its_image_and_title(tmp_path):
    """A 1-image val set's val_predictions.png was a 1320x330 canvas, its photo in the left quarter and the rest
    blank; the grid is now one panel (twice the size) under a title broken into lines that fit it."""
    from types import SimpleNamespace

    from PIL import Image
    dets = SimpleNamespace(boxes=np.array([[100, 100, 300, 400]], np.float32), scores=np.array([0.9], np.float32),
                           labels=np.array([0]))
    path = plots.plot_prediction_grid([Image.new("RGB", (640, 480), (0, 0, 255))], [dets], [[]], ["car"],
                                      tmp_path / "g.png", files=["a.jpg"])
    pixels = np.asarray(Image.open(path).convert("RGB"))
    height, width = pixels.shape[:2]
    assert width <= 700 and height <= 700, (width, height)
    blue = ((pixels[..., 2] > 200) & (pixels[..., 0] < 60)).any(axis=0)  # the photo's columns
    assert blue.mean() > 0.85, blue.mean()
    rows = ((pixels[..., 2] > 200) & (pixels[..., 0] < 60)).any(axis=1)
    assert rows.mean() > 0.7, rows.mean()  # no blank band under a 4:3 photo
    _title_inside(path)


def test_a_one_image_sample_grid_keeps_its_title_whole(tmp_path):
    """dfine data check --plot on a split of one image: 'a_annotated: 1 image of 1, boxes as the annotation
    file has them' was cut at both edges of its 462 px picture; it is broken into lines that fit now."""
    import json

    from PIL import Image

    from dfine.data.check import plot_samples
    Image.new("RGB", (640, 480), (120, 140, 160)).save(tmp_path / "a.jpg")
    ann = {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 100, 200, 150], "area": 30000,
                            "iscrowd": 0}], "categories": [{"id": 1, "name": "car"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    path = plot_samples(tmp_path / "ann.json", tmp_path, tmp_path / "labels_val_samples.png", title="a_annotated")
    _title_inside(path)


def test_a_grid_leaves_off_the_labels_of_boxes_drawn_tiny_and_says_so(tmp_path, monkeypatch):
    """A 4000 px drone image shrunk ~13x in a grid panel: its 40x20 px cars became dots under overlapping labels
    of their neighbours. Boxes drawn under 12 px keep their outline and lose their label, said in the title;
    a photo's large boxes beside them keep theirs."""
    from types import SimpleNamespace

    from PIL import Image
    n = 30
    cars = np.array([[1000 + 48 * (i % 10), 600 + 30 * (i // 10), 1040 + 48 * (i % 10), 620 + 30 * (i // 10)]
                     for i in range(n)], np.float32)
    drone = SimpleNamespace(boxes=cars[::2], scores=np.full(n // 2, 0.9, np.float32), labels=np.zeros(n // 2, int))
    photo = SimpleNamespace(boxes=np.array([[100, 100, 300, 400]], np.float32), scores=np.array([0.9], np.float32),
                            labels=np.array([0]))
    seen = {}

    def keep(fig, path, dpi=plots.SAVE_DPI):
        seen["texts"] = [[t.get_text() for t in ax.texts] for ax in fig.axes]
        seen["title"] = fig._suptitle.get_text()
        seen["outlines"] = len(fig.axes[0].patches)

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_prediction_grid([Image.new("RGB", (4000, 2250)), Image.new("RGB", (640, 480))], [drone, photo],
                               [[(0, tuple(b)) for b in cars.tolist()], [(0, (100, 100, 300, 400))]], ["car"],
                               tmp_path / "g.png")
    assert seen["texts"][0] == [] and seen["texts"][1] == ["car 0.90"]
    assert seen["outlines"] == n + n // 2  # every true box and every detection drawn
    assert seen["title"].endswith("\nlabels left off: 30 boxes under 12 px here"), seen["title"]  # 15 found, 15 missed


def test_a_grid_label_covers_no_quarter_of_another_box(tmp_path, monkeypatch):
    """A small box just above a large one: the large one's label, above it, lay over most of the small box
    (the grid kept labels off each other, not off the boxes); it goes elsewhere now, as predict's do."""
    from types import SimpleNamespace

    from PIL import Image
    small, large = (100, 135, 125, 141), (100, 142, 200, 182)
    dets = SimpleNamespace(boxes=np.array([large, small], np.float32), scores=np.array([0.9, 0.8], np.float32),
                           labels=np.array([0, 1]))
    seen = {}

    def measure(fig, path, dpi=plots.SAVE_DPI):
        fig.canvas.draw()
        ax = fig.axes[0]
        seen.update({t.get_text(): ax.transData.inverted().transform(
            t.get_bbox_patch().get_window_extent(fig.canvas.get_renderer())) for t in ax.texts})

    monkeypatch.setattr(plots, "save_figure", measure)
    plots.plot_prediction_grid([Image.new("RGB", (320, 320))], [dets], [[]], ["car", "bike"], tmp_path / "g.png")
    (x_a, y_a), (x_b, y_b) = seen["car 0.90"]  # the large box's label band, image px
    iw = max(0.0, min(max(x_a, x_b), small[2]) - max(min(x_a, x_b), small[0]))
    ih = max(0.0, min(max(y_a, y_b), small[3]) - max(min(y_a, y_b), small[1]))
    assert iw * ih < 0.25 * (small[2] - small[0]) * (small[3] - small[1]), (x_a, y_a, x_b, y_b)
