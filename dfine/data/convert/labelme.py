"""LabelMe folders (one JSON per image, as the LabelMe tool saves them) -> COCO JSON.

A LabelMe file is ``{"shapes": [{"label", "points": [[x, y], ...], "shape_type", "group_id"}, ...],
"imagePath", "imageData", "imageHeight", "imageWidth"}``, points in pixels of the image as shown
(EXIF orientation applied). ``imagePath`` is relative to the JSON's folder and written with the
separators of the machine that saved it (``..\\images\\a.jpg``). The image is looked for there,
then beside the JSON under its own stem, then by its name anywhere in the dataset folder (JSONs
moved into a folder of their own); a JSON whose image is nowhere but in its ``imageData`` (datasets
shared as JSONs alone) has that image written into the output folder's ``labelme_images/``. A
``rectangle``, ``polygon`` or ``mask`` becomes the box around its points, a ``circle`` (centre, a
point on it) the box around the circle; shapes of one label sharing a ``group_id`` (one object drawn
in parts) become one box. Points, lines and linestrips are not boxes and are counted as left out,
and so are shapes labelled ``__ignore__`` or ``_background_``. JSONs in folders named ``train``,
``val``/``valid`` and ``test`` are those splits, else a seeded ``val_fraction`` becomes val
(printed). Class names are the labels, sorted, unless given. Sizes, clipping and unreadable images
are handled as for VOC (:func:`~dfine.data.convert.coco_split`).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from dfine.data.cocojson import DatasetError
from dfine.data.convert import (IMAGE_SUFFIXES, SPLIT_NAMES, Annotated, Converted, alike_labels_note,
                                check_not_a_split, coco_split, file_head, fraction_said, images_by_name,
                                images_folder_of, info_for, labels_of, split_by_fraction, walk_folders, within,
                                write_coco_json)
from dfine.text import counted, first_few

__all__ = ["LabelmeFile", "convert_labelme", "dataset_of", "is_labelme", "is_labelme_file", "labelme_files",
           "read_labelme_json"]

Box = Tuple[str, Tuple[float, float, float, float], bool]
#: shape types whose points outline the object: the box around the points
_OUTLINES = ("rectangle", "polygon", "mask")
#: shape types that are no box
OTHER_SHAPES = ("point", "points", "line", "linestrip")
#: where the images that exist only inside LabelMe files (``imageData``) are written, in the output folder
EMBEDDED_FOLDER = "labelme_images"
#: LabelMe's labels for what is no class (its labelme2coco / labelme2voc examples' labels.txt starts with them)
IGNORE_LABELS = ("__ignore__", "_background_")
#: bytes read from the head of a JSON file to tell whether LabelMe wrote it
_HEAD = 4096
#: how deep below the dataset folder LabelMe files are looked for (``DATASET/train/json/a.json``)
_DEPTH = 3
#: folders that hold a dataset's LabelMe files: its splits, or a folder of JSONs beside ``images/``
_SUBFOLDERS = (*SPLIT_NAMES, "json", "jsons", "annotations", "labels", "labelme", "ann", "anns")


@dataclass(frozen=True)
class LabelmeFile:
    """One LabelMe JSON: the image path it names (``/`` separators), the size it says (``None``:
    not said), its boxes ``(label, (xmin, ymin, xmax, ymax) px, False)``, how many shapes of each
    kind were turned into boxes or left out, whether it embeds the image (``imageData``) and how many
    shapes carry one of :data:`IGNORE_LABELS`."""

    path: Path
    image_path: str
    size: Optional[Tuple[int, int]]
    boxes: Tuple[Box, ...]
    converted: Dict[str, int]
    left_out: Dict[str, int]
    embedded: bool
    ignored: int = 0  # shapes labelled __ignore__ or _background_


def is_labelme_file(path: Path) -> bool:
    """Whether ``path`` is a JSON file whose head is a LabelMe file's (a ``"shapes"`` list)."""
    head = file_head(path, _HEAD)
    return head.lstrip().startswith(b"{") and b'"shapes"' in head


def _walk(root: Path, depth: int = _DEPTH, names: Optional[Sequence[str]] = None) -> Iterator[Path]:
    """The LabelMe JSON files in the folder ``root`` and ``depth`` levels below it (hidden folders
    and the COCO files a conversion wrote skipped; ``names``: only in folders of these names below
    ``root``), folder by folder."""
    if not root.is_dir():
        return
    for folder, _, files in walk_folders(root, depth, names):
        yield from (folder / f for f in files if f.lower().endswith(".json") and not f.startswith("instances_")
                    and is_labelme_file(folder / f))


def labelme_files(root: Path) -> List[Path]:
    """The LabelMe JSON files in the folder ``root`` and below it, sorted; ``[]`` when it holds none."""
    return sorted(_walk(root))


def dataset_of(path: Path) -> Path:
    """The dataset folder of the LabelMe file at ``path``: its folder, or the one above a folder of
    JSONs (``json/``), and above a split folder beside other splits (``DATASET/train/json/a.json``)."""
    folder = path.parent
    if folder.name.lower() in _SUBFOLDERS and folder.name.lower() not in SPLIT_NAMES:
        folder = folder.parent
    if folder.name.lower() in SPLIT_NAMES and any(d.is_dir() and d != folder and d.name.lower() in SPLIT_NAMES
                                                  for d in folder.parent.iterdir()):
        folder = folder.parent
    return folder


def is_labelme(root: Path, nested: bool = True) -> bool:
    """Whether the folder ``root`` holds LabelMe JSON files: in it or a folder or two below it
    (``nested``), else only in it or its split and annotation folders (``train/``, ``json/``, ...:
    a folder above a dataset the user named is no LabelMe set for holding one somewhere below)."""
    return next(_walk(root, 2, None if nested else _SUBFOLDERS), None) is not None


def _points(shape: Dict, where: str) -> List[Tuple[float, float]]:
    points = shape.get("points")
    try:
        xy = [(float(p[0]), float(p[1])) for p in points]  # type: ignore[union-attr]
    except (TypeError, ValueError, IndexError, KeyError):
        xy = []
    if not xy or any(len(p) != 2 for p in points) or not all(math.isfinite(v) for p in xy for v in p):
        raise DatasetError(f"{where}: points are {str(points)[:60]}; expected [[x, y], ...] in pixels")
    return xy


def _shape_box(shape: Dict, kind: str, where: str) -> Tuple[float, float, float, float]:
    """The box around one shape: its points' extent, or a circle's (centre, a point on it)."""
    xy = _points(shape, where)
    if kind == "circle":
        if len(xy) != 2:
            raise DatasetError(f"{where}: a circle has {len(xy)} points; LabelMe writes its centre and a point on it")
        (cx, cy), (px, py) = xy
        r = math.hypot(px - cx, py - cy)
        return cx - r, cy - r, cx + r, cy + r
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    return min(xs), min(ys), max(xs), max(ys)


def read_labelme_json(path: Path) -> LabelmeFile:
    """One LabelMe file; a one-line ``DatasetError`` naming it (and the shape) when malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{path}: not a LabelMe file (no \"shapes\" list)")
    boxes: List[Box] = []
    groups: Dict[Tuple[str, object], int] = {}
    converted: Counter = Counter()
    left_out: Counter = Counter()
    ignored = 0
    for i, shape in enumerate(data["shapes"]):
        label = str(shape.get("label") or "").strip() if isinstance(shape, dict) else ""
        where = f"{path}: shape {i + 1}" + (f" '{label}'" if label else "")
        if not isinstance(shape, dict) or not label:
            raise DatasetError(f"{where}: a shape without a label")
        if label in IGNORE_LABELS:
            ignored += 1
            continue
        kind = shape.get("shape_type") or "polygon"  # LabelMe 3 wrote no shape_type: polygons
        if kind in OTHER_SHAPES:
            left_out[kind] += 1
            continue
        if kind not in _OUTLINES and kind != "circle":
            raise DatasetError(f"{where}: shape_type '{kind}' is none of LabelMe's (rectangle, polygon, circle, "
                               f"mask, point, line, linestrip, points)")
        box = _shape_box(shape, kind, where)
        converted[kind] += 1
        group = shape.get("group_id")
        if group is not None and (label, group) in groups:  # one object drawn in parts: the box around them all
            j = groups[(label, group)]
            old = boxes[j][1]
            boxes[j] = (label, (min(old[0], box[0]), min(old[1], box[1]), max(old[2], box[2]),
                                max(old[3], box[3])), False)
            converted["grouped"] += 1
            continue
        if group is not None:
            groups[(label, group)] = len(boxes)
        boxes.append((label, box, False))
    try:
        size = (int(data["imageWidth"]), int(data["imageHeight"]))
    except (KeyError, TypeError, ValueError):
        size = None
    image_path = str(data.get("imagePath") or "").strip()
    return LabelmeFile(path, PureWindowsPath(image_path).as_posix() if "\\" in image_path else image_path,
                       size if size and min(size) > 0 else None, tuple(boxes), dict(converted), dict(left_out),
                       bool(data.get("imageData")), ignored)


def _read_or_reason(path: Path) -> Union[LabelmeFile, str]:
    try:
        return read_labelme_json(path)
    except DatasetError as exc:
        return str(exc).split(": ", 1)[1] if str(exc).startswith(f"{path}: ") else str(exc)


def _image_of(item: LabelmeFile, root: Path, by_name: Dict[str, List[Path]]) -> Tuple[Optional[Path], bool]:
    """Where the image of ``item`` is, and whether it was found elsewhere than ``imagePath`` says:
    at ``imagePath`` from the JSON's folder (inside ``root``: an absolute path or one leaving the
    dataset folder is looked for by name instead), beside the JSON under the JSON's stem, or the one image
    of that name in the dataset folder ``root``."""
    folder = item.path.parent
    if item.image_path:
        named = within(folder / item.image_path, root)
        if named is not None and named.is_file() and named.suffix.lower() in IMAGE_SUFFIXES:
            return named, False  # never an image from outside the dataset folder, nor the JSON itself
    stems = [folder / (item.path.stem + s) for s in sorted(IMAGE_SUFFIXES)]
    beside = next((p for p in stems if p.is_file()), None)
    if beside is not None:
        return within(beside, root), bool(item.image_path)
    name = Path(item.image_path).name if item.image_path else None
    places = by_name.get(name, []) if name else []
    if len(places) == 1:
        return within(places[0], root), True
    return None, False


def _write_embedded(item: LabelmeFile, root: Path, folder: Path) -> Optional[Path]:
    """The image the LabelMe file ``item`` embeds (``imageData``, base64 of the image file) written as
    that file under ``folder`` (at the JSON's place below ``root``, named as the JSON, the suffix of
    its format); ``None`` when it does not decode to an image."""
    import base64
    import io

    import PIL.Image

    from dfine.data.convert import write_bytes_atomic

    try:
        raw = base64.b64decode(json.loads(item.path.read_text(encoding="utf-8-sig"))["imageData"], validate=False)
        with PIL.Image.open(io.BytesIO(raw)) as image:
            kind = (image.format or "").lower()
    except Exception:  # noqa: BLE001 - not an image: the JSON is left out, named
        return None
    suffix = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "tiff": ".tif", "webp": ".webp"}.get(kind)
    if suffix is None:
        return None
    path = folder / item.path.relative_to(root).with_suffix(suffix)
    write_bytes_atomic(path, raw)
    return path.resolve()


def _split_of(path: Path, root: Path) -> Optional[str]:
    """The split named by a folder between ``root`` and ``path`` (``train/``, ``valid/``, ...)."""
    return next((SPLIT_NAMES[p.lower()] for p in path.relative_to(root).parent.parts if p.lower() in SPLIT_NAMES),
                None)


def _splits(files: Sequence[LabelmeFile], root: Path, val_fraction: float, seed: int,
            notes: List[str]) -> Dict[str, List[int]]:
    """``{split: [file index, ...]}``: the split folders the JSONs are in, or a seeded ``val_fraction``
    (of the train folder's when there is no val folder), said in ``notes``."""
    groups: Dict[Optional[str], List[int]] = {}
    for i, item in enumerate(files):
        groups.setdefault(_split_of(item.path, root), []).append(i)
    other = groups.pop(None, [])
    if groups and other:
        folders = sorted({str(files[i].path.parent.relative_to(root)) for i in other})
        notes.append(f"{counted(len(other), 'JSON')} outside the split folders ({first_few(folders, 3)}) joined train")
    splits = {k: v for k, v in groups.items()}
    if not splits.get("train") and not other:
        found = sorted({files[i].path.relative_to(root).parts[0] for v in splits.values() for i in v})
        raise DatasetError(f"{root}: LabelMe files only in {', '.join(f + '/' for f in found)}, none in a train "
                           f"folder: name the folder of training images train, or give it alone "
                           f"(--data {root / found[0]}: a share of it becomes val)")
    splits["train"] = sorted(splits.get("train", []) + other)
    if "val" not in splits:
        keys = {files[i].path.relative_to(root).as_posix(): i for i in splits["train"]}
        said: List[str] = []
        train, val = split_by_fraction(list(keys), val_fraction, seed,
                                       labels_of({k: files[i] for k, i in keys.items()}), said)
        splits["train"], splits["val"] = [keys[k] for k in train], [keys[k] for k in val]
        where = "no val folder" if groups else "no split folders"
        notes.append(f"{where}: {len(val)} of {counted(len(keys), 'image')} became val "
                     f"{fraction_said(val_fraction, seed)}")
        notes += said
    return {k: splits[k] for k in ("train", "val", "test") if k in splits}


def _class_names(files: Sequence[LabelmeFile], names: Optional[Sequence[str]], root: Path,
                 notes: List[str]) -> Tuple[str, ...]:
    """The classes: ``names`` in their order (every label of the files must be one, else an error naming
    each label that is not and a file holding it), else the labels sorted; labels that differ only in
    case, or a rare label spelt almost as another, are said in ``notes`` with a file holding them
    (a typo while labelling, most likely, which would be a class of its own)."""
    used: Counter = Counter()
    where: Dict[str, str] = {}
    for f in files:
        for label, _, _ in f.boxes:
            used[label] += 1
            where.setdefault(label, f.path.relative_to(root).as_posix())

    def said(label: str) -> str:
        return f"'{label}' ({counted(used[label], 'box', 'boxes')}, e.g. {where[label]})"

    if names:
        unknown = [label for label in sorted(used) if label not in names]
        if unknown:
            raise DatasetError(f"{counted(len(unknown), 'label')} of the LabelMe files not in --names "
                               f"({', '.join(names)}): {first_few(map(said, unknown), 5)}; add "
                               f"{'it' if len(unknown) == 1 else 'them'} to --names or rename them in the JSONs")
        return tuple(names)
    note = alike_labels_note(used, where, "the JSONs")
    if note:
        notes.append(note)
    return tuple(sorted(used))


def _shape_notes(files: Sequence[LabelmeFile], notes: List[str]) -> None:
    converted: Counter = Counter()
    left_out: Counter = Counter()
    for f in files:
        converted.update(f.converted)
        left_out.update(f.left_out)
    grouped = converted.pop("grouped", 0)
    turned = {k: n for k, n in converted.items() if k not in ("rectangle",)}
    if turned:
        notes.append(f"{', '.join(counted(n, k) for k, n in sorted(turned.items()))} became the boxes around them")
    if grouped:
        notes.append(f"{counted(grouped, 'shape')} sharing a label and group_id with another were joined into one box "
                     f"with it (one object drawn in parts)")
    if left_out:
        notes.append(f"{', '.join(counted(n, k) for k, n in sorted(left_out.items()))} are not boxes, left out")
    ignored = sum(f.ignored for f in files)
    if ignored:
        notes.append(f"{counted(ignored, 'shape')} labelled {' or '.join(IGNORE_LABELS)} (LabelMe's labels for what is "
                     f"no class) left out")


def _locate(files: Sequence[LabelmeFile], src: Path, out_dir: Path, notes: List[str]) -> List[Optional[Path]]:
    """The image of each LabelMe file (``None``: not found, left out), those only inside a file
    written into ``out_dir``; what was found elsewhere, written or left out said in ``notes``. A
    ``DatasetError`` when no image is found, naming the folder above when they are outside ``src``."""
    by_name = images_by_name(src, _DEPTH + 1)
    located = [_image_of(f, src, by_name) for f in files]
    if all(p is None for p, _ in located):
        outside = next((p for f in files if f.image_path and (p := (f.path.parent / f.image_path).resolve()).is_file()
                        and p.suffix.lower() in IMAGE_SUFFIXES), None)
        if outside is not None:  # the JSONs' own folder given (json/ beside images/)
            holder = Path(os.path.commonpath([src, outside.parent]))
            raise DatasetError(f"the images of the LabelMe files in {src} are outside it (e.g. {outside}): give the "
                               f"folder that holds both, e.g. --data {holder}")
    inside = [i for i, (f, (p, _)) in enumerate(zip(files, located)) if p is None and f.embedded]
    if inside:  # the image only in the JSON (imageData): written out as the file it was
        with ThreadPoolExecutor(max_workers=8) as pool:
            decoded = list(pool.map(lambda f: _write_embedded(f, src, out_dir / EMBEDDED_FOLDER),
                                    [files[i] for i in inside]))
        for i, path in zip(inside, decoded):
            located[i] = (path, False)
        written = [p for p in decoded if p is not None]
        if written:
            notes.append(f"{counted(len(written), 'image')} taken from the JSONs' imageData (no image file where "
                         f"imagePath says) -> {out_dir / EMBEDDED_FOLDER}")
    missing = [f for f, (p, _) in zip(files, located) if p is None]
    if missing and len(missing) == len(files):
        first = missing[0]
        raise DatasetError(f"none of the {counted(len(files), 'image')} of the LabelMe files in {src} found (first: "
                           f"{first.path.relative_to(src)} names {first.image_path or 'no imagePath'!r}, looked for "
                           f"beside it and by name under {src})")
    if missing:
        shown = "; ".join(f"{f.path.relative_to(src)} ({f.image_path or 'no imagePath'})" for f in missing[:3])
        notes.append(f"{counted(len(missing), 'JSON')} whose image is not found, left out: {shown}"
                     f"{'; ...' if len(missing) > 3 else ''}")
    moved = [f for f, (p, elsewhere) in zip(files, located) if p is not None and elsewhere]
    if moved:
        f, p = moved[0], located[files.index(moved[0])][0]
        notes.append(f"{counted(len(moved), 'image')} not where imagePath says, found by name instead "
                     f"(e.g. {f.path.relative_to(src)}: {f.image_path} -> {p})")
    return [p for p, _ in located]


def convert_labelme(src: os.PathLike | str, out: Optional[os.PathLike | str] = None, *,
                    names: Optional[Sequence[str]] = None, val_fraction: float = 0.2, seed: int = 0) -> Converted:
    """Convert the LabelMe folder at ``src`` into COCO files under ``out/annotations`` (default: the
    folder itself). Images stay where they are."""
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise DatasetError(f"LabelMe folder {src} not found" if not src.exists() else
                           f"{src}: give the folder of LabelMe JSONs, not one file")
    check_not_a_split(src, is_labelme, "LabelMe")
    paths = labelme_files(src)
    if not paths:
        raise DatasetError(f"{src} holds no LabelMe JSON files (a JSON with a \"shapes\" list, as LabelMe saves one "
                           f"per image)")
    with ThreadPoolExecutor(max_workers=8) as pool:
        read = list(pool.map(_read_or_reason, paths))
    files = [r for r in read if isinstance(r, LabelmeFile)]
    bad = [(p, why) for p, why in zip(paths, read) if isinstance(why, str)]
    if bad and not files:
        raise DatasetError(f"{bad[0][0]}: {bad[0][1]}" + (f" (and {counted(len(bad) - 1, 'other JSON')})"
                                                           if len(bad) > 1 else ""))
    notes: List[str] = []
    if bad:  # each left out, all said at once
        notes.append(f"{counted(len(bad), 'JSON')} cannot be read, left out: "
                     f"{'; '.join(f'{p.relative_to(src)} ({why})' for p, why in bad[:3])}"
                     f"{'; ...' if len(bad) > 3 else ''}")
    out_dir = Path(out).expanduser().resolve() if out is not None else src
    located = _locate(files, src, out_dir, notes)
    kept = [(f, p) for f, p in zip(files, located) if p is not None]
    files, image_paths = [f for f, _ in kept], [p for _, p in kept]
    _shape_notes(files, notes)
    class_names = _class_names(files, names, src, notes)
    if not class_names:
        raise DatasetError(f"{src}: no rectangle, polygon, circle or mask in any LabelMe file and no --names; "
                           f"nothing to learn")
    folder = images_folder_of(image_paths, src)
    ann_dir = out_dir / "annotations"
    info = info_for(ann_dir, folder, "LabelMe", src)
    written, counts = {}, {}
    for split, indices in _splits(files, src, val_fraction, seed, notes).items():
        items = [Annotated(image_paths[i], files[i].path.name, files[i].size, files[i].boxes) for i in indices]
        ims, anns, counts[split] = coco_split(split, items, folder, class_names, notes, kind="JSON")
        written[split] = ann_dir / f"instances_{split}.json"
        write_coco_json(written[split], ims, anns, class_names, info, counts[split].left_out)
    return Converted(src, out_dir, folder, written, class_names, counts, notes)
