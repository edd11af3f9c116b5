"""CreateML JSON (Apple's Create ML, Roboflow's "CreateML JSON" export) -> COCO JSON.

A CreateML file is a list with an entry per image, ``{"image": "a.jpg", "annotations": [{"label":
"car", "coordinates": {"x", "y", "width", "height"}}]}``, ``x`` and ``y`` the box's centre, all in
pixels; no image size is written. Roboflow exports ``{train,valid,test}/_annotations.createml.json``
beside each split's images. A file's split is its folder's (or its name's), else train; without a
val file a seeded ``val_fraction`` of train becomes val (printed). Class names are sorted unless
given. Sizes, clipping and unreadable images are handled as for VOC
(:func:`~dfine.data.convert.coco_split`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PureWindowsPath
from typing import Dict, List, Optional, Sequence, Tuple

from dfine.data.cocojson import DatasetError
from dfine.data.convert import (SPLIT_NAMES, Annotated, Converted, check_not_a_split, file_head, split_named, within,
                                write_split_files)
from dfine.text import counted, first_few

__all__ = ["convert_createml", "createml_files", "read_createml_json"]

Box = Tuple[str, Tuple[float, float, float, float], bool]
#: bytes read from the head of a JSON file to tell whether it is a CreateML file
_HEAD = 4096


def _looks_createml(path: Path) -> bool:
    head = file_head(path, _HEAD)
    return head.lstrip().startswith(b"[") and b'"image"' in head and (b'"annotations"' in head
                                                                      or b'"coordinates"' in head)


def createml_files(root: Path) -> List[Path]:
    """The CreateML files of the dataset folder ``root``: JSON lists of ``{"image", "annotations"}``
    in it or its split folders (Roboflow: ``{split}/_annotations.createml.json``); sorted."""
    if not root.is_dir():
        return []
    folders = [root, *(root / n for n in SPLIT_NAMES)]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.json") if _looks_createml(p))


def read_createml_json(path: Path) -> Dict[str, Tuple[Box, ...]]:
    """The boxes of each image a CreateML file names (``/`` separators), ``(label, (xmin, ymin, xmax,
    ymax) px, False)``; a one-line ``DatasetError`` naming the file and entry when malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: not a CreateML file (a list of {{\"image\", \"annotations\"}})")
    found: Dict[str, Tuple[Box, ...]] = {}
    for i, entry in enumerate(data):
        name = entry.get("image") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{path}: entry {i + 1} has no \"image\" file name")
        boxes: List[Box] = []
        for j, ann in enumerate(entry.get("annotations") or []):
            where = f"{path}: entry {i + 1} ({name}), annotation {j + 1}"
            c = ann.get("coordinates") if isinstance(ann, dict) else None
            try:
                x, y, w, h = (float(c[k]) for k in ("x", "y", "width", "height"))  # type: ignore[index]
            except (TypeError, KeyError, ValueError):
                if c is None and isinstance(ann, dict):  # "cordinates" read 'coordinates are None' (a walk)
                    raise DatasetError(f"{where}: no \"coordinates\" (its keys: {', '.join(map(repr, ann))})") from None
                raise DatasetError(f"{where}: coordinates are {c!r}; expected {{\"x\", \"y\", \"width\", "
                                   f"\"height\"}} in pixels") from None
            if not all(map(math.isfinite, (x, y, w, h))):
                raise DatasetError(f"{where}: coordinates {c!r} are not finite numbers")
            label = str(ann.get("label", "")).strip()
            if not label:
                raise DatasetError(f"{where}: no label")
            boxes.append((label, (x - w / 2, y - h / 2, x + w / 2, y + h / 2), False))
        found[PureWindowsPath(name.strip()).as_posix()] = tuple(boxes)
    return found


def convert_createml(src: os.PathLike | str, out: Optional[os.PathLike | str] = None, *,
                     names: Optional[Sequence[str]] = None, val_fraction: float = 0.2, seed: int = 0) -> Converted:
    """Convert the CreateML files of the folder ``src`` (or the one file ``src``) into COCO files under
    ``out/annotations`` (default: the dataset folder). Images stay where they are."""
    src = Path(src).expanduser().resolve()
    if not src.exists():
        raise DatasetError(f"CreateML dataset {src} not found")
    root = src.parent if src.is_file() else src
    check_not_a_split(root, lambda d: bool(createml_files(d)), "CreateML")
    paths = [src] if src.is_file() else createml_files(src)
    if not paths:
        raise DatasetError(f"{src} holds no CreateML file (a JSON list of {{\"image\", \"annotations\"}})")
    items: Dict[str, List[Annotated]] = {}
    missing: List[str] = []
    for path in paths:
        for name, boxes in read_createml_json(path).items():
            image = within(path.parent / name, root)
            if image is None or not image.is_file():
                missing.append(f"{path.relative_to(root)}: {name}")
                continue
            items.setdefault(split_named(path) or "train", []).append(Annotated(image, name, None, boxes))
    if not any(items.values()):
        raise DatasetError(f"none of the images of {first_few([str(p.relative_to(root)) for p in paths], 3)} found "
                           f"beside it (first: {missing[0] if missing else 'no entry'})")
    edges = [abs(v) for split in items.values() for item in split for _, box, _ in item.boxes for v in box]
    if edges and max(edges) <= 1.0:  # fractions read as pixels made every box under a pixel, unsaid (a walk)
        raise DatasetError(f"{first_few([str(p) for p in paths], 2)}: every box is within 0..1, fractions of the "
                           f"image; CreateML's coordinates are in pixels (x and y the box's centre): multiply by the "
                           f"image's width and height")
    notes: List[str] = []
    if missing:
        notes.append(f"{counted(len(missing), 'image')} named in the CreateML files not found beside them, left out "
                     f"with their boxes: {first_few(missing, 3)}")
    return write_split_files(src, root, Path(out) if out is not None else None, items, names, notes,
                             fmt="CreateML", kind="JSON", val_fraction=val_fraction, seed=seed)
