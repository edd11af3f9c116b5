"""The score threshold a training run recommends travels with the weights: each checkpoint the run
writes carries the one measured on its own weights, ``convert-weights`` and every export keep it, and
``dfine predict`` / ``Detector`` use it when no ``--conf`` is given (a walk: a young model's .onnx
predicted at the fixed 0.5 drew nothing while its run had printed ``--conf 0.2``)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dfine.checkpoint import read_checkpoint, recommended_conf
from dfine.cli import main
from dfine.engine.evaluator import coco_metrics
from dfine.errors import DfineError
from tests.conftest import load_golden, shared_path
from tests.engine.conftest import write_recipe, write_subset
from tests.engine.test_best_conf import _detections, scripted_run

pytest.importorskip("matplotlib")

SMALL = """lr_warmup_scheduler: {type: LinearWarmup, warmup_duration: 1}
DFINETransformer: {num_queries: 30, num_denoising: 10}
DFINEPostProcessor: {num_top_queries: 30}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs whose evaluations recommend different thresholds: epoch 1 (best_stg1.pth) one,
    epoch 2 (best_stg2.pth, last.pth) another."""
    coco128 = shared_path("data", "coco128")
    folder = tmp_path_factory.mktemp("conf")
    train = write_subset(coco128, folder / "train.json", 2)
    val_file = write_subset(coco128, folder / "val.json", 1, offset=2)
    recipe = write_recipe(folder / "recipe.yml", coco128 / "train2017", train, val_file, epochs=2, batch=1,
                          size=160, mscoco=False, extra=SMALL)
    val = json.loads(val_file.read_text())
    evaluations = [(0.25, coco_metrics(val, _detections(val, 0.6, 0.95))),
                   (0.5, coco_metrics(val, _detections(val, 0.8, 0.3)))]
    picks = [m.confidence.pick()["conf"] for _, m in evaluations]
    assert picks[0] != picks[1]
    scripted_run(recipe, evaluations)
    images = folder / "images"
    images.mkdir()
    for im in val["images"]:
        shutil.copy(coco128 / "train2017" / im["file_name"], images)
    return {"out": folder / "out", "picks": picks, "images": images}


def test_each_checkpoint_carries_the_conf_of_its_own_weights(run):
    out, (first, second) = run["out"], run["picks"]
    assert read_checkpoint(out / "best_stg1.pth")["recommended_conf"] == pytest.approx(first)
    assert read_checkpoint(out / "best_stg2.pth")["recommended_conf"] == pytest.approx(second)
    assert read_checkpoint(out / "last.pth")["recommended_conf"] == pytest.approx(second)
    assert main(["convert-weights", str(out / "best_stg1.pth"), str(out / "slim.pth")]) == 0
    assert read_checkpoint(out / "slim.pth")["recommended_conf"] == pytest.approx(first)


def test_predict_and_detector_use_it_from_the_checkpoint_and_every_export(run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from dfine.inference import Detector
    best, conf = run["out"] / "best_stg2.pth", run["picks"][1]
    xml = tmp_path / "model.xml"
    assert main(["export", "-r", str(best), "--format", "openvino", "-o", str(xml)]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0].endswith(f", --conf {conf:.2f} as its training run recommends)"), said  # the .onnx
    assert said[1].startswith(f"wrote {xml} and {xml.with_suffix('.bin')} (float32 OpenVINO IR, input 160x160, ")
    assert said[1].endswith(f", --conf {conf:.2f} as its training run recommends)"), said  # the .xml says it too
    for model in (best, xml.with_suffix(".onnx"), xml):
        det = Detector(str(model))
        assert det.recommended_conf == pytest.approx(conf) and det.conf == pytest.approx(conf), model
        assert Detector(str(model), conf=0.7).conf == 0.7  # what the user gives wins
        out = tmp_path / f"pred_{model.suffix[1:]}"
        assert main(["predict", str(run["images"]), "-m", str(model), "-o", str(out)]) == 0
        err = capsys.readouterr().err
        assert (f"--conf {conf:.2f}: the threshold with the best F1 on the val set of its training run, which "
                f"{model.name} carries (give --conf to change it)") in err
        assert all(r["score"] > conf for r in json.loads((out / "predictions.json").read_text()))
        assert main(["predict", str(run["images"]), "-m", str(model), "-o", str(out), "--conf", "0.3"]) == 0
        assert "the threshold with the best F1" not in capsys.readouterr().err


def test_the_int8_export_keeps_it(run, tmp_path):
    pytest.importorskip("nncf")
    from dfine.inference import Detector
    xml = tmp_path / "int8.xml"
    assert main(["export", "-r", str(run["out"] / "best_stg1.pth"), "--format", "openvino", "--int8",
                 "--calib", str(run["images"]), "--calib-size", "1", "-o", str(xml)]) == 0
    det = Detector(str(xml))
    assert det.conf == pytest.approx(run["picks"][0])
    assert repr(det).startswith("Detector(openvino int8, input 160x160, ")  # a walk could not tell it from float32
    assert repr(Detector(str(xml.with_name("int8_float.onnx")))).startswith("Detector(onnxruntime, input 160x160, ")


def test_a_published_checkpoint_has_none_and_predicts_at_0_5(tmp_path):
    from dfine.inference import Detector
    path = tmp_path / "dfine_n_coco.pth"
    torch.save(load_golden("n")["checkpoint"], path)
    det = Detector(str(path), imgsz=256)
    assert det.recommended_conf is None and det.conf == 0.5


def test_files_written_before_the_entry_name_it_by_their_progress(run, tmp_path):
    """A run's files from before ``recommended_conf`` existed: found through the training progress by
    the file's name; a renamed copy has none; a file whose last evaluation was interrupted has none."""
    ckpt = read_checkpoint(run["out"] / "best_stg1.pth")
    del ckpt["recommended_conf"]
    picks = ckpt["progress"]["conf"]
    assert recommended_conf(ckpt, str(tmp_path / "best_stg1.pth")) == pytest.approx(picks["stg1"]["conf"])
    assert recommended_conf(ckpt, str(tmp_path / "last.pth")) == pytest.approx(picks["last"]["conf"])
    assert recommended_conf(ckpt, str(tmp_path / "checkpoint0001.pth")) == pytest.approx(picks["last"]["conf"])
    assert recommended_conf(ckpt, str(tmp_path / "model.pth")) is None
    assert recommended_conf({**ckpt, "pending_eval": {"epoch": 1}}, str(tmp_path / "last.pth")) is None


@pytest.mark.parametrize("value", [5, "0.3", True, -0.1])
def test_a_bad_value_is_one_line_naming_the_file(value, tmp_path):
    with pytest.raises(DfineError, match=r"m\.pth: 'recommended_conf' is .*, not a score in 0\.\.1; give --conf"):
        recommended_conf({"recommended_conf": value}, str(tmp_path / "m.pth"))


def test_a_bad_value_in_an_export_is_one_line(run, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    from dfine.inference import Detector
    path = tmp_path / "model.onnx"
    assert main(["export", "-r", str(run["out"] / "last.pth"), "--format", "onnx", "-o", str(path)]) == 0
    model = onnx.load(str(path))
    next(p for p in model.metadata_props if p.key == "recommended_conf").value = "high"
    onnx.save(model, str(path))
    with pytest.raises(DfineError, match="model.onnx: its metadata 'recommended_conf' is 'high', not a score in 0..1"):
        Detector(str(path))
