"""Our COCO AP equals pycocotools' on coco128 for a fixed set of detections."""

from __future__ import annotations

import contextlib
import io
import json
import random

import numpy as np
import pytest

from dfine.engine.evaluator import coco_metrics


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
