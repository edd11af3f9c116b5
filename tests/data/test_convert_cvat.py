"""dfine data convert --from cvat: CVAT's "CVAT for images 1.1" export (task, project, images beside
the XML), shapes that are or become boxes, splits from subsets, one-line errors; found by --data."""

from __future__ import annotations

import numpy as np
import pytest

from dfine.cli import main
from dfine.data.coco import CocoDetection, DatasetError
from dfine.data.convert.cvat import convert_cvat
from dfine.recipes import data_run, detect_format
from tests.data.datasets import boxes_by_file, cvat_box, cvat_xml, image, load, voc_xml


def _task(root, images_dir="images"):
    """A task export: 5 images (one without shapes), labels declared in CVAT's order, one never used."""
    shapes = {
        "a.jpg": [cvat_box("person", 10, 5, 30, 45), cvat_box("car", 50.5, 20, 90, 50.25)],
        "b.jpg": [cvat_box("car", 60, 30, 120, 70)],  # past the right border (100 px): clipped
        "c.jpg": [cvat_box("car", 40, 20, 60, 30, rotation=90),  # 20x10 turned: the upright box 10x20
                  '<polygon label="person" source="manual" occluded="0" points="10,10;30,5;25,40" z_order="0"/>',
                  '<points label="person" source="manual" occluded="0" points="5,5" z_order="0"/>',
                  # a 4x3 crop at (70, 8) whose pixels are x 71..72, y 9..10 (CVAT's crops are not always tight)
                  '<mask label="car" source="manual" occluded="0" rle="5, 2, 2, 2, 1" left="70" top="8" width="4" '
                  'height="3" z_order="0"/>',
                  '<mask label="car" source="manual" occluded="0" rle="4" left="1" top="1" width="2" height="2"/>'],
        "d.jpg": [cvat_box("person", 1, 1, 20, 20)],
        "e.jpg": [],
    }
    for name in shapes:
        image(root / images_dir / name, (100, 60))
    return cvat_xml(root / "annotations.xml", [(n, (100, 60), "", s) for n, s in shapes.items()],
                    labels=["person", "car", "bicycle"])


def _close(got, want):
    np.testing.assert_allclose(got, want, atol=1e-2, rtol=0)


def test_task_export_with_shapes_of_every_kind(tmp_path, capsys):
    src = tmp_path / "task"
    _task(src)
    assert main(["data", "convert", "--from", "cvat", str(src), "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    train, val = (load(tmp_path / f"out/annotations/instances_{s}.json") for s in ("train", "val"))
    assert [c["name"] for c in train["categories"]] == ["person", "car"]  # declared order, unused label left out
    got = {**boxes_by_file(train), **boxes_by_file(val)}
    assert sorted(got) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"] and len(val["images"]) == 1
    (n0, b0, _), (n1, b1, _) = got["a.jpg"]
    assert (n0, n1) == ("person", "car")
    _close(b0, [10, 5, 20, 40])
    _close(b1, [50.5, 20, 39.5, 30.25])
    _close(got["b.jpg"][0][1], [60, 30, 40, 30])  # clipped at x = 100 and y = 60
    (_, rotated, _), (name, polygon, _), (masked, mask, _) = got["c.jpg"]
    _close(rotated, [45, 15, 10, 20])
    assert (name, masked) == ("person", "car")
    _close(polygon, [10, 5, 20, 35])
    _close(mask, [71, 9, 2, 2])  # the box around the mask's pixels, not its crop
    assert got["e.jpg"] == []  # background kept
    for line in ("(2 classes: person, car)", "note: no val subset: 1 of the 5 images became val (dfine data convert --val-fraction 0.2",
                 "note: 1 label with no box, left out of the classes: bicycle",
                 "note: 1 mask, 1 polygon, 1 rotated box became the boxes around them",
                 "note: 1 empty mask, 1 points shape are not boxes, left out", "clipped to the image: 'b.jpg' 'car'",
                 f"images folder: {src / 'images'}", f"train with: dfine train --data {tmp_path / 'out'}"):
        assert line in printed, line
    ds = CocoDetection(src / "images", tmp_path / "out/annotations/instances_train.json")
    assert ds.label_map.names == ("person", "car") and len(ds) == 4


def test_project_export_splits_by_subset(tmp_path):
    """A project export: images/SUBSET/NAME and <image subset=...>; 'default' joins train (said)."""
    src = tmp_path / "project"
    rows = [("t1.jpg", "Train"), ("t2.jpg", "Train"), ("v1.jpg", "Validation"), ("x1.jpg", "default"),
            ("s1.jpg", "Test")]
    for name, subset in rows:
        image(src / "images" / subset / name, (80, 40))
    cvat_xml(src / "annotations.xml", [(n, (80, 40), s, [cvat_box("dog", 1, 1, 30, 30)]) for n, s in rows],
             labels=["dog"], meta="project")
    result = convert_cvat(src / "annotations.xml")
    assert {s: sorted(boxes_by_file(load(f))) for s, f in result.ann_files.items()} == {
        "train": ["Train/t1.jpg", "Train/t2.jpg", "default/x1.jpg"], "val": ["Validation/v1.jpg"],
        "test": ["Test/s1.jpg"]}
    assert result.images_folder == src / "images"
    assert "1 image of subset 'default', none of train/val/test, joined train" in result.notes


def test_images_beside_the_xml_and_sizes_from_the_image(tmp_path):
    """An export unzipped in one folder (as public CVAT datasets are shared); the XML's size loses
    to the image's (listed)."""
    src = tmp_path / "flat"
    image(src / "OIG (1).jpg", (100, 60))
    image(src / "OIG (2).jpg", (100, 60))
    cvat_xml(src / "annotations.xml", [("OIG (1).jpg", (100, 60), "", [cvat_box("Car", 1, 2, 3, 4)]),
                                       ("OIG (2).jpg", (60, 100), "", [cvat_box("Car", 5, 6, 7, 8)])],
             labels=["Car"], meta="job")
    result = convert_cvat(src, tmp_path / "out", val_fraction=0.5)
    assert result.images_folder == src and result.names == ("Car",)
    assert any("XML size differs from the image (the image's size is used): 'OIG (2).jpg' says 60x100, image is "
               "100x60" in n for n in result.notes)


def _error(capsys, src, *more):
    assert main(["data", "convert", "--from", "cvat", str(src), *more]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_exports_are_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "noimages"
    cvat_xml(missing / "annotations.xml", [("a.jpg", (10, 10), "", [cvat_box("x", 1, 1, 5, 5)])], labels=["x"])
    (missing / "export.zip").write_bytes(b"PK")
    assert "1 image of annotations.xml not found in" in _error(capsys, missing) and "unzip export.zip there" in \
        _error(capsys, missing)
    bad = tmp_path / "bad"
    image(bad / "images/a.jpg", (10, 10))
    cvat_xml(bad / "annotations.xml", [("a.jpg", (10, 10), "", [cvat_box("x", "abc", 1, 5, 5)])], labels=["x"])
    assert "image 'a.jpg': box 'x' xtl is 'abc', not a number" in _error(capsys, bad)
    video = tmp_path / "video"
    video.mkdir()
    (video / "annotations.xml").write_text('<annotations><version>1.1</version><track id="0" label="x">'
                                           '<box frame="0" xtl="1" ytl="1" xbr="2" ybr="2" outside="0"/></track>'
                                           '</annotations>')
    assert "a 'CVAT for video 1.1' export" in _error(capsys, video)
    voc = tmp_path / "voc"
    voc_xml(voc / "annotations.xml", "a.jpg", (10, 10), [("x", (1, 1, 5, 5), 0)])
    assert "not a CVAT for images XML (its root element is <annotation>" in _error(capsys, voc)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "annotations.xml").write_text("<annotations><image")
    assert "not a readable XML file" in _error(capsys, broken)
    assert "no annotations.xml in" in _error(capsys, bad / "images")


def test_names_option_must_cover_the_boxes(tmp_path, capsys):
    _task(tmp_path / "ok")
    err = _error(capsys, tmp_path / "ok", "--names", "car")
    assert "image 'a.jpg' has a box labelled 'person', which is not in --names (car)" in err


def test_train_data_finds_a_cvat_export(tmp_path, monkeypatch):
    """--data takes the export's folder or its annotations.xml, converts into OUTPUT_DIR/data; a
    VOC folder with its XMLs beside the images is still VOC."""
    src = tmp_path / "street"
    _task(src)
    assert detect_format(src) == "cvat" and detect_format(src / "annotations.xml") == "cvat"
    run = data_run(src / "annotations.xml", "dfine_n", output_dir=tmp_path / "run", device="cpu")
    assert run.fmt == "cvat" and (tmp_path / "run/data/annotations/instances_val.json").is_file()
    assert any("run/data/annotations/instances_train.json" in o for o in run.overrides)
    assert not (src / "annotations").exists()  # the source is never written
    monkeypatch.chdir(tmp_path)  # default output: ./output/FOLDER_dfine_n, named after the export's folder
    assert data_run(src / "annotations.xml", "dfine_n", device="cpu").output_dir == tmp_path / "output/street_dfine_n"
    # an export kept in a folder named data (a walk's stop_sign/data: 'output/data_dfine_n'): the folder above's name
    (tmp_path / "stop").mkdir()
    src.rename(tmp_path / "stop" / "data")
    assert data_run(tmp_path / "stop/data", "dfine_n", device="cpu").output_dir == tmp_path / "output/stop_dfine_n"
    voc = tmp_path / "labelimg"
    image(voc / "a.jpg", (10, 10))
    voc_xml(voc / "a.xml", "a.jpg", (10, 10), [("x", (1, 1, 5, 5), 0)])
    assert detect_format(voc) == "voc"


def test_images_in_another_folder_of_the_export_are_found(tmp_path, capsys):
    """KGCraig/Urban-Scene-Data-Annotation: annotations.xml beside images/raw/ (the photos), images/masks/ and
    images/overlay/ (pictures made from them); it was 'not found in images/, images/SUBSET nor beside it'.
    The one folder of the export that holds every image is used, said in a note; a folder holding only some
    of them is named in the error with the images it lacks; two folders holding them are an error naming both."""
    src = tmp_path / "urban"
    for name in ("a.jpg", "b.jpg"):
        image(src / "images/raw" / name, (100, 60))
        image(src / "images/masks" / name.replace(".jpg", "_mask.jpg"), (100, 60))
    cvat_xml(src / "annotations.xml", [(n, (100, 60), "default", [cvat_box("car", 1, 2, 30, 40)])
                                       for n in ("a.jpg", "b.jpg")], labels=["car"], meta="project")
    result = convert_cvat(src, tmp_path / "out", val_fraction=0.5)
    assert result.images_folder == src / "images/raw"
    assert f"images found in {src / 'images/raw'}, not in images/ where CVAT puts them" in result.notes
    (src / "images/raw/b.jpg").unlink()
    err = _error(capsys, src)
    assert f"1 image of annotations.xml not found in {src / 'images/raw'}, which holds the other 1 (first: b.jpg)" in err
    image(src / "images/raw/b.jpg", (100, 60))
    for name in ("a.jpg", "b.jpg"):
        image(src / "images/copy" / name, (100, 60))
    err = _error(capsys, src)
    assert f"{src / 'images/copy'} and {src / 'images/raw'} both hold them" in err


def test_a_box_label_the_xml_does_not_declare_is_said(tmp_path):
    """A box labelled 'persn' where <labels> declares person, car, bicycle became a class without a word
    (a walk); it is still a class, and a note names it with its boxes."""
    for name in ("a.jpg", "b.jpg"):
        image(tmp_path / "set/images" / name, (100, 60))
    cvat_xml(tmp_path / "set/annotations.xml",
             [("a.jpg", (100, 60), "", [cvat_box("person", 10, 5, 30, 45), cvat_box("persn", 50, 20, 90, 50)]),
              ("b.jpg", (100, 60), "", [cvat_box("car", 10, 5, 30, 45)])], labels=["person", "car", "bicycle"])
    result = convert_cvat(tmp_path / "set", tmp_path / "out", val_fraction=0.0)
    assert result.names == ("person", "car", "persn")
    assert ("1 label on boxes but not declared in the XML's <labels> (person, car, bicycle), kept as a class of its "
            "own (a misspelling?): persn (1 box)") in result.notes
    assert not any("not declared" in n for n in convert_cvat(*_task_and_out(tmp_path)).notes)


def _task_and_out(tmp_path):
    _task(tmp_path / "ok")
    return tmp_path / "ok", tmp_path / "ok_out"


def test_images_under_another_extension_are_pointed_at(tmp_path):
    """The XML names banana_1.jpeg, the export's files are banana_1.jpg in database/plane_class_4 (a walk):
    the error said only 'not found'; it now says where they are and what differs."""
    for name in ("banana_1", "banana_2"):
        image(tmp_path / "set/database/plane_class_4" / f"{name}.jpg", (100, 60))
    cvat_xml(tmp_path / "set/annotations.xml", [(f"banana_{i}.jpeg", (100, 60), "", [cvat_box("banana", 10, 5, 30, 45)])
                                                for i in (1, 2)], labels=["banana"])
    with pytest.raises(DatasetError) as err:
        convert_cvat(tmp_path / "set", tmp_path / "out")
    assert str(err.value).endswith(f"; {tmp_path / 'set/database/plane_class_4'} holds 2 of them under another "
                                   f"extension (banana_1.jpg for banana_1.jpeg): rename them as the XML names them, "
                                   f"or the XML's names")


def test_a_cvat_export_beside_a_coco_file_is_said(tmp_path, capsys):
    """A walk's CVAT export held a COCO instances.json too (2 of its 5 labels, 100 of its 125 boxes): the folder
    was read as COCO without a word of the XML. The check and a training now say the CVAT export is there,
    and how to read it instead."""
    import json
    src = tmp_path / "street"
    _task(src)
    coco = {"images": [{"id": i, "file_name": f"{n}.jpg", "width": 100, "height": 60}
                       for i, n in enumerate("abcde", 1)],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 40], "area": 800,
                             "iscrowd": 0}], "categories": [{"id": 1, "name": "person"}]}
    (src / "instances.json").write_text(json.dumps(coco))
    said = (f"{src} also holds a CVAT export (annotations.xml); the COCO files are used. For the others: dfine data "
            f"convert --from cvat {src} -o street_cvat, then --data street_cvat")
    assert detect_format(src) == "coco"
    assert said in data_run(src, "dfine_n", output_dir=tmp_path / "run", device="cpu").notes
    main(["data", "check", str(src)])
    assert said in capsys.readouterr().out.splitlines()
    (src / "instances.json").unlink()
    assert not [n for n in data_run(src, "dfine_n", output_dir=tmp_path / "run2").notes if "also holds" in n]
