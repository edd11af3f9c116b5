"""Fixtures for the data tests: small synthetic COCO datasets and coco128 recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import PIL.Image
import pytest

from dfine.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "dfine" / "dfine_hgnetv2_s_coco.yml"


def write_coco(root: Path, categories: List[Dict], boxes: Dict[int, Sequence], *, size=(64, 48),
               crowd: Sequence = ()) -> Path:
    """A COCO dataset under ``root``: images ``1..len(boxes)`` of ``size`` (w, h), grey, with
    ``boxes[image_id]`` a list of ``(category_id, [x, y, w, h])``; ``crowd`` adds crowd boxes
    the same way (to image 1). Returns the annotation file; images are in ``root/images``."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, anns in boxes.items():
        name = f"{image_id:06d}.png"
        PIL.Image.new("RGB", size, (image_id * 20 % 255, 90, 160)).save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "width": size[0], "height": size[1]})
        for category_id, bbox in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": list(bbox), "area": bbox[2] * bbox[3], "iscrowd": 0})
    for category_id, bbox in crowd:
        annotations.append({"id": len(annotations) + 1, "image_id": next(iter(boxes)), "category_id": category_id,
                            "bbox": list(bbox), "area": bbox[2] * bbox[3], "iscrowd": 1})
    ann_file = root / "annotations.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file


@pytest.fixture
def coco128_config(coco128: Path) -> Callable[..., Config]:
    """``make(*overrides)``: the published S recipe with both loaders on coco128, batch 4, no workers."""
    def make(*overrides: str) -> Config:
        ann = coco128 / "annotations" / "instances_train2017.json"
        base = []
        for split in ("train_dataloader", "val_dataloader"):
            base += [f"{split}.dataset.img_folder={coco128 / 'train2017'}", f"{split}.dataset.ann_file={ann}",
                     f"{split}.num_workers=0", f"{split}.total_batch_size=4"]
        return load_config(RECIPE, base + list(overrides))
    return make
