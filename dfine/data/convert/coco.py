"""One COCO file for all images (no train/val split) -> ``instances_train.json`` + ``instances_val.json``.

Labelling tools export a dataset as a single COCO JSON: CVAT's "COCO 1.0"
(``annotations/instances_default.json`` + ``images/``), Label Studio (``result.json`` + ``images/``),
makesense.ai, VIA. :func:`coco_file` finds such a file in a folder (the folder itself or its
``annotations/``); :func:`convert_coco` splits its images into train and val (a seeded
``val_fraction``, printed) and writes each split's images and annotations as they are (ids, category
ids and names, extra fields unchanged; nothing renumbered), with the images folder its
``file_name``\\ s are relative to in ``info``. The images folder is found by looking for the file
names: beside the JSON, in ``images/`` beside it, or beside / in ``images/`` of the folder above.
Images are never copied or changed; the checks of training (missing images, bad boxes) then run on
the split files as on any COCO file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PureWindowsPath
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dfine.data.cocojson import DatasetError, read_coco_json
from dfine.data.convert import (SPLIT_NAMES, Converted, SplitCounts, check_prelabels_images, file_head, fraction_said,
                                has_roboflow_copies, images_folder_of_file, info_for, refuse_to_replace,
                                split_by_fraction, prelabels_maker, prelabels_note, write_json_atomic)
from dfine.text import counted, first_few

__all__ = ["coco_file", "coco_files", "convert_coco", "find_images_folder"]

#: bytes read from the head of a JSON file to tell whether it is a COCO detection file
_HEAD = 65536


def _split_files(root: Path) -> List[Path]:
    """The JSON files of ``root`` and its ``annotations/`` named as a split's (``instances_train2017.json``)."""
    return [p for p in _jsons(root) if split_of(p) is not None]


def _jsons(root: Path) -> List[Path]:
    return [p for folder in (root, root / "annotations") if folder.is_dir() for p in sorted(folder.glob("*.json"))]


#: COCO's files of its other tasks (``annotations_trainval2017.zip``): named by split too, but not box detection sets
_OTHER_TASKS = ("captions_", "person_keypoints_", "stuff_", "panoptic_", "image_info_")


def _split_word(path: Path) -> str:
    """The word of a COCO file's name that may name a split: ``train2017`` of ``instances_train2017.json``,
    ``train`` of ``train.coco.json``; in an ``annotations/`` folder the last word (``custom_train.json``: DETR
    fine-tuning tutorials, a walk), elsewhere the whole name (``my_set_test.json`` is one file for all images)."""
    stem = re.sub(r"^(instances_|_annotations\.coco)", "", path.stem.lower()).replace(".coco", "")
    return re.split(r"[_\-. ]", stem)[-1] if path.parent.name == "annotations" else stem


def split_of(path: Path) -> Optional[str]:
    """The split a COCO file's name gives (``instances_val2017.json``, ``train.coco.json``,
    ``custom_valid.json``), else None (also for COCO's captions and keypoints files)."""
    if path.stem.lower().startswith(_OTHER_TASKS):
        return None
    return SPLIT_NAMES.get(re.sub(r"\d+$", "", _split_word(path)))


def split_folders(ann: Path) -> List[Path]:
    """The images folders of a split's file ``DATASET/annotations/X_{split}.json`` in COCO's layouts, likeliest
    first: ``DATASET/train2017`` (its word, as named), ``images/train2017``, ``train``, ``train2017``, ``images``;
    none for a file elsewhere or of no split."""
    if ann.parent.name != "annotations" or split_of(ann) is None:
        return []
    root, word = ann.parent.parent, _split_word(ann)
    bare = re.sub(r"\d+$", "", word)
    return list(dict.fromkeys([root / word, root / "images" / word, root / bare, root / f"{bare}2017",
                               root / "images"]))


def coco_files(root: Path) -> List[Path]:
    """The COCO JSON files of the folder ``root`` and of its ``annotations/`` whose name is no split's
    (``instances_train.json`` and the like are a split dataset's, found by
    :func:`dfine.recipes.find_coco_splits`): each a file whose head holds an ``"images"`` list and
    ``"file_name"`` or ``"categories"``."""
    return [path for path in _jsons(root) if split_of(path) is None and looks_coco(path)]


def coco_file(src: Path) -> Optional[Path]:
    """The one COCO file of ``src`` (the file itself, or a folder's only :func:`coco_files` entry);
    ``None`` when there is none; ``DatasetError`` naming them when a folder holds several."""
    if src.is_file():
        return src if src.suffix.lower() == ".json" and looks_coco(src) else None
    found = coco_files(src)
    if len(found) > 1:
        raise DatasetError(f"{src} holds {len(found)} COCO files and no train/val split files "
                           f"({first_few([str(p.relative_to(src)) for p in found], 4)}): give the one to use in "
                           f"place of the folder, e.g. {found[0]}")
    return found[0] if found else None


def looks_coco(path: Path) -> bool:
    """Whether the head of the JSON file ``path`` holds an ``"images"`` list and ``"file_name"`` or ``"categories"``."""
    head = file_head(path, _HEAD)
    return bool(re.search(rb'"images"\s*:\s*\[', head)) and (b'"file_name"' in head or b'"categories"' in head)


def convert_coco(src: os.PathLike | str, out: Optional[os.PathLike | str] = None, *,
                 names: Optional[Sequence[str]] = None, val_fraction: float = 0.2, seed: int = 0,
                 images: Optional[Path] = None, what: str = "one COCO file for all images") -> Converted:
    """Split the single COCO file at ``src`` (the file, or a folder holding one, see :func:`coco_file`)
    into ``out/annotations/instances_{train,val}.json`` (default ``out``: the JSON's folder, or the
    dataset folder above ``annotations/``). ``names`` is refused: a COCO file names its classes.
    ``images``: its images folder when known (else looked for); ``what`` the file is, as the split's note
    says it."""
    images_dir = images
    src = Path(src).expanduser().resolve()
    if not src.exists():
        raise DatasetError(f"COCO dataset {src} not found")
    if names:
        raise DatasetError(f"--names is for a dataset that names no classes; the COCO file of {src} names its own "
                           f"in its categories")
    ann = coco_file(src)
    if ann is None and src.is_file():
        raise DatasetError(f"{src} is not a COCO detection file (a JSON with an images list naming each file_name, "
                           f"annotations and categories)")
    if ann is None:
        split_files = [p for p in _split_files(src) if looks_coco(p)]
        if split_files:  # COCO's own layout, annotations/instances_train2017.json (a walk: 'no COCO JSON file')
            shown = first_few([str(p.relative_to(src)) for p in split_files], 3)
            raise DatasetError(f"{src} holds COCO split files ({shown}), not one file for all images: dfine train "
                               f"--data {src} reads them as they are (a train split alone gets a val split of its "
                               f"images); or give one file to split: "
                               f"dfine data convert --from coco {split_files[0]}")
        raise DatasetError(f"no COCO JSON file in {src} or {src / 'annotations'}: give the folder of a COCO export "
                           f"(a JSON with images, annotations and categories) or the file")
    data = read_coco_json(ann)
    images = [im for im in data["images"] if isinstance(im, dict)]
    if not images:
        raise DatasetError(f"{ann}: its images list is empty; nothing to train on")
    check_prelabels_images(ann)  # its images gone: never the annotated copies beside it instead
    folder, renamed = (images_dir, {}) if images_dir is not None else _images_folder(ann, images)
    base = ann.parent.parent if ann.parent.name == "annotations" else ann.parent
    out_dir = Path(out).expanduser() if out is not None else base
    ann_dir = out_dir / "annotations"
    if ann.parent == ann_dir and ann.stem in ("instances_train", "instances_val"):  # never overwrite the source
        raise DatasetError(f"{ann} would be overwritten by its own split; give another -o")
    keys = {str(im.get("id")) for im in images}
    if len(keys) != len(images):
        raise DatasetError(f"{ann}: image ids repeat ({len(images) - len(keys)} duplicates); each image needs its own id")
    said: List[str] = []
    train_ids, val_ids = _split(images, keys, val_fraction, seed, _classes_of_images(data), said, folder)
    rel = ann.relative_to(src) if ann.is_relative_to(src) and ann != src else ann.name
    notes = [f"{what} ({rel}): {len(val_ids)} of {counted(len(images), 'image')} became val "
             f"{fraction_said(val_fraction, seed)}", *said]
    if renamed:  # Label Studio's upload paths (/data/upload/3/x.jpg, ..\\..\\media\\upload\\x.jpg)
        first = next(iter(renamed.items()))
        notes.append(f"{counted(len(renamed), 'file name')} of {ann.name} point where no image is, and an image of "
                     f"that name is in {folder}, so it is used (e.g. '{first[0]}' -> '{first[1]}')")
        images = [{**im, "file_name": renamed.get(str(im.get("file_name")), im.get("file_name"))} for im in images]
    anns = [a for a in data["annotations"] if isinstance(a, dict)]
    if anns and all(a.get("iscrowd", 0) for a in anns):  # a walk: 248 CVAT masks, trained on 0 boxes
        data["annotations"] = [{**a, "iscrowd": 0} if isinstance(a, dict) else a for a in data["annotations"]]
        notes.append(f"every one of the {counted(len(anns), 'annotation')} of {ann.name} is iscrowd=1 (CVAT exports "
                     f"mask shapes so), which training would ignore: each is used as a box (its bbox)")
    info = {**(data.get("info") if isinstance(data.get("info"), dict) else {}),
            **info_for(ann_dir, folder, "one COCO file", ann)}
    made = prelabels_maker(data)  # the file read above, not read again
    if made:  # a re-walk trained on them with -t the model that made them: 'AP 100%, deploy it instead'
        info["prelabels_of"] = made
        notes.append(f"{prelabels_note(ann.name, made)}: a model's AP on them measures how it agrees with that "
                     f"model, not how right it is; correct them first (CVAT, Label Studio, ...)")
    refuse_to_replace(ann_dir)  # before either split file is written
    others = {k: v for k, v in data.items() if k not in ("info", "images", "annotations")}
    written, counts = {}, {}
    for split, ids in (("train", train_ids), ("val", val_ids)):
        chosen = set(ids)
        split_images = [im for im in images if str(im.get("id")) in chosen]
        split_anns = [a for a in data["annotations"] if isinstance(a, dict) and str(a.get("image_id")) in chosen]
        with_boxes = {str(a.get("image_id")) for a in split_anns}
        counts[split] = SplitCounts(images=len(split_images), boxes=len(split_anns),
                                    background=sum(str(im.get("id")) not in with_boxes for im in split_images))
        written[split] = ann_dir / f"instances_{split}.json"
        write_json_atomic(written[split], {"info": info, **others,  # info first: refuse_to_replace reads the head
                                           "images": split_images, "annotations": split_anns})
    names_out = tuple(str(c.get("name")) for c in data["categories"] if isinstance(c, dict))
    return Converted(src, out_dir, folder, written, names_out, counts, notes)


def _split(images: Sequence[Dict[str, Any]], keys: set, fraction: float, seed: int, classes: Dict[str, set],
           said: List[str], folder: Path) -> Tuple[List[str], List[str]]:
    """:func:`split_by_fraction` of the image ids ``keys``; by file name when the files are Roboflow copies
    (``a_jpg.rf.HASH.jpg``), so that the copies of one photo go to one side (by id they were split apart,
    and val scored copies of training photos, a walk); images whose files in ``folder`` hold the same bytes
    likewise; the split of other sets unchanged."""
    names = {str(im.get("id")): str(im.get("file_name", "")) for im in images}
    files = {i: folder / n.replace("\\", "/").lstrip("/") for i, n in names.items() if n}
    if not has_roboflow_copies(names.values()) or len(set(names.values())) != len(names):
        return split_by_fraction(list(keys), fraction, seed, classes, said, files=files)
    ids = {n: i for i, n in names.items()}
    train, val = split_by_fraction(list(ids), fraction, seed, {n: classes.get(i, set()) for n, i in ids.items()}, said,
                                   files={names[i]: path for i, path in files.items()})
    return [ids[n] for n in train], [ids[n] for n in val]


def _classes_of_images(data: Dict[str, Any]) -> Dict[str, set]:
    """``{str(image id): the category names of its annotations}`` (an unnamed category as its id)."""
    named = {c.get("id"): str(c.get("name", c.get("id"))) for c in data.get("categories", []) if isinstance(c, dict)}
    classes: Dict[str, set] = {}
    for a in data.get("annotations", []):
        if isinstance(a, dict):
            classes.setdefault(str(a.get("image_id")), set()).add(named.get(a.get("category_id"),
                                                                            str(a.get("category_id"))))
    return classes


def _images_folder(ann: Path, images: List[Dict[str, Any]]) -> Tuple[Path, Dict[str, str]]:
    """:func:`find_images_folder`, else the folder holding images named as the file names' last parts,
    and the new name of each image whose file name points where no image is but whose last part
    names one there (Label Studio writes its own upload paths, ``/data/upload/3/x.jpg``):
    ``{old file_name: name}``; ``DatasetError`` naming where it looked when no folder holds any."""
    folder = find_images_folder(ann, images)
    names = [str(im.get("file_name", "")) for im in images if isinstance(im, dict)]
    last = {n: PureWindowsPath(n).name for n in names if n}  # the last part, / or \\ separated
    options = _image_folder_options(ann)
    if folder is None:
        held = {o: sum((o / name).is_file() for name in list(last.values())[:20]) for o in options}
        folder = max(options, key=lambda o: held[o])  # max keeps the earliest of equals
        if not held[folder]:
            sample = _sample_names(images)
            raise DatasetError(f"the images of {ann} are not found: none of its first "
                               f"{counted(len(sample), 'file name')} (e.g. {sample[0]}) is in "
                               f"{', '.join(str(o) for o in options)}; put the images folder beside the JSON (images/)")
    renamed = {old: new for old, new in last.items()
               if not (folder / old.replace("\\", "/").lstrip("/")).is_file() and (folder / new).is_file()}
    return folder, renamed


def find_images_folder(ann: Path, images: Sequence[Any]) -> Optional[Path]:
    """The folder the ``file_name``\\ s of ``images`` (the entries of the COCO file ``ann``) are relative to:
    of beside the JSON, ``images/`` beside it, the folder above and its ``images/`` (``annotations/x.json``
    + ``images/``), the first that holds most of the first 20 images; ``None`` when none holds any
    (the JSON's folder when the file names none)."""
    sample = _sample_names(images)
    options = _image_folder_options(ann)
    if not sample:
        return ann.parent
    held = {o: sum((o / s).is_file() for s in sample) for o in options}
    best = max(options, key=lambda o: held[o])  # max keeps the earliest of equals
    return best if held[best] else None


def _sample_names(images: Sequence[Any]) -> List[str]:
    names = [str(im.get("file_name", "")).replace("\\", "/").lstrip("/") for im in images[:20] if isinstance(im, dict)]
    return [n for n in names if n]


def _image_folder_options(ann: Path) -> List[Path]:
    """Where the images of ``ann`` may be, the folder its ``info`` names first (``dfine predict
    --save-dataset`` writes the annotated copies of the images beside its file, under their names)."""
    named = images_folder_of_file(ann)
    split = split_folders(ann)  # COCO's own annotations/instances_train2017.json beside train2017/ (a walk)
    return list(dict.fromkeys([*([named] if named is not None else []), ann.parent, ann.parent / "images",
                               ann.parent.parent, ann.parent.parent / "images", *split]))
