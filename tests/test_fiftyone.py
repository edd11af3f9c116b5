"""dfine fiftyone: the missing-FiftyOne error, the box/label conversions (no FiftyOne needed) and,
where FiftyOne imports, a dataset built from the golden N model on coco128 images."""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dfine.integrations import fiftyone as view
from dfine.cli import main
from dfine.errors import DfineError
from dfine.inference import Detections
from tests.conftest import load_golden


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_missing_fiftyone_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "fiftyone", None)  # import fiftyone -> ImportError
    err = _one_line_error(capsys, ["fiftyone", "-m", "dfine_n_coco", "--images", str(tmp_path), "--no-launch"])
    assert 'pip install "dfine[fiftyone]"' in err
    with pytest.raises(DfineError, match=r"pip install \"dfine\[fiftyone\]\""):
        view.import_fiftyone()


def test_published_shim_runs_dfine_fiftyone(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fiftyone", None)
    script = Path(__file__).resolve().parents[1] / "tools/visualization/fiftyone_vis.py"
    monkeypatch.setattr(sys, "argv", [str(script), "-c", "configs/dfine/dfine_hgnetv2_n_coco.yml", "-r", "n.pth"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(script), run_name="__main__")
    assert e.value.code == 2 and 'pip install "dfine[fiftyone]"' in capsys.readouterr().err


def test_prediction_dicts_are_relative_xywh():
    dets = Detections(boxes=np.array([[20, 10, 120, 60], [0, 0, 200, 100]], np.float32),
                      scores=np.array([0.9, 0.25], np.float32), labels=np.array([0, 2]), names=["person", "car"],
                      category_ids=np.array([1, 3]), image_size=(200, 100))
    out = view.prediction_dicts(dets)
    assert out[0]["bounding_box"] == pytest.approx([0.1, 0.1, 0.5, 0.5])
    assert out[1]["bounding_box"] == pytest.approx([0, 0, 1, 1])
    assert [d["label"] for d in out] == ["person", "car"]
    assert [d["confidence"] for d in out] == pytest.approx([0.9, 0.25]) and type(out[0]["confidence"]) is float
    # ground-truth names by category id win, so predictions and ground truth share labels
    assert [d["label"] for d in view.prediction_dicts(dets, {1: "human"})] == ["human", "car"]


def test_ground_truth_dicts_and_coco_records(tmp_path: Path):
    ann = {"images": [{"id": 5, "file_name": "a.jpg", "width": 200, "height": 100},
                      {"id": 6, "file_name": "b.jpg", "width": 50, "height": 50}],
           "annotations": [{"id": 1, "image_id": 5, "category_id": 3, "bbox": [20, 10, 100, 50], "iscrowd": 1}],
           "categories": [{"id": 3, "name": "car"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    records, names = view.coco_records(tmp_path, tmp_path / "ann.json")
    assert names == {3: "car"} and [r.path.name for r in records] == ["a.jpg", "b.jpg"]
    assert records[0].ground_truth == [{"label": "car", "bounding_box": pytest.approx([0.1, 0.1, 0.5, 0.5]),
                                        "iscrowd": 1}]
    assert records[1].ground_truth == []
    with pytest.raises(DfineError, match="images folder"):
        view.coco_records(tmp_path / "nope", tmp_path / "ann.json")


def test_pick_is_seeded_and_keeps_order():
    records = [view.ImageRecord(Path(f"{i}.jpg")) for i in range(20)]
    a, b = view.pick(records, 5, seed=51), view.pick(records, 5, seed=51)
    assert a == b and len(a) == 5 and [r.path for r in a] == sorted((r.path for r in a), key=lambda p: int(p.stem))
    assert view.pick(records, 0, seed=1) == records and view.pick(records, 50, seed=1) == records


def test_dataset_arguments_are_checked(tmp_path):
    from dfine.commands.fiftyone import _dataset_paths

    def paths(images=None, ann_file=None, config=None, split="val", names=None):
        with _dataset_paths(argparse.Namespace(images=images, ann_file=ann_file, config=config, data=None,
                                               split=split, names=names)) as found:
            return found
    assert paths("imgs", "a.json") == ("imgs", "a.json") and paths("imgs") == ("imgs", None)
    with pytest.raises(DfineError, match="--ann-file needs --images"):
        paths(ann_file="a.json")
    with pytest.raises(DfineError, match="no dataset: give --data DATASET, --images DIR"):
        paths()
    with pytest.raises(DfineError, match="--split goes with --data DATASET"):
        paths("imgs", split="test")
    recipe = Path(__file__).resolve().parents[1] / "configs/dfine/dfine_hgnetv2_n_coco.yml"
    assert paths(config=str(recipe)) == ("/data/COCO2017/val2017/", "/data/COCO2017/annotations/instances_val2017.json")


@pytest.fixture
def fiftyone(tmp_path_factory, monkeypatch):
    """FiftyOne with its database in a temporary folder (skips when not installed)."""
    if "fiftyone" not in sys.modules:
        monkeypatch.setenv("FIFTYONE_DATABASE_DIR", str(tmp_path_factory.mktemp("fo-db")))
    monkeypatch.setenv("FIFTYONE_DO_NOT_TRACK", "true")
    return pytest.importorskip("fiftyone")


def test_build_dataset_with_golden_model(fiftyone, coco128, tmp_path, capsys):
    ckpt = tmp_path / "n.pth"
    torch.save(load_golden("n")["checkpoint"], ckpt)
    argv = ["fiftyone", "-m", str(ckpt), "--images", str(coco128 / "train2017"),
            "--ann-file", str(coco128 / "annotations" / "instances_train2017.json"),
            "-n", "3", "--conf", "0.0", "--name", "dfine-test", "--no-launch", "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "FiftyOne dataset 'dfine-test': 3 images, mAP@[.5:.95]" in out  # random golden weights: mAP ~0
    dataset = fiftyone.load_dataset("dfine-test")
    try:
        assert len(dataset) == 3
        gt_names = {c["name"] for c in json.loads((coco128 / "annotations/instances_train2017.json").read_text())
                    ["categories"]}
        for sample in dataset:
            assert Path(sample.filepath).is_file() and sample.metadata.width > 0
            preds, gts = sample.predictions.detections, sample.ground_truth.detections
            assert len(preds) == 300 and gts and sample.eval_tp + sample.eval_fp == len(preds)
            assert all(d.label in gt_names and d.confidence > 0 for d in preds)
            assert all(-1 < x < 2 and -1 < y < 2 and 0 < w < 2 and 0 < h < 2 for x, y, w, h in
                       (d.bounding_box for d in preds))  # relative (the random model's boxes may overhang)
            assert {d.eval for d in preds} <= {"tp", "fp"}
    finally:
        dataset.delete()


class _Oracle:
    """A detector that predicts the ground truth of a COCO file (score 0.9)."""

    batch_size = 2

    def __init__(self, ann_file: Path):
        data = json.loads(ann_file.read_text())
        self.images = {im["file_name"]: im for im in data["images"]}
        self.anns = {}
        for a in data["annotations"]:
            self.anns.setdefault(a["image_id"], []).append(a)

    def predict_pil(self, images, paths):
        out = []
        for path in paths:
            im = self.images[Path(path).name]
            anns = [a for a in self.anns.get(im["id"], []) if not a.get("iscrowd")]
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
            cats = np.array([a["category_id"] for a in anns], np.int64)
            out.append(Detections(boxes=boxes.reshape(-1, 4), scores=np.full(len(anns), 0.9, np.float32),
                                  labels=cats, names=[str(c) for c in cats], category_ids=cats,
                                  image_size=(im["width"], im["height"]), path=path))
        return out


def test_perfect_predictions_evaluate_to_map_one(fiftyone, coco128):
    ann_file = coco128 / "annotations" / "instances_train2017.json"
    records, names = view.coco_records(coco128 / "train2017", ann_file)
    records = view.pick(records, 4, seed=0)
    dataset, mean_ap, bad = view.build_dataset(_Oracle(ann_file), records, "dfine-oracle", names, progress=False)
    try:
        assert mean_ap == pytest.approx(1.0) and bad == [] and len(dataset) == 4
        for sample in dataset:
            assert sample.eval_fp == 0 and sample.eval_fn == 0
            assert sample.eval_tp == len(sample.predictions.detections) > 0
            assert {d.label for d in sample.predictions.detections} <= set(names.values())
    finally:
        dataset.delete()


def test_data_folder_gives_its_split_with_ground_truth(tmp_path, capsys):
    """``--data`` (a walk gave it, as to dfine train and eval): a YOLO folder's split, converted into a temporary
    folder that is gone after, the dataset never written; its records carry the class names."""
    from dfine.commands.fiftyone import _dataset_paths
    from tests.data.datasets import image, yolo_labels

    src = tmp_path / "yolo"
    for split in ("train", "val"):
        for i in range(2):
            image(src / f"images/{split}/{i}.jpg", (64, 48))
            yolo_labels(src / f"labels/{split}/{i}.txt", [f"{i} 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat, dog]\n")
    before = sorted(src.rglob("*"))
    args = argparse.Namespace(images=None, ann_file=None, config=None, data=str(src), split="val", names=None)
    with _dataset_paths(args) as (images, ann_file):
        records, names = view.coco_records(Path(images), Path(ann_file))
    assert not Path(ann_file).exists() and sorted(src.rglob("*")) == before
    assert names == {1: "cat", 2: "dog"}
    assert sorted(r.path.name for r in records) == ["0.jpg", "1.jpg"]
    assert all(r.path.parent == src / "images/val" for r in records)
    assert "into a temporary folder for this view (removed after it)" in capsys.readouterr().err
    with pytest.raises(DfineError, match=r"--data .*yolo: no test split"):
        with _dataset_paths(argparse.Namespace(**{**vars(args), "split": "test"})):
            pass
    with pytest.raises(DfineError, match="leave out --images and --ann-file"):
        with _dataset_paths(argparse.Namespace(**{**vars(args), "images": "imgs"})):
            pass
