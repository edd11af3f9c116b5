"""The dataset doctor: every problem of a COCO file and its images folder, counted and named.

:func:`check_dataset` reads the JSON and, by ``level``, the folder listing (``files``), each
image's header (``headers``, the default: size, mode, EXIF orientation, a truncated tail) or
every pixel (``deep``). Each problem kind has a severity:

* ``error``: training refuses the file as it is (missing or unreadable images, undeclared
  categories, duplicate ids, file names leaving the folder, sizes that match neither orientation);
* ``repair``: training repairs it on the fly and says so once (boxes clipped to the image, boxes
  with NaN / zero / negative size or entirely outside dropped);
* ``warning``: worth knowing, harmless (declared categories never used, image files no
  annotation refers to);
* ``info``: counted, fine (crowd boxes, background images, EXIF-rotated, CMYK, 16-bit,
  palette, alpha and grayscale images, which all load as 8-bit RGB).

:func:`fix_dataset` writes a repaired copy (clip, drop degenerate boxes, correct sizes, drop
unusable images and annotations) and lists each change; the copy passes a second check.
:func:`preflight` is the same check run when a training dataset is built; it reuses the headers
an earlier run read while each file keeps its size and modification time (:class:`HeaderCache`,
in ``$DFINE_HOME/headers``), so a restart does not read every header again.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Literal, Mapping, Optional, Tuple

import numpy as np

from dfine.errors import DfineError
from dfine.data.cocojson import (DatasetError, box_repairs, boxes_per_image, inside_folder, read_coco_json,
                                  unsafe_file_name)
from dfine.data.convert import IMAGE_SUFFIXES, write_json_atomic
from dfine.data.image_io import HIGH_DEPTH_MODES, ImageHeader, exif_orientation, same_bytes, tail_complete
from dfine.config import queries_override
from dfine.models.config import DFINETransformerConfig
from dfine.text import counted, cut_middle, first_process

__all__ = ["Level", "Severity", "KINDS", "Finding", "CheckReport", "check_dataset", "default_images", "fix_dataset",
           "plot_backend", "preflight", "plot_report", "copies_across"]

Level = Literal["json", "files", "headers", "deep"]
Severity = Literal["error", "repair", "warning", "info"]
_LEVELS = ("json", "files", "headers", "deep")

#: What to do when the only errors are images linked from outside the folder (--fix would drop them all)
_LINKS_FIX = ("its images are links to files outside {folder}, which are never read: copy the dataset with its links "
              "resolved (cp -rL DATASET DATASET_COPY) and use the copy, or link the folder holding the files instead")

#: Images with a side under this many pixels are reported (a 1x1 image in a walk's dataset).
TINY_SIDE = 4

#: Every problem kind: severity, what the ids are, and what it means (report order).
KINDS: Dict[str, Tuple[Severity, str, str]] = {
    "duplicate_image_id": ("error", "image", "image ids that appear more than once in 'images'"),
    "duplicate_annotation_id": ("error", "annotation", "annotation ids that appear more than once"),
    "unknown_image": ("error", "annotation", "annotations whose image_id is not in 'images'"),
    "undeclared_category": ("error", "annotation", "annotations whose category_id is not in 'categories'"),
    "bad_bbox": ("error", "annotation", "annotations without a bbox of 4 numbers"),
    "unsafe_file_name": ("error", "image", "file names that leave the images folder ('..' or absolute)"),
    "symlink_out": ("error", "image", "image files that are links to files outside the images folder (never read: "
                    "copy the files in with cp -L, or link the folder that holds them)"),
    "missing": ("error", "image", "image files not found"),
    "zero_byte": ("error", "image", "image files of 0 bytes"),
    "unreadable": ("error", "image", "image files that cannot be read"),
    "truncated": ("error", "image", "truncated image files"),
    "size_mismatch": ("error", "image", "JSON width/height match neither the image nor its EXIF rotation"),
    "box_clipped": ("repair", "annotation", "boxes partly outside the image (clipped when training)"),
    "box_invalid": ("repair", "annotation", "boxes with NaN, zero or negative size (dropped when training)"),
    "box_outside": ("repair", "annotation", "boxes entirely outside the image (dropped when training)"),
    "unused_category": ("warning", "category", "declared categories no annotation uses (classes absent from this "
                        "split, or a Roboflow root)"),
    "rare_category": ("warning", "category", "categories with under 1/20 of the median category's boxes (too few "
                      "to learn; a mislabelled or misspelt class?)"),
    "tiny": ("warning", "image", f"images under {TINY_SIDE} px on a side (too small to show an object: a "
             "placeholder, or a conversion gone wrong?)"),
    "unreferenced": ("warning", "file", "image files in the folder that no image entry of this file refers to"),
    "same_bytes": ("warning", "image", "images whose file holds the same bytes as an earlier image's (one photo "
                   "under two names: its boxes count twice, and a split may put one copy in train and one in val)"),
    "background_copy": ("warning", "image", "background images whose file holds the same bytes as an image with "
                        "boxes (the photo without its boxes: training learns its objects as background)"),
    "no_images": ("error", "file", "annotation files that list no image: nothing to train or evaluate on"),
    "crowd_only": ("error", "annotation", "annotations, every one of them iscrowd=1 (CVAT exports mask shapes so): "
                   "training would see no box; --fix makes them ordinary boxes (their bbox)"),
    "crowd": ("info", "annotation", "crowd annotations (iscrowd=1: ignored by training, handled by evaluation)"),
    "background": ("info", "image", "background images (no boxes, or only crowd / VOC difficult ones; fine)"),
    "exif_rotated": ("info", "image", "EXIF-rotated images whose JSON size is the rotated one (used rotated)"),
    "high_depth": ("info", "image", "16-bit, 32-bit or float images (scaled to 8 bits)"),
    "cmyk": ("info", "image", "CMYK images (converted to RGB)"),
    "palette": ("info", "image", "palette images (converted to RGB)"),
    "alpha": ("info", "image", "images with an alpha channel (dropped)"),
    "grayscale": ("info", "image", "grayscale images (repeated to 3 channels)"),
}
_FIRST = 5
#: the queries of the published recipes' decoder: the most boxes a model finds in one image
QUERIES = DFINETransformerConfig.num_queries
#: A category with fewer boxes than the median category's over this is reported as rare.
RARE_SHARE = 20


@dataclass
class Finding:
    """One problem kind: how many, and the ids (image, annotation or category ids, or file names)."""

    kind: str
    ids: List[Any] = field(default_factory=list)

    @property
    def severity(self) -> Severity:
        return KINDS[self.kind][0]

    def line(self, first: int = _FIRST, names: Optional[Mapping[Any, str]] = None, where: Optional[str] = None) -> str:
        """One report line; ids are followed by their names from ``names`` (file names of image
        ids, category names); ``where``: the images folder, said after the meaning of ``missing``."""
        _, what, meaning = KINDS[self.kind]
        if where is not None and self.kind == "missing":
            meaning = f"{meaning} in {where}"
        shown = _ids(self.ids, first, names, total=False)
        label = "files" if what == "file" else f"{what} ids"
        return f"  {self.kind:<24}{len(self.ids):>7}  {meaning}: {label} {shown}"


def _coco_sizes(area: np.ndarray) -> Tuple[int, int, int]:
    """COCO's small / medium / large counts of boxes of ``area`` (px**2): under 32x32, between,
    over 96x96."""
    small, large = int((area < 32 ** 2).sum()), int((area > 96 ** 2).sum())
    return small, len(area) - small - large, large


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. ``findings`` holds only kinds that occur."""

    ann_file: str
    images_dir: str
    level: Level
    num_images: int
    num_annotations: int
    categories: List[Tuple[int, str, int, int]]  # id, name, images, instances (crowd left out)
    findings: Dict[str, Finding]
    box_sizes: Tuple[int, int, int]  # COCO small / medium / large (by bbox area, crowd left out)
    centres: np.ndarray  # [M, 2] box centres normalised by the image (JSON size)
    shapes: np.ndarray  # [M, 2] box width, height normalised
    labels: np.ndarray  # [M] category id of each box
    file_names: Dict[Any, str] = field(default_factory=dict)  # image id -> file name, for the ids shown
    images_hint: Optional[str] = None  # another folder that holds the missing files: the --images to give
    most_boxes: Tuple[int, str] = (0, "")  # the most (non-crowd) boxes one image holds, and its file name
    over_queries: int = 0  # the images holding more boxes than D-FINE's QUERIES
    pixel_sides: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [M] sqrt of each box's area, px

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings.values() if f.severity == "error"]

    @property
    def ok(self) -> bool:
        """Training can use the file as it is (repairs on the fly allowed)."""
        return not self.errors

    @property
    def none_there(self) -> Optional[str]:
        """When none of the file's images is in its images folder (a walk's test split file was a copy of
        train's), what to do instead of ``--fix``, which would leave no image; None otherwise."""
        missing = len(self.findings["missing"].ids) if "missing" in self.findings else 0
        if not self.num_images or missing < self.num_images or self.images_hint:
            return None
        return another_folders_images(self.num_images, self.images_dir)

    def names_of(self, finding: Finding) -> Optional[Mapping[Any, str]]:
        """Names to show beside the ids of ``finding``: file names of images, names of categories."""
        what = KINDS[finding.kind][1]
        if what == "image":
            return self.file_names
        return {cid: name for cid, name, _, _ in self.categories} if what == "category" else None

    def count(self, kind: str) -> int:
        return len(self.findings[kind].ids) if kind in self.findings else 0

    def sizes_at(self, imgsz: int) -> Tuple[int, int, int]:
        """COCO small / medium / large counts of the boxes as the model sees them at ``imgsz`` x
        ``imgsz`` input: each image resized to that square (the recipes' ``Resize``), so a box of
        normalised width w and height h covers ``imgsz**2 * w * h`` pixels."""
        area = (self.shapes[:, 0] * self.shapes[:, 1] * float(imgsz) ** 2) if len(self.shapes) else np.zeros(0)
        return _coco_sizes(area)

    def tiny_note(self, imgsz: int, data: Optional[str] = None) -> Optional[str]:
        """:func:`dfine.data.tile.tiny_boxes_note` of these boxes at ``imgsz`` x ``imgsz`` input
        (``data``: the dataset folder its tiling command names; None: a placeholder)."""
        from dfine.data.tile import tiny_boxes_note
        if not len(self.shapes) or len(self.pixel_sides) != len(self.shapes):
            return None
        with np.errstate(invalid="ignore"):
            seen = np.sqrt(self.shapes[:, 0] * self.shapes[:, 1]) * imgsz
        known = np.isfinite(seen) & (seen > 0)
        return tiny_boxes_note(seen[known], self.pixel_sides[known] / seen[known], (imgsz, imgsz), data)

    def format(self, classes: int = 100, fix: Optional[str] = None, imgsz: Optional[int] = 640,
               data: Optional[str] = None) -> str:
        """The report printed by ``dfine data check``; ``fix``: how to repair it, said after an
        error count (default: ``--fix`` of this file); ``imgsz``: also the box sizes at that
        model input (``None``: not); ``data``: the dataset folder checked (named in the tiling command
        of a note on boxes too small at that input)."""
        counts = (f"{counted(self.num_images, 'image')}, {counted(self.num_annotations, 'annotation')}, "
                  f"{counted(len(self.categories), 'category', 'categories')}")
        lines = [f"{self.ann_file}: {counts}; images in {self.images_dir} (checked: {self.level})"]
        for severity, title in (("error", "errors (training refuses the file as it is)"),
                                ("repair", "repaired when training (dfine data check --fix writes them repaired)"),
                                ("warning", "warnings"), ("info", "counted, fine")):
            found = [f for f in self.findings.values() if f.severity == severity]
            if found:
                lines.append(f"{title}:")
                lines += [f.line(names=self.names_of(f)) for f in found]
        # names whole up to 40 characters (Roboflow's are often sentences), longer ones cut with an ellipsis
        width = min(40, max([23] + [len(name) for _, name, _, _ in self.categories[:classes]]))
        lines.append(f"{'category':>10}  {'name':<{width + 1}}{'images':>8}{'instances':>11}")
        for cid, name, images, instances in self.categories[:classes]:
            lines.append(f"{cid:>10}  {_tick(name, width):<{width + 1}}{images:>8}{instances:>11}")
        if len(self.categories) > classes:
            lines.append(f"{'':>10}  ... {len(self.categories) - classes} more categories")
        total = max(1, sum(self.box_sizes))
        s, m, l = self.box_sizes
        lines.append(f"boxes: {sum(self.box_sizes)}; small (< 32x32 px) {s} ({100 * s / total:.1f}%), medium {m} "
                     f"({100 * m / total:.1f}%), large (> 96x96 px) {l} ({100 * l / total:.1f}%)")
        most, where = self.most_boxes
        if most:
            lines.append(f"boxes an image: {sum(self.box_sizes) / max(1, self.num_images):.1f} on average, up to {most} "
                         f"({where})" + (f"; {counted(self.over_queries, 'image')} "
                                         f"{'holds' if self.over_queries == 1 else 'hold'} more than D-FINE's {QUERIES} "
                                         f"queries, each of which learns and finds one box: train with "
                                         f"{queries_override()} (N above {most})"
                                         if most > QUERIES else ""))
        if imgsz and len(self.shapes):
            seen, n = self.sizes_at(imgsz), len(self.shapes)
            lines.append(f"  as the model sees them at --imgsz {imgsz} (images resized to {imgsz}x{imgsz}): "
                         + ", ".join(f"{kind} {k} ({100 * k / n:.1f}%)" for kind, k in zip(("small", "medium", "large"),
                                                                                          seen)))
            tiny = self.tiny_note(imgsz, data)
            if tiny:
                lines.append(f"  {tiny}")
        errors = self.errors
        fix = (f"the missing files are in {self.images_hint}: give --images {shlex.quote(self.images_hint)}"
               if self.images_hint else _LINKS_FIX.format(folder=shlex.quote(str(self.images_dir)))
               if {f.kind for f in errors} == {"symlink_out"}
               else self.none_there or fix or "dfine data check --fix OUT.json writes a repaired copy")
        lines.append("result: OK, training can use it as is" if not errors else
                     f"result: {counted(sum(len(f.ids) for f in errors), 'error')} of {counted(len(errors), 'kind')}; "
                     f"training refuses this file ({fix})")
        return "\n".join(lines)

    def summary(self, split: str = "train") -> str:
        """A few lines for the start of training: the errors only, then the two commands that
        train without the images and boxes at fault (a fixed copy beside the file, named with
        ``-u``: a YOLO or VOC folder's conversion is written again by every ``--data`` run)."""
        check = f"dfine data check {shlex.quote(str(self.ann_file))} --images {shlex.quote(str(self.images_dir))}"
        head = f"{self.ann_file}: the dataset check found errors (the whole report: {check}):"
        hint = [f"  the missing files are in {self.images_hint}: make that the images folder (img_folder)"] \
            if self.images_hint else []
        path = Path(self.ann_file)
        fixed = shlex.quote(str(path.with_name(f"{path.stem}_fixed.json")))
        fix = (f"to leave them out: {check} --fix {fixed}, then add -u {split}_dataloader.dataset.ann_file="
               f"{fixed} to the command")  # a training's or an evaluation's (a walk's eval read 'to train')
        if {f.kind for f in self.errors} == {"symlink_out"}:  # --fix would drop every image
            fix = _LINKS_FIX.format(folder=shlex.quote(str(self.images_dir)))
        elif self.none_there:
            fix = self.none_there
        return "\n".join([head] + [f.line(names=self.names_of(f), where=self.images_dir) for f in self.errors]
                         + hint + [fix])


# ------------------------------------------------------------------------------------ check


def _add(findings: Dict[str, Finding], kind: str, ident: Any) -> None:
    findings.setdefault(kind, Finding(kind)).ids.append(ident)


def _json_checks(data: Mapping[str, Any], findings: Dict[str, Finding]):
    images = [im for im in data["images"] if isinstance(im, dict)]
    seen: Counter = Counter(im.get("id") for im in images)
    for image_id, n in seen.items():
        if n > 1:
            _add(findings, "duplicate_image_id", image_id)
    for im in images:
        if unsafe_file_name(im.get("file_name")) is not None:
            _add(findings, "unsafe_file_name", im.get("id"))
    declared = {c.get("id"): str(c.get("name", c.get("id"))) for c in data["categories"] if isinstance(c, dict)}
    sizes = {im.get("id"): (_num(im.get("width")), _num(im.get("height"))) for im in images}
    ann_seen: Counter = Counter()
    used_cats: Counter = Counter()
    cat_images: Dict[Any, set] = defaultdict(set)
    boxes, box_sizes, box_ids, box_cats, box_images = [], [], [], [], set()
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            continue
        ann_id = ann.get("id")
        ann_seen[ann_id] += 1
        if ann.get("image_id") not in sizes:
            _add(findings, "unknown_image", ann_id)
            continue
        if ann.get("category_id") not in declared:
            _add(findings, "undeclared_category", ann_id)
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
            _add(findings, "bad_bbox", ann_id)
            continue
        used_cats[ann["category_id"]] += 0
        if ann.get("iscrowd", 0):
            _add(findings, "crowd", ann_id)
            continue
        used_cats[ann["category_id"]] += 1
        cat_images[ann["category_id"]].add(ann["image_id"])
        boxes.append([float(v) for v in bbox])
        box_sizes.append(sizes[ann["image_id"]])
        box_ids.append(ann_id)
        box_cats.append(ann["category_id"])
        box_images.add(ann["image_id"])
    if "crowd" in findings and not boxes:  # a walk: 248 CVAT masks, 0 boxes, "OK, training can use it as is"
        findings["crowd_only"] = replace(findings.pop("crowd"), kind="crowd_only")
    for ann_id, n in ann_seen.items():
        if n > 1:
            _add(findings, "duplicate_annotation_id", ann_id)
    for cid in declared:
        if cid not in used_cats:
            _add(findings, "unused_category", cid)
    used = sorted(used_cats[cid] for cid in declared if cid in used_cats)
    if len(used) >= 3:
        floor = used[len(used) // 2] / RARE_SHARE
        for cid in declared:
            if 0 < used_cats.get(cid, 0) < floor:
                _add(findings, "rare_category", cid)
    for im in images:
        if im.get("id") not in box_images:
            _add(findings, "background", im.get("id"))
    boxes_a = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    sizes_a = np.array(box_sizes, dtype=np.float64).reshape(-1, 2)
    repairs = box_repairs(boxes_a, sizes_a, np.array(box_ids, dtype=object))
    for kind, ids in (("box_clipped", repairs.clipped), ("box_invalid", repairs.invalid),
                      ("box_outside", repairs.outside)):
        for i in ids:
            _add(findings, kind, i)
    table = sorted((cid, name, len(cat_images[cid]), used_cats[cid]) for cid, name in declared.items()
                   if isinstance(cid, int))
    return boxes_a, sizes_a, np.array(box_cats, dtype=np.int64), table


def _num(value: Any) -> int:
    return int(value) if _is_num(value) and value > 0 else 0


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _listing(folder: Path) -> Dict[str, Tuple[int, bool, int]]:
    """Every file below ``folder``: relative posix path -> (size in bytes, is a symlink, mtime in
    ns); symlinked folders followed. Plain strings, no ``Path`` per file (this runs on every file
    of the folder)."""
    out: Dict[str, Tuple[int, bool, int]] = {}
    stack = [str(folder)]
    cut = len(os.path.join(str(folder), ""))
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file():
                    name = entry.path[cut:] if os.sep == "/" else entry.path[cut:].replace(os.sep, "/")
                    st = entry.stat()
                    out[name] = (st.st_size, entry.is_symlink(), st.st_mtime_ns)
            except OSError:
                continue
    return out


@dataclass(frozen=True)
class _Look:
    """What reading one image found."""

    header: Optional[ImageHeader] = None
    problem: Optional[str] = None  # "unreadable" or "truncated"


def _look(path: str, deep: bool) -> _Look:
    import PIL.Image

    try:
        with PIL.Image.open(path) as f:
            header = ImageHeader(f.width, f.height, exif_orientation(f), f.mode, f.format or "")
            if deep:
                f.load()
    except OSError as exc:
        return _Look(None, "truncated" if "truncated" in str(exc) else "unreadable")
    except Exception:  # noqa: BLE001 - a file PIL chokes on is unreadable, whatever the exception
        return _Look(None, "unreadable")
    if not deep and not tail_complete(path, header.format):
        return _Look(header, "truncated")
    return _Look(header, None)


def _mode_kind(mode: str) -> Optional[str]:
    if mode in HIGH_DEPTH_MODES:
        return "high_depth"
    return {"CMYK": "cmyk", "P": "palette", "PA": "palette", "RGBA": "alpha", "LA": "alpha", "La": "alpha",
            "RGBa": "alpha", "L": "grayscale", "1": "grayscale"}.get(mode)


def _other_splits(ann_file: Path, folder: Path) -> set:
    """The image file names of the other ``instances_*.json`` beside ``ann_file`` whose images are in
    the same ``folder``: a conversion keeps every split's images under one folder, and so do split
    files made by hand beside one ``images/`` (a walk: the train file's check listed the 20 val
    images as strays), so the val images are no strays of the train file. A file naming another
    images folder (``info.images_folder``) is left out."""
    from dfine.data.convert import images_folder_of_file

    names: set = set()
    ours = images_folder_of_file(ann_file)
    siblings = [*ann_file.parent.glob("instances_*.json"),
                *(ann_file.parent / f"{name}.json" for name in ("train", "val", "valid", "validation", "test"))]
    for other in (p for p in siblings if p.is_file()):
        theirs = images_folder_of_file(other)
        if other.resolve() == ann_file.resolve() or (theirs is None) != (ours is None) or (
                theirs is not None and theirs.resolve() != folder.resolve()):
            continue
        try:
            data = json.loads(other.read_text(encoding="utf-8"))
            images, info = data.get("images", []), data.get("info")
        except (OSError, ValueError, AttributeError):
            continue
        names |= {os.path.normpath(im["file_name"]).replace("\\", "/") for im in images
                  if isinstance(im, dict) and isinstance(im.get("file_name"), str)}
        names |= _left_out(info)  # its unreadable images, which its conversion said
    return names


def _left_out(info: Any) -> set:
    """The file names a conversion left out as unreadable (``info.left_out``): said by the conversion, no strays."""
    return {n for n in info.get("left_out", []) if isinstance(n, str)} if isinstance(info, dict) else set()


def _file_checks(data: Mapping[str, Any], folder: Path, level: Level, findings: Dict[str, Finding],
                 workers: int, progress: bool, cache: bool = False, others: frozenset = frozenset()
                 ) -> Dict[Any, ImageHeader]:
    """``others``: file names that other split files of the same conversion use (not strays)."""
    listing = _listing(folder)
    images = [im for im in data["images"] if isinstance(im, dict) and unsafe_file_name(im.get("file_name")) is None]
    referenced = set()
    todo = []
    for im in images:
        name = os.path.normpath(im["file_name"]).replace("\\", "/")
        referenced.add(name)
        entry = listing.get(name)
        if entry is None:
            _add(findings, "missing", im["id"])
        elif entry[0] == 0:
            _add(findings, "zero_byte", im["id"])
        elif entry[1] and not inside_folder(folder / name, folder):
            _add(findings, "symlink_out", im["id"])
        else:
            todo.append(im)
    for name in sorted(listing):
        if name not in referenced and name not in others and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
            _add(findings, "unreferenced", name)
    headers: Dict[Any, ImageHeader] = {}
    if level in ("json", "files"):
        return headers
    deep = level == "deep"
    cached = HeaderCache(folder, listing) if cache and not deep else None
    names = [os.path.normpath(im["file_name"]).replace("\\", "/") for im in todo]
    known = [cached.get(name) for name in names] if cached is not None else [None] * len(todo)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        base = str(folder)
        unread = [os.path.join(base, name) for name, k in zip(names, known) if k is None]  # images\\a.jpg read too
        chunks = [unread[i:i + 64] for i in range(0, len(unread), 64)]  # one task per image costs more than a header
        read = (look for part in pool.map(lambda paths: [_look(p, deep) for p in paths], chunks) for look in part)
        looks: Iterable[_Look] = (k if k is not None else next(read) for k in known)
        bar = None
        if progress and unread:  # the headers read, not the cached ones (their thousands a second said nothing)
            from tqdm import tqdm
            reused = len(todo) - len(unread)
            bar = tqdm(total=len(unread), desc="checking images" + (f" ({reused} cached)" if reused else ""),
                       unit="img", dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
        for look, was_known, name, im in zip(looks, known, names, todo):
            if was_known is None:
                if bar is not None:
                    bar.update(1)
                if cached is not None:
                    cached.put(name, look)
            if look.problem is not None:
                _add(findings, look.problem, im["id"])
            if look.header is None:
                continue
            headers[im["id"]] = look.header
            kind = _mode_kind(look.header.mode)
            if kind:
                _add(findings, kind, im["id"])
            if min(look.header.width, look.header.height) < TINY_SIDE:
                _add(findings, "tiny", im["id"])
            size = (_num(im.get("width")), _num(im.get("height")))
            shown = look.header.shown_size
            stored = (look.header.width, look.header.height)
            if size != stored and size != shown:
                _add(findings, "size_mismatch", im["id"])
            elif shown != stored and size == shown:
                _add(findings, "exif_rotated", im["id"])
    if bar is not None:
        bar.close()
    if cached is not None:
        cached.save()
    _copies(data, todo, folder, listing, findings)
    return headers


def _copies(data: Mapping[str, Any], images: List[Mapping[str, Any]], folder: Path,
            listing: Mapping[str, Tuple[int, bool, int]], findings: Dict[str, Finding]) -> None:
    """``same_bytes`` and ``background_copy`` of the ``images`` (entries whose files are there): a walk's
    dataset held every photo twice, one copy labelled and one not, which a YOLO reading took as background.
    Not for the tiles of ``dfine data tile``: identical regions of different photos (a frame, a blank corner) make
    identical tiles, which are no copies to remove (a walk was told to remove 62 of its tiles)."""
    info = data.get("info")
    if isinstance(info, dict) and isinstance(info.get("tiles"), dict):
        return
    files, sizes = {}, {}
    for im in images:
        name = os.path.normpath(im["file_name"]).replace("\\", "/")
        files.setdefault(im["id"], os.path.join(str(folder), name))
        sizes.setdefault(im["id"], listing[name][0])  # the folder's listing has them: no second stat
    groups = same_bytes(files, sizes)
    if not groups:
        return
    boxed = set(boxes_per_image(data, files))
    for group in groups:
        labelled = [i for i in group if i in boxed]
        for image_id in group:
            if labelled and image_id not in boxed:
                _add(findings, "background_copy", image_id)
            elif image_id != (labelled or group)[0]:
                _add(findings, "same_bytes", image_id)


class HeaderCache:
    """What reading each image's header found, kept between runs in
    ``$DFINE_HOME/headers/<folder hash>.json`` and reused while a file keeps its size and
    modification time (ns). The images folder is never written; a cache that cannot be read or
    written only makes the check slower."""

    VERSION = 2  # 2: a JPEG with zero padding after its end is complete (version 1 kept it as truncated)

    def __init__(self, folder: Path, listing: Mapping[str, Tuple[int, bool, int]]) -> None:
        import hashlib

        from dfine.hub import cache_dir

        self.folder = str(folder.resolve())
        self.path = cache_dir() / "headers" / f"{hashlib.sha1(self.folder.encode()).hexdigest()[:20]}.json"
        self.listing = listing
        self.entries: Dict[str, list] = {}
        self.changed = False
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            if saved.get("version") == self.VERSION and saved.get("folder") == self.folder:
                self.entries = dict(saved["headers"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass

    def get(self, name: str) -> Optional[_Look]:
        """The cached look at ``name``, ``None`` when absent or the file changed since."""
        entry, stat = self.entries.get(name), self.listing.get(name)
        if entry is None or stat is None or entry[:2] != [stat[0], stat[2]]:
            return None
        _, _, problem, header = entry
        return _Look(None if header is None else ImageHeader(*header), problem)

    def put(self, name: str, look: _Look) -> None:
        size, _, mtime = self.listing[name]
        header = None if look.header is None else [look.header.width, look.header.height, look.header.orientation,
                                                   look.header.mode, look.header.format]
        self.entries[name] = [size, mtime, look.problem, header]
        self.changed = True

    def save(self) -> None:
        """Write the entries of files still in the folder (atomically), when anything was added."""
        if not self.changed:
            return
        kept = {name: entry for name, entry in self.entries.items() if name in self.listing}
        try:
            write_json_atomic(self.path, {"version": self.VERSION, "folder": self.folder, "headers": kept})
        except OSError:
            pass


def copies_across(splits: Mapping[str, Tuple[os.PathLike | str, os.PathLike | str]],
                  only: Optional[str] = None) -> Optional[str]:
    """A line when images of one split hold the same bytes as images of an earlier one (``splits``:
    ``{split: (COCO file, images folder)}`` in train, val, test order): a walk's seeded val split held 12
    photos whose copies, under other names, were in train, so its AP scored what training saw; ``only``: that
    split's copies alone (the one an evaluation scores). None when none does; files that are missing or
    unreadable are left to each split's check."""
    from dfine.data.convert import file_names_in
    from dfine.data.tile import tiles_info
    if any(tiles_info(ann) is not None for ann, _ in splits.values()):  # identical regions make identical tiles
        return None  # (as :func:`_copies` says); the source's own check looks for copies of its photos
    files = {(split, name): os.path.join(str(folder), os.path.normpath(name)) for split, (ann, folder) in splits.items()
             for name in file_names_in(Path(ann))  # not the whole JSON parsed again at every training start
             if unsafe_file_name(name) is None}
    order = list(splits)
    copied: Dict[str, Dict[str, List[Tuple[str, str]]]] = {}  # later split -> earlier split -> (name, its name)
    for group in same_bytes(files):
        for split, name in group:
            if only is not None and split != only:
                continue
            earlier = [key for key in group if order.index(key[0]) < order.index(split)]
            if earlier:
                first = min(earlier, key=lambda key: order.index(key[0]))
                copied.setdefault(split, {}).setdefault(first[0], []).append((name, first[1]))
    if not copied:
        return None
    parts = []
    for split, by_earlier in copied.items():
        name, there = next(iter(by_earlier.values()))[0]
        example = f"{name}, listed in both" if name == there else f"{name} = {there}"
        counts = ", ".join(f"{len(pairs)} of {earlier}'s" for earlier, pairs in by_earlier.items())
        parts.append(f"{split}: {counts} (e.g. {example})")
    # a VOC set's ImageSets listed 9 test images in train or val too: the same file, not 'other names' (a walk)
    return (f"warning: photos in two splits (files of the same bytes): {'; '.join(parts)}: each is scored on what "
            f"another split saw; keep each photo in one split")


def check_dataset(ann_file: os.PathLike | str, images_dir: os.PathLike | str, *, level: Level = "headers",
                  workers: int = 8, progress: bool = False, cache: bool = False,
                  empty_is_error: bool = False) -> CheckReport:
    """Check the COCO file ``ann_file`` against the images in ``images_dir`` (see the module
    docstring for ``level``). A file that is not COCO JSON raises ``DatasetError``. ``cache``:
    reuse the headers read by an earlier check of the folder (:class:`HeaderCache`).
    ``empty_is_error``: a file without images is a ``no_images`` error (``dfine data check``;
    training says it in its own words)."""
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    data = read_coco_json(ann_file)
    folder = Path(images_dir)
    if level != "json" and not folder.is_dir():
        raise DatasetError(f"images folder {folder} not found; give the folder the file names of {ann_file} are "
                           f"relative to")
    findings: Dict[str, Finding] = {}
    boxes, sizes, cats, table = _json_checks(data, findings)
    if empty_is_error and not data["images"]:  # a walk: a split converted to 0 images was "OK, training can use it"
        _add(findings, "no_images", Path(ann_file).name)
    hint = None
    if level != "json":
        _file_checks(data, folder, level, findings, workers, progress, cache,
                     frozenset(_other_splits(Path(ann_file), folder) | _left_out(data.get("info"))))
        hint = _images_hint(data, findings, folder, Path(ann_file))
    findings = {k: findings[k] for k in KINDS if k in findings}
    area = boxes[:, 2] * boxes[:, 3] if len(boxes) else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        wh = np.where(sizes > 0, sizes, np.nan)
        centres = (boxes[:, :2] + boxes[:, 2:] / 2) / np.concatenate([wh[:, :1], wh[:, 1:]], axis=1) \
            if len(boxes) else np.zeros((0, 2))
        shapes = boxes[:, 2:] / wh if len(boxes) else np.zeros((0, 2))
    return CheckReport(str(ann_file), str(folder), level, len(data["images"]), len(data["annotations"]), table,
                       findings, _coco_sizes(area), centres, shapes, cats,
                       _shown_file_names(data, findings), hint, *_most_boxes(data), np.sqrt(np.clip(area, 0, None)))


def _most_boxes(data: Mapping[str, Any]) -> Tuple[Tuple[int, str], int]:
    """The most non-crowd boxes one image of ``data`` holds with that image's file name ((0, "") when
    none holds any), and how many images hold more than :data:`QUERIES`."""
    names = {im.get("id"): str(im.get("file_name", im.get("id"))) for im in data["images"] if isinstance(im, dict)}
    per = boxes_per_image(data, names)
    if not per:
        return (0, ""), 0
    image, most = per.most_common(1)[0]
    return (most, names[image]), sum(n > QUERIES for n in per.values())


def _images_hint(data: Mapping[str, Any], findings: Mapping[str, Finding], folder: Path, ann_file: Path,
                 sample: int = 20) -> Optional[str]:
    """When most image files are missing: a folder that holds the first ``sample`` of them (a
    subfolder of ``folder``, e.g. ``train/`` of a Roboflow export; the annotation file's folder;
    a folder above ``folder``), or ``None``."""
    missing = findings.get("missing")
    if missing is None or len(missing.ids) * 2 < len(data["images"]):
        return None
    wanted = set(missing.ids[:sample])
    names = [os.path.normpath(im["file_name"]).replace("\\", "/") for im in data["images"]
             if isinstance(im, dict) and im.get("id") in wanted]
    first = "/" + names[0]
    candidates = [folder / rel[:-len(first)] for rel in sorted(_listing(folder)) if rel.endswith(first)][:5]
    candidates += [ann_file.parent, *list(folder.parents)[:2]]
    for candidate in candidates:
        if candidate != folder and all(os.path.isfile(candidate / n) for n in names):
            return str(candidate)
    return None


def _names_some(ann_file: Path, folder: Path) -> bool:
    """Whether ``folder`` holds an image the first ``file_name`` entries of ``ann_file`` name (read from the
    file's head, not the whole file), or the head names none: a walk's eval pictures written beside
    ``annotations/x.json`` made that folder the file's images folder, its 171 images then 'missing'."""
    from dfine.data.convert import file_names_in
    names = file_names_in(ann_file, 1 << 16)[:20]
    return not names or any((folder / n).is_file() or (folder / Path(n).name).is_file() for n in names)


def another_folders_images(listed: int, folder: os.PathLike | str, held: Optional[int] = None) -> str:
    """What to say of a COCO file none of whose ``listed`` images is in ``folder`` (which holds ``held`` images,
    when counted): it lists another folder's images (a walk's test split file was a copy of train's)."""
    holds = f", which holds {counted(held, 'image')}" if held is not None else ""
    these = "these" if held is not None else "this folder's"
    return (f"none of its {counted(listed, 'image')} is in {folder}{holds}: the file lists another folder's images "
            f"(another split's file copied here?); give the file of {these} images, or --images the folder of the "
            f"file's own")


def default_images(ann_file: os.PathLike | str) -> Path:
    """The images folder of ``ann_file`` when none is given: the one a converted file names in its
    ``info`` (``dfine data convert``), else the file's own folder when it holds images (Roboflow's
    ``{split}/_annotations.coco.json``) or ``images/`` beside the file, as ``dfine train --data``
    finds them, else the folder near it that holds the images it names (``annotations/x.json`` +
    ``images/``); ``DatasetError`` asking for ``--images`` otherwise."""
    from dfine.data.convert import check_prelabels_images, images_folder_of_file, roboflow_images

    path = Path(ann_file)
    if path.is_file():
        check_prelabels_images(path)
    folder = images_folder_of_file(path) if path.is_file() else None
    if folder is not None and folder.is_dir():
        return folder
    beside = roboflow_images(path.parent) if path.parent.is_dir() else path.parent
    if beside.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in beside.iterdir()) and _names_some(path,
                                                                                                           beside):
        return beside
    data = read_coco_json(path)  # not a COCO file at all: say that first
    from dfine.data.convert.coco import find_images_folder

    found = find_images_folder(path, data["images"])  # annotations/x.json + images/ (CVAT's COCO export)
    if found is not None and data["images"]:
        return found
    held = [p for p in beside.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] if beside.is_dir() else []
    if held and data["images"]:  # a re-walk's test file, a copy of train's, among the test images: say that
        raise DatasetError(f"{path}: {another_folders_images(len(data['images']), beside, len(held))}")
    raise DatasetError(f"{path}: give --images, the folder its file names are relative to")


def _shown_file_names(data: Mapping[str, Any], findings: Mapping[str, Finding]) -> Dict[Any, str]:
    """File names of the image ids a report shows (the first few of each image finding)."""
    shown = {i for f in findings.values() if KINDS[f.kind][1] == "image" for i in f.ids[:_FIRST]}
    return {im.get("id"): str(im.get("file_name")) for im in data["images"]
            if isinstance(im, dict) and im.get("id") in shown}


# ------------------------------------------------------------------------------------ fix


def fix_dataset(ann_file: os.PathLike | str, images_dir: os.PathLike | str, out: os.PathLike | str, *,
                report: Optional[CheckReport] = None, workers: int = 8) -> List[str]:
    """Write a repaired copy of ``ann_file`` to ``out``: unusable images (missing, unreadable,
    unsafe names, duplicate ids) and their annotations dropped, sizes corrected to the image,
    boxes clipped, degenerate and unattached annotations dropped, duplicate annotation ids
    renumbered. Returns one line per change (kind: ids)."""
    data = read_coco_json(ann_file)
    report = report or check_dataset(ann_file, images_dir, workers=workers)
    folder = Path(images_dir)
    changes: List[str] = []
    bad_images = set()
    for kind in ("missing", "zero_byte", "unreadable", "truncated", "unsafe_file_name", "symlink_out"):
        ids = report.findings[kind].ids if kind in report.findings else []
        bad_images.update(ids)
        if ids:
            changes.append(f"dropped {counted(len(ids), 'image')} ({kind}): {_ids(ids)}")
    if data["images"] and {im.get("id") for im in data["images"]} <= bad_images:
        # a fixed copy of no image (a walk's followed the advice and got an empty file, unsaid)
        raise DatasetError(f"{ann_file}: --fix would leave no image, so nothing was written: "
                           f"{report.none_there or 'none of its images can be used'}")
    seen, images = set(), []
    for im in data["images"]:
        if im.get("id") in bad_images:
            continue
        if im.get("id") in seen:
            changes.append(f"dropped image entry {im.get('id')} {im.get('file_name')!r} (duplicate image id)")
            continue
        seen.add(im.get("id"))
        images.append(im)
    mismatched = set(report.findings["size_mismatch"].ids) if "size_mismatch" in report.findings else set()
    if mismatched:
        for im in images:
            if im["id"] in mismatched:
                header = _look(folder / os.path.normpath(im["file_name"]).replace("\\", "/"), False).header
                im["width"], im["height"] = header.shown_size
        changes.append(f"corrected width/height of {counted(len(mismatched), 'image')} to the image as shown: "
                       f"{_ids(mismatched)}")
    sizes = {im["id"]: (_num(im.get("width")), _num(im.get("height"))) for im in images}
    declared = {c.get("id") for c in data["categories"] if isinstance(c, dict)}
    uncrowded = "crowd_only" in report.findings  # every box crowd (CVAT's masks): made ordinary boxes
    kept, dropped, clipped, renumbered = [], defaultdict(list), [], []
    used_ids = set()
    next_id = max([a["id"] for a in data["annotations"] if isinstance(a, dict) and _is_num(a.get("id"))] + [0]) + 1
    for ann in data["annotations"]:
        ann_id = ann.get("id")
        why = _drop_reason(ann, sizes, declared)
        if why:
            dropped[why].append(ann_id)
            continue
        if uncrowded and ann.get("iscrowd", 0):
            ann["iscrowd"] = 0
        if not ann.get("iscrowd", 0):
            fixed = _clip(ann["bbox"], sizes[ann["image_id"]])
            if fixed is None:
                dropped["empty after clipping to the image"].append(ann_id)
                continue
            if fixed != ann["bbox"]:
                ann["bbox"], ann["area"] = fixed, fixed[2] * fixed[3]
                clipped.append(ann_id)
        if ann_id in used_ids or not isinstance(ann_id, int):
            ann["id"], next_id = next_id, next_id + 1
            renumbered.append(f"{ann_id}->{ann['id']}")
        used_ids.add(ann["id"])
        kept.append(ann)
    if uncrowded:
        changes.append(f"made {counted(len(report.findings['crowd_only'].ids), 'crowd annotation')} ordinary boxes "
                       f"(iscrowd 0, their bbox): every annotation was iscrowd=1")
    for why, ids in dropped.items():
        changes.append(f"dropped {counted(len(ids), 'annotation')} ({why}): {_ids(ids)}")
    if clipped:
        changes.append(f"clipped {counted(len(clipped), 'box', 'boxes')} to the image: {_ids(clipped)}")
    if renumbered:
        changes.append(f"renumbered {counted(len(renumbered), 'duplicate annotation id')}: {_ids(renumbered)}")
    out = Path(out)
    payload = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    write_json_atomic(out, {**payload, "images": images, "annotations": kept, "categories": data["categories"]})
    return changes


def _drop_reason(ann: Any, sizes: Mapping[Any, Tuple[int, int]], declared: set) -> Optional[str]:
    if not isinstance(ann, dict):
        return "not an object"
    if ann.get("image_id") not in sizes:
        return "image dropped or not in 'images'"
    if ann.get("category_id") not in declared:
        return "undeclared category"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
        return "no bbox of 4 numbers"
    if not all(np.isfinite(bbox)) or bbox[2] <= 0 or bbox[3] <= 0:
        return "NaN, zero or negative size"
    return None


def _clip(bbox: List[float], size: Tuple[int, int]) -> Optional[List[float]]:
    width, height = size
    if not width or not height:
        return bbox
    x0, y0 = min(max(bbox[0], 0), width), min(max(bbox[1], 0), height)
    x1, y1 = min(max(bbox[0] + bbox[2], 0), width), min(max(bbox[1] + bbox[3], 0), height)
    if x1 <= x0 or y1 <= y0:
        return None
    out = [x0, y0, x1 - x0, y1 - y0]
    return bbox if np.allclose(out, bbox, rtol=0, atol=1e-9) else out


def _ids(ids: Iterable[Any], first: int = 20, file_names: Optional[Mapping[Any, str]] = None,
         total: bool = True) -> str:
    """The first ``first`` ids, each followed by its file name when ``file_names`` has it."""
    ids = list(ids)
    names = file_names or {}
    shown = ", ".join(f"{i} ({names[i]})" if i in names else str(i) for i in ids[:first])
    more = (f", ... ({len(ids)} in all)" if total else ", ...") if len(ids) > first else ""
    return shown + more


# ------------------------------------------------------------------------------------ training


def preflight(ann_file: os.PathLike | str, images_dir: os.PathLike | str, *, split: str = "train",
              log: Optional[Callable[[str], None]] = None) -> CheckReport:
    """The check run when a training dataset is built (headers only): ``DatasetError`` with the
    summary when it finds errors; the boxes training will repair, and the images it will scale
    or rotate, logged once (``log``: stderr of the main process)."""
    report = check_dataset(ann_file, images_dir, level="headers", cache=True)
    if not report.ok:
        raise DatasetError(report.summary(split))
    notes = [f"{counted(report.count(kind), one, many)} {what}: {KINDS[kind][1]} ids "
             f"{_ids(report.findings[kind].ids, _FIRST, report.file_names)}"
             for kind, (one, many, what) in _LOGGED.items() if kind in report.findings]
    if notes:
        (log or _log_main)(f"{split} data ({ann_file}): " + "; ".join(notes))
    return report


# kind -> (one, many, what was done): "1 box clipped to the image", "2 boxes clipped to the image"
_LOGGED = {"box_clipped": ("box", "boxes", "clipped to the image"),
           "box_invalid": ("box", "boxes", "with NaN, zero or negative size dropped"),
           "box_outside": ("box", "boxes", "entirely outside the image dropped"),
           "high_depth": ("16-bit, 32-bit or float image", "16-bit, 32-bit or float images", "scaled to 8 bits"),
           "exif_rotated": ("EXIF-rotated image", "EXIF-rotated images", "used as shown"),
           # a walk's YOLO reading held 638 such copies: training would learn the objects as background
           "background_copy": ("background image whose file is a labelled photo's copy,",
                               "background images whose files are labelled photos' copies,",
                               "used as background, which teaches the objects as background: remove them")}


def _log_main(text: str) -> None:
    if first_process():
        print(text, file=sys.stderr)


# ------------------------------------------------------------------------------------ plot


def _tick(name: str, width: int = 20) -> str:
    """A class name for an axis: whole up to ``width`` characters, else cut with an ellipsis."""
    return name if len(name) <= width else name[:width - 1] + "\u2026"


def _sample_title(boxes: int, drawn: int) -> str:
    """The title of the panel that draws ``drawn`` of ``boxes`` boxes centred."""
    return f"all {counted(boxes, 'box', 'boxes')}, centred" if drawn >= boxes else f"{drawn} of {boxes} boxes, centred"


def plot_backend() -> Any:
    """``matplotlib.pyplot`` for :func:`plot_report`; ``DatasetError`` with the install hint when
    matplotlib is missing (``dfine data check --plot`` asks before it reads any image)."""
    from dfine.engine.plots import pyplot
    try:
        return pyplot()
    except DfineError:
        raise DatasetError("--plot needs matplotlib: pip install \"dfine[plots]\"") from None


def sample_pictures(ann_file: os.PathLike | str, images_dir: os.PathLike | str, count: int = 9, seed: int = 0,
                    side: int = 480) -> Tuple[List[Tuple[str, Any, int]], int]:
    """Up to ``count`` images of the COCO file (seeded; images with boxes first), each shrunk to
    ``side`` px on its long side with its boxes drawn and named as the file gives them (crowd boxes
    named ``(crowd)``): ``[(file name, PIL image, number of boxes)]`` and the file's image count.
    Images that cannot be read are skipped (the check reports them)."""
    from types import SimpleNamespace

    from dfine.data.image_io import open_image
    from dfine.drawing import draw

    data = read_coco_json(Path(ann_file))
    names = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories", [])}
    order = {c: i for i, c in enumerate(names)}
    boxes: Dict[Any, list] = defaultdict(list)
    for a in data.get("annotations", []):
        boxes[a["image_id"]].append(a)
    images = list(data.get("images", []))
    rng = np.random.default_rng(seed)
    with_boxes = [images[i] for i in rng.permutation(len(images)) if boxes.get(images[i]["id"])]
    without = [images[i] for i in rng.permutation(len(images)) if not boxes.get(images[i]["id"])]
    tiles = []
    for im in with_boxes + without:
        if len(tiles) == count:
            break
        path = Path(images_dir) / str(im["file_name"])
        if unsafe_file_name(im["file_name"]) is not None or not inside_folder(path, Path(images_dir)):
            continue  # never read from outside the images folder, in a picture either (the check says why)
        try:
            picture = open_image(path)
        except Exception:  # noqa: BLE001 - the check reports unreadable files; the picture skips them
            continue
        anns = boxes.get(im["id"], [])
        scale = side / max(picture.size)  # small images too: every tile's labels the same size
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))
        dets = SimpleNamespace(
            boxes=np.array([[x * scale, y * scale, (x + w) * scale, (y + h) * scale] for x, y, w, h in
                            (a["bbox"] for a in anns)], dtype=float).reshape(-1, 4),
            names=[names.get(a["category_id"], str(a["category_id"])) + (" (crowd)" if a.get("iscrowd") else "")
                   for a in anns],
            scores=np.ones(len(anns)), labels=np.array([order.get(a["category_id"], 0) for a in anns], dtype=int))
        tiles.append((im["file_name"], draw(picture, dets, scores=False), len(anns)))
    return tiles, len(images)


def plot_samples(ann_file: os.PathLike | str, images_dir: os.PathLike | str, path: os.PathLike | str,
                 title: Optional[str] = None, count: int = 9, seed: int = 0) -> Optional[Path]:
    """A grid of :func:`sample_pictures`, to see that a conversion put the boxes on the objects;
    ``None`` when no image could be drawn. Needs matplotlib."""
    from dfine.engine.plots import save_figure

    tiles, total = sample_pictures(ann_file, images_dir, count, seed)
    if not tiles:
        return None
    plt = plot_backend()
    cols = min(3, len(tiles))
    rows = -(-len(tiles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, picture, n) in zip(axes.flat, tiles):
        ax.imshow(np.asarray(picture))
        ax.set_title(f"{cut_middle(Path(name).name, 36)} ({counted(n, 'box', 'boxes')})", fontsize=9)
    fig.suptitle(f"{title or Path(ann_file).name}: {counted(len(tiles), 'image')} of {total}, "
                 f"boxes as the annotation file has them")
    fig.tight_layout()
    return save_figure(fig, path)


#: The sides (fractions of the image) the box shapes' panels zoom to: the smallest that holds 99% of them
_ZOOMS = (0.05, 0.1, 0.2, 0.5, 1.0)


def _shapes_extent(shapes: np.ndarray) -> float:
    """The side of the box-shape panels: the smallest of :data:`_ZOOMS` holding 99% of the boxes' widths
    and heights ``[N, 2]`` (fractions of the image); satellite vehicles, under a tenth of the image,
    were a blob in the middle of a 0..1 plot (a walk)."""
    if not len(shapes):
        return 1.0
    most = float(np.quantile(shapes, 0.99, axis=0).max())
    return next(z for z in _ZOOMS if most <= z or z == 1.0)


def plot_report(report: CheckReport, path: os.PathLike | str, names: Optional[Mapping[int, str]] = None,
                title: Optional[str] = None) -> Path:
    """A picture of the labels like Ultralytics' ``labels.jpg``: instances per class, the boxes
    drawn centred, box centres and box sizes (normalised by the image; the shape panels zoomed to
    the boxes' sizes, :func:`_shapes_extent`); ``title``: what the data
    is (default: the annotation file's name). Needs matplotlib."""
    heading = title or Path(report.ann_file).name
    from dfine.engine.plots import save_figure
    plt = plot_backend()
    import matplotlib
    path = Path(path)
    names = names or {cid: name for cid, name, _, _ in report.categories}
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    table = report.categories
    ax = axes[0, 0]
    ax.bar(range(len(table)), [t[3] for t in table], color="#3b7dd8")
    ax.yaxis.get_major_locator().set_params(integer=True)  # counts: no 0.5 instance ticks
    ax.set_ylabel("instances")
    used = sum(1 for t in table if t[3])
    ax.set_title(f"{counted(sum(t[3] for t in table), 'box', 'boxes')} in "
                 + (f"{used} of " if used < len(table) else "") + counted(len(table), "class", "classes"))
    if len(table) <= 30:
        width = 24 if len(table) <= 10 else 20  # a few classes: room for 'mask_weared_incorrect' whole (a walk)
        ax.set_xticks(range(len(table)), [_tick(names.get(t[0], str(t[0])), width) for t in table], rotation=90,
                      fontsize=8)
    else:
        ax.set_xlabel("class (in category id order)")
    ok = np.isfinite(report.centres).all(axis=1) & np.isfinite(report.shapes).all(axis=1)
    centres, shapes = report.centres[ok], report.shapes[ok]
    ax = axes[0, 1]
    sample = np.random.default_rng(0).permutation(len(shapes))[:1000]
    alpha = float(np.clip(30 / max(len(sample), 1), 0.1, 0.8))  # a few boxes plain, a thousand still apart
    for w, h in shapes[sample]:
        ax.add_patch(plt.Rectangle((0.5 - w / 2, 0.5 - h / 2), w, h, fill=False, lw=0.8 if len(sample) < 100 else 0.4,
                                   alpha=alpha, color="#3b7dd8"))
    zoom = _shapes_extent(shapes)
    ax.set(xlim=(0.5 - zoom / 2, 0.5 + zoom / 2), ylim=(0.5 - zoom / 2, 0.5 + zoom / 2), aspect="equal",
           title=_sample_title(len(shapes), len(sample)))
    # Blues from near its middle: a cell of one box is plainly blue (the map's own start is white, as the empty cells)
    blues = matplotlib.colors.ListedColormap(matplotlib.colormaps["Blues"](np.linspace(0.45, 1.0, 256)))
    for ax, values, title, (xl, yl), top in ((axes[1, 0], centres, "box centres", ("x", "y"), 1.0),
                                             (axes[1, 1], shapes, "box sizes", ("width", "height"), zoom)):
        if len(values):
            *_, mesh = ax.hist2d(np.clip(values[:, 0], 0, top), np.clip(values[:, 1], 0, top), bins=50,
                                 range=[[0, top], [0, top]], cmap=blues, cmin=1,
                                 norm=matplotlib.colors.LogNorm(vmin=1, vmax=max(2, len(values))))
            bar = fig.colorbar(mesh, ax=ax, shrink=0.8, label="boxes per cell")
            plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 1, 2, 10: not 10^0, 2x10^0
            bar.ax.yaxis.set_major_formatter(plain)
            bar.ax.yaxis.set_minor_formatter(plain if len(values) <= 10 else matplotlib.ticker.NullFormatter())
        ax.set(xlim=(0, top), ylim=(0, top), aspect="equal", title=f"{title} (fraction of the image)", xlabel=xl,
               ylabel=yl)
    axes[1, 0].invert_yaxis()
    s, m, l = report.box_sizes
    fig.suptitle(f"{heading}: {counted(report.num_images, 'image')}; small {s}, medium {m}, "
                 f"large {l}")
    fig.tight_layout()
    return save_figure(fig, path)  # atomically: a Ctrl-C or a full disk leaves the previous picture
