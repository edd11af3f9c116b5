"""Our COCO AP equals pycocotools' on coco128 for a fixed set of detections."""

from __future__ import annotations

import contextlib
import io
import json
import random
import warnings

import numpy as np
import pytest

from dfine.engine.evaluator import NO_BOXES, coco_metrics


def test_map_matches_pycocotools(coco128):
    pycoco = pytest.importorskip("pycocotools.coco")
    pycocoeval = pytest.importorskip("pycocotools.cocoeval")
    ann = str(coco128 / "annotations" / "instances_train2017.json")
    data = json.loads(open(ann).read())
    rng = random.Random(0)
    cats = [c["id"] for c in data["categories"]]
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"] if rng.random() < 0.8 else rng.choice(cats),
             "bbox": [max(0.0, v + rng.uniform(-8, 8)) for v in a["bbox"]], "score": rng.random()}
            for a in data["annotations"] if rng.random() < 0.9]
    ours = coco_metrics(ann, dets)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = pycoco.COCO(ann)
        ev = pycocoeval.COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    np.testing.assert_allclose(ours.stats, ev.stats[:12], atol=1e-3)
    assert 0.1 < ours.ap < 0.9
    assert "person" in ours.table()


def test_no_detections_is_zero(coco128):
    ann = str(coco128 / "annotations" / "instances_train2017.json")
    assert coco_metrics(ann, []).ap <= 0


def _detections(data, seed=0):
    rng = random.Random(seed)
    return [{"image_id": a["image_id"], "category_id": a["category_id"],
             "bbox": [max(0.0, v + rng.uniform(-6, 6)) for v in a["bbox"]], "score": rng.random()}
            for a in data["annotations"] if rng.random() < 0.9]


def test_summary_is_the_standard_twelve_lines(coco128):
    pycocoeval = pytest.importorskip("pycocotools.cocoeval")
    import pycocotools.coco as pycoco

    ann = str(coco128 / "annotations" / "instances_train2017.json")
    dets = _detections(json.loads(open(ann).read()))
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        gt = pycoco.COCO(ann)
        ev = pycocoeval.COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    theirs = [line for line in text.getvalue().splitlines() if line.startswith(" Average")]
    ours = coco_metrics(ann, dets).coco_summary().splitlines()
    assert len(ours) == 12
    assert ours[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.")
    # same text, values within rounding of the two implementations
    assert [l.rsplit("=", 1)[0] for l in ours] == [l.rsplit("=", 1)[0] for l in theirs]
    np.testing.assert_allclose([float(l.rsplit("=", 1)[1]) for l in ours],
                               [float(l.rsplit("=", 1)[1]) for l in theirs], atol=2e-3)


def test_zero_based_annotation_ids_are_renumbered(coco128, tmp_path):
    ann = coco128 / "annotations" / "instances_train2017.json"
    data = json.loads(ann.read_text())
    dets = _detections(data)
    zero = json.loads(ann.read_text())
    for i, a in enumerate(zero["annotations"]):  # a Roboflow export: ids 0..M-1
        a["id"] = i
    path = tmp_path / "zero.json"
    path.write_text(json.dumps(zero))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # faster-coco-eval warns on an annotation id 0
        got = coco_metrics(str(path), dets)
    assert got.stats == pytest.approx(coco_metrics(str(ann), dets).stats, abs=1e-9)
    assert json.loads(path.read_text())["annotations"][0]["id"] == 0  # the user's file is untouched


def test_all_background_validation_set_says_so(coco128):
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    data["annotations"] = []
    metrics = coco_metrics(data, [{"image_id": data["images"][0]["id"], "category_id": 1,
                                   "bbox": [0, 0, 10, 10], "score": 0.5}])
    assert not metrics.has_ground_truth
    assert metrics.summary() == metrics.coco_summary() == NO_BOXES
    assert "no boxes" in NO_BOXES and "-100" not in metrics.summary()


def test_one_line_summary_shows_a_dash_where_coco_computed_nothing():
    """COCO's -1 (no ground-truth box of that size) read 'APl -100.0' in every epoch line of a
    dataset of small objects; a statistic of 0 stays 0.0."""
    from dfine.engine.evaluator import CocoMetrics
    metrics = CocoMetrics([0.25, 0.5, 0.0, 0.1, 0.3, -1.0, 0, 0, 0.4, 0, 0, -1.0], {1: 0.25})
    assert metrics.summary() == "AP 25.0  AP50 50.0  AP75 0.0  APs 10.0  APm 30.0  APl -  AR100 40.0"


def test_a_class_without_a_box_in_the_set_is_named_under_the_table():
    """A public chess set has 1 'bishop' box in train and none in val: the per-class table listed
    12 rows for a 13-class model, the missing one without a word. The model's classes without a
    box in the set are now named under the table."""
    import dataclasses

    gt = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"}],
          "categories": [{"id": 0, "name": "pieces"}, {"id": 1, "name": "bishop"}, {"id": 2, "name": "king"},
                         {"id": 3, "name": "rook"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 30], "area": 900,
                           "iscrowd": 0}]}
    dets = [{"image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 30], "score": 0.9}]
    metrics = coco_metrics(gt, dets)
    assert metrics.table() == "category  AP\nking  100.0"  # classes unknown: as before
    one = dataclasses.replace(metrics, classes=(1, 2)).table()
    assert one.splitlines() == ["category  AP", "king  100.0", "not in this set (no box to score): bishop"]
    two = dataclasses.replace(metrics, classes=(1, 2, 3)).table()  # the placeholder 'pieces' is no class: unnamed
    assert two.splitlines()[-1] == "not in this set (no box to score): 2 classes: bishop, rook"
