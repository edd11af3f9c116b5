"""COCO-format detection dataset: an images folder and an annotation JSON.

Class labels are contiguous ``0..K-1``; :class:`LabelMap` keeps how they relate to the
dataset's own category ids and names, so predictions can be reported in the dataset's ids.
Three label spaces:

* ``contiguous`` (default): the categories sorted by id get labels 0, 1, 2, ... whatever the
  ids are (0-based, 1-based, with gaps). A Roboflow-style placeholder category (no
  annotations, and the supercategory of the others) gets no label.
* ``mscoco`` (``remap_mscoco_category: true``): the fixed table of the 80 COCO categories, as
  the published COCO models use it.
* ``category_id`` (``category_ids_as_labels: true``): the category id itself is the label,
  as the published Objects365 models use it (``num_classes`` = largest id + 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import PIL.Image
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dfine.data.cocojson import (CLIP_TOLERANCE, BoxRepairs, DatasetError, LabelMap, LabelMode, box_repairs,
                                 inside_folder, label_map_from_coco, read_coco_json, unsafe_file_name)
from dfine.data.image_io import open_image_sized
from dfine.data.rng import mix_seed, seeded
from dfine.data.transforms import DetectionTransform, convert_boxes

__all__ = ["DatasetError", "LabelMode", "LabelMap", "CocoDetection", "read_coco_json", "label_map_from_coco",
           "BoxRepairs", "box_repairs", "CLIP_TOLERANCE", "unsafe_file_name", "inside_folder"]


@dataclass(frozen=True)
class _Index:
    """Per-image annotations packed in arrays (cheap to share with worker processes)."""

    image_ids: np.ndarray  # [N] int64, sorted
    file_names: np.ndarray  # [N] str
    sizes: np.ndarray  # [N, 2] int64 (width, height) from the JSON, 0 when absent
    offsets: np.ndarray  # [N + 1] int64: image i owns boxes[offsets[i]:offsets[i + 1]]
    boxes: np.ndarray  # [M, 4] float32 x, y, w, h pixels (crowd boxes left out)
    labels: np.ndarray  # [M] int64
    ann_ids: np.ndarray  # [M] int64 annotation id of each box


def _index(data: Mapping[str, Any], label_map: LabelMap, ann_file: str) -> _Index:
    images = sorted(data["images"], key=lambda im: im["id"])
    ids = [im["id"] for im in images]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"annotation file {ann_file}: an image id appears twice in 'images'")
    for im in images:
        why = unsafe_file_name(im.get("file_name"))
        if why is not None:
            raise DatasetError(f"annotation file {ann_file}: image {im['id']} file_name {im.get('file_name')!r} {why}; "
                               f"file names must be relative paths inside the images folder")
    position = {image_id: i for i, image_id in enumerate(ids)}
    label_of = {c: i for i, c in enumerate(label_map.category_ids) if c >= 0}
    per_image: List[List[Tuple[List[float], int, int]]] = [[] for _ in images]
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        where = position.get(ann.get("image_id"))
        if where is None:
            raise DatasetError(f"annotation file {ann_file}: annotation {ann.get('id')} refers to image id "
                               f"{ann.get('image_id')}, which is not in 'images'")
        if ann.get("category_id") not in label_of:
            raise DatasetError(f"annotation file {ann_file}: annotation {ann.get('id')} has category id "
                               f"{ann.get('category_id')}, which has no class label ({label_map.describe()})")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DatasetError(f"annotation file {ann_file}: annotation {ann.get('id')} has no [x, y, w, h] bbox")
        per_image[where].append((bbox, label_of[ann["category_id"]], ann.get("id", -1)))
    counts = np.array([len(a) for a in per_image], dtype=np.int64)
    flat = [a for anns in per_image for a in anns]
    try:
        boxes = np.array([b for b, _, _ in flat], dtype=np.float32).reshape(-1, 4)
    except (TypeError, ValueError):
        bad = next(a for a in flat if not all(isinstance(v, (int, float)) for v in a[0]))
        raise DatasetError(f"annotation file {ann_file}: annotation {bad[2]} has a bbox that is not 4 numbers: "
                           f"{bad[0]!r}") from None
    return _Index(
        image_ids=np.array(ids, dtype=np.int64),
        file_names=np.array([im["file_name"] for im in images], dtype=str),
        sizes=np.array([[_size(im, "width"), _size(im, "height")] for im in images], dtype=np.int64).reshape(-1, 2),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        boxes=boxes,
        labels=np.array([label for _, label, _ in flat], dtype=np.int64),
        ann_ids=np.array([i if isinstance(i, int) else -1 for _, _, i in flat], dtype=np.int64),
    )


def _size(image: Mapping[str, Any], key: str) -> int:
    value = image.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0


class CocoDetection(Dataset):
    """COCO-format detection data: ``img_folder`` + ``ann_file``, every image in id order.

    Item ``i`` is ``(image, target)``: ``image`` ``[3, H, W]`` float in 0..1 (after the
    transforms), ``target`` a dict with ``boxes`` ``[K, 4]`` float32 normalised cx, cy, w, h,
    ``labels`` ``[K]`` int64 in ``0..num_classes-1``, ``image_id`` (the COCO id), ``orig_size``
    ``[2]`` (width, height of the file) and ``idx`` (``i``), all int64. Crowd boxes are left
    out. Random transforms are seeded by ``(seed, epoch, i)``: see :meth:`set_epoch`.
    """

    def __init__(self, img_folder: os.PathLike | str, ann_file: os.PathLike | str,
                 transforms: Optional[DetectionTransform] = None, *, label_mode: LabelMode = "contiguous",
                 seed: int = 0) -> None:
        self.img_folder = Path(img_folder)
        self.ann_file = str(ann_file)
        if not self.img_folder.is_dir():
            raise DatasetError(f"image folder {self.img_folder} not found; set img_folder to the folder of the "
                               f"images listed in {self.ann_file}")
        data = read_coco_json(ann_file)
        self.label_map = label_map_from_coco(data, label_mode, self.ann_file)
        # every declared category, id -> name (those without a label were dropped, e.g. a placeholder)
        self.declared_categories = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
        self._index = _index(data, self.label_map, self.ann_file)
        idx = self._index
        self.box_repairs = box_repairs(idx.boxes, np.repeat(idx.sizes, np.diff(idx.offsets), axis=0), idx.ann_ids)
        self.transforms = transforms
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._index.image_ids)

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the next samples: selects the augmentations of the stop-epoch policy and
        seeds the random ones."""
        self.epoch = epoch

    def boxes_per_image(self) -> np.ndarray:
        """``[N]`` int64: the (non-crowd) boxes of each image as listed in the file; 0: background."""
        return np.diff(self._index.offsets)

    def boxes_per_class(self) -> np.ndarray:
        """``[num_classes]`` int64: the (non-crowd) boxes of each label in the file."""
        return np.bincount(self._index.labels, minlength=self.label_map.num_classes)

    @property
    def image_ids(self) -> Tuple[int, ...]:
        """COCO image id of each item."""
        return tuple(int(i) for i in self._index.image_ids)

    def image_path(self, idx: int) -> Path:
        """File of item ``idx`` (a ``file_name`` written on Windows, ``images\\a.jpg``, read as ``images/a.jpg``
        where no file has the backslash in its name, as ``dfine data check`` reads it)."""
        name = str(self._index.file_names[idx])
        path = self.img_folder / name
        if "\\" in name and not path.exists():
            path = self.img_folder / name.replace("\\", "/")
        return path

    def image_sizes(self) -> np.ndarray:
        """``[N, 2]`` int64 (width, height) of each image as the annotation file lists it (0 when it
        lists none)."""
        return self._index.sizes.copy()

    def larger_than(self, short_side: int) -> Tuple[int, Tuple[int, int]]:
        """How many images have a short side longer than ``short_side`` px (as the file lists their
        sizes), and the largest ``(width, height)`` of them (``(0, 0)`` when none)."""
        sizes = self._index.sizes
        over = sizes.min(axis=1) > short_side if len(sizes) else np.zeros(0, bool)
        if not over.any():
            return 0, (0, 0)
        largest = sizes[over][int(np.argmax(sizes[over].prod(axis=1)))]
        return int(over.sum()), (int(largest[0]), int(largest[1]))

    def box_sides_at(self, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
        """Each box's side (the square root of its area, px) as the model sees it when every image
        is resized to ``size`` (height, width), and how many times its image is shrunk to fit
        (the square root of the area ratio; below 1: enlarged). Two ``[M]`` arrays; images of unknown
        size are left out."""
        idx = self._index
        sizes = np.repeat(idx.sizes, np.diff(idx.offsets), axis=0).astype(np.float64)
        known = (sizes > 0).all(axis=1)
        area = idx.boxes[known, 2].astype(np.float64) * idx.boxes[known, 3]
        scale = (size[0] * size[1]) / (sizes[known, 0] * sizes[known, 1])
        return np.sqrt(np.clip(area * scale, 0, None)), np.sqrt(1 / scale)

    def load_item(self, idx: int, short_side: Optional[int] = None) -> Tuple[PIL.Image.Image, Dict[str, torch.Tensor]]:
        """Item ``idx`` before transforms: the 8-bit RGB image (16-bit and float images scaled,
        EXIF orientation applied when that gives the JSON's width/height, see
        :func:`dfine.data.image_io.open_image_sized`) and its target with ``boxes`` as
        ``BoundingBoxes`` (XYXY pixels, clipped to the image, empty boxes dropped: the
        :attr:`box_repairs` counted when the dataset was built). ``short_side``: an image whose
        short side is longer is read shrunk to it, its boxes with it (training reads each at
        :meth:`~dfine.data.transforms.DetectionTransform.source_short_side`); ``orig_size`` stays
        the file's."""
        path = self.image_path(idx)
        if not inside_folder(path, self.img_folder):
            raise DatasetError(f"image {path} listed in {self.ann_file} resolves to {path.resolve()}, outside the "
                               f"images folder {self.img_folder}; copy the file into it (symlinks out are refused)")
        try:
            image, _, full = open_image_sized(path, tuple(int(v) for v in self._index.sizes[idx]), short_side)
        except FileNotFoundError:
            raise DatasetError(f"image {path} listed in {self.ann_file} not found") from None
        except (OSError, PIL.UnidentifiedImageError) as exc:
            raise DatasetError(f"image {path} cannot be read ({exc})") from None
        width, height = image.size
        lo, hi = self._index.offsets[idx], self._index.offsets[idx + 1]
        boxes = torch.from_numpy(self._index.boxes[lo:hi].copy())
        boxes[:, 2:] += boxes[:, :2]
        if (width, height) != tuple(full):  # shrunk to short_side: the boxes with it
            boxes[:, 0::2] *= width / full[0]
            boxes[:, 1::2] *= height / full[1]
        boxes[:, 0::2].clamp_(min=0, max=width)
        boxes[:, 1::2].clamp_(min=0, max=height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes[keep], format="XYXY", canvas_size=(height, width)),
            "labels": torch.from_numpy(self._index.labels[lo:hi].copy())[keep],
            "image_id": torch.tensor(int(self._index.image_ids[idx])),
            "orig_size": torch.tensor([int(full[0]), int(full[1])]),
            "idx": torch.tensor(idx),
        }
        return image, target

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        short_side = self.transforms.source_short_side() if self.transforms is not None else None
        image, target = self.load_item(idx, short_side)
        meta = {k: target.pop(k) for k in ("image_id", "orig_size", "idx")}
        if self.transforms is not None:
            with seeded(mix_seed(self.seed, self.epoch, idx)):
                image, target = self.transforms(image, target, self.epoch)
        image, target = _finish(image, target)
        target.update(meta)
        return image, target

    def __repr__(self) -> str:
        return (f"CocoDetection({len(self)} images, {self.label_map.describe()}, img_folder={str(self.img_folder)!r}, "
                f"ann_file={self.ann_file!r}, transforms={self.transforms!r})")


def _finish(image: Any, target: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Whatever the ops did: image float ``[3, H, W]``, boxes normalised cx, cy, w, h."""
    if isinstance(image, PIL.Image.Image):
        image = F.pil_to_tensor(image).float() / 255.0
    image = image.as_subclass(torch.Tensor)
    boxes = target["boxes"]
    if isinstance(boxes, tv_tensors.BoundingBoxes):
        boxes = convert_boxes(boxes, "cxcywh", normalize=True)
    return image, {"boxes": boxes.as_subclass(torch.Tensor).float(), "labels": target["labels"]}
