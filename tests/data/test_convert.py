"""dfine data convert: every YOLO layout and VOC, converted boxes to 1e-2 px, names, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dfine.cli import main
from dfine.data.coco import CocoDetection, DatasetError
from dfine.data.convert import images_folder_from_info
from dfine.data.convert.voc import convert_voc
from dfine.errors import DfineError
from dfine.data.convert.yolo import convert_yolo
from tests.data.datasets import boxes_by_file, image, load, ultralytics_folders, voc_xml, yolo_labels


def _close(got, want):
    np.testing.assert_allclose(got, want, atol=1e-2, rtol=0)


def _ultralytics(root, names_yaml="names: {0: cat, 1: dog}\n"):
    image(root / "images/train/a.jpg", (100, 50))
    image(root / "images/train/b.png", (80, 40))  # background: no label file
    image(root / "images/train/c.jpg", (100, 50))  # background: empty label file
    image(root / "images/val/d.jpg", (200, 100))
    yolo_labels(root / "labels/train/a.txt", ["0 0.5 0.5 0.2 0.4", "1 0.25 0.75 0.1 0.1"])
    yolo_labels(root / "labels/train/c.txt", [])
    yolo_labels(root / "labels/val/d.txt", ["1 0.1 0.2 0.3 0.4 0.2 0.5"])  # a polygon (triangle)
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\n{names_yaml}")
    return root


def test_ultralytics_layout(tmp_path):
    src = _ultralytics(tmp_path / "ds")
    result = convert_yolo(src)
    assert result.names == ("cat", "dog") and set(result.ann_files) == {"train", "val"}
    train, val = load(src / "annotations/instances_train.json"), load(src / "annotations/instances_val.json")
    assert [c["name"] for c in train["categories"]] == ["cat", "dog"]
    got = boxes_by_file(train)
    assert sorted(got) == ["train/a.jpg", "train/b.png", "train/c.jpg"]  # relative to ds/images
    assert got["train/b.png"] == [] and got["train/c.jpg"] == []  # background kept
    (n0, b0, _), (n1, b1, _) = got["train/a.jpg"]
    assert (n0, n1) == ("cat", "dog")
    _close(b0, [40, 15, 20, 20])
    _close(b1, [20, 35, 10, 5])
    (name, box, crowd), = boxes_by_file(val)["val/d.jpg"]
    assert name == "dog" and crowd == 0
    _close(box, [20, 20, 40, 30])  # polygon x 0.1..0.3, y 0.2..0.5 of 200x100
    assert result.counts["train"].background == 2 and result.counts["train"].boxes == 2
    assert result.images_folder == src.resolve() / "images"
    assert images_folder_from_info(src / "annotations/instances_train.json", train) == result.images_folder
    ds = CocoDetection(result.images_folder, src / "annotations/instances_train.json")
    assert ds.label_map.names == ("cat", "dog") and len(ds) == 3


def test_label_files_without_an_image_are_said(tmp_path):
    src = _ultralytics(tmp_path / "ds")
    (src / "images/train/e.heic").write_bytes(b"not read")  # a format we do not read
    yolo_labels(src / "labels/train/e.txt", ["0 0.5 0.5 0.2 0.2"])
    yolo_labels(src / "labels/train/classes.txt", ["cat", "dog"])  # darknet names file, not a label file
    notes = [n for n in convert_yolo(src).notes if "label files with no image" in n]
    assert len(notes) == 1 and "left out: 1 (e.g." in notes[0] and "e.txt" in notes[0]
    # darknet's lists of image paths and empty files hold no boxes: not counted (a walk's 24 held 12 such)
    (src / "labels/train/train.txt").write_text("data/obj/a.jpg\ndata/obj/b.jpg\n")
    (src / "labels/train/empty.txt").write_text("")
    notes = [n for n in convert_yolo(src).notes if "label files with no image" in n]
    assert len(notes) == 1 and "left out: 1 (e.g." in notes[0] and "e.txt" in notes[0]
    assert not [n for n in convert_yolo(_ultralytics(tmp_path / "clean")).notes if "with no image" in n]


def test_images_in_no_split_are_said(tmp_path):
    """FatihEmin48/okra-pepper-eggplant-yolo-dataset holds a second export in 'Roboflow Dataset/'
    (112 images with labels): the conversion took train/ valid/ test/ and left those out without a word."""
    src = _ultralytics(tmp_path / "ds")
    for split, n in (("train", 2), ("valid", 1)):
        for i in range(n):
            image(src / f"Roboflow Dataset/{split}/images/x{i}.jpg", (64, 32))
            yolo_labels(src / f"Roboflow Dataset/{split}/labels/x{i}.txt", ["0 0.5 0.5 0.2 0.2"])
    image(src / ".cache/thumb.jpg", (8, 8))  # hidden folders are not the user's data
    for i in range(3):  # the folders holding most first (a walk's '1 more' held 154 of 196 images)
        image(src / f"zz/{i}.jpg", (8, 8))
    notes = [n for n in convert_yolo(src).notes if "in no split" in n]
    assert notes == [f"6 images under {src} in no split, left out: zz/ (3), Roboflow Dataset/train/images/ (2), "
                     f"Roboflow Dataset/valid/images/ (1); to train on them, copy their folder out of this one and "
                     f"convert it on its own, or move them into a split"]
    assert not [n for n in convert_yolo(_ultralytics(tmp_path / "clean")).notes if "in no split" in n]
    # copies of the splits' images (a walk's Roboflow train/ kept beside the split made of it): nothing to add
    import shutil
    for p in sorted((src / "images").rglob("*.jpg")):
        (src / "original" / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, src / "original" / p.parent.name / p.name)
    copied = len(list((src / "original").rglob("*.jpg")))
    notes = [n for n in convert_yolo(src).notes if "in no split" in n]
    assert notes[0] == (f"{copied} images under {src} in no split, left out, copies of the splits' images (the same "
                        f"bytes): original/train/ ({copied - 1}), original/val/ (1); nothing to add"), notes
    assert notes[1].startswith(f"6 images under {src} in no split, left out: zz/ (3), ") and len(notes) == 2
    image(src / "runs/detect/train/results.png", (8, 8))  # an Ultralytics run's plots: not data
    notes = [n for n in convert_yolo(src).notes if "in no split" in n]
    assert notes[0] == (f"1 image under {src} in no split, left out: runs/detect/train/ (1), an Ultralytics run's "
                        f"plots and predictions, not data") and len(notes) == 3, notes


def test_images_in_no_split_are_listed_once_by_data_check(tmp_path, capsys):
    """``dfine data check`` of the okra set listed the 112 images of its nested export under every split
    (three times the same long line); the first split of the folder lists them, the others do not."""
    src = tmp_path / "okra"  # Roboflow's YOLO layout, as the okra set: {train,valid}/{images,labels}
    for split, name in (("train", "a"), ("valid", "b")):
        image(src / f"{split}/images/{name}.jpg", (64, 32))
        yolo_labels(src / f"{split}/labels/{name}.txt", ["0 0.5 0.5 0.2 0.2"])
    (src / "data.yaml").write_text("train: train/images\nval: valid/images\nnames: [okra]\n")
    for i in range(2):
        image(src / f"Roboflow Dataset/train/images/x{i}.jpg", (64, 32))
    assert main(["data", "check", str(src)]) == 0
    out = capsys.readouterr().out
    assert out.count("unreferenced") == 1, out
    train, val = out.split("\nval:\n")
    assert "unreferenced                  2" in train and "Roboflow Dataset/train/images/x0.jpg" in train


def test_a_yaml_split_not_found_says_where_the_images_are(tmp_path):
    """HMI2-Research-Group/Kitchen-YOLO-Dataset: its yaml says 'train: images' (a path on its author's
    machine) while the images sit in my_images/; the error listed the paths it looked for and left
    finding the images to the user."""
    src = tmp_path / "kitchen"
    for i in range(2):
        image(src / f"my_images/{i}.png", (64, 32))
        yolo_labels(src / f"labels/{i}.txt", ["0 0.5 0.5 0.2 0.2"])
    (src / "vision.yaml").write_text("path: /home/student/datasets/vision\ntrain: images\nval: images\n"
                                     "names: {0: Bell Pepper}\n")
    with pytest.raises(DatasetError, match=rf"'images' not found \(looked for .*\); images under {src} are in: "
                                           r"my_images/ \(2\); labels/ beside it holds .txt labels: YOLO finds an "
                                           r"image's labels at its path with images/ replaced by labels/, so renaming "
                                           r"my_images/ to images/ pairs them$"):
        convert_yolo(src)
    (src / "my_images").rename(src / "images")  # as the error says: every box found
    assert convert_yolo(src).counts["train"].boxes == 2


def test_roboflow_layout_and_cli_prints_the_training_command(tmp_path, capsys, monkeypatch):
    src = tmp_path / "rf"
    for split, n in (("train", 2), ("valid", 1), ("test", 1)):
        for i in range(n):
            image(src / f"{split}/images/{split}{i}.jpg", (64, 32))
            yolo_labels(src / f"{split}/labels/{split}{i}.txt", ["2 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 3\n"
                                   "names: ['ant', 'bee', 'wasp']\nroboflow:\n  workspace: x\n")
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    assert main(["data", "convert", "--from", "yolo", str(src), "-o", "out"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[-1] == f"train with: dfine train --data {out} --model dfine_s"  # works from anywhere
    assert "  val: 1 image, 1 box, 0 background images" in printed
    test = load(out / "annotations/instances_test.json")
    assert [im["file_name"] for im in test["images"]] == ["test/images/test0.jpg"]
    (name, box, _), = boxes_by_file(test)["test/images/test0.jpg"]
    assert name == "wasp"
    _close(box, [16, 8, 32, 16])
    assert not (src / "annotations").exists()  # the source untouched


def test_txt_lists_classes_txt_and_names_option(tmp_path):
    src = tmp_path / "lists"
    for name in ("a", "b", "c"):
        image(src / f"images/{name}.jpg", (50, 50))
        yolo_labels(src / f"labels/{name}.txt", ["1 0.5 0.5 1 1"])
    (src / "train.txt").write_text("./images/a.jpg\n./images/b.jpg\n")
    (src / "val.txt").write_text("images/c.jpg\n")
    (src / "data.yaml").write_text("train: train.txt\nval: [val.txt]\nnc: 2\n")
    (src / "classes.txt").write_text("zero\none\n")
    result = convert_yolo(src)
    assert result.names == ("zero", "one") and result.counts["train"].images == 2
    (name, box, _), = boxes_by_file(load(result.ann_files["val"]))["c.jpg"]
    assert name == "one"
    _close(box, [0, 0, 50, 50])
    assert convert_yolo(src, tmp_path / "o2", names=["x", "y"]).names == ("x", "y")


def test_a_darknet_names_file_of_any_name_names_the_classes(tmp_path):
    """A walk: a repo's ``aerial.names`` (darknet names files are named after their set) was not
    read; one ``*.names`` beside the labels is, and two are a one-line error naming both."""
    src = tmp_path / "set"
    for i in range(5):
        image(src / f"images/{i}.jpg", (40, 40))
        yolo_labels(src / f"labels/{i}.txt", ["1 0.5 0.5 0.5 0.5"])
    (src / "aerial.names").write_text("car\ntruck\n\n")
    assert convert_yolo(src, val_fraction=0.2).names == ("car", "truck")
    (src / "old.names").write_text("x\n")
    with pytest.raises(DatasetError, match=r"set holds 2 names files \(aerial.names, old.names\): keep the one of "
                                           r"this dataset, or give --names a,b,c"):
        convert_yolo(src, val_fraction=0.2)


def test_folders_without_yaml_split_val_by_seed(tmp_path):
    src = tmp_path / "flat"
    for i in range(10):
        image(src / f"images/{i}.jpg", (40, 40))
        yolo_labels(src / f"labels/{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    with pytest.raises(DatasetError, match=r"no class names for .*flat: .*give --names a,b,c"):
        convert_yolo(src)
    first = convert_yolo(src, names=["thing"], val_fraction=0.3, seed=1)
    assert first.counts["train"].images == 7 and first.counts["val"].images == 3
    assert "no val split: 3 of 10 train images became val (dfine data convert --val-fraction 0.3 --seed 1)" in first.notes
    val = [im["file_name"] for im in load(first.ann_files["val"])["images"]]
    again = convert_yolo(src, tmp_path / "again", names=["thing"], val_fraction=0.3, seed=1)
    assert [im["file_name"] for im in load(again.ann_files["val"])["images"]] == val


def test_a_rare_class_gets_an_image_on_each_side_of_the_split():
    """A walk: 'Cheese' in 2 of 211 images had both in train for seeds 0, 1 and 3, never measured. The
    split keeps a class with two images or more on both sides, a class in one image in train, the val
    size the fraction's, and one without rare classes exactly as the plain shuffle made it."""
    from dfine.data.convert import split_by_fraction

    items = [f"{i:03d}.jpg" for i in range(100)]
    train0, val0 = split_by_fraction(items, 0.2, 0)
    classes = {item: {"common"} for item in items}
    for item in train0[:3]:  # the shuffle left all three in train
        classes[item] = {"rare"}
    classes[val0[0]] = {"common", "single"}  # its only image, in val
    notes = []
    train, val = split_by_fraction(items, 0.2, 0, classes, notes)
    assert len(val) == len(val0) == 20 and sorted(train + val) == items
    assert sum("rare" in classes[i] for i in val) == 1 and sum("rare" in classes[i] for i in train) == 2
    assert [i for i in items if "single" in classes[i]][0] in train
    assert all(any("common" in classes[i] for i in side) for side in (train, val))
    assert notes == ["rare classes kept on both sides of the split: 1 image moved to val for rare, which had none "
                     "there; 1 image moved to train for single, which was only in val"]
    even = {item: {"a" if n % 2 else "b"} for n, item in enumerate(items)}
    assert split_by_fraction(items, 0.2, 0, even, notes) == (train0, val0) and len(notes) == 1


def test_a_flat_yolo_folder_keeps_its_rare_class_in_val(tmp_path):
    """The same through a YOLO folder without a val split: the note says which class moved."""
    from dfine.data.convert import split_by_fraction

    src = tmp_path / "flat"
    names = [f"{i}.jpg" for i in range(20)]
    rare = split_by_fraction([str(src / "images" / n) for n in names], 0.2, 0)[0][:2]  # both in train, plainly
    for n in names:
        image(src / f"images/{n}", (40, 40))
        cls = 1 if str(src / "images" / n) in rare else 0
        yolo_labels(src / f"labels/{Path(n).stem}.txt", [f"{cls} 0.5 0.5 0.5 0.5"])
    out = convert_yolo(src, names=["pan", "cheese"])
    val = load(out.ann_files["val"])
    assert out.counts["val"].images == 4 and sorted({a["category_id"] for a in val["annotations"]}) == [1, 2]
    assert ("rare classes kept on both sides of the split: 1 image moved to val for cheese, which had none there"
            in out.notes)


def test_no_label_files_says_where_it_looked(tmp_path):
    src = tmp_path / "ds"
    image(src / "images/train/a.jpg")
    image(src / "images/val/b.jpg")
    yolo_labels(src / "my_labels/train/a.txt", ["0 0.5 0.5 0.1 0.1"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [x]\n")
    with pytest.raises(DatasetError) as err:
        convert_yolo(src)
    assert str(err.value) == (
        f"train: none of its 1 image has a label file; looked for e.g. {src / 'labels/train/a.txt'} (the last "
        f"/images/ of the image path becomes /labels/, extension .txt); other *labels* folders here: my_labels")


def test_labels_in_a_split_named_folder_beside_the_expected_one_get_the_rename(tmp_path):
    """A Roboflow-style export with labels/train-labels for images/train (a walk): the error names the
    one command that makes it readable; after it the dataset converts."""
    import shlex
    import subprocess
    src = tmp_path / "ds"
    image(src / "data/images/train/a.jpg")
    image(src / "data/images/valid/b.jpg")
    yolo_labels(src / "data/labels/train-labels/a.txt", ["0 0.5 0.5 0.1 0.1"])
    yolo_labels(src / "data/labels/valid-labels/b.txt", ["0 0.5 0.5 0.1 0.1"])
    (src / "data.yaml").write_text("train: data/images/train\nval: data/images/valid\nnames: [x]\n")
    with pytest.raises(DatasetError) as err:
        convert_yolo(src)
    said = str(err.value)
    assert said.endswith(f"; if {Path('data/labels/train-labels')} holds this split's labels, give it the name YOLO's "
                         f"rule looks for: mv {src / 'data/labels/train-labels'} {src / 'data/labels/train'}"), said
    subprocess.run(["mv", *shlex.split(said.split(": mv ", 1)[1])], check=True)  # the command it gives
    (src / "data/labels/valid-labels").rename(src / "data/labels/valid")
    converted = convert_yolo(src, tmp_path / "out")
    assert converted.counts["train"].boxes == 1 and converted.counts["val"].boxes == 1


def test_class_id_out_of_range_names_file_and_line(tmp_path):
    src = _ultralytics(tmp_path / "ds")
    yolo_labels(src / "labels/train/a.txt", ["0 0.5 0.5 0.2 0.4", "5 0.5 0.5 0.1 0.1"])
    with pytest.raises(DatasetError) as err:
        convert_yolo(src)
    assert str(err.value) == (f"{src.resolve() / 'labels/train/a.txt'} line 2: class id 5 is outside the 2 class names of "
                              f"{src / 'data.yaml'} (0..1); fix the row or the names")
    # a file labelled with another set's ids: how many of its rows are so (a walk was shown line 1 of 21)
    yolo_labels(src / "labels/train/a.txt", ["15 0.5 0.5 0.2 0.4", "0 0.5 0.5 0.1 0.1", "15 0.2 0.2 0.1 0.1",
                                             "", "16 0.3 0.3 0.1 0.1"])
    with pytest.raises(DatasetError) as err:
        convert_yolo(src)
    assert str(err.value) == (f"{src.resolve() / 'labels/train/a.txt'} line 1: class id 15 is outside the 2 class names "
                              f"of {src / 'data.yaml'} (0..1); so are 3 of its 4 rows; fix the rows or the names")
    yolo_labels(src / "labels/train/a.txt", ["15 0.5 0.5 0.2 0.4", "16 0.3 0.3 0.1 0.1"])  # all of them: said so
    with pytest.raises(DatasetError) as err:
        convert_yolo(src)
    assert "(0..1); so are all 2 of its rows; fix the rows or the names" in str(err.value)


def test_exif_rotated_yolo_image_gets_the_shown_size(tmp_path):
    src = tmp_path / "ds"
    image(src / "images/train/p.jpg", (60, 30), orientation=6)  # shown 30 wide, 60 high
    yolo_labels(src / "labels/train/p.txt", ["0 0.5 0.5 0.5 0.5"])
    image(src / "images/val/q.jpg")
    yolo_labels(src / "labels/val/q.txt", [])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [x]\n")
    train = load(convert_yolo(src).ann_files["train"])
    assert (train["images"][0]["width"], train["images"][0]["height"]) == (30, 60)
    _close(train["annotations"][0]["bbox"], [7.5, 15, 15, 30])


# ---------------------------------------------------------------- VOC


def _voc(root, with_sets=True):
    image(root / "JPEGImages/001.jpg", (100, 80))
    image(root / "JPEGImages/002.JPG", (120, 90))
    image(root / "JPEGImages/003.png", (60, 40), orientation=6)  # shown 40 x 60
    voc_xml(root / "Annotations/001.xml", "001.jpg", (100, 80),
            [("dog", (10, 20, 50, 60), 0), ("cat", (5, 5, 30, 30), 1)])
    voc_xml(root / "Annotations/002.xml", "002.JPG", (120, 90), [("person", (100, 10, 130, 50), 0)])  # clipped
    voc_xml(root / "Annotations/003.xml", "003.jpg", (60, 40), [("cat", (1, 2, 30, 40), 0)])  # name, size wrong
    if with_sets:
        (root / "ImageSets/Main").mkdir(parents=True)
        (root / "ImageSets/Main/train.txt").write_text("001\n003\n")
        (root / "ImageSets/Main/val.txt").write_text("002\n")
    return root


def test_voc_with_image_sets(tmp_path):
    src = _voc(tmp_path / "VOC2007")
    result = convert_voc(tmp_path)  # finds the one VOC set below, and says which (a walk was not told)
    assert result.names == ("cat", "dog", "person")
    assert f"the VOC set found in VOC2007/ of {tmp_path} was read ({src} names it directly)" in result.notes
    assert not any("VOC set found" in n for n in convert_voc(src, tmp_path / "o").notes)
    train, val = load(result.ann_files["train"]), load(result.ann_files["val"])
    got = boxes_by_file(train)
    assert sorted(got) == ["001.jpg", "003.png"]
    (n0, b0, c0), (n1, b1, c1) = got["001.jpg"]
    assert (n0, c0, n1, c1) == ("dog", 0, "cat", 1)  # difficult kept as iscrowd
    _close(b0, [10, 20, 40, 40])
    _close(b1, [5, 5, 25, 25])
    assert {im["file_name"]: (im["width"], im["height"]) for im in train["images"]}["003.png"] == (40, 60)
    (name, box, _), = boxes_by_file(val)["002.JPG"]
    assert name == "person"
    _close(box, [100, 10, 20, 40])  # xmax 130 clipped to 120
    assert result.counts["train"].ignored == 1
    assert "val: 1 box clipped to the image: 002.xml 'person'" in result.notes
    assert "train: 1 XML size differs from the image (the image's size is used): 003.xml says 60x40, image is 40x60" \
        in result.notes
    assert result.images_folder == src / "JPEGImages"
    ds = CocoDetection(result.images_folder, result.ann_files["train"])
    assert ds.label_map.names == ("cat", "dog", "person")


def test_a_voc_split_list_given_for_the_dataset_names_the_dataset_folder(tmp_path, capsys):
    """A walk gave ``dfine data check VOC/ImageSets/Main/train.txt`` and was told to convert it as YOLO
    (a dead end: 'no YOLO dataset found'); like Annotations/ or one XML it names the VOC folder now."""
    from dfine.recipes import detect_format
    src = _voc(tmp_path / "VOC2007")
    for wrong in (src / "ImageSets/Main/train.txt", src / "ImageSets/Main", src / "ImageSets"):
        with pytest.raises(DfineError, match=f"give the dataset folder: --data {src}$"):
            detect_format(wrong)
        assert main(["data", "check", str(wrong)]) == 2
        assert capsys.readouterr().err.strip().endswith(f"give the dataset folder: dfine data check {src}")


def test_voc_split_files_with_paths_repeats_overlap_and_unlisted_images_are_said(tmp_path, capsys):
    """The shape of a real export (Abandon-ht/VOCdevkit_cabrage_16): every val image is also in
    train.txt, a fifth of the annotated images are in no split file, trainval.txt lists paths."""
    src = _voc(tmp_path / "voc")
    image(src / "JPEGImages/004.jpg", (50, 50))
    voc_xml(src / "Annotations/004.xml", "004.jpg", (50, 50), [("dog", (1, 1, 20, 20), 0)])
    (src / "ImageSets/Main/train.txt").write_text("JPEGImages/001.jpg\n002\n001\n")
    result = convert_voc(src, tmp_path / "out")
    assert sorted(boxes_by_file(load(result.ann_files["train"]))) == ["001.jpg", "002.JPG"]
    assert sorted(boxes_by_file(load(result.ann_files["val"]))) == ["002.JPG"]
    assert result.notes[:3] == [
        "ImageSets/Main/train.txt: 1 line is a path, not image ids (e.g. JPEGImages/001.jpg); read as their file names",
        "ImageSets/Main/train.txt: 1 repeated line, each image used once",
        "2 annotated images are in none of the split files (train.txt, val.txt) and are left out (e.g. 003)"]
    # the val image that is a train image too: said by every command that reads the converted splits
    assert main(["data", "convert", "--from", "voc", str(src), "-o", str(tmp_path / "out2")]) == 0
    assert ("warning: photos in two splits (files of the same bytes): val: 1 of train's (e.g. 002.JPG, listed in "
            "both): each is scored on what another split saw; keep each photo in one split") in capsys.readouterr().out


def test_voc_without_image_sets_is_split_by_seed(tmp_path, capsys):
    src = _voc(tmp_path / "voc", with_sets=False)
    assert main(["data", "convert", "--from", "voc", str(src), "--val-fraction", "0.34"]) == 0
    printed = capsys.readouterr().out
    assert "note: no ImageSets/Main split files: 1 of 3 images became val (dfine data convert --val-fraction 0.34 --seed 0)" in printed
    assert printed.splitlines()[-1] == f"train with: dfine train --data {src.resolve()} --model dfine_s"


def test_voc_xmls_beside_their_images(tmp_path, capsys):
    """LabelImg's default (one folder of images and XMLs) and Roboflow's "Pascal VOC" export
    ({train,valid,test}/ of images and XMLs): both were "not a COCO, YOLO or VOC dataset folder"."""
    from dfine.recipes import detect_format

    flat = tmp_path / "labelimg"
    for i in range(5):
        image(flat / f"{i}.jpg", (60, 40))
        voc_xml(flat / f"{i}.xml", f"{i}.jpg", (60, 40), [("cat" if i % 2 else "dog", (5, 5, 30, 20), 0)])
    assert detect_format(flat) == "voc"
    assert main(["data", "convert", "--from", "voc", str(flat), "-o", str(tmp_path / "o1")]) == 0
    printed = capsys.readouterr().out
    assert ("note: XMLs beside their images, no split folders: 2 of 5 images became val (dfine data convert "
            "--val-fraction 0.2 --seed 0)") in printed  # the shuffle's 1, and 1 for the class it left out of val
    assert "note: rare classes kept on both sides of the split: 1 image moved to val for cat, which had none" in printed
    train, val = (load(tmp_path / f"o1/annotations/instances_{s}.json") for s in ("train", "val"))
    assert len(train["images"]) == 3 and len(val["images"]) == 2
    assert sorted(name for f in boxes_by_file(val).values() for name, _, _ in f) == ["cat", "dog"]
    (name, box, _), = boxes_by_file(val)[val["images"][0]["file_name"]]
    _close(box, [5, 5, 25, 15])
    rf = tmp_path / "roboflow"
    for split, n in (("train", 3), ("valid", 2), ("test", 1)):
        for i in range(n):
            image(rf / split / f"{split}{i}.jpg", (50, 50))
            voc_xml(rf / split / f"{split}{i}.xml", f"{split}{i}.jpg", (50, 50), [("dog", (1, 2, 30, 40), 0)])
    (rf / "README.roboflow.txt").write_text("exported")
    assert detect_format(rf) == "voc"
    result = convert_voc(rf, tmp_path / "o2")
    assert result.images_folder == rf.resolve() and result.notes == []
    got = {s: sorted(boxes_by_file(load(f))) for s, f in result.ann_files.items()}
    assert got == {"train": ["train/train0.jpg", "train/train1.jpg", "train/train2.jpg"],
                   "val": ["valid/valid0.jpg", "valid/valid1.jpg"], "test": ["test/test0.jpg"]}
    ds = CocoDetection(result.images_folder, result.ann_files["val"])
    assert len(ds) == 2 and ds.label_map.names == ("dog",)
    # CVAT's annotations.xml is no VOC file: not taken for one
    cvat = tmp_path / "cvat"
    image(cvat / "images/a.jpg", (10, 10))
    (cvat / "annotations.xml").write_text("<annotations><version>1.1</version></annotations>")
    with pytest.raises(DatasetError, match="no VOC dataset"):
        convert_voc(cvat)


def test_voc_xml_folder_and_images_folder_of_other_names(tmp_path, capsys):
    """The shapes of datitran/raccoon_dataset and experiencor/kangaroo (LabelImg sets): a folder of
    XMLs (``annotations/``, ``annots/``) beside ``images/``. They were 'no VOC dataset: expected
    Annotations/*.xml and JPEGImages/', for ``dfine data convert`` and ``dfine train --data`` alike."""
    from dfine.recipes import detect_format

    src = tmp_path / "raccoon"
    for i in range(5):
        image(src / f"images/raccoon-{i}.jpg", (60, 40))
        voc_xml(src / f"annotations/raccoon-{i}.xml", f"raccoon-{i}.jpg", (60, 40), [("raccoon", (5, 5, 30, 20), 0)])
    assert detect_format(src) == "voc" and detect_format(tmp_path) == "voc"  # the set, or the folder above it
    assert main(["data", "convert", "--from", "voc", str(src), "-o", str(tmp_path / "out")]) == 0
    assert f"images folder: {src / 'images'}" in capsys.readouterr().out
    train, val = (load(tmp_path / f"out/annotations/instances_{s}.json") for s in ("train", "val"))
    assert len(train["images"]) == 4 and len(val["images"]) == 1 and train["categories"][0]["name"] == "raccoon"
    # experiencor/kangaroo: annots/ + images/, each XML's <folder> a folder that is not there
    roo = tmp_path / "kangaroo"
    for i in range(5):
        image(roo / f"images/{i:05d}.jpg", (60, 40))
        voc_xml(roo / f"annots/{i:05d}.xml", f"{i:05d}.jpg", (60, 40), [("kangaroo", (5, 5, 30, 20), 0)])
        text = (roo / f"annots/{i:05d}.xml").read_text()
        (roo / f"annots/{i:05d}.xml").write_text(text.replace("<annotation>", "<annotation><folder>Kangaroo</folder>"))
    assert detect_format(roo) == "voc"
    result = convert_voc(roo, tmp_path / "out_roo")
    assert result.images_folder == roo / "images" and result.names == ("kangaroo",)
    assert sum(c.images for c in result.counts.values()) == 5
    # --data given the folder of XMLs or one XML: it was taken for XMLs beside their images ('160 XMLs have
    # no image in .../annotations'), and an XML's hint named that folder; both name the dataset folder now
    for wrong, right in ((src / "annotations", src), (src / "annotations" / "raccoon-1.xml", src),
                         (roo / "annots", roo)):
        with pytest.raises(DfineError, match=f"give the dataset folder: --data {right}$"):
            detect_format(wrong)
    with pytest.raises(DatasetError, match=f"give the dataset folder: {src}$"):
        convert_voc(src / "annotations")
    # an annotations/ folder of something else (COCO JSON elsewhere, no XML) is no VOC set
    other = tmp_path / "other"
    image(other / "images/a.jpg", (10, 10))
    (other / "annotations").mkdir()
    (other / "annotations/notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no VOC dataset"):
        convert_voc(other)
    # XMLs without a folder of their images: said, with the folders looked for
    (tmp_path / "xml_only/annotations").mkdir(parents=True)
    voc_xml(tmp_path / "xml_only/annotations/a.xml", "a.jpg", (10, 10), [("cat", (1, 1, 5, 5), 0)])
    with pytest.raises(DatasetError, match=r"no images folder beside .*annotations \(looked for JPEGImages/, images/"):
        convert_voc(tmp_path / "xml_only")


def test_the_split_note_names_the_command_that_takes_its_options(tmp_path, capsys):
    """``dfine train --data VOC`` printed '40 of 200 images became val (--val-fraction 0.2, --seed 0)':
    options train does not take (its --seed is the training's); the note names dfine data convert."""
    from dfine.recipes import data_run

    src = _voc(tmp_path / "voc", with_sets=False)
    run = data_run(src, "dfine_n", output_dir=tmp_path / "out")
    assert "no ImageSets/Main split files: 1 of 3 images became val (dfine data convert --val-fraction 0.2 --seed 0)" \
        in run.notes


def test_voc_names_option_must_cover_the_xmls(tmp_path, capsys):
    src = _voc(tmp_path / "voc")
    assert main(["data", "convert", "--from", "voc", str(src), "--names", "cat,dog"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {src / 'Annotations/002.xml'}: object name 'person' is not in "
                                               f"--names (cat, dog)")


def test_roboflow_folders_without_yaml_and_side_by_side_labels(tmp_path):
    rf = tmp_path / "rf"
    for split in ("train", "valid"):
        image(rf / f"{split}/images/x.jpg", (40, 20))
        yolo_labels(rf / f"{split}/labels/x.txt", ["0 0.5 0.5 0.5 0.5"])
    result = convert_yolo(rf, names=["thing"])
    assert set(result.ann_files) == {"train", "val"} and result.counts["val"].boxes == 1
    flat = tmp_path / "flat"  # darknet / labelImg: images and .txt side by side, classes.txt
    for i in range(5):
        image(flat / f"{i}.png", (20, 20))
        yolo_labels(flat / f"{i}.txt", ["1 0.5 0.5 0.5 0.5"])
    (flat / "classes.txt").write_text("a\nb\n")
    result = convert_yolo(flat, tmp_path / "out")
    assert result.names == ("a", "b") and result.counts["train"].boxes == 4 and result.counts["val"].boxes == 1


def test_yaml_names_and_nc_must_agree(tmp_path):
    src = _ultralytics(tmp_path / "ds", names_yaml="nc: 3\nnames: [cat, dog]\n")
    with pytest.raises(DatasetError, match=r"data\.yaml: nc: 3 but names lists 2 classes; fix one"):
        convert_yolo(src)


def test_yaml_from_another_machine_and_val_equal_to_train_are_said(tmp_path):
    # a Label Studio export: data.yaml written on a Mac, val pointing at the train images
    src = tmp_path / "mk"
    image(src / "data/train/images/a.jpg", (64, 32))
    image(src / "data/train/images/b.jpg", (64, 32))
    yolo_labels(src / "data/train/labels/a.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("path: /Users/someone/Documents/mk/data\ntrain: train/images\n"
                                   "val: train/images\nnames: {0: keyboard}\n")
    result = convert_yolo(src, tmp_path / "out")
    assert result.counts["train"].images == 2 and result.counts["val"].images == 2
    assert result.notes == [
        f"data.yaml: path /Users/someone/Documents/mk/data is not on this machine; its splits were looked up in "
        f"{src} and {src / 'data'}",
        "YOLO class 0 is category id 1 in the COCO files and in predictions (Detections.labels keep 0)"]
    from dfine.data.check import copies_across  # val equal to train: said where the splits are read
    assert copies_across({s: (f, result.images_folder) for s, f in result.ann_files.items()}).startswith(
        "warning: photos in two splits (files of the same bytes): val: 2 of train's (e.g. ")


def test_absolute_windows_paths_in_data_yaml_are_found_here(tmp_path):
    src = tmp_path / "Battery"
    for split in ("train", "valid"):
        image(src / f"data/{split}/images/1.png", (40, 40))
        yolo_labels(src / f"data/{split}/labels/1.txt", ["1 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: C:\\Users\\u\\Desktop\\yolo\\Battery\\data\\train\\images\n"
                                   "val: C:\\Users\\u\\Desktop\\yolo\\Battery\\data\\valid\\images\n"
                                   "nc: 2\nnames: ['round','box']\n")
    result = convert_yolo(src, tmp_path / "out")
    assert result.counts["train"].boxes == 1 and result.counts["val"].boxes == 1
    assert result.notes[0] == (f"{src / 'data.yaml'}: train: C:\\Users\\u\\Desktop\\yolo\\Battery\\data\\train\\images "
                               f"is not on this machine; used {src / 'data/train/images'}")
    (src / "data.yaml").write_text("train: C:\\elsewhere\\nothing\\here\nval: x\nnames: [a]\n")
    with pytest.raises(DatasetError, match=r"train: 'C:\\elsewhere\\nothing\\here' not found"):
        convert_yolo(src, tmp_path / "out")


def test_data_yaml_paths_under_a_download_folder_that_is_not_there_are_found_by_their_end(tmp_path):
    """A Roboflow download notebook rewrites data.yaml to its own folder (train: Egg-Quality-Grading-2/train/images),
    which the dataset as published on GitHub does not have: a walk could not use the folder as it came. The
    longest end of such a path (two folders at least) that is in the dataset is used, and said."""
    src = tmp_path / "egg"
    for split in ("train", "valid"):
        image(src / f"{split}/images/1.png", (40, 40))
        yolo_labels(src / f"{split}/labels/1.txt", ["1 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: Egg-Quality-Grading-2/train/images\nval: Egg-Quality-Grading-2/valid/images\n"
                                   "nc: 2\nnames: ['white','brown']\n")
    result = convert_yolo(src, tmp_path / "out")
    assert result.counts["train"].boxes == 1 and result.counts["val"].boxes == 1
    assert result.notes[:2] == [
        f"{src / 'data.yaml'}: train: 'Egg-Quality-Grading-2/train/images' is not in this dataset folder; used "
        f"{src / 'train/images'}, the end of that path",
        f"{src / 'data.yaml'}: val: 'Egg-Quality-Grading-2/valid/images' is not in this dataset folder; used "
        f"{src / 'valid/images'}, the end of that path"]
    (src / "data.yaml").write_text("train: elsewhere/images\nval: valid/images\nnames: [a, b]\n")  # one folder: no guess
    with pytest.raises(DatasetError, match="train: 'elsewhere/images' not found"):
        convert_yolo(src, tmp_path / "out")


@pytest.mark.parametrize("kpt_shape", [[2, 2], [4, 3]])
def test_yolo_pose_rows_keep_their_box(tmp_path, kpt_shape):
    """An Ultralytics pose set (``kpt_shape`` in data.yaml) has rows ``class cx cy w h`` + keypoints:
    the box is the first four numbers. 4 + 2K (or 4 + 3K, K even) numbers were read as a polygon
    (points (cx, cy), (w, h), keypoints...) and gave a wrong box without a word."""
    src = tmp_path / "pose"
    image(src / "images/train/a.jpg", (200, 100))
    image(src / "images/val/b.jpg", (200, 100))
    k, d = kpt_shape
    kpts = " ".join(["0.9 0.9" + (" 2" if d == 3 else "")] * k)  # keypoints far from the box
    yolo_labels(src / "labels/train/a.txt", [f"0 0.5 0.5 0.2 0.4 {kpts}"])
    yolo_labels(src / "labels/val/b.txt", [f"0 0.25 0.5 0.1 0.2 {kpts}"])
    (src / "data.yaml").write_text(f"train: images/train\nval: images/val\nkpt_shape: {kpt_shape}\nnames: [person]\n")
    result = convert_yolo(src)
    (_, box, _), = boxes_by_file(load(src / "annotations/instances_train.json"))["train/a.jpg"]
    _close(box, [80, 30, 40, 40])
    (_, box, _), = boxes_by_file(load(src / "annotations/instances_val.json"))["val/b.jpg"]
    _close(box, [40, 40, 20, 20])
    assert any("kpt_shape" in n and "keypoints" in n for n in result.notes), result.notes


def test_yolo_pose_rows_without_kpt_shape_say_so(tmp_path):
    """A pose row (5 + 3K values, odd) in a set whose data.yaml has no kpt_shape: the error says
    what such a row is and the key to add, not only 'expected class cx cy w h or a polygon'."""
    src = tmp_path / "pose"
    image(src / "images/train/a.jpg", (200, 100))
    yolo_labels(src / "labels/train/a.txt", ["0 0.5 0.5 0.2 0.4 " + " ".join(["0.5 0.5 2"] * 17)])
    (src / "data.yaml").write_text("train: images/train\nnames: [person]\n")
    with pytest.raises(DatasetError, match=r"a.txt line 1: .*56 values.*kpt_shape: \[17, 3\]"):
        convert_yolo(src)


def test_yolo_pixel_coordinates_are_an_error(tmp_path):
    """Labels in pixels ('0 320 240 100 80' on a 640x480 image) instead of 0..1 fractions: the boxes
    landed far outside every image, the conversion said nothing, 'dfine data check' said 'OK' and
    training dropped every box as outside. Now a one-line error naming the file, line and values."""
    src = tmp_path / "pix"
    image(src / "images/train/a.jpg", (640, 480))
    image(src / "images/val/b.jpg", (640, 480))
    yolo_labels(src / "labels/train/a.txt", ["0 0.5 0.5 0.2 0.2", "0 320 240 100 80"])
    yolo_labels(src / "labels/val/b.txt", ["0 0.5 0.5 0.2 0.2"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [thing]\n")
    with pytest.raises(DatasetError, match=r"a.txt line 2: .*320 240 100 80.*normalised.*0\.\.1") as err:
        convert_yolo(src)
    assert "\n" not in str(err.value)


def test_yolo_rows_a_little_outside_still_convert(tmp_path):
    """A box drawn past the border (cx + w/2 > 1, a coordinate of 1.02) is normalised all the same: kept
    (clipped later, and counted), not an error."""
    src = tmp_path / "ok"
    image(src / "images/train/a.jpg", (100, 100))
    yolo_labels(src / "labels/train/a.txt", ["0 0.95 0.5 0.2 0.2", "0 1.02 0.5 1.02 0.6 0.98 0.7"])
    (src / "data.yaml").write_text("train: images/train\nnames: [thing]\n")
    result = convert_yolo(src, val_fraction=0)
    assert result.counts["train"].boxes == 2


def test_yolo_names_that_yaml_reads_as_booleans_are_an_error(tmp_path):
    """'names: [on, off]' (a switch's states; also yes/no, true/false): YAML 1.1 reads the bare words as
    booleans and the classes were named 'True' and 'False' in the model and its pictures. Now a one-line
    error naming the YAML and saying to quote them."""
    src = tmp_path / "switch"
    image(src / "images/train/a.jpg", (100, 100))
    yolo_labels(src / "labels/train/a.txt", ["0 0.5 0.5 0.2 0.2", "1 0.2 0.2 0.1 0.1"])
    (src / "data.yaml").write_text("train: images/train\nnames: [on, off]\n")
    with pytest.raises(DatasetError, match=r"data.yaml: names .*True.*False.*quote") as err:
        convert_yolo(src, val_fraction=0)
    assert "\n" not in str(err.value)
    (src / "data.yaml").write_text("train: images/train\nnames:\n  0: 'on'\n  1: 'off'\n")
    assert convert_yolo(src, val_fraction=0).names == ("on", "off")


def test_a_split_folder_of_a_yolo_set_names_the_dataset_folder(tmp_path):
    """--data DATASET/train (or DATASET/train/images) of a Roboflow set: the error said only 'no class names
    ... give --names a,b,c', though the data.yaml one level up has them and the val split. Now it names the
    dataset folder to give."""
    src = tmp_path / "rf"
    image(src / "train/images/a.jpg", (100, 100))
    yolo_labels(src / "train/labels/a.txt", ["0 0.5 0.5 0.2 0.2"])
    image(src / "valid/images/b.jpg", (100, 100))
    yolo_labels(src / "valid/labels/b.txt", ["0 0.5 0.5 0.2 0.2"])
    (src / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: [shoe]\n")
    for part in (src / "train", src / "train/images"):
        with pytest.raises(DatasetError, match=rf"part of the YOLO dataset {src}.*give that folder") as err:
            convert_yolo(part)
        assert "\n" not in str(err.value)
    assert convert_yolo(src / "train", tmp_path / "out", names=["shoe"]).names == ("shoe",)  # --names: as asked
    from dfine.recipes import detect_format
    with pytest.raises(DfineError, match=f"give the dataset folder: --data {src}$"):  # not {src}/train
        detect_format(src / "train/images")


def test_yolo_rows_with_a_confidence_say_so(tmp_path):
    """Pseudo-labels saved by a YOLO predict with save_conf ('0 0.5 0.5 0.2 0.2 0.87'): the error said
    only 'expected class cx cy w h or a polygon, got 6 values'; now it says what the sixth value is."""
    src = tmp_path / "pseudo"
    image(src / "images/train/a.jpg", (100, 100))
    yolo_labels(src / "labels/train/a.txt", ["0 0.5 0.5 0.2 0.2 0.87"])
    (src / "data.yaml").write_text("train: images/train\nnames: [thing]\n")
    with pytest.raises(DatasetError, match=r"a.txt line 1: .*6 values; .*confidence.*drop the last column"):
        convert_yolo(src, val_fraction=0)


def test_written_json_files_get_the_usual_permissions(tmp_path):
    """The converted annotation files (and eval.json, written the same way) were 0600, readable by their
    owner only (the temporary file's mode, kept by the rename), while the checkpoints beside them are 0644:
    a colleague on a shared machine could not train from the conversion or read the metrics. They now get
    what any new file gets under the umask."""
    import os
    import stat

    from dfine.data.convert import write_json_atomic

    old = os.umask(0o022)
    try:
        result = convert_yolo(_ultralytics(tmp_path / "ds"), tmp_path / "out")
        write_json_atomic(tmp_path / "eval.json", {"AP": 0.5})
        os.umask(0o007)
        write_json_atomic(tmp_path / "group.json", {"AP": 0.5})
    finally:
        os.umask(old)
    for path, mode in [*((p, 0o644) for p in result.ann_files.values()), (tmp_path / "eval.json", 0o644),
                       (tmp_path / "group.json", 0o660)]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_names_option_against_the_names_a_data_yaml_declares(tmp_path):
    """A walk on a Roboflow export: ``--names`` replaced the data.yaml's names without a word, and
    three names for a two-class data.yaml trained a class no label can reach. Another count is now an
    error naming both; other names for as many classes are said in a note; the same names say nothing."""
    src = _ultralytics(tmp_path / "set", "names: [cone, cube]\nnc: 2\n")
    same = convert_yolo(src, tmp_path / "same", names=["cone", "cube"])
    assert same.names == ("cone", "cube") and not any("--names" in n for n in same.notes)
    assert ("YOLO classes 0..1 are category ids 1..2 in the COCO files and in predictions (Detections.labels keep "
            "0..1)") in same.notes  # a walk: predictions.json gave cone 1 and cube 2 for YOLO classes 0 and 1
    renamed = convert_yolo(src, tmp_path / "renamed", names=["Kegel", "Würfel"])
    assert renamed.names == ("Kegel", "Würfel")
    assert (f"--names replaces 2 names of {src / 'data.yaml'} (class id: its name -> yours): 0: cone -> Kegel, "
            f"1: cube -> Würfel" in renamed.notes)
    # a walk misspelt one of 16 names: the note printed both lists in full; it names the one that differs
    typo = convert_yolo(src, tmp_path / "typo", names=["cone", "cub"])
    assert f"--names replaces 1 name of {src / 'data.yaml'} (class id: its name -> yours): 1: cube -> cub" in typo.notes
    with pytest.raises(DatasetError) as err:
        convert_yolo(src, tmp_path / "three", names=["cone", "cube", "sphere"])
    assert str(err.value) == (f"--names gives 3 classes but {src / 'data.yaml'} names 2 (cone, cube); leave --names "
                              f"out to use those, or give 2 names")
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnc: 2\n")
    with pytest.raises(DatasetError, match=r"--names gives 1 class but .*data.yaml says nc: 2; give 2 names"):
        convert_yolo(src, tmp_path / "one", names=["cone"])
    assert convert_yolo(src, tmp_path / "nc", names=["a", "b"]).names == ("a", "b")


def test_a_truncated_image_is_left_out_of_a_conversion_as_an_unreadable_one_is(tmp_path, capsys):
    """A VOC set with one JPEG cut short (a walk: training refused the whole set and asked for three commands
    and a 200-character -u, while a garbage .jpg beside it was left out with a note). A conversion now leaves
    a cut-short JPEG or PNG out the same way, so the converted split passes the check and trains."""
    voc = tmp_path / "voc"
    for i in range(3):
        image(voc / f"JPEGImages/{i}.jpg", (96, 64))
        voc_xml(voc / f"Annotations/{i}.xml", f"{i}.jpg", (96, 64), [("boat", (10, 10, 60, 50), 0)])
    cut = voc / "JPEGImages/1.jpg"
    cut.write_bytes(cut.read_bytes()[:-40])  # its header is whole: only its end is missing
    result = convert_voc(voc, tmp_path / "out", val_fraction=0.0)
    assert result.counts["train"].images == 2
    assert ("train: 1 unreadable image left out: 1.jpg (truncated: the JPEG file ends before its image data does)"
            in result.notes)
    assert main(["data", "check", str(result.ann_files["train"])]) == 0
    assert "result: OK" in capsys.readouterr().out
    yolo = tmp_path / "yolo"
    for split in ("train", "val"):
        image(yolo / f"images/{split}/a.png", (64, 48), mode="RGB")
        yolo_labels(yolo / f"labels/{split}/a.txt", ["0 0.5 0.5 0.5 0.5"])
        image(yolo / f"images/{split}/b.jpg", (64, 48))
        yolo_labels(yolo / f"labels/{split}/b.txt", ["0 0.5 0.5 0.5 0.5"])
    (yolo / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [boat]\n")
    png = yolo / "images/val/a.png"
    png.write_bytes(png.read_bytes()[:-12])  # the IEND chunk gone
    converted = convert_yolo(yolo, tmp_path / "yolo_out")
    assert converted.counts["val"].images == 1 and converted.counts["train"].images == 2
    assert any(n.startswith("val: 1 unreadable image left out: a.png (truncated: the PNG file ends") for n in converted.notes)


def test_a_voc_box_with_its_corners_swapped_is_named_as_such(tmp_path):
    """xmin 600 > xmax 500 was listed under 'empty after clipping' (a walk): it is no clipping matter."""
    voc = tmp_path / "voc"
    image(voc / "JPEGImages/a.jpg", (800, 600))
    voc_xml(voc / "Annotations/a.xml", "a.jpg", (800, 600), [("boat", (10, 10, 60, 50), 0),
                                                             ("boat", (600, 500, 500, 400), 0)])
    result = convert_voc(voc, tmp_path / "out", val_fraction=0.0)
    assert result.counts["train"].boxes == 1
    assert ("train: 1 box with xmin > xmax or ymin > ymax as written, left out: a.xml 'boat' "
            "(600.0, 500.0, 500.0, 400.0)") in result.notes
    assert not any("empty after clipping" in n for n in result.notes)


def test_voc_faults_are_all_said_in_one_run_and_left_out(tmp_path):
    """A VOC set with a 0-byte XML, an XML whose object has no box and an XML whose image is missing (each
    listed in ImageSets/Main/train.txt): the conversion stopped at the first, one run per fault, and the
    missing image's error named neither the file it looked for nor what to do. Each is now left out and
    all are named in one run, the missing one with the image it looked for."""
    voc = tmp_path / "voc"
    stems = ["a", "b", "c", "empty", "nobox", "ghost"]
    for s in stems[:3]:
        image(voc / f"JPEGImages/{s}.jpg", (96, 64))
        voc_xml(voc / f"Annotations/{s}.xml", f"{s}.jpg", (96, 64), [("boat", (10, 10, 60, 50), 0)])
    (voc / "Annotations/empty.xml").write_bytes(b"")
    image(voc / "JPEGImages/nobox.jpg", (96, 64))
    (voc / "Annotations/nobox.xml").write_text("<annotation><filename>nobox.jpg</filename><object><name>boat</name>"
                                               "</object></annotation>")
    voc_xml(voc / "Annotations/ghost.xml", "ghost-001.jpg", (96, 64), [("boat", (10, 10, 60, 50), 0)])
    (voc / "ImageSets/Main").mkdir(parents=True)
    (voc / "ImageSets/Main/train.txt").write_text("a\nb\nempty\nnobox\nghost\n")
    (voc / "ImageSets/Main/val.txt").write_text("c\n")
    result = convert_voc(voc, tmp_path / "out")
    assert result.counts["train"].images == 2 and result.counts["val"].images == 1
    unread = next(n for n in result.notes if "cannot be read" in n)
    assert unread.startswith("2 XMLs cannot be read, left out with their images: empty.xml (not a readable VOC XML")
    assert "nobox.xml (an <object> without <name> or <bndbox>)" in unread
    assert (f"train: 1 XML without its image in {voc / 'JPEGImages'}, left out: ghost.xml (looked for ghost-001.jpg)"
            in result.notes)
    for s in stems[:3] + ["ghost"]:
        (voc / f"Annotations/{s}.xml").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"a.xml: not a readable VOC XML .* \(and 5 other XMLs\)"):
        convert_voc(voc, tmp_path / "none")  # nothing readable at all: an error, the first named


def _darknet(root, n=5, valid="data/test.txt"):
    """AlexeyAB darknet's layout: data/obj.data naming data/train.txt, data/test.txt and data/obj.names,
    whose lines are paths relative to the folder darknet runs from (root); images + .txt in data/obj/."""
    names = []
    for i in range(n):
        image(root / f"data/obj/{i}.jpg", (80, 60))
        yolo_labels(root / f"data/obj/{i}.txt", [f"{i % 2} 0.5 0.5 0.5 0.5"])
        names.append(f"data/obj/{i}.jpg")
    (root / "data/train.txt").write_text("\n".join(names[:-2]) + "\n")
    (root / "data/test.txt").write_text("\n".join(names[-2:]) + "\n")
    (root / "data/obj.names").write_text("qr\nbarcode\n")
    (root / "data/obj.data").write_text(f"classes = 2\ntrain  = data/train.txt\nvalid  = {valid}\n"
                                        f"names = data/obj.names\nbackup = backup/\n")
    return root


def test_darknet_obj_data_gives_the_splits_and_names(tmp_path):
    """A walk: darknet's obj.data + obj.names + train.txt/test.txt (what its tutorials make) was not
    recognised by --data, data check or data convert; the obj/ folder alone said 'no obj.names' with
    obj.names one folder up."""
    from dfine.recipes import data_run, detect_format
    root = _darknet(tmp_path / "darknet")
    for given in (root, root / "data", root / "data/obj.data"):
        assert detect_format(given) == "yolo"
    done = convert_yolo(root, tmp_path / "out")
    assert done.names == ("qr", "barcode")
    assert (done.counts["train"].images, done.counts["val"].images) == (3, 2)
    val = load(done.ann_files["val"])
    assert sorted(im["file_name"] for im in val["images"]) == ["3.jpg", "4.jpg"]
    assert [a["category_id"] for a in sorted(val["annotations"], key=lambda a: a["image_id"])] == [2, 1]
    with pytest.raises(DfineError) as err:
        data_run(root / "data/obj", "dfine_n", output_dir=tmp_path / "o")
    assert str(err.value) == (f"{root / 'data/obj'} is a part of the YOLO dataset {root / 'data'}: give that folder "
                              f"(its obj.data names the splits and the classes)")
    same = _darknet(tmp_path / "same", valid="data/train.txt")
    assert any("valid is the train list (data/train.txt)" in n for n in convert_yolo(same, tmp_path / "o2").notes)
    (root / "data/obj.data").write_text("classes = 3\ntrain = data/train.txt\nnames = data/obj.names\n")
    with pytest.raises(DatasetError, match=r"obj.data: classes = 3 but names lists 2 classes; fix one"):  # no 'nc'
        convert_yolo(root, tmp_path / "out3")
    (root / "data/obj.data").write_text("classes = two\ntrain = data/train.txt\nnames = data/obj.names\n")
    with pytest.raises(DatasetError, match=r"obj.data: classes = 'two' is not a whole number"):
        convert_yolo(root, tmp_path / "o3")


def test_every_bad_yolo_label_file_is_named_in_one_run(tmp_path, capsys):
    """A walk: a class id beyond the names, a row with 6 numbers and a row in pixels took three runs of
    dfine data check to find, one per run. One run now names the first error in full and where the others
    are, in every split, before anything is written."""
    src = ultralytics_folders(tmp_path / "qr bad", {"train": 4, "val": 2}, (64, 48), "0 0.5 0.5 0.5 0.5")
    (src / "classes.txt").write_text("qr\n")
    yolo_labels(src / "labels/train/1.txt", ["0 0.5 0.5 0.5 0.5", "1 0.5 0.5 0.2 0.2"])
    yolo_labels(src / "labels/train/2.txt", ["0 0.5 0.5 0.5 0.5 0.9"])
    yolo_labels(src / "labels/val/1.txt", ["0 0.5 0.5 0.5 0.5", "0 0.5 0.5 0.5 0.5", "0 32 24 20 10"])
    with pytest.raises(DatasetError) as err:
        convert_yolo(src, tmp_path / "out")
    said = str(err.value)
    assert said.startswith(f"{src / 'labels/train/1.txt'} line 2: class id 1 is outside the 1 class names")
    # and what is wrong in each (a walk read only 'line 4' for the second file, and ran again to learn why)
    assert said.endswith("; and 2 more label files with an error (the first of each): labels/train/2.txt line 1 "
                         "(expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', got 6 values), "
                         "labels/val/1.txt line 3 (coordinates 32 24 20 10 are not normalised)"), said
    assert not (tmp_path / "out").exists()
    assert main(["data", "check", str(src)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_voc_names_spelt_alike_are_said_with_an_xml_holding_each(tmp_path):
    """A walk's raccoon set with one object named 'Raccoon' beside 118 'raccoon': a second class, said by
    LabelMe, CSV and CreateML conversions and not by VOC's."""
    src = tmp_path / "voc"
    for i, name in enumerate(["raccoon"] * 6 + ["Raccoon"]):
        image(src / "JPEGImages" / f"r{i}.jpg", (64, 48))
        voc_xml(src / "Annotations" / f"r{i}.xml", f"r{i}.jpg", (64, 48), [(name, (1, 1, 20, 20), 0)])
    converted = convert_voc(src, tmp_path / "out")
    assert converted.names == ("Raccoon", "raccoon")
    assert ("labels spelt alike are separate classes (a typo while labelling?): 'Raccoon' (1 box, e.g. r6.xml) and "
            "'raccoon' (6 boxes, e.g. r0.xml); to merge them, rename one in the XMLs (--names naming both keeps them apart, without this note)") in " ".join(converted.notes)
    assert not any("spelt alike" in n for n in convert_voc(src, tmp_path / "out2", names=["raccoon", "Raccoon"]).notes)


def test_yolo_boxes_outside_the_image_are_clipped_or_left_out_by_file_and_line(tmp_path, capsys):
    """A walk's YOLO rows with negative, past-1 and zero-width coordinates were reported by data check only
    as annotation ids of a temporary COCO file (removed after it): nothing to find them by. Now the
    conversion clips them (VOC's way) and names file and line."""
    src = _ultralytics(tmp_path / "ds")
    yolo_labels(src / "labels/train/a.txt", ["0 0.5 0.5 0.2 0.4", "0 0.05 0.5 0.2 0.2", "1 0.5 0.95 0.2 0.2",
                                             "0 0.5 0.5 0 0.3", "1 1.5 0.5 0.2 0.2", "0 0.5 0.5 -0.2 0.2"])
    converted = convert_yolo(src, tmp_path / "out")
    notes = " ".join(converted.notes)
    assert "train: 2 boxes clipped to the image: a.txt line 2; a.txt line 3" in notes
    assert "train: 3 boxes of zero or negative size, or outside the image, left out: a.txt line 4; a.txt line 5; " \
           "a.txt line 6" in notes
    train = load(converted.ann_files["train"])
    assert [a["bbox"] for a in train["annotations"]] == [[40.0, 15.0, 20.0, 20.0], [0.0, 20.0, 15.0, 10.0],
                                                         [40.0, 42.5, 20.0, 7.5]]
    assert main(["data", "check", str(src)]) == 0
    out = capsys.readouterr().out
    assert "a.txt line 2" in out and "box_clipped" not in out and "box_invalid" not in out


def test_yolo_rounding_past_the_edge_is_clipped_without_a_note(tmp_path):
    """A walk's YOLO export (6 decimals) had right edges at 1.0000005: 78 'boxes clipped to the image'
    that were rounding, not boxes outside it. Under half a pixel is clipped unsaid; half a pixel is said."""
    src = _ultralytics(tmp_path / "ds")  # a.jpg: 100x50
    yolo_labels(src / "labels/train/a.txt", ["0 0.979688 0.5 0.040625 0.2", "0 0.5 0.5 0.2 0.2",
                                             "0 0.5 0.005 0.2 0.0200001", "0 0.9921875 0.5 0.03125 0.2"])
    converted = convert_yolo(src, tmp_path / "out")
    notes = " ".join(converted.notes)
    assert "train: 1 box clipped to the image: a.txt line 4" in notes  # 0.78 px past the right edge; line 3: 0.25 px
    boxes = [a["bbox"] for a in load(converted.ann_files["train"])["annotations"]]
    assert len(boxes) == 4 and max(x + w for x, _, w, _ in boxes) == 100.0 and min(y for _, y, _, _ in boxes) == 0.0


def test_a_yaml_path_outside_its_folder_is_said(tmp_path):
    """A walk's data.yaml with 'path: /elsewhere' read another dataset's images without a word but a
    note sending them to move this folder's images into a split."""
    other = _ultralytics(tmp_path / "other")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.yaml").write_text(f"path: {other}\ntrain: images/train\nval: images/val\nnames: {{0: cat, 1: dog}}\n")
    converted = convert_yolo(mine, tmp_path / "out")
    assert (f"data.yaml: path: {other} is outside the folder holding data.yaml: its splits are read from "
            f"{other.resolve()} (remove the path: line to read them beside data.yaml)") in converted.notes
    inside = _ultralytics(tmp_path / "ds")
    (inside / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n")
    assert not any("outside the folder" in n for n in convert_yolo(inside, tmp_path / "out2").notes)


def test_convert_stopped_half_way_names_what_it_wrote(tmp_path, capsys, monkeypatch):
    """A walk's Ctrl-C during dfine data convert left instances_train.json without instances_val.json
    and printed only 'interrupted'."""
    import dfine.data.convert as convert_module
    src = _ultralytics(tmp_path / "ds")
    real = convert_module.write_coco_json
    calls = []

    def stop_at_the_second(path, *args):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, *args)

    monkeypatch.setattr("dfine.data.convert.yolo.write_coco_json", stop_at_the_second)
    assert main(["data", "convert", "--from", "yolo", str(src), "-o", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert calls[0].parent == tmp_path / "out" / "annotations"
    assert f"interrupted after writing {calls[0]}: the conversion is incomplete; run the command again" in err, err


def test_a_val_fraction_given_for_a_set_with_its_own_val_split_is_said_unused(tmp_path, capsys):
    """A walk gave --val-fraction 0.2 for a VOC set with ImageSets/Main splits: its own val split was kept
    (right) without a word that the option did nothing (the README's own VOC2007 example does this)."""
    src = _voc(tmp_path / "VOC2007")
    assert main(["data", "convert", "--from", "voc", str(src), "-o", str(tmp_path / "a"), "--val-fraction", "0.3"]) == 0
    assert (f"note: --val-fraction 0.3 not used: {src} has its own val split, which was kept"
            in capsys.readouterr().err)
    bare = _voc(tmp_path / "bare", with_sets=False)  # no split files: the fraction is used, as its note says
    assert main(["data", "convert", "--from", "voc", str(bare), "-o", str(tmp_path / "b"), "--val-fraction", "0.34",
                 "--seed", "1"]) == 0
    text = capsys.readouterr()
    assert "not used" not in text.err and "--val-fraction 0.34 --seed 1" in text.out
    assert main(["data", "convert", "--from", "voc", str(src), "-o", str(tmp_path / "c")]) == 0
    assert "not used" not in capsys.readouterr().err  # nothing given, nothing said


def test_a_data_yaml_val_or_test_split_that_is_not_there_becomes_a_note(tmp_path):
    """A Roboflow download of its train split alone (a walk's books set): the data.yaml names train, valid and
    test, and only train/ is there. Val was an error ('not found'); now a seeded share of train, said, as for a
    set that names no val. One of several val folders missing stays an error."""
    src = tmp_path / "books"
    for i in range(5):
        image(src / f"train/images/{i}.png", (40, 40))
        yolo_labels(src / f"train/labels/{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnames: [a]\n")
    result = convert_yolo(src, tmp_path / "out")
    assert set(result.ann_files) == {"train", "val"}
    assert result.counts["train"].images + result.counts["val"].images == 5 and result.counts["val"].images >= 1
    assert result.notes[:3] == [
        "data.yaml names a val split (../valid/images) that is not there; a seeded share of train becomes val instead",
        "data.yaml names a test split (../test/images) that is not there; no test file written",
        f"no val split: {result.counts['val'].images} of 5 train images became val (dfine data convert --val-fraction "
        f"0.2 --seed 0)"]
    from dfine.recipes import missing_split  # --split test of it: the entry is there, its folder is not (a walk)
    assert missing_split(src, "test", {"train": (src, src), "val": (src, src)}, "yolo") == (
        f"--data {src}: no test split; found train, val; its data.yaml's test: (../test/images) names a folder that "
        f"is not there: add the images there, or point it at them")
    assert missing_split(src, "val", {"train": (src, src)}, "yolo").endswith("its data.yaml's val: (../valid/images) "
                                                                           "names a folder that is not there: add "
                                                                           "the images there, or point it at them")
    (src / "data.yaml").write_text("train: ../train/images\nval: [../train/images, ../valid/images]\nnames: [a]\n")
    with pytest.raises(DatasetError, match="val: '../valid/images' not found"):
        convert_yolo(src, tmp_path / "out2")


def test_a_data_yaml_split_missing_beside_its_folder_of_another_name_is_an_error(tmp_path, capsys):
    """A walk's data.yaml said 'val: val/images' beside Roboflow's valid/images (143 labelled images): the val
    split was said missing and a seeded share of train became val, the labelled one passed over, and the check
    said OK. A val or test entry not there while a folder of that split under another name holds images is
    now an error naming that folder and the entry to write."""
    src = tmp_path / "okra"
    for split, n in (("train", 4), ("valid", 2), ("test", 1)):
        for i in range(n):
            image(src / f"{split}/images/{i}.jpg", (40, 40))
            yolo_labels(src / f"{split}/labels/{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: train/images\nval: val/images\ntest: test/images\nnames: [a]\n")
    with pytest.raises(DatasetError) as raised:
        convert_yolo(src, tmp_path / "out")
    assert str(raised.value) == (f"{src / 'data.yaml'}: val: val/images is not there, but {src / 'valid/images'} "
                                 f"holds 2 images: point val: at it (val: valid/images), or remove the val entry "
                                 f"for a seeded share of train")
    assert main(["data", "check", str(src)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {raised.value}"
    (src / "data.yaml").write_text("train: train/images\nval: valid/images\ntest: tests/images\nnames: [a]\n")
    with pytest.raises(DatasetError, match=r"test: tests/images is not there, but .*test/images holds 1 image: point "
                                           r"test: at it \(test: test/images\), or remove the test entry$"):
        convert_yolo(src, tmp_path / "out2")
    (src / "data.yaml").write_text("train: train/images\nval: valid/images\nnames: [a]\n")
    assert convert_yolo(src, tmp_path / "out3").counts["val"].images == 2  # as named: no test entry, no test split


@pytest.mark.parametrize("command", [["data", "convert", "--from", "voc"], ["data", "tile"]])
def test_an_output_folder_that_is_a_file_is_one_line_before_any_work(tmp_path, capsys, command):
    """A walk's `dfine data convert --from voc BCCD -o existing.txt` ended in a NotADirectoryError traceback from
    the writing (`dfine train -o existing.txt` gave one line)."""
    src = _voc(tmp_path / "VOC2007")
    (tmp_path / "existing.txt").write_text("keep\n")
    for out in (tmp_path / "existing.txt", tmp_path / "existing.txt" / "sub"):
        assert main([*command, str(src), "-o", str(out)]) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: output folder {out} cannot be created ({tmp_path / 'existing.txt'} is a file); choose another "
            f"with -o")
    assert (tmp_path / "existing.txt").read_text() == "keep\n" and not (src / "annotations").exists()


def test_an_evaluation_of_one_split_says_only_that_splits_conversion_notes(tmp_path):
    """`dfine eval --data BCCD --split test` printed the train and val splits' boxes left out (a walk)."""
    from dfine.recipes import dataset_splits
    src = _voc(tmp_path / "VOC2007")
    _, every = dataset_splits(src, "voc", tmp_path / "a")
    assert any(n.startswith("val: 1 box clipped") for n in every) and any(n.startswith("train: ") for n in every)
    _, train = dataset_splits(src, "voc", tmp_path / "b", temporary="evaluation", split="train")
    assert not any(n.startswith("val: ") for n in train) and any(n.startswith("train: ") for n in train)
    assert train[1:] == [n for n in every[1:] if not n.startswith(("val: ", "test: "))]  # the rest as they were


def test_a_conversion_never_replaces_split_files_dfine_did_not_write(tmp_path, capsys):
    """A walk's `dfine train --data YOLO -r ~/Downloads/dfine_n_coco.pth` converted into the checkpoint's folder
    and replaced the annotations/instances_train.json the user kept there. A split file that no conversion wrote
    stops any conversion into its folder before anything is written; one that a conversion wrote is replaced."""
    src = _voc(tmp_path / "VOC2007")
    out = tmp_path / "mine"
    (out / "annotations").mkdir(parents=True)
    own = '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "hand-made"}]}'
    (out / "annotations/instances_val.json").write_text(own)
    assert main(["data", "convert", "--from", "voc", str(src), "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out / 'annotations/instances_val.json'} is there and was not written by dfine (annotations of "
        f"your own?); a conversion into {out} would replace it: give another output folder (-o), or move the file "
        f"away")
    assert sorted(p.name for p in (out / "annotations").iterdir()) == ["instances_val.json"]
    assert (out / "annotations/instances_val.json").read_text() == own
    (out / "annotations/instances_val.json").unlink()
    for _ in range(2):  # its own files: converted again over them
        assert main(["data", "convert", "--from", "voc", str(src), "-o", str(out)]) == 0
    assert load(out / "annotations/instances_val.json")["info"]["description"].startswith("converted by dfine from")


def test_a_source_edited_after_its_conversion_is_said_by_check_and_training(tmp_path, capsys):
    """A re-walk converted its VOC folder in place (dfine data convert), then removed a box from an XML: data
    check and training read the converted COCO file, the old box in it, without a word. They say so now, with
    the command that brings the change in; after it, nothing is said."""
    import os
    from dfine.recipes import data_run
    src = _voc(tmp_path / "VOC2007")
    assert main(["data", "convert", "--from", "voc", str(src)]) == 0
    xml = src / "Annotations/002.xml"
    later = (src / "annotations/instances_train.json").stat().st_mtime + 5
    os.utime(xml, (later, later))
    capsys.readouterr()
    main(["data", "check", str(src)])
    note = (f"instances_train.json was converted from the VOC files of {src}, and 1 of them has changed since "
            f"(Annotations/002.xml): this reads the converted file as it is; dfine data convert --from voc {src} "
            f"brings the changes in")
    assert note in capsys.readouterr().out
    assert note in data_run(src, "dfine_n", output_dir=tmp_path / "run").notes
    assert main(["data", "convert", "--from", "voc", str(src)]) == 0
    later += 10
    for f in (src / "annotations").iterdir():
        os.utime(f, (later, later))
    assert not any("changed since" in n for n in data_run(src, "dfine_n", output_dir=tmp_path / "run2").notes)


def test_convert_from_the_wrong_format_names_the_right_one(tmp_path, capsys):
    """``--from yolo`` on a VOC folder (a walk on kangaroo) said only to give --names; the error now names the
    format ``--data`` reads the folder as, with the command; a folder of no format keeps its own error."""
    src = tmp_path / "roo"
    for i in range(3):
        image(src / f"images/{i}.jpg", (60, 40))
        voc_xml(src / f"annots/{i}.xml", f"{i}.jpg", (60, 40), [("kangaroo", (5, 5, 30, 20), 0)])
    out = tmp_path / "out"
    assert main(["data", "convert", "--from", "yolo", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    # the folder's format first (a walk read 'give --names a,b,c' first of a CVAT export), the YOLO error after
    assert err.startswith(f"error: {src} is a VOC dataset, not YOLO: dfine data convert --from voc {src} -o {out} "
                          f"(as YOLO: no class names for {src}: ") and "\n" not in err
    assert main(["data", "convert", "--from", "createml", str(src)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {src} is a VOC dataset, not CreateML: dfine data "
                                                      f"convert --from voc {src} (as CreateML: ")
    assert not out.exists()
    # COCO split files (Roboflow's COCO export): read as they are; --from coco (one file of all images) refused them
    coco = tmp_path / "rf"
    for split in ("train", "valid"):
        image(coco / split / "a.jpg", (60, 40))
        (coco / split / "_annotations.coco.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 40}], "categories": [
                {"id": 1, "name": "roo"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                                            "bbox": [5, 5, 20, 10], "area": 200, "iscrowd": 0}]}))
    assert main(["data", "convert", "--from", "createml", str(coco)]) == 2
    assert capsys.readouterr().err.strip().startswith(
        f"error: {coco} is a COCO dataset, not CreateML, whose split files are read as they are: dfine data check "
        f"{coco}, dfine train --data {coco} (as CreateML: ")
    (tmp_path / "empty").mkdir()
    assert main(["data", "convert", "--from", "voc", str(tmp_path / "empty")]) == 2
    assert "dfine data convert --from" not in capsys.readouterr().err


def test_a_seeded_split_keeps_copies_of_one_photo_on_one_side(tmp_path):
    """Pre-labels of a folder holding every photo twice (img5.jpg and IMG_5_jpg.rf.X.jpg, the same bytes): a
    walk's seeded split put 12 of 16 val photos beside their copies in train. Copies go to one side."""
    from dfine.data.convert import split_by_fraction
    items, files = [], {}
    for i in range(20):
        for name in (f"img{i}.jpg", f"IMG_{i}_jpg.rf.{i:04x}.jpg"):
            (tmp_path / name).write_bytes(f"photo {i}".encode() * 10)
            items.append(name)
            files[name] = tmp_path / name
    plain = split_by_fraction(items, 0.2, 0)
    assert any(f"img{i}.jpg" in plain[1] and f"IMG_{i}_jpg.rf.{i:04x}.jpg" in plain[0] for i in range(20))
    notes = []
    train, val = split_by_fraction(items, 0.2, 0, notes=notes, files=files)
    assert sorted(train + val) == sorted(items) and len(val) == 8
    for i in range(20):
        assert (f"img{i}.jpg" in val) == (f"IMG_{i}_jpg.rf.{i:04x}.jpg" in val)
    assert notes == ["the 40 images are copies (Roboflow's versions, or the same bytes under other names) of 20 "
                     "photos, each photo's copies kept on one side: val holds 4 photos (8 images)"]


def test_a_data_yaml_whose_splits_are_not_there_gives_its_names_not_a_dead_end(tmp_path, capsys):
    """A Roboflow data.yaml (train: ../train/images) kept beside an archive that unzips into images/ + labels/
    (a walk): 'archive is a part of the YOLO dataset pen: give that folder', whose yaml then finds no split."""
    root = tmp_path / "pen"
    for i in range(3):
        image(root / f"archive/images/{i}.jpg")
        yolo_labels(root / f"archive/labels/{i}.txt", ["0 0.5 0.5 0.4 0.4"])
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['PEN']\n")
    assert main(["data", "convert", "--from", "yolo", str(root / "archive"), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: no class names for {root / 'archive'}: {root / 'data.yaml'} names PEN but its splits are not "
        f"there; give --names PEN if they are these")
    assert main(["data", "convert", "--from", "yolo", str(root / "archive"), "-o", str(tmp_path / "out"),
                 "--names", "PEN"]) == 0
    # a data.yaml whose splits are there still sends a part of its dataset to it
    (root / "train").mkdir()
    (root / "archive").rename(root / "train/set")
    (root / "data.yaml").write_text("train: train/set/images\nval: train/set/images\nnames: ['PEN']\n")
    assert main(["data", "convert", "--from", "yolo", str(root / "train/set"), "-o", str(tmp_path / "o2")]) == 2
    assert "is a part of the YOLO dataset" in capsys.readouterr().err


def test_a_voc_names_list_with_a_name_in_no_xml_says_it_is_its_own(tmp_path):
    """``--names Bottle,bg,void`` on a set whose XMLs name Bottle and bg (a walk): void became a class and the
    training start said it was 'named by the dataset only'; the conversion now says --names gave it."""
    src = _voc(tmp_path / "voc")
    found = sorted({c["name"] for c in load(convert_voc(src, tmp_path / "a").ann_files["train"])["categories"]})
    result = convert_voc(src, tmp_path / "b", names=[*found, "void"])
    assert [c["name"] for c in load(result.ann_files["train"])["categories"]] == [*found, "void"]
    assert ("--names void: in no XML; kept as 1 class without a box, never learned nor measured until images of it "
            "are labelled") in result.notes
    assert not any(n.startswith("--names") for n in convert_voc(src, tmp_path / "c", names=found).notes)
