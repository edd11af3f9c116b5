"""dfine data convert --from labelme: a JSON per image as LabelMe saves it (beside the image, or in a
folder of its own with a Windows imagePath), shapes that are or become boxes, groups, split folders,
one-line errors; found by --data and dfine data check."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from dfine.cli import main
from dfine.data.coco import DatasetError
from dfine.data.convert.labelme import convert_labelme
from dfine.recipes import detect_format
from tests.data.datasets import boxes_by_file, image, labelme_json, load, rect


def _close(got, want):
    np.testing.assert_allclose(got, want, atol=1e-2, rtol=0)


def _one_folder(root):
    """LabelMe's own way: each JSON beside its image; every kind of shape."""
    shapes = {
        "a.jpg": [rect("cat", 30, 45, 10, 5),  # dragged from bottom right: corners in any order
                  {"label": "dog", "points": [[50, 20], [90, 25], [70, 50]], "shape_type": "polygon"}],
        "b.jpg": [{"label": "dog", "points": [[50, 30], [60, 30]], "shape_type": "circle"},  # r 10 about (50, 30)
                  {"label": "cat", "points": [[5, 5]], "shape_type": "point"},
                  {"label": "cat", "points": [[1, 1], [9, 9]], "shape_type": "line"}],
        "c.jpg": [rect("cat", 5, 5, 20, 20, group_id=1), rect("cat", 40, 10, 60, 30, group_id=1),  # one cat, 2 parts
                  rect("dog", 70, 10, 80, 20, group_id=1)],  # same group, other label: its own box
        "d.jpg": [rect("cat", 80, 30, 120, 70)],  # past the right and bottom border (100x60): clipped
        "e.jpg": [],
    }
    for name, s in shapes.items():
        image(root / name, (100, 60))
        labelme_json(root / f"{name[0]}.json", name, (100, 60), s)
    return shapes


def test_one_folder_with_shapes_of_every_kind(tmp_path, capsys):
    src = tmp_path / "labelled"
    _one_folder(src)
    assert detect_format(src) == "labelme"
    assert main(["data", "convert", "--from", "labelme", str(src), "-o", str(tmp_path / "out")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    train, val = (load(tmp_path / f"out/annotations/instances_{s}.json") for s in ("train", "val"))
    assert [c["name"] for c in train["categories"]] == ["cat", "dog"]  # sorted
    got = {**boxes_by_file(train), **boxes_by_file(val)}
    assert sorted(got) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"] and len(val["images"]) == 1
    (n0, b0, _), (n1, b1, _) = got["a.jpg"]
    assert (n0, n1) == ("cat", "dog")
    _close(b0, [10, 5, 20, 40])
    _close(b1, [50, 20, 40, 30])
    assert [(n, list(b)) for n, b, _ in got["b.jpg"]] == [("dog", [40, 20, 20, 20])]
    (c0, cb0, _), (c1, cb1, _) = got["c.jpg"]
    assert (c0, c1) == ("cat", "dog")
    _close(cb0, [5, 5, 55, 25])  # the box around both parts
    _close(cb1, [70, 10, 10, 10])
    _close(got["d.jpg"][0][1], [80, 30, 20, 30])
    assert got["e.jpg"] == []
    assert "1 circle, 1 polygon became the boxes around them" in printed
    assert "1 shape sharing a label and group_id with another were joined into one box" in printed
    assert "1 line, 1 point are not boxes, left out" in printed
    assert "train: 1 box clipped to the image: d.json 'cat'" in printed
    assert "no split folders: 1 of 5 images became val (dfine data convert --val-fraction 0.2 --seed 0)" in printed
    assert not (src / "annotations").exists()  # -o given: the source is not written


def test_json_folder_apart_with_windows_paths_and_split_folders(tmp_path, capsys):
    """JSONs in json/ and images in images/ per split, imagePath '..\\images\\x.jpg' as LabelMe on
    Windows writes it; one JSON named for a renamed image, one whose image is gone."""
    src = tmp_path / "set"
    for split, names in (("train", ["t1", "t2", "t3"]), ("val", ["v1"])):
        for n in names:
            image(src / split / "images" / f"{n}.JPG", (64, 48))
            labelme_json(src / split / "json" / f"{n}.json", f"..\\images\\{n}.JPG", (64, 48), [rect("bird", 1, 2, 11, 12)])
    labelme_json(src / "train" / "json" / "t4.json", "..\\images\\gone.jpg", (64, 48), [rect("bird", 1, 1, 5, 5)])
    image(src / "train" / "images" / "renamed.png", (64, 48))
    labelme_json(src / "train" / "json" / "t5.json", "C:\\Users\\ann\\Desktop\\renamed.png", (64, 48),
                 [rect("bird", 2, 2, 6, 6)])
    converted = convert_labelme(src, tmp_path / "out")
    assert set(converted.ann_files) == {"train", "val"} and converted.names == ("bird",)
    train, val = (load(converted.ann_files[s]) for s in ("train", "val"))
    assert sorted(i["file_name"] for i in train["images"]) == ["train/images/renamed.png", "train/images/t1.JPG",
                                                             "train/images/t2.JPG", "train/images/t3.JPG"]
    assert [i["file_name"] for i in val["images"]] == ["val/images/v1.JPG"]
    assert converted.images_folder == src
    notes = " ".join(converted.notes)
    assert "1 JSON whose image is not found, left out: train/json/t4.json (../images/gone.jpg)" in notes
    assert ("1 image not where imagePath says, found by name instead (e.g. train/json/t5.json: "
            "C:/Users/ann/Desktop/renamed.png -> ") in notes
    assert "became val" not in notes  # the val folder is val


def test_an_image_path_outside_the_dataset_is_not_read(tmp_path):
    """imagePath leaving the dataset folder: the image of that name inside it is used, never the outside one."""
    outside = image(tmp_path / "elsewhere" / "x.jpg", (200, 100))
    image(tmp_path / "elsewhere" / "y.jpg", (200, 100))
    src = tmp_path / "set"
    image(src / "images" / "x.jpg", (64, 48))
    image(src / "images" / "y.jpg", (64, 48))
    labelme_json(src / "json" / "x.json", str(outside), (64, 48), [rect("a", 1, 1, 9, 9)])
    labelme_json(src / "json" / "y.json", "../../elsewhere/y.jpg", (64, 48), [rect("a", 1, 1, 9, 9)])
    converted = convert_labelme(src, tmp_path / "out", val_fraction=0)
    train = load(converted.ann_files["train"])
    assert converted.images_folder == src / "images"
    assert [(i["file_name"], i["width"]) for i in train["images"]] == [("x.jpg", 64), ("y.jpg", 64)]


def test_labels_spelt_alike_are_said_and_names_order_the_classes(tmp_path):
    """A walk's typo 'hazlenut' (1 box beside 52 'hazelnut') became a fifth class without a word, and
    'Fig' beside 'fig' was said without the file holding it; --names named one unknown label per run."""
    src = tmp_path / "set"
    labels = ["Car", "car", "car ", "truck", *["hazelnut"] * 10, "hazlenut", "__ignore__"]
    for i, label in enumerate(labels):
        image(src / f"{i:02d}.jpg")
        labelme_json(src / f"{i:02d}.json", f"{i:02d}.jpg", (64, 48), [rect(label, 1, 1, 20, 20)])
    converted = convert_labelme(src, tmp_path / "out")
    assert converted.names == ("Car", "car", "hazelnut", "hazlenut", "truck")  # 'car ' is 'car'; __ignore__ no class
    notes = " ".join(converted.notes)
    assert ("labels spelt alike are separate classes (a typo while labelling?): 'Car' (1 box, e.g. 00.json) and "
            "'car' (2 boxes, e.g. 01.json); 'hazlenut' (1 box, e.g. 14.json) and 'hazelnut' (10 boxes, e.g. 04.json); "
            "to merge them, rename one in the JSONs (--names naming both keeps them apart, without this note)") in notes
    assert "1 shape labelled __ignore__ or _background_ (LabelMe's labels for what is no class) left out" in notes
    # a walk's one 'persn' of six 'person' boxes (a sixth, not a tenth) went unsaid; 'bus' and 'car' 1:3 are not alike
    small = tmp_path / "small"
    for i, label in enumerate(["persn", *["person"] * 5, "bus", *["car"] * 3]):
        image(small / f"{i:02d}.jpg")
        labelme_json(small / f"{i:02d}.json", f"{i:02d}.jpg", (64, 48), [rect(label, 1, 1, 20, 20)])
    notes = [n for n in convert_labelme(small, tmp_path / "small_out").notes if "spelt alike" in n]
    assert notes == ["labels spelt alike are separate classes (a typo while labelling?): 'persn' (1 box, e.g. 00.json) "
                     "and 'person' (5 boxes, e.g. 01.json); to merge them, rename one in the JSONs (--names naming "
                     "both keeps them apart, without this note)"]
    again = convert_labelme(src, tmp_path / "out2", names=["truck", "car", "Car", "hazelnut", "hazlenut"])
    assert again.names == ("truck", "car", "Car", "hazelnut", "hazlenut")
    assert [c["name"] for c in load(again.ann_files["train"])["categories"]] == list(again.names)
    with pytest.raises(DatasetError) as err:
        convert_labelme(src, tmp_path / "out3", names=["car", "Car", "hazelnut"])
    assert str(err.value) == ("2 labels of the LabelMe files not in --names (car, Car, hazelnut): 'hazlenut' (1 box, "
                              "e.g. 14.json), 'truck' (1 box, e.g. 03.json); add them to --names or rename them in "
                              "the JSONs")


def test_bad_files_are_named_in_one_run(tmp_path):
    """A JSON cut short and a shape without points are left out with the reason; the rest converts."""
    src = tmp_path / "set"
    for n in ("a", "b", "c"):
        image(src / f"{n}.jpg")
    labelme_json(src / "a.json", "a.jpg", (64, 48), [rect("x", 1, 1, 20, 20)])
    text = labelme_json(src / "b.json", "b.jpg", (64, 48), [rect("x", 1, 1, 20, 20)]).read_text()
    (src / "b.json").write_text(text[:len(text) // 2])
    labelme_json(src / "c.json", "c.jpg", (64, 48), [{"label": "x", "points": [], "shape_type": "polygon"}])
    converted = convert_labelme(src, tmp_path / "out", val_fraction=0)
    notes = " ".join(converted.notes)
    assert "2 JSONs cannot be read, left out: b.json (not a readable JSON file (" in notes
    assert "c.json (shape 1 'x': points are []; expected [[x, y], ...] in pixels)" in notes
    assert converted.counts["train"].images == 1


def test_images_only_inside_the_jsons_are_written_out_and_garbage_is_named(tmp_path):
    """heabeounMKTO/labelme2yolo and veraposeidon/labelme2Datasets share LabelMe JSONs alone: each image
    only in its imageData (base64 of the JPEG). They are written into the output folder as the files
    they were; a JSON whose imageData is no image is left out, named; none found at all is one line."""
    import io

    from PIL import Image

    src = tmp_path / "set"
    buffer = io.BytesIO()
    Image.new("RGB", (80, 40), (10, 200, 10)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    labelme_json(src / "sub" / "a.json", "a.jpeg", (80, 40), [rect("x", 1, 1, 20, 20)],
                 image_data=base64.b64encode(jpeg).decode())
    labelme_json(src / "b.json", "b.json", (80, 40), [rect("x", 1, 1, 20, 20)],  # imagePath names the JSON itself
                 image_data=base64.b64encode(b"not really a jpeg").decode())
    converted = convert_labelme(src, tmp_path / "out", val_fraction=0)
    written = tmp_path / "out" / "labelme_images" / "sub" / "a.jpg"
    assert written.read_bytes() == jpeg
    train = load(converted.ann_files["train"])
    assert [(i["file_name"], i["width"], i["height"]) for i in train["images"]] == [("a.jpg", 80, 40)]
    assert converted.images_folder == written.parent
    notes = " ".join(converted.notes)
    assert f"1 image taken from the JSONs' imageData (no image file where imagePath says) -> {tmp_path / 'out'}" in notes
    assert "1 JSON whose image is not found, left out: b.json (b.json)" in notes
    assert not (src / "labelme_images").exists()  # -o given: the source is not written
    (src / "sub" / "a.json").unlink()
    with pytest.raises(DatasetError) as err:
        convert_labelme(src, tmp_path / "out2")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"none of the 1 image of the LabelMe files in {src} found (first: b.json names 'b.json'")


def test_train_data_and_check_read_a_labelme_folder(tmp_path, capsys):
    """--data of a LabelMe folder converts into the run's data/ (the source untouched); data check reads it too."""
    from dfine.recipes import data_run

    src = tmp_path / "labelled"
    _one_folder(src)
    before = sorted(p.name for p in src.iterdir())
    run = data_run(src, "dfine_n", epochs=1, output_dir=tmp_path / "run", device="cpu")
    assert run.fmt == "labelme"
    assert (tmp_path / "run/data/annotations/instances_train.json").is_file()
    assert sorted(p.name for p in src.iterdir()) == before
    assert main(["data", "check", str(src)]) == 0
    out = capsys.readouterr().out
    assert "converted LabelMe" in out and "train: OK; val: OK" in out


def test_the_cli_formats_are_the_converters():
    from dfine.commands.data import _FORMATS
    from dfine.data.convert import FORMATS, converter

    assert _FORMATS == FORMATS
    assert all(callable(converter(f)) for f in FORMATS)


def test_a_labelme_folder_trains_and_the_printed_commands_deploy_its_names(tmp_path, monkeypatch, capsys):
    """The walk end to end: --data of a LabelMe folder -> training -> the printed eval, export and
    predict commands run from another folder, the export carrying the LabelMe labels as class names."""
    import shlex

    pytest.importorskip("onnxruntime")
    from dfine.checkpoint import read_checkpoint
    from tests.data.test_train_data import TINY, printed_commands

    src, out, elsewhere = tmp_path / "labelled", tmp_path / "run", tmp_path / "elsewhere"
    _one_folder(src)
    elsewhere.mkdir()
    assert main(["train", "--data", str(src), "-o", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert list(read_checkpoint(out / "last.pth")["class_names"]) == ["cat", "dog"]
    commands = printed_commands(printed)
    monkeypatch.chdir(elsewhere)
    for name in ("eval", "export", "predict"):
        assert main(shlex.split(commands[name])[1:]) == 0, f"{name}: {commands[name]}"
    assert "cat" in capsys.readouterr().out  # the eval's per-class table
    onnx = next(out.glob("*.onnx"))
    import onnx as onnx_lib

    meta = {p.key: p.value for p in onnx_lib.load(str(onnx), load_external_data=False).metadata_props}
    assert "cat" in json.dumps(meta) and "dog" in json.dumps(meta)
    assert next(elsewhere.rglob("predictions.json")).is_file()


def test_a_folder_above_a_labelme_set_is_not_one(tmp_path):
    """Only the folder given (a level or two down) is looked in: a folder above it holding some other
    LabelMe set deeper down is not named as the dataset in a --data error."""
    _one_folder(tmp_path / "work" / "projects" / "labelled")
    (tmp_path / "work" / "notes" / "draft").mkdir(parents=True)
    with pytest.raises(Exception, match=r"not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder \("):
        detect_format(tmp_path / "work" / "notes" / "draft")
    assert detect_format(tmp_path / "work" / "projects") == "labelme"  # given: a level or two down is looked in


def test_a_split_folder_a_json_folder_and_one_json_name_the_dataset(tmp_path, capsys):
    """A walk on train/json + train/images, val/...: data check of train/images named train/ as the
    dataset, train/ was read alone (its images split in two, val/ beside it left out without a word),
    train/json said its images were not found, and one JSON was 'not COCO format'."""
    src = tmp_path / "v1"
    for split in ("train", "val"):
        for n in ("a", "b"):
            image(src / split / "images" / f"{n}.jpg")
            labelme_json(src / split / "json" / f"{n}.json", f"..\\images\\{n}.jpg", (64, 48), [rect("x", 1, 1, 9, 9)])
    with pytest.raises(Exception) as err:
        detect_format(src / "train/images")
    assert str(err.value).endswith(f"give the dataset folder: --data {src}")
    with pytest.raises(DatasetError) as err:
        convert_labelme(src / "train")
    assert str(err.value) == (f"{src / 'train'} is the train split of the LabelMe dataset {src} (beside val/): give "
                              f"that folder, e.g. --data {src}")
    with pytest.raises(DatasetError) as err:
        convert_labelme(src / "train/json")
    assert str(err.value) == (f"the images of the LabelMe files in {src / 'train/json'} are outside it (e.g. "
                              f"{src / 'train/images/a.jpg'}): give the folder that holds both, e.g. --data "
                              f"{src / 'train'}")
    assert main(["data", "check", str(src / "train/json/a.json")]) == 2
    assert capsys.readouterr().err == (f"error: {src / 'train/json/a.json'} is a LabelMe file (one image's shapes): "
                                       f"check its dataset folder, as dfine train --data reads it: dfine data check "
                                       f"{src}\n")


def test_data_check_draws_images_with_their_converted_boxes(tmp_path, capsys):
    """A walk could not see from data check that polygons became the right boxes (only statistics were
    drawn): --plot also draws images with the boxes as converted, in each class's colour, named."""
    pytest.importorskip("matplotlib")
    from PIL import Image

    from dfine.data.check import sample_pictures
    from dfine.drawing import _PALETTE

    src = tmp_path / "set"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (200, 100), (128, 128, 128)).save(src / f"{i}.png")
        shapes = [{"label": "dog", "points": [[120, 60], [180, 60], [150, 90]], "shape_type": "polygon"}] if i else []
        labelme_json(src / f"{i}.json", f"{i}.png", (200, 100), shapes)
    out = tmp_path / "pics"
    assert main(["data", "check", str(src), "--plot", str(out / "labels.png"), "--names", "dog"]) == 0
    printed = capsys.readouterr().out
    assert f"images with their boxes: {out / 'labels_train_samples.png'}" in printed
    assert (out / "labels_train_samples.png").stat().st_size > 0 and (out / "labels_val_samples.png").is_file()
    converted = convert_labelme(src, tmp_path / "coco", val_fraction=0)
    tiles, total = sample_pictures(converted.ann_files["train"], converted.images_folder)
    assert total == 3 and [n for _, _, n in tiles] == [1, 1, 0]  # images with boxes first
    picture = np.asarray(tiles[0][1])
    assert picture.shape == (240, 480, 3)  # every tile 480 px on its long side: labels of one size
    dog = _PALETTE[0]
    # the box 120..180 x 60..90 at 2.4x: its left and right edges at x 288 and 431, y 180 its middle
    assert tuple(picture[180, 288]) == dog and tuple(picture[180, 431]) == dog
    assert tuple(picture[180, 360]) == (128, 128, 128) and tuple(picture[30, 20]) == (128, 128, 128)


def test_jsons_only_in_a_test_folder_say_how_to_train_on_them(tmp_path):
    """heabeounMKTO/labelme2yolo's 93 JSONs sit in test/: the error said 'files in test, train folders but
    none in a train folder'. Given alone, that folder converts (a share becomes val)."""
    src = tmp_path / "set"
    for n in ("a", "b", "c"):
        image(src / "test" / f"{n}.jpg")
        labelme_json(src / "test" / f"{n}.json", f"{n}.jpg", (64, 48), [rect("7", 1, 1, 20, 20)])
    with pytest.raises(DatasetError) as err:
        convert_labelme(src, tmp_path / "out")
    assert str(err.value) == (f"{src}: LabelMe files only in test/, none in a train folder: name the folder of training "
                              f"images train, or give it alone (--data {src / 'test'}: a share of it becomes val)")
    converted = convert_labelme(src / "test", tmp_path / "out")
    assert converted.names == ("7",) and converted.counts["train"].images == 2 and converted.counts["val"].images == 1


def test_eval_split_missing_from_a_converted_folder_says_what_to_add(tmp_path, capsys):
    """--split test of a LabelMe folder without one named the deleted temporary files of its conversion
    and advised Roboflow COCO files (a walk)."""
    from dfine.export.evaluate import _data_val_set

    src = tmp_path / "labelled"
    _one_folder(src)
    with pytest.raises(Exception) as err:
        _data_val_set(src, None, None, None, split="test")
    assert str(err.value) == (f"--data {src}: no test split; found train, val; add a test/ folder beside train/ in the "
                              f"same layout")


def test_a_size_the_json_gets_wrong_is_said_as_the_json_s(tmp_path):
    """The image's own size is used; the note called the LabelMe file an XML."""
    src = tmp_path / "set"
    image(src / "a.jpg", (64, 48))
    labelme_json(src / "a.json", "a.jpg", (640, 480), [rect("x", 1, 1, 20, 20)])
    converted = convert_labelme(src, tmp_path / "out", val_fraction=0)
    assert ("train: 1 JSON size differs from the image (the image's size is used): a.json says 640x480, image is "
            "64x48") in converted.notes


def test_a_split_folder_given_alone_names_the_run_after_its_dataset(tmp_path, monkeypatch):
    """heabeounMKTO/labelme2yolo's JSONs in test/, given alone as the error says: the run went into
    output/test_dfine_n, the folder every such set would share."""
    from dfine.recipes import data_run

    src = tmp_path / "mahjong" / "test"
    for n in ("a", "b", "c"):
        image(src / f"{n}.jpg")
        labelme_json(src / f"{n}.json", f"{n}.jpg", (64, 48), [rect("3", 1, 1, 20, 20)])
    monkeypatch.chdir(tmp_path)
    assert data_run(src, "dfine_n", device="cpu").output_dir == tmp_path / "output" / "mahjong_dfine_n"


def test_a_name_given_twice_in_names_is_one_line(tmp_path, capsys):
    """'--names 0.5,1,...,9,5' passed data check with two classes '5'; training then dropped one and
    reordered the classes, calling it 'a placeholder: supercategory of the others' (a walk)."""
    import dfine
    from dfine.errors import DfineError

    src = tmp_path / "set"
    _one_folder(src)
    assert main(["data", "check", str(src), "--names", "cat,dog,cat"]) == 2
    assert capsys.readouterr().err == "error: --names gives 'cat' more than once: each class once, in class-id order\n"
    with pytest.raises(DfineError, match="names= gives 'cat' more than once"):  # the Python API's own word
        dfine.train(data=src, names=["cat", "dog", "cat"])
    with pytest.raises(DfineError, match="names= gives 'cat' more than once"):
        dfine.train(data=src, names="cat, dog,cat")


def test_one_json_of_a_set_kept_in_a_lone_test_folder_names_that_folder(tmp_path):
    """--data of one JSON in DATASET/test/ (no other split) named DATASET, whose own error pointed back at test/."""
    src = tmp_path / "mahjong" / "test"
    for n in ("a", "b"):
        image(src / f"{n}.jpg")
        labelme_json(src / f"{n}.json", f"{n}.jpg", (64, 48), [rect("3", 1, 1, 20, 20)])
    with pytest.raises(Exception) as err:
        detect_format(src / "a.json")
    assert str(err.value).endswith(f"give the dataset folder: --data {src}")


def test_a_folder_of_labelme_jsons_beside_their_voc_and_coco_conversions_says_which_it_reads(tmp_path, capsys):
    """LabelMe's examples hold the JSONs (data_annotated/) beside their labelme2voc and labelme2coco outputs: a walk's
    check read one set without a word of the other. Each set is named, with the --data that reads another."""
    from dfine.recipes import data_run
    from tests.data.datasets import voc_xml
    src = tmp_path / "bbox_detection"
    for i in range(3):
        image(src / "data_annotated" / f"{i}.jpg")
        labelme_json(src / "data_annotated" / f"{i}.json", f"{i}.jpg", (64, 48), [rect("car", 1, 1, 20, 20)])
        image(src / "data_dataset_voc" / "JPEGImages" / f"{i}.jpg")
        voc_xml(src / "data_dataset_voc" / "Annotations" / f"{i}.xml", f"{i}.jpg", (64, 48),
                [("car", (1, 1, 20, 20), 0)])
    assert detect_format(src) == "voc"
    said = (f"{src} holds 2 dataset folders: data_annotated (LabelMe), data_dataset_voc (VOC). To read another, give "
            f"it: --data {src / 'data_annotated'}")  # the VOC conversion's note names the folder it read, once
    notes = data_run(src, "dfine_n", output_dir=tmp_path / "run0", device="cpu").notes
    assert sum("data_dataset_voc" in n and ("was read" in n or "is read" in n) for n in notes) == 1, notes
    assert said in data_run(src, "dfine_n", output_dir=tmp_path / "run", device="cpu").notes
    assert main(["data", "check", str(src)]) == 0
    assert said in capsys.readouterr().out.splitlines()
    # the same JSONs alone: nothing to say
    assert not [n for n in data_run(src / "data_annotated", "dfine_n", output_dir=tmp_path / "run2").notes
                if "dataset folders" in n]
