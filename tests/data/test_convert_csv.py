"""dfine data convert --from csv: filename,width,height,class,xmin,ymin,xmax,ymax tables as Roboflow's
"Tensorflow Object Detection CSV" export and the TensorFlow Object Detection tutorials write them;
found by --data and data check; one-line errors naming the file and line."""

from __future__ import annotations

import random

import pytest

from dfine.cli import main
from dfine.data.coco import DatasetError
from dfine.data.convert.csv import convert_csv
from dfine.recipes import detect_format
from tests.data.datasets import boxes_by_file, image, load

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def _roboflow(root):
    """{train,valid,test}/_annotations.csv beside each split's images; one train image without a row
    (Roboflow writes none for an image without boxes)."""
    rows = {"train": ["a.jpg,100,60,cat,10,5,30,45", "a.jpg,100,60,dog,50,20,90,50", "b.jpg,100,60,dog,60,30,120,70",
                      "c.jpg,100,60,cat,1,1,20,20"],
            "valid": ["v.jpg,100,60,cat,5,5,25,25"], "test": ["t.jpg,100,60,dog,5,5,25,25"]}
    for split, lines in rows.items():
        for name in {line.split(",")[0] for line in lines}:
            image(root / split / name, (100, 60))
        (root / split / "_annotations.csv").write_text(HEADER + "\n".join(lines) + "\n")
    image(root / "train" / "empty.jpg", (100, 60))
    return root


def test_roboflow_tensorflow_csv_export(tmp_path, capsys):
    src = _roboflow(tmp_path / "rf")
    assert detect_format(src) == "csv"
    assert main(["data", "convert", "--from", "csv", str(src), "-o", str(tmp_path / "out")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    train, val, test = (load(tmp_path / f"out/annotations/instances_{s}.json") for s in ("train", "val", "test"))
    assert [c["name"] for c in train["categories"]] == ["cat", "dog"]
    got = boxes_by_file(train)
    assert sorted(got) == ["train/a.jpg", "train/b.jpg", "train/c.jpg", "train/empty.jpg"]
    assert [(n, list(b)) for n, b, _ in got["train/a.jpg"]] == [("cat", [10, 5, 20, 40]), ("dog", [50, 20, 40, 30])]
    assert [list(b) for _, b, _ in got["train/b.jpg"]] == [[60, 30, 40, 30]]  # clipped at 100 x 60
    assert got["train/empty.jpg"] == []
    assert list(boxes_by_file(val)) == ["valid/v.jpg"] and list(boxes_by_file(test)) == ["test/t.jpg"]
    assert "images with no row in train/_annotations.csv kept as background images (no boxes): 1" in printed
    assert "train: 1 box clipped to the image: b.jpg 'dog'" in printed


def test_tensorflow_tutorial_tables_beside_an_images_folder(tmp_path):
    """train_labels.csv + test_labels.csv in data/, images in images/ (datitran/raccoon_dataset's layout):
    no val table, so a seeded share of train becomes val; the test table stays test."""
    src = tmp_path / "raccoon"
    for i in range(5):
        image(src / "images" / f"raccoon-{i}.jpg", (64, 48))
    (src / "data").mkdir()
    (src / "data/train_labels.csv").write_text(HEADER + "".join(f"raccoon-{i}.jpg,64,48,raccoon,2,3,40,30\n"
                                                                for i in range(4)))
    (src / "data/test_labels.csv").write_text(HEADER + "raccoon-4.jpg,64,48,raccoon,2,3,40,30\n")
    assert detect_format(src) == "csv"
    converted = convert_csv(src, tmp_path / "out")
    assert {s: c.images for s, c in converted.counts.items()} == {"train": 3, "val": 1, "test": 1}
    assert converted.images_folder == src / "images"
    assert any(n.startswith("no val CSV: 1 of 4 images became val") for n in converted.notes)
    with pytest.raises(DatasetError) as e:  # data/ given: its images are in the folder above's images/
        convert_csv(src / "data", tmp_path / "out2")
    assert str(e.value).endswith(f"; they are in {src / 'images'}: give the folder above, {src}")


def test_bad_rows_are_all_named_in_one_run(tmp_path):
    src = tmp_path / "set"
    image(src / "a.jpg")
    (src / "labels.csv").write_text(HEADER + "a.jpg,64,48,x,1,1,10,10\na.jpg,64,48,x,one,1,10,10\n"
                                    "a.jpg,64,48\na.jpg,64,48,x,1,1,10,nan\n")
    with pytest.raises(DatasetError) as err:
        convert_csv(src)
    assert str(err.value) == (f"{src / 'labels.csv'} line 3: xmin is 'one', not a number; and 2 more bad lines: 4, 5")


def test_a_table_without_a_header_in_retinanet_order(tmp_path):
    """Roboflow's "RetinaNet Keras CSV" export (c-palma0/facemask-data) and andrewtrainor/Pill_Object_Detection's
    valid/annotations.csv have no header: 'not a dataset', the files never named. Rows of an image file, four
    numbers and a name are read in that order (an image without boxes: 'path,,,,,'), said; _classes.csv is no table."""
    src = tmp_path / "mask"
    for split in ("train", "valid"):
        for n in ("a", "b"):
            image(src / split / f"{n}.jpg", (64, 48))
        (src / split / "_annotations.csv").write_text("a.jpg,2,3,40,30,mask\nb.jpg,,,,,\n")
        (src / split / "_classes.csv").write_text("mask,0\n")
    assert detect_format(src) == "csv"
    converted = convert_csv(src, tmp_path / "out")
    train = load(converted.ann_files["train"])
    assert boxes_by_file(train) == {"train/a.jpg": [("mask", [2.0, 3.0, 38.0, 27.0], 0)], "train/b.jpg": []}
    notes = " ".join(converted.notes)
    assert ("2 CSVs without a header read as Keras RetinaNet's columns (filename,xmin,ymin,xmax,ymax,class): "
            "train/_annotations.csv, valid/_annotations.csv") in notes
    assert "_classes" not in notes


def test_corners_that_read_as_x_y_width_height_are_an_error(tmp_path):
    src = tmp_path / "set"
    image(src / "a.jpg", (64, 48))
    (src / "labels.csv").write_text(HEADER + "a.jpg,64,48,x,30,20,10,10\na.jpg,64,48,x,5,5,20,20\n")
    with pytest.raises(DatasetError) as err:
        convert_csv(src)
    assert str(err.value) == (f"{src / 'labels.csv'}: 1 of 2 boxes have xmax < xmin or ymax < ymin: are the columns x, "
                              f"y, width, height? This format takes the corners (xmax = x + width)")


def test_fractions_a_bad_header_and_missing_images(tmp_path):
    src = tmp_path / "set"
    image(src / "a.jpg")
    (src / "labels.csv").write_text(HEADER + "a.jpg,64,48,x,0.1,0.1,0.5,0.5\n")
    with pytest.raises(DatasetError, match="every box edge is between 0 and 1, fractions of the image"):
        convert_csv(src)
    (src / "labels.csv").write_text("image,label,x,y,w,h\na.jpg,x,1,1,5,5\n")
    with pytest.raises(Exception, match="not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder"):
        detect_format(src / "labels.csv")  # x, y, w, h: not a table of box edges
    with pytest.raises(DatasetError, match=r"holds no CSV of boxes \(a header naming filename, class, xmin"):
        convert_csv(src)
    # a column left out of the header: the file and the column named (a walk read the list of every format)
    (src / "labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax\na.jpg,64,48,x,1,1,10\n")
    said = ("labels.csv: its header (filename, width, height, class, xmin, ymin, xmax) lacks ymax; a CSV of boxes "
            "names filename, class, xmin, ymin, xmax, ymax")
    with pytest.raises(DatasetError) as err:
        convert_csv(src)
    assert str(err.value) == f"{src} holds no CSV of boxes: {said}"
    with pytest.raises(Exception) as err:
        detect_format(src)
    assert str(err.value).endswith(f"dataset folder: {said}")
    (src / "labels.csv").write_text(HEADER + "a.jpg,64,48,x,1,1,10,10\ngone.jpg,64,48,x,1,1,10,10\n"
                                    "../outside.jpg,64,48,x,1,1,10,10\n")
    image(tmp_path / "outside.jpg")
    converted = convert_csv(src, tmp_path / "out", val_fraction=0)
    assert converted.counts["train"].images == 1
    assert ("2 images named in the CSV not found, left out with their boxes: labels.csv: gone.jpg, "
            "labels.csv: ../outside.jpg") in converted.notes


def test_train_data_reads_a_csv_folder(tmp_path, capsys):
    from tests.data.test_train_data import TINY

    src, out = _roboflow(tmp_path / "rf"), tmp_path / "run"
    assert main(["train", "--data", str(src), "-o", str(out), *TINY]) == 0
    assert "converted CSV" in capsys.readouterr().err
    assert main(["data", "check", str(src)]) == 0
    assert "train: OK; val: OK; test: OK" in capsys.readouterr().out


def test_a_split_folder_of_a_roboflow_export_names_the_export(tmp_path):
    src = _roboflow(tmp_path / "rf")
    with pytest.raises(DatasetError) as err:
        convert_csv(src / "train")
    assert str(err.value) == (f"{src / 'train'} is the train split of the CSV dataset {src} (beside test/, valid/): give "
                              f"that folder, e.g. --data {src}")


def test_a_table_of_every_image_beside_split_tables_and_a_headerless_table(tmp_path):
    """datitran/raccoon_dataset keeps raccoon_labels.csv (every image) beside train_labels.csv and
    test_labels.csv: read as a train table too, it put the test images into train. Its images are now
    read from the split tables; andrewtrainor/Pill_Object_Detection's valid/annotations.csv has no
    header and cannot be read by position: it is named, not dropped without a word."""
    src = tmp_path / "raccoon"
    for i in range(5):
        image(src / "images" / f"r{i}.jpg", (64, 48))
    (src / "data").mkdir()
    row = "r{},64,48,raccoon,2,3,40,30\n"
    (src / "data/raccoon_labels.csv").write_text(HEADER + "".join(row.format(f"{i}.jpg") for i in (0, 1, 2, 3, 4, 9)))
    (src / "data/train_labels.csv").write_text(HEADER + "".join(row.format(f"{i}.jpg") for i in (0, 1, 2, 9)))
    (src / "data/test_labels.csv").write_text(HEADER + row.format("3.jpg"))
    (src / "data/notes.csv").write_text("author,date\nme,today\n")
    converted = convert_csv(src, tmp_path / "out", val_fraction=0)
    names = {s: sorted(i["file_name"] for i in load(f)["images"]) for s, f in converted.ann_files.items()}
    assert names["test"] == ["r3.jpg"] and "r3.jpg" not in names["train"]
    assert names["train"] == ["r0.jpg", "r1.jpg", "r2.jpg", "r4.jpg"]  # r4: only in the table of every image
    notes = " ".join(converted.notes)
    assert "data/raccoon_labels.csv (4 images): images the split tables list too, read from those" in notes
    assert ("1 CSV without a header naming filename, class, xmin, ymin, xmax, ymax, left out (add that header line): "
            "data/notes.csv") in notes
    # r9.jpg, in both tables and not on disk, is one missing image (a walk read "100 missing" for 50)
    assert "1 image named in the CSV not found, left out with their boxes: data/train_labels.csv: r9.jpg" in notes
    one = convert_csv(src / "data/train_labels.csv", tmp_path / "one", val_fraction=0)
    assert not any("without a header" in n for n in one.notes)  # one file given: the others are not looked at


def test_roboflow_copies_of_one_photo_stay_on_one_side_of_a_seeded_split():
    """A Roboflow export with 3 versions of each photo (llsrwsaint225/Bangkok_Bus_Dataset_tensorflow)
    split by a val fraction put IMG_1086_jpg.rf.32ac... in train and IMG_1086_jpg.rf.4d35... (the same
    photo, the same 17 boxes) in val: val AP scored training images. Copies now go together."""
    from dfine.data.convert import split_by_fraction

    names = [f"IMG_{i:04d}_jpg.rf.{h * 32}.jpg" for i in range(10) for h in "abc"]
    notes = []
    train, val = split_by_fraction(names, 0.2, 0, notes=notes)
    assert len(val) == 6 and len(train) == 24
    stems = lambda side: {n.split(".rf.")[0] for n in side}  # noqa: E731
    assert not stems(train) & stems(val)
    # said, with how many photos val holds (a walk read 81 of 342 images as 24% and not as 5 of 19 photos)
    assert notes == ["the 30 images are Roboflow copies of 10 photos, each photo's copies kept on one side: val holds "
                     "2 photos (6 images)"]
    plain = sorted(f"{i}.jpg" for i in range(30))
    shuffled = list(plain)
    random.Random(0).shuffle(shuffled)
    assert split_by_fraction(plain, 0.2, 0, notes=notes)[1] == sorted(shuffled[:6])  # other names: as before
    assert len(notes) == 1  # and nothing said of copies


def test_a_voc_folder_with_csv_tables_and_an_empty_split_are_said(tmp_path, capsys):
    """andrewtrainor/Pill_Object_Detection: CSV tables of 1600 boxes beside one stray VOC XML whose image is
    gone. It was read as VOC (0 images) and data check ended 'train: OK; val: OK', the CSVs never named."""
    src = tmp_path / "pill"
    for i in range(3):
        image(src / "images" / f"p{i}.jpg", (64, 48))
    (src / "all_labels.csv").write_text(HEADER + "".join(f"p{i}.jpg,64,48,capsule,2,3,40,30\n" for i in range(3)))
    from tests.data.datasets import voc_xml
    voc_xml(src / "annotations" / "gone.xml", "gone.jpg", (64, 48), [("capsule", (1, 1, 9, 9), 0)])
    assert detect_format(src) == "voc"
    assert main(["data", "check", str(src)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert (f"{src} also holds CSV tables of boxes (all_labels.csv); the VOC files are used. For the others: dfine "
            f"data convert --from csv {src} -o pill_csv, then --data pill_csv") in out
    assert "no_images 1 annotation files that list no image: nothing to train or evaluate on" in out
    assert out.endswith("train: errors; val: errors")


def test_a_linked_images_folder_and_a_typo_in_a_few_rows(tmp_path):
    """A walk kept images/ as a link to a folder elsewhere: 'not found ... looked in images/' though the
    files were there (the link's target counted as outside the dataset). And 'racoon' in 3 of 100 rows
    became a second class without a word (LabelMe folders said it)."""
    target = tmp_path / "disk" / "raccoon_images"
    for i in range(6):
        image(target / f"r{i}.jpg", (64, 48))
    src = tmp_path / "raccoon"
    src.mkdir()
    (src / "images").symlink_to(target, target_is_directory=True)
    rows = [f"r{i}.jpg,64,48,{'racoon' if i == 5 else 'raccoon'},2,3,40,30\n" for i in range(6) for _ in range(4)]
    (src / "labels.csv").write_text(HEADER + "".join(rows[:-3]))
    converted = convert_csv(src, tmp_path / "out")
    assert converted.counts["train"].images + converted.counts["val"].images == 6
    assert converted.images_folder == src / "images"
    assert ("labels spelt alike are separate classes (a typo while labelling?): 'racoon' (1 box, e.g. r5.jpg) and "
            "'raccoon' (20 boxes, e.g. r0.jpg); to merge them, rename one in the CSV files (--names naming both keeps them apart, without this note)") in converted.notes
    assert main(["data", "check", str(tmp_path / "out")]) == 0  # the converted files read through the link too


def test_one_coco_file_of_roboflow_copies_keeps_each_photos_copies_on_one_side(tmp_path):
    """A seeded split of one COCO file went by image id, so a walk's 27 Roboflow copies of 2 photos (predict
    --save-dataset of an augmented export) had copies of one photo on both sides; by file name, as the YOLO split."""
    import json

    from PIL import Image

    from dfine.data.convert.coco import convert_coco
    names = [f"IMG_{i:04d}_jpg.rf.{h * 32}.jpg" for i in range(10) for h in "abc"]
    (tmp_path / "images").mkdir()
    images, anns = [], []
    for k, name in enumerate(names, 1):
        Image.new("RGB", (32, 32), (8 * k, 0, 0)).save(tmp_path / "images" / name)  # versions, not the same bytes
        images.append({"id": k, "file_name": name, "width": 32, "height": 32})
        anns.append({"id": k, "image_id": k, "category_id": 1, "bbox": [4, 4, 10, 10], "area": 100, "iscrowd": 0})
    (tmp_path / "images" / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "bus"}]}))
    result = convert_coco(tmp_path / "images" / "annotations.json", tmp_path / "out")
    sides = {s: {im["file_name"].split(".rf.")[0] for im in json.loads(result.ann_files[s].read_text())["images"]}
             for s in ("train", "val")}
    assert sides["val"] and sides["train"] and not sides["train"] & sides["val"]
    assert any("Roboflow copies of 10 photos" in n for n in result.notes)
