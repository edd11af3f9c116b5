"""YOLO (Ultralytics, Roboflow, darknet/labelImg) datasets -> COCO JSON.

Layouts read, in this order:

* a ``data.yaml`` (or ``dataset.yaml``, or the one YAML in SRC with ``train``/``names``): ``path``
  (the root; relative paths are relative to the YAML's folder), ``train`` / ``val`` / ``test`` as
  folders, ``.txt`` lists of image paths, or lists of either, relative to ``path`` or to the YAML
  (a leading ``../`` that leads nowhere is dropped, as Ultralytics does for Roboflow's
  ``../train/images``); ``names`` as a list or an ``{id: name}`` dict; ``nc``;
* darknet's ``obj.data`` (in SRC or SRC/data): ``train`` / ``valid`` lists of image paths relative to
  the folder darknet runs from, ``names`` a file of class names, ``classes`` their count;
* ``images/{train,val,test}`` + ``labels/{...}`` (Ultralytics), ``{train,valid,test}/images`` +
  ``labels`` (Roboflow), or one ``images/`` folder, or images and ``.txt`` files side by side.

Labels are found as Ultralytics finds them: the last ``/images/`` of the image path becomes
``/labels/`` and the extension ``.txt``. Rows are ``class cx cy w h`` normalised to the image
(with EXIF orientation applied, as Ultralytics reads images); polygon rows ``class x1 y1 x2 y2
...`` become their bounding box; in a pose set (``kpt_shape: [K, D]`` in the YAML) rows are ``class cx cy w
h`` + K x D keypoint numbers, and the box is kept (the keypoints are left out, said in a note). An image
with no label file, or an empty one, is a background
image and is kept. Class names come from ``--names``, the YAML, ``classes.txt``, ``obj.names`` or another ``*.names``.
Without a val split, a seeded ``val_fraction`` of train becomes val (printed).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PureWindowsPath
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from dfine.data.cocojson import DatasetError
from dfine.data.convert import (IMAGE_SUFFIXES, SPLIT_NAMES, Converted, SplitCounts, changes_note, file_head,
                                header_or_reason, fraction_said, images_folder_of, info_for, split_by_fraction,
                                write_coco_json)
from dfine.text import counted, first_few

__all__ = ["NAMES_FILES", "beside_images", "convert_yolo", "find_darknet_data", "label_path", "read_label_file"]

_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
#: files naming a YOLO set's classes, one per line (``_darknet.labels``: Roboflow's "YOLO Darknet" export)
NAMES_FILES = ("classes.txt", "obj.names", "classes.names", "_darknet.labels")


def _classes_named(image: Path, names: Sequence[str]) -> set:
    """The class names of the rows of ``image``'s label file (an id beyond ``names`` as itself, a
    row that is not a class id skipped), read to split with every class on both sides; the
    conversion reads the file again and says what is wrong in it."""
    try:
        lines = label_path(image).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return set()
    ids = {line.split()[0] for line in lines if line.split()}
    return {names[int(i)] if i.isdigit() and int(i) < len(names) else i for i in ids}


def label_path(image: Path) -> Path:
    """The label file Ultralytics reads for ``image``: last ``/images/`` -> ``/labels/``, ``.txt``."""
    text = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in text:
        text = sb.join(text.rsplit(sa, 1))
    return Path(os.path.splitext(text)[0] + ".txt")


Row = Tuple[int, float, float, float, float, int]  # class, x0, y0, x1, y1 normalised, line number in its file
# A normalised coordinate of a box drawn past the border may exceed 1 a little; above this it is pixels
# (Ultralytics skips such a file as "non-normalized"; its boxes here landed outside the image, all dropped).
_MOST_NORMALISED = 2.0


class LabelError(DatasetError):
    """An error of one label file: ``path`` and ``line`` (0: the file as a whole), both in the message."""

    def __init__(self, path: Path, line: int, why: str) -> None:
        super().__init__(f"{path} line {line}: {why}" if line else f"label file {path} {why}")
        self.path, self.line, self.why = path, line, why


def _ids_outside(text: str, num_classes: int) -> int:
    """How many rows of a label file's ``text`` start with a whole class id outside ``0..num_classes-1``
    (one wrong row, or a file labelled with another set's ids: the error says which)."""
    count = 0
    for line in text.splitlines():
        first = line.split()[:1]
        try:
            cls = float(first[0]) if first else 0.0
        except ValueError:
            continue
        count += math.isfinite(cls) and cls == int(cls) and not 0 <= cls < num_classes
    return count


def _row_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def read_label_file(path: Path, num_classes: int, names_source: str, keypoints: int = 0) -> List[Row]:
    """The rows of one label file as ``(class, x0, y0, x1, y1, line)`` normalised; polygon rows as their
    bounding box; with ``keypoints`` (K x D of a pose set's ``kpt_shape``) every row is ``class cx cy w
    h`` + that many keypoint numbers, and only the box is read. ``DatasetError`` naming file and line
    for a malformed row or a class id outside ``0..num_classes-1``."""
    rows: List[Row] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(path, 0, f"cannot be read ({exc})") from None
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise LabelError(path, number, f"not numbers: {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise LabelError(path, number, f"not a finite number: {line.strip()!r}")
        cls, coords = values[0], values[1:]
        if cls != int(cls):
            raise LabelError(path, number, f"class id {parts[0]} is not an integer")
        if not 0 <= cls < num_classes:
            wrong, rows = _ids_outside(text, num_classes), _row_count(text)
            also = "" if wrong == 1 else (f"; so are all {rows} of its rows" if wrong == rows
                                          else f"; so are {wrong} of its {rows} rows")
            raise LabelError(path, number, f"class id {int(cls)} is outside the {num_classes} class names "
                               f"of {names_source} (0..{num_classes - 1}){also}; fix the "
                               f"{'row' if wrong == 1 else 'rows'} or the names")
        if coords and max(coords[:4] if keypoints else coords) > _MOST_NORMALISED:
            shown = " ".join(parts[1:5]) + (" ..." if len(parts) > 5 else "")
            raise LabelError(path, number, f"coordinates {shown} are not normalised: YOLO rows give "
                               f"0..1 fractions of the image (x / width, y / height); pixel labels must be divided "
                               f"by the image size")
        if keypoints and len(coords) != 4 + keypoints:
            raise LabelError(path, number, f"a pose row is 'class cx cy w h' + {keypoints} keypoint numbers "
                               f"(kpt_shape of the data YAML), got {len(parts)} values")
        if len(coords) == 4 or keypoints:
            cx, cy, w, h = coords[:4]
            rows.append((int(cls), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, number))
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            xs, ys = coords[0::2], coords[1::2]
            rows.append((int(cls), min(xs), min(ys), max(xs), max(ys), number))
        else:
            pose = (f"; a pose row ('class cx cy w h' + keypoints x y visible) needs kpt_shape: "
                    f"[{(len(coords) - 4) // 3}, 3] in the data YAML" if len(coords) > 4 and len(coords) % 3 == 1
                    else "; 'class cx cy w h confidence' is a saved prediction (save_conf): drop the last column"
                    if len(coords) == 5 else "")
            raise LabelError(path, number, f"expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 "
                               f"x3 y3 ...', got {len(parts)} values{pose}")
    return rows


# ------------------------------------------------------------------------------------ layout


def _find_yaml(src: Path) -> Optional[Path]:
    if src.is_file():
        if src.suffix.lower() in (".yaml", ".yml"):
            return src
        raise DatasetError(f"{src} is not a folder or a data.yaml; give the YOLO dataset folder")
    for name in _YAML_NAMES:
        if (src / name).is_file():
            return src / name
    found = []
    for path in sorted(src.glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and "train" in data and ("names" in data or "nc" in data):
            found.append(path)
    return found[0] if len(found) == 1 else None


def yaml_entry(src: Path, key: str) -> Optional[str]:
    """The ``key`` entry (``test``, ``val``) of the dataset YAML of the YOLO folder ``src``, as written;
    None without a YAML or the entry."""
    path = _find_yaml(src)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path is not None else None
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return str(value) if value else None


def _resolve_entry(entry: str, roots: Sequence[Path], where: str, notes: List[str]) -> Path:
    looked = []
    for root in roots:
        for candidate in (entry, entry[3:] if entry.startswith("../") else None):
            if candidate is None:
                continue
            path = Path(candidate) if os.path.isabs(candidate) else root / candidate
            if path.exists():
                return path.resolve()
            looked.append(os.path.normpath(str(path)))
    moved = _moved_here(entry, roots)
    if moved is not None:
        notes.append(f"{where}: {entry} is not on this machine; used {moved}")
        return moved
    tail = _tail_here(entry, roots)
    if tail is not None:  # a Roboflow notebook's download folder in the path: Egg-Quality-Grading-2/train/images
        notes.append(f"{where}: '{entry}' is not in this dataset folder; used {tail}, the end of that path")
        return tail
    raise DatasetError(f"{where}: '{entry}' not found (looked for {', '.join(dict.fromkeys(looked))})"
                       + _image_folders_said(roots))


def _image_folders_said(roots: Sequence[Path]) -> str:
    """``"; images under ROOT are in: a/ (12), b/c/ (3)"`` for the first existing root (its folders up to
    two levels down that hold images), to point a data.yaml entry at; ``""`` when none does."""
    root = next((r for r in roots if r.is_dir()), None)
    if root is None:
        return ""
    folders = [root, *[d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]]
    folders += [d for f in folders[1:] for d in f.iterdir() if d.is_dir() and not d.name.startswith(".")]
    counts = {f: sum(1 for p in f.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for f in folders}
    held = [f"{(str(f.relative_to(root)) + '/') if f != root else './'} ({n})" for f, n in counts.items() if n]
    if not held:
        return ""
    said = f"; images under {root} are in: {', '.join(held[:4])}"
    # a walk's my_images/ beside labels/: YOLO finds a label by the image's path with images/ -> labels/
    odd = [f for f, n in counts.items() if n and f != root and f.name != "images"
           and (f.parent / "labels").is_dir() and any((f.parent / "labels").glob("*.txt"))]
    if len(odd) == 1:
        said += (f"; {odd[0].parent.relative_to(root) / 'labels'}/ beside it holds .txt labels: YOLO finds an "
                 f"image's labels at its path with images/ replaced by labels/, so renaming "
                 f"{odd[0].relative_to(root)}/ to images/ pairs them")
    return said


def _moved_here(entry: str, roots: Sequence[Path]) -> Optional[Path]:
    """For an absolute path written on another machine (``C:\\Users\\...\\data\\train\\images``,
    ``/Users/...``): the longest tail of it that exists under one of ``roots``, else ``None``."""
    windows = PureWindowsPath(entry)
    if not (windows.drive or entry.startswith(("/", "\\"))):
        return None
    parts = [p for p in windows.parts[1:] if p not in ("/", "\\")]
    for k in range(len(parts), 0, -1):
        for root in roots:
            path = root.joinpath(*parts[-k:])
            if path.exists():
                return path.resolve()
    return None


def _tail_here(entry: str, roots: Sequence[Path]) -> Optional[Path]:
    """For a relative path whose first folders are not there (``Egg-Quality-Grading-2/train/images``, the
    folder a download notebook wrote into): the longest tail of it, of two parts at least, that exists
    under one of ``roots`` (``train/images``), else ``None``."""
    parts = [p for p in PureWindowsPath(entry).parts if p not in ("..", ".")]
    if os.path.isabs(entry) or len(parts) < 3:
        return None
    for k in range(len(parts) - 1, 1, -1):
        for root in roots:
            path = root.joinpath(*parts[-k:])
            if path.exists():
                return path.resolve()
    return None


def _images_in(entry: Path, roots: Sequence[Path]) -> List[Path]:
    """Images of a folder (recursively) or of a ``.txt`` list (paths relative to the list)."""
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    try:
        lines = entry.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        raise DatasetError(f"{entry} is neither a folder of images nor a .txt list of image paths") from None
    images = []
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            continue
        path = Path(name)
        if not path.is_absolute():
            options = [entry.parent / name] + [root / name for root in roots]
            path = next((p for p in options if p.is_file()), options[0])
        if not path.is_file():
            raise DatasetError(f"{entry} line {number}: image {name} not found (looked for {path})")
        images.append(path.resolve())
    return images


def _splits_from_yaml(path: Path) -> Tuple[Dict[str, List[Path]], Dict[str, Any], List[str]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with train, val and names")
    root = path.parent
    if data.get("path"):
        root = Path(os.path.expanduser(str(data["path"])))
        root = root if root.is_absolute() else path.parent / root
    roots = [root, path.parent] if root != path.parent else [root]
    notes = []
    if data.get("path") and not root.is_dir():  # written on another machine (C:/...): try its last folder here
        roots.append(path.parent / PureWindowsPath(str(data["path"])).name)
        here = [str(r) for r in roots[1:] if r.is_dir()]
        notes.append(f"{path.name}: path {data['path']} is not on this machine; its splits were looked up in "
                     f"{' and '.join(here)}")
    elif data.get("path") and not root.resolve().is_relative_to(path.parent.resolve()):
        notes.append(f"{path.name}: path: {data['path']} is outside the folder holding {path.name}: its splits are "
                     f"read from {root.resolve()} (remove the path: line to read them beside {path.name})")
    return _splits_of(data, path, roots, notes), data, notes


def beside_images(root: Path) -> Optional[str]:
    """What shows ``root`` to be a YOLO folder of images with their ``.txt`` labels beside them
    (LabelImg's YOLO save, a darknet ``obj/`` folder, a split of Roboflow's "YOLO Darknet" export): its
    names file (``classes.txt``, ``obj.names``, ``_darknet.labels``) or the first ``.txt`` named as an
    image is; ``None`` when it holds no image or no such file."""
    if not root.is_dir():
        return None
    files = [p for p in root.iterdir() if p.is_file()]
    stems = {p.stem for p in files if p.suffix.lower() in IMAGE_SUFFIXES}
    if not stems:
        return None
    named = next((n for n in NAMES_FILES if (root / n).is_file()), None)
    return named or next((p.name for p in sorted(files) if p.suffix.lower() == ".txt" and p.stem in stems), None)


def find_darknet_data(src: Path) -> Optional[Path]:
    """darknet's ``obj.data`` of ``src``: the file itself, or the one ``*.data`` file with a ``train =``
    line in the folder or in its ``data/`` (``src`` then being the folder darknet runs from)."""
    if src.is_file():
        return src if src.suffix.lower() == ".data" else None
    for folder in (src, src / "data"):
        found = [p for p in sorted(folder.glob("*.data")) if "train" in _read_darknet_data(p)] if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
    return None


def _read_darknet_data(path: Path) -> Dict[str, str]:
    """The ``key = value`` lines of a darknet ``.data`` file (``classes``, ``train``, ``valid``, ``names``,
    ``backup``); ``{}`` when it cannot be read as text."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return {}
    pairs = (line.split("#", 1)[0].partition("=") for line in text.splitlines())
    return {key.strip().lower(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def _splits_from_darknet(path: Path) -> Tuple[Dict[str, List[Path]], Dict[str, Any], List[str]]:
    """The splits and names of darknet's ``obj.data``: ``train`` / ``valid`` lists of image paths and
    a ``names`` file, relative to the folder darknet runs from (the one above ``data/``) or to the file's."""
    raw = _read_darknet_data(path)
    roots = list(dict.fromkeys([path.parent.parent if path.parent.name == "data" else path.parent, path.parent]))
    notes: List[str] = []
    data: Dict[str, Any] = {key: raw[name] for key, name in (("train", "train"), ("val", "valid"), ("test", "test"))
                            if raw.get(name)}
    if raw.get("names"):
        names_file = _resolve_entry(raw["names"], roots, f"{path}: names", notes)
        data["names"] = [n.strip() for n in names_file.read_text(encoding="utf-8-sig").splitlines() if n.strip()]
    if raw.get("classes"):
        try:
            data["nc"] = int(raw["classes"])
        except ValueError:
            raise DatasetError(f"{path}: classes = {raw['classes']!r} is not a whole number") from None
    if data.get("val") and data.get("val") == data.get("train"):
        notes.append(f"{path.name}: valid is the train list ({raw['valid']}), so val AP will not show how the model "
                     f"does on new images")
    return _splits_of(data, path, roots, notes), data, notes


def _splits_of(data: Dict[str, Any], path: Path, roots: Sequence[Path], notes: List[str]) -> Dict[str, List[Path]]:
    """The images of the ``train`` / ``val`` / ``test`` entries of ``data`` (read from the file ``path``):
    folders or ``.txt`` lists, relative to ``roots``; a val or test entry none of whose folders is there is
    a note (val: then a seeded share of train, as for a set without one), one of several missing an error."""
    splits: Dict[str, List[Path]] = {}
    for key in ("train", "val", "test"):
        value = data.get(key)
        if not value:
            continue
        entries = value if isinstance(value, list) else [value]
        found, missing = [], []
        for e in entries:
            try:
                found.append(_resolve_entry(str(e), roots, f"{path}: {key}", notes))
            except DatasetError as error:
                missing.append(error)
        if missing and (found or key == "train"):
            raise missing[0]
        if missing:  # a Roboflow download of its train split alone (a walk's books set): its data.yaml names all three
            other = _split_folder_by_another_name(key, roots)
            if other is not None:  # 'val: val/images' beside Roboflow's valid/images: its labelled images were
                folder, n = other  # passed over for a seeded share of train (a walk)
                raise DatasetError(f"{path}: {key}: {value} is not there, but {folder} holds {counted(n, 'image')}: "
                                   f"point {key}: at it ({key}: {folder.relative_to(roots[0]).as_posix()}), or "
                                   f"remove the {key} entry" + (" for a seeded share of train" if key == "val" else ""))
            notes.append(f"{path.name} names a {key} split ({value}) that is not there; "
                         + ("a seeded share of train becomes val instead" if key == "val" else "no test file written"))
            continue
        splits[key] = [im for entry in found for im in _images_in(entry, roots)]
    if "train" not in splits:
        raise DatasetError(f"{path}: no 'train' entry; add train: images/train (a folder or a .txt list)")
    return splits


def _split_folder_by_another_name(split: str, roots: Sequence[Path]) -> Optional[Tuple[Path, int]]:
    """The folder of ``split``'s images under another of its names (``valid/images`` for ``val``) in the
    first of ``roots`` (a data.yaml's folder), with its image count; None when there is none."""
    for folder, ours in SPLIT_NAMES.items():
        for candidate in (roots[0] / "images" / folder, roots[0] / folder / "images", roots[0] / folder):
            images = _images_in(candidate, roots) if ours == split and candidate.is_dir() else []
            if images:
                return candidate, len(images)
    return None


def _splits_from_folders(src: Path) -> Dict[str, List[Path]]:
    splits: Dict[str, List[Path]] = {}
    for folder, ours in SPLIT_NAMES.items():
        for candidate in (src / "images" / folder, src / folder / "images", src / folder):
            if candidate.is_dir() and ours not in splits:
                images = _images_in(candidate, [src])
                if images:
                    splits[ours] = images
    if splits:
        return splits
    for candidate in (src / "images", src):
        images = sorted(p for p in candidate.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()) \
            if candidate.is_dir() else []
        if images:
            return {"train": images}
    raise DatasetError(f"no YOLO dataset found in {src}: expected a data.yaml, images/{{train,val}} + "
                       f"labels/{{train,val}}, {{train,valid}}/images + labels (Roboflow), or an images/ folder")


def _names(src: Path, data: Dict[str, Any], yaml_path: Optional[Path], given: Optional[Sequence[str]],
           label_dirs: Sequence[Path], notes: List[str]) -> Tuple[Tuple[str, ...], str]:
    """Class names and where they came from: ``given`` (``--names``) over the dataset's own. Given
    names that the dataset also declares must be as many (else an error: the class ids of the labels
    would mean other classes); other names for them are said in ``notes`` (they were taken without a word)."""
    if not given:
        return _declared_names(src, data, yaml_path, label_dirs)
    given = tuple(str(n) for n in given)
    try:
        declared, where = _declared_names(src, data, yaml_path, label_dirs)
    except DatasetError:  # the dataset names none: --names is what names them
        return given, "--names"
    if where.endswith("(nc only)"):
        declared = ()
        if len(given) != int(data["nc"]):
            raise DatasetError(f"--names gives {counted(len(given), 'class', 'classes')} but {yaml_path} says "
                               f"{_nc_key(yaml_path)} {data['nc']}; give {data['nc']} names")
    elif len(given) != len(declared):
        raise DatasetError(f"--names gives {counted(len(given), 'class', 'classes')} but {where} names {len(declared)} "
                           f"({first_few(declared, 5)}); leave --names out to use those, or give {len(declared)} names")
    if declared and given != declared:
        changed = [f"{i}: {d} -> {g}" for i, (d, g) in enumerate(zip(declared, given)) if d != g]
        notes.append(f"--names replaces {counted(len(changed), 'name')} of {where} (class id: its name -> yours): "
                     f"{first_few(changed, 5)}")
    return given, "--names"


def _nc_key(path: Optional[Path]) -> str:
    """The class count's key as the file writes it: darknet's ``obj.data`` says ``classes = 54`` (a walk
    read 'nc is 54' of a file without nc), data.yaml ``nc:``."""
    return "classes =" if path is not None and Path(path).suffix == ".data" else "nc:"


def _names_file(folder: Path) -> Optional[Path]:
    """The class-names file of ``folder``: one of :data:`NAMES_FILES`, else its one darknet ``*.names``
    file (``aerial.names``); several ``*.names`` are a one-line error naming them."""
    for file in NAMES_FILES:
        if (folder / file).is_file():
            return folder / file
    found = sorted(p for p in folder.glob("*.names") if p.is_file()) if folder.is_dir() else []
    if len(found) > 1:
        raise DatasetError(f"{folder} holds {len(found)} names files ({', '.join(p.name for p in found[:4])}): "
                           f"keep the one of this dataset, or give --names a,b,c")
    return found[0] if found else None


def _declared_names(src: Path, data: Dict[str, Any], yaml_path: Optional[Path],
                    label_dirs: Sequence[Path]) -> Tuple[Tuple[str, ...], str]:
    """The dataset's own class names (data.yaml ``names``, a classes.txt / obj.names, or ``nc``
    alone) and where they came from; ``DatasetError`` when it names none."""
    names = data.get("names")
    where = str(yaml_path)
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DatasetError(f"{yaml_path}: names keys must be class ids 0..N-1, got {list(names)[:5]}") from None
        if ids != list(range(len(ids))):
            raise DatasetError(f"{yaml_path}: names ids must be 0..{len(ids) - 1} without gaps, got {ids[:10]}")
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if isinstance(names, list) and any(isinstance(n, bool) for n in names):
        said = [n for n in names if isinstance(n, bool)]
        raise DatasetError(f"{yaml_path}: names {said} are YAML booleans: bare on/off, yes/no, true/false read as "
                           f"True/False; quote them (names: ['on', 'off'])")
    if isinstance(names, list) and names:
        if data.get("nc") is not None and int(data["nc"]) != len(names):
            raise DatasetError(f"{yaml_path}: {_nc_key(yaml_path)} {data['nc']} but names lists {len(names)} classes; "
                               f"fix one")
        return tuple(str(n) for n in names), where
    for folder in [src, *label_dirs]:
        found = _names_file(folder)
        if found is not None:
            lines = [l.strip() for l in found.read_text(encoding="utf-8-sig").splitlines()]
            return tuple(l for l in lines if l), str(found)
    if data.get("nc"):
        return tuple(f"class_{i}" for i in range(int(data["nc"]))), f"{yaml_path} (nc only)"
    for above in (src.parent, src.parent.parent) if yaml_path is None else ():
        found = (_find_yaml(above) or find_darknet_data(above)) if above != src else None
        if found is None:
            continue
        stray = _names_of_a_stray_yaml(found)
        if stray is None:
            raise DatasetError(f"{src} is a part of the YOLO dataset {above}: give that folder (its {found.name} "
                               f"names the splits and the classes)")
        # a Roboflow data.yaml kept beside the unzipped labels, its ../train/images gone (a walk's archive.zip)
        raise DatasetError(f"no class names for {src}: {found} names {', '.join(stray)} but its splits are not "
                           f"there; give --names {','.join(stray)} if they are these")
    raise NoClassNames(f"no class names for {src}: no names in a data.yaml, no classes.txt or *.names file; "
                       f"give --names a,b,c")


class NoClassNames(DatasetError):
    """A YOLO folder that names no classes (no data.yaml names, classes.txt or *.names file): an evaluation
    takes a model's own names for it (:func:`dfine.recipes.names_of_the_model`)."""


def _names_of_a_stray_yaml(path: Path) -> Optional[List[str]]:
    """The class names of the dataset YAML ``path`` when none of the splits it names is there (it does not
    describe the folder it sits in), else None."""
    try:
        _splits_from_yaml(path)
        return None
    except DatasetError:
        pass
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    names = data.get("names") if isinstance(data, dict) else None
    names = list(names.values()) if isinstance(names, dict) else names
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _other_label_dirs(src: Path, looked: Path) -> List[str]:
    out = []
    for root, dirs, _ in os.walk(src):
        depth = Path(root).relative_to(src).parts
        if len(depth) >= 4:
            dirs[:] = []
        for d in dirs:
            path = (Path(root) / d).resolve()
            if "label" in d.lower() and path != looked.resolve() and path not in looked.resolve().parents:
                out.append(os.path.relpath(Path(root) / d, src))
    return sorted(out)[:10]


def _rename_hint(src: Path, others: Sequence[str], expected: Path) -> str:
    """``"; if data/labels/train-labels holds them: mv ... ..."`` when exactly one of ``others`` sits
    beside the ``expected`` labels folder under a name that starts with its name (a Roboflow-style
    ``labels/train-labels`` for ``images/train``, a walk); ``""`` otherwise."""
    import shlex
    near = [o for o in others if (src / o).parent.resolve() == expected.parent.resolve()
            and Path(o).name.lower().startswith(expected.name.lower())]
    if len(near) != 1 or expected.exists():
        return ""
    return (f"; if {near[0]} holds this split's labels, give it the name YOLO's rule looks for: mv "
            f"{shlex.quote(str(src / near[0]))} {shlex.quote(str(expected))}")


# ------------------------------------------------------------------------------------ conversion


def _split_json(split: str, images: List[Path], names: Tuple[str, ...], names_source: str, folder: Path,
                src: Path, notes: List[str], keypoints: int = 0,
                errors: Optional[List["LabelError"]] = None) -> Tuple[List[Dict], List[Dict], SplitCounts]:
    """One split's COCO images and annotations; the first error of each bad label file goes to ``errors``
    (raised at once when ``errors`` is None). Boxes are clipped to the image, and boxes empty after it
    (zero or negative width or height as written, or wholly outside) left out, each named by file and
    line in ``notes``."""
    labels = [label_path(p) for p in images]
    present = [lp.is_file() for lp in labels]
    if images and not any(present):
        others = _other_label_dirs(src, labels[0].parent)
        seen = f"other *labels* folders here: {', '.join(others)}" if others else "no other *labels* folder here"
        raise DatasetError(f"{split}: none of its {counted(len(images), 'image')} has a label file; "
                           f"looked for e.g. {labels[0]} "
                           f"(the last /images/ of the image path becomes /labels/, extension .txt); {seen}"
                           f"{_rename_hint(src, others, labels[0].parent)}")
    with ThreadPoolExecutor(max_workers=8) as pool:
        headers = list(pool.map(header_or_reason, images))
    out_images, out_anns, counts, bad = [], [], SplitCounts(), []
    clipped: List[str] = []
    dropped: List[str] = []
    for image, lp, has_label, header in zip(images, labels, present, headers):
        if isinstance(header, str):
            bad.append(f"{image.name} ({header})")
            counts.left_out.append(image.relative_to(folder).as_posix())
            continue
        width, height = header.shown_size
        image_id = len(out_images) + 1
        out_images.append({"id": image_id, "file_name": image.relative_to(folder).as_posix(),
                           "width": width, "height": height})
        try:
            rows = read_label_file(lp, len(names), names_source, keypoints) if has_label else []
        except LabelError as exc:
            if errors is None:
                raise
            errors.append(exc)
            rows = []
        kept = 0
        for cls, *box, number in rows:
            inside = [min(max(v, 0.0), 1.0) for v in box]
            where = f"{lp.name} line {number}"
            if inside[2] <= inside[0] or inside[3] <= inside[1]:
                dropped.append(where)
                continue
            # listed when the clipping moved an edge by half a pixel or more: a 6-decimal export's 1.0000005
            # is rounding, not a box outside the image (a walk's 78 'clipped' boxes were all such)
            if any(abs(a - b) * side >= 0.5 for a, b, side in zip(inside, box, (width, height) * 2)):
                clipped.append(where)
            x0, y0, x1, y1 = inside
            x, y, w, h = x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height
            out_anns.append({"id": len(out_anns) + 1, "image_id": image_id, "category_id": cls + 1,
                             "bbox": [round(x, 4), round(y, 4), round(w, 4), round(h, 4)],
                             "area": round(w * h, 4), "iscrowd": 0})
            kept += 1
        counts.background += kept == 0
    changes_note(split, notes, [("box", "boxes", "clipped to the image", clipped),
                                ("box", "boxes", "of zero or negative size, or outside the image, left out", dropped),
                                ("unreadable image", "unreadable images", "left out", bad)])
    counts.images, counts.boxes = len(out_images), len(out_anns)
    return out_images, out_anns, counts


def _note_labels_without_images(images: Sequence[Path], notes: List[str]) -> None:
    """Add a note when the label folders hold ``.txt`` files that no image maps to (an image in a
    format not read, or deleted), so their boxes are not lost without a word."""
    used = {label_path(p) for p in images}
    orphans = sorted(lp for d in {p.parent for p in used} if d.is_dir() for lp in d.glob("*.txt")
                     if lp not in used and lp.name != "classes.txt" and _holds_boxes(lp))
    if orphans:
        notes.append(f"label files with no image, left out: {len(orphans)} (e.g. {orphans[0]}); images are read "
                     f"with the suffixes {' '.join(IMAGE_SUFFIXES)}")


def _holds_boxes(path: Path) -> bool:
    """Whether the ``.txt`` file ``path`` may hold boxes: not empty, and not darknet's list of image paths
    (``train.txt``, ``test1.txt`` beside the images: a walk's count of label files with no image held 11)."""
    text = file_head(path, 4096).decode("utf-8", "replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return bool(first) and Path(first).suffix.lower() not in IMAGE_SUFFIXES


def _note_images_in_no_split(base: Path, images: Sequence[Path], notes: List[str]) -> None:
    """Add a note when the dataset folder holds images that no split takes (another export nested
    in it, a folder the data.yaml does not list), naming the folders they are in; those that are byte
    copies of the splits' images (Roboflow's train/ kept beside a split made of it) are said apart, as
    nothing to add (a walk was told to train on 530 such copies of its val and test photos)."""
    used = {p.resolve() for p in images}
    left = [p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.resolve() not in used
            and not any(part.startswith(".") for part in p.relative_to(base).parts)]
    if not left:
        return
    from dfine.data.image_io import same_bytes
    files = {("left", i): p for i, p in enumerate(left)}
    files.update({("used", i): p for i, p in enumerate(images)})
    copies = {i for group in same_bytes(files) if any(k[0] == "used" for k in group)
              for kind, i in group if kind == "left"}
    others = [p for i, p in enumerate(left) if i not in copies]
    runs = [p for p in others if p.relative_to(base).parts[:2] in _RUN_OUTPUTS]
    others = [p for p in others if p not in runs]
    if runs:  # Ultralytics' plots and predictions of a run (a walk's set held runs/detect/NAME/)
        notes.append(f"{counted(len(runs), 'image')} under {base} in no split, left out: {_folders_of(base, runs)}, "
                     f"an Ultralytics run's plots and predictions, not data")
    if copies:
        notes.append(f"{counted(len(copies), 'image')} under {base} in no split, left out, copies of the splits' "
                     f"images (the same bytes): {_folders_of(base, [left[i] for i in sorted(copies)])}; nothing "
                     f"to add")
    if others:
        # 'convert their folder on its own' was refused as 'a part of the YOLO dataset ...' (a walk)
        notes.append(f"{counted(len(others), 'image')} under {base} in no split, left out: "
                     f"{_folders_of(base, others)}; to train on them, copy their folder out of this one and convert "
                     f"it on its own, or move them into a split")


#: where Ultralytics writes a run's pictures in the folder it ran in (runs/detect/train2/results.png, ...)
_RUN_OUTPUTS = {("runs", task) for task in ("detect", "segment", "pose", "obb", "classify", "train", "val")}


def _folders_of(base: Path, paths: Sequence[Path]) -> str:
    """``"train/images/ (530), runs/detect/x/ (4)"``: the folders under ``base`` holding ``paths``, those
    holding most first (a walk's '1 more' was 154 of the 196 images), three at most."""
    where = Counter(str(p.parent.relative_to(base)) for p in paths)
    shown = ", ".join(f"{folder}/ ({n})" for folder, n in sorted(where.items(), key=lambda f: (-f[1], f[0]))[:3])
    return shown + (f" and {len(where) - 3} more folders" if len(where) > 3 else "")


def _keypoint_numbers(data: Dict[str, Any], yaml_path: Optional[Path]) -> int:
    """K x D of the YAML's ``kpt_shape: [K, D]`` (a pose set), 0 without one."""
    shape = data.get("kpt_shape")
    if shape is None:
        return 0
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)
            and shape[1] in (2, 3)):
        raise DatasetError(f"{yaml_path}: kpt_shape must be [keypoints, 2 or 3] as Ultralytics writes it, "
                           f"got {shape!r}")
    return shape[0] * shape[1]


def convert_yolo(src: os.PathLike | str, out: Optional[os.PathLike | str] = None, *,
                 names: Optional[Sequence[str]] = None, val_fraction: float = 0.2, seed: int = 0) -> Converted:
    """Convert the YOLO dataset at ``src`` (folder or data.yaml) into COCO files under
    ``out/annotations`` (default: the dataset folder). Images stay where they are."""
    src = Path(src).expanduser().resolve()
    if not src.exists():
        raise DatasetError(f"YOLO dataset {src} not found")
    darknet = find_darknet_data(src)
    yaml_path = _find_yaml(src) if darknet is None else darknet
    base = src.parent if src.is_file() else src
    notes: List[str] = []
    if darknet is not None:
        splits, data, notes = _splits_from_darknet(darknet)
    elif yaml_path is not None:
        splits, data, notes = _splits_from_yaml(yaml_path)
    else:
        splits, data = _splits_from_folders(base), {}
    label_dirs = sorted({label_path(p).parent for ims in splits.values() for p in ims[:1]})
    class_names, names_source = _names(base, data, yaml_path, names, label_dirs, notes)
    if "val" not in splits:
        pool = [str(p) for p in splits["train"]]
        said: List[str] = []
        classes = {item: _classes_named(Path(item), class_names) for item in pool}
        train, val = split_by_fraction(pool, val_fraction, seed, classes, said, files={p: p for p in pool})
        splits["train"], splits["val"] = [Path(p) for p in train], [Path(p) for p in val]
        notes.append(f"no val split: {len(val)} of {len(train) + len(val)} train images became val "
                     f"{fraction_said(val_fraction, seed)}")
        notes += said
    everything = [p for ims in splits.values() for p in ims]
    folder = images_folder_of(everything, base)
    out_dir = Path(out).expanduser() if out is not None else base
    ann_dir = out_dir / "annotations"
    info = info_for(ann_dir, folder, "YOLO", src)
    keypoints = _keypoint_numbers(data, yaml_path)
    if keypoints:
        notes.append(f"{yaml_path.name}: kpt_shape {data['kpt_shape']}: a pose set; each row's box is kept, its "
                     f"{data['kpt_shape'][0]} keypoints are left out (D-FINE detects boxes)")
    k = len(class_names)
    classes, ids = ("class 0 is category id 1", "0") if k == 1 else (f"classes 0..{k - 1} are category ids 1..{k}",
                                                                      f"0..{k - 1}")
    notes.append(f"YOLO {classes} in the COCO files and in predictions (Detections.labels keep {ids})")
    written, counts, errors, converted = {}, {}, [], {}
    for split, images in splits.items():  # every bad label file of every split said in one run, before writing
        converted[split] = _split_json(split, images, class_names, names_source, folder, base, notes, keypoints,
                                       errors)
    if errors:
        raise DatasetError(_label_errors(errors, base))
    for split, (ims, anns, counts[split]) in converted.items():
        written[split] = ann_dir / f"instances_{split}.json"
        write_coco_json(written[split], ims, anns, class_names, info, counts[split].left_out)
    _note_labels_without_images(everything, notes)
    _note_images_in_no_split(base, everything, notes)
    return Converted(src, out_dir, folder, written, class_names, counts, notes)


def _label_errors(errors: Sequence[LabelError], base: Path) -> str:
    """One line for the label files with errors: the first error in full, then where the others are
    and what is wrong there (``labels/train/b.txt line 2 (class id 5 is outside ...)``, relative to
    ``base``), so that one run shows every file to fix (a walk fixed three files in three runs)."""
    if len(errors) == 1:
        return str(errors[0])
    where = []
    for error in errors[1:]:
        shown = str(error.path.relative_to(base)) if error.path.is_relative_to(base) else str(error.path)
        short = error.why.split(";")[0].split(": ")[0]  # what is wrong, without the how-to of the first
        short = short if len(short) <= 100 else short[:99] + "\u2026"
        where.append(f"{shown} line {error.line} ({short})" if error.line else f"{shown} ({short})")
    return (f"{errors[0]}; and {counted(len(errors) - 1, 'more label file')} with an error (the first of each): "
            f"{first_few(where, 8)}")
