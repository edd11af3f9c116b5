"""Pascal VOC folders (``Annotations/*.xml`` + ``JPEGImages/``) -> COCO JSON.

The folders may have other names, as LabelImg sets often do: one folder of XMLs (``annotations/``,
``annots/``) beside the folder of their images (``images/``, the XMLs' ``<folder>``, whichever
holds them), e.g. datitran/raccoon_dataset, experiencor/kangaroo. Also each XML beside its image: LabelImg's default (one folder of images and XMLs) and
Roboflow's "Pascal VOC" export (``{train,valid,test}/`` of images and XMLs, the folders being
the splits). Splits of the ``Annotations/`` layout come from ``ImageSets/Main/{train,val,test}.txt`` (``trainval.txt`` split by
``val_fraction`` when there is no ``val.txt``); without split files a seeded ``val_fraction`` of
the annotated images becomes val (printed). Class names are the XMLs' object names, sorted,
unless given. ``difficult=1`` objects are kept with ``iscrowd: 1`` (ignored by training and by
COCO evaluation, as VOC evaluation ignores them). Each XML's ``size`` is checked against the
image as shown (EXIF orientation applied): the image wins and each disagreement is listed.
Boxes are the XML's ``xmin ymin xmax ymax`` as written (``bbox = [xmin, ymin, xmax - xmin,
ymax - ymin]``), clipped to the image (each clip listed); boxes empty after clipping are left
out and listed.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from dfine.data.cocojson import DatasetError
from dfine.data.convert import (IMAGE_SUFFIXES, SPLIT_NAMES, Annotated, Converted, SplitCounts, alike_labels_note,
                                coco_split, fraction_said, info_for, split_by_fraction, write_coco_json)
from dfine.text import counted

__all__ = ["convert_voc", "VocObject", "VocRecord", "read_voc_xml", "side_by_side", "annotations_folder",
           "voc_roots"]

IMAGE_FOLDERS = ("JPEGImages", "images", "Images")  # where the images of an annotations folder are looked for


@dataclass(frozen=True)
class VocObject:
    name: str
    box: Tuple[float, float, float, float]  # xmin, ymin, xmax, ymax pixels as written
    difficult: bool


@dataclass(frozen=True)
class VocRecord:
    xml: Path
    filename: str
    size: Optional[Tuple[int, int]]  # (width, height) from the XML, None when absent or zero
    objects: Tuple[VocObject, ...]
    folder: str = ""  # the XML's <folder>: the images folder's name, as LabelImg writes it


def _text(node: Optional[ET.Element], tag: str) -> Optional[str]:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text is not None else None


def read_voc_xml(path: Path) -> VocRecord:
    """One VOC annotation file; ``DatasetError`` naming it when malformed."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable VOC XML ({exc})") from None
    size = None
    try:
        w, h = int(float(_text(root.find("size"), "width") or 0)), int(float(_text(root.find("size"), "height") or 0))
        size = (w, h) if w > 0 and h > 0 else None
    except ValueError:
        pass
    objects = []
    for obj in root.findall("object"):
        name = _text(obj, "name")
        box = obj.find("bndbox")
        if not name or box is None:
            raise DatasetError(f"{path}: an <object> without <name> or <bndbox>")
        try:
            coords = tuple(float(_text(box, k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: object '{name}' has a bndbox without numeric xmin/ymin/xmax/ymax") from None
        difficult = (_text(obj, "difficult") or "0") not in ("0", "false", "")
        objects.append(VocObject(name, coords, difficult))
    return VocRecord(path, _text(root, "filename") or "", size, tuple(objects), _text(root, "folder") or "")


def _record_or_reason(path: Path) -> Union[VocRecord, str]:
    """:func:`read_voc_xml` of ``path``, or why it cannot be read (its error without the path)."""
    try:
        return read_voc_xml(path)
    except DatasetError as exc:
        return str(exc).split(": ", 1)[1] if str(exc).startswith(f"{path}: ") else str(exc)


def _is_voc_xml(path: Optional[Path]) -> bool:
    """Whether ``path`` is an XML file whose root is a VOC ``<annotation>``."""
    try:
        return path is not None and ET.parse(path).getroot().tag == "annotation"
    except (ET.ParseError, OSError):
        return False


def annotations_folder(root: Path, any_name: bool = True) -> Optional[Path]:
    """The folder of VOC XMLs of the set at ``root``: ``Annotations/`` (even empty: the conversion
    then says so), ``annotations/`` holding VOC XMLs (a COCO set's ``annotations/`` holds JSON),
    or with ``any_name`` the one child folder of VOC XMLs without images (``annots/``; not a
    folder of XMLs beside their images, as Roboflow's ``train/``)."""
    if (root / "Annotations").is_dir():
        return root / "Annotations"
    lower = root / "annotations"
    if lower.is_dir() and _is_voc_xml(next(lower.glob("*.xml"), None)):
        return lower
    if not any_name or not root.is_dir():
        return None
    found = [c for c in sorted(root.iterdir()) if c.is_dir() and _is_voc_xml(next(c.glob("*.xml"), None))
             and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in c.iterdir())]
    return found[0] if len(found) == 1 else None


def voc_roots(src: Path, nested: bool = True) -> List[Path]:
    """The VOC sets (folders with an :func:`annotations_folder`) at ``src``; ``nested``: else one or
    two folders down (``VOCdevkit/VOC2007``), found by an ``Annotations/`` or ``annotations/`` folder."""
    if annotations_folder(src) is not None:
        return [src]
    if not nested:
        return []
    below = {p.parent for pattern in ("*/", "*/*/") for name in ("Annotations", "annotations")
             for p in src.glob(pattern + name)}
    return sorted(p for p in below if annotations_folder(p, any_name=False) is not None)


def _find_root(src: Path) -> Path:
    found = voc_roots(src)
    if len(found) == 1:
        return found[0]
    if found:
        raise DatasetError(f"{src} holds several VOC sets ({', '.join(str(f.relative_to(src)) for f in found)}); "
                           f"convert one at a time")
    above = next((p for p in list(src.parents)[:2] if voc_roots(p, nested=False)), None)
    hint = f"; give the dataset folder: {above}" if above is not None else ""
    raise DatasetError(f"no VOC dataset in {src}: expected Annotations/*.xml and JPEGImages/ (or a folder of VOC "
                       f"XMLs beside a folder of their images), or VOC XMLs beside their images{hint}")


def _images_folder(root: Path, ann_dir: Path, records: Sequence[VocRecord]) -> Path:
    """The images folder beside ``ann_dir``: of ``JPEGImages/``, ``images/``, ``Images/``, the folder
    the XMLs' ``<folder>`` names and the other folders in ``root``, the first that holds the first
    XML's image; ``DatasetError`` naming what was looked for when none does."""
    named = sorted({r.folder for r in records if r.folder and "/" not in r.folder and "\\" not in r.folder})
    others = sorted(c.name for c in root.iterdir() if c.is_dir())
    candidates = [root / n for n in dict.fromkeys((*IMAGE_FOLDERS, *named, *others))
                  if (root / n).is_dir() and root / n != ann_dir]
    first = next((r for r in records if r.filename), records[0] if records else None)
    for folder in candidates:
        if first is None or _image_of(folder, first) is not None:
            return folder
    preferred = [f for f in candidates if f.name in IMAGE_FOLDERS]
    if preferred:  # the conversion names the XMLs without an image there
        return preferred[0]
    looked = ", ".join(f"{n}/" for n in dict.fromkeys((*IMAGE_FOLDERS, *named)))
    raise DatasetError(f"no images folder beside {ann_dir} (looked for {looked} in {root}, and for "
                       f"{first.filename or first.xml.stem} in its other folders); put the images in "
                       f"{root / 'JPEGImages'}")


def side_by_side(src: Path) -> Optional[Dict[Optional[str], Path]]:
    """The folders of a VOC set whose XMLs lie beside their images: Roboflow's export
    (``{split: folder}`` of the ``train``/``valid``/``test`` folders holding XMLs) or LabelImg's
    one folder (``{None: src}``); ``None`` when ``src`` is no such set (its first XML is not a VOC
    ``<annotation>``, e.g. CVAT's ``annotations.xml``)."""
    if not src.is_dir() or annotations_folder(src) is not None:
        return None
    folders: Dict[Optional[str], Path] = {}
    for child in sorted(c for c in src.iterdir() if c.is_dir() and c.name.lower() in SPLIT_NAMES):
        if next(child.glob("*.xml"), None) is not None:
            folders.setdefault(SPLIT_NAMES[child.name.lower()], child)
    if not folders and next(src.glob("*.xml"), None) is not None:
        folders = {None: src}
    first = next((x for f in folders.values() for x in sorted(f.glob("*.xml"))), None)
    if not _is_voc_xml(first):
        return None
    # XMLs and no image: a set's folder of XMLs given alone (--data DATASET/annotations), not XMLs beside images
    images = any(p.suffix.lower() in IMAGE_SUFFIXES for f in folders.values() for p in f.iterdir())
    return folders if images else None


def _image_of(folder: Path, record: VocRecord) -> Optional[Path]:
    """The image of ``record`` in ``folder``: its ``<filename>``, else an image of its stem."""
    if record.filename and (folder / record.filename).is_file():
        return folder / record.filename
    stem = Path(record.filename).stem if record.filename else record.xml.stem
    for s in (stem, record.xml.stem):
        for ext in IMAGE_SUFFIXES:
            for e in (ext, ext.upper()):
                if (folder / (s + e)).is_file():
                    return folder / (s + e)
    return None


def _split_lists(root: Path, stems: Sequence[str], val_fraction: float, seed: int,
                 notes: List[str], unread: Iterable[str] = (),
                 classes: Optional[Mapping[str, set]] = None) -> Dict[str, List[str]]:
    """``{split: [xml stem, ...]}`` from ``ImageSets/Main`` (or a seeded fraction); what the files
    hold besides plain ids (paths, repeats), annotated images no split lists and val images that
    are train images too are said in ``notes``. ``unread``: the stems of XMLs that could not be
    read (already said): left out of the splits that list them. ``classes``: each stem's classes,
    kept on both sides of a seeded split."""
    main = root / "ImageSets" / "Main"
    known, unread = set(stems), set(unread)

    def read(name: str) -> Optional[List[str]]:
        path = main / f"{name}.txt"
        if not path.is_file():
            return None
        return _ids(f"ImageSets/Main/{name}.txt", path.read_text(encoding="utf-8"), known, notes)

    train, val, test = read("train"), read("val"), read("test")
    trainval = read("trainval") if train is None or val is None else None
    splits: Dict[str, List[str]] = {}
    listed = True
    if train is not None and val is not None:
        splits = {"train": train, "val": val}
    elif trainval is not None or train is not None:
        pool = trainval if trainval is not None else train
        said: List[str] = []
        splits["train"], splits["val"] = split_by_fraction(pool, val_fraction, seed, classes, said)
        notes.append(f"no ImageSets/Main/val.txt: {len(splits['val'])} of {len(pool)} images of "
                     f"{'trainval' if trainval is not None else 'train'}.txt became val "
                     f"{fraction_said(val_fraction, seed)}")
        notes += said
    else:
        said = []
        splits["train"], splits["val"] = split_by_fraction(stems, val_fraction, seed, classes, said)
        notes.append(f"no ImageSets/Main split files: {len(splits['val'])} of {len(stems)} images became val "
                     f"{fraction_said(val_fraction, seed)}")
        notes += said
        listed = False
    if test is not None:
        splits["test"] = test
    for split, items in list(splits.items()):
        splits[split] = items = [s for s in items if s not in unread]
        missing = [s for s in items if s not in known]
        if missing:
            raise DatasetError(f"ImageSets/Main/{split}.txt lists {len(missing)} images without an XML in "
                               f"{annotations_folder(root)} (first: {missing[0]})")
    unlisted = sorted(known - {s for items in splits.values() for s in items})
    if listed and unlisted:
        notes.append(f"{counted(len(unlisted), 'annotated image is', 'annotated images are')} in none of the split "
                     f"files ({', '.join(f'{s}.txt' for s in splits)}) and "
                     f"{'is' if len(unlisted) == 1 else 'are'} left out "
                     f"(e.g. {unlisted[0]})")
    return splits


def _ids(name: str, text: str, known: set, notes: List[str]) -> List[str]:
    """The image ids of a split file, in order, each once. A line's first word is the id (per-class
    files add a flag); a path (``JPEGImages/x.jpg``) stands for its file name's stem."""
    ids, paths, repeated, seen = [], [], 0, set()
    for line in text.splitlines():
        if not line.strip():
            continue
        entry = line.split()[0]
        if entry not in known and Path(entry).stem in known:
            paths.append(entry)
            entry = Path(entry).stem
        if entry in seen:
            repeated += 1
            continue
        seen.add(entry)
        ids.append(entry)
    if paths:
        notes.append(f"{name}: {counted(len(paths), 'line is a path', 'lines are paths')}, not image ids "
                     f"(e.g. {paths[0]}); read as their file names")
    if repeated:
        notes.append(f"{name}: {counted(repeated, 'repeated line')}, each image used once")
    return ids


def convert_voc(src: os.PathLike | str, out: Optional[os.PathLike | str] = None, *,
                names: Optional[Sequence[str]] = None, val_fraction: float = 0.2, seed: int = 0) -> Converted:
    """Convert the VOC set at ``src`` into COCO files under ``out/annotations`` (default: the
    VOC folder). Images stay in ``JPEGImages``."""
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise DatasetError(f"VOC dataset {src} not found")
    beside = side_by_side(src)
    root = src if beside is not None else _find_root(src)
    ann_dir = annotations_folder(root) or root / "Annotations"
    xmls = (sorted(x for f in beside.values() for x in f.glob("*.xml")) if beside is not None
            else sorted(ann_dir.glob("*.xml")))
    if not xmls:
        raise DatasetError(f"{ann_dir} holds no .xml files")
    with ThreadPoolExecutor(max_workers=8) as pool:
        read = list(pool.map(_record_or_reason, xmls))

    def key(xml: Path) -> str:  # the XML's path without suffix, from the folder the image file names start at
        return xml.relative_to(root if beside is not None else xml.parent).with_suffix("").as_posix()

    records = {key(r.xml): r for r in read if isinstance(r, VocRecord)}
    bad = [(xml, why) for xml, why in zip(xmls, read) if isinstance(why, str)]
    if bad and not records:
        raise DatasetError(f"{bad[0][0]}: {bad[0][1]}" + (f" (and {counted(len(bad) - 1, 'other XML')})"
                                                           if len(bad) > 1 else ""))
    notes: List[str] = []
    if root != src:  # found one or two folders down: said, with the folder to give (a walk two levels up was not told)
        notes.append(f"the VOC set found in {root.relative_to(src)}/ of {src} was read ({root} names it directly)")
    if bad:  # each one left out, all said at once (the conversion stopped at the first, one run per fault)
        shown = "; ".join(f"{xml.name} ({why})" for xml, why in bad[:3])
        notes.append(f"{counted(len(bad), 'XML')} cannot be read, left out with "
                     f"{'its image' if len(bad) == 1 else 'their images'}: {shown}{'; ...' if len(bad) > 3 else ''}")
    found = sorted({o.name for r in records.values() for o in r.objects})
    if names:
        class_names = tuple(names)
        unknown = [(r.xml, o.name) for r in records.values() for o in r.objects if o.name not in class_names]
        if unknown:
            raise DatasetError(f"{unknown[0][0]}: object name '{unknown[0][1]}' is not in --names "
                               f"({', '.join(class_names)})")
        extra = [n for n in class_names if n not in found]
        if extra:  # kept as classes (a set labelled later), said as --names' own (a walk's note blamed the dataset)
            them = "it" if len(extra) == 1 else "them"
            notes.append(f"--names {', '.join(extra)}: in no XML; kept as {counted(len(extra), 'class', 'classes')} "
                         f"without a box, never learned nor measured until images of {them} are labelled")
    else:
        class_names = tuple(found)
        boxes: Dict[str, int] = {}
        where: Dict[str, str] = {}  # the first XML holding each name
        for record in sorted(records.values(), key=lambda r: r.xml):
            for o in record.objects:
                boxes[o.name] = boxes.get(o.name, 0) + 1
                where.setdefault(o.name, record.xml.name)
        note = alike_labels_note(boxes, where, "the XMLs")
        if note:
            notes.append(note)
    if not class_names:
        raise DatasetError(f"{ann_dir}: no <object> in any XML and no --names; nothing to learn")
    classes = {k: {o.name for o in r.objects} for k, r in records.items()}
    if beside is not None:
        splits = _folder_splits(beside, sorted(records), val_fraction, seed, notes, classes)
    else:
        splits = _split_lists(root, sorted(records), val_fraction, seed, notes, {key(xml) for xml, _ in bad}, classes)
    out_dir = Path(out).expanduser() if out is not None else root
    ann_dir = out_dir / "annotations"
    folder = root if beside is not None else _images_folder(root, ann_dir, list(records.values()))
    info = info_for(ann_dir, folder, "VOC", src)
    written, counts = {}, {}
    for split, stems in splits.items():
        ims, anns, counts[split] = _split_json(split, [records[s] for s in stems], folder, class_names, notes,
                                               beside is not None)
        written[split] = ann_dir / f"instances_{split}.json"
        write_coco_json(written[split], ims, anns, class_names, info, counts[split].left_out)
    return Converted(src, out_dir, folder, written, class_names, counts, notes)


def _folder_splits(folders: Dict[Optional[str], Path], keys: Sequence[str], val_fraction: float, seed: int,
                   notes: List[str], classes: Optional[Mapping[str, set]] = None) -> Dict[str, List[str]]:
    """``{split: [record key, ...]}`` of a side-by-side set: its split folders, or a seeded
    ``val_fraction`` of one folder (or of ``train/`` when there is no val folder), said in ``notes``;
    ``classes``: each key's classes, kept on both sides of a seeded split."""
    said: List[str] = []
    if None in folders:
        splits = dict(zip(("train", "val"), split_by_fraction(list(keys), val_fraction, seed, classes, said)))
        notes.append(f"XMLs beside their images, no split folders: {len(splits['val'])} of {len(keys)} images "
                     f"became val {fraction_said(val_fraction, seed)}")
        notes += said
        return splits
    splits = {split: [k for k in keys if k.split("/", 1)[0] == folder.name] for split, folder in folders.items()}
    if "train" not in splits:
        raise DatasetError(f"no train folder of XMLs beside images (found {', '.join(f.name for f in folders.values())})")
    if "val" not in splits:
        pool = splits["train"]
        splits["train"], splits["val"] = split_by_fraction(pool, val_fraction, seed, classes, said)
        notes.append(f"no val folder: {len(splits['val'])} of {len(pool)} images of {folders['train'].name}/ became "
                     f"val {fraction_said(val_fraction, seed)}")
        notes += said
    return splits


def _split_json(split: str, records: List[VocRecord], folder: Path, names: Tuple[str, ...],
                notes: List[str], beside: bool = False) -> Tuple[List[Dict], List[Dict], SplitCounts]:
    """COCO images and annotations of ``records``, file names relative to ``folder`` (the
    images folder; with ``beside`` each image is looked for next to its XML)."""
    paths = [_image_of(r.xml.parent if beside else folder, r) for r in records]
    missing = [r for r, p in zip(records, paths) if p is None]
    if missing:  # left out, all said at once, with the image each looked for
        where = missing[0].xml.parent if beside else folder
        shown = "; ".join(f"{r.xml.name} (looked for {r.filename or r.xml.stem + '.jpg'})" for r in missing[:3])
        notes.append(f"{split}: {counted(len(missing), 'XML')} without {'its image' if len(missing) == 1 else 'their images'} "
                     f"in {where}, left out: {shown}{'; ...' if len(missing) > 3 else ''}")
    items = [Annotated(path, r.xml.name, r.size, tuple((o.name, o.box, o.difficult) for o in r.objects))
             for r, path in zip(records, paths) if path is not None]
    return coco_split(split, items, folder, names, notes)
