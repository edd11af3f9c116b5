"""The synthetic shapes dataset: boxes match the drawn pixels, generation is deterministic,
and the COCO files load with the package's own dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfine.data.coco import CocoDetection, read_coco_json
from dfine.demo.shapes import CLASSES, Shape, ShapesSpec, make_shapes_dataset, random_background, render


def _flat(width=64, height=48, value=0):
    return np.full((height, width, 3), value, np.uint8)


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_render_box_is_the_drawn_extent(label):
    image, boxes = render([Shape(label, (10.0, 8.0, 40.0, 30.0), (255, 0, 0))], _flat())
    red = np.asarray(image)[..., 0] >= 128
    ys, xs = np.nonzero(red)
    assert boxes == [(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))]
    assert boxes[0] == pytest.approx((10, 8, 40, 30), abs=1)


def test_render_border_order_and_outside():
    shapes = [Shape(1, (-10.0, 5.0, 20.0, 25.0), (0, 255, 0)),    # cut by the left border
              Shape(1, (10.0, 10.0, 30.0, 30.0), (0, 0, 255)),    # on top of the first
              Shape(0, (70.0, 5.0, 90.0, 25.0), (255, 0, 0))]     # outside the frame
    image, boxes = render(shapes, _flat())
    pixels = np.asarray(image)
    assert boxes[0] == (0.0, 5.0, 20.0, 25.0)
    assert boxes[1] == (10.0, 10.0, 30.0, 30.0)
    assert boxes[2] is None
    assert tuple(pixels[15, 15]) == (0, 0, 255)  # the later shape covers the earlier one
    assert tuple(pixels[15, 5]) == (0, 255, 0)
    with pytest.raises(ValueError, match="uint8"):
        render(shapes, _flat().astype(np.float32))


def test_background_is_textured_and_seeded():
    a = random_background(np.random.default_rng(3), 80, 60)
    b = random_background(np.random.default_rng(3), 80, 60)
    assert a.shape == (60, 80, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert a.std() > 2  # not a flat colour


def test_dataset_is_deterministic_varied_and_loads(tmp_path):
    spec = ShapesSpec(num_train=48, num_val=12, image_size=96, num_classes=4, seed=5)
    one = make_shapes_dataset(tmp_path / "a", spec)
    two = make_shapes_dataset(tmp_path / "b", spec)
    for split in ("train", "val"):
        assert one.ann_file(split).read_bytes() == two.ann_file(split).read_bytes()
        names = sorted(p.name for p in one.images(split).glob("*.png"))
        assert len(names) == (48 if split == "train" else 12)
        assert all((one.images(split) / n).read_bytes() == (two.images(split) / n).read_bytes() for n in names)
    data = read_coco_json(one.ann_file("train"))
    assert [c["name"] for c in data["categories"]] == list(CLASSES[:4]) == list(one.class_names)
    per_image = {im["id"]: 0 for im in data["images"]}
    for ann in data["annotations"]:
        per_image[ann["image_id"]] += 1
    boxes = np.array([a["bbox"] for a in data["annotations"]])
    assert 0 in per_image.values() and max(per_image.values()) >= 4  # empty and busy images
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3, 4}
    assert (boxes[:, 2] * boxes[:, 3] < 16 * 16).any() and (boxes[:, 2] > 30).any()  # small and large
    touching = (boxes[:, 0] <= 0) | (boxes[:, 1] <= 0) | (boxes[:, 0] + boxes[:, 2] >= 96) | (boxes[:, 1] + boxes[:, 3] >= 96)
    assert touching.any()
    ds = CocoDetection(one.images("train"), one.ann_file("train"))
    image, target = ds[0]
    assert len(ds) == 48 and target["boxes"].shape[-1] == 4


def test_dataset_reused_or_regenerated(tmp_path):
    spec = ShapesSpec(num_train=4, num_val=2, image_size=64)
    ds = make_shapes_dataset(tmp_path, spec)
    stamp = ds.ann_file("train").stat().st_mtime_ns
    make_shapes_dataset(tmp_path, spec)
    assert ds.ann_file("train").stat().st_mtime_ns == stamp  # same spec: nothing rewritten
    ds = make_shapes_dataset(tmp_path, ShapesSpec(num_train=3, num_val=2, image_size=64))
    assert len(json.loads(ds.ann_file("train").read_text())["images"]) == 3
    assert len(list(ds.images("train").glob("*.png"))) == 3
