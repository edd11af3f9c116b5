"""Other dataset formats -> COCO JSON (``annotations/instances_{train,val,test}.json``).

:mod:`dfine.data.convert.yolo` reads every Ultralytics / Roboflow YOLO layout,
:mod:`dfine.data.convert.voc` Pascal VOC folders, :mod:`dfine.data.convert.cvat` CVAT's "CVAT for
images 1.1" export, :mod:`dfine.data.convert.labelme` LabelMe's JSON per image,
:mod:`dfine.data.convert.csv` CSV tables of boxes (TensorFlow Object Detection, Roboflow's
"Tensorflow Object Detection CSV"), :mod:`dfine.data.convert.createml` CreateML JSON,
:mod:`dfine.data.convert.coco` one COCO file for all images (split in two). Each returns a
:class:`Converted` saying where the files went; images are never copied or changed (but those that
exist only inside LabelMe files, written out). Each written JSON carries, in its ``info``,
the images folder its ``file_name``s are relative to (``images_folder``, relative to the JSON's
folder when inside it), so ``dfine train --data`` finds the images from the JSON alone.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from dfine.data.cocojson import DatasetError
from dfine.data.image_io import ImageHeader, read_header, same_bytes, tail_complete
from dfine.text import counted, first_few
from dfine.video import IMAGE_SUFFIXES

__all__ = ["Annotated", "Converted", "SplitCounts", "coco_split", "converter", "write_coco_json", "categories",
           "split_by_fraction", "labels_of", "split_members", "keep_split",
           "images_folder_of", "predict_target", "FORMATS", "SPLIT_NAMES", "IMAGE_SUFFIXES", "write_json_atomic",
           "write_text_atomic", "write_bytes_atomic", "header_or_reason", "info_for", "images_folder_from_info",
           "images_folder_of_file", "fraction_said", "roboflow_images", "images_by_name", "check_not_a_split",
           "write_split_files", "within", "alike_labels_note", "walk_folders", "file_head", "split_named", "changes_note",
           "written_files", "uncorrected_prelabels", "prelabels_maker", "file_names_in"]

#: The formats a conversion reads (``dfine data convert --from``).
FORMATS = ("yolo", "voc", "cvat", "labelme", "csv", "createml", "coco")

#: Split names as written by the usual tools -> ours.
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


_MARK = "converted by dfine"  # the start of the info description of every file a conversion writes


@dataclass
class SplitCounts:
    """What one split holds after conversion."""

    images: int = 0
    boxes: int = 0
    background: int = 0  # images without boxes (kept)
    ignored: int = 0  # boxes kept as iscrowd (VOC difficult)
    left_out: List[str] = field(default_factory=list)  # unreadable images left out, relative to the images folder


@dataclass
class Converted:
    """Result of a conversion: the annotation file of each split, the images folder their
    ``file_name``s are relative to, the class names (label order) and notes printed for the user."""

    source: Path
    out: Path
    images_folder: Path
    ann_files: Dict[str, Path]
    names: Tuple[str, ...]
    counts: Dict[str, SplitCounts]
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal, ending with the command that trains on this data."""
        lines = [f"converted {self.source} -> {self.out / 'annotations'} "
                 f"({counted(len(self.names), 'class', 'classes')}: "
                 f"{', '.join(self.names[:10])}{', ...' if len(self.names) > 10 else ''})",
                 f"images folder: {self.images_folder}"]
        for split, c in self.counts.items():
            extra = f", {c.ignored} difficult kept as iscrowd" if c.ignored else ""
            lines.append(f"  {split}: {counted(c.images, 'image')}, {counted(c.boxes, 'box', 'boxes')}, "
                         f"{counted(c.background, 'background image')}{extra}"
                         f" -> {self.ann_files[split]}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"train with: dfine train --data {shlex.quote(os.path.abspath(self.out))} --model dfine_s")
        return "\n".join(lines)


@dataclass(frozen=True)
class Annotated:
    """One annotated image of a source format (VOC, CVAT), ready for :func:`coco_split`: the image
    file, how messages name the annotation (``001.xml``, or the image's name in a CVAT file), the
    ``(width, height)`` the annotation says (``None``: not said) and its boxes as
    ``(class name, (xmin, ymin, xmax, ymax) px as written, crowd)``."""

    path: Path
    source: str
    size: Optional[Tuple[int, int]]
    boxes: Tuple[Tuple[str, Tuple[float, float, float, float], bool], ...]


def coco_split(split: str, items: Sequence[Annotated], folder: Path, names: Sequence[str],
               notes: List[str], kind: str = "XML") -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], SplitCounts]:
    """COCO images and annotations of one split, ``file_name``s relative to ``folder``. Each
    image's size is read from its header (EXIF orientation applied): a different size in the
    annotation is listed and the image's is used; boxes are clipped to the image (listed), boxes
    empty after clipping and unreadable images are left out (listed); crowd boxes are kept with
    ``iscrowd: 1``. What was changed is said in ``notes``; ``kind`` names the annotation files there
    (``"XML"``, ``"JSON"``)."""
    from concurrent.futures import ThreadPoolExecutor

    label = {n: i for i, n in enumerate(names)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        headers = list(pool.map(header_or_reason, [item.path for item in items]))
    images: List[Dict[str, Any]] = []
    anns: List[Dict[str, Any]] = []
    counts = SplitCounts()
    resized, clipped, dropped, swapped, unreadable = [], [], [], [], []
    for item, header in zip(items, headers):
        if isinstance(header, str):
            unreadable.append(f"{item.path.name} ({header})")
            counts.left_out.append(item.path.relative_to(folder).as_posix())
            continue
        width, height = header.shown_size
        if item.size is not None and tuple(item.size) != (width, height):
            resized.append(f"{item.source} says {item.size[0]}x{item.size[1]}, image is {width}x{height}")
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": item.path.relative_to(folder).as_posix(),
                       "width": width, "height": height})
        kept = 0
        for name, box, crowd in item.boxes:
            x0, y0, x1, y1 = box
            if x1 < x0 or y1 < y0:  # not a clipping matter: the file says min > max
                swapped.append(f"{item.source} '{name}' {tuple(box)}")
                continue
            c = (min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width),
                 min(max(y1, 0.0), height))
            if c != tuple(box):
                clipped.append(f"{item.source} '{name}'")
            if c[2] <= c[0] or c[3] <= c[1]:
                dropped.append(f"{item.source} '{name}' {tuple(box)}")
                continue
            w, h = c[2] - c[0], c[3] - c[1]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": label[name] + 1,
                         "bbox": [c[0], c[1], w, h], "area": w * h, "iscrowd": int(crowd)})
            counts.ignored += bool(crowd)
            kept += 1
        counts.background += kept == 0
    changes_note(split, notes, [(f"{kind} size differs", f"{kind} sizes differ",
                                 "from the image (the image's size is used)", resized),
                                ("box", "boxes", "clipped to the image", clipped),
                                ("box", "boxes", "empty after clipping, left out", dropped),
                                ("box", "boxes", "with xmin > xmax or ymin > ymax as written, left out", swapped),
                                ("unreadable image", "unreadable images", "left out", unreadable)])
    counts.images, counts.boxes = len(images), len(anns)
    return images, anns, counts


def changes_note(split: str, notes: List[str], changes: Sequence[Tuple[str, str, str, Sequence[str]]]) -> None:
    """One note per kind of change a conversion made to ``split``, with the first three places:
    ``changes`` holds ``(one, many, what was done, places)``, e.g. ``("box", "boxes", "clipped to the
    image", ["a.txt line 3"])`` -> ``train: 1 box clipped to the image: a.txt line 3``."""
    for one, many, what, found in changes:
        if found:
            notes.append(f"{split}: {counted(len(found), one, many)} {what}: {'; '.join(found[:3])}"
                         f"{'; ...' if len(found) > 3 else ''}")


def alike_labels_note(used: Mapping[str, int], where: Mapping[str, str], files: str) -> Optional[str]:
    """The note on labels spelt alike (``used``: boxes per label, ``where``: a file holding each): two
    that differ only in case, or a rare one spelt almost as a common one (a tenth of its boxes or fewer,
    or a third when spelt closer still: a walk's one 'persn' of six 'person' boxes went unsaid); a typo
    while labelling, most likely, which would be a class of its own. ``files`` says where to rename them
    (``"the JSONs"``)."""
    import difflib

    def said(label: str) -> str:
        return f"'{label}' ({counted(used[label], 'box', 'boxes')}, e.g. {where[label]})"

    alike: List[str] = []
    pairs = set()
    for label in sorted(used, key=lambda n: (used[n], n)):  # the rarer of two labels named first
        others = [n for n in used if n != label and used[n] >= used[label]]
        same_case = [n for n in others if n.lower() == label.lower()]
        close = same_case or difflib.get_close_matches(label, others, n=1, cutoff=0.8)
        rare = close and used[label] * (3 if _spelling(label, close[0]) >= 0.85 else 10) <= used[close[0]]
        if close and (same_case or rare) and {label, close[0]} not in pairs:
            pairs.add(frozenset((label, close[0])))
            alike.append(f"{said(label)} and {said(close[0])}")
    if not alike:
        return None
    return (f"labels spelt alike are separate classes (a typo while labelling?): {'; '.join(alike[:3])}"
            f"{'; ...' if len(alike) > 3 else ''}; to merge them, rename one in {files} (--names naming both keeps "
            f"them apart, without this note)")


def _spelling(a: str, b: str) -> float:
    """How alike two labels are spelt, 0..1 (difflib's ratio: 'persn' and 'person' 0.91, 'bus' and 'bush' 0.86)."""
    import difflib
    return difflib.SequenceMatcher(None, a, b).ratio()


def write_split_files(src: Path, root: Path, out: Optional[Path], items: Dict[str, List[Annotated]],
                      names: Optional[Sequence[str]], notes: List[str], *, fmt: str, kind: str, val_fraction: float,
                      seed: int) -> Converted:
    """The end of a conversion whose images are grouped by split already: the classes (``names``, which
    must hold every label, else the labels sorted), and without a val split a seeded ``val_fraction``
    of train (said as having no val ``kind``); then each split's COCO file is written under
    ``out/annotations`` (default ``root``), the images folder the deepest holding them all. ``fmt``
    names the source format in the files' ``info``."""
    used = sorted({label for split in items.values() for item in split for label, _, _ in item.boxes})
    unknown = sorted(set(used) - set(names or used))
    if unknown:
        raise DatasetError(f"labels of {src} not in --names ({', '.join(names or ())}): {', '.join(unknown[:5])}"
                           f"{', ...' if len(unknown) > 5 else ''}; add them to --names")
    if not names:
        counts: Dict[str, int] = {}
        where: Dict[str, str] = {}
        for item in (item for split in items.values() for item in split):
            for label, _, _ in item.boxes:
                counts[label] = counts.get(label, 0) + 1
                where.setdefault(label, item.source)
        note = alike_labels_note(counts, where, f"the {kind} files")
        if note:
            notes.append(note)
    names = tuple(names) if names else tuple(used)
    if not names:
        raise DatasetError(f"{src}: no box in any {kind} and no --names; nothing to learn")
    if not items.get("train"):
        raise DatasetError(f"{src}: no train {kind} (found {', '.join(sorted(items))}); put one in train/")
    if "val" not in items:
        pool = {item.path.as_posix(): item for item in items.get("train", [])}
        said: List[str] = []
        train, val = split_by_fraction(list(pool), val_fraction, seed, labels_of(pool), said,
                                       files={k: item.path for k, item in pool.items()})
        items["train"], items["val"] = [pool[k] for k in train], [pool[k] for k in val]
        notes.append(f"no val {kind}: {len(val)} of {counted(len(pool), 'image')} became val "
                     f"{fraction_said(val_fraction, seed)}")
        notes += said
    folder = images_folder_of([item.path for split in items.values() for item in split], root)
    out_dir = Path(out).expanduser() if out is not None else root
    ann_dir = out_dir / "annotations"
    info = info_for(ann_dir, folder, fmt, src)
    written, counts = {}, {}
    for split in (s for s in ("train", "val", "test") if s in items):
        ims, anns, counts[split] = coco_split(split, items[split], folder, names, notes, kind=kind)
        written[split] = ann_dir / f"instances_{split}.json"
        write_coco_json(written[split], ims, anns, names, info, counts[split].left_out)
    return Converted(src, out_dir, folder, written, tuple(names), counts, notes)


def converter(fmt: str) -> Any:
    """The conversion function of ``fmt`` (``yolo``, ``voc``, ``cvat``, ``labelme``, ``csv``, ``createml``, or ``coco``:
    one COCO file for all images, split), imported on use:
    ``(src, out=None, *, names=None, val_fraction=0.2, seed=0) -> Converted``."""
    import importlib
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}: {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    return getattr(importlib.import_module(f"dfine.data.convert.{fmt}"), f"convert_{fmt}")


def categories(names: Sequence[str]) -> List[Dict[str, Any]]:
    """COCO categories for class names in label order: ids ``1..K`` (label ``i`` is id ``i + 1``)."""
    return [{"id": i + 1, "name": n, "supercategory": n} for i, n in enumerate(names)]


def images_folder_of(paths: Sequence[Path], fallback: Path) -> Path:
    """The deepest folder holding every image of ``paths`` (``fallback`` when empty)."""
    if not paths:
        return fallback
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def predict_target(paths: Sequence[Path], fallback: Path, others: Iterable[Path] = ()) -> Path:
    """What ``dfine predict`` is pointed at for a split's images ``paths``: the deepest folder that
    holds them all (``fallback`` when there are none; a YOLO conversion's ``val/``, not its parent),
    or the first of them when that folder holds images of another split (``others``) too: one folder
    split by a seed, whose train images the model has seen."""
    folder = images_folder_of(paths, fallback)
    if paths and any(p.is_relative_to(folder) for p in others):
        return paths[0]
    return folder


def fraction_said(val_fraction: float, seed: int) -> str:
    """How a seeded val split was made, naming the command that takes the options (``dfine train
    --data`` prints the note too, and takes neither: its ``--seed`` is the training's)."""
    return f"(dfine data convert --val-fraction {val_fraction} --seed {seed})"


#: the part of a Roboflow file name that tells its copies of one photo apart (``.rf.`` and a hash)
_ROBOFLOW_COPY = re.compile(r"\.rf\.[0-9a-f]{32}")


def has_roboflow_copies(names: Iterable[str]) -> bool:
    """Whether any of the file ``names`` is a Roboflow copy of a photo (``a_jpg.rf.HASH.jpg``)."""
    return any(_ROBOFLOW_COPY.search(str(n)) for n in names)


def labels_of(items: Mapping[str, Any]) -> Dict[str, set]:
    """``{key: the labels of its boxes}`` of images whose ``boxes`` are ``(label, box, crowd)``
    (:class:`Annotated`, a CVAT image, a LabelMe file): what :func:`split_by_fraction` keeps on
    both sides."""
    return {key: {label for label, _, _ in item.boxes} for key, item in items.items()}


def split_by_fraction(items: Sequence[str], fraction: float, seed: int,
                      classes: Optional[Mapping[str, Iterable[Any]]] = None,
                      notes: Optional[List[str]] = None,
                      files: Optional[Mapping[str, os.PathLike | str]] = None) -> Tuple[List[str], List[str]]:
    """``items`` (sorted first) shuffled with ``seed``; the first ``round(n * fraction)`` are val.
    Returns ``(train, val)``, each sorted. Roboflow's copies of one photo (``a_jpg.rf.HASH1.jpg``,
    ``a_jpg.rf.HASH2.jpg``: the versions an augmented export holds) go to the same side, whole groups
    shuffled instead: a copy in val of a photo in train scored it on what it was trained on. So do
    images whose files (``files``: ``{item: image file}``) hold the same bytes under other names (a walk's
    pre-labels put 12 of 16 val photos beside their copies in train).

    ``classes`` (``{item: its boxes' classes}``) keeps the rare classes on both sides: a class the
    shuffle left out of val gets one of its images moved to val when train keeps another, and one
    left out of train gets one moved back (a class in one image goes to train, where it is learned);
    a walk's class in 3 of 300 images had all three in train half the time, its AP never measured.
    A move never takes the last image of another class from its side; each is said in ``notes``."""
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"--val-fraction {fraction} must be in [0, 1)")
    order = sorted(items)
    # {item: the first item whose file holds the same bytes}, of the items whose file is a copy
    same = {item: group[0] for group in same_bytes({i: files[i] for i in order if i in files})
            for item in group[1:]} if files else {}
    groups: Dict[str, List[str]] = {}
    for item in order:
        groups.setdefault(_ROBOFLOW_COPY.sub("", same.get(item, item)), []).append(item)
    n_val = int(round(len(order) * fraction))
    if fraction > 0 and n_val == 0 and len(order) > 1:
        n_val = 1
    if len(groups) == len(order):  # no copies: each item is its own group, in the shuffled order
        random.Random(seed).shuffle(order)
        groups = {item: [item] for item in order}
        keys, val_keys = order, set(order[:n_val])
    else:
        keys = sorted(groups)
        random.Random(seed).shuffle(keys)
        val_keys, taken = set(), 0
        for key in keys:
            if taken >= n_val or taken + len(groups[key]) >= len(order):
                break
            val_keys.add(key)
            taken += len(groups[key])
    if classes and fraction > 0:
        of_group = {key: {c for item in groups[key] for c in classes.get(item, ())} for key in keys}
        _keep_classes_on_both_sides(keys, val_keys, of_group, notes)
    val = sorted(item for key in val_keys for item in groups[key])
    if len(groups) < len(order) and notes is not None:  # a walk read 81 of 342 as a 24% split, not 3 of 18 photos
        what = "copies (Roboflow's versions, or the same bytes under other names)" if same else "Roboflow copies"
        notes.append(f"the {len(order)} images are {what} of {len(groups)} photos, each photo's copies kept on "
                     f"one side: val holds {counted(len(val_keys), 'photo')} ({counted(len(val), 'image')})")
    return sorted(set(order) - set(val)), val


def _keep_classes_on_both_sides(keys: Sequence[str], val_keys: set, of_group: Mapping[str, set],
                                notes: Optional[List[str]]) -> None:
    """Move groups across the split (``val_keys``, changed in place) so that each class with two
    groups or more has one on each side, and a class in one group is in train; ``keys`` in the
    shuffled order, whose first fitting group moves. See :func:`split_by_fraction`."""
    from collections import Counter
    sides = {"train": Counter(), "val": Counter()}
    for key in keys:
        sides["val" if key in val_keys else "train"].update(of_group[key])
    moved: Dict[str, List[str]] = {"val": [], "train": []}
    total = sides["train"] + sides["val"]
    for cls in sorted(total, key=lambda c: (total[c], str(c))):
        if sides["val"][cls] == 0 and sides["train"][cls] >= 2:
            source, target = "train", "val"
        elif sides["train"][cls] == 0:
            source, target = "val", "train"
        else:
            continue
        left = len(val_keys) if source == "val" else len(keys) - len(val_keys)
        for key in keys:
            on_source = (key in val_keys) == (source == "val")
            if on_source and left > 1 and cls in of_group[key] and all(
                    sides[source][c] >= 2 or c == cls and target == "train" for c in of_group[key]):
                _move(key, source, target, val_keys, sides, of_group)
                moved[target].append(str(cls))
                back = next((k for k in reversed(keys) if ((k in val_keys) == (target == "val")) and k != key
                             and all(sides[target][c] >= 2 for c in of_group[k])), None)
                if back is not None:  # one that no class needs there goes the other way: the fraction holds
                    _move(back, target, source, val_keys, sides, of_group)
                break
    if notes is not None and (moved["val"] or moved["train"]):
        why = {"val": "which had none there", "train": "which was only in val"}
        parts = [f"{counted(len(names), 'image')} moved to {side} for {first_few(names, 5)}, {why[side]}"
                 for side, names in moved.items() if names]
        notes.append(f"rare classes kept on both sides of the split: {'; '.join(parts)}")


def _move(key: str, source: str, target: str, val_keys: set, sides: Mapping[str, Any],
          of_group: Mapping[str, set]) -> None:
    """Move group ``key`` from the ``source`` side of the split to ``target``, counting its classes."""
    (val_keys.add if target == "val" else val_keys.discard)(key)
    sides[source].subtract(of_group[key])
    sides[target].update(of_group[key])


def split_members(folder: Path) -> Optional[Dict[str, Any]]:
    """``{"train": file names, "val": file names, "from": the source said in its info}`` of the COCO
    files a conversion wrote into ``folder/annotations``, or None when there are none (or they cannot
    be read)."""
    files = {s: folder / "annotations" / f"instances_{s}.json" for s in ("train", "val")}
    if not all(f.is_file() for f in files.values()):
        return None
    try:
        data = {s: json.loads(f.read_text(encoding="utf-8")) for s, f in files.items()}
        members: Dict[str, Any] = {s: {str(im["file_name"]) for im in d["images"]} for s, d in data.items()}
        members["from"] = (data["val"].get("info") or {}).get("description")
        return members
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def keep_split(files: Mapping[str, Path], earlier: Mapping[str, Any]) -> int:
    """Re-split the train and val COCO files of a conversion (``files``) as ``earlier``
    (:func:`split_members` of the run folder before it) when both hold the same images split another
    way: the split a run trained with stays for the rest of it (a newer dfine keeping rare classes
    on both sides moved images a resumed run had trained on into val). Returns how many images
    today's split would have put on the other side (0: the same split, or other images or another
    source: the dataset changed, and today's split is used)."""
    data = {s: json.loads(Path(files[s]).read_text(encoding="utf-8")) for s in ("train", "val")}
    now = {s: {str(im["file_name"]) for im in data[s]["images"]} for s in data}
    source = (data["val"].get("info") or {}).get("description")
    if now["val"] == earlier["val"] or now["train"] | now["val"] != earlier["train"] | earlier["val"] or (
            earlier.get("from") is not None and earlier.get("from") != source):  # another dataset's folder
        return 0
    entries = []  # (image, its annotations) of both files
    for d in data.values():
        by_image: Dict[Any, List[Dict[str, Any]]] = {}
        for a in d["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        entries += [(im, by_image.get(im["id"], [])) for im in d["images"]]
    for split, d in data.items():
        chosen = sorted((e for e in entries if (str(e[0]["file_name"]) in earlier["val"]) == (split == "val")),
                        key=lambda e: str(e[0]["file_name"]))
        images = [{**im, "id": i + 1} for i, (im, _) in enumerate(chosen)]
        anns = [{**a, "image_id": i + 1} for i, (_, found) in enumerate(chosen) for a in found]
        write_json_atomic(Path(files[split]), {**d, "images": images,
                                               "annotations": [{**a, "id": n + 1} for n, a in enumerate(anns)]})
    return len(now["val"] - earlier["val"]) + len(earlier["val"] - now["val"])


def check_not_a_split(src: Path, holds: Callable[[Path], bool], what: str) -> None:
    """``DatasetError`` naming the dataset folder when ``src`` is a split folder (``train/``, ``valid/``,
    ...) beside another split folder that ``holds`` a dataset of the same kind: read alone, its
    own images would be split in two and the real val split left out without a word."""
    split = SPLIT_NAMES.get(src.name.lower())
    if split is None:
        return
    beside = [d for d in sorted(src.parent.iterdir()) if d.is_dir() and d != src
              and SPLIT_NAMES.get(d.name.lower()) not in (None, split) and holds(d)]
    if beside:
        raise DatasetError(f"{src} is the {split} split of the {what} dataset {src.parent} (beside "
                           f"{', '.join(d.name + '/' for d in beside)}): give that folder, e.g. --data {src.parent}")


def within(path: Path, root: Path) -> Optional[Path]:
    """``path`` made absolute and normalised (``..`` taken out, symbolic links kept: an ``images/`` that
    links elsewhere is the user's own layout), or ``None`` when that leaves the folder ``root``."""
    normal = Path(os.path.normpath(path.absolute()))
    return normal if normal.is_relative_to(root) else None


def walk_folders(root: Path, depth: int, names: Optional[Sequence[str]] = None
                 ) -> Iterator[Tuple[Path, int, List[str]]]:
    """``(folder, level, file names)`` of ``root`` and the folders ``depth`` levels below it, in sorted
    order, hidden folders skipped (``names``: only folders of these names, lower case, below ``root``)."""
    for folder, dirs, files in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (names is None or d.lower() in names)
                         ) if level < depth else []
        yield Path(folder), level, sorted(files)


_FILE_NAME = re.compile(rb'"file_name"\s*:\s*"((?:[^"\\]|\\.)*)"')


def file_names_in(ann_file: Path, size: Optional[int] = None) -> List[str]:
    """The ``file_name`` entries of the COCO file ``ann_file`` (in its first ``size`` bytes; None: all of it),
    found without parsing the JSON whole: COCO's 450 MB train file takes seconds and gigabytes to parse, and a
    check of its images' names needs none of the rest; ``[]`` when it cannot be read."""
    try:
        data = file_head(ann_file, size) if size is not None else Path(ann_file).read_bytes()
    except OSError:
        return []
    names = []
    for found in _FILE_NAME.findall(data):
        try:
            names.append(json.loads(b'"' + found + b'"'))
        except ValueError:
            continue
    return names


def file_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of the file at ``path`` (``b""`` when it cannot be read): enough to tell
    which kind of JSON a file is without parsing a large one whole."""
    try:
        with path.open("rb") as f:
            return f.read(size)
    except OSError:
        return b""


def split_named(path: Path) -> Optional[str]:
    """The split an annotation file's name (``train_labels.csv``) or else its folder (``valid/``) says."""
    for word in re.split(r"[^a-z]+", path.stem.lower()):
        if word in SPLIT_NAMES:
            return SPLIT_NAMES[word]
    return SPLIT_NAMES.get(path.parent.name.lower())


def images_by_name(root: Path, depth: int = 3) -> Dict[str, List[Path]]:
    """Every image under ``root`` (``depth`` levels down, hidden folders skipped) by file name: where
    an annotation's image is when it is not where the annotation says (LabelMe, CSV)."""
    found: Dict[str, List[Path]] = {}
    for folder, _, files in walk_folders(root, depth):
        for f in files:
            if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(f, []).append(folder / f)
    return found


def header_or_reason(path: Path) -> Union[ImageHeader, str]:
    """The image's header, or why it cannot be read (one line): a JPEG or PNG cut short is one (a
    converted split left it out as it does an unreadable file; training then stopped on the check's
    'truncated' error, to be repaired by hand)."""
    try:
        header = read_header(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported by name, never raised
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not tail_complete(path, header.format):
        return f"truncated: the {header.format} file ends before its image data does"
    return header


#: The COCO files written by the conversion running now (``written_files``), else None.
_WRITTEN: Optional[List[Path]] = None


@contextlib.contextmanager
def written_files() -> Iterator[List[Path]]:
    """``with written_files() as paths:`` ``paths`` lists the COCO files the conversions inside write,
    in order (``dfine data convert`` names them when it is stopped half-way)."""
    global _WRITTEN
    before, _WRITTEN = _WRITTEN, []
    try:
        yield _WRITTEN
    finally:
        _WRITTEN = before


def write_coco_json(path: Path, images: List[Dict[str, Any]], annotations: List[Dict[str, Any]],
                    names: Sequence[str], info: Mapping[str, Any], left_out: Sequence[str] = ()) -> None:
    """Write one COCO file (categories ``1..K`` named ``names``) atomically; never over a split file
    that dfine did not write (:func:`refuse_to_replace`). ``left_out``: the unreadable images the conversion
    left out, kept in ``info`` so that a check of the file does not list them again as strays."""
    refuse_to_replace(path.parent)
    info = {**info, **({"left_out": list(left_out)} if left_out else {})}
    write_json_atomic(path, {"info": info, "images": images, "annotations": annotations,
                             "categories": categories(names)})
    if _WRITTEN is not None:
        _WRITTEN.append(Path(path))


def refuse_to_replace(ann_dir: Path) -> None:
    """A one-line error when ``ann_dir`` holds a split file (``instances_{train,val,test}.json``) that
    no conversion of dfine wrote (its ``info`` does not say so): a conversion writes those names and
    would replace the user's own annotations (a walk's ``-r`` of a checkpoint kept beside them did).
    Checked before any split file is written, so none is."""
    for split in ("train", "val", "test"):
        path = ann_dir / f"instances_{split}.json"
        if path.is_file() and _MARK.encode() not in file_head(path, 1 << 16):
            raise DatasetError(f"{path} is there and was not written by dfine (annotations of your own?); a "
                               f"conversion into {ann_dir.parent} would replace it: give another output folder "
                               f"(-o), or move the file away")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """``data`` as JSON at ``path``: a temporary file in the same folder, fsync, then rename."""
    write_text_atomic(path, json.dumps(data))  # the C encoder; json.dump streams through the Python one (~5x slower)


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` (UTF-8) at ``path``, as :func:`write_bytes_atomic` writes."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``: a temporary file in the same folder, fsync, then rename. The file
    gets the permissions of any new file (``0666`` less the umask), not the temporary file's ``0600``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            mask = os.umask(0)
            os.umask(mask)
            os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def info_for(ann_dir: Path, images_folder: Path, fmt: str, source: Path) -> Dict[str, Any]:
    """The ``info`` block: where the images are (relative to ``ann_dir`` when below its parent)."""
    try:
        folder = os.path.relpath(images_folder, ann_dir)
        if folder.startswith(".." + os.sep + ".."):
            folder = str(images_folder)
    except ValueError:  # another drive
        folder = str(images_folder)
    return {"description": f"{_MARK} from {fmt}: {source}", "images_folder": folder}


#: the ``--from`` word of each source format a conversion names in its files' ``info``, and the suffixes of its
#: annotation files
_SOURCES = {"VOC": ("voc", (".xml",)), "YOLO": ("yolo", (".txt", ".yaml", ".yml")),
            "CVAT for images": ("cvat", (".xml",)), "LabelMe": ("labelme", (".json",)), "CSV": ("csv", (".csv",)),
            "CreateML": ("createml", (".json",)), "one COCO file": ("coco", (".json",))}


def stale_conversion_note(ann_file: Path, limit: int = 20000) -> Optional[str]:
    """A note when the COCO file ``ann_file`` was written by a conversion (``dfine data convert``) whose source
    annotation files changed after it: training and checks read the COCO file, not the edited sources (a
    re-walk removed a box from a VOC XML and trained on the old one without a word). ``None`` otherwise;
    at most ``limit`` files of a source folder are looked at."""
    found = re.search(rb'"description": "' + _MARK.encode() + rb' from ([^:"]+): ((?:[^"\\]|\\.)*)"',
                      file_head(ann_file, 1 << 16))
    if found is None or found.group(1).decode() not in _SOURCES:
        return None
    fmt, suffixes = _SOURCES[found.group(1).decode()]
    try:
        source, since = Path(json.loads(b'"' + found.group(2) + b'"')), ann_file.stat().st_mtime
    except (ValueError, OSError):
        return None
    if source.is_file():
        candidates: Iterable[Path] = [source]
    elif source.is_dir():
        candidates = (p for p in source.rglob("*") if p.suffix.lower() in suffixes
                      and "annotations" not in p.relative_to(source).parts[:-1] and not p.name.startswith("instances_"))
    else:
        return None
    changed = []
    for path in itertools.islice(candidates, limit):
        try:
            if path.stat().st_mtime > since and path != ann_file:
                changed.append(path)
        except OSError:
            continue
    if not changed:
        return None
    shown = first_few([str(p.relative_to(source)) if p != source else p.name for p in changed], 3)
    again = shlex.join(["dfine", "data", "convert", "--from", fmt, str(source)])
    return (f"{ann_file.name} was converted from the {found.group(1).decode()} files of {source}, and "
            f"{counted(len(changed), 'of them has', 'of them have')} changed since ({shown}): this reads the converted "
            f"file as it is; {again} brings the changes in")


def roboflow_images(split_dir: Path) -> Path:
    """The images of a Roboflow ``{split}/_annotations.coco.json``: beside the file, or in
    ``{split}/images`` when the split folder holds no image itself (exports re-saved next to a
    YOLO ``labels/`` folder put them there)."""
    sub = split_dir / "images"
    if sub.is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in split_dir.iterdir()):
        return sub
    return split_dir


def images_folder_of_file(ann_file: Path) -> Optional[Path]:
    """:func:`images_folder_from_info` of the file at ``ann_file``, parsing it only when its head
    names an images folder (a large COCO file without one is not read whole); ``None`` on any error."""
    try:
        with ann_file.open("rb") as f:
            head = f.read(4096)
        if b'"images_folder"' not in head:
            return None
        return images_folder_from_info(ann_file, json.loads(ann_file.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


#: How the ``info.description`` of ``dfine predict --save-dataset``'s file begins
PRELABELS_DESCRIPTION = "pre-labels of"


def _prelabels(ann_file: Path) -> Optional[Dict[str, Any]]:
    """The content of ``ann_file`` when it is ``dfine predict --save-dataset``'s file, else None."""
    try:
        with Path(ann_file).open("rb") as f:
            if PRELABELS_DESCRIPTION.encode() not in f.read(4096):
                return None
        data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = data.get("info") if isinstance(data, dict) else None
    if not (isinstance(info, dict) and str(info.get("description", "")).startswith(PRELABELS_DESCRIPTION)):
        return None
    return data


def uncorrected_prelabels(ann_file: Path, corrected: bool = False) -> Optional[str]:
    """:func:`prelabels_maker` of the COCO file ``ann_file`` (``corrected``: :func:`prelabels_origin`, the
    scores gone or not), read only when its head holds either mark."""
    try:
        with Path(ann_file).open("rb") as f:
            head = f.read(4096)
        if PRELABELS_DESCRIPTION.encode() not in head and b'"prelabels_of"' not in head:
            return None
        data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
        return prelabels_origin(data) if corrected else prelabels_maker(data)
    except (OSError, ValueError):
        return None


def prelabels_note(file_name: str, made: str) -> str:
    """The words for a file of uncorrected pre-labels (``made``: what made them, :func:`prelabels_maker`), with
    what makes it a corrected file (a walk's hand edits kept the scores and read 'not corrected yet')."""
    return (f"{file_name} holds the pre-labels of {made}, not corrected yet (every box keeps its score; a labelling "
            f"tool's export drops the scores, and so does deleting them from boxes corrected by hand)")


def prelabels_maker(data: Any) -> Optional[str]:
    """What made the COCO content ``data`` (``dfine predict -m MODEL``) when it is ``dfine predict
    --save-dataset``'s pre-labels, or a split of them a conversion wrote (``info.prelabels_of``), with the score
    still on every box as predict wrote them (not corrected yet); else None."""
    boxes = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(boxes, list) or not all(isinstance(a, dict) and "score" in a for a in boxes):
        return None
    return prelabels_origin(data)


def prelabels_origin(data: Any) -> Optional[str]:
    """What made the pre-labels the COCO content ``data`` began as (``dfine predict -m MODEL``), corrected since
    or not, while its ``info`` still says so; else None."""
    info = data.get("info") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        return None
    description = str(info.get("description", ""))
    if info.get("prelabels_of"):
        return str(info["prelabels_of"])
    if description.startswith(PRELABELS_DESCRIPTION):
        return description[len(PRELABELS_DESCRIPTION):].strip() or "dfine predict"
    return None


def check_prelabels_images(ann_file: Path) -> None:
    """A ``DatasetError`` when ``ann_file`` is ``dfine predict --save-dataset``'s file and the images
    folder it names is not there: the file's own folder then holds predict's annotated copies under
    the images' names, which a search for the images would take (silently, a walk: the check's
    picture of them looks the same as of the photos); or when the file names no images folder and its
    folder is predict's output (the pre-labels corrected in a labelling tool, whose export left out
    ``info.images_folder``, saved back there: a walk's check read the annotated copies as the photos)."""
    if (ann_file.name != "predictions.json" and (ann_file.parent / "predictions.json").is_file()
            and images_folder_of_file(ann_file) is None):
        raise DatasetError(f"{ann_file} names no images folder (info.images_folder, which dfine predict "
                           f"--save-dataset writes, is gone: a labelling tool's export?), and its folder "
                           f"{ann_file.parent} is dfine predict's output, whose images are annotated copies with "
                           f"boxes drawn on them: set info.images_folder in {ann_file.name} to the photos' folder, or "
                           f"move the file beside the photos")
    data = _prelabels(ann_file)
    if data is None:
        return
    folder = images_folder_from_info(ann_file, data)
    if folder is not None and not folder.is_dir():
        raise DatasetError(f"{ann_file} names its images folder {folder}, which is not there; its own folder holds "
                           f"dfine predict's annotated copies, not the images: move the images back there, or set "
                           f"info.images_folder in {ann_file.name} to where they are now")


def images_folder_from_info(ann_file: Path, data: Mapping[str, Any]) -> Optional[Path]:
    """The images folder a converted file names in its ``info`` (``None`` when it names none)."""
    info = data.get("info")
    folder = info.get("images_folder") if isinstance(info, dict) else None
    if not isinstance(folder, str) or not folder:
        return None
    path = Path(folder)
    return path if path.is_absolute() else (ann_file.parent / path).resolve()
