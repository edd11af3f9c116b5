"""The path a user walks, in one piece: a data folder -> ``dfine train`` (fine-tuned from a zoo name)
-> ``dfine eval`` of every checkpoint training writes -> ``dfine export`` to ONNX and OpenVINO ->
``dfine predict`` and ``Detector`` on the ``.pth``, the ``.onnx`` and the ``.xml``: the same
detections everywhere, with the dataset's own class names and category ids. Then the same with a
published-layout checkpoint (weights only: COCO names and ids are assumed for 80 classes).

One tiny training run (N at 160 px, 2 steps, 30 queries, 4 images) serves the whole module.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from dfine.checkpoint import read_checkpoint
from dfine.cli import main
from dfine.data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_NAMES
from tests.conftest import load_golden, shared_path
from tests.engine.conftest import write_recipe, write_subset

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

NAMES, IDS = ["person", "car", "chair"], [1, 3, 62]  # the dataset's classes (ids are not 0..2)
SIZE = 160
SMALL = f"""lr_warmup_scheduler: {{type: LinearWarmup, warmup_duration: 1}}
DFINETransformer: {{num_queries: 30, num_denoising: 10}}
DFINEPostProcessor: {{num_top_queries: 30}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``dfine train -t dfine_n_coco`` (the zoo name resolves to the published-layout golden N
    placed in the download cache: nothing is downloaded) on 4 coco128 images of 3 classes."""
    coco = shared_path("data", "coco128")
    folder = tmp_path_factory.mktemp("e2e")
    cache = folder / "home" / "weights"
    cache.mkdir(parents=True)
    published = cache / "dfine_n_coco.pth"
    torch.save(load_golden("n")["checkpoint"], published)
    ann = write_subset(coco, folder / "chess.json", 4, categories=IDS)
    recipe = write_recipe(folder / "recipe.yml", coco / "train2017", ann, ann, epochs=1, batch=2, size=SIZE,
                          mscoco=False, extra=SMALL)
    images = folder / "images"
    images.mkdir()
    for im in json.loads(ann.read_text())["images"][:2]:
        shutil.copy(coco / "train2017" / im["file_name"], images)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DFINE_HOME", str(folder / "home"))
        with pytest.warns(UserWarning, match="class heads start fresh"):
            assert main(["train", "-c", str(recipe), "-t", "dfine_n_coco", "--max-steps", "2", "--seed", "0",
                         "--no-progress"]) == 0
        yield {"folder": folder, "recipe": recipe, "out": folder / "out", "images": images, "published": published,
               "ann": ann, "ann_images": coco / "train2017"}


def _eval(run, checkpoint: Path, name: str) -> Dict[str, float]:
    out = run["folder"] / f"eval_{name}"
    assert main(["eval", "-c", str(run["recipe"]), "-r", str(checkpoint), "--output-dir", str(out),
                 "--no-progress"]) == 0
    return json.loads((out / "eval.json").read_text())


def test_every_checkpoint_training_writes_evaluates_and_converts(run):
    """``--test-only -r`` takes last.pth, best_stg1.pth, checkpoint0000.pth, the converted file and a
    published-layout copy; they hold the same EMA weights, so the same AP."""
    out = run["out"]
    assert main(["convert-weights", str(out / "last.pth"), str(out / "converted.pth")]) == 0
    converted = read_checkpoint(out / "converted.pth")
    assert converted["class_names"] == NAMES and converted["category_ids"] == IDS
    assert converted["input_size"] == [SIZE, SIZE] and converted["model_config"]["decoder"]["num_queries"] == 30
    last = read_checkpoint(out / "last.pth")
    torch.save({"model": last["model"], "ema": last["ema"]}, out / "published_layout.pth")
    files = ["last.pth", "best_stg1.pth", "checkpoint0000.pth", "converted.pth", "published_layout.pth"]
    results = {f: _eval(run, out / f, Path(f).stem) for f in files}
    first = results["last.pth"]
    assert set(first["per_class"]) <= set(NAMES) | {str(i) for i in IDS}
    for f in files[1:]:
        assert results[f]["stats"] == pytest.approx(first["stats"], abs=1e-6), f


def _pairs(a: List[dict], b: List[dict], score_tol: float = 2e-3, box_tol: float = 1.0) -> None:
    """COCO result lists ``a`` and ``b`` of one model on the same images: every detection of ``a``
    clear of the top-k cut-off (where near ties may swap in and out) has its own partner in ``b``
    (same image and category, score within ``score_tol``, box within ``box_tol`` px)."""
    floor = min(r["score"] for r in a + b) + 2 * score_tol
    a = [r for r in a if r["score"] > floor]
    assert a, "no detection above the cut-off"
    cost = np.full((len(a), len(b)), 1e9)
    for i, r in enumerate(a):
        for j, s in enumerate(b):
            if r["image_id"] == s["image_id"] and r["category_id"] == s["category_id"]:
                box = np.abs(np.subtract(r["bbox"], s["bbox"])).max()
                cost[i, j] = box / box_tol + abs(r["score"] - s["score"]) / score_tol
    rows, cols = linear_sum_assignment(cost)
    assert len(rows) == len(a) and cost[rows, cols].max() <= 2.0, f"worst pair cost {cost[rows, cols].max():.3g}"


@pytest.mark.parametrize("source", ["trained", "published"])
def test_export_predict_and_detector_agree(run, source, tmp_path, capsys):
    """export -> predict with the .pth, .onnx and .xml, and Detector on each: same detections, and the
    model's class names and category ids in every output, predictions.json included. The export says
    the input size and the classes the file carries (it said only 'wrote model.onnx')."""
    from dfine.inference import Detector
    if source == "trained":  # its own input size, names and ids
        pth, names, ids, size, imgsz = run["out"] / "last.pth", NAMES, IDS, SIZE, []
    else:  # weights only: recognised as N, COCO names and ids for 80 classes; 300 queries need 256 px
        pth, names, ids, size = run["published"], list(MSCOCO_NAMES), list(MSCOCO_CATEGORY_IDS), 256
        imgsz = ["--imgsz", str(size)]
    xml = tmp_path / "model.xml"
    assert main(["export", "-r", str(pth), "--format", "openvino", "-o", str(xml)] + imgsz) == 0
    said = capsys.readouterr().out.splitlines()[0]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    assert said == (f"wrote {xml.with_suffix('.onnx')} (input {size}x{size}, batch any, {len(names)} classes: "
                    f"{shown})"), said
    models = {"torch": pth, "onnxruntime": xml.with_suffix(".onnx"), "openvino": xml}
    results = {}
    for backend, model in models.items():
        out = tmp_path / backend
        extra = imgsz if backend == "torch" else []
        assert main(["predict", str(run["images"]), "-m", str(model), "--conf", "0", "-o", str(out)] + extra) == 0
        results[backend] = json.loads((out / "predictions.json").read_text())
        assert results[backend] and {r["category_id"] for r in results[backend]} <= set(ids)
        det = Detector(str(model), conf=0.0, imgsz=size if backend == "torch" else None)
        assert det.backend == backend and det.imgsz == (size, size) and list(det.class_names) == names
        for dets in det(sorted(run["images"].iterdir())):
            assert set(dets.names) <= set(names)
            assert [ids[names.index(n)] for n in dets.names] == dets.category_ids.tolist()
    for backend in ("onnxruntime", "openvino"):
        _pairs(results["torch"], results[backend])
        _pairs(results[backend], results["torch"])


def test_int8_export_of_the_trained_checkpoint_evaluates_and_predicts(run, tmp_path, capsys):
    """The int8 path from what training wrote: ``export --int8`` of last.pth (simplified, as by
    default) -> ``eval`` of the IR on the run's val set -> ``predict`` and ``Detector`` with it: the
    dataset's names and ids, the training size, and the quantization recorded in the IR."""
    pytest.importorskip("nncf")
    import openvino as ov
    from dfine.export.openvino import ir_metadata
    from dfine.inference import Detector
    xml = tmp_path / "int8.xml"
    assert main(["export", "-r", str(run["out"] / "last.pth"), "--format", "openvino", "--int8",
                 "--calib", str(run["images"]), "--calib-size", "2", "-o", str(xml)]) == 0
    info = json.loads(ir_metadata(ov.Core().read_model(xml))["quantization"])
    assert info["precision"] == "int8" and info["calibration_images"] == 2
    capsys.readouterr()
    assert main(["eval", "--no-progress", "-r", str(xml), "--ann-file", str(run["ann"]),
                 "--images", str(run["ann_images"]), "--output-dir", str(tmp_path / "eval")]) == 0
    assert re.search(r"\bAP \d+\.\d", capsys.readouterr().out)
    metrics = json.loads((tmp_path / "eval" / "int8.xml.eval.json").read_text())  # per class by category id
    assert metrics["per_class"] and {metrics["names"][c] for c in metrics["per_class"]} <= set(NAMES)
    assert main(["predict", str(run["images"]), "-m", str(xml), "--conf", "0", "-o", str(tmp_path / "pred")]) == 0
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert results and {r["category_id"] for r in results} <= set(IDS)
    det = Detector(str(xml), conf=0.0)
    assert det.backend == "openvino" and det.imgsz == (SIZE, SIZE) and list(det.class_names) == NAMES


def test_eval_of_the_checkpoint_and_of_its_export_recommend_the_same_conf(run, tmp_path, capsys):
    """``dfine eval -c RECIPE -r last.pth`` (the training's evaluator) and ``dfine eval -r model.onnx
    --ann-file`` (the export's) say the same best-F1 --conf and write it to their eval.json. The val
    boxes are the checkpoint's own three best detections per image, so that a 2-step model finds some."""
    from dfine.inference import Detector

    onnx = tmp_path / "model.onnx"
    assert main(["export", "-r", str(run["out"] / "last.pth"), "--format", "onnx", "-o", str(onnx)]) == 0
    data = json.loads(run["ann"].read_text())
    detector = Detector(str(run["out"] / "last.pth"), conf=0.0)
    data["annotations"] = []
    for im in data["images"]:
        for r in sorted(detector(str(run["ann_images"] / im["file_name"]))[0].to_coco(im["id"]),
                        key=lambda r: -r["score"])[:3]:
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": im["id"], "iscrowd": 0,
                                        "category_id": r["category_id"], "bbox": r["bbox"],
                                        "area": r["bbox"][2] * r["bbox"][3]})
    own = tmp_path / "own.json"
    own.write_text(json.dumps(data))
    recipe = write_recipe(tmp_path / "recipe.yml", run["ann_images"], run["ann"], own, epochs=1, batch=2,
                          size=SIZE, mscoco=False, extra=SMALL)
    capsys.readouterr()
    assert main(["eval", "-c", str(recipe), "-r", str(run["out"] / "last.pth"), "--output-dir", str(tmp_path),
                 "--no-progress"]) == 0
    said_checkpoint = [line for line in capsys.readouterr().out.splitlines() if "--conf" in line]
    assert main(["eval", "--no-progress", "-r", str(onnx), "--ann-file", str(own),
                 "--images", str(run["ann_images"]), "--output-dir", str(tmp_path)]) == 0
    said_export = [line for line in capsys.readouterr().out.splitlines() if "--conf" in line]
    assert len(said_checkpoint) == len(said_export) == 1
    assert said_checkpoint[0].startswith("--conf ") and " gives the best F1 on this set: " in said_checkpoint[0]
    checkpoint = json.loads((tmp_path / "eval.json").read_text())["best_conf"]
    exported = json.loads((tmp_path / "model.onnx.eval.json").read_text())["best_conf"]
    assert checkpoint["f1"] > 0.3
    assert exported == pytest.approx(checkpoint, abs=0.02)
