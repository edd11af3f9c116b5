"""dfine train --data DIR: a YOLO folder and a VOC folder converted into the output folder and trained
one short epoch; detection of COCO layouts; dfine.train() from Python."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path, PureWindowsPath
import socket
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from dfine.cli import main
from dfine.errors import DfineError
from dfine.recipes import data_run, detect_format, find_coco_splits, model_size
from tests.data.datasets import image, voc_xml, yolo_labels

TINY = ["--imgsz", "160", "--batch", "2", "--epochs", "1", "--max-steps", "1", "-d", "cpu", "--no-progress",
        "--model", "dfine_n", "-u", "HGNetv2.pretrained=false", "train_dataloader.num_workers=0",
        "val_dataloader.num_workers=0", "use_amp=false", "DFINETransformer.num_queries=50",
        "DFINEPostProcessor.num_top_queries=50"]


def _yolo(root):
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            image(root / f"images/{split}/{i}.jpg", (96, 64))
            yolo_labels(root / f"labels/{split}/{i}.txt", ["0 0.5 0.5 0.5 0.5", "1 0.2 0.3 0.2 0.2"])
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [apple, pear]\n")
    return root


def _voc(root):
    for i in range(3):
        image(root / f"JPEGImages/{i}.jpg", (96, 64))
        voc_xml(root / f"Annotations/{i}.xml", f"{i}.jpg", (96, 64), [("boat", (10, 10, 60, 50), 0)])
    return root


def printed_commands(printed: str) -> dict:
    """The ``eval``, ``export`` and ``predict`` commands the end of a run prints, by name (all three asserted)."""
    commands = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in printed.splitlines()
                if line.startswith("  ") and line.strip().split(":", 1)[0] in ("eval", "export", "predict")}
    assert set(commands) == {"eval", "export", "predict"}, printed
    return commands


def _trained(out, capsys):
    """Checks the run's files and printed next steps; returns what it printed (``.out``, ``.err``)."""
    printed = capsys.readouterr()
    assert (out / "last.pth").is_file()
    assert f"best weights: {out}" in printed.out and f"dfine predict -m {out}" in printed.out
    return printed


def test_train_from_a_voc_folder(tmp_path, capsys):
    src, out = _voc(tmp_path / "VOC"), tmp_path / "run"
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0
    assert "no ImageSets/Main split files: 1 of 3 images became val" in _trained(out, capsys).err
    assert (out / "data/annotations/instances_val.json").is_file() and not (src / "annotations").exists()


def test_train_from_split_files_beside_their_image_folders(tmp_path, capsys):
    """``train.json`` + ``train/``, ``val.json`` + ``val/`` (the layout ``dfine demo`` writes its data
    in) is a COCO dataset for ``--data``: it was 'not a COCO, YOLO, VOC or CVAT dataset folder'."""
    src, out = tmp_path / "shapes", tmp_path / "run"
    for split, n in (("train", 2), ("val", 1)):
        images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 96, "height": 64} for i in range(n)]
        for im in images:
            image(src / split / im["file_name"], (96, 64))
        anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0}
                for i in range(n)]
        (src / f"{split}.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                       "categories": [{"id": 1, "name": "circle"}]}))
    assert detect_format(src) == "coco"
    assert find_coco_splits(src) == {"train": (src / "train.json", src / "train"), "val": (src / "val.json", src / "val")}
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0
    assert "circle" in _trained(out, capsys).out


def test_detects_formats_and_coco_layouts(tmp_path):
    assert detect_format(_yolo(tmp_path / "y")) == "yolo"
    assert detect_format(_voc(tmp_path / "v")) == "voc"
    rf = tmp_path / "rf"
    for split in ("train", "valid"):
        (rf / split).mkdir(parents=True)
        (rf / split / "_annotations.coco.json").write_text("{}")
    assert detect_format(rf) == "coco"
    assert find_coco_splits(rf) == {"train": (rf / "train/_annotations.coco.json", rf / "train"),
                                    "val": (rf / "valid/_annotations.coco.json", rf / "valid")}
    image(rf / "train/images/0.jpg", (32, 32))  # a split folder without images of its own: images/ inside it
    image(rf / "valid/0.jpg", (32, 32))
    (rf / "valid/images").mkdir()
    assert find_coco_splits(rf)["train"][1] == rf / "train/images"
    assert find_coco_splits(rf)["val"][1] == rf / "valid"
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "train2017").mkdir()
    (coco / "annotations/instances_train2017.json").write_text("{}")
    assert find_coco_splits(coco) == {"train": (coco / "annotations/instances_train2017.json", coco / "train2017")}
    (coco / "annotations/instances_test2017.json").write_text("{}")
    assert list(find_coco_splits(coco)) == ["train", "test"]  # the splits' order, not the files' (test first)
    (coco / "annotations/instances_test2017.json").unlink()
    # a split folder, an annotation file, an images folder: the dataset folder above is named
    for wrong in (rf / "train", rf / "train/_annotations.coco.json", tmp_path / "v/JPEGImages"):
        with pytest.raises(DfineError) as err:
            detect_format(wrong)
        assert str(err.value) == (f"--data {wrong}: not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder; give the dataset "
                                  f"folder: --data {wrong.parents[1] if wrong.is_file() else wrong.parent}")
    # a Roboflow YOLO set whose data.yaml sits above dataset/{train,valid}/ (0dina/roadSign_temp): the images
    # folder named dataset/train (itself a YOLO set), whose own error then named the data.yaml's folder: two errors
    road = tmp_path / "roadsign"
    for split in ("train", "valid"):
        image(road / f"dataset/{split}/images/0.jpg", (96, 64))
        yolo_labels(road / f"dataset/{split}/labels/0.txt", ["0 0.5 0.5 0.5 0.5"])
    (road / "data.yaml").write_text("train: dataset/train/images\nval: dataset/valid/images\nnames: [stop]\n")
    for given in (road / "dataset/train/images", road / "dataset/train"):  # the data.yaml's folder, not dataset/
        with pytest.raises(DfineError) as err:
            detect_format(given)
        assert str(err.value).endswith(f"; give the dataset folder: --data {road}"), str(err.value)
    # a download holding two datasets (MajidrNEO1879/arithmetic-detection: data/ and numbers_only_ds/), beside a
    # VOC set: the datasets inside are named, not the folder above (a VOC set two levels down made it one)
    download = tmp_path / "arith"
    for name in ("data", "numbers_only_ds"):
        for split in ("train", "valid"):
            (download / name / split).mkdir(parents=True)
            (download / name / split / "_annotations.coco.json").write_text("{}")
    with pytest.raises(DfineError) as err:
        detect_format(download)
    assert str(err.value) == (f"--data {download}: not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder; it holds 2 dataset "
                              f"folders (data, numbers_only_ds): give one, e.g. --data {download / 'data'}")
    _voc(tmp_path / "sets/VOC2007")
    nowhere = tmp_path / "sets/b/c"
    nowhere.mkdir(parents=True)
    with pytest.raises(DfineError, match=r"not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder \(annotations/"):
        detect_format(nowhere)


def test_one_split_folder_of_a_dataset_is_not_read_as_a_dataset(tmp_path, capsys):
    """A walk's ``dfine eval --data chess/test`` (Roboflow COCO: train/, valid/, test/) read the split folder as
    a dataset of one file and scored a seeded fifth of it (6 of 29 images, AP 55.1 against 52.7); ``--data
    chess/train`` trained without the valid/ beside it. Each is one line naming the dataset folder."""
    rf = tmp_path / "chess"
    for split in ("train", "valid", "test"):
        image(rf / split / "0.jpg", (32, 32))
        (rf / split / "_annotations.coco.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "0.jpg", "width": 32, "height": 32}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 9, 9], "area": 81, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "pawn"}]}))
    assert detect_format(rf) == "coco"
    for given, said in ((rf / "test", f"the test split of the dataset {rf}, whose train and val splits go with it; "
                                      f"give the dataset folder: --data {rf} --split test (to evaluate this split)"),
                        (rf / "test/_annotations.coco.json", "the test split of the dataset"),
                        (rf / "valid", f"the val split of the dataset {rf}, whose train and test splits go with it; "
                                       f"give the dataset folder: --data {rf} (dfine eval scores its val split)"),
                        (rf / "train", f"the train split of the dataset {rf}, whose val and test splits go with it; "
                                       f"give the dataset folder: --data {rf}")):
        with pytest.raises(DfineError) as err:
            detect_format(given)
        assert str(err.value).startswith(f"--data {given}: {said}"), str(err.value)
    assert main(["train", "--data", str(rf / "train"), "--model", "dfine_n", "-o", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"give the dataset folder: --data {rf}")
    assert not (tmp_path / "run").exists()
    import dfine
    with pytest.raises(DfineError, match=f"give the dataset folder: data={rf}, split='test' \\(to evaluate"):
        dfine.train(rf / "test")
    (rf / "test").rename(tmp_path / "test")  # a split folder alone (a download of one split) is a dataset
    assert detect_format(tmp_path / "test") == "coco"
    # evaluated without --split, a test-only folder says --split test (a re-walk was given training's -u hint)
    alone = tmp_path / "onlytest"
    (alone / "test").parent.mkdir()
    (tmp_path / "test").rename(alone / "test")
    capsys.readouterr()
    import torch
    from tests.conftest import load_golden
    torch.save(load_golden("n")["checkpoint"], tmp_path / "n.pth")  # a checkpoint not there is said first
    assert main(["eval", "-r", str(tmp_path / "n.pth"), "--data", str(alone)]) == 2
    err = capsys.readouterr().err
    assert f"--data {alone}: no val split; found test: --split test evaluates its test split" in err, err


def test_a_missing_split_is_named_with_what_the_folder_has(tmp_path, capsys):
    """GMI-lunar_crater_identifier (Roboflow COCO) as fetched: valid/ and test/ with their files, train/ with
    images but without its _annotations.coco.json; then without a val split but with a test split."""
    rf = tmp_path / "lunar"
    for split in ("valid", "test", "train"):
        image(rf / split / "0.jpg", (32, 32))
        if split != "train":
            (rf / split / "_annotations.coco.json").write_text("{}")
    assert main(["train", "--data", str(rf), "--model", "dfine_n"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --data {rf}: no train split; found val (valid/_annotations.coco.json), test "
        f"(test/_annotations.coco.json); train/ holds 1 image but no annotation file; add "
        f"train/_annotations.coco.json (Roboflow) or annotations/instances_train.json with its train images")
    (rf / "valid").rename(rf / "train_")
    (rf / "train").rename(rf / "valid_")
    (rf / "train_").rename(rf / "train")
    for i in range(5):
        image(rf / "train" / f"{i}.jpg", (32, 32))
    (rf / "train/_annotations.coco.json").write_text(json.dumps(
        {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 32, "height": 32} for i in range(5)],
         "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 9, 9], "area": 81, "iscrowd": 0}
                         for i in range(5)], "categories": [{"id": 1, "name": "crater"}]}))
    run = data_run(rf, "dfine_n", output_dir=tmp_path / "o")  # no val split: a seeded one of train's images
    assert any(n.startswith("no val split file, so its train file (_annotations.coco.json): 1 of 5 images "
                            "became val") for n in run.notes)
    # the val split the user points the loader at need not be in the folder: train is then kept whole
    hint = (f"-u val_dataloader.dataset.ann_file={rf}/test/_annotations.coco.json "
            f"val_dataloader.dataset.img_folder={rf}/test")
    run = data_run(rf, "dfine_n", device="cpu", given=hint.split()[1:], output_dir=tmp_path / "o2")
    assert [o for o in run.overrides if o.startswith(("train_", "val_")) and ".dataset." in o] == [
        f'train_dataloader.dataset.ann_file="{rf}/train/_annotations.coco.json"',
        f'train_dataloader.dataset.img_folder="{rf}/train"']


def test_model_names_and_epoch_overrides(tmp_path):
    assert [model_size(m) for m in ("dfine_s", "D-FINE-L", "dfine-x", "n", "dfine_hgnetv2_m")] == list("slxnm")
    with pytest.raises(DfineError, match="--model 'yolo8'"):
        model_size("yolo8")
    run = data_run(_yolo(tmp_path / "y"), "dfine_m", epochs=22, batch=4, output_dir=tmp_path / "o")
    assert run.recipe.name == "dfine_hgnetv2_m_custom.yml"
    assert "epochs=22" in run.overrides and "train_dataloader.collate_fn.stop_epoch=20" in run.overrides
    assert "train_dataloader.total_batch_size=4" in run.overrides and "num_classes=null" in run.overrides


def test_objects365_weights_are_fine_tuned_with_the_published_obj2custom_recipe(tmp_path, capsys):
    """The published README fine-tunes Objects365 weights on custom data with
    ``custom/objects365/dfine_hgnetv2_{size}_obj2custom.yml`` (64 epochs, lower learning rates, no warmups);
    ``--data -t dfine_s_obj365`` took the from-scratch custom recipe (220 epochs, lr 0.0004, 500 warmup steps).
    Objects365 weights are known by their 366-class head or their zoo entry, and a run continued with
    ``--auto-resume`` (its ``-t`` not given again) keeps the recipe its checkpoint records."""
    import dfine
    src = _yolo(tmp_path / "y")
    obj365 = tmp_path / "obj365.pth"
    torch.save({"model": dfine.build_model("dfine_s", num_classes=366).state_dict()}, obj365)
    run = data_run(src, "dfine_s", epochs=10, output_dir=tmp_path / "o", tuning=obj365)
    assert run.recipe.name == "dfine_hgnetv2_s_obj2custom.yml" and run.recipe.is_file()
    assert "train_dataloader.collate_fn.stop_epoch=8" in run.overrides  # stage 2: 8 of 64 epochs, not 20 of 220
    assert any("obj365.pth is an Objects365 detector" in n and "64 epochs unless --epochs" in n for n in run.notes)
    assert data_run(src, "dfine_s", output_dir=tmp_path / "o", tuning="dfine_s_obj365").recipe.name == \
        "dfine_hgnetv2_s_obj2custom.yml"  # the zoo entry, known without its download
    coco = tmp_path / "coco.pth"
    torch.save({"model": dfine.build_model("dfine_s", num_classes=80).state_dict()}, coco)
    for tuning in (coco, "dfine_s_coco", "dfine_s_obj2coco", None):
        run = data_run(src, "dfine_s", epochs=10, output_dir=tmp_path / "o", tuning=tuning)
        assert run.recipe.name == "dfine_hgnetv2_s_custom.yml", tuning
        assert "train_dataloader.collate_fn.stop_epoch=9" in run.overrides
    # N has no Objects365 weights nor recipe: a 366-class N file trains with the custom recipe
    torch.save({"model": dfine.build_model("dfine_n", num_classes=366).state_dict()}, tmp_path / "n365.pth")
    assert data_run(src, "dfine_n", output_dir=tmp_path / "o", tuning=tmp_path / "n365.pth").recipe.name == \
        "dfine_hgnetv2_n_custom.yml"
    # end to end: the run records its recipe, and --auto-resume (without -t) continues with it
    small = ["--imgsz", "160", "--batch", "2", "--max-steps", "1", "-d", "cpu", "--no-progress", "-u",
             "train_dataloader.num_workers=0", "val_dataloader.num_workers=0", "use_amp=false",
             "DFINETransformer.num_queries=50", "DFINEPostProcessor.num_top_queries=50"]
    out = tmp_path / "run"
    assert main(["train", "--data", str(src), "--model", "dfine_s", "-t", str(obj365), "--epochs", "1", "-o", str(out),
                 *small]) == 0
    printed = capsys.readouterr()
    assert "model: dfine_hgnetv2_s_obj2custom.yml (HGNetv2-B0)" in printed.out
    assert torch.load(out / "last.pth", weights_only=True)["recipe"] == "dfine_hgnetv2_s_obj2custom.yml"
    assert main(["train", "--data", str(src), "--model", "dfine_s", "--epochs", "2", "-o", str(out),
                 "--auto-resume", *small]) == 0
    printed = capsys.readouterr()
    assert "model: dfine_hgnetv2_s_obj2custom.yml" in printed.out and "Objects365 detector" not in printed.err
    assert torch.load(out / "last.pth", weights_only=True)["last_epoch"] == 1


def test_the_end_of_a_python_run_gives_python_calls():
    """dfine.train's last lines gave a notebook command lines (a walk): the calls that do the same, with the
    evaluation's options as dfine.evaluate's arguments; a tiled run's whole-image evaluation sliced."""
    from dfine.engine.summary import data_command, next_commands, python_calls, tiled_commands
    command = dataclasses.replace(data_command("/d/fruit", "dfine_n", [("--imgsz", 320), ("--names", ["a", "b"]),
                                                                      ("-d", "cpu")]), python=True)
    best = Path("/r/best_stg1.pth")
    tiles = {"size": [320, 320], "source": "/d/big", "names": ["a", "b"], "images": "/d/big/val"}
    calls = python_calls(tiled_commands(next_commands(None, best, "/d/fruit/val", command), best, tiles, conf=0.4),
                         best, command, conf=0.4, tiles=tiles)
    assert calls == {"eval": "dfine.evaluate('/r/best_stg1.pth', '/d/fruit', imgsz=320, names='a,b', device='cpu')",
                     "export": "dfine.export_model('/r/best_stg1.pth', 'onnx')",
                     "predict": "dfine.Detector('/r/best_stg1.pth', conf=0.40, slice=320)(IMAGE)[0].plot()",
                     "whole": "dfine.evaluate('/r/best_stg1.pth', '/d/big', slice=320, names='a,b')"}
    square = dataclasses.replace(data_command("/d/fruit", "dfine_n", [("--imgsz", [256, 384])]), python=True)
    assert python_calls(next_commands(None, best, None, square), best, square)["eval"].startswith("dfine eval -r ")


def test_dfine_train_from_python_returns_folder_and_metrics(tmp_path, capsys):
    import dfine

    src = _yolo(tmp_path / "fruit")
    result = dfine.train(data=src, model="dfine_n", epochs=1, batch=2, imgsz=160, output_dir=tmp_path / "run",
                         device="cpu", max_steps=1, progress=False,
                         overrides=["HGNetv2.pretrained=false", "train_dataloader.num_workers=0",
                                    "val_dataloader.num_workers=0", "use_amp=false", "DFINETransformer.num_queries=50",
                                    "DFINEPostProcessor.num_top_queries=50"])
    assert result.output_dir == tmp_path / "run" and result.best is not None and result.best.is_file()
    assert isinstance(result.metrics, dict) and result.metrics
    # the run's end in Python calls (a notebook walk was given command lines); the model's -u items: a command
    ends = dict(re.findall(r"^  (eval|export|predict):\s+(.*)$", capsys.readouterr().out, re.M))
    assert ends["eval"].startswith(f"dfine eval -r {result.best} --data {src} ") and " -u " in ends["eval"]
    assert ends["export"] == f"dfine.export_model({str(result.best)!r}, 'onnx')"
    assert re.fullmatch(rf"dfine\.Detector\({re.escape(repr(str(result.best)))}(, conf=0\.\d\d)?\)\(IMAGE\)\[0\]"
                        rf"\.plot\(\)", ends["predict"]), ends["predict"]
    assert eval(ends["predict"], {"dfine": dfine, "IMAGE": str(src / "images/val/0.jpg")}).size == (96, 64)
    # then what dfine eval and dfine export do, returning the result (a notebook walk had to shell out)
    pytest.importorskip("onnxruntime")
    onnx = dfine.export_model(result.best, "onnx", output=tmp_path / "m.onnx")
    assert onnx == tmp_path / "m.onnx" and onnx.is_file()
    capsys.readouterr()
    from_checkpoint = dfine.evaluate(result.best, src, progress=False)
    assert from_checkpoint["path"] == str(result.best.parent / "eval.json")
    said = capsys.readouterr()  # the notes in the call's words: a walk was told --batch N and --model dfine_n
    err = said.err
    assert "CPU: evaluating in batches of 8; batch=N to change it" in err and "model=dfine_n" in err, err
    assert " --batch" not in err and " --model" not in err, err
    assert "--conf" not in said.out and ("conf=" in said.out or "no conf gives" in said.out), said.out
    assert dfine.evaluate(result.best, src, batch=1, progress=False)["stats"]["AP"] == pytest.approx(
        from_checkpoint["stats"]["AP"], abs=1e-3)
    assert "evaluating in batches of" not in capsys.readouterr().err
    assert from_checkpoint["stats"]["AP"] == pytest.approx(result.metrics["test_AP"], abs=1e-6)
    from_onnx = dfine.evaluate(onnx, src, progress=False)
    assert "--conf" not in capsys.readouterr().out  # an export's evaluation alike
    assert from_onnx["path"] == str(tmp_path / "m.onnx.eval.json") and set(from_onnx["names"].values()) == {"apple", "pear"}
    assert from_onnx["stats"]["AP"] == pytest.approx(from_checkpoint["stats"]["AP"], abs=0.02)
    # an evaluation's pictures beside its metrics file, named after it (dfine eval drew none: only training did)
    for result_, prefix in ((from_checkpoint, result.best.parent / "eval_"), (from_onnx, tmp_path / "m.onnx.eval_")):
        assert {str(prefix) + n for n in ("pr_curves.png", "confusion_matrix.png", "predictions.png")} <= set(
            result_["pictures"]), result_["pictures"]
        assert all(Path(p).is_file() and p.startswith(str(prefix)) for p in result_["pictures"])
    assert dfine.export_model(result.best, "ONNX", output=tmp_path / "m2.onnx").is_file()  # any case (a walk's 'ONNX')
    beside = dfine.export_model(result.best, "onnx")  # best_stg*.onnx beside its .pth: that .pth is named
    with pytest.raises(DfineError) as err:
        main_argv = ["export", "-r", str(beside), "--format", "openvino"]
        from dfine.api import _run
        _run(main_argv)
    assert str(err.value) == (f"{beside} is an ONNX export; exports are made from a .pth checkpoint: dfine export -r "
                              f"{result.best} --format openvino")
    assert dfine.evaluate(onnx, src, split="valid", progress=False)["stats"] == from_onnx["stats"]  # Roboflow's name
    # output_dir=: the metrics and pictures there, nothing new beside the model (a note said -o DIR to a Python call)
    for model, name in ((onnx, "m.onnx.eval.json"), (result.best, "eval.json")):
        elsewhere = dfine.evaluate(model, src, progress=False, output_dir=tmp_path / "ev" / model.suffix[1:])
        assert elsewhere["path"] == str(tmp_path / "ev" / model.suffix[1:] / name)
        assert elsewhere["stats"] == (from_onnx if model == onnx else from_checkpoint)["stats"]
        assert elsewhere["pictures"] and all(Path(p).parent == tmp_path / "ev" / model.suffix[1:]
                                             for p in elsewhere["pictures"])
    for call, said in ((lambda: dfine.export_model(result.best, "tflite"), "format 'tflite': give one of onnx, "),
                       (lambda: dfine.evaluate(tmp_path / "none.pth", src), "model file"),
                       # the arguments swapped: 'model file DATA not found' of a folder that is there (a walk)
                       (lambda: dfine.evaluate(src, result.best), f"model={str(src)!r} is a folder \\(the dataset\\?\\); "
                                                                  f"evaluate\\(model, data\\) takes the weights first"),
                       # in the arguments' words: 'leave --names out' to evaluate(names=...) (a walk)
                       (lambda: dfine.evaluate(onnx, src, names=["a"]), "^names= gives 1 class but .*leave names= out"),
                       # an export given to export: torch's weights_only text, cut mid-sentence (a walk)
                       (lambda: dfine.export_model(onnx, "openvino"),
                        f"{onnx} is an ONNX export; exports are made from a .pth checkpoint: give the one it came from"),
                       (lambda: dfine.export_model(result.best, int8=True), "int8=True needs calib="),
                       (lambda: dfine.evaluate(onnx, src, batch=0), "^batch is one whole number of at least 1, got 0$")):
        with pytest.raises(DfineError, match=said):
            call()


def test_dfine_train_from_python_prints_short_commands_that_work(tmp_path, capsys, monkeypatch):
    """dfine.train() prints the eval hint of ``dfine train --data``, not the 600-character recipe form
    pointing into site-packages (a walk on a Roboflow export); run as printed it gives the run's AP."""
    import shlex

    import dfine

    src = _yolo(tmp_path / "fruit")
    updates = ["HGNetv2.pretrained=false", "train_dataloader.num_workers=0", "val_dataloader.num_workers=0",
               "use_amp=false", "DFINETransformer.num_queries=50", "DFINEPostProcessor.num_top_queries=50"]
    result = dfine.train(data=src, model="dfine_n", epochs=1, batch=2, imgsz=160, output_dir=tmp_path / "run",
                         device="cpu", max_steps=1, progress=False, overrides=updates)
    printed = capsys.readouterr().out
    hint = next(line.split(":", 1)[1].strip() for line in printed.splitlines() if line.startswith("  eval:"))
    assert shlex.split(hint) == ["dfine", "eval", "-r", str(result.best), "--data", str(src), "--imgsz", "160",
                                 "-d", "cpu", "-u", "val_dataloader.num_workers=0", "DFINETransformer.num_queries=50",
                                 "DFINEPostProcessor.num_top_queries=50"]
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(hint)[1:]) == 0
    evaluated = json.loads((result.best.parent / "eval.json").read_text())["stats"]["AP"]
    assert evaluated == pytest.approx(result.metrics["test_AP"], abs=1e-6)


def test_cpu_run_without_batch_gets_a_cpu_batch(tmp_path):
    src = _yolo(tmp_path / "fruit")
    # a batch of dfine's choosing no larger than the train set (a walk's 2 images were refused batch 8)
    few = data_run(src, "dfine_n", output_dir=tmp_path / "run", device="cpu")
    assert "train_dataloader.total_batch_size=2" in few.overrides
    assert "CPU: batch 2 (the train set's 2 images; the recipe's batch is sized for GPUs); --batch N to change it" in (
        few.notes)
    for i in range(2, 9):
        image(src / f"images/train/{i}.jpg", (96, 64))
        yolo_labels(src / f"labels/train/{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    cpu = data_run(src, "dfine_n", output_dir=tmp_path / "run2", device="cpu")
    assert "train_dataloader.total_batch_size=8" in cpu.overrides
    assert any("CPU: batch 8" in note for note in cpu.notes)
    chosen = data_run(src, "dfine_n", batch=3, output_dir=tmp_path / "run", device="cpu")
    assert "train_dataloader.total_batch_size=3" in chosen.overrides
    assert not any("CPU: batch" in note for note in chosen.notes)
    gpu = data_run(src, "dfine_n", output_dir=tmp_path / "run", device="cuda")
    assert not any(o.startswith("train_dataloader.total_batch_size") for o in gpu.overrides)


def test_short_run_gets_a_warmup_of_a_tenth_of_its_steps():
    from dfine.recipes import short_run_warmup

    assert short_run_warmup(500, 20, 1250) is None  # 25,000 steps: the recipe's 500 is 2% of them
    short = short_run_warmup(500, 20, 2, images=2, batch=1)
    assert (short.warmup, short.steps) == (4, 40)
    assert short.note() == "lr warmup 4 steps, not the recipe's 500: this run has only 40 steps (2 images, batch 1, 20 epochs)"
    capped = short_run_warmup(500, 3, 5, images=400, batch=8, capped=True)  # --max-steps 5 of 50 batches
    assert (capped.warmup, capped.steps) == (2, 15) and "(--max-steps 5 per epoch, 3 epochs)" in capped.note()
    # dfine.train's words in a run it started (a walk's notebook read --max-steps)
    assert "(max_steps=5 per epoch, 3 epochs)" in short_run_warmup(500, 3, 5, capped=True, python=True).note()
    tiny = short_run_warmup(500, 1, 1, images=1, batch=1)  # counts of one read "1 step", not "1 steps"
    assert tiny.note() == "lr warmup 1 step, not the recipe's 500: this run has only 1 step (1 image, batch 1, 1 epoch)"
    # a recipe run (-c) keeps its warmup and says so, with the override; "the whole run" only when it is
    kept = short_run_warmup(500, 20, 100, images=800, batch=8)
    assert kept.kept_note() == ("lr warmup 500 steps as the recipe says, more than a tenth of this run's 2000 steps "
                                "(800 images, batch 8, 20 epochs); -u lr_warmup_scheduler.warmup_duration=200 shortens "
                                "it as --data runs do")


def test_train_data_shortens_the_warmup_by_the_steps_it_runs(tmp_path, capsys):
    """The trainer counts the steps of the loader it built, --max-steps included; the checkpoint
    keeps the warmup it ran with."""
    src, out = _yolo(tmp_path / "fruit"), tmp_path / "run"
    args = [a if a != "2" else "1" for a in TINY]  # batch 1: 2 steps an epoch, --max-steps 1 keeps 1
    assert main(["train", "--data", str(src), "-o", str(out), *args]) == 0
    printed = capsys.readouterr()
    assert "lr warmup 1 step, not the recipe's 500: this run has only 1 step (--max-steps 1 per epoch, 1 epoch)" \
        in printed.out
    from dfine.checkpoint import read_checkpoint
    assert read_checkpoint(out / "last.pth")["lr_warmup_scheduler"]["warmup_duration"] == 1
    # trained longer, past its warmup: no warmup line (a walk read 'lr warmup 1 step' as a new warmup to come)
    assert main(["train", "--data", str(src), "-o", str(out), *args, "--epochs", "3", "-r", str(out / "last.pth")]) == 0
    assert "lr warmup" not in capsys.readouterr().out
    # the run resumed as a recipe run (-c, as an earlier version printed its resume command): the recipe's 500
    # steps are not what the checkpoint's scheduler runs, so no 'lr warmup 500 steps' line (a walk)
    from dfine.config import load_config
    from dfine.engine.trainer import Trainer
    data = data_run(src, "dfine_n", output_dir=out)
    cfg = load_config(data.recipe, [*data.overrides, "HGNetv2.pretrained=false", "use_amp=false", "epochs=5",
                                    "train_dataloader.total_batch_size=1", "eval_spatial_size=[160,160]",
                                    "DFINETransformer.num_queries=50", "DFINEPostProcessor.num_top_queries=50",
                                    "train_dataloader.num_workers=0", "val_dataloader.num_workers=0",
                                    f"resume={out / 'last.pth'}"])
    assert cfg.lr_warmup_scheduler.warmup_duration == 500
    assert not any("lr warmup" in line for line in Trainer(cfg, progress=False).startup_summary())


def test_train_from_a_yolo_folder_and_printed_commands_work_from_another_folder(tmp_path, monkeypatch, capsys):
    """``dfine train --data fruit`` from one folder with relative paths: the source is untouched,
    the names are the dataset's, and the eval, export and predict commands it prints run as
    printed from another folder."""
    import shlex

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    src, out = _yolo(work / "fruit"), work / "output/fruit_dfine_n"
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    assert main(["train", "--data", "fruit", *TINY]) == 0  # output into ./output/fruit_dfine_n
    printed = _trained(out, capsys).out
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # the source untouched
    train = json.loads((out / "data/annotations/instances_train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["apple", "pear"]
    from dfine.checkpoint import read_checkpoint
    assert list(read_checkpoint(out / "last.pth")["class_names"]) == ["apple", "pear"]
    commands = printed_commands(printed)
    monkeypatch.chdir(elsewhere)
    for name in ("eval", "export", "predict"):
        argv = shlex.split(commands[name])
        assert argv[0] == "dfine"
        assert main(argv[1:]) == 0, f"{name}: {commands[name]}"
    text = capsys.readouterr().out
    assert "apple" in text and "pear" in text  # the eval's per-class table
    assert f"metrics: {out / 'eval.json'}" in text and not (elsewhere / "output").exists()  # beside the weights
    assert list(out.glob("*.onnx"))
    predictions = json.loads(next(elsewhere.rglob("predictions.json")).read_text())
    assert {p["category_id"] for p in predictions} <= {0, 1}


def test_cut_short_images_of_both_splits_are_left_out_and_the_run_trains(tmp_path, capsys):
    """adions025/XMLtoJson_Mask_RCNN (three phone photos, each JPEG cut short): training stopped on the
    val file's truncated image, then on the train file's, each time with commands to train without it. A
    conversion now leaves such images out with a note, as it does unreadable ones, and the run trains."""
    src = _yolo(tmp_path / "cut")
    for split, name in (("val", "1"), ("train", "2"), ("train", "3")):
        image(src / f"images/{split}/{name}.jpg", (96, 64))
        yolo_labels(src / f"labels/{split}/{name}.txt", ["0 0.5 0.5 0.5 0.5"])
    for jpg in (src / "images/train/0.jpg", src / "images/val/0.jpg"):
        noise = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        PILImage.fromarray(noise).save(jpg, quality=95)
        jpg.write_bytes(jpg.read_bytes()[:2000])
    out = tmp_path / "run"
    assert main(["train", "--data", str(src), "-o", str(out), *TINY]) == 0
    printed = capsys.readouterr()
    for split in ("train", "val"):
        assert (f"{split}: 1 unreadable image left out: 0.jpg (truncated: the JPEG file ends before its image data "
                f"does)") in printed.err
    assert "Traceback" not in printed.err and "train data: 3 images" in printed.out


def test_a_split_without_images_is_said_so(tmp_path, capsys):
    """Every train image dropped by 'dfine data check --fix' (all three JPEGs of adions025/XMLtoJson_Mask_RCNN
    cut short): the error said '0 images, fewer than one batch of 2 ... lower the batch to at most 1', which
    trains nothing either. Now it names the file that holds no image."""
    src = _yolo(tmp_path / "ds")
    out = tmp_path / "run"
    empty = tmp_path / "empty.json"
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "apple"}, {"id": 2, "name": "pear"}]}
    empty.write_text(json.dumps(data))
    for split in ("train", "val"):
        code = main(["train", "--data", str(src), "-o", str(out), *TINY, "-u", f"{split}_dataloader.dataset.ann_file={empty}"])
        err = capsys.readouterr().err
        assert code != 0 and err.strip().splitlines()[-1] == (
            f"error: {split}_dataloader: {empty} holds no images; nothing to {'train' if split == 'train' else 'evaluate'} "
            f"on"), err


def test_dfine_train_from_python_takes_threads(tmp_path, monkeypatch):
    """``dfine.train(threads=N)`` trains on N torch threads, as ``dfine train --threads N`` does (the
    Python API had no way to set them); the caller's number comes back after the run; 0 is a one-line error."""
    import torch

    import dfine
    from dfine.engine import trainer

    seen = []

    class Fake:
        def __init__(self, cfg, **kwargs):
            self.cfg = cfg

        def fit(self):
            seen.append(torch.get_num_threads())
            return {"AP": 0.0}

    monkeypatch.setattr(trainer, "Trainer", Fake)
    before = torch.get_num_threads()
    src = _yolo(tmp_path / "fruit")
    dfine.train(data=src, model="dfine_n", epochs=1, output_dir=tmp_path / "run", device="cpu", threads=1)
    assert seen == [1] and torch.get_num_threads() == before
    with pytest.raises(DfineError, match="threads must be a whole number of at least 1, got 0"):
        dfine.train(data=src, model="dfine_n", epochs=1, output_dir=tmp_path / "run", device="cpu", threads=0)


def test_eval_of_a_checkpoint_on_a_data_folder_writes_beside_the_weights(tmp_path, capsys, monkeypatch):
    """``dfine eval -r run/last.pth --data fruit`` (a YOLO folder) run from another folder wrote its
    conversion and eval.json into ./output/fruit_dfine_n there, a run folder nobody asked for (or
    another run's); now eval.json goes beside the weights, as the eval command a training prints
    does, and the conversion into a temporary folder that is removed (as ``dfine eval -m model.onnx
    --data`` does), which the printed note says; the run's own data/ is not rewritten."""
    src, run, elsewhere = _yolo(tmp_path / "fruit"), tmp_path / "run", tmp_path / "elsewhere"
    assert main(["train", "--data", str(src), "--output-dir", str(run), *TINY]) == 0
    elsewhere.mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["eval", "-r", str(run / "last.pth"), "--data", str(src), "-d", "cpu", "--no-progress",
                 "-u", "val_dataloader.num_workers=0", "HGNetv2.pretrained=false", "DFINETransformer.num_queries=50",
                 "DFINEPostProcessor.num_top_queries=50"]) == 0
    printed = capsys.readouterr()
    assert f"metrics: {run / 'eval.json'}" in printed.out and list(elsewhere.iterdir()) == []
    # which images were scored (a walk: a VOC set with train, val and test splits, and nothing said which)
    assert f"{run / 'last.pth'} on the val split of {src} (1 image, 2 boxes):" in printed.out.splitlines()
    assert f"converted YOLO {src} into a temporary folder for this evaluation (removed after it)" in printed.err
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    pictures = {run / f"eval_{n}" for n in ("pr_curves.png", "confidence.png", "confusion_matrix.png",
                                             "predictions.png")}  # its pictures beside it, named after it
    assert {p for p in after if before.get(p) != after[p]} == {run / "eval.json"} | pictures
    assert list((tmp_path / "tmp").iterdir()) == []  # the conversion removed


def test_eval_of_a_checkpoint_with_fewer_queries_takes_them_from_it(tmp_path, capsys):
    """A model trained with fewer queries (the README's way to train at a small --imgsz:
    -u DFINETransformer.num_queries=N DFINEPostProcessor.num_top_queries=N), evaluated with the command
    'dfine eval -r best.pth --data DIR': 'the input size 160x160 gives 125 encoder tokens, fewer than
    DFINETransformer.num_queries=300' (the recipe's, not the checkpoint's). The queries now come from the
    checkpoint, as --model and --imgsz do, said in the same line."""
    src, run = _yolo(tmp_path / "fruit"), tmp_path / "run"
    assert main(["train", "--data", str(src), "--output-dir", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", "-r", str(run / "last.pth"), "--data", str(src), "-d", "cpu", "--no-progress",
                 "-u", "val_dataloader.num_workers=0", "HGNetv2.pretrained=false"]) == 0
    err = capsys.readouterr().err
    assert (f"--model dfine_n --imgsz 160 -u DFINETransformer.num_queries=50 DFINEPostProcessor.num_top_queries=50: "
            f"as {run / 'last.pth'} was trained") in err


def test_train_takes_names_for_a_yolo_folder_without_them(tmp_path, capsys, monkeypatch):
    """A YOLO folder with no data.yaml, classes.txt or obj.names (FatihEmin48/okra-pepper-eggplant-yolo-dataset:
    train/ valid/ test/ and the names only in its README): ``dfine train --data`` said "give --names a,b,c",
    which train did not take ('unrecognized arguments'). Now ``--names`` (and ``dfine.train(names=...)``)
    names the classes; and with a recipe (-c), where these options were dropped without a word, they
    are an error."""
    import dfine.engine.trainer as trainer_module
    src, out = _yolo(tmp_path / "yolo"), tmp_path / "run"
    (src / "data.yaml").write_text("train: images/train\nval: images/val\n")  # the names gone
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 2
    assert "no class names for" in capsys.readouterr().err

    class Stop:  # the dataset is converted before the trainer starts
        def __init__(self, *args, **kwargs):
            raise DfineError("stopped here")

    monkeypatch.setattr(trainer_module, "Trainer", Stop)
    assert main(["train", "--data", str(src), "--output-dir", str(out), "--names", "apple, pear", *TINY]) == 2
    assert capsys.readouterr().err.strip().endswith("error: stopped here")
    train = json.loads((out / "data/annotations/instances_train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["apple", "pear"]
    with pytest.raises(DfineError, match="stopped here"):
        import dfine
        dfine.train(src, "dfine_n", output_dir=tmp_path / "api", names=["fig", "kiwi"], progress=False)
    api = json.loads((tmp_path / "api/data/annotations/instances_train.json").read_text())
    assert [c["name"] for c in api["categories"]] == ["fig", "kiwi"]
    capsys.readouterr()
    from pathlib import Path
    recipe = Path(__file__).resolve().parents[2] / "configs/dfine/dfine_hgnetv2_n_coco.yml"
    assert main(["train", "-c", str(recipe), "--epochs", "3", "--names", "a"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --epochs --names go with --data DIR; a recipe (-c) sets them in "
                                               "its keys: -u epochs=N train_dataloader.total_batch_size=N (the model "
                                               "is the recipe's)")


def test_an_evaluation_on_a_yolo_folder_without_names_takes_the_models(tmp_path, capsys):
    """A walk's ``dfine eval -r best_stg2.onnx --data okra`` (a YOLO folder that names no classes) was asked for
    --names, which the export carries. An evaluation takes the model's names when its category ids are 1..K (a
    model trained on a converted YOLO folder), said; --names still gives others; a training still asks."""
    pytest.importorskip("onnxruntime")
    src, out = _yolo(tmp_path / "yolo"), tmp_path / "run"
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0
    assert main(["export", "-r", str(out / "last.pth"), "--format", "onnx"]) == 0
    (src / "data.yaml").write_text("train: images/train\nval: images/val\n")  # the names gone
    capsys.readouterr()
    said = f"{src} names no classes: the model's own are used, YOLO class i as its i-th (apple, pear); --names a,b,c " \
           f"gives others"
    for model in (out / "last.pth", out / "last.onnx"):
        assert main(["eval", "-r", str(model), "--data", str(src), "-d", "cpu", "--no-progress"]) == 0, model
        printed = capsys.readouterr()
        assert said in printed.err.splitlines(), printed.err
        assert "apple" in printed.out and "pear" in printed.out
        assert main(["eval", "-r", str(model), "--data", str(src), "--names", "Apple,pear", "-d", "cpu",
                     "--no-progress"]) == 0
        assert said not in capsys.readouterr().err
    assert main(["train", "--data", str(src), "--output-dir", str(tmp_path / "again"), *TINY]) == 2
    assert "no class names for" in capsys.readouterr().err


def test_train_and_val_without_a_class_in_common_is_an_error(tmp_path, capsys):
    """A walk's CSV export named its val classes MP1, MP2, MP3 and its train ones MicroPlastic, ...: the check said
    'train: OK; val: OK' with two notes and training ran to AP 0. The check now ends in an error, and training
    starts with a warning in place of the two notes, each naming both sides' classes. (Training goes on: a
    smoke test of two images and one may well share no class.)"""
    src = tmp_path / "fruit"
    for split, row in (("train", "0 0.5 0.5 0.5 0.5"), ("val", "1 0.5 0.5 0.5 0.5")):
        for i in range(2):
            image(src / f"images/{split}/{i}.jpg", (96, 64))
            yolo_labels(src / f"labels/{split}/{i}.txt", [row])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [apple, pear]\n")
    said = ("train and val have no class in common: train's boxes are of apple (2), val's of pear (2); the model "
            "would learn none of val's classes (every AP 0): name a class the same in both splits where an export "
            "renamed it, else give each split images of every class")
    assert main(["data", "check", str(src)]) == 1
    out = capsys.readouterr().out
    assert f"error: {said}" in out and out.rstrip().endswith("train: OK; val: OK; train and val: no class in common")
    assert main(["train", "--data", str(src), "--output-dir", str(tmp_path / "run"), *TINY]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"warning: {said}" in printed and not [line for line in printed if "without a box in the" in line]
    yolo_labels(src / "labels/val/1.txt", ["0 0.5 0.5 0.5 0.5"])  # one apple in val too
    assert main(["data", "check", str(src)]) == 0
    assert "no class in common" not in capsys.readouterr().out


def test_a_data_run_from_a_coco_model_starts_knowing_the_classes_it_shares(tmp_path, capsys):
    """``dfine train --data`` of a person/suitcase set with -t a COCO model carries those classes' heads by name
    (a walk's pre-labels trained from fresh heads), said; the -t weights are then whole, so their AP is measured
    before the first epoch."""
    from tests.conftest import load_golden
    src = tmp_path / "trip"
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            image(src / f"images/{split}/{i}.jpg", (96, 64))
            yolo_labels(src / f"labels/{split}/{i}.txt", ["0 0.5 0.5 0.5 0.5", "1 0.2 0.3 0.2 0.2"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [person, suitcase]\n")
    coco = tmp_path / "coco.pth"
    torch.save(load_golden("n")["checkpoint"], coco)
    with pytest.warns(UserWarning) as said:
        assert main(["train", "--data", str(src), "-t", str(coco), "--output-dir", str(tmp_path / "run"), *TINY]) == 0
    assert f"{coco}: its class heads carried into this model's by class name: person, suitcase" in [
        str(m.message) for m in said]
    assert not [m for m in said if "start fresh" in str(m.message)]
    assert "the -t weights before training" in capsys.readouterr().out


def test_a_small_imgsz_gets_as_many_queries_as_its_encoder_tokens(tmp_path):
    """``dfine data tile --size 192`` printed ``dfine train --data TILES --imgsz 192 --model dfine_n``, which stopped
    on '192x192 gives 180 encoder tokens, fewer than DFINETransformer.num_queries=300' (a walk). A --data training
    at such a size gets as many queries as the tokens allow, said with the override; the user's own -u wins."""
    from dfine.recipes import fitting_queries
    said = ("--imgsz 192x192 gives D-FINE N 180 encoder tokens, fewer than its 300 queries: 180 queries instead (so at "
            "most 180 detections an image; -u DFINETransformer.num_queries=180 DFINEPostProcessor.num_top_queries=180)")
    fewer = ["DFINETransformer.num_queries=180", "DFINEPostProcessor.num_top_queries=180"]
    assert fitting_queries("n", (192, 192)) == (fewer, said)
    assert fitting_queries("n", (224, 160))[0] == ["DFINETransformer.num_queries=170",  # 14*10 + 7*5 = 175 tokens
                                                   "DFINEPostProcessor.num_top_queries=170"]
    assert fitting_queries("n", (256, 256)) == ([], None) and fitting_queries("s", (192, 192)) == ([], None)
    assert fitting_queries("n", (192, 192), ["DFINETransformer.num_queries=100"]) == ([], None)
    assert fitting_queries("n", None) == ([], None)
    src = _yolo(tmp_path / "y")
    run = data_run(src, "dfine_n", output_dir=tmp_path / "o", imgsz=(192, 192))
    assert set(fewer) <= set(run.overrides) and said in run.notes
    evaluation = data_run(src, "dfine_n", scratch=tmp_path / "scratch", imgsz=(192, 192))  # a checkpoint's own
    assert not set(fewer) & set(evaluation.overrides)


def test_an_evaluation_does_not_get_the_training_batch_note(tmp_path):
    """``dfine eval -r CKPT --data DIR`` on a CPU printed training's "CPU: batch 8 (the recipe's batch is
    sized for GPUs)"; an evaluation says the batch it evaluates in."""
    src = _yolo(tmp_path / "yolo")
    training = data_run(src, "dfine_n", device="cpu", output_dir=tmp_path / "run").notes
    evaluation = data_run(src, "dfine_n", device="cpu", scratch=tmp_path / "scratch").notes
    assert any("sized for GPUs" in n for n in training) and not any("sized for GPUs" in n for n in evaluation)
    assert "CPU: evaluating in batches of 8; --batch N to change it" in evaluation


def test_dfine_train_from_python_checks_its_arguments_before_any_work(tmp_path):
    """A walk in a notebook: names="cone,cube" trained nine classes (c, o, n, e, ...), epochs=2.5 failed on an
    internal stop_epoch=1.5, max_steps=0 meant no cap, imgsz=300 was refused only after the dataset was
    converted. Each is now one line before anything is written."""
    import dfine

    src = _yolo(tmp_path / "fruit")
    (src / "data.yaml").write_text("train: images/train\nval: images/val\n")  # names none: names= must
    out = tmp_path / "run"
    cases = {"epochs must be a whole number of at least 1, got 2.5": {"epochs": 2.5},
             "max_steps must be a whole number of at least 1, got 0": {"max_steps": 0},
             # a number as a string: the type said ('got '2'' read as if 2 were wrong, a walk)
             "batch must be a number (an int), got the string '8'": {"batch": "8"},
             "imgsz must be a number (an int, or (height, width)), got the string '320'": {"imgsz": "320"},
             "data= must be the path of a dataset folder, got None": {"data": None},
             "overrides= takes 'KEY=VALUE' strings, a list of them or one string, not a dict: "
             "overrides=['HGNetv2.pretrained=False']": {"overrides": {"HGNetv2.pretrained": False}},
             "tuning='nothere.pth': checkpoint not found": {"tuning": "nothere.pth"},
             f"output folder {tmp_path / 'a.py'} cannot be created ({tmp_path / 'a.py'} is a file); choose another "
             f"with output_dir=": {"output_dir": tmp_path / "a.py"},
             "imgsz must be a whole multiple of 32 px, got 300 (e.g. 288 or 320)": {"imgsz": 300},
             "imgsz must be N or (height, width), whole multiples of 32 px, got (320, 300)": {"imgsz": (320, 300)},
             f"resume={str(tmp_path / 'nothere.pth')!r}: checkpoint not found": {"resume": tmp_path / "nothere.pth"}}
    (tmp_path / "a.py").write_text("print(1)\n")  # output_dir= a file: one line, before the conversion (a traceback)
    for said, given in cases.items():
        with pytest.raises(DfineError) as err:
            dfine.train(**{"data": src, "model": "dfine_n", "output_dir": out, "names": ["apple", "pear"], **given})
        assert str(err.value).startswith(said), str(err.value)
        assert not out.exists() and (tmp_path / "a.py").read_text() == "print(1)\n"
    # the dataset and the model in the API's words (a notebook walk read '--data X not found')
    for said, given in {f"data={tmp_path / 'nothere'} not found": {"data": tmp_path / "nothere"},
                        "model='dfine_q': give one of": {"data": src, "model": "dfine_q"}}.items():
        with pytest.raises(DfineError) as err:
            dfine.train(**{"model": "dfine_n", **given}, output_dir=out, names=["apple", "pear"])
        assert said in str(err.value) and "--" not in str(err.value), str(err.value)
    # overrides as one string, as -u takes them: read as key=value pairs, not letter by letter ("override 'H'")
    with pytest.raises(DfineError) as err:
        dfine.train(data=src, model="dfine_n", output_dir=out, names=["apple", "pear"],
                    overrides="HGNetv2.pretrained=false HGNetv2.pretrainedd=1")
    assert "HGNetv2.pretrainedd" in str(err.value) and "'H'" not in str(err.value), str(err.value)


def test_dfine_train_takes_names_as_the_cli_does_and_ctrl_c_stops_the_script(tmp_path, request, capsys):
    """names="apple,pear" is two classes, as --names apple,pear; after Ctrl-C (the run stops after its
    step, last.pth kept) dfine.train raises KeyboardInterrupt, so a script does not go on to its next line."""
    import dfine
    from dfine.checkpoint import read_checkpoint

    src = _yolo(tmp_path / "fruit")
    (src / "data.yaml").write_text("train: images/train\nval: images/val\n")
    quick = ["HGNetv2.pretrained=false", "train_dataloader.num_workers=0", "val_dataloader.num_workers=0",
             "use_amp=false", "DFINETransformer.num_queries=50", "DFINEPostProcessor.num_top_queries=50"]
    kw = dict(model="dfine_n", epochs=1, batch=2, imgsz=160, device="cpu", progress=False, overrides=quick)
    result = dfine.train(data=src, output_dir=tmp_path / "a", names="apple, pear", max_steps=1, **kw)
    assert list(read_checkpoint(result.output_dir / "last.pth")["class_names"]) == ["apple", "pear"]

    # stopped in epoch 2: the resume hint is the call again (a notebook walk was given 'dfine train ... -r')
    from dfine.engine.trainer import Trainer
    real = Trainer.train_step

    def ctrl_c_in_epoch_2(self, *args):
        out = real(self, *args)
        if self.last_epoch == 0:
            self.stop_signal = "SIGINT"
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "train_step", ctrl_c_in_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            dfine.train(data=src, output_dir=tmp_path / "c", names=["apple", "pear"], max_steps=1, **{**kw, "epochs": 2})
    said = capsys.readouterr().out  # in epoch 2's only step: its training kept, its evaluation pending
    assert ("(epoch 2 trained, not evaluated); resuming evaluates it first and ends the run: the same "
            f"dfine.train(...) call with resume={str((tmp_path / 'c' / 'last.pth').resolve())!r}") in said
    assert "dfine train --data" not in said
    # auto_resume=True, as --auto-resume: the same call goes on from its last.pth
    again = dfine.train(data=src, output_dir=tmp_path / "c", names=["apple", "pear"], max_steps=1, auto_resume=True,
                        **{**kw, "epochs": 2})
    assert f"resuming from {(tmp_path / 'c' / 'last.pth').resolve()} (auto_resume=True)" in capsys.readouterr().err
    assert again.metrics["epoch"] == 1 and read_checkpoint(again.output_dir / "last.pth")["last_epoch"] == 1
    dfine.train(data=src, output_dir=tmp_path / "c", names=["apple", "pear"], max_steps=1, auto_resume=True,
                **{**kw, "epochs": 2})  # finished: said in the call's words (it said '--epochs 7', a walk)
    assert "nothing to train: the checkpoint has finished epoch 2 of 2 (epochs=7 trains 5 more" in capsys.readouterr().out
    with pytest.raises(DfineError, match="give auto_resume=True .* or resume=..., not both"):
        dfine.train(data=src, resume=tmp_path / "c" / "last.pth", auto_resume=True)

    request.getfixturevalue("ctrl_c_after_each_step")  # from here on: the first run above trains as usual
    with pytest.raises(KeyboardInterrupt):
        dfine.train(data=src, output_dir=tmp_path / "b", names=["apple", "pear"], **kw)


def test_a_model_file_given_to_model_names_the_options_that_take_one(tmp_path, capsys):
    """``--model best.onnx`` (a file where a size goes; dfine eval has -m for the file) said only which sizes exist."""
    assert main(["train", "--data", str(_yolo(tmp_path / "fruit")), "--model", "best.onnx"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --model 'best.onnx': give one of dfine_n, dfine_s, dfine_m, dfine_l, dfine_x; a model file goes with "
        "-t (fine-tune from it), -r (resume or evaluate it) or, in dfine eval, -m")


def _one_coco_file(root, file_names, ann="annotations/instances_default.json", extra=None):
    """A labelling tool's COCO export: one JSON for every image (CVAT's "COCO 1.0" by default), no split."""
    images, anns = [], []
    for i, name in enumerate(file_names):
        image(root / "images" / PureWindowsPath(name).name, (96, 64))  # its last part, / or \\ separated
        images.append({"id": i + 1, "file_name": name, "width": 96, "height": 64, "license": 0})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [10, 10, 40, 30],
                     "area": 1200, "iscrowd": 0, "attributes": {"occluded": False}})
    data = {"licenses": [{"name": "", "id": 0}], "info": {"contributor": "me"},
            "categories": [{"id": 1, "name": "pill"}, {"id": 2, "name": "tablet"}, {"id": 3, "name": "capsule"}],
            "images": images, "annotations": anns, **(extra or {})}
    (root / ann).parent.mkdir(parents=True, exist_ok=True)
    (root / ann).write_text(json.dumps(data))
    return data


def test_train_from_one_coco_file_for_all_images(tmp_path, capsys):
    """A walk: CVAT's "COCO 1.0" export (annotations/instances_default.json + images/, one file for all
    images) was 'not a COCO, YOLO, VOC or CVAT dataset folder'. Its images are split into train and val
    as a YOLO or VOC folder's are, each split's entries kept as written (ids, categories, extra fields)."""
    src, out = tmp_path / "cvat_coco", tmp_path / "run"
    data = _one_coco_file(src, [f"{i}.jpg" for i in range(5)])
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    assert detect_format(src) == "coco"
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0
    printed = _trained(out, capsys)
    assert ("one COCO file for all images (annotations/instances_default.json): 2 of 5 images became val "
            "(dfine data convert --val-fraction 0.2 --seed 0)") in printed.err
    assert "rare classes kept on both sides of the split: 1 image moved to val for tablet, which had none" in printed.err
    train, val = (json.loads((out / f"data/annotations/instances_{s}.json").read_text()) for s in ("train", "val"))
    assert len(val["images"]) == 2 and len(train["images"]) == 3
    assert sorted(a["category_id"] for a in val["annotations"]) == [1, 2]  # pill and tablet both measured
    assert sorted(train["images"] + val["images"], key=lambda im: im["id"]) == data["images"]
    assert sorted(train["annotations"] + val["annotations"], key=lambda a: a["id"]) == data["annotations"]
    assert train["categories"] == val["categories"] == data["categories"] and train["licenses"] == data["licenses"]
    assert (out / "data/annotations" / train["info"]["images_folder"]).resolve() == src / "images"
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # the export is never written
    # the printed evaluation of the run splits the same way: its val image is the one training validated on
    assert main(["eval", "-r", str(out / "last.pth"), "--data", str(src), "-d", "cpu", "--no-progress"]) == 0
    assert f"last.pth on the val split of {src} (2 images, 2 boxes):" in capsys.readouterr().out


def test_one_coco_file_is_found_as_labelling_tools_write_it(tmp_path):
    """Label Studio's export: result.json beside images/, file names 'images/...' relative to the JSON's
    folder; a dataset folder given as the JSON itself; two such files, or images nowhere near, are one
    line each saying what was found."""
    ls = tmp_path / "label_studio"
    _one_coco_file(ls, ["images/a.jpg", "images/b.jpg", "images/c.jpg"], ann="result.json")
    run = data_run(ls, "dfine_n", output_dir=tmp_path / "o")
    assert run.fmt == "coco"
    assert any(n.startswith("one COCO file for all images (result.json): 1 of 3 images became val") for n in run.notes)
    val = json.loads((tmp_path / "o/data/annotations/instances_val.json").read_text())
    assert (tmp_path / "o/data/annotations" / val["info"]["images_folder"]).resolve() == ls
    assert detect_format(ls / "result.json") == "coco"
    (ls / "second.json").write_text((ls / "result.json").read_text())
    with pytest.raises(DfineError) as err:
        detect_format(ls)
    assert str(err.value) == (f"{ls} holds 2 COCO files and no train/val split files (result.json, second.json): "
                              f"give the one to use in place of the folder, e.g. {ls / 'result.json'}")
    lost = tmp_path / "lost"
    _one_coco_file(lost, ["a.jpg"], ann="export/coco.json")
    (lost / "images/a.jpg").rename(lost / "a_moved.jpg")
    with pytest.raises(DfineError) as err:
        data_run(lost / "export", "dfine_n", output_dir=tmp_path / "o2")
    assert str(err.value) == (f"the images of {lost / 'export/coco.json'} are not found: none of its first 1 file "
                              f"name (e.g. a.jpg) is in {lost / 'export'}, {lost / 'export/images'}, {lost}, "
                              f"{lost / 'images'}; put the images folder beside the JSON (images/)")


def test_data_convert_from_coco_splits_one_file(tmp_path, capsys):
    src = tmp_path / "cvat_coco"
    _one_coco_file(src, [f"{i}.jpg" for i in range(10)])
    assert main(["data", "convert", "--from", "coco", str(src), "-o", str(tmp_path / "out"), "--val-fraction", "0.3",
                 "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "converted " in out and "(3 classes: pill, tablet, capsule)" in out
    assert "  train: 7 images, 7 boxes, 0 background images" in out and "  val: 3 images, 3 boxes" in out
    assert main(["data", "convert", "--from", "coco", str(src), "--names", "a,b"]) == 2
    assert "--names is for a dataset that names no classes" in capsys.readouterr().err
    again = json.loads((tmp_path / "out/annotations/instances_train.json").read_text())
    assert list(again)[:2] == ["info", "licenses"] and again["info"]["contributor"] == "me"  # info first, as it is kept
    assert main(["data", "convert", "--from", "coco", str(src), "-o", str(tmp_path / "out")]) == 0  # over its own
    (tmp_path / "mine/annotations").mkdir(parents=True)
    (tmp_path / "mine/annotations/instances_train.json").write_text(json.dumps({**again, "info": {}}))
    assert main(["data", "convert", "--from", "coco", str(src), "-o", str(tmp_path / "mine")]) == 2
    assert "instances_train.json is there and was not written by dfine" in capsys.readouterr().err
    assert not (tmp_path / "mine/annotations/instances_val.json").exists()


def test_yolo_labels_beside_their_images_are_a_dataset(tmp_path):
    """LabelImg's YOLO save (images, their .txt and classes.txt in one folder) was 'not a COCO, YOLO, VOC or
    CVAT dataset folder' for --data and data check, though dfine data convert --from yolo read it (a walk).
    A folder where LabelImg saved both XMLs and YOLO labels reads the XMLs and says how to read the others."""
    src = tmp_path / "qr"
    for i in range(5):
        image(src / f"{i}.jpg", (96, 64))
        yolo_labels(src / f"{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "classes.txt").write_text("QR_CODE\r\n\r\n")
    assert detect_format(src) == "yolo"
    run = data_run(src, "dfine_n", output_dir=tmp_path / "o")
    train = json.loads((tmp_path / "o/data/annotations/instances_train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["QR_CODE"] and len(train["images"]) == 4
    assert run.fmt == "yolo"
    (src / "classes.txt").unlink()  # the .txt beside an image of its name is enough to know the folder
    assert detect_format(src) == "yolo"
    with pytest.raises(DfineError, match="give --names"):
        data_run(src, "dfine_n", output_dir=tmp_path / "o2")
    assert data_run(src, "dfine_n", output_dir=tmp_path / "o3", names=["qr"]).fmt == "yolo"
    (src / "classes.txt").write_text("QR_CODE\n")
    for i in range(5):
        voc_xml(src / f"{i}.xml", f"{i}.jpg", (96, 64), [("QR_CODE", (10, 10, 60, 50), 0)])
    both = data_run(src, "dfine_n", output_dir=tmp_path / "o4")
    assert both.fmt == "voc"
    assert (f"{src} also holds YOLO labels (classes.txt); the VOC files are used. For the others: dfine data "
            f"convert --from yolo {src} -o qr_yolo, then --data qr_yolo") in both.notes
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("hello")
    with pytest.raises(DfineError, match="not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder"):
        detect_format(empty)


def test_a_run_on_photos_larger_than_the_model_can_use_says_they_are_read_shrunk(tmp_path, capsys):
    src, out = _yolo(tmp_path / "photos"), tmp_path / "run"
    image(src / "images/train/big.jpg", (1600, 1200))
    yolo_labels(src / "labels/train/big.txt", ["0 0.5 0.5 0.2 0.2"])
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0
    assert ("note: 1 of 3 train images (up to 1600x1200) are larger than the model can use and are read with 534 px "
            "on the short side, the smallest crop of the augmentations still filling the input: up to 5x fewer "
            "pixels to decode and augment") in _trained(out, capsys).out
    # barely larger: the ratio to a tenth (it read "up to 1x fewer", a walk)
    image(src / "images/train/big.jpg", (712, 640))
    assert main(["train", "--data", str(src), "--output-dir", str(tmp_path / "run2"), *TINY]) == 0
    assert "read with 534 px on the short side, the smallest crop of the augmentations still filling the input: up to " \
           "1.4x fewer pixels" in _trained(tmp_path / "run2", capsys).out


def test_a_second_run_into_a_folder_a_run_is_training_into_stops_at_once(tmp_path, capsys):
    """A walk: a resumed run trained beside the still-running first one into the same folder; both wrote
    last.pth, best_stg2.pth and log.jsonl (its last epoch logged twice) and neither said a word."""
    from dfine.engine.lock import output_lock
    src, out = _yolo(tmp_path / "fruit"), tmp_path / "run"
    with output_lock(out):  # the first run, training
        assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: another run (pid {os.getpid()} on {socket.gethostname()}) is training into {out}: "
                       f"wait for it to end, or give this run another output folder (--output-dir)")
        assert not (out / "last.pth").exists() and not (out / "log.jsonl").exists()
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0  # released when it ends
    _trained(out, capsys)


def test_roboflow_yolo_darknet_export_is_a_dataset(tmp_path):
    """Roboflow's "YOLO Darknet" export: train/, valid/ (and test/) each holding images, their .txt and
    _darknet.labels with the class names; it was no dataset folder for --data."""
    src = tmp_path / "rf_darknet"
    for split, n in (("train", 3), ("valid", 1)):
        for i in range(n):
            image(src / split / f"{i}.jpg", (96, 64))
            yolo_labels(src / split / f"{i}.txt", ["1 0.5 0.5 0.5 0.5"])
        (src / split / "_darknet.labels").write_text("cat\ndog\n")
    assert detect_format(src) == "yolo"
    data_run(src, "dfine_n", output_dir=tmp_path / "o")
    train, val = (json.loads((tmp_path / f"o/data/annotations/instances_{s}.json").read_text()) for s in ("train", "val"))
    assert [c["name"] for c in train["categories"]] == ["cat", "dog"]
    assert len(train["images"]) == 3 and len(val["images"]) == 1 and val["annotations"][0]["category_id"] == 2


def test_dfine_train_gives_its_advice_as_its_own_arguments(tmp_path, monkeypatch, capsys):
    """A notebook walk offline: the error said "add -u HGNetv2.pretrained=False" and the notes "--batch N",
    options of the command line; dfine.train() says overrides=[...] and batch=N."""
    import dfine
    from dfine import hub

    def offline(*args, **kwargs):
        raise DfineError("cannot download https://example.invalid/PPHGNetV2_B0_stage1.pth (no network)")

    monkeypatch.setattr(hub, "fetch_weights", offline)
    src = _yolo(tmp_path / "fruit")
    with pytest.raises(DfineError) as err:
        dfine.train(data=src, model="dfine_n", epochs=1, imgsz=320, output_dir=tmp_path / "run", device="cpu",
                    progress=False, overrides=["train_dataloader.num_workers=0"])
    assert str(err.value).endswith("to train from scratch instead, add overrides=['HGNetv2.pretrained=False']")
    assert "; batch=N to change it" in capsys.readouterr().err
    with pytest.raises(DfineError) as err:  # 160 px: fewer encoder tokens than the 300 queries asked for
        dfine.train(data=src, model="dfine_n", epochs=1, imgsz=160, output_dir=tmp_path / "run", device="cpu",
                    progress=False, overrides=["HGNetv2.pretrained=False", "DFINETransformer.num_queries=300",
                                               "DFINEPostProcessor.num_top_queries=300"])
    assert str(err.value).endswith("use a larger imgsz or fewer queries (overrides=['DFINETransformer.num_queries=N', "
                                   "'DFINEPostProcessor.num_top_queries=N'])")


def test_one_coco_file_written_on_windows_or_with_upload_paths_finds_its_images(tmp_path):
    """Label Studio writes file names as images\\x.png on Windows, and some of its versions its own upload
    paths (..\\..\\label-studio\\media\\upload\\4\\x.png, /data/upload/1/x.jpg): the first is read as
    images/x.png; the others, which point nowhere here, are used by name from the images folder, said."""
    windows = tmp_path / "windows"
    _one_coco_file(windows, ["images\\a.jpg", "images\\b.jpg", "images\\c.jpg"], ann="result.json")
    assert main(["data", "check", str(windows)]) == 0
    upload = tmp_path / "upload"
    _one_coco_file(upload, ["..\\..\\label-studio\\media\\upload\\4\\a.jpg", "/data/upload/1/b.jpg", "c.jpg"],
                   ann="result.json")
    run = data_run(upload, "dfine_n", output_dir=tmp_path / "o")
    assert ("2 file names of result.json point where no image is, and an image of that name is in "
            f"{upload / 'images'}, so it is used (e.g. '..\\..\\label-studio\\media\\upload\\4\\a.jpg' -> "
            f"'a.jpg')") in run.notes
    written = [json.loads((tmp_path / f"o/data/annotations/instances_{s}.json").read_text()) for s in ("train", "val")]
    assert sorted(im["file_name"] for d in written for im in d["images"]) == ["a.jpg", "b.jpg", "c.jpg"]
    assert main(["data", "check", str(upload)]) == 0


def test_one_coco_file_of_cvat_masks_trains_on_their_boxes(tmp_path):
    """CVAT writes mask shapes as iscrowd=1: a one-file export of them is used as boxes, said (a walk
    trained on 0 boxes, every image 'background')."""
    src = tmp_path / "masks"
    data = _one_coco_file(src, [f"{i}.jpg" for i in range(5)])
    data["annotations"] = [{**a, "iscrowd": 1, "segmentation": {"size": [64, 96], "counts": "abc"}}
                           for a in data["annotations"]]
    (src / "annotations/instances_default.json").write_text(json.dumps(data))
    run = data_run(src, "dfine_n", output_dir=tmp_path / "o")
    assert ("every one of the 5 annotations of instances_default.json is iscrowd=1 (CVAT exports mask shapes so), "
            "which training would ignore: each is used as a box (its bbox)") in run.notes
    written = [json.loads((tmp_path / f"o/data/annotations/instances_{s}.json").read_text()) for s in ("train", "val")]
    assert [a["iscrowd"] for d in written for a in d["annotations"]] == [0] * 5


def test_a_train_set_without_a_box_is_refused_before_the_first_step(tmp_path, capsys):
    """A walk trained 2.5 minutes on a train set whose every box was crowd (0 boxes: 'loss 0.38 -> 0.0017',
    the model learning that nothing is there)."""
    from tests.data.conftest import write_coco
    src = tmp_path / "empty"
    (src / "annotations").mkdir(parents=True)
    cats = [{"id": 1, "name": "a"}]
    for split, boxes in (("train", {1: [], 2: []}), ("val", {3: [(1, [5, 5, 20, 20])]})):
        write_coco(src, cats, boxes, size=(96, 64)).rename(src / f"annotations/instances_{split}.json")
    (src / "images").rename(src / "train")
    (src / "val").symlink_to(src / "train")
    assert main(["train", "--data", str(src), "--output-dir", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert (f"error: the train set has no box to learn from: its 2 images are all background in "
            f"{src / 'annotations/instances_train.json'} (crowd boxes are ignored)") in err
    assert not (tmp_path / "run/last.pth").exists()


def test_train_and_val_json_beside_one_images_folder_are_a_coco_dataset(tmp_path, capsys):
    """train.json + val.json (or annotations/train.json ...) beside one images/ folder, a layout of
    hand-made splits: it was no dataset folder for --data."""
    from tests.data.conftest import write_coco
    for where in ("", "annotations/"):
        src = tmp_path / f"mine{len(where)}"
        for split, boxes in (("train", {1: [(1, [5, 5, 20, 20])], 2: [(1, [1, 1, 9, 9])]}), ("val", {3: [(1, [5, 5, 20, 20])]})):
            ann = write_coco(src, [{"id": 1, "name": "a"}], boxes, size=(96, 64))
            (src / where).mkdir(exist_ok=True)
            ann.rename(src / f"{where}{split}.json")
        assert detect_format(src) == "coco"
        assert find_coco_splits(src) == {"train": (src / f"{where}train.json", src / "images"),
                                         "val": (src / f"{where}val.json", src / "images")}
        assert main(["data", "check", str(src)]) == 0  # the val images are no strays of the train file
    assert "unreferenced" not in capsys.readouterr().out


def test_a_second_run_of_the_same_data_keeps_the_first(tmp_path, monkeypatch, capsys):
    """A walk ran ``dfine train --data fruit`` twice: the second run overwrote the first's weights
    in output/fruit_dfine_n after a warning. A new run now takes output/fruit_dfine_n_2 (said);
    ``--auto-resume`` continues the latest folder, ``-r`` without ``-o`` the checkpoint's own."""
    from dfine.checkpoint import read_checkpoint

    monkeypatch.chdir(tmp_path)
    _yolo(tmp_path / "fruit")
    first, second = tmp_path / "output/fruit_dfine_n", tmp_path / "output/fruit_dfine_n_2"
    assert main(["train", "--data", "fruit", *TINY]) == 0
    kept = (first / "last.pth").read_bytes()
    capsys.readouterr()
    assert main(["train", "--data", "fruit", *TINY, "--seed", "1"]) == 0
    printed = capsys.readouterr()
    assert (first / "last.pth").read_bytes() == kept and (second / "last.pth").is_file()
    assert (f"{first} holds an earlier run (best_stg1.pth, last.pth), kept: this run trains into {second} "
            f"(-o DIR to choose the folder)") in " ".join(printed.err.split())
    assert f"best weights: {second}" in printed.out and "warning:" not in printed.err
    assert main(["train", "--data", "fruit", *TINY, "--epochs", "2", "--auto-resume"]) == 0
    err = capsys.readouterr().err
    assert f"resuming from {second / 'last.pth'}" in err
    # the run passed over is named (a walk's --auto-resume loop moved to a -t experiment's folder unsaid)
    assert (f"--auto-resume continues the latest run of this dataset and model, in {second}; {first} holds an earlier "
            f"one (-o {first} --auto-resume to continue that)") in " ".join(err.split())
    assert read_checkpoint(second / "last.pth")["last_epoch"] == 1 and (first / "last.pth").read_bytes() == kept
    assert read_checkpoint(second / "last.pth")["data"] == str(tmp_path / "fruit")  # what --auto-resume matches
    # the same again: nothing to train, said with the option of a --data run (it said '-u epochs=N', a walk)
    assert main(["train", "--data", "fruit", *TINY, "--epochs", "2", "--auto-resume"]) == 0
    assert "nothing to train: the checkpoint has finished epoch 2 of 2 (--epochs 7 trains 5 more" in \
        capsys.readouterr().out
    # fewer --epochs than it finished: 5 more than it finished (a walk's epoch 8 of 4 was told '--epochs 9')
    assert main(["train", "--data", "fruit", *TINY, "--epochs", "1", "--auto-resume"]) == 0
    out = capsys.readouterr().out
    assert ("nothing to train: the checkpoint has finished epoch 2 (this run asks for 1) (--epochs 7 trains 5 more"
            in out) and "schedule: the checkpoint finished 2 epochs, more than the 1 asked (resumed)" in out
    assert main(["train", "--data", "fruit", *TINY, "--epochs", "3", "-r", str(first / "last.pth")]) == 0
    assert read_checkpoint(first / "last.pth")["last_epoch"] == 2 and not (tmp_path / "output/fruit_dfine_n_3").exists()


def test_auto_resume_goes_on_with_a_run_of_the_same_data_only(tmp_path, monkeypatch):
    """A walk's ``--data chess --auto-resume`` continued the latest run of output/chess_dfine_n*, trained on
    chess/train alone, as 'the latest run of this dataset'. A run's checkpoint records its --data folder;
    one of other data is not continued (a new run, said)."""
    monkeypatch.chdir(tmp_path)
    src = _yolo(tmp_path / "fruit")
    base = tmp_path / "output/fruit_dfine_n"
    base.mkdir(parents=True)
    torch.save({"last_epoch": 0, "config": {"epochs": 3}, "data": str(tmp_path / "elsewhere/fruit")}, base / "last.pth")
    run = data_run(src, "dfine_n", run_folder="latest")
    assert run.output_dir == base.with_name("fruit_dfine_n_2")
    assert run.notes[0] == (f"--auto-resume: {base} holds a run of {tmp_path / 'elsewhere/fruit'}, not of {src}; "
                            f"this run starts in {base.with_name('fruit_dfine_n_2')}")
    torch.save({"last_epoch": 0, "config": {"epochs": 3}, "data": str(src)}, base / "last.pth")
    assert data_run(src, "dfine_n", run_folder="latest").output_dir == base  # its own data: continued


def test_auto_resume_names_every_earlier_run_and_the_stopped_one_to_continue(tmp_path):
    """A walk's --auto-resume went on in _4 and named only the first folder, a finished run, as 'an earlier one':
    _3, the stopped run it had been told --auto-resume continues, went unnamed."""
    from dfine.recipes import _earlier_runs
    base = tmp_path / "output/BCCD_dfine_n"
    for name, done, epochs in (("BCCD_dfine_n", 3, 3), ("BCCD_dfine_n_2", 3, 3), ("BCCD_dfine_n_3", 1, 3),
                               ("BCCD_dfine_n_4", 0, 3)):
        (base.parent / name).mkdir(parents=True)
        torch.save({"last_epoch": done - 1, "config": {"epochs": epochs}}, base.parent / name / "last.pth")
    assert _earlier_runs(base, base.with_name("BCCD_dfine_n_4")) == (
        f"BCCD_dfine_n_3 (stopped after epoch 1 of 3), BCCD_dfine_n_2 and BCCD_dfine_n hold earlier ones "
        f"(-o {base.with_name('BCCD_dfine_n_3')} --auto-resume continues BCCD_dfine_n_3)")
    assert _earlier_runs(base, base.with_name("BCCD_dfine_n_2")) == (
        f"{base} holds an earlier one (-o {base} --auto-resume to continue that)")
    assert _earlier_runs(base, base.with_name("BCCD_dfine_n_3")).endswith(
        f"BCCD_dfine_n_2 and BCCD_dfine_n hold earlier ones (-o {base.with_name('BCCD_dfine_n_2')} --auto-resume "
        f"continues BCCD_dfine_n_2)")


def test_a_bad_imgsz_on_the_command_line_writes_nothing(tmp_path, capsys):
    """``dfine train --data roadsign --imgsz 300`` was refused only after the dataset was converted
    into a new output folder (a walk)."""
    src, out = _yolo(tmp_path / "fruit"), tmp_path / "run"
    assert main(["train", "--data", str(src), "-o", str(out), "--imgsz", "300"]) == 2
    assert "image size 300 (--imgsz or eval_spatial_size): each side must be a positive multiple of 32 (e.g. 288 or " \
           "320)" in capsys.readouterr().err
    assert not out.exists()
    # a misspelt -u key or value: said before the dataset is converted into a new numbered run folder (a walk)
    import dfine
    for bad, said in (("HGNetv2.pretrain=False", "did you mean 'HGNetv2.pretrained'"),
                      ("HGNetv2.pretrained=Flase", "HGNetv2.pretrained")):
        assert main(["train", "--data", str(src), "-o", str(out), "-u", bad]) == 2
        assert said in capsys.readouterr().err and not out.exists()
        with pytest.raises(DfineError, match=said.replace("(", "\\(")):
            dfine.train(data=src, output_dir=out, overrides=[bad])
        assert not out.exists()


def test_eval_on_the_test_split_of_a_data_folder(tmp_path, capsys):
    """A walk wanted the test split its data.yaml declares: there was no --split, and --ann-file of
    the converted test file asked for --images though the file names its images folder. Now
    ``--split test`` evaluates it (``eval_test.json``, the val metrics kept), from the command line
    and ``dfine.evaluate``, for a checkpoint and an export."""
    pytest.importorskip("onnxruntime")
    import dfine

    src, out = _yolo(tmp_path / "fruit"), tmp_path / "run"
    for i in range(2):
        image(src / f"images/test/{i}.jpg", (96, 64))
        yolo_labels(src / f"labels/test/{i}.txt", ["1 0.5 0.5 0.4 0.4"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\ntest: images/test\nnames: [apple, pear]\n")
    assert main(["train", "--data", str(src), "-o", str(out), *TINY]) == 0
    weights = out / "last.pth"
    assert main(["eval", "-r", str(weights), "--data", str(src), "--imgsz", "160"]) == 0
    val_metrics = (out / "eval.json").read_text()
    assert main(["eval", "-r", str(weights), "--data", str(src), "--imgsz", "160", "--split", "valid"]) == 0
    assert json.loads((out / "eval.json").read_text())["stats"] == json.loads(val_metrics)["stats"]  # Roboflow's word
    capsys.readouterr()
    assert main(["eval", "-r", str(weights), "--data", str(src), "--imgsz", "160", "--split", "test"]) == 0
    printed = capsys.readouterr().out
    assert f"on the test split of {src} (2 images, 2 boxes)" in printed
    test_metrics = json.loads((out / "eval_test.json").read_text())
    assert test_metrics["num_images"] == 2 and (out / "eval.json").read_text() == val_metrics
    onnx = tmp_path / "m.onnx"
    assert main(["export", "-r", str(weights), "--format", "onnx", "-o", str(onnx)]) == 0
    result = dfine.evaluate(onnx, src, split="test", progress=False)
    assert result["path"] == str(tmp_path / "m.onnx.eval_test.json") and result["num_images"] == 2
    assert str(tmp_path / "m.onnx.eval_test_predictions.png") in result["pictures"]  # not '..._val_predictions
    # the converted test file alone: its images folder is the one it names
    converted = out / "data/annotations/instances_test.json"
    assert main(["eval", "-r", str(onnx), "--ann-file", str(converted)]) == 0
    assert re.search(r"\(2 images, \d+ box(es)?\)", capsys.readouterr().out)
    assert main(["eval", "-r", str(weights), "--split", "test", "--ann-file", str(converted)]) == 2
    assert "error: --split test goes with --data DIR" in capsys.readouterr().err
    plain = _yolo(tmp_path / "plain")
    assert main(["eval", "-r", str(weights), "--data", str(plain), "--split", "test"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: --data {plain}: no test split; found train, val; add a "
                                                    f"test: entry in its data.yaml (or test/images + test/labels)")
    flat = tmp_path / "flat"  # images and their .txt side by side, no data.yaml: none to add an entry to (a walk)
    for i in range(3):
        image(flat / f"{i}.jpg", (96, 64))
        yolo_labels(flat / f"{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    (flat / "classes.txt").write_text("apple\npear\n")
    assert main(["eval", "-r", str(weights), "--data", str(flat), "--split", "test"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: --data {flat}: no test split; found train, val; add "
                                                    f"test/images + test/labels beside train's, or a data.yaml "
                                                    f"naming each split's folder")


def test_data_check_of_a_folder_without_val_says_training_needs_it(tmp_path, capsys):
    """A walk's conversion stopped by Ctrl-C left annotations/instances_train.json alone: data check said
    'train: OK' and 'result: OK', then dfine train refused it ('no val split'). A folder of a test split
    alone is still said to lack what training needs."""
    root = tmp_path / "partial"
    image(root / "images" / "a.jpg", (64, 48))
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_test.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20], "area": 400, "iscrowd": 0}],
         "categories": [{"id": 1, "name": "thing"}]}))
    assert main(["data", "check", str(root)]) == 0  # not an error: a folder of one split serves dfine eval
    out = capsys.readouterr().out
    assert f"--data {root}: no train split; found test (annotations/instances_test.json)" in out
    assert out.strip().splitlines()[-1] == "test: OK; train: missing (training needs it); val: missing (training needs it)"


def test_coco_own_layout_with_a_train_split_alone_gets_a_val_split(coco128, tmp_path, capsys):
    """COCO's own layout, annotations/instances_train2017.json beside train2017/ (the shared coco128): a walk's
    dfine train --data was told to add a val file, and dfine data convert --from coco said the folder held no
    COCO JSON file and could not find the file's images. Now --data and data check split a seeded val off its
    train images (the same every time, a test split kept as it is), and data convert names the file to give
    and finds train2017/."""
    run = data_run(coco128, "dfine_n", output_dir=tmp_path / "run")
    assert ("no val split file, so its train file (instances_train2017.json): 35 of 128 images became val "
            "(dfine data convert --val-fraction 0.2 --seed 0)") in run.notes
    train, val = (json.loads((tmp_path / f"run/data/annotations/instances_{s}.json").read_text()) for s in ("train", "val"))
    assert len(train["images"]) + len(val["images"]) == 128 and not {i["id"] for i in train["images"]} & {
        i["id"] for i in val["images"]}
    assert f'train_dataloader.dataset.img_folder="{coco128 / "train2017"}"' in run.overrides
    again = data_run(coco128, "dfine_n", output_dir=tmp_path / "run2")
    assert json.loads((tmp_path / "run2/data/annotations/instances_val.json").read_text())["images"] == val["images"]
    assert main(["data", "check", str(coco128)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "train: OK; val: OK"
    assert main(["data", "convert", "--from", "coco", str(coco128), "-o", str(tmp_path / "c")]) == 2
    real = coco128.resolve()  # as the conversion names it (CI's ../shared is a link)
    assert capsys.readouterr().err.strip() == (
        f"error: {real} holds COCO split files (annotations/instances_train2017.json), not one file for all "
        f"images: dfine train --data {real} reads them as they are (a train split alone gets a val split of its "
        f"images); or give one file to split: dfine data convert --from coco "
        f"{real / 'annotations/instances_train2017.json'}")
    assert main(["data", "convert", "--from", "coco", str(coco128 / "annotations/instances_train2017.json"), "-o",
                 str(tmp_path / "c")]) == 0
    assert (json.loads((tmp_path / "c/annotations/instances_val.json").read_text())["images"] == val["images"])


def test_data_check_names_classes_training_cannot_learn_or_measure(tmp_path, capsys):
    """A walk's 3-image LabelMe set put its only bottle in val: data check showed 'bottle 0 0' in train's table and
    said nothing; training's start names it. The check says it too, and a class without a val box."""
    src = tmp_path / "yolo"
    for split, label in (("train", "0"), ("val", "1")):
        image(src / "images" / split / "a.jpg", (64, 48))
        yolo_labels(src / "labels" / split / "a.txt", [f"{label} 0.5 0.5 0.2 0.2", "2 0.2 0.2 0.1 0.1"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cup, bottle, plate]\n")
    assert main(["data", "check", str(src)]) == 0
    out = capsys.readouterr().out
    assert ("note: 1 class without a box in the train set, which the model cannot learn (its AP stays 0): "
            "bottle (1 in val)") in out
    assert ("note: 1 class without a box in the val set, so not measured by its AP (the AP averages the others): "
            "cup (1 in train)") in out
    assert "plate" not in out.split("note: 1 class without a box in the val set", 1)[1]  # in both: nothing to say


def test_a_bad_checkpoint_fails_before_the_dataset_is_converted(tmp_path, capsys):
    """A walk's -t of a cut-short file with --model stopped in one line, but after --data had converted the
    dataset into the run folder, which stayed behind."""
    src = tmp_path / "yolo"
    for split in ("train", "val"):
        image(src / "images" / split / "a.jpg", (64, 48))
        (src / "labels" / split).mkdir(parents=True)
        (src / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [thing]\n")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(b"PK\x03\x04" + bytes(1000))
    out = tmp_path / "run"
    assert main(["train", "--data", str(src), "--model", "dfine_n", "-t", str(cut), "-o", str(out)]) == 2
    assert "cut.pth is cut short" in capsys.readouterr().err
    assert not out.exists()


def test_the_same_command_again_after_a_stop_names_the_stopped_run_last_and_when_stopped(tmp_path, monkeypatch,
                                                                                           capsys):
    """A walk typed the same command again after Ctrl-C: the new run's hint that --auto-resume continues the
    stopped one was the first of 17 lines and scrolled away, and stopping the new run in its first epoch
    then said 'nothing to resume; run the same command to start again'."""
    from dfine.engine.trainer import Trainer
    monkeypatch.chdir(tmp_path)
    _yolo(tmp_path / "fruit")
    first = tmp_path / "output" / "fruit_dfine_n"
    second = first.with_name("fruit_dfine_n_2")
    for folder, last_epoch in ((first, 5), (second, 0)):
        folder.mkdir(parents=True)
        torch.save({"last_epoch": last_epoch, "config": {"epochs": 6}}, folder / "last.pth")

    def stopped_at_once(self, epoch):
        self.stop_signal = "SIGINT"
        return self._interrupted(epoch)

    monkeypatch.setattr(Trainer, "_run_epoch", stopped_at_once)
    assert main(["train", "--data", "fruit", *TINY]) == 130
    out = capsys.readouterr().out
    said = "fruit_dfine_n_2 stopped after epoch 1 of 6: --auto-resume continues it"
    summary = out[:out.index("stopped by SIGINT")].rstrip().splitlines()
    assert summary[-1] == f"note: a new run; {said} instead"
    assert f"stopped by SIGINT during epoch 1: no epoch of this run had finished; {said}" in out


def test_a_run_folder_keeps_the_split_it_trained_with(tmp_path, capsys):
    """The val split a seed makes changed in this version (rare classes kept on both sides): a run
    trained before it, resumed or evaluated after, would have moved images it trained on into val.
    A conversion into a run folder holding the same images split another way keeps that split, said;
    its evaluation (into a temporary folder) scores the same val images."""
    src, out = tmp_path / "flat", tmp_path / "run"
    for i in range(10):
        image(src / f"{i}.jpg", (64, 64))
        yolo_labels(src / f"{i}.txt", [f"{1 if i in (3, 7) else 0} 0.5 0.5 0.4 0.4"])
    (src / "classes.txt").write_text("pan\ncheese\n")
    data_run(src, "dfine_n", output_dir=out)
    ann = out / "data" / "annotations"
    today = {s: json.loads((ann / f"instances_{s}.json").read_text()) for s in ("train", "val")}
    names = {s: sorted(im["file_name"] for im in today[s]["images"]) for s in today}
    # an earlier version's split: the cheese image of val swapped with a pan image of train
    cheese_val = next(n for n in names["val"] if n in ("3.jpg", "7.jpg"))
    pan_train = next(n for n in names["train"] if n not in ("3.jpg", "7.jpg"))
    from dfine.data.convert import keep_split
    earlier = {"train": set(names["train"]) - {pan_train} | {cheese_val},
               "val": set(names["val"]) - {cheese_val} | {pan_train}}
    assert keep_split({s: ann / f"instances_{s}.json" for s in ("train", "val")}, earlier) == 2
    run = data_run(src, "dfine_n", output_dir=out)  # the resumed run converts again
    assert any(n.startswith("kept the train/val split this run folder was trained with; today's would put 2 images "
                            "on the other side") for n in run.notes)
    kept = {s: json.loads((ann / f"instances_{s}.json").read_text()) for s in ("train", "val")}
    assert {s: {im["file_name"] for im in kept[s]["images"]} for s in kept} == earlier
    for s, d in kept.items():  # whole files: every image's box with it, ids 1..N
        ids = {im["id"]: im["file_name"] for im in d["images"]}
        assert sorted(ids) == list(range(1, len(ids) + 1)) and len(d["annotations"]) == len(ids)
        assert all(a["category_id"] == (2 if ids[a["image_id"]] in ("3.jpg", "7.jpg") else 1) for a in d["annotations"])
    with tempfile.TemporaryDirectory() as scratch:
        evaluated = data_run(src, "dfine_n", output_dir=out, scratch=Path(scratch))
        val = next(o.split("=", 1)[1] for o in evaluated.overrides if o.startswith("val_dataloader.dataset.ann_file="))
        assert {im["file_name"] for im in json.loads(Path(json.loads(val)).read_text())["images"]} == earlier["val"]
    assert any(n.startswith(f"evaluated on the val split the run in {out} trained with") for n in evaluated.notes)
    fresh = data_run(src, "dfine_n", output_dir=tmp_path / "new")  # another folder: today's split
    assert not any("kept the" in n for n in fresh.notes)
    import shutil  # another dataset of the same file names trained into that folder: its own split
    other = tmp_path / "other"
    shutil.copytree(src, other)
    moved = data_run(other, "dfine_n", output_dir=out)
    assert not any("kept the" in n for n in moved.notes)
    assert {im["file_name"] for im in json.loads((ann / "instances_val.json").read_text())["images"]} == set(names["val"])


def test_a_folder_of_images_without_labels_says_so_and_how_to_label_them(tmp_path, capsys):
    """A walk gave --data a folder of 3 photos: the error listed every format's files in one long line."""
    for i in range(3):
        image(tmp_path / "few" / f"{i}.jpg", (32, 32))
    assert main(["train", "--data", str(tmp_path / "few")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --data {tmp_path / 'few'}: not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder: it "
        f"holds 3 images and no labels; label them first (a model's detections as pre-labels to correct: dfine "
        f"predict {tmp_path / 'few'} -m MODEL --save-dataset)")
    with pytest.raises(DfineError, match="annotations/instances_"):  # an empty folder: what a dataset holds
        detect_format((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_python_callers_get_python_words_for_device_names_and_overrides():
    """A notebook walk was told 'use -d cpu', 'names=gives 2 classes ... leave names=out' and 'command line
    override' from dfine.train."""
    from dfine.recipes import python_words
    assert python_words("device cuda asked for but CUDA is not available here (no GPU); use -d cpu").endswith(
        "use device='cpu'")
    assert python_words("CUDA is not available here (no GPU); use -d cpu (Python: device='cpu')").endswith(
        "here (no GPU); use device='cpu'")  # the words a Detector gives in both worlds, in dfine.train's
    assert python_words("lower the batch to at most 2: --batch 2 (dfine train --data) or -u x.y=2") == (
        "lower the batch to at most 2: batch=2 or overrides=['x.y=2']")  # not 'batch=2 (dfine train --data)'
    assert python_words("--names gives 2 classes but data.yaml names 5; leave --names out to use those") == (
        "names= gives 2 classes but data.yaml names 5; leave names= out to use those")
    assert python_words("command line override 'x' must look like key.subkey=value") == (
        "override 'x' must look like key.subkey=value")
    assert python_words("add --data DIR, -u HGNetv2.pretrained=False") == (
        "add data=DIR, overrides=['HGNetv2.pretrained=False']")
    assert python_words("x holds an earlier one (-o /a/x --auto-resume to continue that)") == (  # was '-o /a/x auto_res..'
        "x holds an earlier one (output_dir='/a/x', auto_resume=True to continue that)")


def test_dfine_train_into_a_folder_another_run_trains_into_says_so(tmp_path, monkeypatch):
    """Two notebooks training into one folder: the lock's one line became 'TypeError: RunLocked.__init__()
    missing 1 required positional argument' as dfine.train put it in Python words (a walk)."""
    import dfine
    from dfine import recipes
    from dfine.engine.lock import RunLocked

    def locked(*args, **kwargs):
        raise RunLocked("pid 18836 on vm", tmp_path / "lockrun")
    monkeypatch.setattr(recipes, "data_run", locked)
    with pytest.raises(RunLocked) as err:
        dfine.train(data=tmp_path, model="dfine_n", output_dir=tmp_path / "lockrun")
    assert str(err.value) == (f"another run (pid 18836 on vm) is training into {tmp_path / 'lockrun'}: wait for it to "
                              f"end, or give this run another output folder (output_dir=)")
    assert err.value.holder == "pid 18836 on vm"


def test_coco_layout_with_split_files_of_other_names(tmp_path, capsys):
    """``annotations/custom_{train,val}.json`` beside ``train2017/`` and ``val2017/`` (DETR fine-tuning tutorials;
    a walk on a face-mask set): '2 COCO files and no train/val split files', and given alone its images were not
    found. COCO's captions file and a JSON that is no COCO file are no split of it."""
    from tests.data.conftest import write_coco
    src = tmp_path / "facemask"
    for split, boxes in (("train", {1: [(1, [5, 5, 20, 20])], 2: [(2, [1, 1, 9, 9])]}), ("val", {3: [(1, [5, 5, 9, 9])]})):
        ann = write_coco(tmp_path / split, [{"id": 1, "name": "mask"}, {"id": 2, "name": "no mask"}], boxes)
        (src / "annotations").mkdir(parents=True, exist_ok=True)
        ann.rename(src / f"annotations/custom_{split}.json")
        (tmp_path / split / "images").rename(src / f"{split}2017")
    (src / "annotations/captions_val2017.json").write_text('{"images": [{"file_name": "x.jpg"}], "annotations": []}')
    (src / "annotations/notes_test.json").write_text('{"test": "not a COCO file"}')
    assert detect_format(src) == "coco"
    assert find_coco_splits(src) == {"train": (src / "annotations/custom_train.json", src / "train2017"),
                                     "val": (src / "annotations/custom_val.json", src / "val2017")}
    assert main(["data", "check", str(src)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("train: OK; val: OK") and f"images in {src / 'val2017'}" in out
    # the file given alone: its images found in train2017/ (it was 'not found: none of its first 2 file names ...')
    assert main(["data", "check", str(src / "annotations/custom_train.json")]) == 0
    assert f"images in {src / 'train2017'}" in capsys.readouterr().out
    # one split's file as --data (a walk trained on instances_val2017.json alone, its run named annotations_dfine_n)
    given = src / "annotations/custom_val.json"
    assert main(["train", "--data", str(given), "-o", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --data {given}: the val split of the dataset {src}, whose train split goes with it; give the dataset "
        f"folder: --data {src} (dfine eval scores its val split)")
    assert not (tmp_path / "run").exists()


def test_names_for_a_coco_folder_are_refused_not_dropped(tmp_path, capsys):
    """``--names a,b`` on a COCO folder of 3 named classes trained on its own 3 names without a word (a walk);
    every command that reads the folder now says the files name their classes, before anything is written."""
    from tests.data.conftest import write_coco
    src = tmp_path / "coco"
    for split in ("train", "val"):
        ann = write_coco(tmp_path / split, [{"id": 1, "name": "mask"}], {1: [(1, [5, 5, 20, 20])]})
        (src / "annotations").mkdir(parents=True, exist_ok=True)
        ann.rename(src / f"annotations/instances_{split}.json")
        (tmp_path / split / "images").rename(src / split)
    (tmp_path / "m.onnx").write_bytes(b"not read: the data is looked at first")
    said = (f"error: --names is for a dataset folder that names no classes; the COCO files of {src} name theirs in "
            f"their categories: leave --names out")
    for argv in (["data", "check", str(src)], ["train", "--data", str(src), "-o", str(tmp_path / "run")],
                 ["eval", "-m", str(tmp_path / "m.onnx"), "--data", str(src)]):
        assert main([*argv, "--names", "a,b"]) == 2
        assert capsys.readouterr().err.strip() == said, argv
    assert not (tmp_path / "run").exists()


def test_a_coco_folder_with_yolo_labels_too_says_which_are_read(tmp_path, capsys):
    """A Roboflow COCO export whose split folders also held YOLO labels (a walk): the COCO files were read and
    nothing said so, as it is said for VOC beside YOLO."""
    from tests.data.conftest import write_coco
    src = tmp_path / "toys"
    for split in ("train", "valid"):
        ann = write_coco(src / split, [{"id": 1, "name": "bull"}], {1: [(1, [5, 5, 20, 20])]})
        ann.rename(src / split / "_annotations.coco.json")
        yolo_labels(src / split / "labels" / "000001.txt", ["0 0.5 0.5 0.3 0.3"])
    assert main(["data", "check", str(src)]) == 0
    assert (f"{src} also holds YOLO labels (train/labels, valid/labels); the COCO files are used. For the others: "
            f"dfine data convert --from yolo {src} -o toys_yolo, then --data toys_yolo") in capsys.readouterr().out


def test_an_output_folder_inside_the_dataset_is_refused(tmp_path, capsys, monkeypatch):
    """``-o DATASET/annotations`` (a walk) wrote checkpoints and pictures among the dataset's own files."""
    src = _yolo(tmp_path / "fruit")
    for out in (src / "annotations", src):
        assert main(["train", "--data", str(src), "-o", str(out), "--epochs", "1"]) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: -o {out} is inside the dataset folder {src}: the run's files (and pictures, which a later --data "
            f"would take for images of the dataset) would mix with it; choose a folder outside it")
    assert not (src / "annotations").exists()
    # `cd DATASET; dfine train --data .` (a walk): the default ./output is inside it too
    monkeypatch.chdir(src)
    assert main(["train", "--data", ".", "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: the default output folder {src / 'output/fruit_dfine_s'} is inside the dataset folder {src}: the run's "
        f"files (and pictures, which a later --data would take for images of the dataset) would mix with it; choose a "
        f"folder outside it (-o {tmp_path / 'fruit_dfine_s'}, say)")
    assert not (src / "output").exists()


def test_a_split_holding_photos_of_another_is_said_by_training_and_evaluation(tmp_path):
    """A VOC set's ImageSets listed 9 of 22 test images in train or val too (a walk): data check said so, but
    training and ``dfine eval --split test`` scored them without a word."""
    src = _voc(tmp_path / "boats")
    image(src / "JPEGImages/3.jpg", (96, 64))
    voc_xml(src / "Annotations/3.xml", "3.jpg", (96, 64), [("boat", (10, 10, 60, 50), 0)])
    (src / "ImageSets/Main").mkdir(parents=True)
    for split, ids in (("train", "0 1"), ("val", "2 1"), ("test", "3 0")):
        (src / f"ImageSets/Main/{split}.txt").write_text(ids.replace(" ", "\n") + "\n")
    trained = data_run(src, "dfine_n", output_dir=tmp_path / "run", device="cpu")
    said = [n for n in trained.notes if n.startswith("warning: photos in two splits")]
    assert said == ["warning: photos in two splits (files of the same bytes): val: 1 of train's (e.g. 1.jpg, listed "
                    "in both): each is scored on what another split saw; keep each photo in one split"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    tested = data_run(src, "dfine_n", device="cpu", scratch=scratch, split="test")
    assert [n for n in tested.notes if n.startswith("warning: photos in two splits")] == [
        "warning: photos in two splits (files of the same bytes): test: 1 of train's (e.g. 0.jpg, listed in both): "
        "each is scored on what another split saw; keep each photo in one split"]
