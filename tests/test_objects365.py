"""Objects365 preparation (dfine obj365 split|resize) on a tiny synthetic zhiyuan_objv2 layout."""

from __future__ import annotations

import json
import multiprocessing
import os
import runpy
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from PIL import Image

from dfine.cli import main
from dfine.data import objects365 as o365
from dfine.errors import DfineError

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]


def _write_split(base: Path, subset: str, sizes: List[Tuple[int, int]], first_id: int) -> Dict:
    """Images ``images/v1/patch0/<id>.jpg`` of ``sizes`` (w, h) and one full-image box each, plus
    ``{subset}/zhiyuan_objv2_{subset}.json``."""
    folder = base / subset / "images" / "v1" / "patch0"
    folder.mkdir(parents=True)
    images, anns = [], []
    for i, (w, h) in enumerate(sizes):
        iid = first_id + i
        Image.new("RGB", (w, h), (i * 40 % 256, 90, 160)).save(folder / f"{iid}.jpg")
        images.append({"id": iid, "file_name": f"images/v1/patch0/{iid}.jpg", "width": w, "height": h})
        anns.append({"id": iid * 10, "image_id": iid, "category_id": 1, "bbox": [0, 0, w, h], "area": w * h,
                     "iscrowd": 0})
        anns.append({"id": iid * 10 + 1, "image_id": iid, "category_id": 2, "bbox": [10, 20, 30, 40], "area": 1200,
                     "iscrowd": 0})
    data = {"images": images, "annotations": anns, "categories": CATEGORIES, "licenses": []}
    (base / subset / f"zhiyuan_objv2_{subset}.json").write_text(json.dumps(data))
    return data


@pytest.fixture
def base(tmp_path: Path) -> Path:
    _write_split(tmp_path, "train", [(800, 400), (300, 200)], first_id=1)
    _write_split(tmp_path, "val", [(1001, 500), (640, 480), (500, 1000), (200, 100), (1280, 960)], first_id=100)
    return tmp_path


def _load(path: Path) -> Dict:
    return json.loads(path.read_text())


def _tmp_files(base: Path) -> List[Path]:
    return [p for p in base.rglob("*") if p.name.endswith(".tmp")]


# ---- split ----------------------------------------------------------------------------------

def test_split_counts_paths_and_order(base: Path):
    s = o365.split_val(base, new_val_size=2, progress=False)
    val, train = _load(base / "val/new_zhiyuan_objv2_val.json"), _load(base / "train/new_zhiyuan_objv2_train.json")
    assert [im["id"] for im in val["images"]] == [100, 101]
    assert sorted(a["image_id"] for a in val["annotations"]) == [100, 100, 101, 101]
    assert val["images"][0]["file_name"] == "images/v1/patch0/100.jpg"  # val keeps its paths
    # moved val images first (re-rooted under images_from_val), then the original train images
    assert [im["id"] for im in train["images"]] == [102, 103, 104, 1, 2]
    assert [im["file_name"] for im in train["images"][:2]] == ["images_from_val/v1/patch0/102.jpg",
                                                                "images_from_val/v1/patch0/103.jpg"]
    assert train["images"][3]["file_name"] == "images/v1/patch0/1.jpg"
    assert len(train["annotations"]) == 2 * 5 and {a["image_id"] for a in train["annotations"]} == {102, 103, 104, 1, 2}
    assert train["categories"] == CATEGORIES and "licenses" in train
    assert (s.val_images, s.val_annotations, s.train_images, s.train_annotations, s.moved_images) == (2, 4, 5, 10, 3)
    # the original files are untouched
    assert len(_load(base / "val/zhiyuan_objv2_val.json")["images"]) == 5
    assert not _tmp_files(base)


def test_split_rerun_skips_unless_forced(base: Path):
    o365.split_val(base, new_val_size=2, progress=False)
    assert o365.split_val(base, new_val_size=4, progress=False).skipped
    assert len(_load(base / "val/new_zhiyuan_objv2_val.json")["images"]) == 2
    s = o365.split_val(base, new_val_size=4, force=True, progress=False)
    assert not s.skipped and (s.val_images, s.moved_images) == (4, 1)


def test_split_larger_than_val_moves_nothing(base: Path):
    s = o365.split_val(base, new_val_size=5000, prefix="x", progress=False)
    assert (s.val_images, s.moved_images, s.train_images) == (5, 0, 2)
    assert (base / "val/x_zhiyuan_objv2_val.json").is_file()


def test_split_crash_leaves_no_partial_json(base: Path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(o365.json, "dump", boom)
    with pytest.raises(RuntimeError):
        o365.split_val(base, new_val_size=2, progress=False)
    assert not (base / "val/new_zhiyuan_objv2_val.json").exists() and not _tmp_files(base)


# ---- resize arithmetic ----------------------------------------------------------------------

@pytest.mark.parametrize("size, expected", [((800, 400), (640, 320)), ((1001, 500), (640, 319)),
                                            ((500, 1000), (320, 640)), ((640, 480), (640, 480)),
                                            ((200, 100), (200, 100)), ((1280, 960), (640, 480))])
def test_resized_size(size, expected):
    assert o365.resized_size(*size, max_size=640) == expected


def test_scale_annotation_by_hand():
    ann = {"id": 7, "bbox": [100, 40, 200, 80], "area": 16000, "category_id": 3}
    out = o365.scale_annotation(ann, 0.8, 0.8)  # 800x400 -> 640x320
    assert out["bbox"] == pytest.approx([80, 32, 160, 64]) and out["area"] == pytest.approx(10240)
    assert out["id"] == 7 and ann["bbox"] == [100, 40, 200, 80]  # input untouched
    # 1001x500 -> 640x319: a full-image box becomes the full new image
    full = o365.scale_annotation({"bbox": [0, 0, 1001, 500], "area": 500500}, 640 / 1001, 319 / 500)
    assert full["bbox"] == pytest.approx([0, 0, 640, 319]) and full["area"] == pytest.approx(640 * 319)


def test_resized_name():
    assert o365.resized_name("images/v1/patch0/a.b.jpg") == "images/v1/patch0/a.b_resized.jpg"


# ---- resize ---------------------------------------------------------------------------------

def _resize_val(base: Path, workers: int = 0) -> o365.ResizeSummary:
    o365.split_val(base, new_val_size=5, progress=False)
    return o365.resize_split(base, "val", 640, workers=workers, progress=False)


def test_resize_images_and_annotations(base: Path):
    s = _resize_val(base)
    out = _load(base / "val/new_zhiyuan_objv2_val_resized.json")
    by_id = {im["id"]: im for im in out["images"]}
    assert (by_id[100]["file_name"], by_id[100]["width"], by_id[100]["height"]) == \
        ("images/v1/patch0/100_resized.jpg", 640, 319)
    assert by_id[101]["file_name"] == "images/v1/patch0/101.jpg"  # 640x480 needs nothing
    assert (by_id[102]["width"], by_id[102]["height"]) == (320, 640)
    with Image.open(base / "val" / by_id[104]["file_name"]) as im:
        assert im.size == (640, 480)
    assert (base / "val/images/v1/patch0/104.jpg").is_file()  # the original stays
    anns = {a["id"]: a for a in out["annotations"]}
    assert anns[1000]["bbox"] == pytest.approx([0, 0, 640, 319])
    assert anns[1001]["bbox"] == pytest.approx([10 * 640 / 1001, 20 * 319 / 500, 30 * 640 / 1001, 40 * 319 / 500])
    assert anns[1041]["bbox"] == pytest.approx([5, 10, 15, 20]) and anns[1041]["area"] == pytest.approx(300)
    assert anns[1031] == {"id": 1031, "image_id": 103, "category_id": 2, "bbox": [10, 20, 30, 40], "area": 1200,
                          "iscrowd": 0}
    assert (s.images, s.resized, s.reused, s.annotations, s.failed) == (5, 3, 0, 10, [])
    assert not _tmp_files(base)


def test_resize_rerun_skips_done_images(base: Path):
    _resize_val(base)
    done = base / "val/images/v1/patch0/104_resized.jpg"
    stamp = done.stat().st_mtime_ns
    first = (base / "val/new_zhiyuan_objv2_val_resized.json").read_text()
    s = o365.resize_split(base, "val", 640, workers=0, progress=False)
    assert (s.resized, s.reused) == (0, 3) and done.stat().st_mtime_ns == stamp
    assert (base / "val/new_zhiyuan_objv2_val_resized.json").read_text() == first
    done.write_bytes(b"half a jpeg")  # a broken leftover is redone
    assert o365.resize_split(base, "val", 640, workers=0, progress=False).resized == 1


def test_resize_parallel_matches_serial(base: Path):
    _resize_val(base, workers=0)
    serial = (base / "val/new_zhiyuan_objv2_val_resized.json").read_text()
    for p in base.rglob("*_resized.jpg"):
        p.unlink()
    s = o365.resize_split(base, "val", 640, workers=2, progress=False)
    assert s.resized == 3 and (base / "val/new_zhiyuan_objv2_val_resized.json").read_text() == serial


def test_resize_leaves_out_unreadable_image(base: Path):
    (base / "val/images/v1/patch0/102.jpg").write_bytes(b"not an image")
    s = _resize_val(base)
    out = _load(base / "val/new_zhiyuan_objv2_val_resized.json")
    assert 102 not in {im["id"] for im in out["images"]}
    assert 102 not in {a["image_id"] for a in out["annotations"]}
    assert len(s.failed) == 1 and s.failed[0][0].endswith("102.jpg") and "unreadable" in str(s)


def test_full_pipeline_with_linked_val_images(base: Path, capsys):
    assert main(["obj365", "split", "--base-dir", str(base), "--new-val-size", "2", "-q", "--link-val-images"]) == 0
    assert (base / "train/images_from_val").is_symlink()
    assert main(["obj365", "resize", "--base-dir", str(base), "-w", "0", "-q"]) == 0
    out = capsys.readouterr().out
    assert "new val: 2 images" in out and "train: 5 images" in out and "val: 2 images" in out
    train = _load(base / "train/new_zhiyuan_objv2_train_resized.json")
    names = [im["file_name"] for im in train["images"]]
    assert names[0] == "images_from_val/v1/patch0/102_resized.jpg" and names[3] == "images/v1/patch0/1_resized.jpg"
    assert all((base / "train" / n).is_file() for n in names)


# ---- errors ---------------------------------------------------------------------------------

def _error(argv: List[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_missing_base_dir(tmp_path: Path, capsys):
    err = _error(["obj365", "split", "--base-dir", str(tmp_path / "nope")], capsys)
    assert str(tmp_path / "nope") in err


def test_missing_json(tmp_path: Path, capsys):
    (tmp_path / "train").mkdir()
    err = _error(["obj365", "split", "--base-dir", str(tmp_path)], capsys)
    assert "zhiyuan_objv2_val.json not found" in err


def test_unreadable_and_non_coco_json(base: Path, capsys):
    (base / "val/zhiyuan_objv2_val.json").write_text("{broken")
    assert "zhiyuan_objv2_val.json is not valid JSON" in _error(["obj365", "split", "--base-dir", str(base)], capsys)
    (base / "val/zhiyuan_objv2_val.json").write_text(json.dumps({"images": []}))
    assert "is not COCO format" in _error(["obj365", "split", "--base-dir", str(base)], capsys)


def test_resize_before_split_names_the_json(base: Path, capsys):
    err = _error(["obj365", "resize", "--base-dir", str(base), "-q"], capsys)
    assert "new_zhiyuan_objv2_train.json not found" in err


def test_resize_without_val_images_in_train(base: Path, capsys):
    o365.split_val(base, new_val_size=2, progress=False)
    err = _error(["obj365", "resize", "--base-dir", str(base), "--subsets", "train", "-q"], capsys)
    assert "images_from_val not found" in err and "--link-val-images" in err


@pytest.mark.parametrize("workers", [0, 2])
def test_resize_write_failure_stops_without_json(base: Path, monkeypatch, workers):
    def full(self, fp, *a, **k):
        raise OSError(28, "No space left on device")
    if workers and multiprocessing.get_start_method() != "fork":
        pytest.skip("the patched save reaches worker processes only when they are forked")
    monkeypatch.setattr(Image.Image, "save", full)
    o365.split_val(base, new_val_size=5, progress=False)
    with pytest.raises(DfineError, match=r"cannot write .*_resized.jpg: .*No space left"):
        o365.resize_split(base, "val", workers=workers, progress=False)
    assert not (base / "val/new_zhiyuan_objv2_val_resized.json").exists() and not _tmp_files(base)


def test_resize_all_unreadable(base: Path):
    o365.split_val(base, new_val_size=5, progress=False)
    for p in (base / "val/images/v1/patch0").iterdir():
        p.write_bytes(b"")
    with pytest.raises(DfineError, match="none of the 5 images"):
        o365.resize_split(base, "val", workers=0, progress=False)
    assert not (base / "val/new_zhiyuan_objv2_val_resized.json").exists()


# ---- published-path shims -------------------------------------------------------------------

def _shim(script: str, args: List[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    return e.value.code


def test_shims_keep_published_arguments(base: Path, monkeypatch, capsys):
    assert _shim("tools/dataset/remap_obj365.py", ["--base_dir", str(base), "--new_val_size", "5"], monkeypatch) == 0
    assert _shim("tools/dataset/resize_obj365.py", ["--base_dir", str(base), "--max_size", "500", "--num_workers", "0"],
                 monkeypatch) == 0
    val = _load(base / "val/new_zhiyuan_objv2_val_resized.json")
    assert max(max(im["width"], im["height"]) for im in val["images"]) == 500
    assert "train: 2 images" in capsys.readouterr().out
    assert os.path.isfile(base / "train/new_zhiyuan_objv2_train_resized.json")
