"""CSV box tables (``filename,width,height,class,xmin,ymin,xmax,ymax``) -> COCO JSON.

The TensorFlow Object Detection API tutorials keep boxes in such a table, one row per box
(``train_labels.csv`` + ``test_labels.csv`` beside ``images/``), and Roboflow exports them as
"Tensorflow Object Detection CSV": ``{train,valid,test}/_annotations.csv`` beside each split's
images. Columns are found by name in the header (``filename`` / ``image`` / ``path``, ``class`` /
``label``, ``xmin``, ``ymin``, ``xmax``, ``ymax`` in pixels; ``width`` and ``height`` when given
are checked against the image). A file's split is its name's (``train_labels.csv``) or its
folder's (``valid/_annotations.csv``); without a val file a seeded ``val_fraction`` of train
becomes val (printed). Images of a split folder that no row names are background images
(Roboflow writes no row for an image without boxes), said in a note. Class names are sorted unless
given. Sizes, clipping and unreadable images are handled as for VOC
(:func:`~dfine.data.convert.coco_split`).
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Dict, List, Optional, Sequence, Tuple

from dfine.data.cocojson import DatasetError
from dfine.data.convert import (IMAGE_SUFFIXES, SPLIT_NAMES, Annotated, Converted, check_not_a_split, images_by_name,
                                split_named, within, write_split_files)
from dfine.text import counted, first_few

__all__ = ["BoxTable", "convert_csv", "csv_files", "read_box_table"]

#: header names of each column a box table needs (lower case, spaces and dashes as underscores)
_COLUMNS = {"filename": ("filename", "file_name", "file", "image", "image_name", "image_path", "path", "img"),
            "class": ("class", "label", "class_name", "category", "name"),
            "xmin": ("xmin", "x_min", "x1", "left"), "ymin": ("ymin", "y_min", "y1", "top"),
            "xmax": ("xmax", "x_max", "x2", "right"), "ymax": ("ymax", "y_max", "y2", "bottom")}
_SIZE = {"width": ("width", "image_width", "img_width"), "height": ("height", "image_height", "img_height")}

Box = Tuple[str, Tuple[float, float, float, float], bool]
#: folders of a dataset that hold its tables (the TF Object Detection tutorials: data/train_labels.csv)
_TABLE_FOLDERS = ("annotations", "labels", "data")


@dataclass(frozen=True)
class BoxTable:
    """One CSV file: its split (``None``: not said by its name or folder), per image file name as
    written (``/`` separators) the size the rows say (``None``: not said) and the boxes, and whether
    a header named the columns."""

    path: Path
    split: Optional[str]
    sizes: Dict[str, Optional[Tuple[int, int]]]
    boxes: Dict[str, Tuple[Box, ...]]
    header: bool = True  # False: read in Keras RetinaNet's column order (no header)


def _key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _columns(header: Sequence[str]) -> Optional[Dict[str, int]]:
    """Column index of each needed column (and ``width`` / ``height`` when there); ``None`` when
    the header lacks one."""
    keys = [_key(h) for h in header]
    found = {}
    for column, names in {**_COLUMNS, **_SIZE}.items():
        index = next((keys.index(n) for n in names if n in keys), None)
        if index is None and column in _COLUMNS:
            return None
        if index is not None:
            found[column] = index
    return found


#: the column order of a table without a header: Keras RetinaNet's CSV (Roboflow's "RetinaNet Keras CSV"
#: export), ``path,x1,y1,x2,y2,class_name``, an image without boxes as ``path,,,,,``
_HEADERLESS = {"filename": 0, "xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4, "class": 5}


def _layout(first: Sequence[str]) -> Optional[Tuple[Dict[str, int], bool]]:
    """The columns of a table whose first row is ``first``, and whether that row is a header: a header
    naming them, or none and rows in :data:`_HEADERLESS` order (an image file, four numbers, a name)."""
    named = _columns(first)
    if named is not None:
        return named, True
    cells = [c.strip() for c in first]
    if len(cells) == 6 and Path(cells[0]).suffix.lower() in IMAGE_SUFFIXES:
        try:
            [float(c) for c in cells[1:5] if c]
        except ValueError:
            return None
        if all(cells[1:5]) == bool(cells[5]) and not _is_number(cells[5]):
            return dict(_HEADERLESS), False
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _header(path: Path) -> Optional[List[str]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def csv_files(root: Path) -> List[Path]:
    """The box tables of the dataset folder ``root``: CSV files whose header names a file, a class
    and the four box edges, in it, in its split folders (``{split}/_annotations.csv``) or in its
    ``annotations/``, ``labels/`` or ``data/`` folder; sorted."""
    if not root.is_dir():
        return []
    found = {p for p in _candidates(root) if (header := _header(p)) is not None and _layout(header) is not None}
    return sorted(found)


def incomplete_table(root: Path) -> Optional[str]:
    """``"train/_annotations.csv: its header lacks ymax"`` for the first CSV where :func:`csv_files` looks whose
    header names most of a box table's columns but not all (a walk's table without ymax was told only that the
    folder is no dataset); None when there is none."""
    for path in sorted(_candidates(root)) if root.is_dir() else []:
        header = _header(path) or []
        keys = [_key(h) for h in header]
        lacking = [column for column, names in _COLUMNS.items() if not any(n in keys for n in names)]
        if 0 < len(lacking) <= 2:
            return (f"{path.relative_to(root)}: its header ({', '.join(header)}) lacks "
                    f"{' and '.join(lacking)}; a CSV of boxes names filename, class, xmin, ymin, xmax, ymax")
    return None


def _candidates(root: Path) -> List[Path]:
    """The CSV files where a dataset keeps its tables: in ``root``, its split folders and its
    annotation folders (:data:`_TABLE_FOLDERS`)."""
    folders = [root, *(root / n for n in (*SPLIT_NAMES, *_TABLE_FOLDERS))]
    return [p for folder in folders if folder.is_dir() for p in folder.glob("*.csv")]


def _unread_tables(root: Path, read: Sequence[Path]) -> List[str]:
    """The CSV files where :func:`csv_files` looks that are not box tables it read (no header naming
    the columns: a table cannot be read by position), relative to ``root``."""
    return sorted(str(p.relative_to(root)) for p in _candidates(root)
                  if p not in read and "classes" not in p.stem.lower())  # RetinaNet's _classes.csv: no boxes


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DatasetError(f"{path} line {line}: {column} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path} line {line}: {column} is {text!r}, not a finite number")
    return value


def read_box_table(path: Path) -> BoxTable:
    """One CSV file; a ``DatasetError`` naming the file and every bad line (the first in full) when
    rows are malformed, or when the header lacks a column."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from None
    layout = _layout(rows[0]) if rows else None
    if layout is None:
        raise DatasetError(f"{path}: the header ({', '.join(rows[0]) if rows else 'none'}) does not name the columns "
                           f"filename, class, xmin, ymin, xmax, ymax")
    columns, header = layout
    sizes: Dict[str, Optional[Tuple[int, int]]] = {}
    boxes: Dict[str, List[Box]] = {}
    errors: List[Tuple[int, str]] = []
    for line, row in enumerate(rows[1:] if header else rows, 2 if header else 1):
        if not any(cell.strip() for cell in row):
            continue
        try:
            if len(row) <= max(columns.values()):
                raise DatasetError(f"{path} line {line}: {len(row)} columns, the "
                                   f"{'header has' if header else 'first row has'} {len(rows[0])}")
            name = PureWindowsPath(row[columns["filename"]].strip()).as_posix()
            label = row[columns["class"]].strip()
            if not name:
                raise DatasetError(f"{path} line {line}: no file name")
            if not label and not any(row[columns[c]].strip() for c in ("xmin", "ymin", "xmax", "ymax")):
                boxes.setdefault(name, [])  # an image without a box (RetinaNet's "path,,,,,")
                sizes.setdefault(name, None)
                continue
            edges = tuple(_number(row[columns[c]], path, line, c) for c in ("xmin", "ymin", "xmax", "ymax"))
            size = None
            if "width" in columns and "height" in columns:
                w, h = (_number(row[columns[c]], path, line, c) for c in ("width", "height"))
                size = (int(w), int(h)) if w > 0 and h > 0 else None
        except DatasetError as exc:
            errors.append((line, str(exc)))
            continue
        sizes.setdefault(name, size)
        boxes.setdefault(name, [])
        if label:  # a row without a class: the image listed without a box
            boxes[name].append((label, edges, False))  # type: ignore[arg-type]
    if errors:
        more = f"; and {counted(len(errors) - 1, 'more bad line')}: {first_few([n for n, _ in errors[1:]], 8)}"
        raise DatasetError(errors[0][1] + (more if len(errors) > 1 else ""))
    rows_read = [box for b in boxes.values() for _, box, _ in b]
    swapped = sum(1 for x0, y0, x1, y1 in rows_read if x1 < x0 or y1 < y0)
    if swapped and swapped * 10 >= len(rows_read):
        raise DatasetError(f"{path}: {swapped} of {counted(len(rows_read), 'box', 'boxes')} have xmax < xmin or "
                           f"ymax < ymin: are the columns x, y, width, height? This format takes the corners "
                           f"(xmax = x + width)")
    every = [v for box in rows_read for v in box]
    if every and max(every) <= 1.0 and any(s and max(s) > 1 for s in sizes.values()):
        raise DatasetError(f"{path}: every box edge is between 0 and 1, fractions of the image; this format is in "
                           f"pixels: multiply by the width and height")
    return BoxTable(path, split_named(path), sizes, {k: tuple(v) for k, v in boxes.items()}, header)


def _image_paths(table: BoxTable, root: Path, by_name: Dict[str, List[Path]]) -> Dict[str, Optional[Path]]:
    """Where each image of ``table`` is: its file name from the CSV's folder, from ``images/`` (or
    ``images/SPLIT``) beside it or in ``root``, else the one image of that name under ``root``."""
    places = [table.path.parent, table.path.parent / "images", root, root / "images"]
    if table.split:
        places += [root / "images" / n for n, s in SPLIT_NAMES.items() if s == table.split]
    found: Dict[str, Optional[Path]] = {}
    for name in table.boxes:
        path = next((p / name for p in places if (p / name).is_file()), None)
        if path is None and len(by_name.get(Path(name).name, [])) == 1:
            path = by_name[Path(name).name][0]
        found[name] = within(path, root) if path is not None else None
    return found


def _images_above(root: Path, tables: Sequence[BoxTable]) -> str:
    """``; they are in PARENT/images: give the folder above, PARENT`` when ``root`` is a table folder
    (``data/``, ``annotations/``) whose first listed image sits in its parent or the parent's
    ``images/`` (the raccoon dataset's ``data/train_labels.csv`` beside ``images/``); else ``""``."""
    name = next((n for t in tables for n in t.boxes), None)
    if name is None or root.name.lower() not in _TABLE_FOLDERS:
        return ""
    above = next((d for d in (root.parent / "images", root.parent) if (d / name).is_file()), None)
    return "" if above is None else f"; they are in {above}: give the folder above, {root.parent}"


def _gather(tables: Sequence[BoxTable], root: Path) -> Tuple[Dict[str, Dict[Path, Annotated]], List[str],
                                                               Dict[str, int], Dict[str, int], List[str]]:
    """The images of ``tables`` (split tables first) by split, each image once: ``(images by split,
    images not found, Roboflow images without a row per table, images a table without a split shares
    with the split tables per table, images listed twice in one split)``."""
    by_name = images_by_name(root)
    chosen: Dict[str, Dict[Path, Annotated]] = {}  # split -> image -> its annotation: each image once
    missing: List[str] = []
    missed: set = set()
    unlisted: Dict[str, int] = {}
    covered: Dict[str, int] = {}  # a table without a split (all images) -> its images the split tables list
    twice: List[str] = []
    for table in tables:
        located = _image_paths(table, root, by_name)
        for name in (n for n, p in located.items() if p is None and n not in missed):  # each image once
            missed.add(name)
            missing.append(f"{table.path.relative_to(root)}: {name}")
        split = table.split or "train"
        here = chosen.setdefault(split, {})
        for name, path in located.items():
            if path is None:
                continue
            if table.split is None and any(path in images for images in chosen.values()):
                covered[str(table.path.relative_to(root))] = covered.get(str(table.path.relative_to(root)), 0) + 1
            elif path in here:
                twice.append(f"{table.path.relative_to(root)}: {name}")
            else:
                here[path] = Annotated(path, name, table.sizes[name], table.boxes[name])
        if table.path.name == "_annotations.csv":  # Roboflow: an image without boxes has no row
            extra = sorted(within(p, root) for p in table.path.parent.iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES and within(p, root) not in here)
            here.update((p, Annotated(p, p.name, None, ())) for p in extra)
            if extra:
                unlisted[str(table.path.relative_to(root))] = len(extra)
    return chosen, missing, unlisted, covered, twice


def convert_csv(src: os.PathLike | str, out: Optional[os.PathLike | str] = None, *,
                names: Optional[Sequence[str]] = None, val_fraction: float = 0.2, seed: int = 0) -> Converted:
    """Convert the CSV box tables of the folder ``src`` (or the one CSV file ``src``) into COCO files
    under ``out/annotations`` (default: the dataset folder). Images stay where they are."""
    src = Path(src).expanduser().resolve()
    if not src.exists():
        raise DatasetError(f"CSV dataset {src} not found")
    root = src.parent if src.is_file() else src
    if src.is_file() and root.name.lower() in _TABLE_FOLDERS:  # data/train_labels.csv beside images/
        root = root.parent
    check_not_a_split(root, lambda d: bool(csv_files(d)), "CSV")
    paths = [src] if src.is_file() else csv_files(src)
    if not paths:
        partial = incomplete_table(src)
        said = f": {partial}" if partial else " (a header naming filename, class, xmin, ymin, xmax, ymax)"
        raise DatasetError(f"{src} holds no CSV of boxes{said}")
    tables = sorted((read_box_table(p) for p in paths), key=lambda t: t.split is None)  # split tables first
    notes: List[str] = []
    chosen, missing, unlisted, covered, twice = _gather(tables, root)
    items = {split: list(images.values()) for split, images in chosen.items() if images}
    if covered:
        tables_said = ", ".join(f"{t} ({counted(n, 'image')})" for t, n in covered.items())
        notes.append(f"{tables_said}: images the split tables list too, read from those (a table of every image "
                     f"beside train and test tables)")
    if twice:
        notes.append(f"{counted(len(twice), 'image')} listed in a second table of the same split, read from the first "
                     f"only: {first_few(twice, 3)}")
    headerless = [str(t.path.relative_to(root)) for t in tables if not t.header]
    if headerless:
        notes.append(f"{counted(len(headerless), 'CSV')} without a header read as Keras RetinaNet's columns "
                     f"(filename,xmin,ymin,xmax,ymax,class): {first_few(headerless, 3)}")
    unread = _unread_tables(root, paths) if src.is_dir() else []  # one file given: the others are not looked at
    if unread:
        notes.append(f"{counted(len(unread), 'CSV')} without a header naming filename, class, xmin, ymin, xmax, ymax, "
                     f"left out (add that header line): {first_few(unread, 3)}")
    if missing and not any(items.values()):
        raise DatasetError(f"none of the images of {first_few([str(p.relative_to(root)) for p in paths], 3)} found "
                           f"(first: {missing[0]}); looked beside the CSV, in images/ and by name under {root}"
                           f"{_images_above(root, tables)}")
    if missing:
        notes.append(f"{counted(len(missing), 'image')} named in the CSV not found, left out with their boxes: "
                     f"{first_few(missing, 3)}")
    if unlisted:
        notes.append(f"images with no row in {', '.join(unlisted)} kept as background images (no boxes): "
                     f"{', '.join(str(n) for n in unlisted.values())}")
    return write_split_files(src, root, Path(out) if out is not None else None, items, names, notes,
                             fmt="CSV", kind="CSV", val_fraction=val_fraction, seed=seed)
