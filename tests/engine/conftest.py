"""Fixtures for the training tests: tiny COCO subsets of coco128 and a 320 px N recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
N_RECIPE = REPO / "configs" / "dfine" / "dfine_hgnetv2_n_coco.yml"


def write_subset(coco128: Path, out: Path, n_images: int, categories: Optional[Sequence[int]] = None,
                 offset: int = 0) -> Path:
    """A COCO file of ``n_images`` coco128 images (those with boxes of ``categories`` when given;
    then only those categories are kept)."""
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    anns = [a for a in data["annotations"] if not a.get("iscrowd")]
    if categories is not None:
        anns = [a for a in anns if a["category_id"] in set(categories)]
        data["categories"] = [c for c in data["categories"] if c["id"] in set(categories)]
    with_boxes = sorted({a["image_id"] for a in anns})[offset:offset + n_images]
    data["images"] = [im for im in data["images"] if im["id"] in set(with_boxes)]
    data["annotations"] = [a for a in anns if a["image_id"] in set(with_boxes)]
    out.write_text(json.dumps(data))
    return out


def write_recipe(path: Path, img_folder: Path, train_ann: Path, val_ann: Path, *, epochs: int = 2,
                 stop_epoch: int = 1, batch: int = 4, size: int = 320, mscoco: bool = True,
                 extra: str = "") -> Path:
    """The published N recipe at ``size`` px on the given files, no pretrained backbone."""
    ops_train = f"""
      - {{type: RandomPhotometricDistort, p: 0.5}}
      - {{type: RandomZoomOut, fill: 0}}
      - {{type: RandomIoUCrop, p: 0.8}}
      - {{type: SanitizeBoundingBoxes, min_size: 1}}
      - {{type: RandomHorizontalFlip}}
      - {{type: Resize, size: [{size}, {size}]}}
      - {{type: SanitizeBoundingBoxes, min_size: 1}}
      - {{type: ConvertPILImage, dtype: float32, scale: true}}
      - {{type: ConvertBoxes, fmt: cxcywh, normalize: true}}"""
    path.write_text(f"""__include__: ['{N_RECIPE}']
output_dir: '{path.parent / "out"}'
eval_spatial_size: [{size}, {size}]
remap_mscoco_category: {str(mscoco).lower()}
{"" if mscoco else "num_classes: ~"}
HGNetv2: {{pretrained: false}}
epochs: {epochs}
print_freq: 1
checkpoint_freq: 1
train_dataloader:
  total_batch_size: {batch}
  num_workers: 0
  dataset:
    img_folder: '{img_folder}'
    ann_file: '{train_ann}'
    transforms:
      ops:{ops_train}
      policy: {{name: stop_epoch, epoch: {stop_epoch}, ops: [RandomPhotometricDistort, RandomZoomOut, RandomIoUCrop]}}
  collate_fn: {{stop_epoch: {stop_epoch}, base_size: {size}}}
val_dataloader:
  total_batch_size: {batch}
  num_workers: 0
  dataset:
    img_folder: '{img_folder}'
    ann_file: '{val_ann}'
    transforms:
      ops:
      - {{type: Resize, size: [{size}, {size}]}}
      - {{type: ConvertPILImage, dtype: float32, scale: true}}
{extra}
""")
    return path


@pytest.fixture
def tiny(tmp_path: Path, coco128: Path):
    """``(recipe, folder)``: 8 training and 4 validation images of coco128 at 320 px."""
    train = write_subset(coco128, tmp_path / "train.json", 8)
    val = write_subset(coco128, tmp_path / "val.json", 4, offset=8)
    return write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", train, val), tmp_path
