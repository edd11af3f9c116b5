"""``dfine eval -r model.onnx`` on a dataset folder (``--data``) or a recipe's val set (``-c``),
as a checkpoint is evaluated; and its errors, one line each.

The model is a random tiny one (5 classes, 128 px); each evaluation set is labelled with its
own best detections, so a high AP means the set was read and the model run on its images."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from dfine.cli import main
from dfine.inference import Detector
from tests.models.tiny import tiny_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CUSTOM_N = Path(__file__).resolve().parents[2] / "configs" / "dfine" / "custom" / "dfine_hgnetv2_n_custom.yml"
NAMES = ["circle", "cross", "square", "star", "triangle"]  # sorted, ids 1..5: what a VOC conversion gives


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """The tiny model exported to ONNX, with the VOC-converted names and ids."""
    torch.manual_seed(0)
    model = tiny_model()
    folder = tmp_path_factory.mktemp("model")
    ckpt = folder / "tiny.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config),
                "class_names": NAMES, "category_ids": [1, 2, 3, 4, 5]}, ckpt)
    assert main(["export", "-r", str(ckpt), "--no-simplify", "-o", str(folder / "tiny.onnx")]) == 0
    return folder / "tiny.onnx"


@pytest.fixture(scope="module")
def labelled(onnx_model):
    """``{file name: (width, height, [(name, x0, y0, x1, y1), ...])}``: the model's three best
    detections on six COCO128 images."""
    from tests.conftest import shared_path
    paths = sorted(shared_path("data", "coco128", "train2017").glob("*.jpg"))[:6]
    out = {}
    for path, d in zip(paths, Detector(str(onnx_model), conf=0.0)([str(p) for p in paths])):
        boxes = [(d.names[i], *box) for i, box in enumerate(d.boxes[:3].tolist())]
        out[path] = (*d.image_size, boxes)
    return out


def voc_folder(labelled, root: Path) -> Path:
    """A VOC set: Annotations/*.xml, JPEGImages/, ImageSets/Main/{train,val}.txt (4 val images)."""
    for name in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / name).mkdir(parents=True)
    for path, (w, h, boxes) in labelled.items():
        shutil.copy(path, root / "JPEGImages" / path.name)
        objects = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x0:.1f}</xmin>"
                          f"<ymin>{y0:.1f}</ymin><xmax>{x1:.1f}</xmax><ymax>{y1:.1f}</ymax></bndbox></object>"
                          for n, x0, y0, x1, y1 in boxes)
        (root / "Annotations" / f"{path.stem}.xml").write_text(
            f"<annotation><filename>{path.name}</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")
    # a train image with a box of every class, so the conversion numbers the classes as the model does (ids
    # from the sorted names of all XMLs): with only the names the model found, 'star' was id 1, the model's circle
    first = next(iter(labelled))
    shutil.copy(first, root / "JPEGImages" / "all.jpg")
    every = "".join(f"<object><name>{n}</name><bndbox><xmin>{10 * i}</xmin><ymin>10</ymin><xmax>{10 * i + 8}</xmax>"
                    f"<ymax>18</ymax></bndbox></object>" for i, n in enumerate(NAMES, 1))
    w, h, _ = labelled[first]
    (root / "Annotations" / "all.xml").write_text(f"<annotation><filename>all.jpg</filename><size><width>{w}</width>"
                                                  f"<height>{h}</height></size>{every}</annotation>")
    stems = [p.stem for p in labelled]
    (root / "ImageSets/Main/train.txt").write_text("\n".join(stems[:2] + ["all"]) + "\n")
    (root / "ImageSets/Main/val.txt").write_text("\n".join(stems[2:]) + "\n")
    return root


def coco_file(labelled, path: Path) -> Path:
    """The same labels as a COCO file of all six images."""
    ann = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(NAMES)]}
    for image_id, (p, (w, h, boxes)) in enumerate(labelled.items(), start=1):
        ann["images"].append({"id": image_id, "file_name": p.name, "width": w, "height": h})
        for n, x0, y0, x1, y1 in boxes:
            ann["annotations"].append({"id": len(ann["annotations"]) + 1, "image_id": image_id,
                                       "category_id": NAMES.index(n) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                       "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ann))
    return path


def _eval(capsys, argv):
    """(AP in percent, stdout, stderr) of ``dfine eval``."""
    assert main(["eval", "--no-progress", *argv]) == 0
    text = capsys.readouterr()
    return float(re.search(r"\bAP (\S+)%", text.out).group(1)), text.out, text.err


def test_export_on_a_voc_data_folder_takes_its_val_split(onnx_model, labelled, tmp_path, capsys):
    """``dfine eval -r model.onnx --data VOC`` said 'say what to evaluate on: --ann-file FILE --images
    DIR, or -c RECIPE', though ``-r model.pth --data VOC`` takes the val split; now the same split,
    converted as training converts it, and nothing written into the dataset or the current folder."""
    voc = voc_folder(labelled, tmp_path / "voc")
    before = sorted(p.relative_to(voc) for p in voc.rglob("*"))
    ap, out, err = _eval(capsys, ["-r", str(onnx_model), "--data", str(voc), "-o", str(tmp_path / "m")])
    assert ap > 50 and f"val split of {voc} (4 images, {sum(len(b) for _, _, b in list(labelled.values())[2:])} boxes)" in out
    # how the folder became the split evaluated, as a checkpoint's evaluation says it (a walk: nothing said)
    assert f"converted VOC {voc} into a temporary folder for this evaluation (removed after it)" in err
    assert sorted(p.relative_to(voc) for p in voc.rglob("*")) == before
    saved = json.loads((tmp_path / "m" / "tiny.onnx.eval.json").read_text())
    assert saved["num_images"] == 4 and saved["data"] == str(voc) and saved["ann_file"] is None
    # the evaluation's pictures beside its metrics, named after them and in the output, of the set's 4 images
    drawn = re.search(r"^pictures: (.*) \(in (.*)\)$", out, re.M)
    assert drawn and drawn.group(2) == str(tmp_path / "m"), out
    names = drawn.group(1).split(", ")
    assert {"tiny.onnx.eval_pr_curves.png", "tiny.onnx.eval_predictions.png"} <= set(names)
    assert all((tmp_path / "m" / n).is_file() for n in names)


def test_export_on_a_coco_data_folder_and_its_own_images_folder(onnx_model, labelled, tmp_path, capsys, monkeypatch):
    """A COCO folder's val file is read where it is; ``--images`` replaces its folder as for a checkpoint; its
    pictures are titled with the split, as a checkpoint's (a walk's said '_annotations.coco.json', each split's
    file name in a Roboflow set)."""
    import dfine.engine.plots as plots
    titled = []
    real = plots.evaluation_pictures
    monkeypatch.setattr(plots, "evaluation_pictures", lambda m, p, what, *a, **k: titled.append(what) or real(
        m, p, what, *a, **k))
    root = tmp_path / "coco"
    ann = coco_file(labelled, root / "annotations" / "instances_val.json")
    coco_file(labelled, root / "annotations" / "instances_train.json")
    (root / "val").mkdir()
    elsewhere = tmp_path / "pictures"
    elsewhere.mkdir()
    for p in labelled:
        shutil.copy(p, elsewhere / p.name)
    ap, out, _ = _eval(capsys, ["-r", str(onnx_model), "--data", str(root), "--images", str(elsewhere),
                                "-o", str(tmp_path / "m")])
    assert ap > 50 and f"(6 images, {sum(len(b) for _, _, b in labelled.values())} boxes)" in out
    assert f"on the val split of {root} (annotations/instances_val.json) (6 images" in out  # as a checkpoint's
    assert json.loads((tmp_path / "m" / "tiny.onnx.eval.json").read_text())["ann_file"] == str(ann)
    assert titled == ["tiny.onnx, val"]


def test_a_val_splits_own_file_given_as_data_is_evaluated_whole(onnx_model, labelled, tmp_path, capsys):
    """``--data annotations/custom_val.json`` (a walk) scored a seeded fifth of the file, as one file for all
    images is split; a file named as a val or test split is now evaluated whole, its images found beside it
    (``val2017/``); one file for all images keeps its seeded val split (the one its training used)."""
    root = tmp_path / "facemask"
    ann = coco_file(labelled, root / "annotations" / "custom_val.json")
    (root / "val2017").mkdir()
    for p in labelled:
        shutil.copy(p, root / "val2017" / p.name)
    boxes = sum(len(b) for _, _, b in labelled.values())
    ap, out, err = _eval(capsys, ["-r", str(onnx_model), "--data", str(ann), "-o", str(tmp_path / "m")])
    assert f"on {ann} (6 images, {boxes} boxes)" in out
    assert "custom_val.json is named as a val split: all of it is evaluated, as it is" in err
    shutil.copytree(root / "val2017", tmp_path / "one" / "images")
    whole = shutil.copy(ann, tmp_path / "one" / "all.json")
    ap, out, err = _eval(capsys, ["-r", str(onnx_model), "--data", str(whole), "-o", str(tmp_path / "m2")])
    assert "6 images" not in out and "became val" in err


def test_export_on_a_recipes_val_set_with_only_images_given(onnx_model, labelled, tmp_path, capsys):
    """``-c RECIPE --images DIR`` (the recipe's val file, its images elsewhere) was refused with
    'give both --ann-file FILE and --images DIR'; a checkpoint took it."""
    ann = coco_file(labelled, tmp_path / "val.json")
    images = tmp_path / "images"
    images.mkdir()
    for p in labelled:
        shutil.copy(p, images / p.name)
    recipe = tmp_path / "recipe.yml"
    recipe.write_text(f"__include__: ['{CUSTOM_N}']\n"
                      f"val_dataloader: {{dataset: {{ann_file: '{ann}', img_folder: '/nowhere/val'}}}}\n")
    ap, out, _ = _eval(capsys, ["-r", str(onnx_model), "-c", str(recipe), "--images", str(images),
                                "--max-images", "3", "-o", str(tmp_path / "m")])
    assert ap > 50 and re.search(r"\(3 images, \d+ box(es)?\)", out) and str(ann) in out
    assert json.loads((tmp_path / "m" / "tiny.onnx.eval.json").read_text())["max_dets"] == 100
    # the recipe's evaluator.max_dets counts for an export as for a checkpoint (the COCO recipes: 100)
    _eval(capsys, ["-r", str(onnx_model), "-c", str(recipe), "--images", str(images), "--max-images", "3",
                   "-o", str(tmp_path / "m"), "-u", "evaluator.max_dets=7"])
    assert json.loads((tmp_path / "m" / "tiny.onnx.eval.json").read_text())["max_dets"] == 7


def test_an_annotation_file_beside_its_images_needs_no_images_option(onnx_model, labelled, tmp_path, capsys):
    """A walk's ``dfine eval --ann-file chess/test/_annotations.coco.json`` was asked for --images, though
    ``dfine data check`` of the same file finds the images beside it: the same folder now, as data check's."""
    split = tmp_path / "test"
    split.mkdir()
    for p in labelled:
        shutil.copy(p, split / p.name)
    ann = coco_file(labelled, split / "_annotations.coco.json")
    ap, out, _ = _eval(capsys, ["-r", str(onnx_model), "--ann-file", str(ann), "-o", str(tmp_path / "m")])
    assert ap > 50 and f"(6 images, {sum(len(b) for _, _, b in labelled.values())} boxes)" in out


@pytest.mark.parametrize("argv, words", [
    (["--images", "IMAGES"], "--ann-file FILE"),
    (["--ann-file", "ANN"], "--images DIR"),
    ([], "--data DIR"),
    (["--data", "MISSING"], "--data {tmp}/missing not found"),
    (["--data", "IMAGES"], "not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder"),
    (["--data", "TEST_ONLY"], "no val split; found test: --split test evaluates its test split"),
    (["--data", "VOC", "-c", "RECIPE"], "not both"),
    (["-c", "RECIPE"], "val_dataloader.dataset.ann_file"),
    (["-c", "RECIPE", "--ann-file", "ANN"], "val_dataloader.dataset.img_folder"),
])
def test_export_eval_errors_are_one_line(onnx_model, labelled, tmp_path, capsys, argv, words):
    images = tmp_path / "images"
    images.mkdir()
    test_only = tmp_path / "test_only"
    coco_file(labelled, test_only / "annotations" / "instances_test.json")
    recipe = tmp_path / "recipe.yml"
    recipe.write_text(f"__include__: ['{CUSTOM_N}']\n"
                      f"val_dataloader: {{dataset: {{ann_file: '{tmp_path}/none.json', img_folder: '/nowhere/val'}}}}\n")
    paths = {"IMAGES": images, "ANN": coco_file(labelled, tmp_path / "a.json"), "MISSING": tmp_path / "missing",
             "TEST_ONLY": test_only, "VOC": voc_folder(labelled, tmp_path / "voc"), "RECIPE": recipe}
    argv = [str(paths.get(a, a)) for a in argv]
    assert main(["eval", "-r", str(onnx_model), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words.format(tmp=tmp_path) in err, err


def test_m_names_the_model_as_in_predict(onnx_model, labelled, tmp_path, capsys):
    """``dfine predict -m MODEL`` (what training prints last) but ``dfine eval -m MODEL`` and
    ``dfine export -m CKPT`` were 'unrecognized arguments: -m'; -m is now the model there too."""
    voc = voc_folder(labelled, tmp_path / "voc")
    ap, out, _ = _eval(capsys, ["-m", str(onnx_model), "--data", str(voc), "-o", str(tmp_path / "m")])
    assert ap > 50 and f"{onnx_model} on the VOC val split" in out
    assert main(["eval", "-m", str(onnx_model), "-r", str(tmp_path / "other.onnx"), "--data", str(voc)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: -m {onnx_model} and -r {tmp_path / 'other.onnx'} name two models; give one", err
    out = tmp_path / "again.onnx"
    assert main(["export", "-m", str(onnx_model.with_suffix(".pth")), "--no-simplify", "-o", str(out)]) == 0
    assert out.is_file()


def test_a_model_of_other_classes_is_said(onnx_model, labelled, tmp_path, capsys):
    """A raccoon model evaluated on a bus/car/person set (both ids 1..): the ids overlap, so it ran
    and printed AP 0.0 without a word; the names that differ for the same ids are said in one line."""
    ann = json.loads(coco_file(labelled, tmp_path / "val.json").read_text())
    for c in ann["categories"]:
        c["name"] = {"circle": "bus", "cross": "car"}.get(c["name"], c["name"])
    (tmp_path / "val.json").write_text(json.dumps(ann))
    images = tmp_path / "images"
    images.mkdir()
    for p in labelled:
        shutil.copy(p, images / p.name)
    _, _, err = _eval(capsys, ["-m", str(onnx_model), "--ann-file", str(tmp_path / "val.json"), "--images",
                               str(images), "-o", str(tmp_path / "m")])
    assert err.strip().splitlines() == [
        f"warning: the model's classes differ from {tmp_path / 'val.json'}'s for 2 of its 5 category ids: "
        f"1 is circle in the model, bus in the data; 2 is cross in the model, car in the data; was the model "
        f"trained on this data?"]


def test_export_on_a_yolo_folder_without_names_takes_names(onnx_model, labelled, tmp_path, capsys):
    """A YOLO folder naming no classes (FatihEmin48/okra-pepper-eggplant-yolo-dataset): ``dfine eval -r
    model.onnx --data DIR --names ...`` still said "give --names a,b,c": the export's evaluation
    dropped the option the command had taken."""
    root = tmp_path / "yolo"
    for i, (path, (w, h, boxes)) in enumerate(labelled.items()):
        split = "train" if i < 2 else "val"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "images" / split / path.name)
        rows = [f"{NAMES.index(n)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
                for n, x0, y0, x1, y1 in boxes]
        (root / "labels" / split / f"{path.stem}.txt").write_text("\n".join(rows) + "\n")
    ap, _, _ = _eval(capsys, ["-r", str(onnx_model), "--data", str(root), "--names", ",".join(NAMES),
                              "-o", str(tmp_path / "m")])
    assert ap > 50  # the model's own detections, named as the model names them
    # without --names: the export's own names (its category ids are 1..K, as a converted YOLO folder's)
    own, _, err = _eval(capsys, ["-r", str(onnx_model), "--data", str(root), "-o", str(tmp_path / "own")])
    assert own == ap and f"{root} names no classes: the model's own are used" in err
    assert main(["eval", "-r", str(onnx_model), "--ann-file", "a.json", "--images", ".", "--names", "x"]) == 2
    assert "--names goes with --data DIR" in capsys.readouterr().err


def test_a_model_of_none_of_the_data_classes_is_an_error(onnx_model, labelled, tmp_path, capsys):
    """A bottle model evaluated on a set of bananas whose ids overlap printed 'banana AP 1.1' after a
    warning (a walk), while the checkpoint was an error: every shared id naming another class is now one
    line for the export, as for the checkpoint."""
    ann = json.loads(coco_file(labelled, tmp_path / "val.json").read_text())
    for c in ann["categories"]:
        c["name"] = f"fruit{c['id']}"
    (tmp_path / "val.json").write_text(json.dumps(ann))
    images = tmp_path / "images"
    images.mkdir()
    for p in labelled:
        shutil.copy(p, images / p.name)
    assert main(["eval", "--no-progress", "-m", str(onnx_model), "--ann-file", str(tmp_path / "val.json"), "--images",
                 str(images), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the model's classes (circle, cross, ") and "\n" not in err
    assert err.endswith(f"are none of {tmp_path / 'val.json'}'s for the same category ids (fruit1, fruit2, fruit3, "
                        f"fruit4, fruit5): its AP here would score its classes as others; evaluate it on the data it "
                        f"was trained for")
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())


def test_a_second_evaluation_or_export_says_what_it_replaces(onnx_model, labelled, tmp_path, capsys):
    """The eval of the test split replaced MODEL.eval.json of the val split without a word, and
    --format openvino rewrote the .onnx an earlier export wrote (walks): both are said now."""
    ckpt = onnx_model.with_suffix(".pth")
    out = tmp_path / "m.onnx"
    assert main(["export", "-r", str(ckpt), "--no-simplify", "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("classes: circle, cross, square, ...)")
    assert main(["export", "-r", str(ckpt), "--no-simplify", "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(" replacing the one there")
    images = tmp_path / "images"
    images.mkdir()
    for p in labelled:
        shutil.copy(p, images / p.name)
    for name in ("val", "test"):
        coco_file(labelled, tmp_path / f"{name}.json")
    _eval(capsys, ["-m", str(out), "--ann-file", str(tmp_path / "val.json"), "--images", str(images)])
    _, _, err = _eval(capsys, ["-m", str(out), "--ann-file", str(tmp_path / "test.json"), "--images", str(images)])
    assert (f"note: {tmp_path / 'm.onnx.eval.json'} held the evaluation on {tmp_path / 'val.json'}; this one on "
            f"{tmp_path / 'test.json'} replaces it and its pictures (m.onnx.eval_*.png; -o DIR writes them elsewhere)"
            ) in err.splitlines()
    assert json.loads((tmp_path / "m.onnx.eval.json").read_text())["ann_file"] == str(tmp_path / "test.json")
    _, _, err = _eval(capsys, ["-m", str(out), "--ann-file", str(tmp_path / "test.json"), "--images", str(images)])
    assert "held the evaluation" not in err  # the same set again: nothing to say


def test_a_sliced_evaluation_of_a_dense_set_counts_a_limit_the_set_gives(tmp_path, capsys):
    """A walk: sliced inference kept every tile's detections (thousands an image), and the dense
    rule (every detection counts) printed AR19511, a limit no other model or run would share. A
    sliced evaluation of an image of 120 boxes counts the top 300 (twice its most boxes, rounded up
    to hundreds), whatever the model gives; unsliced, the dense rule is as before."""
    import numpy as np
    import PIL.Image

    from dfine.export.evaluate import evaluate_detector, load_eval_set
    from dfine.slicing import slice_config

    PIL.Image.new("RGB", (256, 256), (90, 90, 90)).save(tmp_path / "dense.png")
    boxes = [[8 + 20 * (k % 12), 8 + 20 * (k // 12), 10, 10] for k in range(120)]
    ann = {"images": [{"id": 1, "file_name": "dense.png", "width": 256, "height": 256}],
           "categories": [{"id": 1, "name": "cell"}],
           "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 100, "iscrowd": 0}
                           for k, b in enumerate(boxes)]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    data = load_eval_set(tmp_path / "ann.json", tmp_path)
    rng = np.random.default_rng(0)

    def run(images, sizes):  # 200 scattered boxes a tile, in the tile's pixels
        n = len(images)
        xy = rng.uniform(0, 50, (n, 200, 2))
        out = np.concatenate([xy, xy + 12], axis=2).astype(np.float32)
        return np.zeros((n, 200), np.int64), out, rng.uniform(0.01, 1, (n, 200)).astype(np.float32)

    det = Detector.from_run(run, (64, 64), ["cell"], [1], conf=0.0, batch_size=8)
    det.slice = slice_config(64)
    sliced = evaluate_detector(det, data)
    assert sliced.max_dets == 300 and "maxDets=300" in sliced.coco_summary() and "AR300" in sliced.summary()
    assert "AP and AR count the top 300 detections of each image (twice its 120 boxes" in sliced.dense_note()
    det.slice = None
    assert evaluate_detector(det, data).max_dets == 200  # unsliced: every detection the model gives counts
