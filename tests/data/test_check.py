"""dfine data check: every problem kind counted with its ids, --fix passes a second check, the check
before training, and what CocoDetection does with 16-bit, EXIF-rotated, hostile and broken input."""

from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np
import PIL.Image
import pytest
import torch

from dfine.cli import main
from dfine.data.check import KINDS, check_dataset, fix_dataset, preflight
from dfine.data.coco import CocoDetection, DatasetError
from tests.data.conftest import write_coco
from tests.data.datasets import image, load, yolo_labels

CATS = [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog", "supercategory": "animal"}]


def _ann(ann_id, image_id, bbox, category_id=1, iscrowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": iscrowd,
            "area": 1.0}


def _broken(root):
    """A COCO file with one or more of every problem; returns (ann_file, images folder)."""
    img = root / "img"
    image(img / "ok.jpg", (64, 48))
    (img / "zero.jpg").write_bytes(b"")
    (img / "garbage.jpg").write_bytes(b"this is not an image at all" * 10)
    noise = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    PIL.Image.fromarray(noise).save(img / "cut.jpg", quality=95)
    data = (img / "cut.jpg").read_bytes()
    (img / "cut.jpg").write_bytes(data[: len(data) // 2])
    image(img / "wrongsize.jpg", (64, 48))
    image(img / "rotated.jpg", (64, 48), orientation=6)
    image(img / "cmyk.jpg", (64, 48), mode="CMYK")
    image(img / "deep.png", (64, 48), mode="I;16")
    image(img / "pal.png", (64, 48), mode="P")
    image(img / "alpha.png", (64, 48), mode="RGBA")
    image(img / "grey.png", (64, 48), mode="L")
    image(img / "extra.jpg")  # no entry refers to it
    image(root / "outside.jpg")
    os.symlink(root / "outside.jpg", img / "link.jpg")
    names = ["ok.jpg", "missing.jpg", "zero.jpg", "garbage.jpg", "cut.jpg", "wrongsize.jpg", "rotated.jpg",
             "cmyk.jpg", "deep.png", "pal.png", "alpha.png", "grey.png", "../outside.jpg", "link.jpg"]
    images = [{"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)]
    images[4].update(width=300, height=200)  # cut
    images[5].update(width=10, height=10)  # wrongsize
    images[6].update(width=48, height=64)  # rotated: JSON has the shown size
    images.append({"id": 1, "file_name": "ok.jpg", "width": 64, "height": 48})  # duplicate id
    anns = [_ann(1, 1, [1, 2, 10, 10]), _ann(2, 1, [50, 40, 20, 20]), _ann(3, 1, [1, 1, math.nan, 5]),
            _ann(4, 1, [1, 1, 0, 5]), _ann(5, 1, [1, 1, 5, -3]), _ann(6, 1, [100, 100, 5, 5]),
            _ann(7, 1, [0, 0, 30, 30], iscrowd=1), _ann(8, 99, [1, 1, 5, 5]), _ann(9, 1, [1, 1, 5, 5], category_id=7),
            _ann(10, 1, [1, 2, 3]), _ann(1, 1, [3, 3, 4, 4])]
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    return ann_file, img


EXPECTED = {
    "duplicate_image_id": [1], "duplicate_annotation_id": [1], "unknown_image": [8], "undeclared_category": [9],
    "bad_bbox": [10], "unsafe_file_name": [13], "symlink_out": [14], "missing": [2], "zero_byte": [3], "unreadable": [4],
    "truncated": [5], "size_mismatch": [6], "box_clipped": [2], "box_invalid": [3, 4, 5], "box_outside": [6],
    "unused_category": [2], "unreferenced": ["extra.jpg"], "crowd": [7],
    "background": [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], "exif_rotated": [7], "high_depth": [9],
    "cmyk": [8], "palette": [10], "alpha": [11], "grayscale": [12],
}


def test_every_problem_is_counted_with_its_ids(tmp_path):
    ann_file, img = _broken(tmp_path)
    report = check_dataset(ann_file, img)
    assert {k: f.ids for k, f in report.findings.items()} == EXPECTED
    assert not report.ok
    text = report.format()
    assert "  missing                       1  image files not found: image ids 2" in text
    assert ("  box_invalid                   3  boxes with NaN, zero or negative size (dropped when training): "
            "annotation ids 3, 4, 5") in text
    assert "  unreferenced                  1  image files in the folder that no image entry of this file refers to: files " \
           "extra.jpg" in text
    assert "         1  cat                            1          7" in text  # images, instances (bad boxes too)
    assert text.splitlines()[-1].startswith("result: 12 errors of 12 kinds; training refuses this file")


def test_deep_check_decodes_pixels(tmp_path):
    ann_file, img = _broken(tmp_path)
    report = check_dataset(ann_file, img, level="deep")
    assert report.findings["truncated"].ids == [5] and report.findings["unreadable"].ids == [4]


def test_fix_writes_a_file_that_passes_a_second_check(tmp_path, capsys):
    ann_file, img = _broken(tmp_path)
    fixed = tmp_path / "fixed.json"
    assert main(["data", "check", str(ann_file), "--images", str(img), "--fix", str(fixed)]) == 1
    out = capsys.readouterr().out
    for line in ("  dropped 1 image (missing): 2", "  dropped 1 image (unsafe_file_name): 13", "  dropped 1 image (symlink_out): 14",
                 "  dropped image entry 1 'ok.jpg' (duplicate image id)",
                 "  corrected width/height of 1 image to the image as shown: 6",
                 "  dropped 3 annotations (NaN, zero or negative size): 3, 4, 5",
                 "  dropped 1 annotation (empty after clipping to the image): 6",
                 "  clipped 1 box to the image: 2", "  renumbered 1 duplicate annotation id: 1->11"):
        assert line in out
    again = check_dataset(fixed, img)
    assert again.ok and not {"box_clipped", "box_invalid", "box_outside"} & set(again.findings)
    assert main(["data", "check", str(fixed), "--images", str(img)]) == 0
    data = load(fixed)
    assert {a["id"]: a["bbox"] for a in data["annotations"]}[2] == [50, 40, 14, 8]
    assert {im["id"]: (im["width"], im["height"]) for im in data["images"]}[6] == (64, 48)


def test_coco128_passes_with_its_crowd_boxes(coco128, tmp_path, capsys):
    ann = coco128 / "annotations" / "instances_train2017.json"
    plot = tmp_path / "labels.png"
    assert main(["data", "check", str(ann), "--images", str(coco128 / "train2017"), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "  crowd                        10  crowd annotations" in out
    assert "errors" not in out and out.splitlines()[-3] == "result: OK, training can use it as is"
    assert out.splitlines()[-1] == f"images with their boxes: {tmp_path / 'labels_samples.png'}"
    with PIL.Image.open(plot) as f:
        assert f.size[0] > 500 and f.size[1] > 500


def test_labels_plot_of_a_few_boxes_shows_them(tmp_path, monkeypatch):
    """On labelme's 3-image VOC example (7 boxes) labels.png drew each box centre and size as a
    white cell on white (a count of 1 is the bottom of the Blues colour map), the centred boxes at
    a quarter opacity, and the class counts on an axis of 0.5 steps."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from dfine.data.check import plot_report

    ann, img = _small(tmp_path, [[1, 1, 10, 10], [20, 5, 30, 30], [40, 10, 20, 30]])
    drawn = []
    saved = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self), saved(self, *a, **k))[1])
    plot_report(check_dataset(ann, img), tmp_path / "labels.png")
    classes, boxes, centres, sizes = drawn[0].axes[:4]
    for ax in (centres, sizes):
        mesh = ax.collections[0]
        r, g, b, _ = mesh.get_cmap()(mesh.norm(1))
        assert 0.299 * r + 0.587 * g + 0.114 * b < 0.75  # a cell of one box is plainly coloured, not near white
    assert all(p.get_alpha() >= 0.5 for p in boxes.patches)
    assert all(float(t).is_integer() for t in classes.get_yticks())
    assert (tmp_path / "labels.png").is_file() and not list(tmp_path.glob(".*.png"))
    # a walk read "2 boxes in 3 classes" for a split whose boxes were all of one class
    assert classes.get_title() == f"3 boxes in 1 of {len(CATS)} classes"
    assert sizes.get_xlim() == (0, 1) and boxes.get_xlim() == (0, 1)  # boxes up to 0.6 of the image: all of it
    # satellite vehicles, under a twentieth of the image: the shape panels zoom to them (a blob at 0..1, a walk)
    ann, img = _small(tmp_path / "tiny", [[1, 1, 12, 9], [200, 50, 20, 16]], size=(640, 480))
    plot_report(check_dataset(ann, img), tmp_path / "tiny.png")
    _, boxes, centres, sizes = drawn[-1].axes[:4]
    assert sizes.get_xlim() == (0, 0.05) and np.allclose(boxes.get_xlim(), (0.475, 0.525))
    assert centres.get_xlim() == (0, 1)  # where they are: the whole image


# ---------------------------------------------------------------- the check before training


def _small(root, boxes, *, size=(64, 48)):
    image(root / "img" / "a.png", size)
    ann = root / "a.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": size[0], "height": size[1]}],
                               "annotations": [_ann(i + 1, 1, b) for i, b in enumerate(boxes)], "categories": CATS}))
    return ann, root / "img"


def test_preflight_logs_repairs_once_and_stops_on_errors(tmp_path):
    ann, img = _small(tmp_path, [[1, 1, 10, 10], [60, 1, 10, 10], [1, 1, 0, 3], [200, 1, 3, 3]])
    said = []
    preflight(ann, img, log=said.append)
    assert said == [f"train data ({ann}): 1 box clipped to the image: annotation ids 2; 1 box with NaN, zero or "
                    f"negative size dropped: annotation ids 3; 1 box entirely outside the image dropped: "
                    f"annotation ids 4"]
    (img / "a.png").unlink()
    with pytest.raises(DatasetError) as err:
        preflight(ann, img, log=said.append)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{ann}: the dataset check found errors (the whole report: dfine data check {ann} --images {img}):"
    assert lines[1] == f"  missing                       1  image files not found in {img}: image ids 1 (a.png)"


def test_preflight_says_how_to_train_without_what_is_at_fault(tmp_path):
    """It said '--fix OUT.json to repair', and then? With ``dfine train --data`` of a VOC or YOLO
    folder (experiencor/kangaroo: two truncated JPEGs) the converted file is written again by every
    run, so a fixed copy in its place was lost; the error now gives both commands, and they work."""
    import shlex

    from dfine.cli import main

    ann, img = _small(tmp_path, [[1, 1, 10, 10]])
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    PIL.Image.fromarray(noise).save(img / "cut.jpg", quality=95)
    (img / "cut.jpg").write_bytes((img / "cut.jpg").read_bytes()[:2000])
    data = json.loads(ann.read_text())
    data["images"].append({"id": 2, "file_name": "cut.jpg", "width": 64, "height": 48})
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as err:
        preflight(ann, img, split="val")
    last = str(err.value).splitlines()[-1]
    fixed = ann.with_name("a_fixed.json")
    assert last == (f"to leave them out: dfine data check {ann} --images {img} --fix {fixed}, then add "
                    f"-u val_dataloader.dataset.ann_file={fixed} to the command")
    check = last.split(": ", 1)[1].split(", then")[0]
    assert main(shlex.split(check)[1:]) == 1 and fixed.is_file()  # 1: the file checked has errors; the copy not
    preflight(fixed, img)  # no error left


def test_a_file_none_of_whose_images_is_in_its_folder_is_not_offered_fix(tmp_path, capsys):
    """A walk's test split file was a copy of train's: none of its images in test/. The evaluation ended with
    '--fix ..., then add -u ... to the training command', and --fix wrote a file of 0 images without a word.
    Both now say the file lists another folder's images; --fix writes nothing."""
    ann, img = _small(tmp_path, [[1, 1, 10, 10]])
    other = tmp_path / "other"
    other.mkdir()
    PIL.Image.new("RGB", (8, 8)).save(other / "unrelated.jpg")
    said = (f"none of its 1 image is in {other}: the file lists another folder's images (another split's file copied "
            f"here?); give the file of this folder's images, or --images the folder of the file's own")
    with pytest.raises(DatasetError) as err:
        preflight(ann, other, split="val")
    assert str(err.value).splitlines()[-1] == said
    fixed = tmp_path / "fixed.json"
    assert main(["data", "check", str(ann), "--images", str(other), "--fix", str(fixed)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {ann}: --fix would leave no image, so nothing was written: "
                                               f"{said}")
    assert not fixed.exists()
    assert main(["data", "check", str(ann), "--images", str(other)]) == 1
    assert f"training refuses this file ({said})" in capsys.readouterr().out
    # the file among other images, as Roboflow's {split}/_annotations.coco.json sits among its split's images, and
    # no --images: not 'give --images, the folder its file names are relative to' (a re-walk)
    copied = other / "_annotations.coco.json"
    copied.write_text(ann.read_text())
    assert main(["data", "check", str(copied)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {copied}: none of its 1 image is in {other}, which holds 1 image: the file lists another folder's "
        f"images (another split's file copied here?); give the file of these images, or --images the folder of the "
        f"file's own")


def test_build_dataset_runs_the_check(tmp_path, capsys):
    from dfine.config import load_config
    from dfine.data import build_dataset
    from tests.data.conftest import RECIPE

    ann, img = _small(tmp_path, [[1, 1, 10, 10], [60, 1, 10, 10]])
    cfg = load_config(RECIPE, [f"train_dataloader.dataset.img_folder={img}", f"train_dataloader.dataset.ann_file={ann}"])
    ds = build_dataset(cfg, "train")
    assert capsys.readouterr().err.strip() == f"train data ({ann}): 1 box clipped to the image: annotation ids 2"
    assert ds.box_repairs.clipped == (2,)
    assert ds[0][1]["boxes"].shape == (2, 4)


# ---------------------------------------------------------------- CocoDetection (issue 14, items 1-4)


def test_16_bit_training_image_is_scaled_not_saturated(tmp_path):
    ann, img = _small(tmp_path, [[1, 1, 10, 10]])
    PIL.Image.fromarray(np.full((48, 64), 30000, dtype=np.uint16)).save(img / "a.png")
    image_tensor, _ = CocoDetection(img, ann)[0]
    assert image_tensor.shape == (3, 48, 64)
    assert abs(float(image_tensor.mean()) - 30000 / 65535) < 0.01


def test_invalid_boxes_are_counted_with_their_ids(tmp_path):
    ann, img = _small(tmp_path, [[1, 1, 10, 10], [1, 1, math.nan, 2], [1, 1, -2, 2], [70, 1, 5, 5], [-5, -5, 10, 10]])
    ds = CocoDetection(img, ann)
    assert ds.box_repairs.describe() == ["1 box clipped to the image: annotation ids 5",
                                         "2 boxes dropped (NaN, zero or negative size): annotation ids 2, 3",
                                         "1 box dropped (entirely outside the image): annotation ids 4"]
    assert ds[0][1]["boxes"].shape == (2, 4)


@pytest.mark.parametrize("name, why", [("../a.png", "contains '..'"), ("sub/../../a.png", "contains '..'"),
                                       ("/etc/passwd", "is an absolute path")])
def test_file_names_leaving_the_folder_are_refused(tmp_path, name, why):
    ann, img = _small(tmp_path, [[1, 1, 10, 10]])
    data = load(ann)
    data["images"][0]["file_name"] = name
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as err:
        CocoDetection(img, ann)
    assert str(err.value) == (f"annotation file {ann}: image 1 file_name {name!r} {why}; file names must be relative "
                              f"paths inside the images folder")


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    ann, img = _small(tmp_path, [[1, 1, 10, 10]])
    image(tmp_path / "secret.png")
    (img / "a.png").unlink()
    os.symlink(tmp_path / "secret.png", img / "a.png")
    ds = CocoDetection(img, ann)
    with pytest.raises(DatasetError, match=r"a\.png listed in .*a\.json resolves to .*secret\.png, outside the images "
                                           r"folder"):
        ds[0]


def test_images_linked_from_outside_say_how_to_use_them(tmp_path, capsys):
    """A walk's VOC folder of links to files elsewhere (as DVC or git-annex leave them): 1800
    'unsafe_file_name' errors and a --fix that would drop every image. Now they are named for what they
    are, with what to do."""
    ann, img = _small(tmp_path, [[1, 1, 10, 10]])
    image(tmp_path / "store" / "a.png")
    (img / "a.png").unlink()
    os.symlink(tmp_path / "store" / "a.png", img / "a.png")
    report = check_dataset(ann, img)
    assert {k: f.ids for k, f in report.findings.items() if KINDS[k][0] == "error"} == {"symlink_out": [1]}
    last = report.format().splitlines()[-1]
    assert last.startswith("result: 1 error of 1 kind; training refuses this file (its images are links to files "
                           f"outside {img}, which are never read: copy the dataset with its links resolved (cp -rL")
    assert "--fix" not in last
    assert "--fix" not in report.summary() and "cp -rL DATASET DATASET_COPY" in report.summary()
    # nor does the samples picture read it (a walk's picture drew the linked image it was told is never read)
    from dfine.data.check import sample_pictures
    assert sample_pictures(ann, img)[0] == []


@pytest.mark.parametrize("json_size, shown", [((48, 64), (3, 64, 48)), ((64, 48), (3, 48, 64)),
                                              ((10, 10), (3, 64, 48))])
def test_exif_orientation_follows_the_json_size(tmp_path, json_size, shown):
    ann, img = _small(tmp_path, [[1, 1, 5, 5]], size=json_size)
    image(img / "a.png", (64, 48))
    jpg = image(img / "a.jpg", (64, 48), orientation=6)  # shown as 48 wide, 64 high
    data = load(ann)
    data["images"][0]["file_name"] = jpg.name
    ann.write_text(json.dumps(data))
    image_tensor, _ = CocoDetection(img, ann)[0]
    assert tuple(image_tensor.shape) == shown  # neither matching: shown as a viewer shows it, and reported:
    assert check_dataset(ann, img).count("size_mismatch") == (json_size == (10, 10))


def test_symlinked_folders_are_the_layout_and_are_followed(tmp_path):
    """dfine obj365 split --link-val-images links train/images_from_val to ../val/images."""
    ann, img = _small(tmp_path, [[1, 1, 10, 10]])
    image(tmp_path / "val_images" / "b.png")
    os.symlink(tmp_path / "val_images", img / "from_val", target_is_directory=True)
    data = load(ann)
    data["images"][0]["file_name"] = "from_val/b.png"
    ann.write_text(json.dumps(data))
    assert CocoDetection(img, ann)[0][0].shape == (3, 48, 64)
    assert check_dataset(ann, img).ok


def test_header_cache_is_reused_until_a_file_changes(tmp_path, monkeypatch):
    import dfine.data.check as check_module

    monkeypatch.setenv("DFINE_HOME", str(tmp_path / "home"))
    img = tmp_path / "img"
    image(img / "a.jpg", (64, 48))
    image(img / "b.png", (32, 32), mode="L")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                                          {"id": 2, "file_name": "b.png", "width": 32, "height": 32}],
                               "annotations": [_ann(1, 1, [1, 1, 10, 10])], "categories": CATS}))
    before = sorted(p.name for p in img.iterdir())
    first = check_dataset(ann, img, cache=True)
    assert first.ok and first.findings["grayscale"].ids == [2]
    assert sorted(p.name for p in img.iterdir()) == before  # the images folder is never written
    assert len(list((tmp_path / "home" / "headers").glob("*.json"))) == 1

    real_look, read = check_module._look, []
    monkeypatch.setattr(check_module, "_look", lambda path, deep: read.append(os.path.basename(path)) or
                        real_look(path, deep))
    again = check_dataset(ann, img, cache=True)
    assert read == [] and again.findings["grayscale"].ids == [2] and again.ok  # nothing read again
    # b.png rewritten at another size: read again, and the new size is seen
    image(img / "b.png", (40, 32), mode="L")
    changed = check_dataset(ann, img, cache=True)
    assert read == ["b.png"] and changed.findings["size_mismatch"].ids == [2]
    # without cache=True (dfine data check) every header is read
    read.clear()
    check_dataset(ann, img)
    assert sorted(read) == ["a.jpg", "b.png"]
    # a damaged cache file is ignored, and rewritten
    cache_file, = (tmp_path / "home" / "headers").glob("*.json")
    cache_file.write_text("{not json")
    read.clear()
    assert check_dataset(ann, img, cache=True).findings["size_mismatch"].ids == [2] and len(read) == 2
    assert json.loads(cache_file.read_text())["version"] == 2
    # a cache of an earlier version (whose JPEG end check left zero-padded files out) is read again
    saved = json.loads(cache_file.read_text())
    cache_file.write_text(json.dumps({**saved, "version": 1}))
    read.clear()
    check_dataset(ann, img, cache=True)
    assert sorted(read) == ["a.jpg", "b.png"]


def test_progress_counts_the_headers_read_without_a_rate(tmp_path, monkeypatch, capsys):
    """The bar of the image check counts only the headers it reads (none when every one is cached:
    no bar) and shows no rate: headers come at thousands a second, and the bar said '96431.87img/s'."""
    monkeypatch.setenv("DFINE_HOME", str(tmp_path / "home"))
    img = tmp_path / "img"
    for i in range(3):
        image(img / f"{i}.png", (32, 24))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 24}
                                          for i in range(3)], "annotations": [], "categories": CATS}))
    assert check_dataset(ann, img, progress=True, cache=True).ok
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert bar.startswith("checking images: 100%") and bar.endswith("3/3 [00:00<00:00]") and "/s" not in bar, bar
    assert check_dataset(ann, img, progress=True, cache=True).ok
    assert capsys.readouterr().err == ""  # every header cached: nothing to show
    os.utime(img / "2.png", ns=(1, 1))  # one file changed (its time): one header read
    assert check_dataset(ann, img, progress=True, cache=True).ok
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert bar.startswith("checking images (2 cached): 100%") and "1/1 [" in bar, bar


def test_a_category_with_far_fewer_boxes_than_the_others_is_named(tmp_path):
    # like a Roboflow chess export: 'bishop' once beside 'white-bishop' / 'black-bishop' a hundred times
    img = tmp_path / "img"
    image(img / "a.jpg", (64, 48))
    cats = [{"id": i, "name": n} for i, n in enumerate(["pieces", "bishop", "black-bishop", "white-bishop"])]
    anns = [_ann(1, 1, [1, 1, 5, 5], category_id=1)]
    anns += [_ann(2 + i, 1, [1, 1, 5, 5], category_id=2 + i % 2) for i in range(80)]  # 40 each: 1 < 40/20
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                               "annotations": anns, "categories": cats}))
    report = check_dataset(ann, img, level="json")
    assert report.ok and report.findings["rare_category"].ids == [1] and report.findings["unused_category"].ids == [0]
    text = report.format()
    assert "boxes (too few to learn; a mislabelled or misspelt class?): category ids 1 (bishop)" in text
    assert "declared categories no annotation uses (classes absent from this split, or a Roboflow root): category ids 0 (pieces)" \
        in text
    # two categories, or even counts: nothing rare
    even = [_ann(1 + i, 1, [1, 1, 5, 5], category_id=1 + i % 3) for i in range(9)]
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                               "annotations": even, "categories": cats}))
    assert "rare_category" not in check_dataset(ann, img, level="json").findings


def test_plot_ticks_keep_class_names_whole():
    from dfine.data.check import _tick

    assert _tick("green vegatable") == "green vegatable"  # 15 characters: was cut to 'green vegatabl'
    assert _tick("a" * 25) == "a" * 19 + "\u2026"


def test_class_table_shows_long_names_whole(tmp_path):
    """Roboflow names are often phrases (a rice-pest export: 'rice stem borer -penggerek batang
    padi-', 39 characters); the table cut every name at 23 ('rice stem borer -pengge'), with no sign
    of the cut."""
    img = tmp_path / "img"
    image(img / "a.jpg", (64, 48))
    names = ["rice stem borer -penggerek batang padi-", "x" * 50, "cup"]
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    anns = [_ann(1 + i, 1, [1, 1, 5, 5], category_id=1 + i % 3) for i in range(6)]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                               "annotations": anns, "categories": cats}))
    lines = check_dataset(ann, img, level="json").format().splitlines()
    header = next(line for line in lines if line.lstrip().startswith("category"))
    assert header.split() == ["category", "name", "images", "instances"]
    assert "         1  rice stem borer -penggerek batang padi-" + " " * 9 + "1          2" in lines
    assert "         2  " + "x" * 39 + "\u2026        1          2" in lines  # past 40: cut, and says so
    assert "         3  cup" + " " * 37 + "        1          2" in lines


def test_plot_panel_title_says_how_many_boxes_it_draws():
    from dfine.data.check import _sample_title

    assert _sample_title(635, 635) == "all 635 boxes, centred"  # was 'sample of 1000' for 635 boxes
    assert _sample_title(1, 1) == "all 1 box, centred"
    assert _sample_title(5000, 1000) == "1000 of 5000 boxes, centred"


def test_images_folder_one_level_off_names_the_folder_that_holds_them(tmp_path, capsys):
    """A Roboflow COCO export checked with --images at the dataset root instead of train/: every
    file is 'missing'; the report names the folder that holds them instead of offering --fix
    (which would drop every image)."""
    root = tmp_path / "export"
    for i in range(3):
        image(root / f"train/{i}.jpg", (64, 48))
    image(root / "valid/9.jpg", (64, 48))
    ann = root / "train/_annotations.coco.json"
    ann.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48}
                                          for i in range(3)],
                               "annotations": [_ann(1, 0, [1, 1, 10, 10])], "categories": CATS}))
    assert main(["data", "check", str(ann), "--images", str(root)]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"result: 3 errors of 1 kind; training refuses this file (the missing files are in "
                    f"{root / 'train'}: give --images {root / 'train'})")
    with pytest.raises(DatasetError, match=f"the missing files are in {root / 'train'}: make that the images folder"):
        preflight(ann, tmp_path)  # from a folder above too: the annotation file's own folder holds them


def test_images_folder_defaults_and_wrong_files_say_what_to_give(tmp_path, capsys):
    from dfine.data.convert.yolo import convert_yolo
    from tests.data.datasets import yolo_labels

    src = tmp_path / "yolo"
    for split in ("train", "val"):
        image(src / f"images/{split}/0.jpg", (64, 48))
        yolo_labels(src / f"labels/{split}/0.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cup]\n")
    converted = convert_yolo(src, tmp_path / "out")
    assert main(["data", "check", str(converted.ann_files["train"])]) == 0  # the folder the conversion wrote down
    assert f"images in {src / 'images'}" in capsys.readouterr().out
    rf = tmp_path / "rf/train"
    image(rf / "a.jpg", (64, 48))
    (rf / "_annotations.coco.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64,
                                                                       "height": 48}], "annotations": [],
                                                           "categories": CATS}))
    assert main(["data", "check", str(rf / "_annotations.coco.json")]) == 0  # images beside the file (Roboflow)
    assert f"images in {rf}" in capsys.readouterr().out
    cvat = tmp_path / "cvat_coco"  # CVAT's COCO export: annotations/instances_default.json + images/ (a walk)
    image(cvat / "images/frame_1.jpg", (64, 48))
    (cvat / "annotations").mkdir()
    (cvat / "annotations/instances_default.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "frame_1.jpg", "width": 64, "height": 48}], "annotations": [],
        "categories": CATS}))
    assert main(["data", "check", str(cvat / "annotations/instances_default.json")]) == 0  # it asked for --images
    assert f"images in {cvat / 'images'}" in capsys.readouterr().out
    (tmp_path / "lone.json").write_text(json.dumps({"images": [], "annotations": [], "categories": CATS}))
    assert main(["data", "check", str(tmp_path / "lone.json")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'lone.json'}: give --images, the folder its file " \
                                              f"names are relative to"


def test_a_converted_split_does_not_call_the_other_splits_images_strays(tmp_path):
    """A YOLO conversion keeps every split's images under one folder: checking the train file
    listed each val image as "unreferenced" (Fruit-Yolo: 7 warnings for its 7 val images). A
    stray file in the folder is still one."""
    from dfine.data.convert.yolo import convert_yolo
    from tests.data.datasets import ultralytics_folders

    src = ultralytics_folders(tmp_path / "yolo", {"train": 3, "val": 2}, (40, 30), "0 0.5 0.5 0.4 0.4")
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [thing]\n")
    converted = convert_yolo(src, tmp_path / "out")
    train = converted.ann_files["train"]
    assert "unreferenced" not in check_dataset(train, converted.images_folder).findings
    image(src / "images/stray.jpg", (40, 30))
    assert check_dataset(train, converted.images_folder).findings["unreferenced"].ids == ["stray.jpg"]


def test_plot_of_names_no_font_draws_says_so_once(tmp_path, capsys):
    """labels.png of a set with Chinese class names on a machine without a CJK font: matplotlib warned
    once per letter and draw (UserWarning lines with source lines between them); now one note names the
    letters and the font to install, and no warning is left."""
    import warnings
    pytest.importorskip("matplotlib")
    from dfine.data.check import check_dataset, plot_report
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 100}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 50, 50],
                                                "area": 2500, "iscrowd": 0}],
                               "categories": [{"id": 1, "name": "\U0010fffd\U0010fffc"}]}))
    PIL.Image.new("RGB", (100, 100)).save(tmp_path / "x.jpg")
    report = check_dataset(ann, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_report(report, tmp_path / "labels.png")
    assert not [w for w in caught if "Glyph" in str(w.message)], [str(w.message) for w in caught]
    err = capsys.readouterr().err
    assert err.count("note: no font here draws the letters") == 1 and "\U0010fffc\U0010fffd" in err, err
    assert (tmp_path / "labels.png").is_file()


def test_samples_picture_of_a_file_name_no_font_draws_says_whose_letters(tmp_path, capsys):
    """A walk's file named in Chinese (class names in ASCII): the note said the letters were the class
    names'."""
    pytest.importorskip("matplotlib")
    from dfine.data.check import plot_samples
    from dfine.engine import plots
    name = "\U0010fff9\U0010fff8.jpg"
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": name, "width": 100, "height": 100}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 50, 50],
                                                "area": 2500, "iscrowd": 0}],
                               "categories": [{"id": 1, "name": "sign"}]}))
    PIL.Image.new("RGB", (100, 100)).save(tmp_path / name)
    plots._GLYPHS_SAID.clear()
    assert plot_samples(ann, tmp_path, tmp_path / "samples.png") is not None
    err = capsys.readouterr().err
    assert "\U0010fff8\U0010fff9 in the pictures' names (class names, file names, titles)" in err, err
    assert "of the class names" not in err


def test_roboflow_file_with_its_images_in_images_beside_it(tmp_path, capsys):
    """PrahasHegde/ToyDetection: train/_annotations.coco.json beside train/images/ (and a YOLO train/labels/):
    'dfine train --data' found the images there, 'dfine data check train/_annotations.coco.json' said
    'give --images, the folder its file names are relative to'; it now uses images/ as training does."""
    rf = tmp_path / "toy/train"
    image(rf / "images/a.jpg", (64, 48))
    (rf / "labels").mkdir()
    (rf / "_annotations.coco.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64,
                                                                       "height": 48}], "annotations": [],
                                                           "categories": CATS}))
    assert main(["data", "check", str(rf / "_annotations.coco.json")]) == 0
    assert f"images in {rf / 'images'}" in capsys.readouterr().out


def _yolo_set(src, *, names="names: [cup, plate]\n"):
    """A YOLO folder with a train and a val split of two images each."""
    from tests.data.datasets import yolo_labels

    for split in ("train", "val"):
        for i in range(2):
            image(src / f"images/{split}/{i}.jpg", (64, 48))
            yolo_labels(src / f"labels/{split}/{i}.txt", [f"{i} 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\n" + names)
    return src


def test_a_dataset_folder_is_checked_split_by_split_and_never_written(tmp_path, capsys, monkeypatch):
    """``dfine data check DATASET`` reads the folder as ``dfine train --data`` does: a YOLO folder
    (or its data.yaml) was "a folder; give its COCO JSON file, or convert it first"."""
    src = _yolo_set(tmp_path / "yolo")
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # another process's files in /tmp are no matter
    scratch = set(os.listdir(tempfile.gettempdir()))
    for given in (src, src / "data.yaml"):
        assert main(["data", "check", str(given), "--plot", str(tmp_path / "labels.png")]) == 0
        out = capsys.readouterr().out
        assert f"converted YOLO {given} into a temporary folder for this check (removed after it)" in out
        for split in ("train", "val"):
            assert f"{split} split of {given}: 2 images, 2 annotations, 2 categories; images in {src / 'images'}" in out
            assert PIL.Image.open(tmp_path / f"labels_{split}.png").size[0] > 0
        assert out.strip().endswith("train: OK; val: OK")
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # nothing written into the dataset
    assert set(os.listdir(tempfile.gettempdir())) - scratch == set()  # the conversion is gone
    # a COCO folder: its own files, named as they are
    (tmp_path / "coco/annotations").mkdir(parents=True)
    image(tmp_path / "coco/val/a.jpg", (64, 48))
    (tmp_path / "coco/annotations/instances_val.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
         "annotations": [_ann(1, 1, [1, 1, 10, 10])], "categories": CATS}))
    assert main(["data", "check", str(tmp_path / "coco")]) == 0
    assert f"{tmp_path / 'coco/annotations/instances_val.json'}: 1 image" in capsys.readouterr().out


def test_a_dataset_folder_with_a_cut_short_image_leaves_it_out_and_says_so(tmp_path, capsys):
    """A split with a JPEG cut short: the conversion leaves it out, as it does an unreadable file, and the
    check says so and passes (it was an error whose repair took a conversion, a --fix and a -u)."""
    src = _yolo_set(tmp_path / "yolo", names="")
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    PIL.Image.fromarray(noise).save(src / "images/val/1.jpg", quality=95)
    data = (src / "images/val/1.jpg").read_bytes()
    (src / "images/val/1.jpg").write_bytes(data[: len(data) // 2])
    assert main(["data", "check", str(src)]) == 2  # no names anywhere
    assert "give --names a,b,c" in capsys.readouterr().err
    assert main(["data", "check", str(src), "--names", "cup,plate"]) == 0
    printed = capsys.readouterr()
    assert ("val: 1 unreadable image left out: 1.jpg (truncated: the JPEG file ends before its image data does)"
            in printed.err + printed.out)
    assert printed.out.strip().endswith("train: OK; val: OK")


@pytest.mark.parametrize("extra, says", [
    # the folder's own format named in the conversion (a walk's LabelMe folder was told of YOLO, VOC or CVAT ones)
    (["--fix", "x.json"], "--fix writes one repaired annotation file: give it one split's COCO file (a YOLO folder: "
                          "dfine data convert --from yolo SRC first), not the dataset SRC"),
    (["--images", "img"], "--images is for one annotation file;"),
])
def test_options_of_one_file_given_a_dataset_folder_are_one_line_errors(tmp_path, capsys, extra, says):
    src = _yolo_set(tmp_path / "yolo")
    assert main(["data", "check", str(src), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {says.replace('SRC', str(src))}") and err.count("\n") == 1


def test_a_folder_that_is_no_dataset_names_the_command(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    assert main(["data", "check", str(tmp_path / "notes")]) == 2
    assert capsys.readouterr().err.startswith(f"error: dfine data check {tmp_path / 'notes'}: not a COCO, YOLO, VOC, "
                                              f"CVAT, LabelMe, CSV or CreateML dataset folder (")
    coco = tmp_path / "a.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": CATS}))
    assert main(["data", "check", str(coco), "--names", "a"]) == 2
    assert "--names is for a dataset folder that names no classes" in capsys.readouterr().err


def test_plot_without_matplotlib_is_said_before_any_image_is_read(tmp_path, capsys, monkeypatch):
    """A fresh ``pip install "dfine[onnx,openvino]"`` has no matplotlib: the check of a whole
    dataset ran, printed its first split and only then stopped on --plot."""
    import sys
    src = _yolo_set(tmp_path / "yolo")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for given in (src, src / "missing.json"):
        assert main(["data", "check", str(given), "--plot", str(tmp_path / "labels.png")]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == 'error: --plot needs matplotlib: pip install "dfine[plots]"\n'


def test_box_sizes_as_the_model_sees_them_at_the_training_input(tmp_path, capsys):
    """Boxes counted large in 2048x1371 photos are small at the --imgsz 320 a newcomer trains at
    (met on a public chess set: 100% large as stored, 77% small at 320); the check now also counts
    them at the model's input, each image resized to N x N as the recipes do."""
    image(tmp_path / "img" / "a.jpg", (1000, 500))
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 1000, "height": 500}], "categories": CATS,
            # 0.2 x 0.2 of the image: 128 px square at 640 (large), 64 at 320 (medium), 16 at 80 (small)
            "annotations": [_ann(1, 1, [100, 100, 200, 100]),
                            # 0.04 x 0.04: 25.6 px square at 640 (small); 40x20 px as stored (small)
                            _ann(2, 1, [10, 10, 40, 20]),
                            # 0.3 x 0.6: stored 300x300 (large); at 320 96 x 192 px (large)
                            _ann(3, 1, [0, 0, 300, 300], category_id=2)]}
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps(data))
    report = check_dataset(ann, tmp_path / "img")
    assert report.box_sizes == (1, 0, 2)
    assert report.sizes_at(640) == (1, 0, 2) and report.sizes_at(320) == (1, 1, 1) and report.sizes_at(64) == (3, 0, 0)
    assert main(["data", "check", str(ann), "--images", str(tmp_path / "img"), "--imgsz", "320"]) == 0
    out = capsys.readouterr().out
    assert ("  as the model sees them at --imgsz 320 (images resized to 320x320): small 1 (33.3%), medium 1 (33.3%), "
            "large 1 (33.3%)") in out
    assert main(["data", "check", str(ann), "--images", str(tmp_path / "img")]) == 0
    assert "at --imgsz 640 (images resized to 640x640): small 1 (33.3%), medium 0 (0.0%), large 2" in capsys.readouterr().out
    assert main(["data", "check", str(ann), "--imgsz", "100"]) == 2
    assert "--imgsz must be a positive multiple of 32" in capsys.readouterr().err


def test_split_files_made_by_hand_beside_one_images_folder_are_not_strays_of_each_other(tmp_path, capsys):
    """A walk split one COCO file into annotations/instances_{train,val}.json beside one images/: the
    train file's check listed the val images as unreferenced, and the val file's the train images. A
    stray file is still one, said once."""
    root = tmp_path / "mine"
    for split, ids in (("train", (1, 2, 3)), ("val", (4, 5))):
        write = {i: [(1, [1, 1, 20, 20])] for i in ids}
        ann = write_coco(root, CATS, write)
        (root / "annotations").mkdir(exist_ok=True)
        ann.rename(root / f"annotations/instances_{split}.json")
    assert main(["data", "check", str(root)]) == 0
    assert "unreferenced" not in capsys.readouterr().out
    image(root / "images/stray.jpg", (64, 48))
    assert main(["data", "check", str(root)]) == 0
    assert capsys.readouterr().out.count("unreferenced                  1  image files") == 1


def test_a_file_whose_every_annotation_is_crowd_is_an_error_that_fix_repairs(tmp_path, capsys):
    """CVAT's "COCO 1.0" export writes mask shapes as iscrowd=1: a walk's 248 boxes were all crowd, the
    check said "OK, training can use it as is" and training learned from 0 boxes for 2.5 minutes."""
    ann = write_coco(tmp_path, CATS, {1: [], 2: []}, crowd=[(1, [2, 2, 20, 20]), (2, [30, 10, 20, 30])])
    assert main(["data", "check", str(ann), "--images", str(tmp_path / "images")]) == 1
    out = capsys.readouterr().out
    assert "crowd_only                    2  annotations, every one of them iscrowd=1" in out and "  crowd " not in out
    fixed = tmp_path / "fixed.json"
    assert main(["data", "check", str(ann), "--images", str(tmp_path / "images"), "--fix", str(fixed)]) == 1
    assert "made 2 crowd annotations ordinary boxes (iscrowd 0, their bbox)" in capsys.readouterr().out
    assert [(a["iscrowd"], a["bbox"]) for a in load(fixed)["annotations"]] == [(0, [2, 2, 20, 20]), (0, [30, 10, 20, 30])]
    assert main(["data", "check", str(fixed), "--images", str(tmp_path / "images")]) == 0
    mixed = write_coco(tmp_path / "mixed", CATS, {1: [(1, [1, 1, 10, 10])]}, crowd=[(2, [20, 20, 10, 10])])
    assert main(["data", "check", str(mixed), "--images", str(tmp_path / "mixed/images")]) == 0  # crowd beside boxes
    assert "crowd_only" not in capsys.readouterr().out


def test_an_image_of_a_few_pixels_is_named_and_training_takes_it(tmp_path, capsys, coco128_config):
    """A 1x1 image with a box (a walk's messy folder): the check names it, and the published training
    pipeline (zoom-out, IoU crop, ...) reads it, epoch after epoch (it stopped a run with
    ZeroDivisionError in torchvision's crop)."""
    img = tmp_path / "img"
    image(img / "ok.jpg", (64, 48))
    image(img / "dot.png", (1, 1))
    images = [{"id": 1, "file_name": "ok.jpg", "width": 64, "height": 48},
              {"id": 2, "file_name": "dot.png", "width": 1, "height": 1}]
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "categories": CATS[:1],
                                    "annotations": [_ann(1, 1, [1, 2, 10, 10]), _ann(2, 2, [0, 0, 1, 1])]}))
    report = check_dataset(ann_file, img)
    assert report.findings["tiny"].ids == [2] and report.ok
    assert main(["data", "check", str(ann_file), "--images", str(img)]) == 0
    assert "tiny                          1  images under 4 px on a side" in capsys.readouterr().out
    assert "dot.png" in report.format()
    from dfine.data import build_dataset
    config = coco128_config(f"train_dataloader.dataset.img_folder={img}", f"train_dataloader.dataset.ann_file={ann_file}")
    dataset = build_dataset(config, "train")
    torch.manual_seed(0)
    for epoch in range(100):
        dataset.set_epoch(epoch)
        picture, target = dataset[1]
        assert picture.shape == (3, 640, 640) and len(target["boxes"]) <= 1


def test_the_report_says_the_most_boxes_an_image_and_when_they_pass_the_queries(tmp_path):
    """A dense walk (mosaics of cells, up to 376 boxes an image) read 'result: OK' with nothing on boxes
    an image, and D-FINE's 300 queries find at most 300 in one."""
    grid = [(1, [(i % 20) * 3.0, (i // 20) * 2.0, 2.0, 1.5]) for i in range(301)]
    ann = write_coco(tmp_path / "dense", CATS, {1: grid[:12], 2: grid, 3: []}, size=(64, 48), crowd=[(1, [0, 0, 9, 9])])
    out = check_dataset(ann, tmp_path / "dense" / "images").format()
    assert ("boxes an image: 104.3 on average, up to 301 (000002.png); 1 image holds more than D-FINE's 300 queries, each of "
            "which learns and finds one box: train with -u DFINETransformer.num_queries=N DFINEPostProcessor.num_top_queries=N "
            "(N above 301)") in out
    few = write_coco(tmp_path / "few", CATS, {1: grid[:12], 2: grid[:3]})
    assert "boxes an image: 7.5 on average, up to 12 (000001.png)\n" in check_dataset(few, tmp_path / "few" / "images").format()


def test_sample_titles_cut_long_file_names_in_the_middle():
    """Tiles of one photo (``PHOTO_x0_y0.jpg``, ``PHOTO_x512_y0.jpg``) were titled alike: their names were cut
    at the end, where the tile's position is (a walk)."""
    from dfine.text import cut_middle as _file_tick  # the samples' and the prediction grid's titles
    photo = "b3b002461f1c6b432e22964549767e5f_jpg.rf.0123456789abcdef"
    first, second = (_file_tick(f"{photo}_x{x}_y0.jpg") for x in (0, 512))
    assert first != second and first.endswith("_x0_y0.jpg") and second.endswith("_x512_y0.jpg")
    assert len(first) <= 36 and first.startswith("b3b0024") and "\u2026" in first
    assert _file_tick("a.jpg") == "a.jpg"


def test_plot_into_a_folder_or_as_a_jpeg(tmp_path, capsys):
    """``--plot plots/`` (a walk) wrote ``plots_train.png`` beside the folder; ``--plot labels.jpg`` wrote
    PNG bytes under a .jpg name; ``--plot labels.txt`` ended in matplotlib's traceback."""
    src = _yolo_set(tmp_path / "yolo")
    (tmp_path / "there").mkdir()
    for given, folder in ((tmp_path / "there", tmp_path / "there"), (f"{tmp_path / 'new'}/", tmp_path / "new")):
        assert main(["data", "check", str(src), "--plot", str(given)]) == 0
        assert sorted(p.name for p in folder.iterdir()) == [
            "labels_train.png", "labels_train_samples.png", "labels_val.png", "labels_val_samples.png"]
    assert not list(tmp_path.glob("*_train*.png"))  # nothing beside them
    assert main(["data", "check", str(src), "--plot", str(tmp_path / "labels.jpg")]) == 0
    for name in ("labels_train.jpg", "labels_val_samples.jpg"):
        assert PIL.Image.open(tmp_path / name).format == "JPEG"
    capsys.readouterr()
    assert main(["data", "check", str(src), "--plot", str(tmp_path / "labels.txt")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --plot {tmp_path / 'labels.txt'}: give a picture file "
                                               f"(.png, .jpg, .jpeg, .pdf, .svg) or a folder")


def test_same_bytes_groups_copies_and_reads_only_files_of_one_size(tmp_path):
    """Files of one size are compared by content, the first 4 KiB then all of it; others are never read."""
    from dfine.data.image_io import same_bytes
    head = bytes(range(256)) * 300  # 76,800 bytes: past the first 4 KiB read first
    files = {"a": head + b"x", "b": head + b"y", "c": head + b"x", "d": b"short", "e": head + b"x"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = {k: str(tmp_path / k) for k in files}
    sizes = {k: len(v) for k, v in files.items()}
    assert same_bytes(paths, sizes) == [["a", "c", "e"]]  # b differs after the head; d has no file of its size
    assert same_bytes(paths) == [["a", "c", "e"]]  # the sizes read from the files
    paths["gone"], sizes["gone"] = str(tmp_path / "gone"), len(head) + 1  # unreadable: in no group
    paths["d2"], sizes["d2"] = str(tmp_path / "d"), 5
    assert same_bytes(paths, sizes) == [["a", "c", "e"], ["d", "d2"]]
    assert same_bytes(paths) == [["a", "c", "e"], ["d", "d2"]]  # a file not there: in no group


def test_copies_of_one_photo_are_said_within_and_across_splits(tmp_path, capsys):
    """A walk's YOLO folder held every photo twice, one copy labelled, one not (read as a background image,
    'fine'), and a seeded split put copies of training photos in val: the check names both."""
    src = tmp_path / "toys"
    for split, i in (("train", 0), ("train", 1), ("val", 2)):
        image(src / f"images/{split}/img{i}.jpg", (64, 48 + i))  # distinct photos
        yolo_labels(src / f"labels/{split}/img{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    # the photo saved again under Roboflow's name, without labels, beside it; and train's img1 again in val
    (src / "images/train/IMG_0.jpg").write_bytes((src / "images/train/img0.jpg").read_bytes())
    (src / "images/val/copy1.jpg").write_bytes((src / "images/train/img1.jpg").read_bytes())
    yolo_labels(src / "labels/val/copy1.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [toy]\n")
    assert main(["data", "check", str(src)]) == 0  # warnings only
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "background_copy" in x)
    assert "1  background images whose file holds the same bytes as an image with boxes" in line
    assert "IMG_0.jpg" in line
    assert ("warning: photos in two splits (files of the same bytes): val: 1 of train's (e.g. val/copy1.jpg = "
            "train/img1.jpg): each is scored on what another split saw; keep each photo in one split") in out
    # one COCO file listing a photo twice: the second is said
    ann = write_coco(tmp_path / "twice", [{"id": 1, "name": "a"}], {1: [(1, [1, 1, 9, 9])], 2: [(1, [2, 2, 9, 9])]})
    folder = tmp_path / "twice/images"
    (folder / "000002.png").write_bytes((folder / "000001.png").read_bytes())
    report = check_dataset(ann, folder)
    assert report.count("same_bytes") == 1 and report.count("background_copy") == 0
    # training's own check says a background copy of a labelled photo, with what to do
    data = json.loads(ann.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == 1]
    ann.write_text(json.dumps(data))
    said = []
    preflight(ann, folder, log=said.append)
    assert said == [f"train data ({ann}): 1 background image whose file is a labelled photo's copy, used as "
                    f"background, which teaches the objects as background: remove them: image ids 2 (000002.png)"]


def test_an_image_the_conversion_left_out_is_not_listed_again_as_a_stray(tmp_path, capsys):
    """A walk's cut JPEG was said as left out by the conversion, then listed by the check of each split as an
    image file that no entry refers to; the converted files now name what they left out."""
    src = tmp_path / "set"
    for i in range(4):
        image(src / f"images/{i}.jpg", (64, 48))
        yolo_labels(src / f"labels/{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "images/cut.jpg").write_bytes(b"not an image")
    yolo_labels(src / "labels/cut.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "classes.txt").write_text("toy\n")
    assert main(["data", "check", str(src)]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable image left out: cut.jpg" in out and "unreferenced" not in out


def test_pictures_beside_a_split_file_do_not_make_its_images_folder(tmp_path):
    """A walk's ``dfine eval -o DATA/annotations`` wrote its pictures beside ``annotations/custom_val.json``: that
    folder then held images and was taken for the file's, every image 'missing'. It must hold images it names."""
    from dfine.data.check import default_images
    ann = write_coco(tmp_path / "tmp", [{"id": 1, "name": "a"}], {1: [(1, [1, 1, 9, 9])]})
    (tmp_path / "set/annotations").mkdir(parents=True)
    ann = ann.rename(tmp_path / "set/annotations/custom_val.json")
    (tmp_path / "tmp/images").rename(tmp_path / "set/val2017")
    image(tmp_path / "set/annotations/eval_predictions.png")
    assert default_images(ann) == tmp_path / "set/val2017"
    # Roboflow's split/_annotations.coco.json beside its images: still its own folder
    rf = write_coco(tmp_path / "rf", [{"id": 1, "name": "a"}], {1: [(1, [1, 1, 9, 9])]})
    for p in (tmp_path / "rf/images").iterdir():
        p.rename(tmp_path / "rf" / p.name)
    assert default_images(rf) == tmp_path / "rf"


def test_a_file_listed_in_two_splits_is_said_as_such_with_each_earlier_split(tmp_path):
    """A VOC set's ImageSets listed 3 test images in train and 6 in val (a walk): the line said 'under other
    names' with the same name on both sides, and credited all 9 to train."""
    from dfine.data.check import copies_across
    folder = tmp_path / "images"
    for i in range(5):
        image(folder / f"{i}.jpg")

    def split_file(name, ids):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48}
                                               for i in ids], "annotations": [], "categories": []}))
        return path, folder
    splits = {"train": split_file("train", [0, 1, 2]), "val": split_file("val", [3]), "test": split_file("test", [1, 3, 4])}
    assert copies_across(splits) == (
        "warning: photos in two splits (files of the same bytes): test: 1 of train's, 1 of val's (e.g. 1.jpg, listed in "
        "both): each is scored on what another split saw; keep each photo in one split")
    assert copies_across(splits, only="val") is None
    assert copies_across(splits, only="test").startswith("warning: photos in two splits (files of the same bytes): test:")


def test_file_names_are_read_from_a_coco_file_without_parsing_it(tmp_path):
    """copies_across reads every split file at each training start: COCO's 450 MB train file took seconds and
    gigabytes to parse; its file names are found in its bytes, escapes decoded, as json reads them."""
    from dfine.data.convert import file_names_in
    images = [{"id": 1, "file_name": 'a b/\u00e9t\u00e9 "1" \\ x.jpg'}, {"id": 2, "file_name": "c.jpg"}]
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": images, "annotations": [{"id": 1, "image_id": 1}]}, ensure_ascii=True))
    assert file_names_in(path) == [im["file_name"] for im in images]
    assert file_names_in(path, 40) == []  # the head only: not the whole first entry
    assert file_names_in(tmp_path / "missing.json") == []
