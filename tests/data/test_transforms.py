"""Training / validation transforms: box validity, the stop-epoch policy, op checks."""

from __future__ import annotations

import PIL.Image
import pytest
import torch
import torchvision.transforms.v2.functional as F
from torchvision import tv_tensors
from torchvision.ops import box_convert

from dfine.data import build_dataset
from dfine.data.transforms import (STRONG_AUGMENTATIONS, ConvertBoxes, ConvertPILImage, RandomIoUCrop,
                                   build_op, check_op)


def _pixels_xyxy(boxes: torch.Tensor, size: int = 640) -> torch.Tensor:
    return box_convert(boxes, "cxcywh", "xyxy") * size


def test_train_boxes_inside_image_with_positive_area(coco128_config):
    ds = build_dataset(coco128_config(), "train")
    ds.set_epoch(0)
    total = 0
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 640, 640) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        boxes = target["boxes"]
        assert boxes.dtype == torch.float32 and boxes.shape == (len(target["labels"]), 4)
        xyxy = _pixels_xyxy(boxes)
        assert (xyxy >= -1e-3).all() and (xyxy <= 640 + 1e-3).all(), i
        assert ((xyxy[:, 2:] - xyxy[:, :2]) >= 1 - 1e-3).all(), i  # SanitizeBoundingBoxes(min_size=1)
        assert target["labels"].dtype == torch.int64
        total += len(boxes)
    assert total > 0


def _plain(ds, i):
    """Resize (and optionally flip) only: what the policy leaves after the stop epoch."""
    pil, _ = ds.load_item(i)
    resized = F.pil_to_tensor(F.resize(pil, [640, 640])).float() / 255.0
    return resized, resized.flip(-1)


def test_no_strong_augmentation_from_stop_epoch(coco128_config):
    cfg = coco128_config()
    stop = cfg.stop_epoch
    assert stop == 120
    ds = build_dataset(cfg, "train")
    assert ds.transforms.active(stop - 1)[:3] == list(STRONG_AUGMENTATIONS)
    assert not set(ds.transforms.active(stop)) & set(STRONG_AUGMENTATIONS)
    flipped = 0
    for i in range(12):
        ds.set_epoch(stop)
        image, target = ds[i]
        plain, mirrored = _plain(ds, i)
        assert torch.equal(image, plain) or torch.equal(image, mirrored), i
        flipped += torch.equal(image, mirrored) and not torch.equal(image, plain)
        # the boxes are the original ones, resized (or mirrored)
        orig = ds.load_item(i)[1]["boxes"]
        assert len(target["boxes"]) == len(orig)
    assert 0 < flipped < 12  # the flip stays on
    ds.set_epoch(stop - 1)
    changed = sum(not any(torch.equal(ds[i][0], p) for p in _plain(ds, i)) for i in range(12))
    assert changed > 0  # before the stop epoch the strong augmentations do run


def test_val_pipeline_is_resize_and_to_tensor(coco128_config):
    ds = build_dataset(coco128_config(), "val")
    assert [name for name, _ in ds.transforms.ops] == ["Resize", "ConvertPILImage"]
    image, target = ds[0]
    assert torch.equal(image, _plain(ds, 0)[0])
    orig = ds.load_item(0)[1]["boxes"]  # xyxy pixels of the 640x480 file
    expected = box_convert(orig.as_subclass(torch.Tensor), "xyxy", "cxcywh") / torch.tensor([640, 480, 640, 480])
    torch.testing.assert_close(target["boxes"], expected)


def test_convert_pil_image_divides_by_255():
    pil = PIL.Image.new("RGB", (5, 4), (255, 128, 3))
    out = ConvertPILImage("float32", True)(pil)
    assert isinstance(out, tv_tensors.Image) and out.shape == (3, 4, 5)
    assert torch.equal(out.as_subclass(torch.Tensor), F.pil_to_tensor(pil).float() / 255.0)


def test_convert_boxes_to_normalised_cxcywh():
    boxes = tv_tensors.BoundingBoxes([[10.0, 20.0, 30.0, 60.0]], format="XYXY", canvas_size=(100, 200))
    out = ConvertBoxes("cxcywh", True)(boxes)
    assert type(out) is torch.Tensor
    torch.testing.assert_close(out, torch.tensor([[20 / 200, 40 / 100, 20 / 200, 40 / 100]]))


def test_random_iou_crop_probability():
    pil = PIL.Image.new("RGB", (100, 80))
    boxes = tv_tensors.BoundingBoxes([[10.0, 10.0, 50.0, 50.0]], format="XYXY", canvas_size=(80, 100))
    never = RandomIoUCrop(p=0.0)
    assert all(never(pil, {"boxes": boxes})[0].size == (100, 80) for _ in range(10))
    always = RandomIoUCrop(p=1.0)
    torch.manual_seed(0)
    assert any(always(pil, {"boxes": boxes})[0].size != (100, 80) for _ in range(10))


@pytest.mark.parametrize("name, args, message", [
    ("Resise", {"size": [640, 640]}, "unknown transform 'Resise'; did you mean 'Resize'?"),
    ("Resize", {"sise": [640, 640]}, "Resize has no argument 'sise'; did you mean 'size'?"),
    ("ConvertBoxes", {"fmt": "xyz"}, "fmt must be 'xyxy', 'xywh' or 'cxcywh'"),
    ("RandomIoUCrop", {"p": 2}, "p must be in [0, 1]"),
])
def test_bad_ops_are_one_line_errors(name, args, message):
    with pytest.raises(ValueError) as err:
        check_op(name, args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_build_op_returns_torchvision_transform():
    op = build_op("RandomPhotometricDistort", {"p": 0.5})
    assert type(op).__name__ == "RandomPhotometricDistort" and op.p == 0.5


def test_training_reads_large_images_shrunk_and_the_model_sees_the_same(tmp_path, coco128_config):
    """The short side beyond which pixels cannot reach the model is the Resize size over RandomIoUCrop's
    smallest side share (640 / 0.3); evaluation has none. An image larger than that goes through the
    same seeded augmentations to nearly the same input picture and the same boxes."""
    import numpy as np
    from dfine.config import load_config
    from dfine.data.coco import CocoDetection
    from tests.data.conftest import RECIPE, write_coco

    cfg = coco128_config()
    assert build_dataset(cfg, "train").transforms.source_short_side() == 2134
    assert build_dataset(cfg, "val").transforms.source_short_side() is None
    ann = write_coco(tmp_path, [{"id": 1, "name": "a"}], {1: [(1, [300, 200, 500, 400])]}, size=(1600, 1200))
    gradient = np.add.outer(np.arange(1200) // 5, np.arange(1600) // 7).astype(np.uint8)
    PIL.Image.fromarray(np.stack([gradient, gradient[::-1], 255 - gradient], -1)).save(tmp_path / "images/000001.png")
    small = load_config(RECIPE, [f"train_dataloader.dataset.img_folder={tmp_path / 'images'}",
                                 f"train_dataloader.dataset.ann_file={ann}", "eval_spatial_size=[96, 96]"])
    ds = build_dataset(small, "train", check=False)
    side = ds.transforms.source_short_side()
    assert side == 320 and ds.larger_than(side)[0] == 1
    for epoch in range(4):
        ds.set_epoch(epoch)
        shrunk = ds[0]
        ds.transforms.source_short_side = lambda: None  # the published way: the whole image through them
        whole = ds[0]
        del ds.transforms.source_short_side
        assert torch.allclose(shrunk[1]["boxes"], whole[1]["boxes"], atol=0.01), epoch
        assert (shrunk[0] - whole[0]).abs().mean() < 0.02, epoch
        assert shrunk[1]["orig_size"].tolist() == [1600, 1200]
    assert isinstance(ds, CocoDetection)


def test_iou_crop_of_a_canvas_beyond_pils_bomb_limit_neither_warns_nor_fails(monkeypatch):
    """RandomZoomOut makes a 12 MP photo up to 195 MP; cropping it warned of a 'decompression bomb DOS
    attack' above 89 MP and raised above 179 MP (a walk's run printed the warning mid-epoch)."""
    import warnings
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # a 200 x 150 canvas is then 30x over it
    canvas = PIL.Image.new("RGB", (200, 150))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[10.0, 10.0, 190.0, 140.0]]), format="XYXY", canvas_size=(150, 200))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):
            RandomIoUCrop(p=1.0)(canvas, {"boxes": boxes, "labels": torch.tensor([0])})
    assert PIL.Image.MAX_IMAGE_PIXELS == 1000


@pytest.mark.parametrize("side", [1, 2, 3])
def test_random_iou_crop_leaves_an_image_too_small_to_crop(side):
    """A crop side of a 1-3 px image can round to 0 px, which torchvision divided by (a 1x1 image in a
    walk's dataset stopped its training with ZeroDivisionError): such an image stays as it is."""
    pil = PIL.Image.new("RGB", (side, side))
    boxes = tv_tensors.BoundingBoxes([[0.0, 0.0, side, side]], format="XYXY", canvas_size=(side, side))
    crop = RandomIoUCrop(p=1.0)
    torch.manual_seed(0)
    for _ in range(200):
        image, target = crop(pil, {"boxes": boxes})
        assert image.size == (side, side) and target["boxes"].tolist() == [[0.0, 0.0, side, side]]


def test_random_iou_crop_draws_as_torchvision_does_from_4_px():
    """Images the crop can take keep torchvision's draws exactly (the same crops for a seed)."""
    import torchvision.transforms.v2 as T
    pil = PIL.Image.new("RGB", (4, 7))
    boxes = tv_tensors.BoundingBoxes([[1.0, 1.0, 3.0, 6.0]], format="XYXY", canvas_size=(7, 4))
    ours, theirs = RandomIoUCrop(p=1.0), T.RandomIoUCrop()
    for seed in range(20):
        torch.manual_seed(seed)
        torch.rand(1)  # the draw of p
        expected = theirs(pil, {"boxes": boxes})
        torch.manual_seed(seed)
        got = ours(pil, {"boxes": boxes})
        assert got[0].size == expected[0].size and got[1]["boxes"].tolist() == expected[1]["boxes"].tolist()
