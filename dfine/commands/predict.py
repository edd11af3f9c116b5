"""``dfine predict SOURCE --model M``: annotated images/videos and COCO-format detections.

SOURCE is an image, a folder of images, a glob (``"imgs/*.jpg"``) or a video file; several image
sources may be given at once (``dfine predict a.jpg b.jpg more/``; a video is predicted alone). Output
goes to ``-o OUTDIR`` (default ``runs/predict``): one annotated image per input image, one
annotated video per video, and ``predictions.json`` in COCO results format with the dataset's
own category ids (image ids: those of the COCO file beside the images when there is one, as in a
Roboflow split, else the file name's number when it is one, else its position; for a video the
frame index), each entry also naming its class (``category_name``) and, for images, its file
(``file_name``), which COCO tools ignore.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from ..config import queries_override
from ..drawing import draw
from ..errors import DfineError
from ..outputs import check_outputs, numbered_run_dir, prepare_output_dir, removed_if_left_empty
from ..text import counted, first_few, progress_bar, score_below
from ..video import IMAGE_SUFFIXES, VIDEO_SUFFIXES



def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="detect objects in images, folders, globs or videos",
                              description=__doc__.splitlines()[0])
    p.add_argument("source", nargs="+", help="images, folders or globs (several at once), or one video file")
    p.add_argument("-m", "--model", required=True, help="zoo name, checkpoint .pth, .onnx, OpenVINO .xml or .engine")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino", "tensorrt"), default=None,
                   help="default: from the model file's suffix")
    p.add_argument("--size", choices=("n", "s", "m", "l", "x"), help="model size of a published checkpoint")
    p.add_argument("-c", "--config", help="model recipe yml for a published checkpoint")
    p.add_argument("-d", "--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("-b", "--batch-size", type=int, default=4, help="images per batch (default 4)")
    p.add_argument("--conf", type=float, default=None,
                   help="score threshold (default: the one the model's training run recommends, which its "
                        "checkpoint and exports carry; else 0.5)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N", help="input size: 640 or height width")
    p.add_argument("-o", "--output", default=None,
                   help="output folder (default runs/predict, or runs/predict2, ... when that holds an earlier run)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch, ONNX Runtime, OpenVINO)")
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                   help="OpenVINO precision (default f32; bf16 is faster on CPUs with AVX512-BF16/AMX, scores move ~1e-2)")
    p.add_argument("--ann-file", metavar="JSON",
                   help="COCO file whose image ids predictions.json takes (matched by file name), to score it against "
                        "that file; default: a COCO file beside the images or one folder up, when there is one")
    p.add_argument("--save-dataset", action="store_true",
                   help="also write OUT/annotations.json: the images and their detections above --conf as a COCO "
                        "dataset (pre-labels), to correct in a labelling tool (CVAT's 'COCO 1.0' import) and to train on")
    p.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                   help="keep only these of the model's classes (names, or numbers from 0): in the pictures, "
                        "predictions.json and --save-dataset's file, whose categories are then these alone")
    add_labels_argument(p)
    add_slice_arguments(p)
    p.set_defaults(func=run)


def add_slice_arguments(p) -> None:
    """``--slice``, ``--overlap``, ``--merge``, ``--full-image`` (shared with ``dfine track``)."""
    g = p.add_argument_group("sliced inference (small objects in large images)")
    g.add_argument("--slice", type=int, nargs="*", default=None, metavar="N",
                   help="detect in overlapping tiles of N (or H W) pixels; no number: the model's input size")
    g.add_argument("--overlap", type=float, default=0.2, help="tile overlap, a fraction of the tile (default 0.2)")
    g.add_argument("--merge", choices=("nms", "nmm"), default="nms",
                   help="across tiles: nms keeps the best box, nmm merges a group into one box (default nms)")
    g.add_argument("--full-image", action="store_true", help="also detect in the whole image downscaled")


def add_labels_argument(p) -> None:
    """``--labels auto|none|PX`` (shared with ``dfine track``)."""
    p.add_argument("--labels", type=labels_option, default="auto", metavar="auto|none|PX",
                   help="labels on the boxes drawn: auto (sized to the picture, smaller on boxes smaller than a "
                        "label; default), none (boxes alone) or the text's height in pixels")


def labels_option(text: str):
    """``--labels``' value: ``"auto"``, ``"none"`` or a text height in px (an int)."""
    from ..drawing import label_px
    try:
        label_px(text, (1, 1), np.zeros((0, 4)))
    except DfineError as e:
        raise argparse.ArgumentTypeError(str(e).replace("labels: ", "", 1)) from None
    text = text.strip().lower()
    return text if text in ("auto", "none") else int(text)


def slice_option(args: argparse.Namespace):
    """The ``Detector(slice=...)`` value of the parsed slice arguments (None when not slicing)."""
    if args.slice is None:
        return None
    from ..slicing import SliceConfig
    if len(args.slice) > 2:
        raise DfineError(f"--slice takes a tile size N or H W, got {' '.join(map(str, args.slice))}")
    tile = (tuple(args.slice) * 2)[:2] if args.slice else None
    return SliceConfig(tile=tile, overlap=args.overlap, merge=args.merge, full=args.full_image)


def set_threads(threads: Optional[int], model: Optional[str], backend: Optional[str]) -> None:
    """Check ``--threads`` and, when ``model`` runs on torch (a checkpoint or a zoo name, or
    ``--backend torch``), give torch that many CPU threads: :class:`~dfine.Detector` passes the
    number to ONNX Runtime and OpenVINO only, and a checkpoint ran on every core."""
    if threads is None:
        return
    if threads < 1:
        raise DfineError(f"--threads must be at least 1, got {threads}")
    from ..export.evaluate import is_export
    if backend == "torch" or (backend is None and not is_export(model)):
        import torch
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    kind, items = collect_sources(args.source)
    if args.ann_file is not None and kind == "video":
        raise DfineError(f"--ann-file gives images their COCO ids; {items[0]} is a video (its frames are numbered "
                         f"from 0): leave --ann-file out")
    from ..data.archive import require_path  # no torch: an export predicts without it
    ann_file = require_path(args.ann_file, "--ann-file") if args.ann_file is not None else None
    if args.save_dataset and kind == "video":
        raise DfineError(f"--save-dataset writes images with their boxes; {items[0]} is a video: give images or a "
                         f"folder of them (frames extracted with ffmpeg, say)")
    out = Path(args.output) if args.output is not None else numbered_run_dir(Path("runs/predict"))
    writes = ([out / f"{items[0].stem}.mp4", out / f"{items[0].stem}.partial.mp4"] if kind == "video"
              else [out / p.name for p in items]) + [out / "predictions.json"]
    writes += [out / PRELABELS] if args.save_dataset else []
    note = check_outputs(out, writes, items, default="runs/predict")
    if kind != "video":
        _refuse_beside_a_dataset_file(out, [p.name for p in items])
    with removed_if_left_empty(prepare_output_dir(out)):  # a model that fails to load leaves no empty folder
        if note:
            print(note, file=sys.stderr)
        return _predict(args, kind, items, out, ann_file)


def _refuse_beside_a_dataset_file(out: Path, names: Sequence[str]) -> None:
    """A one-line error when ``out`` holds a COCO file (not predict's own) that names images ``names`` as predict
    writes them: its annotated copies would be taken for that file's images (a walk's ``-o DATA/annotations``
    made training read the drawn-on copies of val2017/ in their place)."""
    from ..data.convert import PRELABELS_DESCRIPTION, file_head, file_names_in
    wanted = set(names)
    for ann in sorted(out.glob("*.json")) if out.is_dir() else []:
        if ann.name == "predictions.json" or PRELABELS_DESCRIPTION.encode() in file_head(ann, 4096):
            continue
        listed = {Path(name).name for name in file_names_in(ann, 1 << 16)}
        if listed & wanted:
            raise DfineError(f"-o {out} holds the dataset file {ann.name}, which names images as predict writes its "
                             f"annotated copies ({first_few(sorted(listed & wanted), 2)}): they would be taken for "
                             f"its images; choose a folder of its own (default: runs/predict)")


#: Detections per image from which predict says the pictures are crowded with guesses (the model keeps 300 at most)
CROWDED = 100
#: Images from which predict says when other jobs slow the CPU down (a video always)
MANY_IMAGES = 20


def say_busy_cpu(det: Any, what: str) -> None:
    """:func:`dfine.device.busy_cpu_note` for a detector on the CPU (a walk's video ran at 1.9 frames a second on
    a busy machine, 15.6 with --threads 1; training and benchmark said so, predict and track did not)."""
    if getattr(det, "backend", "") == "tensorrt" or str(getattr(det, "device", "cpu")).startswith("cuda"):
        return
    from ..device import busy_cpu_note
    note = busy_cpu_note(f"{what} (the detector)")
    if note:
        print(note, file=sys.stderr)


def _predict(args: argparse.Namespace, kind: str, items: List[Path], out: Path, ann_file: Optional[Path] = None) -> int:
    from ..inference import Detector
    set_threads(args.threads, args.model, args.backend)
    det = Detector(args.model, device=args.device, conf=args.conf, imgsz=args.imgsz, backend=args.backend,
                   batch_size=args.batch_size, size=args.size, config=args.config, threads=args.threads,
                   precision=args.precision, slice=slice_option(args))
    if args.conf is None and det.recommended_conf is not None:
        print(f"--conf {det.conf:.2f}: the threshold with the best F1 on the val set of its training run, which "
              f"{Path(args.model).name} carries (give --conf to change it)", file=sys.stderr)
    if kind == "video" or len(items) >= MANY_IMAGES:
        say_busy_cpu(det, "the frames" if kind == "video" else "the images")
    from ..inference import class_filter
    labels = class_filter(args.classes, det.class_names)
    if labels is not None:  # pre-labels of a COCO model for a set of a few of its classes (a walk trained 80)
        kept = [det.class_names[i] for i in labels]
        others = counted(len(det.class_names) - len(kept), "other class", "other classes")  # "1 other classes"
        print(f"--classes: {', '.join(kept)} kept, the model's {others} left "
              f"out" + (" (and out of annotations.json's categories)" if args.save_dataset else ""), file=sys.stderr)
    sizes: Optional[Dict[Path, Tuple[int, int, int]]] = {} if args.save_dataset else None
    full: List[Tuple[Path, int]] = []  # images that got every detection the model gives, above --conf
    if kind == "video":
        results, best = predict_video(det, items[0], out, labels, drawn_labels=args.labels)
        bad: List[Tuple[Path, str]] = []
    else:
        results, bad, best = predict_images(det, items, out, progress=len(items) > 1, sizes=sizes, ann_file=ann_file,
                                            full=full, labels=labels, drawn_labels=args.labels)
    from ..data.objects365 import write_json_atomic
    write_json_atomic(results, out / "predictions.json")
    for path, why in bad:
        print(f"warning: skipped {path}: {why}", file=sys.stderr)
    where = counted(len(items) - len(bad), "image") if kind == "images" else counted(1, "video")
    sliced = ""
    if det.slice is not None:
        from ..slicing import hw_words
        sliced = f", sliced into {counted(det.tiles_run, 'tile')} of {hw_words(det.slice.tile or det.imgsz)}"
    print(f"{where} -> {out} ({counted(len(results), 'detection')}{sliced}, {out / 'predictions.json'})"
          + (f"; {len(bad)} unreadable skipped" if bad else ""))
    if sizes is not None:
        made = f"dfine predict -m {args.model} --conf {det.conf:g}" + (
            f" --classes {' '.join(args.classes)}" if labels is not None else "")
        written = write_prelabels(out / PRELABELS, sizes, results, det, made, labels)
        use = (f"dfine data check {shlex.quote(str(written))}; dfine train --data {shlex.quote(str(written.parent))} "
               f"trains on it" if results else "no box to correct or train on: a lower --conf writes the model's best "
               "guesses (the note below names one)")
        print(f"pre-labels: {written} ({counted(len(sizes), 'image')}, {counted(len(results), 'box', 'boxes')} above "
              f"--conf {det.conf:g}; COCO, as labelling tools import it): {use}")
    if not results:
        print(nothing_found_note(det.conf, best, where), file=sys.stderr)
    per_image = len(results) / max(1, len(items) - len(bad)) if kind == "images" else 0
    # walks followed the hint above to a picture walled with an untrained model's boxes; not at the --conf its run
    # measured best (a dense walk's cells, 100 and more an image, read 'most are guesses' there)
    if per_image >= CROWDED and not (args.conf is None and det.recommended_conf is not None):
        print(f"note: {per_image:.0f} detections per image at --conf {det.conf:g}: most are guesses (a model that has "
              f"learned little, or a --conf far too low); a higher --conf keeps the sure ones (a run's end names the one "
              f"with the best F1 on its val set, when the model finds enough)", file=sys.stderr)
    elif full:  # a dense picture at a sure --conf: the model's limit, not the objects' count (a walk's 326 cells: 300)
        print(f"note: {counted(len(full), 'image')} ({first_few([p.name for p, _ in full], 3)}) got all "
              f"{full[0][1]} detections the model gives an image, each above --conf {det.conf:g}: there may be "
              f"more objects than it can report; --slice (tiles), or a model trained with more queries "
              f"({queries_override()})", file=sys.stderr)
    return 0


#: The highest score below which the model is called young in the no-detection note
LOW_SCORE = 0.2


def nothing_found_note(conf: float, best: Optional[float], where: str) -> str:
    """The line said when no detection scored above ``conf``: the highest score seen (``best``;
    None when unknown) and a --conf that keeps it."""
    head = f"note: no detection scored above --conf {conf:g} in {where}"
    if best is None:
        return f"{head}; try a lower --conf (e.g. --conf {conf / 2:g})"
    lower = round(best, 2) - 0.01  # a hundredth below the score as shown: below the score itself too
    if lower < 0.01:
        # a walk's 30-step model of exactly these images was asked 'is it the model for these images?'
        return (f"{head} (highest score {best:.3f}): the model sees nothing it knows here: it has trained too "
                f"little (see its val mAP), or on other kinds of images")
    if best < LOW_SCORE:  # a walk followed 'to see it' to 351 boxes on 6 images: scores this low are flat
        return (f"{head} (highest score {score_below(best, conf)}); try --conf {lower:.2f} to see its best guesses: "
                f"scores this low are a model that has learned little yet (or not of these images), and many boxes "
                f"come near them")
    return f"{head} (highest score {score_below(best, conf)}); try --conf {lower:.2f} to see it"


def collect_sources(sources: Union[str, Sequence[str]]) -> Tuple[str, List[Path]]:
    """:func:`collect_source` of each of ``sources``: their images in the order given (a file
    named twice, or by a folder and by itself, counted once), or ``("video", [path])`` for one
    video alone. One-line errors for a video among other sources and for two images of one file
    name (their annotated copies would overwrite each other in the output folder)."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    found = [(source, *collect_source(source)) for source in sources]
    videos = [source for source, kind, _ in found if kind == "video"]
    if videos and len(sources) > 1:
        raise DfineError(f"{videos[0]} is a video: predict a video alone (dfine predict {videos[0]} ...), "
                         f"not with other sources")
    if videos:
        return "video", found[0][2]
    images: Dict[Path, Path] = {}
    for _, _, paths in found:
        for path in paths:
            images.setdefault(path.resolve(), path)
    by_name: Dict[str, Path] = {}
    for path in images.values():
        other = by_name.setdefault(path.name, path)
        if other is not path:
            raise DfineError(f"{other} and {path} have the same file name, and their annotated copies would overwrite "
                             f"each other in the output folder; predict them in separate runs (-o)")
    return "images", list(images.values())


def collect_source(source: str) -> Tuple[str, List[Path]]:
    """``("images", [paths])`` or ``("video", [path])``; one-line errors for what cannot be read."""
    path = Path(source)
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if p.is_file())
        files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise DfineError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})"
                             f"{_not_read(entries, '; ')}{_videos_left(entries, '; ')}{_images_below(path)}")
        _say_not_read(entries, str(path))
        return "images", files
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return "video", [path]
        if suffix in IMAGE_SUFFIXES:
            return "images", [path]
        raise DfineError(f"unsupported file type {path.suffix or '(none)'} for {path}; images: "
                         f"{' '.join(IMAGE_SUFFIXES)}; videos: {' '.join(VIDEO_SUFFIXES)}")
    if glob.has_magic(source):
        matched = sorted(Path(p) for p in glob.glob(source, recursive=True))
        files = [p for p in matched if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise DfineError(f"no images match {source}{_not_read(matched, '; ')}{_videos_left(matched, '; ')}")
        _say_not_read(matched, source)
        return "images", files
    from ..text import did_you_mean
    raise DfineError(f"source {source} not found{did_you_mean(source)}")


def _images_below(folder: Path) -> str:
    """``"; its subfolders hold them: images/ 200; predict one (dfine predict FOLDER/images) or all
    (dfine predict 'FOLDER/**/*.jpg')"`` for a folder whose images sit in subfolders (a dataset
    folder given instead of its images folder), else ``""``."""
    counts: Dict[str, int] = {}
    suffixes: Dict[str, int] = {}
    holders: Dict[Path, int] = {}  # the folders that hold images themselves, of the first subfolder with any
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sub.rglob("*"):
            ext = f.suffix.lower()
            if ext in IMAGE_SUFFIXES and f.is_file():
                counts[sub.name] = counts.get(sub.name, 0) + 1
                suffixes[ext] = suffixes.get(ext, 0) + 1
                if len(counts) == 1:
                    holders[f.parent] = holders.get(f.parent, 0) + 1
    if not counts:
        return ""
    shown = first_few((f"{name}/ {n}" for name, n in counts.items()), 4)
    # the folder that holds the images (test/images of a split folder), not one more folder without any (a walk)
    first = max(sorted(holders), key=holders.get)
    common = max(suffixes, key=suffixes.get)
    return (f"; its subfolders hold images ({shown}): predict one (dfine predict {first}) or all "
            f"(dfine predict '{folder}/**/*{common}')")


# Image formats that phones and cameras write and that are not read here (HEIC: the iPhone's default).
_UNREAD_IMAGE_SUFFIXES = (".heic", ".heif", ".avif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf",
                          ".rw2", ".gif", ".jp2")


def _not_read(paths: Sequence[Path], lead: str = "") -> str:
    """``lead`` + what of ``paths`` is an image format not read (named, with what to do), else ''."""
    unread = [p for p in paths if p.suffix.lower() in _UNREAD_IMAGE_SUFFIXES]
    if not unread:
        return ""
    kinds = ", ".join(sorted({p.suffix.lower() for p in unread}))
    names = first_few((p.name for p in unread), 3)
    return (f"{lead}{counted(len(unread), 'file')} in a format not read here ({kinds}: {names}); "
            f"convert them to JPEG or PNG")


def _videos_left(paths: Sequence[Path], lead: str = "") -> str:
    """``lead`` + the videos among ``paths`` and how to predict them (each alone), else ''."""
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()]
    if not videos:
        return ""
    return (f"{lead}{counted(len(videos), 'video')} ({first_few((p.name for p in videos), 3)}): a video is predicted "
            f"alone, e.g. dfine predict {shlex.quote(str(videos[0]))}")


def _say_not_read(paths: Sequence[Path], where: str) -> None:
    """A note on stderr naming what of ``where`` is left out: images in a format not read, and videos
    (a walk's folder of two videos and an image gave '1 image' without a word of them)."""
    for text in (_not_read(paths), _videos_left(paths)):
        if text:
            print(f"note: {where}: left out {text}", file=sys.stderr)


def image_id(path: Path, index: int) -> int:
    """COCO image id of ``path``: its stem as a number (``000000000009.jpg`` -> 9), else ``index``."""
    return int(path.stem) if path.stem.isdigit() else index


def coco_image_ids(paths: Sequence[Path], ann_file: Optional[Path] = None) -> Tuple[Dict[Path, int], List[Path]]:
    """The image ids a COCO file beside the images, or one folder up, gives them (a Roboflow split's
    ``_annotations.coco.json`` beside its images or above its ``images/``: the one ``.json`` of the folder
    whose ``images`` name them), or the published COCO layout's (``annotations/instances_val.json`` for
    ``images/val``, ``annotations/instances_val2017.json`` for ``val2017``), so that
    ``predictions.json`` scores against that file; and the files read. Images of a folder without
    such a file are not in the mapping. ``ann_file`` (``--ann-file``): that file's ids, by file name,
    for images wherever they are; a :class:`DfineError` when it is no COCO file or names none of them."""
    import json

    if ann_file is not None:
        return _ids_from(ann_file, paths), [ann_file]
    from ..data.convert import file_names_in
    ids: Dict[Path, int] = {}
    used: List[Path] = []
    for folder in dict.fromkeys(p.parent for p in paths):
        names = {p.name for p in paths if p.parent == folder}
        for found in _coco_files_of(folder):
            # several .json files (the demo's data/: spec.json, train.json, val.json for val/, whose ids were
            # the positions, unsaid): the one named after the folder first, each taken when it names the images
            found = sorted(found, key=lambda f: f.stem != folder.name)
            if len(found) > 1:  # read one after another, the first that names them taken (train.json may be large)
                found = next(([f] for f in found if names & {Path(n).name for n in file_names_in(f)}), [])
            if len(found) != 1:
                continue
            try:
                data = json.loads(found[0].read_text(encoding="utf-8"))
                by_name = {Path(str(im["file_name"])).name: int(im["id"]) for im in data["images"]}
            except (OSError, ValueError, TypeError, KeyError):
                continue  # not a COCO file: the ids stay the file names' numbers or positions
            mine = {p: by_name[p.name] for p in paths if p.parent == folder and p.name in by_name}
            if mine:
                ids.update(mine)
                used.append(found[0])
                break
    return ids, used


def _coco_files_of(folder: Path) -> Iterator[List[Path]]:
    """The ``.json`` files that may list the images of ``folder``, nearest first: those beside them, one
    folder up (Roboflow's ``{split}/images/``), then the published COCO layout's ``annotations/`` one or
    two folders up, the files named after the folder (``instances_val.json`` for ``images/val``: a walk's
    predictions.json numbered 170 of 171 images by position there)."""
    for candidate in (folder, folder.parent):
        yield sorted(f for f in candidate.glob("*.json") if f.name != "predictions.json")
    from ..data.convert.coco import split_folders
    for ann_dir in (folder.parent / "annotations", folder.parent.parent / "annotations"):
        # a split's file whose images folder this is: custom_val.json for val2017/ (a walk's ids were positions)
        yield sorted(f for f in ann_dir.glob("*.json") if f.stem.endswith(f"_{folder.name}") or (
            folder.name.lower() != "images" and folder in split_folders(f)))


def _ids_from(ann_file: Path, paths: Sequence[Path]) -> Dict[Path, int]:
    """``--ann-file``'s image ids of ``paths``, matched by file name (the JSON's ``file_name`` may hold
    a folder)."""
    import json

    try:
        data = json.loads(ann_file.read_text(encoding="utf-8"))
        by_name = {Path(str(im["file_name"])).name: int(im["id"]) for im in data["images"]}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise DfineError(f"--ann-file {ann_file}: not a COCO file with an 'images' list of file_name and id "
                         f"({type(exc).__name__}: {exc})") from None
    ids = {p: by_name[p.name] for p in paths if p.name in by_name}
    if not ids:
        raise DfineError(f"--ann-file {ann_file} lists none of the {counted(len(paths), 'image')} given (e.g. "
                         f"{paths[0].name}; it lists {first_few(sorted(by_name), 2) or 'no images'})")
    return ids


def named_results(dets, image_id: int, file_name: Optional[str] = None) -> List[Dict[str, Any]]:
    """``dets.to_coco(image_id)`` with each entry's class name and the image's file name beside
    the ids: an image id made from a position, or a category id, says nothing to a reader of the
    file (COCO tools ignore the extra keys)."""
    file = {} if file_name is None else {"file_name": file_name}
    return [{"image_id": entry.pop("image_id"), **file, "category_id": entry.pop("category_id"), "category_name": name,
             **entry} for entry, name in zip(dets.to_coco(image_id), dets.names)]


def _highest(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return b if a is None else a if b is None else max(a, b)


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict_images(det, paths: Sequence[Path], out: Path, progress: bool = True,
                   sizes: Optional[Dict[Path, Tuple[int, int, int]]] = None, ann_file: Optional[Path] = None,
                   full: Optional[List[Tuple[Path, int]]] = None, labels: Optional[np.ndarray] = None,
                   drawn_labels: Union[str, int] = "auto"
                   ) -> Tuple[List[Dict[str, Any]], List[Tuple[Path, str]], Optional[float]]:
    """Detect in ``paths``; write annotated copies to ``out``. Returns (COCO results, unreadable files,
    the highest score seen: :func:`detect`). A single unreadable image is an error; in a batch of files
    it is skipped and reported. ``sizes``, when given, gets each read image's ``(image id, width,
    height)`` (as displayed: EXIF orientation applied, as training reads it). ``labels``: the model labels
    kept (``--classes``), None for all; ``drawn_labels``: ``--labels`` (:func:`dfine.drawing.label_px`)."""
    from ..inference import detect, load_image
    results: List[Dict[str, Any]] = []
    bad: List[Tuple[Path, str]] = []
    best: Optional[float] = None
    ids = {p: image_id(p, i) for i, p in enumerate(paths)}
    given, files = coco_image_ids(paths, ann_file)
    if given and len(set(given.values())) == len(given):
        # the images the file does not list (a walk's folder held copies beside the 80 listed) get ids above
        # its largest, so that none takes the id of a listed image (they all had positions, clashing with it)
        others = [p for p in paths if p not in given]
        top = max(given.values())
        ids = {**given, **{p: top + 1 + i for i, p in enumerate(others)}}
        more = (f"; {counted(len(others), 'image')} it does not list got ids from {top + 1} up" if others else "")
        print(f"image ids of predictions.json from {first_few([str(f) for f in files], 2)}, so it scores against "
              f"{'that file' if len(files) == 1 else 'those files'}{more}", file=sys.stderr)
    with progress_bar(total=len(paths), unit="img", disable=not progress) as bar:
        for chunk in _batches(list(paths), det.batch_size):
            images, good = [], []
            for p in chunk:
                try:
                    images.append(load_image(p))
                    good.append(p)
                except DfineError as e:
                    if len(paths) == 1:
                        raise
                    bad.append((p, str(e)))
            if images:
                at_limit: List[int] = []
                found, seen = detect(det, images, [str(p) for p in good], full=at_limit, labels=labels)
                found = [d.of_labels(labels) for d in found]
                best = _highest(best, seen)
                if full is not None:
                    full += [(good[i], len(found[i])) for i in at_limit]
                for p, im, dets in zip(good, images, found):
                    if sizes is not None:
                        sizes[p] = (ids[p], im.width, im.height)
                    empty = f"no detection above --conf {det.conf:g}"
                    draw(im, dets, empty=empty, labels=drawn_labels).save(out / p.name)
                    results.extend(named_results(dets, ids[p], p.name))
            bar.update(len(chunk))
    if len(bad) == len(paths):
        raise DfineError(f"none of the {counted(len(paths), 'image')} could be read (first: {bad[0][0]}: {bad[0][1]})")
    return results, bad, best


#: The COCO dataset ``--save-dataset`` writes into the output folder
PRELABELS = "annotations.json"


def write_prelabels(path: Path, sizes: Dict[Path, Tuple[int, int, int]], results: Sequence[Dict[str, Any]],
                    det: Any, made_by: str, labels: Optional[np.ndarray] = None) -> Path:
    """Write the images of ``sizes`` (``{path: (image id, width, height)}``) and the detections of
    ``results`` (COCO results of those ids, xywh pixels) as a COCO dataset at ``path``: the images'
    file names relative to their common folder, which ``info.images_folder`` names (so that the
    annotated copies beside ``path`` are never taken for the images), every class of the model as
    a category (those of ``labels`` alone, ``--classes``), each box with its ``score``."""
    from ..data.convert import PRELABELS_DESCRIPTION, info_for
    from ..data.objects365 import write_json_atomic
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in sizes]))
    images = [{"id": i, "file_name": p.resolve().relative_to(root).as_posix(), "width": w, "height": h}
              for p, (i, w, h) in sorted(sizes.items(), key=lambda item: item[1][0])]
    annotations = [{"id": k, "image_id": r["image_id"], "category_id": r["category_id"],
                    "bbox": [round(float(v), 2) for v in r["bbox"]], "area": round(float(r["bbox"][2] * r["bbox"][3]), 2),
                    "iscrowd": 0, "score": round(float(r["score"]), 4)} for k, r in enumerate(results, 1)]
    engine = det._engine
    categories = [{"id": int(c), "name": n, "supercategory": ""} for k, (c, n) in
                  enumerate(zip(engine.category_ids, engine.class_names)) if labels is None or k in labels]
    info = {**info_for(path.parent, root, "", root), "description": f"{PRELABELS_DESCRIPTION} {made_by}"}
    write_json_atomic({"info": info, "images": images, "annotations": annotations, "categories": categories}, path)
    return path


# ---- video ----------------------------------------------------------------------------------

def predict_video(det, path: Path, out: Path, labels: Optional[np.ndarray] = None,
                  drawn_labels: Union[str, int] = "auto") -> Tuple[List[Dict[str, Any]], Optional[float]]:
    """Detect in every frame of ``path`` (decoded in a reader thread); write the annotated video to
    ``out/<stem>.mp4`` (:class:`dfine.video.VideoWriter`: ``<stem>.partial.mp4`` until it is complete,
    playable even after a kill). Returns the COCO results (the frame index as image id) and the
    highest score seen (:func:`detect`). A file cut short ends with the frames it had and a one-line
    warning."""
    from ..inference import detect
    from ..video import FrameReader, VideoWriter, open_source, truncation_note
    source = open_source(path)
    writer = VideoWriter(out / f"{path.stem}.mp4", source.fps,
                         draw=lambda im, dets: np.asarray(draw(im, dets, labels=drawn_labels)))
    results: List[Dict[str, Any]] = []
    best: Optional[float] = None
    complete = False
    try:
        with FrameReader(source) as reader, progress_bar(total=source.total or None, unit="frame") as bar:
            for chunk in reader.batches(det.batch_size):
                images = [Image.fromarray(f) for f in chunk]
                found, seen = detect(det, images, labels=labels)
                best = _highest(best, seen)
                for im, dets in zip(images, (d.of_labels(labels) for d in found)):
                    writer.write(im, dets)
                    results.extend(named_results(dets, writer.frames - 1))
                bar.update(len(chunk))
        complete = True
    finally:
        writer.close(complete=complete)
    if writer.frames == 0:
        raise DfineError(f"cannot read any frame of video {path}")
    for note in (truncation_note(source), writer.size_note()):
        if note:
            print(note, file=sys.stderr)
    return results, best
