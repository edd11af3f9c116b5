"""CVAT's "CVAT for images 1.1" export (``annotations.xml`` + ``images/``) -> COCO JSON.

The export is one XML file: ``<annotations>`` holding a ``<meta>`` (the task's, project's or
job's ``<labels>``) and an ``<image id name width height [subset]>`` per image, whose
``<box label xtl ytl xbr ybr [rotation]>`` children are the boxes in pixels. Images are looked
for where CVAT puts them (``images/NAME``, ``images/SUBSET/NAME`` for a project) and beside the
XML (an export unzipped in one folder). Splits come from the images' ``subset`` (``Train``,
``Validation``, ``Test`` ...); without a val subset a seeded ``val_fraction`` of the train images
becomes val (printed). Class names are the declared labels that have boxes, in the declared
order (labels without a box are listed), unless given. A polygon or a mask becomes the box around
it (around a mask's pixels) and a rotated box the upright box around it (CVAT's own COCO export
drops the rotation instead, a box that cuts the object's corners); each is counted in a note.
Other shapes (points, polylines, ellipses, cuboids, skeletons, tags) are not boxes and are
counted as left out.
Sizes, clipping and unreadable images are handled as for VOC (:func:`~dfine.data.convert.coco_split`).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from dfine.data.cocojson import DatasetError
from dfine.data.convert import (IMAGE_SUFFIXES, SPLIT_NAMES, Annotated, Converted, coco_split, images_folder_of,
                                info_for, fraction_said, labels_of, split_by_fraction, walk_folders, write_coco_json)
from dfine.text import counted

__all__ = ["CvatImage", "convert_cvat", "cvat_xml", "read_cvat_xml"]

Box = Tuple[str, Tuple[float, float, float, float], bool]
#: shapes of CVAT for images that are not boxes and have no box taken from them
OTHER_SHAPES = ("points", "polyline", "ellipse", "cuboid", "skeleton", "tag")
#: how a note counts each kind of shape: (one, many)
_SHAPE_WORDS = {"rotated box": ("rotated box", "rotated boxes"), "points": ("points shape", "points shapes")}


@dataclass(frozen=True)
class CvatImage:
    """One ``<image>`` of the XML: its ``name`` (a path relative to ``images/``), ``subset``, the
    size it declares and its boxes ``(label, (xtl, ytl, xbr, ybr) px, False)``."""

    name: str
    subset: str
    size: Optional[Tuple[int, int]]
    boxes: Tuple[Box, ...]


@dataclass(frozen=True)
class CvatFile:
    """What :func:`read_cvat_xml` read: the images, the declared label names (in order) and
    how many shapes of each kind were turned into boxes or left out."""

    path: Path
    images: Tuple[CvatImage, ...]
    labels: Tuple[str, ...]
    converted: Dict[str, int]
    left_out: Dict[str, int]


def cvat_xml(src: Path) -> Optional[Path]:
    """The CVAT XML of ``src`` (the file itself, or ``annotations.xml`` in the folder) when its root
    element is ``<annotations>`` (as CVAT writes it); ``None`` otherwise (a VOC XML's root is
    ``<annotation>``)."""
    path = src / "annotations.xml" if src.is_dir() else src
    if path.suffix.lower() != ".xml" or not path.is_file():
        return None
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return path if element.tag == "annotations" else None
    except (ET.ParseError, OSError):
        return None
    return None


def _number(value: Optional[str], path: Path, what: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: {what} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise DatasetError(f"{path}: {what} is {value!r}, not a finite number")
    return number


def _box(shape: ET.Element, path: Path, where: str) -> Tuple[Tuple[float, float, float, float], bool]:
    """``(xmin, ymin, xmax, ymax)`` of a ``<box>`` and whether it was rotated: a rotated box
    (``rotation`` degrees about its centre) becomes the upright box around it."""
    label = shape.get("label")
    x0, y0, x1, y1 = (_number(shape.get(k), path, f"{where}: box '{label}' {k}") for k in ("xtl", "ytl", "xbr", "ybr"))
    angle = _number(shape.get("rotation", "0"), path, f"{where}: box '{label}' rotation")
    if angle % 360 == 0:
        return (x0, y0, x1, y1), False
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    dx, dy = hw * c + hh * s, hw * s + hh * c
    return (cx - dx, cy - dy, cx + dx, cy + dy), True


def _polygon_box(shape: ET.Element, path: Path, where: str) -> Tuple[float, float, float, float]:
    """The box around a ``<polygon points="x1,y1;x2,y2;...">``."""
    label, points = shape.get("label"), shape.get("points") or ""
    try:
        xy = [tuple(float(v) for v in p.split(",")) for p in points.split(";") if p.strip()]
    except ValueError:
        xy = []
    if not xy or any(len(p) != 2 or not all(map(math.isfinite, p)) for p in xy):
        raise DatasetError(f"{path}: {where}: polygon '{label}' has points {points[:60]!r}; expected 'x1,y1;x2,y2;...'")
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    return min(xs), min(ys), max(xs), max(ys)


def _mask_box(shape: ET.Element, path: Path, where: str) -> Optional[Tuple[float, float, float, float]]:
    """The box around the pixels of a ``<mask rle left top width height>`` (``None``: no pixel).
    ``rle`` counts pixels of the ``width x height`` crop at ``left, top``, row by row, in runs that
    alternate background and mask, background first; the crop is not always tight (CVAT's own COCO
    export gives the box of the pixels, as this does)."""
    label = shape.get("label")
    left, top, width, height = (int(_number(shape.get(k), path, f"{where}: mask '{label}' {k}"))
                                for k in ("left", "top", "width", "height"))
    try:
        runs = [int(v) for v in (shape.get("rle") or "").split(",") if v.strip()]
    except ValueError:
        runs = [-1]
    if any(n < 0 for n in runs) or sum(runs) != width * height or width <= 0:
        raise DatasetError(f"{path}: {where}: mask '{label}' has an rle of {sum(runs)} pixels, not its width x height "
                           f"{width}x{height}")
    xs, ys, pos = [], [], 0
    for i, n in enumerate(runs):
        if i % 2 and n:  # a run of mask pixels: rows first..last; a run over a row break covers both edges
            first, last = divmod(pos, width), divmod(pos + n - 1, width)
            ys += [first[0], last[0]]
            xs += [first[1], last[1]] if first[0] == last[0] else [0, width - 1]
        pos += n
    if not xs:
        return None
    return left + min(xs), top + min(ys), left + max(xs) + 1.0, top + max(ys) + 1.0


def read_cvat_xml(path: Path) -> CvatFile:
    """A "CVAT for images 1.1" file; a one-line ``DatasetError`` naming it when it is not one
    (not XML, another root element, a "CVAT for video" export) or a shape is malformed."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable XML file ({exc})") from None
    if root.tag != "annotations":
        raise DatasetError(f"{path}: not a CVAT for images XML (its root element is <{root.tag}>, "
                           f"CVAT writes <annotations>)")
    if root.find("image") is None and root.find("track") is not None:
        raise DatasetError(f"{path}: a 'CVAT for video 1.1' export (<track> elements, no <image>); export the task "
                           f"as 'CVAT for images 1.1' instead")
    labels = tuple(dict.fromkeys(name.text.strip() for name in root.iterfind("meta/*/labels/label/name")
                                 if name.text and name.text.strip()))
    images: List[CvatImage] = []
    converted: Counter = Counter()
    left_out: Counter = Counter()
    for element in root.iterfind("image"):
        name = (element.get("name") or "").strip()
        if not name:
            raise DatasetError(f"{path}: <image id=\"{element.get('id')}\"> has no name")
        where = f"image '{name}'"
        w, h = (element.get(k) for k in ("width", "height"))
        size = (int(_number(w, path, f"{where} width")), int(_number(h, path, f"{where} height"))) if w and h else None
        boxes: List[Box] = []
        for shape in element:
            label = (shape.get("label") or "").strip()
            if shape.tag in ("box", "polygon", "mask") and not label:
                raise DatasetError(f"{path}: {where}: a <{shape.tag}> without a label")
            if shape.tag == "box":
                box, rotated = _box(shape, path, where)
                boxes.append((label, box, False))
                converted["rotated box"] += rotated
            elif shape.tag in ("polygon", "mask"):
                around = (_polygon_box if shape.tag == "polygon" else _mask_box)(shape, path, where)
                if around is None:
                    left_out["empty mask"] += 1
                    continue
                boxes.append((label, around, False))
                converted[shape.tag] += 1
            elif shape.tag in OTHER_SHAPES:
                left_out[shape.tag] += 1
        images.append(CvatImage(name, (element.get("subset") or "").strip(), size if size and min(size) > 0 else None,
                                tuple(boxes)))
    if not images:
        raise DatasetError(f"{path}: no <image> elements; is it a CVAT for images export?")
    return CvatFile(path, tuple(images), labels, {k: n for k, n in converted.items() if n}, dict(left_out))


def _image_path(root: Path, image: CvatImage) -> Optional[Path]:
    """Where the export put ``image``: ``images/NAME``, ``images/SUBSET/NAME`` (a project
    export), or ``NAME`` beside the XML."""
    candidates = [root / "images" / image.name, root / image.name]
    if image.subset:
        candidates.insert(1, root / "images" / image.subset / image.name)
    return next((p for p in candidates if p.is_file()), None)


def _other_extension(root: Path, names: Sequence[str], depth: int = 3) -> str:
    """``"; DIR holds N of them under another extension (a.jpg for a.jpeg): ..."`` when the images
    ``names`` that were not found are under ``root`` with another image suffix (a walk: the XML said
    .jpeg, the files were .jpg, and the error said only 'not found'); ``""`` when they are not."""
    stems = {Path(n).stem: Path(n).name for n in names}
    for folder, _, files in walk_folders(root, depth):
        found = sorted(f for f in files if Path(f).stem in stems and Path(f).suffix.lower() in IMAGE_SUFFIXES
                       and f != stems[Path(f).stem])
        if found:
            return (f"; {folder} holds {len(found)} of them under another extension ({found[0]} for "
                    f"{stems[Path(found[0]).stem]}): rename them as the XML names them, or the XML's names")
    return ""


def _folders_holding(root: Path, names: Sequence[str], depth: int = 3) -> Dict[Path, int]:
    """The folders under ``root`` (``depth`` levels down, hidden ones skipped) that hold some of the
    images ``names`` (paths relative to a folder), with how many each holds."""
    holders: Dict[Path, int] = {}
    for folder, level, files in walk_folders(root, depth):
        if level == 0:
            continue  # beside the XML: looked at already
        here = set(files)
        n = sum(1 for name in names if (name in here if "/" not in name else (folder / name).is_file()))
        if n:
            holders[folder] = n
    return holders


def _splits(images: Sequence[CvatImage], val_fraction: float, seed: int, notes: List[str]) -> Dict[str, List[int]]:
    """``{split: [image index, ...]}`` from the images' subsets; a seeded ``val_fraction`` of the
    train images becomes val when no subset is val. Subsets that are none of train/val/test
    (CVAT's ``default``) join train, said in ``notes``."""
    groups: Dict[Optional[str], List[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(SPLIT_NAMES.get(image.subset.lower()), []).append(i)
    other = groups.pop(None, [])
    splits: Dict[str, List[int]] = {k: v for k, v in groups.items() if k is not None}
    if other and splits:
        names = sorted({images[i].subset or "(none)" for i in other})
        notes.append(f"{counted(len(other), 'image')} of subset {', '.join(repr(n) for n in names)}, none of "
                     f"train/val/test, joined train")
    splits["train"] = sorted(splits.get("train", []) + other)
    if "val" not in splits:
        keys = {images[i].name: i for i in splits["train"]}
        said: List[str] = []
        train, val = split_by_fraction(list(keys), val_fraction, seed,
                                       labels_of({k: images[i] for k, i in keys.items()}), said)
        splits["train"], splits["val"] = [keys[k] for k in train], [keys[k] for k in val]
        of = f"the {counted(len(keys), 'image')}" + (" of the train subset" if groups.get("train") else "")
        notes.append(f"no val subset: {len(val)} of {of} became val {fraction_said(val_fraction, seed)}")
        notes += said
    if not splits["train"]:
        raise DatasetError(f"no train images: the subsets are {', '.join(sorted(s for s in splits if splits[s]))}; "
                           f"give CVAT's subsets the names Train and Validation")
    return {k: splits[k] for k in ("train", "val", "test") if k in splits}


def convert_cvat(src: os.PathLike | str, out: Optional[os.PathLike | str] = None, *,
                 names: Optional[Sequence[str]] = None, val_fraction: float = 0.2, seed: int = 0) -> Converted:
    """Convert the CVAT for images export at ``src`` (its folder or its ``annotations.xml``) into
    COCO files under ``out/annotations`` (default: the export's folder). Images stay where they are."""
    src = Path(src).expanduser().resolve()
    if not src.exists():
        raise DatasetError(f"CVAT export {src} not found")
    xml = src / "annotations.xml" if src.is_dir() else src
    if not xml.is_file():
        raise DatasetError(f"no annotations.xml in {src}: give the folder of a 'CVAT for images 1.1' export "
                           f"(annotations.xml and images/) or the XML file")
    data = read_cvat_xml(xml)  # a one-line error saying why when it is not a CVAT for images file
    root = xml.parent
    used = Counter(label for image in data.images for label, _, _ in image.boxes)
    notes: List[str] = []
    if names:
        class_names = tuple(names)
        unknown = [(im.name, label) for im in data.images for label, _, _ in im.boxes if label not in class_names]
        if unknown:
            raise DatasetError(f"{xml}: image '{unknown[0][0]}' has a box labelled '{unknown[0][1]}', which is not in "
                               f"--names ({', '.join(class_names)})")
    else:
        class_names = tuple([n for n in data.labels if n in used] + sorted(set(used) - set(data.labels)))
        unused = [n for n in data.labels if n not in used]
        undeclared = sorted(set(used) - set(data.labels))
        if undeclared and data.labels:  # a label edited by hand, or misspelt: a class of its own, said
            found = ", ".join(f"{n} ({counted(used[n], 'box', 'boxes')})" for n in undeclared[:10])
            own = "a class of its own" if len(undeclared) == 1 else "classes of their own"
            notes.append(f"{counted(len(undeclared), 'label')} on boxes but not declared in the XML's <labels> "
                         f"({', '.join(data.labels[:10])}), kept as {own} (a misspelling?): {found}")
        if unused:
            notes.append(f"{counted(len(unused), 'label')} with no box, left out of the classes: "
                         f"{', '.join(unused[:10])}")
    if not class_names:
        raise DatasetError(f"{xml}: no <box>, <polygon> or <mask> on any image and no --names; nothing to learn")
    for what, how in ((data.converted, "became the boxes around them"), (data.left_out, "are not boxes, left out")):
        if what:
            shapes = (counted(n, *_SHAPE_WORDS.get(kind, (kind,))) for kind, n in sorted(what.items()))
            notes.append(f"{', '.join(shapes)} {how}")
    paths = [_image_path(root, image) for image in data.images]
    missing = [image.name for image, p in zip(data.images, paths) if p is None]
    if missing:
        holders = _folders_holding(root, [image.name for image in data.images])
        every = sorted(d for d, n in holders.items() if n == len(data.images))
        if len(every) == 1:  # the images in a folder of the export's own (images/raw beside images/masks)
            paths = [every[0] / image.name for image in data.images]
            notes.append(f"images found in {every[0]}, not in images/ where CVAT puts them")
        elif holders and not every:  # a folder of the export holds some: say which are not there
            best = max(sorted(holders), key=holders.get)
            absent = [image.name for image in data.images if not (best / image.name).is_file()]
            raise DatasetError(f"{counted(len(absent), 'image')} of {xml.name} not found in {best}, which holds the "
                               f"other {holders[best]} (first: {absent[0]}); add them there")
        else:
            zips = sorted(p.name for p in root.glob("*.zip"))
            hint = (f"; {' and '.join(map(str, every))} both hold them: leave one" if every else
                    f"; unzip {zips[0]} there" if zips else "; export with 'Save images' on, or put the images there")
            hint = _other_extension(root, missing) or hint
            raise DatasetError(f"{counted(len(missing), 'image')} of {xml.name} not found in {root / 'images'}, "
                               f"{root / 'images'}/SUBSET nor beside it (first: {missing[0]}){hint}")
    folder = images_folder_of([p for p in paths if p is not None], root)
    out_dir = Path(out).expanduser() if out is not None else root
    ann_dir = out_dir / "annotations"
    info = info_for(ann_dir, folder, "CVAT for images", xml)
    written, counts = {}, {}
    for split, indices in _splits(data.images, val_fraction, seed, notes).items():
        items = [Annotated(paths[i], f"'{data.images[i].name}'", data.images[i].size, data.images[i].boxes)
                 for i in indices]
        ims, anns, counts[split] = coco_split(split, items, folder, class_names, notes)
        written[split] = ann_dir / f"instances_{split}.json"
        write_coco_json(written[split], ims, anns, class_names, info, counts[split].left_out)
    return Converted(src, out_dir, folder, written, class_names, counts, notes)
