"""COCO-format dataset: coco128 counts, label spaces, category-id mapping, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch

from dfine.config import ConfigError, load_config, resolve_num_classes
from dfine.data import CocoDetection, DatasetError, LabelMap, build_dataset
from dfine.data.mscoco import MSCOCO_CATEGORY_IDS

from .conftest import RECIPE, write_coco


def _cats(*pairs, supercategory="thing"):
    return [{"id": i, "name": n, "supercategory": supercategory} for i, n in pairs]


# ---------------------------------------------------------------- coco128 (real data)

def test_coco128_counts(coco128):
    ds = CocoDetection(coco128 / "train2017", coco128 / "annotations" / "instances_train2017.json")
    assert len(ds) == 128
    labels = [ds.load_item(i)[1]["labels"] for i in range(len(ds))]
    allt = torch.cat(labels)
    assert allt.numel() == 929  # 939 boxes less the 10 crowd ones
    assert allt.dtype == torch.int64 and allt.min() >= 0 and allt.max() <= 79
    assert ds.label_map.num_classes == 80
    # contiguous labels in sorted id order coincide with the published COCO table
    assert ds.label_map.category_ids == MSCOCO_CATEGORY_IDS
    assert ds.label_map.name_of(0) == "person" and ds.label_map.category_of(79) == 90


def test_coco128_item_without_transforms(coco128):
    ds = CocoDetection(coco128 / "train2017", coco128 / "annotations" / "instances_train2017.json")
    image, target = ds[0]  # 000000000009.jpg, 640x480
    assert image.shape == (3, 480, 640) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["image_id"].item() == 9
    assert target["orig_size"].tolist() == [640, 480]
    boxes = target["boxes"]
    assert boxes.shape == (len(target["labels"]), 4)
    assert (boxes >= 0).all() and (boxes <= 1).all() and (boxes[:, 2:] > 0).all()


def test_coco128_remap_mscoco_matches_published_table(coco128_config):
    cfg = coco128_config()
    assert cfg.remap_mscoco_category
    ds = build_dataset(cfg, "train")
    assert ds.label_map.mode == "mscoco"
    assert ds.label_map.label_of(1) == 0 and ds.label_map.label_of(90) == 79 and ds.label_map.label_of(13) == 11
    assert resolve_num_classes(cfg, ds.label_map).num_classes == 80


# ---------------------------------------------------------------- category-id mapping

@pytest.mark.parametrize("ids", [(0, 1, 2), (1, 2, 3), (3, 7, 42)], ids=["0-based", "1-based", "gaps"])
def test_contiguous_labels_in_sorted_id_order(tmp_path, ids):
    # categories listed out of order on purpose: labels follow sorted ids, not file order
    cats = _cats((ids[2], "c"), (ids[0], "a"), (ids[1], "b"))
    ann = write_coco(tmp_path, cats, {1: [(ids[0], [1, 1, 10, 10]), (ids[2], [5, 5, 20, 20])],
                                      2: [(ids[1], [0, 0, 30, 30])]})
    ds = CocoDetection(tmp_path / "images", ann)
    lm = ds.label_map
    assert lm.num_classes == 3
    assert lm.category_ids == ids and lm.names == ("a", "b", "c")
    assert ds[0][1]["labels"].tolist() == [0, 2]
    assert ds[1][1]["labels"].tolist() == [1]
    assert lm.category_id_table()[torch.tensor([2, 0, 1])].tolist() == [ids[2], ids[0], ids[1]]


def test_roboflow_placeholder_category_gets_no_label(tmp_path):
    cats = [{"id": 0, "name": "cells", "supercategory": "none"},
            {"id": 1, "name": "Platelets", "supercategory": "cells"},
            {"id": 2, "name": "RBC", "supercategory": "cells"},
            {"id": 3, "name": "WBC", "supercategory": "cells"}]
    ann = write_coco(tmp_path, cats, {1: [(1, [0, 0, 5, 5]), (3, [10, 10, 5, 5])], 2: [(2, [1, 1, 9, 9])]})
    ds = CocoDetection(tmp_path / "images", ann)
    assert ds.label_map.category_ids == (1, 2, 3)
    assert ds.label_map.names == ("Platelets", "RBC", "WBC")
    assert ds[0][1]["labels"].tolist() == [0, 2]
    with pytest.raises(DatasetError, match="category id 0 has no class label"):
        ds.label_map.label_of(0)


def test_unused_ordinary_category_keeps_its_label(tmp_path):
    # an unused category that is nobody's supercategory is a real (rare) class
    ann = write_coco(tmp_path, _cats((0, "a"), (1, "b")), {1: [(1, [0, 0, 5, 5])]})
    assert CocoDetection(tmp_path / "images", ann).label_map.category_ids == (0, 1)


def test_crowd_boxes_left_out_and_boxes_clipped(tmp_path):
    ann = write_coco(tmp_path, _cats((1, "a")), {1: [(1, [50, 40, 30, 30]), (1, [10, 10, 0, 5])]},
                     crowd=[(1, [0, 0, 20, 20])], size=(64, 48))
    image, target = CocoDetection(tmp_path / "images", ann).load_item(0)
    # crowd box gone, zero-width box gone, the other clipped to the 64x48 image
    assert target["boxes"].tolist() == [[50.0, 40.0, 64.0, 48.0]]


def test_category_ids_as_labels(tmp_path):
    ann = write_coco(tmp_path, _cats((1, "a"), (3, "c")), {1: [(3, [0, 0, 5, 5])]})
    ds = CocoDetection(tmp_path / "images", ann, label_mode="category_id")
    assert ds.label_map.num_classes == 4
    assert ds.label_map.category_ids == (-1, 1, -1, 3)
    assert ds[0][1]["labels"].tolist() == [3]


def test_mscoco_mode_rejects_foreign_ids(tmp_path):
    ann = write_coco(tmp_path, _cats((1, "person"), (95, "robot")), {1: [(1, [0, 0, 5, 5])]})
    with pytest.raises(DatasetError, match=r"category id 95 is not a COCO category.*remap_mscoco_category: false"):
        CocoDetection(tmp_path / "images", ann, label_mode="mscoco")


def test_label_map_round_trip(tmp_path):
    ann = write_coco(tmp_path, _cats((4, "x"), (9, "y")), {1: [(9, [0, 0, 5, 5])]})
    lm = CocoDetection(tmp_path / "images", ann).label_map
    back = LabelMap.from_dict(json.loads(json.dumps(lm.to_dict())))
    assert back.category_ids == lm.category_ids and back.names == lm.names and back.mode == lm.mode


# ---------------------------------------------------------------- num_classes from the annotations

def _custom_cfg(tmp_path, ann, *overrides):
    root = tmp_path / "images"
    return load_config(RECIPE, [f"train_dataloader.dataset.img_folder={root}", f"train_dataloader.dataset.ann_file={ann}",
                                "remap_mscoco_category=false", *overrides])


def test_num_classes_taken_from_annotations(tmp_path):
    ann = write_coco(tmp_path, _cats((1, "a"), (2, "b"), (5, "c")), {1: [(5, [0, 0, 5, 5])]})
    cfg = _custom_cfg(tmp_path, ann, "num_classes=null")
    assert cfg.num_classes is None
    ds = build_dataset(cfg, "train")
    assert resolve_num_classes(cfg, ds.label_map).num_classes == 3


def test_num_classes_disagreeing_with_annotations_is_one_line_error(tmp_path):
    ann = write_coco(tmp_path, _cats((1, "a"), (2, "b"), (5, "c")), {1: [(5, [0, 0, 5, 5])]})
    cfg = _custom_cfg(tmp_path, ann)  # num_classes: 80 from the COCO dataset file
    ds = build_dataset(cfg, "train")
    with pytest.raises(ConfigError) as err:
        resolve_num_classes(cfg, ds.label_map)
    msg = str(err.value)
    assert "\n" not in msg
    assert "num_classes=80" in msg and "has 3 classes" in msg and str(ann) in msg
    assert "coco_detection.yml" in msg  # where the 80 came from


# ---------------------------------------------------------------- one-line errors

def test_missing_image_folder(tmp_path):
    ann = write_coco(tmp_path, _cats((1, "a")), {1: []})
    with pytest.raises(DatasetError, match=r"image folder .*nowhere not found") as err:
        CocoDetection(tmp_path / "nowhere", ann)
    assert "\n" not in str(err.value)


def test_missing_annotation_file(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match=r"annotation file .*missing\.json not found"):
        CocoDetection(tmp_path / "images", tmp_path / "missing.json")


@pytest.mark.parametrize("content, why", [("{not json", "not valid JSON"),
                                          ('{"images": [], "annotations": []}', "no 'categories' list"),
                                          ("[1, 2]", "not COCO format")])
def test_not_coco_json(tmp_path, content, why):
    (tmp_path / "images").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(DatasetError) as err:
        CocoDetection(tmp_path / "images", bad)
    assert why in str(err.value) and str(bad) in str(err.value) and "\n" not in str(err.value)


def test_annotation_with_unknown_category(tmp_path):
    ann = write_coco(tmp_path, _cats((1, "a")), {1: [(7, [0, 0, 5, 5])]})
    with pytest.raises(DatasetError, match="category id 7, which has no class label"):
        CocoDetection(tmp_path / "images", ann)


def test_missing_image_file_names_it(tmp_path):
    ann = write_coco(tmp_path, _cats((1, "a")), {1: [(1, [0, 0, 5, 5])]})
    (tmp_path / "images" / "000001.png").unlink()
    ds = CocoDetection(tmp_path / "images", ann)
    with pytest.raises(DatasetError, match=r"image .*000001\.png listed in .*annotations\.json not found"):
        ds[0]


def test_voc_dataset_type_is_refused_with_a_hint():
    cfg = load_config(RECIPE.parents[1] / "dataset" / "voc_detection.yml")
    with pytest.raises(ConfigError, match="VOCDetection is not supported; convert the dataset to COCO format"):
        build_dataset(cfg, "train")


def test_rounding_noise_at_the_border_is_not_counted_as_clipped():
    from dfine.data.coco import box_repairs

    # YOLO labels with 6 decimals come back ~0.0003 px past the border: not a repair worth reporting
    boxes = np.array([[534.0003, 371.0, 106.0, 102.0], [10.0, 400.0001, 80.0, 80.0002],
                      [-0.5, 10.0, 20.0, 20.0], [600.0, 10.0, 40.5, 20.0]])
    repairs = box_repairs(boxes, np.array([[640, 480]] * 4), np.array([1, 2, 3, 4]))
    assert repairs.clipped == (3, 4) and repairs.invalid == () and repairs.outside == ()


def test_an_image_larger_than_training_can_use_is_read_shrunk_with_its_boxes(tmp_path):
    """Phone photos at a small --imgsz: a walk measured 10-17 s per step while the augmentations ran on
    12 MP images. Read shrunk to a short side, the image keeps its proportions, the boxes follow it, and
    orig_size stays the file's; the normalised boxes after the transforms are those of the whole image."""
    ann = write_coco(tmp_path, _cats((1, "a")), {1: [(1, [40, 30, 200, 120])]}, size=(400, 300))
    ds = CocoDetection(tmp_path / "images", ann)
    whole, target = ds.load_item(0)
    small, shrunk = ds.load_item(0, short_side=100)
    assert whole.size == (400, 300) and small.size == (133, 100)
    assert shrunk["orig_size"].tolist() == target["orig_size"].tolist() == [400, 300]
    assert torch.allclose(shrunk["boxes"], target["boxes"] * torch.tensor([133 / 400, 100 / 300] * 2))
    assert tuple(shrunk["boxes"].canvas_size) == (100, 133)
    assert ds.load_item(0, short_side=300)[0].size == (400, 300)  # not larger: read as it is
    assert ds.larger_than(100) == (1, (400, 300)) and ds.larger_than(300) == (0, (0, 0))


def test_a_jpeg_is_decoded_at_a_reduced_scale_then_shrunk_in_its_exif_orientation(tmp_path):
    """The JPEG decoder's own reduced scale (several times faster) and EXIF rotation: the shrunk image is
    the shown one, its short side the one asked for."""
    from dfine.data.image_io import open_image_sized
    stored = PIL.Image.fromarray(np.tile(np.arange(800, dtype=np.uint8)[None, :, None] // 4, (600, 1, 3)))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90: shown 600 x 800
    stored.save(tmp_path / "p.jpg", exif=exif.tobytes(), quality=95)
    image, matched, full = open_image_sized(tmp_path / "p.jpg", (600, 800), short_side=150)
    assert matched and full == (600, 800) and image.size == (150, 200)
    whole, _, _ = open_image_sized(tmp_path / "p.jpg", (600, 800))
    expected = np.asarray(whole.resize((150, 200), PIL.Image.BILINEAR), dtype=np.float32)
    assert np.abs(np.asarray(image, dtype=np.float32) - expected).mean() < 2.0
    # a short side the decoder's scales (1/2, 1/4, 1/8) do not reach: read at 1/2, then shrunk to it
    # (the target was taken from the half-size read: 600 x 800 at 250 px became 500 x 667, upsampled)
    image, _, full = open_image_sized(tmp_path / "p.jpg", (600, 800), short_side=250)
    assert full == (600, 800) and image.size == (250, 333)


def test_a_file_name_written_on_windows_is_read(tmp_path):
    """images\\\\a.png (a COCO file written on Windows, Label Studio's) was 'not found' on Linux."""
    ann = write_coco(tmp_path, _cats((1, "a")), {1: [(1, [4, 4, 20, 20])]})
    data = json.loads(ann.read_text())
    (tmp_path / "images/sub").mkdir()
    (tmp_path / "images" / data["images"][0]["file_name"]).rename(tmp_path / "images/sub/a.png")
    data["images"][0]["file_name"] = "sub\\a.png"
    ann.write_text(json.dumps(data))
    image, target = CocoDetection(tmp_path / "images", ann).load_item(0)
    assert image.size == (64, 48) and target["boxes"].tolist() == [[4.0, 4.0, 24.0, 24.0]]
