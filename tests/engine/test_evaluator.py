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
    assert metrics.summary() == "AP 25.0%  AP50 50.0%  AP75 0.0%  APs 10.0%  APm 30.0%  APl -  AR100 40.0%"


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
    assert metrics.table() == "category   AP %  boxes\nking      100.0      1"  # classes unknown: as before
    one = dataclasses.replace(metrics, classes=(1, 2)).table()
    assert one.splitlines() == ["category   AP %  boxes", "king      100.0      1",
                                "not in this set (no box to score): bishop"]
    two = dataclasses.replace(metrics, classes=(1, 2, 3)).table()  # the placeholder 'pieces' is no class: unnamed
    assert two.splitlines()[-1] == "not in this set (no box to score): 2 classes: bishop, rook"


def test_a_class_of_the_set_the_model_has_not_is_named_with_the_models_own_ap():
    """A bull-and-pig model evaluated on a file that adds horse (a walk): the mean AP counted horse as 0 without
    a word. The line under the table names it and gives the AP over the model's classes alone."""
    import dataclasses

    box = {"bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}
    gt = {"images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2, 3)],
          "categories": [{"id": 1, "name": "bull"}, {"id": 2, "name": "pig"}, {"id": 3, "name": "horse"}],
          "annotations": [{"id": i, "image_id": i, "category_id": i, **box} for i in (1, 2, 3)]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
            {"image_id": 2, "category_id": 2, "bbox": [60, 60, 30, 30], "score": 0.9}]
    metrics = coco_metrics(gt, dets)
    assert metrics.stats[0] == pytest.approx(1 / 3)  # bull 1, pig 0, horse 0
    assert "not the model's" not in metrics.table()  # the model's classes unknown: nothing said
    assert "not the model's" not in dataclasses.replace(metrics, classes=(1, 2, 3)).table()
    line = dataclasses.replace(metrics, classes=(1, 2)).table().splitlines()[-1]
    assert line == ("not the model's classes (it cannot find them; the mean AP counts them as 0): horse (1 box); "
                    "the AP over the model's 2 classes alone: 50.0%")


def test_confidence_curve_counts_what_coco_matches(coco128):
    """At each --conf the curve's right detections are COCO's own matches at IoU 0.5: COCOeval's recall
    at IoU 0.5 of the detections above that threshold, times each class's boxes, summed."""
    ann = str(coco128 / "annotations" / "instances_train2017.json")
    data = json.loads(open(ann).read())
    dets = _detections(data)
    rng = random.Random(1)
    cats = [c["id"] for c in data["categories"]]
    dets += [{**d, "category_id": rng.choice(cats)} for d in dets[::5]]  # wrong classes: false positives
    curve = coco_metrics(ann, dets).confidence
    boxes = {}
    for a in data["annotations"]:
        if not a.get("iscrowd", 0):
            boxes[a["category_id"]] = boxes.get(a["category_id"], 0) + 1
    assert curve.boxes == sum(boxes.values())
    for conf in (0.05, 0.3, 0.5, 0.8):
        i = int(round(conf * 100)) - 1
        assert curve.conf[i] == pytest.approx(conf)
        kept = [d for d in dets if d["score"] > conf]
        coco = coco_metrics(ann, kept)
        recall = np.asarray(coco.raw["recall"])[0, :, 0, -1]  # [K] at IoU 0.5, all areas, 100 per image
        right = sum(max(r, 0.0) * boxes.get(cat, 0) for cat, r in zip(sorted(coco.per_class), recall))
        assert curve.recall[i] * curve.boxes == pytest.approx(right, abs=1e-6)
        assert curve.precision[i] * len(kept) == pytest.approx(right, abs=1e-6)
    assert 0.3 < curve.f1.max() < 1.0


def test_confidence_curve_by_hand_and_the_threshold_it_picks():
    """Two images, three boxes (and a crowd region, which is no box): a duplicate and a wrong class are
    false positives. F1 is best, 0.75, for every --conf from 0.01 to 0.19 (five detections, three right);
    the pick is that run's middle, not its edge next to a score."""
    from dfine.engine.evaluator import conf_line

    def box(i, image, cat, xywh, crowd=0):
        return {"id": i, "image_id": image, "category_id": cat, "bbox": xywh, "area": xywh[2] * xywh[3],
                "iscrowd": crowd}

    ann = {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
           "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
           "annotations": [box(1, 1, 1, [10, 10, 20, 20]), box(2, 1, 2, [50, 50, 20, 20]), box(3, 2, 1, [0, 0, 50, 50]),
                           box(4, 2, 2, [60, 60, 30, 30], crowd=1)]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.8},   # the same box again
            {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.7},   # the wrong class
            {"image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 21], "score": 0.3},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 40], "score": 0.2},     # IoU 0.8
            {"image_id": 2, "category_id": 1, "bbox": [60, 60, 10, 10], "score": 0.005}]  # below every --conf
    curve = coco_metrics(ann, dets).confidence
    assert curve.boxes == 3
    at = {round(float(c), 2): (p, r, f) for c, p, r, f in zip(curve.conf, curve.precision, curve.recall, curve.f1)}
    assert at[0.1] == pytest.approx((3 / 5, 1.0, 0.75))
    assert at[0.25] == pytest.approx((2 / 4, 2 / 3, 4 / 7))
    assert at[0.75] == pytest.approx((1 / 2, 1 / 3, 0.4))
    assert at[0.85] == pytest.approx((1.0, 1 / 3, 0.5))
    assert at[0.9] == (0.0, 0.0, 0.0)  # score > conf: 0.9 itself is not kept
    assert curve.pick() == pytest.approx({"conf": 0.1, "f1": 0.75, "precision": 0.6, "recall": 1.0, "iou": 0.5})
    assert coco_metrics(ann, dets).to_json()["best_conf"]["conf"] == pytest.approx(0.1)
    assert conf_line(curve.pick(), "the val set") == ("--conf 0.10 gives the best F1 on the val set: 0.75 (precision "
                                                      "0.60, recall 1.00; IoU 0.5, all classes together)")
    # Python's word, Detector's and dfine.train's result's (a notebook walk was told --conf)
    assert conf_line(curve.pick(), "this set", python=True).startswith("conf=0.10 gives the best F1 on this set: 0.75")
    assert conf_line(None, "this set", python=True).startswith("no conf gives an F1 of 0.1 or more")
    nothing = coco_metrics(ann, dets[2:3]).confidence  # only the wrong class
    assert nothing.pick() is None and conf_line(None, "the val set") == (
        "no --conf gives an F1 of 0.1 or more on the val set at IoU 0.5 (the model finds next to nothing yet), so "
        "none is recommended")
    # 1 of 29 boxes right at best: F1 0.06, a carpet of guesses, never carried as predict's default (a walk: 0.02)
    poor = [{"image_id": 1, "category_id": 2, "bbox": [float(3 * i), 60.0, 5.0, 5.0], "score": 0.95} for i in range(28)]
    poorer = coco_metrics(ann, poor + dets[3:4]).confidence
    assert 0.01 < poorer.f1.max() < 0.1 and poorer.pick() is None
    # one box right among 300 wrong ones: F1 0.007, too little to recommend drawing every box (a walk)
    noise = [{"image_id": 1, "category_id": 2, "bbox": [float(i % 90), 30.0, 5.0, 5.0], "score": 0.5}
             for i in range(300)]
    weak = coco_metrics(ann, noise + dets[3:4]).confidence
    assert 0 < weak.f1.max() < 0.01 and weak.pick() is None


def test_an_evaluation_of_another_checkpoint_says_which_it_replaces(tmp_path, capsys):
    """A walk compared best_stg1, best_stg2 and last of a run with dfine eval: each wrote the run
    folder's eval.json over the one before without a word."""
    from dfine.engine.evaluator import write_evaluation
    path, ann = tmp_path / "eval.json", tmp_path / "val.json"
    for name in ("best_stg1.pth", "best_stg2.pth", "best_stg2.pth"):
        write_evaluation(path, {"stats": {"AP": 0.1}}, model=tmp_path / name, ann_file=ann, data=None, num_images=3)
    err = capsys.readouterr().err
    assert err.splitlines() == [f"note: {path} held the evaluation of best_stg1.pth; this one of best_stg2.pth "
                                f"replaces it (-o DIR writes it elsewhere)"]  # not for the same checkpoint again
    (tmp_path / "eval_predictions.png").write_bytes(b"png")  # the pictures dfine eval drew beside it go too
    write_evaluation(path, {"stats": {"AP": 0.1}}, model=tmp_path / "last.pth", ann_file=ann, data=None, num_images=3)
    assert capsys.readouterr().err.splitlines() == [
        f"note: {path} held the evaluation of best_stg2.pth; this one of last.pth replaces it and its pictures "
        f"(eval_*.png; -o DIR writes them elsewhere)"]


def _dense_set(boxes: int, detections: int):
    """One 1000x1000 image holding ``boxes`` 20x20 boxes in a grid, and ``detections`` results for
    it: each box found, best score first, then misses far from every box."""
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [(i % 40) * 25.0, (i // 40) * 25.0, 20.0, 20.0],
             "area": 400.0, "iscrowd": 0} for i in range(boxes)]
    gt = {"images": [{"id": 1, "width": 1000, "height": 1000}], "categories": [{"id": 1, "name": "cell"}],
          "annotations": anns}
    found = [{"image_id": 1, "category_id": 1, "bbox": a["bbox"], "score": 0.9 - 0.0001 * i}
             for i, a in enumerate(anns[:detections])]
    misses = [{"image_id": 1, "category_id": 1, "bbox": [990.0, 990.0, 5.0, 5.0], "score": 0.01}
              for _ in range(max(0, detections - boxes))]
    return gt, found + misses


def test_a_dense_set_is_scored_with_all_the_models_detections():
    """A walk's val images held 142 cells each on average (up to 326): COCO's 100 detections an image
    capped recall and AP, silently, and the best checkpoint was picked on that. Such a set counts all
    the model's detections (300), said in a note; COCO's own sets stay at 100."""
    gt, dets = _dense_set(150, 300)
    metrics = coco_metrics(gt, dets)
    assert metrics.max_dets == 300 and metrics.most_boxes == 150
    assert metrics.ap == pytest.approx(1.0, abs=1e-6)  # every box found: it read about 0.66 at 100 detections
    assert "maxDets=300 ] = 1.000" in metrics.coco_summary().splitlines()[0]
    assert metrics.summary().endswith("AR300 100.0%") and metrics.to_json()["max_dets"] == 300
    assert metrics.dense_note() == ("note: an evaluated image holds up to 150 boxes: AP and AR count the top 300 "
                                    "detections of each image, not COCO's 100, which would cap the recall (the "
                                    "published evaluation counts 100)")
    crowded = coco_metrics(*_dense_set(350, 300))  # more boxes than detections: how to get more
    assert crowded.max_dets == 300 and crowded.ap < 0.9
    assert crowded.dense_note().endswith("; more boxes than the model's 300 detections can never all be found: train "
                                         "with -u DFINETransformer.num_queries=N DFINEPostProcessor.num_top_queries=N "
                                         "(N above 350)")
    sparse = coco_metrics(*_dense_set(60, 300))
    assert sparse.max_dets == 100 and sparse.dense_note() is None and "AR100" in sparse.summary()


def test_a_recipe_can_fix_the_detections_counted_on_a_dense_set():
    """evaluator.max_dets (the COCO and Objects365 recipes: 100, as published) holds even on a set
    whose images hold more than 100 boxes; the note says whose number it is."""
    gt, dets = _dense_set(150, 300)
    fixed = coco_metrics(gt, dets, max_dets=100)
    assert fixed.max_dets == 100 and fixed.ap < 0.7 and "AR100" in fixed.summary()
    assert fixed.dense_note() == ("note: an evaluated image holds up to 150 boxes: AP and AR count the top 100 "
                                  "detections of each image, as the recipe's evaluator.max_dets says (the published "
                                  "evaluation's); more boxes than that can never all be found")
    assert coco_metrics(gt, dets, max_dets=200).max_dets == 200
    assert coco_metrics(gt, dets).max_dets == 300  # left to the set


def test_many_classes_share_the_table_lines():
    """A walk's 53 playing cards printed a 54-line table every epoch (a notebook filled with them);
    more than 12 classes go side by side, filled down each column, every class and AP still there."""
    from dfine.engine.evaluator import CocoMetrics
    names = {i: f"card{i}" for i in range(1, 54)}
    table = CocoMetrics([0.1] * 12, per_class={i: i / 100 for i in names}, names=names).table().splitlines()
    assert len(table) == 1 + 14 and table[0] == "    ".join(["category   AP %"] * 4)
    assert table[1] == "card1       1.0    card15     15.0    card29     29.0    card43     43.0"
    assert table[-1] == "card14     14.0    card28     28.0    card42     42.0"
    import re
    cells = [(name, float(ap)) for line in table[1:] for name, ap in re.findall(r"(card\d+) +(\d+\.\d)", line)]
    assert sorted(cells, key=lambda c: int(c[0][4:])) == [(f"card{i}", float(i)) for i in names]
    few = CocoMetrics([0.1] * 12, per_class={1: 0.5, 2: 0.25}, names={1: "a", 2: "bb"}).table()
    assert few == "category  AP %\na    50.0\nbb   25.0"  # up to 12: one a line, as before
    counted = CocoMetrics([0.1] * 12, per_class={i: i / 100 for i in names}, names=names,
                          boxes={i: 3 * i for i in names}).table().splitlines()
    assert len(counted) == 1 + 18 and counted[0] == "    ".join(["category   AP %  boxes"] * 3)
    assert counted[1] == "card1       1.0      3    card19     19.0     57    card37     37.0    111"


def test_the_table_says_how_many_boxes_each_ap_rests_on():
    """A walk's rare class had AP 0.0 on 5 val boxes beside classes on 60, and nothing said so: the
    table gives each class's boxes in the evaluated images (crowd boxes and other images not counted),
    and eval.json too."""
    gt = {"images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2)],
          "categories": [{"id": 1, "name": "cheese"}, {"id": 2, "name": "pasta"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 30, 30], "area": 900,
                           "iscrowd": 0},
                          {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 60, 20, 30], "area": 600,
                           "iscrowd": 1},
                          {"id": 4, "image_id": 2, "category_id": 2, "bbox": [5, 5, 30, 30], "area": 900,
                           "iscrowd": 0}]}
    dets = [{"image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 30], "score": 0.9},  # cheese taken for pasta
            {"image_id": 1, "category_id": 2, "bbox": [50, 50, 30, 30], "score": 0.8}]
    metrics = coco_metrics(gt, dets, image_ids=[1])
    assert metrics.table().splitlines() == ["category   AP %  boxes", "cheese      0.0      1", "pasta      50.0      1"]
    assert metrics.to_json()["boxes"] == {"1": 1, "2": 1}
    # the confusion matrix at the best F1's --conf: rows ground truth, columns predicted, then missed
    assert metrics.confusion().tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
