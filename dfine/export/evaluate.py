"""COCO AP of an exported model (ONNX, OpenVINO IR, int8 or not): ``dfine eval -r model.xml``.

The model runs through :class:`dfine.Detector` (the same pre-processing, backends and category
ids as ``dfine predict``), so what is measured is what is deployed; the AP comes from
:func:`dfine.engine.evaluator.coco_metrics`, the evaluator training uses.

    dfine eval -r model.xml --ann-file val.json --images val/     # a COCO JSON and its images
    dfine eval -r model.onnx -c configs/my_recipe.yml             # the recipe's val_dataloader set
    dfine eval -r model.onnx --data path/to/dataset               # its val split (YOLO, VOC, CVAT, LabelMe converted)

With ``-c`` or ``--data``, ``--ann-file`` / ``--images`` replace the val set's file / folder, as for
a checkpoint.

Besides printing the COCO summary and the per-class table it writes them to ``MODEL_FILE.eval.json``
(``model.onnx.eval.json``) beside the model file (atomically; ``-o DIR`` puts it in DIR), as ``dfine eval -r model.pth`` writes
``eval.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import DfineError
from ..text import counted

__all__ = ["EXPORT_SUFFIXES", "EvalSet", "add_arguments", "coco_results", "evaluate_detector", "evaluate_export",
           "eval_json_path", "is_export", "load_eval_set", "run", "write_eval_json"]

PathLike = Union[str, os.PathLike]
EXPORT_SUFFIXES = (".onnx", ".xml", ".engine", ".trt")


def is_export(model: Optional[PathLike]) -> bool:
    """Whether ``model`` names an exported file (evaluated with this module) rather than a checkpoint."""
    return model is not None and Path(model).suffix.lower() in EXPORT_SUFFIXES


@dataclass(frozen=True)
class EvalSet:
    """A COCO-format evaluation set: the parsed annotation file and ``(image id, image path)`` pairs."""

    ann: Mapping[str, Any]
    images: Tuple[Tuple[int, Path], ...]
    source: str  # the annotation file, or what the set is (the val split of a --data folder converted for it)
    ann_file: Optional[str] = None  # the annotation file read, when it is kept (not a conversion made for the run)
    data: Optional[str] = None  # the --data folder it came from
    split: str = "val"  # the split of that folder (dfine eval --split)
    max_dets: Optional[int] = None  # the -c recipe's evaluator.max_dets (None: as coco_metrics chooses)

    @property
    def category_ids(self) -> Tuple[int, ...]:
        return tuple(int(c["id"]) for c in self.ann.get("categories", []))

    @property
    def boxes(self) -> int:
        """The non-crowd boxes on the set's images (what AP is scored on)."""
        ids = {i for i, _ in self.images}
        return sum(1 for a in self.ann.get("annotations", []) if a.get("image_id") in ids and not a.get("iscrowd"))

    def subset(self, images: Sequence[Tuple[int, Path]]) -> "EvalSet":
        return dataclasses.replace(self, images=tuple(images))


def load_eval_set(ann_file: PathLike, img_folder: PathLike, limit: Optional[int] = None) -> EvalSet:
    """Read ``ann_file`` (COCO JSON) and check that its images are in ``img_folder``; ``limit``
    keeps the first images by id."""
    from ..data.coco import read_coco_json
    ann_file, img_folder = Path(ann_file), Path(img_folder)
    ann = read_coco_json(ann_file)
    if not img_folder.is_dir():
        raise DfineError(f"image folder {img_folder} not found")
    try:
        records = sorted((int(im["id"]), str(im["file_name"])) for im in ann["images"])
    except (ValueError, KeyError, TypeError) as e:
        raise DfineError(f"{ann_file} is not a COCO annotation file ({type(e).__name__}: {e}); "
                         f"it needs images with id and file_name") from None
    if limit is not None:
        records = records[:limit]
    if not records:
        raise DfineError(f"{ann_file} lists no images")
    images = tuple((i, img_folder / name) for i, name in records)
    missing = [str(p) for _, p in images if not p.is_file()]
    if missing:
        raise DfineError(f"{len(missing)} of the {len(images)} images of {ann_file} are not in {img_folder} "
                         f"(first: {missing[0]}); give the folder holding them with --images")
    return EvalSet(ann, images, str(ann_file), str(ann_file))


def coco_results(detector: Any, images: Sequence[Tuple[int, Path]], progress: bool = False) -> List[Dict[str, Any]]:
    """COCO results (``image_id``, ``category_id``, ``bbox`` xywh px, ``score``) of ``detector``
    (a :class:`dfine.Detector`; every score above its ``conf`` kept) on ``(image id, path)`` pairs.
    The boxes are the model's own, not clipped to the image (``clip=False``), as the published
    evaluator scores them, so an export's AP is the checkpoint's."""
    detector = copy.copy(detector)  # the same loaded model; the caller's detector keeps its setting
    detector.clip = False
    bar = None
    if progress:
        from ..text import progress_bar
        bar = progress_bar(total=len(images), desc="eval", unit="img", leave=False, dynamic_ncols=True)
    out: List[Dict[str, Any]] = []
    step = max(1, int(detector.batch_size))
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        for (image_id, _), det in zip(chunk, detector([str(p) for _, p in chunk])):
            out.extend(det.to_coco(image_id))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def evaluate_detector(detector: Any, data: EvalSet, progress: bool = False, warn: bool = True) -> Any:
    """:class:`dfine.engine.evaluator.CocoMetrics` of ``detector`` on ``data``.

    A model whose category ids are not among the annotation file's is an error (nothing would
    match); ids partly missing are named on stderr (``warn``)."""
    from ..engine.evaluator import coco_metrics
    model_ids = set(detector._engine.category_ids)
    known = set(data.category_ids)
    if model_ids and not model_ids & known:
        raise DfineError(f"the model's category ids {sorted(model_ids)[:8]} are none of {data.source}'s "
                         f"{sorted(known)[:8]}: evaluate it on the dataset it was trained for")
    from ..data.cocojson import none_in_common
    unrelated = none_in_common(dict(zip(detector._engine.category_ids, detector._engine.class_names)),
                               {int(c["id"]): str(c.get("name", "")) for c in data.ann.get("categories", [])},
                               data.source)
    if unrelated:
        raise DfineError(unrelated)
    if warn and model_ids - known:
        print(f"warning: category ids {sorted(model_ids - known)[:8]} of the model are not in {data.source}; "
              f"their detections count as false positives nowhere (COCO ignores unknown categories)", file=sys.stderr)
    if warn:
        _say_other_names(detector, data)
        _say_unsliced_set(detector, data)
    dets = coco_results(detector, data.images, progress)
    metrics = coco_metrics(data.ann, dets, [i for i, _ in data.images], max_dets=data.max_dets,
                           sliced=getattr(detector, "slice", None) is not None)
    cut = getattr(detector, "slice", None)
    slicing = None if cut is None else {**dataclasses.asdict(cut), "tile": list(cut.tile or detector.imgsz)}
    return dataclasses.replace(metrics, classes=tuple(i for i in detector._engine.category_ids if i in known),
                               slicing=slicing)


def _say_unsliced_set(detector: Any, data: EvalSet) -> None:
    """A model trained on tiles, scored unsliced on images much larger than them, says so once for
    the set (how many, the largest), as a checkpoint's evaluation does, instead of the detector's
    note on the first such image (a walk's export named a 739 px image of a set of 4800 px ones)."""
    tile = detector.trained_tile
    if tile is None or getattr(detector, "slice", None) is not None or (data.ann.get("info") or {}).get("tiles"):
        return
    from ..slicing import unsliced_note
    ids = {i for i, _ in data.images}
    sizes = [(im["width"], im["height"]) for im in data.ann.get("images", [])
             if im.get("id") in ids and isinstance(im.get("width"), int) and isinstance(im.get("height"), int)]
    if len(sizes) != len(ids):
        return  # sizes the file does not give: the detector's own note, on the images it reads
    note = unsliced_note(detector.name, tile, sizes, val=True)
    if note:
        print(note, file=sys.stderr)
    detector._tiles_said = True  # said for the set (or nothing to say): not again image by image


def _say_other_names(detector: Any, data: EvalSet) -> None:
    """One line when the model's class names differ from the set's for the same category ids (a
    model evaluated on another dataset whose ids overlap reads AP 0 and nothing else says why)."""
    from ..data.cocojson import other_classes
    line = other_classes(dict(zip(detector._engine.category_ids, detector._engine.class_names)),
                         {int(c["id"]): str(c.get("name", "")) for c in data.ann.get("categories", [])}, data.source)
    if line:
        print(line, file=sys.stderr)


def evaluate_export(model: PathLike, data: EvalSet, *, backend: Optional[str] = None, threads: Optional[int] = None,
                    precision: str = "f32", batch_size: int = 1, device: str = "cpu", progress: bool = False,
                    slice: Any = None, imgsz: Optional[int] = None) -> Any:
    """COCO metrics of the exported ``model`` file (or a checkpoint, as :class:`dfine.Detector` runs
    it) on ``data`` (every detection kept: ``conf=0``); ``slice``: sliced inference, as
    ``Detector(slice=...)`` takes it; ``imgsz``: a checkpoint's input size."""
    from ..inference import Detector
    detector = Detector(model, device=device, conf=0.0, backend=backend, batch_size=batch_size, threads=threads,
                        precision=precision, slice=slice, imgsz=imgsz)
    return evaluate_detector(detector, data, progress)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``dfine eval`` takes for an exported model (``-r model.onnx|.xml``)."""
    g = p.add_argument_group("exported models (-r model.onnx, model.xml or model.engine)")
    g.add_argument("--ann-file", help="COCO annotation JSON to evaluate on (with -c RECIPE or --data DIR: replaces the "
                                      "val set's file)")
    g.add_argument("--images", help="folder of the annotation file's images (with -c or --data: replaces the val set's folder)")
    g.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt"), default=None,
                   help="runtime (default: from the file's suffix; openvino also reads .onnx)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads of the runtime (default: its own choice)")
    g.add_argument("--precision", choices=("f32", "bf16"), default="f32", help="OpenVINO inference precision")
    g.add_argument("--batch-size", type=int, default=1, help="images per inference (default 1)")
    g.add_argument("--max-images", type=int, default=None, help="evaluate on the first N images only")


def _eval_set_from_args(args: argparse.Namespace) -> EvalSet:
    """The set ``dfine eval -r EXPORT`` runs on: the val set of ``-c RECIPE`` or of ``--data DIR``
    (``--ann-file`` / ``--images`` replacing its file / folder, as for a checkpoint), else the
    ``--ann-file`` and ``--images`` given."""
    ann_file, images, limit = (getattr(args, k, None) for k in ("ann_file", "images", "max_images"))
    data = getattr(args, "data", None)
    if args.config and data:
        raise DfineError("give a recipe (-c RECIPE, its val set) or a dataset folder (--data DIR, its val split), "
                         "not both")
    from ..commands.data import split_names
    names = split_names(getattr(args, "names", None))
    if names and not data:
        raise DfineError("--names goes with --data DIR (a YOLO folder that names no classes)")
    if data:
        return _data_val_set(Path(data).expanduser(), ann_file, images, limit, names, getattr(args, "split", "val"))
    if args.config:
        return _recipe_val_set(args, limit)
    if ann_file and not images and Path(ann_file).is_file():
        # where dfine data check finds them: the folder a converted file names, the file's own folder of images
        # (Roboflow's {split}/_annotations.coco.json: a walk was asked for --images), images/ beside it, ...
        from ..data.check import default_images
        try:
            images = str(default_images(ann_file))
        except DfineError:
            images = None  # the one line below asks for --images
    if ann_file and images:
        return load_eval_set(ann_file, images, limit)
    if ann_file or images:
        given, other = ("--ann-file", "--images DIR") if ann_file else ("--images", "--ann-file FILE")
        raise DfineError(f"{given} alone: add {other}, or -c RECIPE / --data DIR for the val set whose "
                         f"{'file' if ann_file else 'folder'} it replaces")
    raise DfineError(f"say what to evaluate {args.resume} on: --data DIR (its val split), -c RECIPE (its "
                     f"val_dataloader set) or --ann-file FILE --images DIR")


def _recipe_val_set(args: argparse.Namespace, limit: Optional[int]) -> EvalSet:
    """The val set of ``-c RECIPE`` (with ``-u`` and ``--ann-file`` / ``--images`` applied); a file or
    folder not found is named with its key."""
    from ..commands.train import overrides_from_args
    from ..config import load_config
    from ..recipes import RECIPES_DIR
    cfg = load_config(args.config, [o for o in overrides_from_args(args) if not o.startswith("resume=")],
                      recipes=RECIPES_DIR)
    ds = cfg.val_dataloader.dataset
    for key, value, what, option, exists in (
            ("ann_file", ds.ann_file, "annotation file", "--ann-file FILE", Path.is_file),
            ("img_folder", ds.img_folder, "image folder", "--images DIR", Path.is_dir)):
        if not value:
            raise DfineError(f"{args.config} sets no val_dataloader.dataset.{key}; set it, or give {option}")
        if not exists(Path(value)):
            raise DfineError(f"{what} {value} not found (val_dataloader.dataset.{key} of {args.config}); "
                             f"correct it, or give {option}")
    return dataclasses.replace(load_eval_set(ds.ann_file, ds.img_folder, limit), max_dets=cfg.evaluator.max_dets)


def _data_val_set(root: Path, ann_file: Optional[str], images: Optional[str], limit: Optional[int],
                  names: Optional[List[str]] = None, split: str = "val") -> EvalSet:
    """The val (or ``split``) split of the dataset folder ``root``, found as ``dfine train --data`` finds it: a
    COCO folder's file read where it is; a YOLO, VOC, CVAT, LabelMe, CSV or CreateML folder converted the same way (the
    same split), into a temporary folder removed once read (the dataset is never written); ``names``:
    the class names of a YOLO folder that names none (``--names``)."""
    from ..recipes import dataset_splits, detect_format, format_words, missing_split
    if not root.exists():
        raise DfineError(f"--data {root} not found")
    from ..data.archive import dataset_folder
    root = dataset_folder(root)
    fmt = detect_format(root)
    with tempfile.TemporaryDirectory(prefix="dfine-eval-") as tmp:
        splits, notes = dataset_splits(root, fmt, Path(tmp), names=names, temporary="evaluation", split=split)
        for note in notes:  # which images the split holds (a seeded val split), as a checkpoint's evaluation says
            print(note, file=sys.stderr)
        if split not in splits and not ann_file:
            raise DfineError(missing_split(root, split, splits, fmt, evaluation=True))
        ann, folder = splits.get(split, (None, None))
        given = Path(ann_file) if ann_file else None
        read = load_eval_set(given or ann, images or folder or root, limit)
        converted = ann is not None and Path(ann).is_relative_to(tmp)  # else read where it is
    kept = str(given or ann) if given or not converted else None
    source = f"the {format_words(fmt)} {split} split of {root}"
    if given:
        source = str(given)
    elif kept and Path(kept) == root:  # a split's own file given (custom_val.json): the file, all of it
        source = str(root)
    elif kept:  # as a checkpoint's evaluation says it, with the file (a re-walk saw valid/_annotations.coco.json only)
        shown = Path(kept).relative_to(root) if Path(kept).is_relative_to(root) else kept
        source = f"the {split} split of {root} ({shown})"
    return dataclasses.replace(read, source=source, ann_file=kept, data=str(root), split=split)


def run(args: argparse.Namespace) -> int:
    """``dfine eval -r EXPORTED_MODEL ...`` (or ``train.py --test-only -r ...``): print the COCO
    statistics; 0 on success."""
    if not Path(args.resume).is_file():
        raise DfineError(f"model file {args.resume} " + ("is a folder: give the weights, a .pth, .onnx or .xml file"
                                                         if Path(args.resume).is_dir() else "not found"))
    from ..data.convert.yolo import NoClassNames
    try:
        data = _eval_set_from_args(args)
    except NoClassNames:  # a YOLO folder that names no classes: the export's own (a walk was asked for --names)
        if getattr(args, "names", None) or not getattr(args, "data", None):
            raise
        from ..inference import Detector
        from ..recipes import names_of_the_model
        engine = Detector(args.resume, backend=getattr(args, "backend", None))._engine
        given = names_of_the_model(args.data, engine.class_names, engine.category_ids)
        if given is None:
            raise
        print(given[1], file=sys.stderr)
        args.names = ",".join(given[0])
        data = _eval_set_from_args(args)
    opt = {k: getattr(args, k) for k in ("backend", "threads", "precision", "batch_size") if hasattr(args, k)}
    from ..commands.predict import slice_option
    sliced = slice_option(args) if hasattr(args, "slice") else None
    imgsz = None if is_export(args.resume) else getattr(args, "imgsz", None)
    metrics = evaluate_export(args.resume, data, device=args.device or "cpu", progress=not args.no_progress,
                              slice=sliced, imgsz=imgsz, **opt)
    how = f", sliced: {_slice_said(sliced)}" if sliced is not None else ""
    # as a checkpoint's header: the box count too (a walk compared the two and missed it here)
    print(f"{args.resume} on {data.source} ({counted(len(data.images), 'image')}, "
          f"{counted(data.boxes, 'box', 'boxes')}{how}):")
    print(metrics.coco_summary())  # the standard 12 lines and the per-class table, as for a checkpoint
    print(metrics.table())
    if metrics.dense_note():
        print(metrics.dense_note())
    print(metrics.summary())
    pick = None
    if metrics.confidence is not None and metrics.has_ground_truth:
        from ..engine.evaluator import conf_line
        pick = metrics.confidence.pick()
        print(conf_line(pick, "this set", python=getattr(args, "python", False)))
    path = eval_json_path(args.resume, getattr(args, "output_dir", None), data.split, sliced=sliced is not None)
    write_eval_json(path, metrics, model=args.resume, data=data)
    print(f"metrics: {os.path.abspath(path)}")
    from ..engine.plots import evaluation_pictures
    # the split of a --data folder, as a checkpoint's pictures say (Roboflow names every split's file the same)
    what = (f"{Path(args.resume).name}, {Path(data.ann_file).name if data.ann_file and not data.data else data.split}"
            + (", sliced" if sliced is not None else ""))
    print(evaluation_pictures(metrics, path, what, (data.ann, dict(data.images)), pick, data.split))
    return 0


def _slice_said(config: Any) -> str:
    """``"tiles of the model's size, overlap 0.2, nms"`` for the header of a sliced evaluation."""
    from ..slicing import hw_words
    tile = "the model's size" if config.tile is None else hw_words(config.tile)
    return (f"tiles of {tile}, overlap {config.overlap:g}, {config.merge}"
            + (", and the whole image" if config.full else ""))


def eval_json_path(model: PathLike, output_dir: Optional[PathLike] = None, split: str = "val",
                   sliced: bool = False) -> Path:
    """Where ``dfine eval -r MODEL`` of an exported file writes its metrics: ``MODEL_FILE.eval.json``
    beside the model (``model_int8.xml`` -> ``model_int8.xml.eval.json``; ``MODEL_FILE.eval_test.json``
    for the test ``split``; ``MODEL_FILE.eval_sliced.json`` for a ``sliced`` evaluation, which does
    not replace the whole-image one), or in ``output_dir`` (``-o``).
    Named after the whole file name, so the exports of one run (``model.onnx`` and ``model.xml``,
    which ``--format openvino`` writes side by side; the int8 files) and the checkpoint's own
    ``eval.json`` in that folder do not overwrite each other."""
    model = Path(model)
    from ..engine.summary import eval_file_name
    name = eval_file_name(split)
    if sliced:
        name = name[:-len(".json")] + "_sliced.json"
    return Path(output_dir or model.parent) / f"{model.name}.{name}"


def write_eval_json(path: PathLike, metrics: Any, *, model: PathLike, data: EvalSet) -> None:
    """``metrics`` at ``path``, atomically, in the form of a checkpoint's ``eval.json`` (``stats``,
    ``per_class`` AP and ``names`` by category id) plus the model file and the evaluation set."""
    from ..engine.evaluator import write_evaluation
    write_evaluation(Path(path), metrics.to_json(), model=model, ann_file=data.ann_file, data=data.data,
                     num_images=len(data.images))
