"""COCO annotation files without torch: reading and validating the JSON, the label map
(category ids <-> contiguous labels), file-name safety and box repairs.

Everything here imports only the standard library and numpy, so ``dfine data check`` and
``dfine data convert`` start without torch. :mod:`dfine.data.coco` (the torch dataset)
re-exports these names; import them from either.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from collections import Counter
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Tuple

import numpy as np

from dfine.data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_NAMES
from dfine.errors import DfineError
from dfine.text import counted

if TYPE_CHECKING:
    import torch

__all__ = ["DatasetError", "LabelMode", "LabelMap", "read_coco_json", "label_map_from_coco", "BoxRepairs", "boxes_per_image",
           "box_repairs", "CLIP_TOLERANCE", "unsafe_file_name", "inside_folder", "other_classes"]

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

    def category_id_table(self) -> "torch.Tensor":
        """``[num_classes]`` int64: index with predicted labels to get category ids."""
        import torch  # this module stays importable without torch (dfine data check / convert)

        return torch.tensor(self.category_ids, dtype=torch.int64)

    def describe(self) -> str:
        """One short phrase: how many categories, which ids."""
        ids = [i for i in self.category_ids if i >= 0]
        span = f"ids {min(ids)}..{max(ids)}" if ids else "no ids"
        if self.mode == "category_id":
            return f"{counted(len(ids), 'category', 'categories')}, {span}, category ids used as labels"
        if self.mode == "mscoco":
            return f"the 80 COCO categories ({span})"
        return f"{counted(len(ids), 'category', 'categories')}, {span}"

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


def none_in_common(model: Mapping[int, str], data: Mapping[int, str], where: str,
                   then: str = "evaluate it on the data it was trained for") -> Optional[str]:
    """An error message when the ``model``'s category ids that ``data`` also has all carry other
    class names there (case and spaces aside): its AP would score its classes as others (a bottle
    model on a set of bananas printed 'banana AP 1.1'), ending with what to do (``then``); ``None`` when any
    shared id agrees or none is shared."""
    shared = [i for i in model if i in data]
    if not shared or any(_same_name(model[i], data[i]) for i in shared):
        return None
    from dfine.text import first_few
    return (f"the model's classes ({first_few([model[i] for i in shared], 5)}) are none of {where}'s for the same "
            f"category ids ({first_few([data[i] for i in shared], 5)}): its AP here would score its classes as "
            f"others; {then}")


def _same_name(a: Any, b: Any) -> bool:
    return str(a).strip().lower() == str(b).strip().lower()


def other_classes(model: Mapping[int, str], data: Mapping[int, str], where: str) -> Optional[str]:
    """One warning line when the ``model``'s class names (by category id) differ from the ``data``'s
    (read from ``where``) for the same ids, case and spaces aside; ``None`` when they agree. A model
    evaluated on another dataset whose ids overlap reads AP 0 (or the other set's AP for its
    classes) and nothing else says why."""
    differ = [(i, n, data[i]) for i, n in model.items() if i in data and not _same_name(n, data[i])]
    if not differ:
        return None
    shown = "; ".join(f"{i} is {n} in the model, {d} in the data" for i, n, d in differ[:3])
    return (f"warning: the model's classes differ from {where}'s for {len(differ)} of its {len(model)} category "
            f"ids: {shown}{'; ...' if len(differ) > 3 else ''}; was the model trained on this data?")


def boxes_per_image(data: Mapping[str, Any], image_ids: Iterable[Any]) -> Counter:
    """``{image id: its non-crowd boxes}`` of the ``image_ids`` in the COCO dict ``data`` (entries that are
    not objects are skipped: ``dfine data check`` reads unchecked files)."""
    ids = set(image_ids)
    return Counter(a.get("image_id") for a in data.get("annotations", [])
                   if isinstance(a, dict) and not a.get("iscrowd", 0) and a.get("image_id") in ids)


def read_coco_json(ann_file: os.PathLike | str) -> Dict[str, Any]:
    """The parsed annotation file; ``DatasetError`` when missing or not COCO detection JSON."""
    path = Path(ann_file)
    if path.is_dir():
        raise DatasetError(f"annotation file {path} is a folder; give its COCO JSON file (annotations/instances_*.json, "
                           f"_annotations.coco.json), or convert a YOLO or VOC folder first: dfine data convert "
                           f"--from yolo|voc {path}")
    if not path.is_file():
        raise DatasetError(f"annotation file {path} not found; set ann_file to a COCO-format JSON file")
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        other = {".yaml": "yolo", ".yml": "yolo", ".txt": "yolo", ".xml": "voc"}.get(path.suffix.lower())
        hint = f"; convert it first: dfine data convert --from {other} {path.parent}" if other else ""
        raise DatasetError(f"annotation file {path} is not valid JSON ({exc}){hint}") from None
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


_DRIVE = re.compile(r"^[A-Za-z]:")  # C:\\... or C:/... (a Windows absolute path)
_PARTS = re.compile(r"[\\/]+")


def unsafe_file_name(name: Any) -> Optional[str]:
    """Why ``name`` cannot be an image's ``file_name`` (it must be a relative path that stays in
    the images folder), or ``None`` when it is fine. Looks at the text only (see :func:`inside_folder`)."""
    if not isinstance(name, str) or not name:
        return "is not a non-empty string"
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or os.path.isabs(name):
        return "is an absolute path"
    if ".." in name and ".." in _PARTS.split(name):
        return "contains '..'"
    return None


def inside_folder(path: Path, folder: Path) -> bool:
    """Whether the image file ``path`` stays inside ``folder``: a file that is a symlink must point
    into ``folder`` (or its own folder). Symlinked *folders* are the dataset's layout and are
    followed (``dfine obj365 split --link-val-images`` links ``train/images_from_val`` to
    ``val/images``); ``..`` and absolute names are refused before, by :func:`unsafe_file_name`."""
    try:
        if not path.is_symlink():
            return True
        target = path.resolve()
        return target.is_relative_to(folder.resolve()) or target.is_relative_to(path.parent.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


@dataclass(frozen=True)
class BoxRepairs:
    """What :class:`CocoDetection` does to boxes when loading them (annotation ids): ``clipped``
    to the image, ``invalid`` (NaN or infinite, zero or negative width or height) and ``outside``
    (no part inside the image) dropped. Judged against the JSON's width/height."""

    clipped: Tuple[int, ...] = ()
    invalid: Tuple[int, ...] = ()
    outside: Tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.clipped or self.invalid or self.outside)

    def describe(self, first: int = 5) -> List[str]:
        """One phrase per kind of repair: count and the first annotation ids."""
        out = []
        for ids, what in ((self.clipped, "clipped to the image"),
                          (self.invalid, "dropped (NaN, zero or negative size)"),
                          (self.outside, "dropped (entirely outside the image)")):
            if ids:
                more = ", ..." if len(ids) > first else ""
                out.append(f"{counted(len(ids), 'box', 'boxes')} {what}: annotation ids "
                           f"{', '.join(map(str, ids[:first]))}{more}")
        return out


#: Pixels a box may pass the image border by without counting as clipped: YOLO labels written
#: with 6 decimals come back up to ~0.001 px outside (the training transforms clamp them anyway).
CLIP_TOLERANCE = 0.01


def box_repairs(boxes: np.ndarray, sizes: np.ndarray, ann_ids: np.ndarray) -> BoxRepairs:
    """Classify ``boxes`` ``[M, 4]`` (x, y, w, h pixels) on images of ``sizes`` ``[M, 2]``
    (width, height; 0: unknown, then only the size checks apply) with ids ``ann_ids`` ``[M]``.
    A box out by at most :data:`CLIP_TOLERANCE` px is not counted as clipped."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    x, y, w, h = boxes.T
    width, height = sizes.T
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(boxes).all(axis=1) | (w <= 0) | (h <= 0)
        known = (width > 0) & (height > 0) & ~invalid
        outside = known & ((x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0))
        t = CLIP_TOLERANCE
        clipped = known & ~outside & ((x < -t) | (y < -t) | (x + w > width + t) | (y + h > height + t))
    ids = np.asarray(ann_ids)
    plain = lambda picked: tuple(i.item() if isinstance(i, np.generic) else i for i in ids[picked])  # noqa: E731
    return BoxRepairs(plain(clipped), plain(invalid), plain(outside))
