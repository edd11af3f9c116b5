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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple

import numpy as np
import PIL.Image
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dfine.data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_NAMES
from dfine.data.rng import mix_seed, seeded
from dfine.data.transforms import DetectionTransform, convert_boxes
from dfine.errors import DfineError

__all__ = ["DatasetError", "LabelMode", "LabelMap", "CocoDetection", "read_coco_json", "label_map_from_coco"]

LabelMode = Literal["contiguous", "mscoco", "category_id"]

class DatasetError(DfineError, ValueError):
    """A dataset problem; the message is one line naming the file."""


@dataclass(frozen=True)
class LabelMap:
    """Class label <-> dataset category. ``category_ids[label]`` is the category id of a
    label (-1: none, possible in the ``category_id`` space) and ``names[label]`` its name."""

    category_ids: Tuple[int, ...]
    names: Tuple[str, ...]
    mode: LabelMode = "contiguous"
    ann_file: str = ""

    @property
    def num_classes(self) -> int:
        """Number of class labels (model outputs)."""
        return len(self.category_ids)

    def label_of(self, category_id: int) -> int:
        """The label of a dataset category id; ``DatasetError`` if it has none."""
        try:
            return self.category_ids.index(int(category_id))
        except ValueError:
            raise DatasetError(f"category id {category_id} has no class label in {self.ann_file or 'this label map'}"
                               f" ({self.describe()})") from None

    def category_of(self, label: int) -> int:
        """The dataset category id of a label."""
        return self.category_ids[int(label)]

    def name_of(self, label: int) -> str:
        """The category name of a label."""
        return self.names[int(label)]

    def category_id_table(self) -> torch.Tensor:
        """``[num_classes]`` int64: index with predicted labels to get category ids."""
        return torch.tensor(self.category_ids, dtype=torch.int64)

    def describe(self) -> str:
        """One short phrase: how many categories, which ids."""
        ids = [i for i in self.category_ids if i >= 0]
        span = f"ids {min(ids)}..{max(ids)}" if ids else "no ids"
        if self.mode == "category_id":
            return f"{len(ids)} categories, {span}, category ids used as labels"
        if self.mode == "mscoco":
            return f"the 80 COCO categories ({span})"
        return f"{len(ids)} categories, {span}"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly form, e.g. to store in a checkpoint."""
        return {"mode": self.mode, "categories": [{"label": i, "id": c, "name": n} for i, (c, n)
                                                  in enumerate(zip(self.category_ids, self.names))]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelMap":
        """Inverse of :meth:`to_dict`."""
        cats = sorted(data["categories"], key=lambda c: c["label"])
        if [c["label"] for c in cats] != list(range(len(cats))):
            raise DatasetError("label map: labels must be 0..K-1 without gaps")
        return cls(tuple(int(c["id"]) for c in cats), tuple(str(c["name"]) for c in cats), data.get("mode", "contiguous"))


def read_coco_json(ann_file: os.PathLike | str) -> Dict[str, Any]:
    """The parsed annotation file; ``DatasetError`` when missing or not COCO detection JSON."""
    path = Path(ann_file)
    if not path.is_file():
        raise DatasetError(f"annotation file {path} not found; set ann_file to a COCO-format JSON file")
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"annotation file {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {path} is not COCO format: expected an object with images, "
                           f"annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file {path} is not COCO format: no '{key}' list")
    return data


def _placeholders(categories: Sequence[Mapping[str, Any]], used: set) -> set:
    """Ids of Roboflow-style placeholder categories: unused, and supercategory of others."""
    supers = {c.get("supercategory") for c in categories}
    return {c["id"] for c in categories if c["id"] not in used and c.get("name") in supers
            and any(o.get("supercategory") == c.get("name") and o["id"] != c["id"] for o in categories)}


def label_map_from_coco(data: Mapping[str, Any], mode: LabelMode = "contiguous", ann_file: str = "") -> LabelMap:
    """The label map of parsed COCO JSON ``data`` in the given label space."""
    categories = data["categories"]
    for cat in categories:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or isinstance(cat.get("id"), bool):
            raise DatasetError(f"annotation file {ann_file}: category {cat!r} has no integer 'id'")
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"annotation file {ann_file}: category id {dup} appears twice in 'categories'")
    names = {c["id"]: str(c.get("name", c["id"])) for c in categories}
    if mode == "mscoco":
        unknown = sorted(set(ids) - set(MSCOCO_CATEGORY_IDS))
        if unknown:
            raise DatasetError(f"annotation file {ann_file}: category id {unknown[0]} is not a COCO category; "
                               f"set remap_mscoco_category: false for a non-COCO dataset")
        return LabelMap(MSCOCO_CATEGORY_IDS, MSCOCO_NAMES, mode, ann_file)
    if mode == "category_id":
        if any(i < 0 for i in ids):
            raise DatasetError(f"annotation file {ann_file}: negative category id {min(ids)} cannot be a label")
        top = max(ids, default=-1)
        return LabelMap(tuple(i if i in names else -1 for i in range(top + 1)),
                        tuple(names.get(i, "") for i in range(top + 1)), mode, ann_file)
    used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict)}
    kept = sorted(set(ids) - _placeholders(categories, used))
    return LabelMap(tuple(kept), tuple(names[i] for i in kept), "contiguous", ann_file)


@dataclass(frozen=True)
class _Index:
    """Per-image annotations packed in arrays (cheap to share with worker processes)."""

    image_ids: np.ndarray  # [N] int64, sorted
    file_names: np.ndarray  # [N] str
    offsets: np.ndarray  # [N + 1] int64: image i owns boxes[offsets[i]:offsets[i + 1]]
    boxes: np.ndarray  # [M, 4] float32 x, y, w, h pixels (crowd boxes left out)
    labels: np.ndarray  # [M] int64


def _index(data: Mapping[str, Any], label_map: LabelMap, ann_file: str) -> _Index:
    images = sorted(data["images"], key=lambda im: im["id"])
    ids = [im["id"] for im in images]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"annotation file {ann_file}: an image id appears twice in 'images'")
    position = {image_id: i for i, image_id in enumerate(ids)}
    label_of = {c: i for i, c in enumerate(label_map.category_ids) if c >= 0}
    per_image: List[List[Tuple[List[float], int]]] = [[] for _ in images]
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
        per_image[where].append((bbox, label_of[ann["category_id"]]))
    counts = np.array([len(a) for a in per_image], dtype=np.int64)
    flat = [a for anns in per_image for a in anns]
    return _Index(
        image_ids=np.array(ids, dtype=np.int64),
        file_names=np.array([im["file_name"] for im in images], dtype=str),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        boxes=np.array([b for b, _ in flat], dtype=np.float32).reshape(-1, 4),
        labels=np.array([label for _, label in flat], dtype=np.int64),
    )


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
        self._index = _index(data, self.label_map, self.ann_file)
        self.transforms = transforms
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._index.image_ids)

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the next samples: selects the augmentations of the stop-epoch policy and
        seeds the random ones."""
        self.epoch = epoch

    @property
    def image_ids(self) -> Tuple[int, ...]:
        """COCO image id of each item."""
        return tuple(int(i) for i in self._index.image_ids)

    def image_path(self, idx: int) -> Path:
        """File of item ``idx``."""
        return self.img_folder / str(self._index.file_names[idx])

    def load_item(self, idx: int) -> Tuple[PIL.Image.Image, Dict[str, torch.Tensor]]:
        """Item ``idx`` before transforms: the RGB image and its target with ``boxes`` as
        ``BoundingBoxes`` (XYXY pixels, clipped to the image, empty boxes dropped)."""
        path = self.image_path(idx)
        try:
            with PIL.Image.open(path) as f:
                image = f.convert("RGB")
        except FileNotFoundError:
            raise DatasetError(f"image {path} listed in {self.ann_file} not found") from None
        except (OSError, PIL.UnidentifiedImageError) as exc:
            raise DatasetError(f"image {path} cannot be read ({exc})") from None
        width, height = image.size
        lo, hi = self._index.offsets[idx], self._index.offsets[idx + 1]
        boxes = torch.from_numpy(self._index.boxes[lo:hi].copy())
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(min=0, max=width)
        boxes[:, 1::2].clamp_(min=0, max=height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes[keep], format="XYXY", canvas_size=(height, width)),
            "labels": torch.from_numpy(self._index.labels[lo:hi].copy())[keep],
            "image_id": torch.tensor(int(self._index.image_ids[idx])),
            "orig_size": torch.tensor([width, height]),
            "idx": torch.tensor(idx),
        }
        return image, target

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        image, target = self.load_item(idx)
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
