"""One command from a dataset folder to a trained model: ``dfine train --data DIR --model dfine_s``.

:func:`data_run` looks at ``DIR`` (COCO, YOLO, VOC or a CVAT export, detected by :func:`detect_format`),
converts YOLO / VOC / CVAT into ``OUTPUT_DIR/data/annotations`` (the source is never written), and
returns the custom recipe of the model's size with the overrides that point it at the data
(``num_classes`` and the class names come from the annotations). :func:`train` is the same
from Python and returns the output folder and the final metrics.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from dfine.errors import DfineError, keyword_hints
from dfine.text import counted, first_few, first_process, one_line_warnings

__all__ = ["DataRun", "TrainResult", "ShortRunWarmup", "as_is", "detect_format", "find_coco_splits", "data_run", "train",
           "missing_split", "short_run_warmup", "recipe_path", "RECIPES_DIR", "WARMUP_SHARE"]

Format = Literal["coco", "yolo", "voc", "cvat", "labelme", "csv", "createml"]
SIZES = "nslmx"


def _recipes_dir() -> Path:
    """The published recipes: ``dfine/configs`` in an installed wheel (``setup.py`` copies them
    there), else a checkout's ``configs`` folder beside the package (editable installs)."""
    here = Path(__file__).resolve().parent
    packaged = here / "configs"
    return packaged if packaged.is_dir() else here.parent / "configs"


#: The published recipes (``configs/`` of a checkout, ``dfine/configs`` of a wheel).
RECIPES_DIR = _recipes_dir()
#: The largest share of a ``--data`` run's steps spent warming the lr up.
WARMUP_SHARE = 0.1


@dataclass(frozen=True)
class DataRun:
    """What ``dfine train --data`` trains: the recipe file and the overrides that point it at the data."""

    recipe: Path
    overrides: Tuple[str, ...]
    output_dir: Path
    fmt: Format
    notes: Tuple[str, ...] = ()
    #: the trainer shortens a recipe lr warmup longer than this share of the run's steps
    warmup_share: float = WARMUP_SHARE


@dataclass(frozen=True, repr=False)
class TrainResult:
    """What :func:`train` returns: ``output_dir``, the run's folder (``best_stg*.pth``, ``last.pth``, logs,
    pictures); ``metrics``, the last epoch's evaluation (``best_AP`` and ``test_*`` as fractions 0..1,
    ``best_epoch`` and ``epoch`` counted from 0 as in ``log.jsonl``; printed AP is in percent and epochs
    from 1); ``best``, the weights the run chose; ``conf``, the score threshold with the best F1 on val
    (None when none was measured)."""

    output_dir: Path
    metrics: Dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Optional[Path]:
        """The weights the run chose (``best_stg2.pth`` over ``best_stg1.pth``; ``last.pth`` when
        no evaluation scored above AP 0), if any."""
        if self.metrics.get("best_weights") is not None:
            return Path(self.metrics["best_weights"])
        for name in ("best_stg2.pth", "best_stg1.pth", "last.pth"):
            if (self.output_dir / name).is_file():
                return self.output_dir / name
        return None

    def __repr__(self) -> str:
        """One line, as the run's last lines say it (the metrics dict holds every loss of every
        step: pages of numbers where a notebook shows the result):
        ``TrainResult(output/fruit_dfine_n, best AP 6.1% at epoch 2: best_stg2.pth, conf 0.35)``."""
        from dfine.text import ap_text

        parts = [str(self.output_dir)]
        if self.metrics.get("best_epoch", -1) >= 0 and not self.metrics.get("best_AP", 0) > 0:
            # "best AP 0.0 at epoch 1: last.pth" beside a log saying last.pth is the most trained (a walk)
            parts.append("no evaluation above AP 0" + (f": weights {self.best.name}" if self.best is not None else ""))
        elif self.metrics.get("best_epoch", -1) >= 0:
            parts.append(f"best AP {ap_text(self.metrics['best_AP'])} at epoch {self.metrics['best_epoch'] + 1}"
                         + (f": {self.best.name}" if self.best is not None else ""))
        elif self.best is not None:
            parts.append(f"weights {self.best.name}")
        if self.conf is not None:
            parts.append(f"conf {self.conf:.2f}")
        if self.metrics.get("stopped"):
            parts.append(f"stopped by {self.metrics['stopped']}")
        tuning = self.metrics.get("tuning_AP")
        if tuning is not None and tuning > self.metrics.get("best_AP", 0):  # result.best was deployed (a walk)
            parts.append(f"not beating the tuning= weights' AP {ap_text(tuning)} (the run's last lines say why)")
        return f"TrainResult({', '.join(parts)})"

    @property
    def conf(self) -> Optional[float]:
        """The score threshold with the best F1 on the val set of the weights in :attr:`best`
        (what the printed ``dfine predict`` command uses): ``dfine.Detector(result.best,
        conf=result.conf)``; None when the run did not measure one (no evaluation scored above AP 0)."""
        pick = self.metrics.get("best_conf")
        return float(pick["conf"]) if pick else None


# the batch of a --data run on a CPU without --batch, and the loader workers the custom recipes ask for
CPU_BATCH = 8
RECIPE_WORKERS = 4


def recipe_path(config: Union[str, os.PathLike]) -> Path:
    """``-c CONFIG`` as given when it exists, else a published name (``configs/dfine/...yml`` or
    ``dfine/...yml``) found in :data:`RECIPES_DIR`, so the published commands work from any
    folder and from a wheel; else as given (loading it then says it is missing)."""
    given = Path(config).expanduser()
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
    packaged = RECIPES_DIR.joinpath(*parts) if parts else RECIPES_DIR
    return packaged if packaged.is_file() else given


def model_size(model: str) -> str:
    """``dfine_s``, ``dfine-s``, ``D-FINE-S``, ``s`` -> ``s``; ``DfineError`` for anything else."""
    found = re.fullmatch(r"(?:d-?fine[-_ ]?)?(?:hgnetv2[-_])?([nslmx])", model.strip().lower())
    if not found:
        weights = Path(model).suffix.lower() in (".pth", ".pt", ".ckpt", ".onnx", ".xml", ".engine")
        hint = ("; a model file goes with -t (fine-tune from it), -r (resume or evaluate it) or, in dfine eval, -m"
                if weights else "")
        raise DfineError(f"--model {model!r}: give one of dfine_n, dfine_s, dfine_m, dfine_l, dfine_x{hint}")
    return found.group(1)


# ------------------------------------------------------------------------------------ detection


def find_coco_splits(root: Path) -> Dict[str, Tuple[Path, Path]]:
    """COCO files under ``root`` by split: ``{split: (ann_file, images_folder)}``. Knows
    ``annotations/instances_{split}*.json``, else a COCO file ``annotations/NAME_{split}*.json`` (images
    from the file's ``info.images_folder`` as :mod:`dfine.data.convert` writes it, else
    :func:`dfine.data.convert.coco.split_folders`), Roboflow's ``{split}/_annotations.coco.json``,
    ``{split}.json`` beside a ``{split}/`` folder of images (``dfine demo``'s ``data/``), and ``{split}.json``
    (or ``annotations/{split}.json``) beside one ``images/`` folder."""
    from dfine.data.convert import SPLIT_NAMES, images_folder_of_file, roboflow_images
    from dfine.data.convert.coco import looks_coco, split_folders, split_of

    found: Dict[str, Tuple[Path, Path]] = {}
    annotations = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    # instances_{split}*.json first; then another name ending in its split (custom_train.json: DETR tutorials)
    for ann in sorted(annotations, key=lambda a: not a.name.startswith("instances_")):
        split = split_of(ann)
        if split is None or split in found or not (ann.name.startswith("instances_") or looks_coco(ann)):
            continue
        options = split_folders(ann)
        folder = images_folder_of_file(ann) or next((o for o in options if o.is_dir()), options[0])
        found[split] = (ann, folder)
    for name, split in SPLIT_NAMES.items():
        ann = root / name / "_annotations.coco.json"
        if ann.is_file() and split not in found:
            found[split] = (ann, roboflow_images(ann.parent))
    for name, split in SPLIT_NAMES.items():  # {split}.json beside its {split}/ folder of images (dfine demo's data)
        ann = root / f"{name}.json"
        if ann.is_file() and (root / name).is_dir() and split not in found:
            found[split] = (ann, root / name)
    for name, split in SPLIT_NAMES.items():  # train.json + val.json (here or in annotations/) and one images/
        ann = next((a for a in (root / f"{name}.json", root / "annotations" / f"{name}.json") if a.is_file()), None)
        if ann is not None and split not in found and (root / "images").is_dir():
            found[split] = (ann, images_folder_of_file(ann) or root / "images")
    # train, val, test (the files' sorted names put test first: a walk's check listed test, train, val)
    return {s: found[s] for s in sorted(found, key=lambda s: ("train", "val", "test").index(s))}


def detect_format(root: Path, option: str = "--data") -> Format:
    """Which kind of dataset ``root`` is; ``DfineError`` saying what was looked for when none:
    naming the dataset folders inside it when it holds some (a download with several sets), else
    the folder above it when that is a dataset (``--data`` given a split folder, an annotation
    file or an images folder). ``option``: how the user gave ``root``, as the error names it."""
    from dfine.data.convert import SPLIT_NAMES

    found = _format_of(root)
    part = _split_of_a_dataset(root) if found is not None else None
    if part is not None:  # a walk's eval of chess/test scored a seeded fifth of it, as if it were a whole dataset
        split, dataset, others = part
        said = {"val": " (dfine eval scores its val split)", "test": " --split test (to evaluate this split)"
                } if option == "--data" else {}
        raise DfineError(f"{option} {root}: the {split} split of the dataset {dataset}, whose {' and '.join(others)} "
                         f"split{'s go' if len(others) > 1 else ' goes'} with it; give the dataset folder: {option} "
                         f"{shlex.quote(str(dataset))}{said.get(split, '')}")
    if found is not None:
        return found
    inside = sorted(c for c in root.iterdir() if c.is_dir() and _format_of(c, nested=False)) if root.is_dir() else []
    datasets_above = [p for p in list(root.parents)[:3] if _format_of(p, nested=False) is not None]
    # DATASET/train/images (or DATASET/dataset/train/images) of a YOLO set: train/ (images/ + labels/) is a set
    # too, but DATASET's data.yaml has the classes and the other splits
    above = next((p for p in datasets_above if _has_yaml(p)),
                 next((p for p in datasets_above if p in list(root.parents)[:2]
                       or p / "ImageSets" in root.parents), None))  # a VOC split list: VOC/ImageSets/Main/train.txt
    while (above is not None and above.name.lower() in SPLIT_NAMES and above.parent in datasets_above
           and any(d.is_dir() and d != above and d.name.lower() in SPLIT_NAMES for d in above.parent.iterdir())):
        above = above.parent  # DATASET/train/images of a set whose splits are folders: DATASET, not its train/
    photos = _unlabelled_images(root) if not inside and above is None else 0
    from dfine.data.convert.csv import incomplete_table
    partial = incomplete_table(root) if not inside and above is None else None
    if partial:  # a table lacking a column: said, not the list of every format (a walk)
        hint = f": {partial}"
    elif inside:
        hint = (f"; it holds {counted(len(inside), 'dataset folder')} "
                f"({', '.join(c.name for c in inside[:5])}): give one, e.g. {option} {shlex.quote(str(inside[0]))}")
    elif above is not None:
        hint = f"; give the dataset folder: {option} {shlex.quote(str(above))}"
    elif photos:  # a folder of photos: what to do, not the list of every format (a walk)
        hint = (f": it holds {counted(photos, 'image')} and no labels; label them first (a "
                f"model's detections as pre-labels to correct: dfine predict {shlex.quote(str(root))} -m MODEL "
                f"--save-dataset)")
    else:
        hint = (" (annotations/instances_*.json, {split}/_annotations.coco.json, {split}.json + {split}/ or one JSON for "
                "all images for COCO, "
                "data.yaml or images/ + "
                "labels/ for YOLO, Annotations/ + JPEGImages/ (or another folder of XMLs + of images) or XMLs beside the images for VOC, annotations.xml of "
                "a 'CVAT for images 1.1' export, a JSON per image for LabelMe, a CSV of "
                "filename,class,xmin,ymin,xmax,ymax, _annotations.createml.json)")
    raise DfineError(f"{option} {root}: not a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder{hint}")


def _split_of_a_dataset(root: Path) -> Optional[Tuple[str, Path, List[str]]]:
    """``(split, dataset folder, its other splits)`` when ``root`` (a folder, or a file in one) is one split
    folder of a dataset whose other splits are folders beside it (Roboflow's ``train/``, ``valid/``,
    ``test/``): given alone it would be read as a whole dataset, its val a seeded share of it."""
    from dfine.data.convert import SPLIT_NAMES
    if root.is_file() and root.parent.name == "annotations":  # annotations/instances_val2017.json (a walk trained
        from dfine.data.convert.coco import split_of  # on the val file alone, its run named annotations_dfine_n)
        named, dataset = split_of(root), root.parent.parent
        found = find_coco_splits(dataset) if named else {}
        if named in found and found[named][0].resolve() == root.resolve() and len(found) > 1:
            return named, dataset, [s for s in found if s != named]
        return None
    folder = root.parent if root.is_file() else root
    split = SPLIT_NAMES.get(folder.name.lower())
    if split is None or _format_of(folder.parent, nested=False) is None:
        return None
    others = sorted({SPLIT_NAMES[d.name.lower()] for d in folder.parent.iterdir()
                     if d.is_dir() and d != folder and d.name.lower() in SPLIT_NAMES} - {split},
                    key=["train", "val", "test"].index)
    dataset = folder.parent if str(folder.parent) not in ("", ".") else folder.resolve().parent  # not "dataset ."
    if not _has_yaml(dataset) and _has_yaml(dataset.parent):
        dataset = dataset.parent  # ROAD/data.yaml naming ROAD/dataset/{train,valid}: the folder of the data.yaml
    return (split, dataset, others) if others else None


def _has_yaml(folder: Path) -> bool:
    """Whether ``folder`` holds a YOLO dataset YAML (``data.yaml``, ``dataset.yml``, ...)."""
    return any((folder / n).is_file() for n in ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml"))


def _unlabelled_images(root: Path) -> int:
    """The images directly in the folder ``root`` (0 when it is not a folder)."""
    from dfine.data.convert import IMAGE_SUFFIXES
    if not root.is_dir():
        return 0
    return sum(1 for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _format_of(root: Path, nested: bool = True) -> Optional[Format]:
    """The format of the dataset at ``root``; ``nested``: also a VOC set one or two folders down
    (``VOCdevkit/VOC2007``)."""
    from dfine.data.convert import SPLIT_NAMES
    from dfine.data.convert.coco import coco_file
    from dfine.data.convert.cvat import cvat_xml
    from dfine.data.convert.yolo import beside_images, find_darknet_data

    if root.is_file():
        if root.suffix.lower() == ".csv":
            from dfine.data.convert.csv import csv_files
            return "csv" if root in csv_files(root.parent) else None
        if root.suffix.lower() == ".json":
            from dfine.data.convert.createml import createml_files
            return "coco" if coco_file(root) else "createml" if root in createml_files(root.parent) else None
        if root.suffix.lower() == ".data":  # darknet's obj.data
            return "yolo" if find_darknet_data(root) else None
        return "yolo" if root.suffix.lower() in (".yaml", ".yml") else "cvat" if cvat_xml(root) else None
    if find_coco_splits(root) or coco_file(root):  # split files, or one file for all images (split on use)
        return "coco"
    if cvat_xml(root) is not None:  # annotations.xml (+ images/): CVAT's "CVAT for images 1.1" export
        return "cvat"
    from dfine.data.convert.voc import side_by_side, voc_roots

    if voc_roots(root, nested):  # Annotations/ + JPEGImages/ (or annotations/ + images/), here or a level or two down
        return "voc"

    if side_by_side(root) is not None:  # LabelImg's folder, Roboflow's VOC export: each XML beside its image
        return "voc"
    from dfine.data.convert.labelme import is_labelme

    if is_labelme(root, nested):  # LabelMe's JSON per image (beside it, or in a folder of their own)
        return "labelme"
    from dfine.data.convert.csv import csv_files

    if csv_files(root):  # filename,class,xmin,... tables (TF Object Detection; Roboflow's {split}/_annotations.csv)
        return "csv"
    from dfine.data.convert.createml import createml_files

    if createml_files(root):  # Roboflow's {split}/_annotations.createml.json
        return "createml"
    yolo_signs = [root / "data.yaml", root / "data.yml", root / "dataset.yaml", root / "labels", root / "train" / "labels"]
    if (any(p.exists() for p in yolo_signs) or any(root.glob("*.yaml")) or beside_images(root)
            or find_darknet_data(root) or any(beside_images(root / n) for n in SPLIT_NAMES)):
        return "yolo"
    return None


# ------------------------------------------------------------------------------------ the run


def as_is(root: Path, fmt: Format) -> bool:
    """Whether the dataset at ``root`` is read where it is (COCO split files) rather than converted
    into a folder of ours (another format, or one COCO file for all images, split in two)."""
    return fmt == "coco" and _read_as_is(find_coco_splits(root))


def _read_as_is(found: Dict[str, Tuple[Path, Path]]) -> bool:
    """Whether COCO split files ``found`` are read where they are: any but a train split alone, which gets
    a seeded val split of its images (COCO's own ``annotations/instances_train2017.json`` + ``train2017/``:
    a walk was told to add a val file, and ``dfine data convert`` could not read the folder)."""
    return bool(found) and ("val" in found or "train" not in found)


def dataset_splits(root: Path, fmt: Format, folder: Path, names: Optional[Sequence[str]] = None,
                   temporary: Optional[str] = None, split: Optional[str] = None, val_given: bool = False
                   ) -> Tuple[Dict[str, Tuple[Path, Path]], List[str]]:
    """The splits of the dataset at ``root`` in format ``fmt`` (``{split: (annotation file, images
    folder)}``) and notes to print: a COCO folder's split files where they are; another format's
    folder, or one COCO file for all images, converted into ``folder`` (the same split every time; ``temporary``: what ``folder`` is removed
    after, ``"evaluation"`` or ``"check"``, which the note says instead of its path); ``split``: the one split
    an evaluation reads, whose notes alone are kept of those naming a split (``train: 1 box ...``); ``val_given``:
    the user's overrides name a val set, so a COCO train split alone is not split for one."""
    if fmt == "coco" and names:  # a walk's --names a,b on a set of 3 named classes was dropped without a word
        raise DfineError(f"--names is for a dataset folder that names no classes; the COCO files of {root} name "
                         f"theirs in their categories: leave --names out")
    from dfine.data.convert.coco import split_of
    named = split_of(root) if fmt == "coco" and root.is_file() else None
    if split is not None and named in ("val", "test"):  # the evaluation of a val or test split's own file
        from dfine.data.check import default_images  # custom_val.json: all of it, not a seeded fifth (a walk)
        return {split: (root, default_images(root))}, [f"{root.name} is named as a {named} split: all of it is "
                                                       f"evaluated, as it is"]
    found = find_coco_splits(root) if fmt == "coco" else {}
    if _read_as_is(found) or (found and (val_given or split == "test")):  # no val split made where none is used
        from dfine.data.convert import stale_conversion_note
        stale = stale_conversion_note(next(iter(found.values()))[0])  # a file dfine data convert wrote, since edited
        yolo = _yolo_labels_in(root)  # a walk's Roboflow set held a YOLO copy of its labels too, read unsaid
        notes = [n for n in (stale, yolo and _other_format_note(root, "yolo", yolo, "coco"), _cvat_note(root, fmt))
                 if n] + _more_formats_notes(root, fmt)
        return found, notes + _copies_note(found, split, temporary)
    from dfine.data.convert import converter

    if found:  # a train split alone: split into train and val as one COCO file is, its test split kept as it is
        from dfine.data.convert.coco import convert_coco
        converted = convert_coco(found["train"][0], folder, names=names, images=found["train"][1],
                                 what="no val split file, so its train file")
        converted.ann_files.update({s: f for s, (f, _) in found.items() if s == "test"})
        folders = {s: converted.images_folder for s in converted.ann_files}
        folders.update({s: images for s, (_, images) in found.items() if s == "test"})
    else:
        converted = converter(fmt)(root, folder, names=names)
        folders = {s: converted.images_folder for s in converted.ann_files}
    where = (f"into a temporary folder for this {temporary} (removed after it)" if temporary
             else f"-> {folder / 'annotations'}")
    others = tuple(f"{s}: " for s in ("train", "val", "test") if split is not None and s != split)
    # an evaluation of the test split said the train and val splits' boxes left out (a walk)
    notes = [f"converted {format_words(fmt)} {root} {where}", *(n for n in converted.notes if not n.startswith(others))]
    from dfine.data.convert.yolo import beside_images

    also = beside_images(root) if fmt == "voc" else None
    if also:  # LabelImg saves both: say which labels were read, and how to read the others
        notes.append(_other_format_note(root, "yolo", f"YOLO labels ({also})", fmt))
    from dfine.data.convert.csv import csv_files
    tables = csv_files(root) if fmt != "csv" and root.is_dir() else []
    if tables:  # raccoon_dataset: VOC XMLs and the CSV tables of its train/test split
        shown = ", ".join(str(t.relative_to(root)) for t in tables[:3])
        notes.append(_other_format_note(root, "csv", f"CSV tables of boxes ({shown})", fmt))
    notes += [n for n in (_cvat_note(root, fmt), _sibling_sets_note(root, fmt)) if n] + _more_formats_notes(root, fmt)
    splits = {s: (f, folders[s]) for s, f in converted.ann_files.items()}
    return splits, notes + _copies_note(splits, split, temporary)


def _copies_note(splits: Mapping[str, Tuple[Path, Path]], split: Optional[str], temporary: Optional[str]) -> List[str]:
    """The line naming photos of one split that another holds too (:func:`dfine.data.check.copies_across`): of
    the ``split`` an evaluation scores, of val for a training, of every split for a check (a walk's test split
    held 9 train and val photos, its AP said without a word)."""
    from dfine.data.check import copies_across
    line = copies_across(splits, only=split or (None if temporary == "check" else "val"))
    return [line] if line else []


def _few_images(ann_file: Path) -> Optional[int]:
    """How many images the COCO file ``ann_file`` lists, read only when it is small (under 1 MB: a set of a
    few images; a large file holds more than a CPU batch anyway); None otherwise or when unreadable."""
    import json
    try:
        if ann_file.stat().st_size > 1 << 20:
            return None
        images = json.loads(ann_file.read_text(encoding="utf-8")).get("images")
    except (OSError, ValueError, AttributeError):
        return None
    return len(images) if isinstance(images, list) else None


def _yolo_labels_in(root: Path) -> Optional[str]:
    """``"YOLO labels (train/labels, ...)"`` when the folders ``labels/`` or ``{split}/labels/`` of ``root``
    hold ``.txt`` files, else None."""
    from dfine.data.convert import SPLIT_NAMES
    held = [p for p in (root / "labels", *(root / n / "labels" for n in SPLIT_NAMES))
            if p.is_dir() and next(p.rglob("*.txt"), None) is not None]
    return f"YOLO labels ({', '.join(str(p.relative_to(root)) for p in held)})" if held else None


def _cvat_note(root: Path, fmt: str) -> Optional[str]:
    """:func:`_other_format_note` for a folder read as ``fmt`` that holds a CVAT export's ``annotations.xml``
    too (a walk's street set: its COCO file of 2 classes was read, the XML's 5 unsaid); None otherwise."""
    from dfine.data.convert.cvat import cvat_xml
    xml = cvat_xml(root) if fmt != "cvat" and root.is_dir() else None
    return _other_format_note(root, "cvat", f"a CVAT export ({xml.name})", fmt) if xml is not None else None


def format_words(fmt: str) -> str:
    """The name of the dataset format ``fmt`` in a sentence: ``LabelMe``, ``CreateML``, else upper case (``VOC``)."""
    return {"labelme": "LabelMe", "createml": "CreateML"}.get(fmt, fmt.upper())


def _sibling_sets_note(root: Path, fmt: str) -> Optional[str]:
    """The note for a folder read as ``fmt`` from one of its subfolders (a VOC or LabelMe set found a level
    down) while other subfolders hold datasets too: which are there, which one is read and how to read
    another (LabelMe's examples hold the JSONs and their VOC and COCO conversions side by side: a walk
    was not told of the others). None otherwise."""
    if fmt not in ("voc", "labelme") or not root.is_dir() or _format_of(root, nested=False) is not None:
        return None
    sets = [(c, f) for c in sorted(root.iterdir()) if c.is_dir() for f in (_format_of(c, nested=False),) if f]
    other = next((c for c, f in sets if f != fmt), None)
    if other is None:
        return None
    held = ", ".join(f"{c.name} ({format_words(f)})" for c, f in sets)
    read = "" if fmt == "voc" else f"; the {format_words(fmt)} one is read"  # the VOC conversion names its folder
    return (f"{root} holds {counted(len(sets), 'dataset folder')}: {held}{read}. To read another, give it: "
            f"--data {shlex.quote(str(other))}")


def _more_formats_notes(root: Path, fmt: str) -> List[str]:
    """:func:`_other_format_note` for a folder read as ``fmt`` that also holds a CreateML export's JSONs or VOC XMLs
    beside its images (a walk's folder held Roboflow's COCO, CreateML and VOC files of each split, and the COCO
    ones were read without a word of the others)."""
    from dfine.data.convert.createml import createml_files
    from dfine.data.convert.voc import side_by_side, voc_roots
    if not root.is_dir():
        return []
    notes = []
    tables = createml_files(root) if fmt != "createml" else []
    if tables:
        shown = ", ".join(str(t.relative_to(root)) for t in tables[:3])
        notes.append(_other_format_note(root, "createml", f"CreateML files ({shown})", fmt))
    if fmt != "voc" and (voc_roots(root, False) or side_by_side(root)):
        notes.append(_other_format_note(root, "voc", "VOC XMLs", fmt))
    return notes


def _other_format_note(root: Path, other: str, what: str, used: str) -> str:
    """The note for a dataset folder that holds annotations of a second format besides the ``used`` one."""
    out = shlex.quote(f"{root.name}_{other}")
    return (f"{root} also holds {what}; the {format_words(used)} files are used. For the others: dfine data convert "
            f"--from {other} {shlex.quote(str(root))} -o {out}, then --data {out}")


def data_run(data: Union[str, os.PathLike], model: str = "dfine_s", *, epochs: Optional[int] = None,
             batch: Optional[int] = None, output_dir: Optional[Union[str, os.PathLike]] = None,
             names: Optional[Sequence[str]] = None, device: Optional[str] = None,
             given: Sequence[str] = (), scratch: Optional[Path] = None,
             run_folder: Literal["as is", "new", "latest"] = "as is", split: str = "val",
             tuning: Optional[Union[str, os.PathLike]] = None,
             resume: Optional[Union[str, os.PathLike]] = None,
             imgsz: Optional[Tuple[int, int]] = None) -> DataRun:
    """The recipe and overrides that train ``model`` on the dataset at ``data`` (converted into
    ``output_dir/data`` unless COCO split files; ``scratch``: into that temporary folder of an
    evaluation instead, which the caller removes); ``given``: the user's own ``key=value`` overrides (a
    split they point the loader at may be missing from the folder). ``epochs``: the run's length, the strong augmentations
    stopping for its last ~9% as in the published 220/200 custom recipe. On a CPU (``device``, or
    no CUDA) without ``batch`` the batch is :data:`CPU_BATCH` instead of the recipe's GPU-sized one,
    and no more loader workers than cores; both are said in ``notes``. Without ``output_dir``, ``run_folder``
    picks among the default ``output/NAME_dfine_SIZE`` and its numbered ``_2``, ``_3``, ...: ``"new"``
    for a new run (the first free of them: an earlier run's weights are never overwritten, said in
    a note), ``"latest"`` for ``--auto-resume`` (the last that holds a run), ``"as is"`` the first.
    ``split``: the split an evaluation (``scratch``) runs on, as the val loader's (``val`` or ``test``);
    an evaluation needs only that split. A training fine-tuning Objects365 weights (``tuning``, or a run
    continued from ``resume`` or by ``--auto-resume`` that did) is built from the published obj2custom
    recipe (:func:`custom_recipe`). A training at ``imgsz`` (height, width) too small for the published 300
    queries gets as many as its encoder tokens allow (:func:`fitting_queries`)."""
    from dfine.data.archive import dataset_folder, require_path
    root = require_path(data)
    size = model_size(model)
    root = dataset_folder(root)  # a downloaded .zip: unpacked beside it
    recipe = custom_recipe(size)
    if not recipe.is_file():
        raise DfineError(f"recipe {recipe} not found: dfine train --data needs the configs folder of a dfine checkout")
    fmt = detect_format(root)
    if given:  # a misspelt -u key or value said before the dataset is converted into a new run folder (a walk)
        from dfine.config import load_config
        load_config(recipe, list(given))
    # absolute paths: the printed eval / export / predict commands work from any folder
    from dfine.data.convert import SPLIT_NAMES
    named = root.resolve().parent if root.is_file() else root.resolve()  # a file: its folder's
    # a split folder given alone (a LabelMe set's test/): the dataset's name, not 'test_dfine_n' for every such set
    # and a folder of a generic name (stop_sign/data, a walk's 'data_dfine_n'): the folder above's
    generic = named.name.lower() in (*SPLIT_NAMES, "data", "annotations")
    name = named.parent.name if generic and named.parent.name else named.name
    weights = resume if resume is not None else tuning
    if output_dir is None and scratch is not None and weights is not None and not Path(weights).is_file():
        # a zoo model's evaluation (dfine eval -r dfine_n_coco --data DIR) in a folder of its own, not in the
        # folder of the dataset's own training run (a walk's eval.json there described the zoo model)
        out = _absolute(Path("output") / f"{name}_{Path(str(weights)).name}")
    else:
        out = _absolute(Path(output_dir) if output_dir is not None else Path("output") / f"{name}_dfine_{size}")
    if scratch is None and (out.resolve() == named or named in out.resolve().parents):
        # a walk's -o DATASET/annotations, and a walk's `cd DATASET; dfine train --data .` (./output inside it):
        # checkpoints and pictures among the dataset's own files
        given = f"-o {output_dir}" if output_dir is not None else f"the default output folder {out}"
        hint = "" if output_dir is not None else f" (-o {shlex.quote(str(named.parent / out.name))}, say)"
        raise DfineError(f"{given} is inside the dataset folder {named}: the run's files (and pictures, which a later "
                         f"--data would take for images of the dataset) would mix with it; choose a folder outside "
                         f"it{hint}")
    taken = None
    passed_over = None  # the latest run of this folder name, trained on another dataset: not continued
    if output_dir is None and scratch is None and run_folder != "as is":
        from dfine.engine.lock import earlier_run_files, numbered_folder, training_now
        taken, out = out, numbered_folder(out, latest=run_folder == "latest") or out
        if run_folder == "latest" and (out / "last.pth").is_file():
            from dfine.checkpoint import run_data
            recorded, asked = run_data(out), Path(data).expanduser().resolve()  # asked: as the run records it
            if recorded is not None and Path(recorded).resolve() != asked:
                passed_over = f"--auto-resume: {out} holds a run of {recorded}, not of {asked}"
                run_folder, out = "new", numbered_folder(taken) or taken
    # a training run: none may be training into out (its data/ is written next); under torchrun the first
    # process only, which takes the lock: another, still converting when that one trains, would see it taken
    if scratch is None:  # a file where the run folder goes: said before the conversion writes into it (a walk)
        from dfine.outputs import refuse_file_in_path
        refuse_file_in_path(out)
    if scratch is None and first_process():
        from dfine.engine.lock import check_unlocked
        check_unlocked(out)
    from dfine.data.convert import keep_split, split_members
    earlier = split_members(out / "data")  # the split a run in out trained with (an evaluation: its weights' run)
    converted = scratch or out / "data"
    # a split the user's own overrides (``given``: -u key=value) point at need not be in the folder
    keys = {o.split("=", 1)[0].strip() for o in given}
    pointed = {s for s in ("train", "val")
               if {f"{s}_dataloader.dataset.ann_file", f"{s}_dataloader.dataset.img_folder"} <= keys}
    splits, notes = dataset_splits(root, fmt, converted, names=names,
                                  temporary="evaluation" if scratch is not None else None,
                                  split=split if scratch is not None else None, val_given="val" in pointed)
    if earlier is not None and {"train", "val"} <= set(splits) and splits["val"][0].parent == converted / "annotations":
        moved = keep_split({s: splits[s][0] for s in ("train", "val")}, earlier)
        if moved:
            why = (f"today's would put {counted(moved, 'image')} on the other side (this dfine keeps rare classes on "
                   f"both sides of a seeded split)")
            notes.append(f"evaluated on the val split the run in {out} trained with; {why}" if scratch is not None
                         else f"kept the train/val split this run folder was trained with; {why}: -o NEW_FOLDER "
                              f"trains on today's")
    if split != "val":
        if scratch is None:
            raise DfineError(f"--split {split} is for an evaluation (dfine eval); training uses the val split")
        if split not in splits:
            raise DfineError(missing_split(root, split, splits, fmt))
        splits = {"val": splits[split]}
    for need in (("val",) if scratch is not None else ("train", "val")):
        if need not in splits and need not in pointed:
            raise DfineError(missing_split(root, need, splits, fmt, evaluation=scratch is not None))
    overrides = []
    for split in (s for s in ("train", "val") if s in splits):
        ann, folder = map(_absolute, splits[split])
        overrides += [f"{split}_dataloader.dataset.ann_file={_yaml(ann)}",
                      f"{split}_dataloader.dataset.img_folder={_yaml(folder)}"]
    overrides += ["num_classes=null", f"output_dir={_yaml(out)}"]
    if taken is not None and out != taken and run_folder == "latest" and (out / "last.pth").is_file():
        # a walk's --auto-resume loop switched to a -t experiment's folder after it, without a word
        notes.insert(0, f"--auto-resume continues the latest run of this dataset and model, in {out}; "
                        f"{_earlier_runs(taken, out)}")
    if passed_over is not None:
        notes.insert(0, f"{passed_over}; this run starts in {out}")
    elif taken is not None and out != taken and run_folder == "new":
        running = training_now(taken)  # 'an earlier run' read wrong of one still training (a walk)
        files = ", ".join(earlier_run_files(taken)) or "no checkpoint"
        what = f"a run still training ({running}; so far " if running else "an earlier run ("
        notes.insert(0, f"{taken} holds {what}{files}), kept: this run trains "
                     f"into {out} (-o DIR to choose the folder){_stopped_note(taken)}")
    if scratch is None and run_folder == "latest" and resume is None and (out / "last.pth").is_file():
        resume = out / "last.pth"  # --auto-resume continues it
    stage2 = (20, 220)  # the published custom recipe's last epochs without the strong augmentations, of all
    if scratch is None and objects365_tuning(tuning, resume) and custom_recipe(size, objects365=True).is_file():
        from dfine.config import load_config
        recipe = custom_recipe(size, objects365=True)
        published = load_config(recipe)
        stage2 = (published.epochs - published.stop_epoch, published.epochs)  # 8 of 64
        if resume is None:
            notes.append(f"{tuning} is an Objects365 detector: fine-tuned with the published recipe for that, "
                         f"{recipe.name} ({published.epochs} epochs unless --epochs, lower learning rates, no warmup)")
    fewer, said = fitting_queries(size, imgsz, given) if scratch is None else ([], None)
    overrides += fewer
    notes += [said] if said else []
    if epochs is not None:
        if epochs < 1:
            raise DfineError(f"--epochs {epochs}: give at least 1")
        stop = stop_epoch_for(epochs, stage2)
        overrides += [f"epochs={epochs}", f"train_dataloader.collate_fn.stop_epoch={stop}"]
    if batch is None and _on_cpu(device):
        batch = CPU_BATCH
        few = _few_images(splits["train"][0]) if scratch is None and "train" in splits else None
        if few is not None and few < CPU_BATCH:  # a batch of our choosing larger than the set: not one step (a walk)
            batch = max(1, few)
            notes.append(f"CPU: batch {batch} (the train set's {counted(few, 'image')}; the recipe's batch is sized "
                         f"for GPUs); --batch N to change it")
        else:
            notes.append(f"CPU: evaluating in batches of {CPU_BATCH}; --batch N to change it" if scratch is not None
                         else f"CPU: batch {CPU_BATCH} (the recipe's batch is sized for GPUs); --batch N to change it")
    if batch is not None:
        if batch < 1:
            raise DfineError(f"--batch {batch}: give at least 1")
        overrides += [f"train_dataloader.total_batch_size={batch}", f"val_dataloader.total_batch_size={batch}"]
    cores = os.cpu_count() or 1
    if cores < RECIPE_WORKERS:
        overrides += [f"train_dataloader.num_workers={cores}", f"val_dataloader.num_workers={cores}"]
        notes.append(f"{cores} CPU cores: {cores} data-loading workers per loader (the recipe asks for {RECIPE_WORKERS})")
    return DataRun(recipe, tuple(overrides), out, fmt, tuple(notes))


def _stopped_note(folder: Path) -> str:
    """``"; ..._2 stopped after epoch 1 of 6: --auto-resume continues it instead"`` when the latest run
    of ``folder``, ``folder_2``, ... (the one ``--auto-resume`` continues) stopped before its end: the
    same command typed again after a Ctrl-C started over in a new folder, and said only that the first,
    finished run was kept (a walk)."""
    said = stopped_sibling(folder)
    return f"; {said} instead" if said else ""


def _earlier_runs(folder: Path, latest: Path) -> str:
    """What the runs of ``folder``, ``folder_2``, ... before ``latest`` are, for the ``--auto-resume`` note:
    ``"x_3 (stopped after epoch 1 of 3), x_2 and x hold earlier ones (-o DIR/x_3 --auto-resume continues
    x_3)"``, latest first, the option naming the latest stopped one, else the latest (a walk's note named
    only the first folder, a finished run, and not the stopped one it had been told --auto-resume continues)."""
    from dfine.checkpoint import stopped_run
    from dfine.engine.lock import earlier_run_files, numbered_run

    runs = []
    for n in range(1, 1000):
        path = numbered_run(folder, n)
        if path == latest or not path.is_dir():
            break
        if earlier_run_files(path):
            runs.append((path, stopped_run(path)))
    if not runs:
        return f"{folder} holds an earlier one (-o {folder} --auto-resume to continue that)"
    runs.reverse()  # the latest first
    target = next((p for p, s in runs if s), runs[0][0])  # the stopped one, else the latest
    said = [f"{p if len(runs) == 1 else p.name}" + (f" (stopped after epoch {s[0]} of {s[1]})" if s else "")
            for p, s in runs]
    if len(said) == 1:
        return f"{said[0]} holds an earlier one (-o {target} --auto-resume to continue that)"
    return (f"{', '.join(said[:-1])} and {said[-1]} hold earlier ones (-o {target} --auto-resume continues "
            f"{target.name})")


def stopped_sibling(folder: Path) -> str:
    """``"..._2 stopped after epoch 1 of 6: --auto-resume continues it"`` when the latest run of
    ``folder``, ``folder_2``, ... that holds checkpoints stopped before its end and is not training;
    ``""`` otherwise."""
    from dfine.checkpoint import stopped_run
    from dfine.engine.lock import numbered_folder, training_now

    latest = numbered_folder(folder, latest=True)
    stopped = stopped_run(latest) if latest is not None and not training_now(latest) else None
    if stopped is None:
        return ""
    return f"{latest.name} stopped after epoch {stopped[0]} of {stopped[1]}: --auto-resume continues it"


def stop_epoch_for(epochs: int, stage2: Tuple[int, int] = (20, 220)) -> int:
    """The stop epoch (0-based: stage 2's first) of a run of ``epochs``: the published recipe's share of
    stage 2, ``stage2`` = (its epochs, of all): 20 of 220 (custom), 8 of 64 (obj2custom); at least one epoch
    before it."""
    last, total = stage2
    return max(1, epochs - math.ceil(epochs * last / total))


def names_of_the_model(data: Union[str, os.PathLike], names: Any, ids: Any) -> Optional[Tuple[List[str], str]]:
    """For an evaluation on a YOLO folder ``data`` that names no classes: the model's class ``names`` with the
    note that says so, when its category ``ids`` are 1..K (a model trained on a converted YOLO folder, class i
    as id i + 1, as the conversion numbers them); None otherwise (a COCO model's ids would not line up). A walk
    was asked for --names of an export that carries them."""
    names, ids = list(names or ()), list(ids or ())
    if not names or ids != list(range(1, len(names) + 1)) or any("," in str(n) for n in names):
        return None
    return [str(n) for n in names], (f"{data} names no classes: the model's own are used, YOLO class i as its i-th "
                                     f"({first_few(names, 5)}); --names a,b,c gives others")


def fitting_queries(size: str, imgsz: Optional[Tuple[int, int]], given: Sequence[str] = ()
                    ) -> Tuple[List[str], Optional[str]]:
    """The ``-u`` items giving D-FINE ``size`` fewer queries than its published 300 when the input ``imgsz``
    (height, width) gives fewer encoder tokens, which the queries are picked among (N at 192 px: 180; the train
    command ``dfine data tile --size 192`` printed stopped on it), with the note that says so; none when the
    tokens are enough or ``given`` (the user's ``-u``) sets the queries."""
    from dfine.config import queries_override
    from dfine.models.config import encoder_tokens, preset, resolve
    keys = {o.split("=", 1)[0].strip() for o in given}
    if imgsz is None or keys & {"DFINETransformer.num_queries", "DFINEPostProcessor.num_top_queries"}:
        return [], None
    cfg = resolve(preset(f"dfine_{size}"))
    tokens, queries = encoder_tokens(cfg, tuple(imgsz)), cfg.decoder.num_queries
    if tokens >= queries:
        return [], None
    n = max(10, tokens // 10 * 10)
    return ([f"DFINETransformer.num_queries={n}", f"DFINEPostProcessor.num_top_queries={n}"],
            f"--imgsz {imgsz[0]}x{imgsz[1]} gives D-FINE {size.upper()} {tokens} encoder tokens, fewer than its "
            f"{queries} queries: {n} queries instead (so at most {n} detections an image; {queries_override(n)})")


#: classes the published Objects365 detectors score: the 365, and index 0 unused
OBJECTS365_HEAD = 366


def custom_recipe(size: str, objects365: bool = False) -> Path:
    """The published recipe a ``dfine train --data`` run of ``size`` (``n`` .. ``x``) is built from:
    ``custom/dfine_hgnetv2_{size}_custom.yml``, or with ``objects365`` (fine-tuning Objects365 weights, the
    published README's "Tuning on Custom Dataset") ``custom/objects365/dfine_hgnetv2_{size}_obj2custom.yml``:
    64 epochs, lower learning rates, no warmups (published for S, M, L and X, as the weights are)."""
    if objects365:
        return RECIPES_DIR / "dfine" / "custom" / "objects365" / f"dfine_hgnetv2_{size}_obj2custom.yml"
    return RECIPES_DIR / "dfine" / "custom" / f"dfine_hgnetv2_{size}_custom.yml"


def objects365_tuning(tuning: Optional[Union[str, os.PathLike]],
                      resume: Optional[Union[str, os.PathLike]] = None) -> bool:
    """Whether a ``--data`` training fine-tunes Objects365 weights: ``tuning`` (a checkpoint whose class
    head scores :data:`OBJECTS365_HEAD` classes, or an Objects365 zoo entry), or a run continued from
    ``resume`` whose checkpoint records the obj2custom recipe."""
    from dfine.checkpoint import class_head_rows, recorded_recipe
    if resume is not None:
        return "obj2custom" in (recorded_recipe(resume) or "")
    if tuning is None:
        return False
    if Path(tuning).is_file():
        return class_head_rows(tuning) == OBJECTS365_HEAD
    from dfine import zoo
    try:
        return zoo.get(str(tuning)).dataset == "obj365"
    except zoo.UnknownEntryError:
        return False


def missing_split(root: Path, split: str, splits: Dict[str, Tuple[Path, Path]], fmt: str = "coco",
                  evaluation: bool = False) -> str:
    """One line for a dataset without a ``split`` (train, val or test): the splits it has (their
    files when the dataset's own, not a conversion's), a split folder of images without its annotation
    file, and what to add for a dataset of format ``fmt``; for an ``evaluation`` of a missing val split,
    ``--split`` of the others (a re-walk's test-only folder was given training's ``-u`` hint)."""
    if evaluation and split == "val" and "test" in splits:
        return f"--data {root}: no val split; found {', '.join(splits)}: --split test evaluates its test split"
    from dfine.data.convert import IMAGE_SUFFIXES, SPLIT_NAMES

    def shown(path: Path) -> str:
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    if fmt != "coco" or not all(ann.is_relative_to(root) for ann, _ in splits.values()):
        from dfine.data.convert.yolo import yaml_entry
        named = yaml_entry(root, split) if fmt == "yolo" else None
        if named:  # 'add a test: entry' to a data.yaml that has one, naming a folder not there (a walk)
            return (f"--data {root}: no {split} split; found {', '.join(splits) or 'none'}; its data.yaml's "
                    f"{split}: ({named}) names a folder that is not there: add the images there, or point it at them")
        yolo = (f"a {split}: entry in its data.yaml (or {split}/images + {split}/labels)" if _has_yaml(root) else
                f"{split}/images + {split}/labels beside train's, or a data.yaml naming each split's folder")
        add = {"yolo": yolo,  # a walk's flat folder of images and .txt files was told of a data.yaml it has not
               "voc": f"ImageSets/Main/{split}.txt", "cvat": f"images of the {split.capitalize()} subset"}.get(
            fmt, f"a {split}/ folder beside train/ in the same layout")
        return f"--data {root}: no {split} split; found {', '.join(splits) or 'none'}; add {add}"
    found = ", ".join(f"{s} ({shown(ann)})" for s, (ann, _) in splits.items())
    line = f"--data {root}: no {split} split" + (f"; found {found}" if found else "")
    for name in (n for n, s in SPLIT_NAMES.items() if s == split):
        folder = root / name
        if folder.is_dir():
            images = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            line += f"; {shown(folder)}/ holds {counted(images, 'image')} but no annotation file" if images else ""
    names = {"train": "train", "val": "valid", "test": "test"}[split]
    line += (f"; add {names}/_annotations.coco.json (Roboflow) or annotations/instances_{split}.json "
             f"with its {split} images")
    if split == "val" and "test" in splits:
        ann, images = map(_absolute, splits["test"])
        line += (f", or validate on the test split: -u val_dataloader.dataset.ann_file={shlex.quote(str(ann))} "
                 f"val_dataloader.dataset.img_folder={shlex.quote(str(images))}")
    return line


@dataclass(frozen=True)
class ShortRunWarmup:
    """A shortened lr warmup: ``warmup`` steps instead of the recipe's ``recipe_warmup``, for a
    run of ``epochs`` x ``steps_per_epoch`` optimiser steps (``images`` in batches of ``batch``;
    ``capped``: ``--max-steps`` cut the epochs shorter)."""

    warmup: int
    recipe_warmup: int
    epochs: int
    steps_per_epoch: int
    images: int = 0
    batch: int = 0
    capped: bool = False
    python: bool = False  # started by dfine.train: its max_steps=, not --max-steps, named

    @property
    def steps(self) -> int:
        """Optimiser steps of the whole run."""
        return self.epochs * self.steps_per_epoch

    def _run_words(self) -> str:
        """``"40 steps (2 images, batch 1, 20 epochs)"``: the run's steps and where they come from."""
        option = "max_steps=" if self.python else "--max-steps "
        per_epoch = (f"{option}{self.steps_per_epoch} per epoch" if self.capped
                     else f"{counted(self.images, 'image')}, batch {self.batch}")
        return f"{counted(self.steps, 'step')} ({per_epoch}, {counted(self.epochs, 'epoch')})"

    def note(self) -> str:
        """One line for the run's start-up summary."""
        return (f"lr warmup {counted(self.warmup, 'step')}, not the recipe's {self.recipe_warmup}: this run has only "
                f"{self._run_words()}")

    def kept_note(self) -> str:
        """One line for a recipe run (``-c``), whose warmup is kept as the recipe says."""
        whole = " (the lr rises for the whole run)" if self.recipe_warmup >= self.steps else ""
        return (f"lr warmup {counted(self.recipe_warmup, 'step')} as the recipe says, more than a tenth of this run's "
                f"{self._run_words()}{whole}; -u lr_warmup_scheduler.warmup_duration={self.warmup} shortens it as "
                f"--data runs do")


def short_run_warmup(recipe_warmup: int, epochs: int, steps_per_epoch: int, *, images: int = 0, batch: int = 0,
                     capped: bool = False, share: float = WARMUP_SHARE, python: bool = False
                     ) -> Optional[ShortRunWarmup]:
    """The shorter warmup when the recipe's (``recipe_warmup`` steps) would take more than
    ``share`` of the run's ``epochs * steps_per_epoch`` steps; else ``None``. A small dataset
    would otherwise train its whole run at a fraction of the lr. The trainer calls it with the
    steps of the loader it built (``--max-steps`` applied); ``images``, ``batch``, ``capped`` and ``python``
    only word the note."""
    warmup = max(1, math.ceil(epochs * steps_per_epoch * share))
    if warmup >= recipe_warmup:
        return None
    return ShortRunWarmup(warmup, recipe_warmup, epochs, steps_per_epoch, images, batch, capped, python)


def _on_cpu(device: Optional[str]) -> bool:
    """Whether a run on ``device`` (``None``: CUDA when available) trains on the CPU."""
    if device is not None:
        return not str(device).startswith("cuda")
    import torch

    return not torch.cuda.is_available()


def _absolute(path: Path) -> Path:
    """``path`` from the current folder, symlinks kept (``os.path.abspath``)."""
    return Path(os.path.abspath(path))


def _yaml(path: Path) -> str:
    import json

    return json.dumps(str(path))  # a JSON string is a YAML string: spaces, colons and quotes survive


def _checked_imgsz(imgsz: Any) -> Any:
    """:func:`train`'s ``imgsz``: ``N``, or ``[H, W]`` for non-square inputs (tiles of ``dfine data
    tile --size H W``); a one-line error for anything but whole multiples of 32 px."""
    if isinstance(imgsz, (tuple, list)) and len(imgsz) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 32 and v % 32 == 0 for v in imgsz):
        return imgsz[0] if imgsz[0] == imgsz[1] else [int(imgsz[0]), int(imgsz[1])]
    if imgsz is not None and (isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 32 or imgsz % 32):
        from dfine.text import multiples_of_32_near
        if isinstance(imgsz, (tuple, list)):
            raise DfineError(f"imgsz must be N or (height, width), whole multiples of 32 px, got {imgsz!r}")
        if isinstance(imgsz, str):  # 'must be a whole multiple of 32 px, got '320'' (a walk): the type is wrong
            raise DfineError(f"imgsz must be a number (an int, or (height, width)), got the string {imgsz!r}")
        near = f" (e.g. {multiples_of_32_near([imgsz])})" if isinstance(imgsz, (int, float)) else ""
        raise DfineError(f"imgsz must be a whole multiple of 32 px, got {imgsz!r}{near}")
    return imgsz


@keyword_hints
def train(data: Union[str, os.PathLike], model: str = "dfine_s", *, epochs: Optional[int] = None,
          batch: Optional[int] = None, imgsz: Optional[Union[int, Sequence[int]]] = None, output_dir: Optional[Union[str, os.PathLike]] = None,
          tuning: Optional[str] = None, device: Optional[str] = None, overrides: Sequence[str] = (),
          max_steps: Optional[int] = None, progress: bool = True, threads: Optional[int] = None,
          names: Optional[Union[str, Sequence[str]]] = None,
          resume: Optional[Union[str, os.PathLike]] = None, auto_resume: bool = False) -> TrainResult:
    """Train ``model`` (``dfine_n`` .. ``dfine_x``; ``dfine_s`` by default) on the dataset at ``data`` (a folder
    or file: COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML), as ``dfine train --data DATA`` does, with the
    published custom recipe of the size.

    - ``epochs``: epochs to train (default: the recipe's: N and S 220, M 132, L and X 80; 64 when
      fine-tuning Objects365 weights);
      with ``resume`` a larger number trains a finished run longer.
    - ``batch``: images per step, all processes together (default: the recipe's, sized for GPUs; 8 on a CPU).
    - ``imgsz``: the input size in pixels, ``N`` (square) or ``(height, width)`` (non-square tiles of
      ``dfine data tile``), multiples of 32 (default 640; with ``resume``, the run's own).
    - ``output_dir``: the run's folder (default ``output/DATASET_dfine_SIZE``, numbered ``_2``, ... rather than
      writing over an earlier run's).
    - ``tuning``: weights (a ``.pth``) or a zoo name (``"dfine_s_coco"``) to fine-tune from (``-t``); the class
      heads of the classes they have by name are carried.
    - ``device``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (default: CUDA when there is one).
    - ``overrides``: more ``key=value`` settings of the recipe (a list, or one string of them as ``-u`` takes them).
    - ``max_steps``: at most this many training steps per epoch (a quick look; each evaluation still scores
      the whole val set).
    - ``progress``: progress bars (default True). ``threads``: CPU threads of torch during the run (default:
      one per core).
    - ``names``: class names in class-id order (a list, or ``"a,b,c"``), for a YOLO folder that names none.
    - ``resume``: a run's ``last.pth`` to continue (``-r``). ``auto_resume``: continue the latest run of the
      default folder (or of ``output_dir``) when it left a ``last.pth``, else start one: the same call again
      after a stop.

    Returns a :class:`TrainResult`: ``output_dir`` (``last.pth``, ``best_stg*.pth``, logs, pictures), ``best``
    (the weights the run chose), ``conf`` (the score threshold with the best F1 on val, or None) and
    ``metrics`` (the last evaluation's: ``best_AP`` and ``test_*`` as fractions 0..1, ``best_epoch`` and
    ``epoch`` counted from 0). Ctrl-C stops the run after its step (``last.pth`` kept, the resume call printed)
    and raises ``KeyboardInterrupt``, so a script or a notebook cell stops there too."""
    import torch

    from dfine.commands.predict import set_threads
    from dfine.config import load_config
    from dfine.engine import dist
    from dfine.engine.summary import data_command
    from dfine.engine.trainer import Trainer

    _check_counts(epochs=epochs, batch=batch, max_steps=max_steps, threads=threads)
    imgsz = _checked_imgsz(imgsz)
    if not isinstance(data, (str, os.PathLike)):  # None: a raw pathlib TypeError (a walk's notebook)
        raise DfineError(f"data= must be the path of a dataset folder, got {data!r}")
    if isinstance(overrides, str):  # "HGNetv2.pretrained=False" was read letter by letter ("override 'H'")
        overrides = shlex.split(overrides)
    if isinstance(overrides, Mapping):  # 'command line override ... must look like key.subkey=value' (a walk)
        raise DfineError(f"overrides= takes 'KEY=VALUE' strings, a list of them or one string, not a dict: "
                         f"overrides={[f'{k}={v}' for k, v in overrides.items()]!r}")
    if tuning is not None and not os.path.exists(tuning) and any(c in str(tuning) for c in "/\\."):
        raise DfineError(f"tuning={str(tuning)!r}: checkpoint not found (a .pth file, or a zoo name such as "
                         f"'dfine_s_coco')")
    from dfine.commands.data import check_names
    if isinstance(names, str):  # "cone,cube" was read letter by letter: nine classes c, o, n, e, ...
        names = [n.strip() for n in names.split(",") if n.strip()] or None
    if names:
        names = check_names([str(n) for n in names], "names=")
    if auto_resume and resume is not None:
        raise DfineError("give auto_resume=True (continue the latest run when it left a last.pth) or resume=..., "
                         "not both")
    from dfine.checkpoint import check_data_run_weights, refuse_zoo_resume
    try:
        if resume is not None and not Path(resume).is_file():
            refuse_zoo_resume(resume)
            raise DfineError(f"resume={str(resume)!r}: checkpoint not found (a run's last.pth)")
        check_data_run_weights(resume, tuning, model)  # before the dataset is converted into a run folder
    except DfineError as e:
        raise in_python_words(e) from None
    if output_dir is None and resume is not None:  # the run goes on in its own folder
        output_dir = Path(resume).resolve().parent
    try:
        if device is not None:  # before the dataset is converted into a new run folder, as the command line (a walk)
            from dfine.device import resolve_device
            resolve_device(device)
        hw = None if imgsz is None else (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
        run = data_run(data, model, epochs=epochs, batch=batch, output_dir=output_dir, names=names, device=device,
                       given=overrides, run_folder="latest" if auto_resume else "new", tuning=tuning, resume=resume,
                       imgsz=hw)
    except DfineError as e:  # 'dfine.train(data=...)': '--data X not found' read as the command line's (a walk)
        raise in_python_words(e) from None
    for note in run.notes if first_process() else ():
        print(python_words(note), file=sys.stderr)
    if auto_resume and (run.output_dir / "last.pth").is_file():
        resume = run.output_dir / "last.pth"
        if first_process():
            print(f"resuming from {resume} (auto_resume=True)", file=sys.stderr)
    extra = list(run.overrides)
    if imgsz is not None:
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
        extra.append(f"eval_spatial_size=[{h}, {w}]")
    if tuning is not None:
        extra.append(f"tuning={_yaml(Path(tuning)) if os.path.exists(tuning) else tuning}")
    if resume is not None:
        extra.append(f"resume={_yaml(Path(resume).resolve())}")
    if device is not None:
        extra.append(f"device={device}")
    cfg = load_config(run.recipe, extra + list(overrides))
    caller_threads = torch.get_num_threads()
    set_threads(threads, None, "torch")
    try:
        command = data_command(data, model, [("--epochs", epochs), ("--batch", batch), ("--names", names),
                                             ("--imgsz", imgsz), ("-d", device), ("--max-steps", max_steps),
                                             ("--threads", threads)],
                               ["--no-progress"] * (not progress), list(overrides))
        command = replace(command, python=True)
        try:
            with one_line_warnings():  # as the command line prints them, without Python's source line
                metrics = Trainer(cfg, max_steps=max_steps, progress=progress, warmup_share=run.warmup_share,
                                  command=command).fit()
        except DfineError as e:
            raise in_python_words(e) from None
    finally:
        torch.set_num_threads(caller_threads)
        dist.cleanup()
    if (metrics or {}).get("stopped") == "SIGINT":  # said and saved; the caller's script stops here too
        raise KeyboardInterrupt
    return TrainResult(Path(cfg.output_dir), dict(metrics or {}))


#: command-line advice in messages -> the dfine.train() argument that does it (a notebook walk had to
#: find overrides= in help() to act on "add -u HGNetv2.pretrained=False")
_OVERRIDES = re.compile(r"-u ((?:[\w.\[\]]+=[^\s)]+)(?: [\w.\[\]]+=[^\s)]+)*)")
_PYTHON_WORDS = ((re.compile(r"--(epochs|imgsz|batch) (?=\d|N\b)"), r"\1="),  # a value follows, not 'or ...'
                 (re.compile(r"--(data|model|names) (?=(?:gives|out)\b)"), r"\1= "),  # 'names=gives' read as a typo
                 (re.compile(r"--(data|model|names) (?!(?:or|and|to|with|for|the|a|of|in)\b)(?=[^-\s])"), r"\1="),
                 (re.compile(r"\buse -d cpu \(Python: device='cpu'\)"), "use device='cpu'"),  # Detector's own words
                 (re.compile(r"\buse -d (cpu|cuda(?::\d+)?)\b"), r"use device='\1'"),
                 (re.compile(r"\bwith -o\b"), "with output_dir="), (re.compile(r"\(--output-dir\)"), "(output_dir=)"),
                 (re.compile(r"\bcommand line override\b"), "override"),
                 (re.compile(r"--threads 1\b"), "threads=1"), (re.compile(r"--imgsz\b"), "imgsz"),
                 (re.compile(r"-o (\S+) --auto-resume\b"), r"output_dir='\1', auto_resume=True"),
                 (re.compile(r"--auto-resume\b"), "auto_resume=True"), (re.compile(r" \(dfine train --data\)"), ""),
                 (re.compile(r" --split (val|test)\b"), r", split='\1'"),
                 (re.compile(r"\bwith dfine train -t (.+?)(?=; |$)"), r"with dfine.train(..., tuning='\1')"),
                 (re.compile(r"\bwith -t (.+?)(?=; |$)"), r"with tuning='\1'"),  # a path may hold spaces
                 (re.compile(r"\(-r\)"), "(resume=)"), (re.compile(r"\(-o\)"), "(output_dir=)"),
                 (re.compile(r"^-r (\S+):"), r"resume='\1':"))


def in_python_words(error: DfineError) -> DfineError:
    """``error`` (the same object and class, so a caller's ``except RunLocked`` still catches it) with its
    message in :func:`python_words`: rebuilt as ``type(error)(message)`` it failed for a class whose
    constructor takes more (``RunLocked(holder, folder)``: a TypeError hid the lock's message, a walk)."""
    error.args = (python_words(str(error)), *error.args[1:])
    return error


def python_words(text: str) -> str:
    """``text`` with the command-line advice it gives as :func:`train`'s arguments: ``-u K=V K2=V2`` ->
    ``overrides=['K=V', 'K2=V2']``, ``--batch N`` -> ``batch=N`` (``--data``, ``--model``, ``--epochs``,
    ``--names``, ``--imgsz`` alike), ``--threads 1``."""
    text = _OVERRIDES.sub(lambda m: f"overrides={m.group(1).split()!r}", text)
    for pattern, words in _PYTHON_WORDS:
        text = pattern.sub(words, text)
    return text


def _check_counts(**counts: Any) -> None:
    """Each of ``counts`` given (not None) must be a whole number >= 1: ``epochs=2.5`` failed later on an
    internal ``stop_epoch=1.5``, ``max_steps=0`` meant no cap without a word."""
    for name, value in counts.items():
        if isinstance(value, str):  # 'got '2'' read as if 2 were the wrong value (a walk): its type is
            raise DfineError(f"{name} must be a number (an int), got the string {value!r}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DfineError(f"{name} must be a whole number of at least 1, got {value!r}")
