"""dfine data convert --from createml: Roboflow's "CreateML JSON" export ({train,valid,test}/
_annotations.createml.json beside each split's images, box centres in pixels); found by --data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfine.cli import main
from dfine.data.coco import DatasetError
from dfine.data.convert.createml import convert_createml
from dfine.recipes import detect_format
from tests.data.datasets import boxes_by_file, image, load


def _export(root):
    """xrwalsh27/ANPR_XavierW's layout: an entry per image, x/y the box centre; one train entry whose
    image is not there (a trimmed export), one image without annotations."""
    entries = {"train": [("a.jpg", [("plate", 30.5, 20.5, 21, 11), ("vehicle", 60, 40, 40, 30)]), ("b.jpg", []),
                         ("gone.jpg", [("plate", 5, 5, 4, 4)])],
               "valid": [("v.jpg", [("vehicle", 50, 30, 20, 20)])], "test": [("t.jpg", [("plate", 10, 10, 4, 4)])]}
    for split, items in entries.items():
        for name, _ in items:
            if name != "gone.jpg":
                image(root / split / name, (100, 60))
        data = [{"image": name, "annotations": [{"label": label, "coordinates": {"x": x, "y": y, "width": w, "height": h}}
                                                for label, x, y, w, h in boxes]} for name, boxes in items]
        (root / split / "_annotations.createml.json").write_text(json.dumps(data))
    return root


def test_roboflow_createml_export(tmp_path, capsys):
    src = _export(tmp_path / "anpr")
    assert detect_format(src) == "createml"
    assert main(["data", "convert", "--from", "createml", str(src), "-o", str(tmp_path / "out")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    train, val, test = (load(tmp_path / f"out/annotations/instances_{s}.json") for s in ("train", "val", "test"))
    assert [c["name"] for c in train["categories"]] == ["plate", "vehicle"]
    got = boxes_by_file(train)
    assert sorted(got) == ["train/a.jpg", "train/b.jpg"] and got["train/b.jpg"] == []
    (n0, b0, _), (n1, b1, _) = got["train/a.jpg"]
    assert (n0, n1) == ("plate", "vehicle")
    np.testing.assert_allclose(b0, [20, 15, 21, 11])  # centre 30.5, 20.5 -> corner 20, 15
    np.testing.assert_allclose(b1, [40, 25, 40, 30])
    assert list(boxes_by_file(val)) == ["valid/v.jpg"] and list(boxes_by_file(test)) == ["test/t.jpg"]
    assert "1 image named in the CreateML files not found beside them, left out with their boxes: " \
           "train/_annotations.createml.json: gone.jpg" in printed


def test_createml_errors_name_the_file_and_entry(tmp_path):
    src = _export(tmp_path / "anpr")
    bad = src / "valid/_annotations.createml.json"
    bad.write_text(json.dumps([{"image": "v.jpg", "annotations": [{"label": "x", "coordinates": {"x": 1, "y": 1}}]}]))
    with pytest.raises(DatasetError) as err:
        convert_createml(src)
    assert str(err.value) == (f"{bad}: entry 1 (v.jpg), annotation 1: coordinates are {{'x': 1, 'y': 1}}; expected "
                              f"{{\"x\", \"y\", \"width\", \"height\"}} in pixels")
    bad.write_text(json.dumps([{"image": "v.jpg", "annotations": [{"label": "x", "cordinates": {"x": 1}}]}]))
    with pytest.raises(DatasetError) as err:  # a key misspelt: named (it read 'coordinates are None')
        convert_createml(src)
    assert str(err.value) == (f"{bad}: entry 1 (v.jpg), annotation 1: no \"coordinates\" (its keys: 'label', "
                              f"'cordinates')")
    # fractions of the image where CreateML has pixels: every box was under a pixel, unsaid (a walk)
    bad.write_text(json.dumps([{"image": "v.jpg", "annotations": [
        {"label": "x", "coordinates": {"x": 0.5, "y": 0.5, "width": 0.3, "height": 0.2}}]}]))
    for split in ("train", "test"):
        (src / split / "_annotations.createml.json").unlink()
    with pytest.raises(DatasetError) as err:
        convert_createml(src)
    assert str(err.value) == (f"{bad}: every box is within 0..1, fractions of the image; CreateML's coordinates are "
                              f"in pixels (x and y the box's centre): multiply by the image's width and height")
    _export(src)
    with pytest.raises(DatasetError, match=r"is the train split of the CreateML dataset"):
        convert_createml(src / "train")
    bad.write_text(json.dumps([{"image": "v.jpg", "annotations": []}]))
    with pytest.raises(DatasetError) as err:
        convert_createml(src, tmp_path / "out", names=["plate"])
    assert str(err.value) == f"labels of {src} not in --names (plate): vehicle; add them to --names"


def test_train_data_reads_a_createml_export(tmp_path, capsys):
    from tests.data.test_train_data import TINY

    src, out = _export(tmp_path / "anpr"), tmp_path / "run"
    assert main(["train", "--data", str(src), "-o", str(out), *TINY]) == 0
    assert "converted CreateML" in capsys.readouterr().err


def test_a_folder_holding_other_formats_too_says_which_it_reads(tmp_path):
    """Roboflow zips of one dataset unpacked into one folder: a walk's COCO, CreateML and VOC files of each split were
    read as COCO (and VOC + CreateML as VOC) without a word of the others, which held other boxes."""
    from dfine.recipes import data_run
    from tests.data.datasets import voc_xml
    src = _export(tmp_path / "mix")
    for split, name in (("train", "a.jpg"), ("valid", "v.jpg"), ("test", "t.jpg")):
        voc_xml(src / split / f"{name[:-4]}.xml", name, (100, 60), [("plate", (10, 10, 30, 20), 0)])
    notes = data_run(src, "dfine_n", output_dir=tmp_path / "run", device="cpu").notes
    assert (f"{src} also holds CreateML files (test/_annotations.createml.json, train/_annotations.createml.json, "
            f"valid/_annotations.createml.json); the VOC files are used. For the others: dfine data convert --from "
            f"createml {src} -o mix_createml, then --data mix_createml") in notes, notes
    for split, name in (("train", "a.jpg"), ("valid", "v.jpg")):
        (src / split / "_annotations.coco.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": name, "width": 100, "height": 60}], "categories": [
                {"id": 1, "name": "plate"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                                              "bbox": [5, 5, 20, 10], "area": 200, "iscrowd": 0}]}))
    notes = data_run(src, "dfine_n", output_dir=tmp_path / "run2", device="cpu").notes
    said = [n for n in notes if "also holds" in n]
    assert len(said) == 2 and "the COCO files are used" in said[0] and said[1].startswith(f"{src} also holds VOC XMLs")
