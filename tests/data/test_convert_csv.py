"""dfine data convert --from csv: filename,width,height,class,xmin,ymin,xmax,ymax tables as Roboflow's
"Tensorflow Object Detection CSV" export and the TensorFlow Object Detection tutorials write them;
found by --data and data check; one-line errors naming the file and line."""

from __future__ import annotations

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


def test_bad_rows_are_all_named_in_one_run(tmp_path):
    src = tmp_path / "set"
    image(src / "a.jpg")
    (src / "labels.csv").write_text(HEADER + "a.jpg,64,48,x,1,1,10,10\na.jpg,64,48,x,one,1,10,10\n"
                                    "a.jpg,64,48\na.jpg,64,48,x,1,1,10,nan\n")
    with pytest.raises(DatasetError) as err:
        convert_csv(src)
    assert str(err.value) == (f"{src / 'labels.csv'} line 3: xmin is 'one', not a number; and 2 more bad lines: 4, 5")


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
    (src / "data/raccoon_labels.csv").write_text(HEADER + "".join(row.format(f"{i}.jpg") for i in range(5)))
    (src / "data/train_labels.csv").write_text(HEADER + "".join(row.format(f"{i}.jpg") for i in range(3)))
    (src / "data/test_labels.csv").write_text(HEADER + row.format("3.jpg"))
    (src / "valid").mkdir()
    (src / "valid/annotations.csv").write_text("r4.jpg,2,3,40,30,raccoon\n")
    converted = convert_csv(src, tmp_path / "out", val_fraction=0)
    names = {s: sorted(i["file_name"] for i in load(f)["images"]) for s, f in converted.ann_files.items()}
    assert names["test"] == ["r3.jpg"] and "r3.jpg" not in names["train"]
    assert names["train"] == ["r0.jpg", "r1.jpg", "r2.jpg", "r4.jpg"]  # r4: only in the table of every image
    notes = " ".join(converted.notes)
    assert "data/raccoon_labels.csv (4 images): images the split tables list too, read from those" in notes
    assert ("1 CSV without a header naming filename, class, xmin, ymin, xmax, ymax, left out (add that header line): "
            "valid/annotations.csv") in notes
