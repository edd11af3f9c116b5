"""``dfine data convert|check|tile``: bring a YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset into COCO form,
check a dataset, cut a dataset of large images into tiles.

``dfine data convert --from yolo|voc|cvat|labelme|csv|createml|coco SRC [-o OUT] [--names a,b,c]`` writes
``OUT/annotations/instances_{train,val,test}.json`` (OUT defaults to SRC) and prints the
command that trains on it. ``dfine data check ANN.json --images DIR [--fix OUT.json] [--plot
PNG] [--deep]`` reports every problem with counts and the first ids; exit 0 when training can
use the file as it is, 1 when it has errors. ``dfine data check DATASET`` checks every split of a
dataset folder as ``dfine train --data`` reads it (the formats other than COCO converted into a temporary
folder; the dataset is never written). ``dfine data tile SRC [-o OUT] [--size N]`` cuts every split's
images and boxes into tiles of the model's input size, for small objects in large images
(:mod:`dfine.data.tile`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Set, Tuple

__all__ = ["add_parser", "run_convert", "run_check", "run_tile"]

#: ``dfine.data.convert.FORMATS``, written out: importing the converters (numpy, PIL) for every
#: ``dfine`` command line would slow ``dfine --help``
_FORMATS = ("yolo", "voc", "cvat", "labelme", "csv", "createml", "coco")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data`` with its ``convert`` and ``check`` subcommands."""
    data = subparsers.add_parser("data", help="convert YOLO / VOC / CVAT / LabelMe / CSV / CreateML datasets to COCO, "
                                              "check a dataset, cut large images into tiles",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = data.add_subparsers(dest="data_command", metavar="{convert,check,tile}")
    conv = sub.add_parser("convert", help="YOLO, VOC, CVAT, LabelMe, CSV or CreateML -> COCO JSON (images stay where "
                                          "they are)")
    conv.add_argument("--from", dest="fmt", required=True, choices=_FORMATS,
                      help="source format (cvat: a 'CVAT for images 1.1' export; labelme: a folder of LabelMe "
                           "JSONs, one per image; csv: filename,class,xmin,ymin,xmax,ymax tables; createml: CreateML "
                           "JSON; coco: one COCO file for all images, split into train and val)")
    conv.add_argument("src", help="the dataset folder (or a YOLO data.yaml, a CVAT annotations.xml, a COCO JSON)")
    conv.add_argument("-o", "--out", help="write OUT/annotations/instances_*.json (default: in SRC)")
    conv.add_argument("--names", help="class names, comma-separated, in class-id order (when no names file exists)")
    conv.add_argument("--val-fraction", type=float, default=None,
                      help="share of train images that become val when the source has no val split (default 0.2)")
    conv.add_argument("--seed", type=int, default=None, help="seed of that split (default 0)")
    conv.set_defaults(func=run_convert)
    check = sub.add_parser("check", help="report every problem of a dataset; --fix writes a repaired copy")
    check.add_argument("ann_file", metavar="ANN_FILE_OR_DATASET",
                       help="a COCO annotation JSON, or a dataset folder (COCO, YOLO, VOC, CVAT, LabelMe, CSV or "
                            "CreateML, as dfine train --data takes it: every split is checked)")
    check.add_argument("--names", help="class names, comma-separated, in class-id order (a YOLO folder that names "
                                       "none)")
    check.add_argument("--images", help="the folder the file names are relative to (default: the one a converted "
                                        "file names, else the annotation file's folder when it holds images)")
    check.add_argument("--fix", metavar="OUT.json", help="write a repaired copy here and list each change")
    check.add_argument("--plot", metavar="PNG", help="picture of class counts, box centres and box sizes "
                       "(a folder: labels.png in it), and one of sample images with their boxes beside it")
    check.add_argument("--deep", action="store_true", help="decode every pixel (default: image headers only)")
    check.add_argument("--workers", type=int, default=8, help="threads reading images (default 8)")
    check.add_argument("--imgsz", type=int, default=None, metavar="N",
                       help="also count small / medium / large boxes as the model sees them at N x N input "
                            "(default 640, the recipes' size, or the tile size of a dfine data tile folder; as "
                            "dfine train --imgsz)")
    check.set_defaults(func=run_check)
    tile = sub.add_parser("tile", help="cut a dataset's images and boxes into tiles (small objects in large images: "
                                       "train on tiles, predict with --slice)")
    tile.add_argument("src", help="the dataset folder, in any format dfine train --data reads (every split is tiled)")
    tile.add_argument("-o", "--out", help="the folder of the tiles (default: SRC_tilesN beside SRC)")
    tile.add_argument("--size", type=_sides, nargs="+", default=[[640]], metavar="N",
                      help="tile size in image pixels: N (square) or H W, or HxW (default 640, the recipes' --imgsz)")
    tile.add_argument("--overlap", type=float, default=0.2,
                      help="fraction of a tile shared with its neighbour, as predict --slice (default 0.2)")
    tile.add_argument("--min-visible", type=float, default=0.5,
                      help="fraction of a box's area a tile must hold to keep the box; a smaller piece is marked "
                           "crowd (ignored by training and evaluation) (default 0.5)")
    tile.add_argument("--empty", type=float, default=1.0,
                      help="fraction of train tiles without a box to keep as background, seeded; val and test "
                           "keep every tile (default 1: all; a note names a fraction when most are background)")
    tile.add_argument("--seed", type=int, default=0, help="seed of --empty's choice (default 0)")
    tile.add_argument("--names", help="class names, comma-separated, in class-id order (a YOLO folder that names "
                                      "none)")
    tile.add_argument("--workers", type=int, default=None, help="threads cutting images (default: one per core, "
                                                                 "at most 8)")
    tile.add_argument("--no-progress", action="store_true", help="no progress bar")
    tile.set_defaults(func=run_tile)
    data.set_defaults(func=lambda args: data.print_help() or 2)


def split_names(text: Optional[str]) -> Optional[List[str]]:
    """``--names a,b,c`` as a list of names (None when not given); a name given twice is a one-line
    error (it made two classes of one name, and training then dropped one, reordering the others)."""
    names = [n.strip() for n in text.split(",") if n.strip()] if text else None
    return check_names(names) if names else None


def check_names(names: List[str], option: str = "--names") -> List[str]:
    """``names`` when no name repeats; ``DfineError`` naming the repeated ones otherwise (``option``: how
    the caller gave them, ``--names`` or ``names=`` of ``dfine.train``)."""
    from dfine.errors import DfineError

    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DfineError(f"{option} gives {', '.join(repr(n) for n in repeated)} more than once: each class once, in "
                         f"class-id order")
    return names


def run_convert(args: argparse.Namespace) -> int:
    """Convert and print the summary with the training command."""
    names = split_names(args.names)
    from dfine.data.archive import dataset_folder
    from dfine.errors import DfineError
    from dfine.data.convert import converter, written_files
    convert = converter(args.fmt)
    args.src = dataset_folder(args.src, "dfine data convert")
    if args.out is not None:  # a file there: one line before the conversion (a walk's traceback from the writing)
        from dfine.outputs import refuse_file_in_path
        refuse_file_in_path(Path(args.out))
    with written_files() as written:
        try:
            result = convert(args.src, args.out, names=names,
                             val_fraction=0.2 if args.val_fraction is None else args.val_fraction,
                             seed=0 if args.seed is None else args.seed)
        except KeyboardInterrupt:
            if written:  # each file is whole, but the set is not: say which, so nothing reads half a conversion
                print(f"interrupted after writing {', '.join(map(str, written))}: the conversion is incomplete; "
                      f"run the command again", file=sys.stderr)
            raise
        except DfineError as err:
            found = _other_format(Path(args.src), args.fmt)
            if found is None:
                raise
            out = f" -o {shlex.quote(str(args.out))}" if args.out is not None else ""
            from dfine.recipes import as_is, format_words
            shown, given = (format_words(f) for f in (found, args.fmt))
            src = shlex.quote(str(args.src))
            if found == "coco" and as_is(Path(args.src), "coco"):  # split files: --from coco (one file) refused them
                raise DfineError(f"{args.src} is a COCO dataset, not {given}, whose split files are read as they are: "
                                 f"dfine data check {src}, dfine train --data {src} (as {given}: {err})") from None
            # the folder's format first: a walk's --from yolo on a CVAT export read 'give --names a,b,c' first
            raise DfineError(f"{args.src} is a {shown} dataset, not {given}: dfine data convert --from {found} "
                             f"{src}{out} (as {given}: {err})") from None
    print(result.summary())
    from dfine.data.check import copies_across
    copies = copies_across({s: (f, result.images_folder) for s, f in result.ann_files.items()})
    if copies:  # a val split listing train images too, or photos copied under other names into another split
        print(copies)
    given = [f"{o} {v:g}" for o, v in (("--val-fraction", args.val_fraction), ("--seed", args.seed)) if v is not None]
    if given and not any("--val-fraction" in note for note in result.notes):
        # a walk's --val-fraction 0.2 on a VOC set with ImageSets/Main splits was dropped unsaid
        print(f"note: {' '.join(given)} not used: {args.src} has its own val split, which was kept", file=sys.stderr)
    return 0


def _sides(text: str) -> list:
    """``--size``'s words: ``640``, or ``256x400`` as the tiles' folder and messages write them (height x width)."""
    try:
        return [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size in pixels: N, H W or HxW, got {text!r}") from None


def _other_format(src: Path, given: str) -> Optional[str]:
    """The format ``dfine train --data`` reads ``src`` as, when it is not ``given`` (a walk's ``--from yolo`` on
    a VOC folder said to give --names); None when it is, or when none is found."""
    from dfine.errors import DfineError
    from dfine.recipes import detect_format
    try:
        found = detect_format(src, option="dfine data convert")
    except DfineError:
        return None
    return None if found == given else found


def run_tile(args: argparse.Namespace) -> int:
    """Tile every split of a dataset folder and print what each became."""
    from dfine.data.tile import TileConfig, tile_dataset
    from dfine.errors import DfineError

    sides = [v for given in args.size for v in given]
    if len(sides) > 2:
        raise DfineError(f"--size takes N or H W, got {' '.join(map(str, sides))}")
    size = (sides[0], sides[-1])
    if args.out is not None:
        from dfine.outputs import refuse_file_in_path
        refuse_file_in_path(Path(args.out))
    config = TileConfig(size=size, overlap=args.overlap, min_visible=args.min_visible, empty=args.empty,
                        seed=args.seed)
    tile_dataset(args.src, args.out, config, names=split_names(args.names), workers=args.workers,
                 progress=not args.no_progress)
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Check (and fix, plot); 0 when training can use the file as it is, else 1."""
    from dfine.data.check import check_dataset, default_images, fix_dataset, plot_backend, plot_report
    from dfine.errors import DfineError

    if args.imgsz is not None:
        _check_imgsz(args.imgsz)  # a bad value said before the images are read
    if args.plot:
        args.plot = str(_plot_path(args.plot))
        plot_backend()  # missing matplotlib said before the check, not after it
    from dfine.data.archive import dataset_folder
    source = dataset_folder(args.ann_file, "dfine data check")  # a downloaded .zip: unpacked beside it
    if source.is_dir() or source.suffix.lower() in (".yaml", ".yml", ".xml", ".data", ".csv", ".txt"):
        return _check_dataset_folder(source, args)
    from dfine.data.convert.labelme import dataset_of, is_labelme_file
    if is_labelme_file(source):  # one image's shapes: "not COCO format: no 'images' list" said nothing useful
        raise DfineError(f"{source} is a LabelMe file (one image's shapes): check its dataset folder, as dfine train "
                         f"--data reads it: dfine data check {shlex.quote(str(dataset_of(source)))}")
    if args.names:
        raise DfineError(f"--names is for a dataset folder that names no classes; {args.ann_file} names its own")
    images = args.images or default_images(args.ann_file)
    from dfine.data.convert import prelabels_note, uncorrected_prelabels
    made = uncorrected_prelabels(source)
    if made:  # as the folder's conversion says it
        print(f"note: {prelabels_note(source.name, made)}")
    report = check_dataset(args.ann_file, images, level="deep" if args.deep else "headers",
                           workers=args.workers, progress=True, empty_is_error=True)
    print(report.format(imgsz=_imgsz_for(args.imgsz, args.ann_file)))
    if args.plot:
        print(f"plot: {plot_report(report, args.plot)}")
        _plot_samples(args.ann_file, images, Path(args.plot), None)
    if args.fix:
        changes = fix_dataset(args.ann_file, images, args.fix, report=report, workers=args.workers)
        from dfine.text import counted
        print(f"fixed copy: {args.fix} ({counted(len(changes), 'change')})")
        for line in changes:
            print(f"  {line}")
    return 0 if report.ok else 1


PLOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def _plot_path(text: str) -> Path:
    """``--plot``'s picture: a folder (one that is there, or a name ending in ``/``) gets ``labels.png`` in it,
    not ``FOLDER_train.png`` beside it (a walk's ``--plot plots/``); a file needs a suffix matplotlib writes."""
    from dfine.errors import DfineError
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        return path / "labels.png"
    if path.suffix and path.suffix.lower() not in PLOT_SUFFIXES:
        raise DfineError(f"--plot {text}: give a picture file ({', '.join(PLOT_SUFFIXES)}) or a folder")
    return path


def _plot_samples(ann: Any, images: Any, plot: Path, title: Optional[str]) -> None:
    """Beside the labels picture ``plot``, ``STEM_samples.png``: images with their boxes drawn."""
    from dfine.data.check import plot_samples
    written = plot_samples(ann, images, plot.with_name(f"{plot.stem}_samples{plot.suffix or '.png'}"), title)
    if written is not None:
        print(f"images with their boxes: {written}")


def _said_once(report: Any, strays: Set[Tuple[str, Tuple[Any, ...]]]) -> Any:
    """``report`` without its "unreferenced" warning when an earlier split of the same images folder
    gave the very same files (a second export nested in a YOLO folder was listed under every split);
    ``strays`` holds the (folder, files) already said."""
    found = report.findings.get("unreferenced")
    if found is None:
        return report
    key = (report.images_dir, tuple(found.ids))
    if key not in strays:
        strays.add(key)
        return report
    return dataclasses.replace(report, findings={k: v for k, v in report.findings.items() if k != "unreferenced"})


def _imgsz_for(given: Optional[int], ann_file: Any) -> int:
    """The ``--imgsz`` the check counts box sizes at: the one given, else a tiling's tile size (its
    printed train command's; a walk's 320 px tiles were counted at 640, twice their size), else 640."""
    if given is not None:
        return given
    from dfine.data.tile import tiles_info
    size = (tiles_info(ann_file) or {}).get("size")
    return int(max(size)) if isinstance(size, list) and len(size) == 2 else 640


def _check_imgsz(n: int) -> None:
    """``--imgsz``, checked as ``dfine train`` checks it."""
    from dfine.errors import DfineError

    if n < 32 or n % 32:
        raise DfineError(f"--imgsz must be a positive multiple of 32 (as dfine train takes it), got {n}")


def _check_dataset_folder(root: Path, args: argparse.Namespace) -> int:
    """``dfine data check DATASET``: each split of the dataset found as ``dfine train --data`` finds
    it (a folder of another format than COCO converted into a temporary folder), checked and reported in turn;
    ``--plot labels.png`` draws ``labels_{split}.png``. 0 when training can use every split, else 1."""
    from dfine.data.check import check_dataset, plot_report
    from dfine.errors import DfineError
    from dfine.recipes import as_is, dataset_splits, detect_format, missing_split

    given = f"dfine data check {args.ann_file}"
    if args.images:
        raise DfineError(f"--images is for one annotation file; {args.ann_file} is a dataset, whose splits name "
                         f"their images folders")
    if args.fix:  # the folder's own format named (a walk's LabelMe folder was told of YOLO, VOC or CVAT ones)
        try:
            found = detect_format(root, option="dfine data check")
        except DfineError:
            found = "coco"
        from dfine.recipes import format_words
        convert = ("" if found == "coco" else f" (a {format_words(found)} folder: dfine data convert --from {found} "
                                              f"{shlex.quote(str(args.ann_file))} first)")
        raise DfineError(f"--fix writes one repaired annotation file: give it one split's COCO file{convert}, not the "
                         f"dataset {args.ann_file}")
    fmt = detect_format(root, option="dfine data check")
    kept = as_is(root, fmt)  # COCO split files checked where they are; the others converted for the check
    results, strays = {}, set()
    with tempfile.TemporaryDirectory(prefix="dfine-check-") as tmp:
        splits, notes = dataset_splits(root, fmt, Path(tmp), names=split_names(args.names), temporary="check")
        if not splits:
            raise DfineError(f"{given}: no split found in it")
        for note in notes:
            print(note)
        for split, (ann, images) in splits.items():
            print(f"\n{split}:", flush=True)  # before the progress bar
            report = check_dataset(ann, images, level="deep" if args.deep else "headers", workers=args.workers,
                                   progress=True, empty_is_error=True)
            if not kept:  # the converted file lives in the temporary folder: name the split instead
                report = dataclasses.replace(report, ann_file=f"{split} split of {root}")
            report = _said_once(report, strays)
            print(report.format(fix=_folder_fix(fmt, kept, root, split, ann, args.names),
                                imgsz=_imgsz_for(args.imgsz, ann), data=str(root)))
            if args.plot:
                plot = Path(args.plot)
                path = plot.with_name(f"{plot.stem}_{split}{plot.suffix or '.png'}") if len(splits) > 1 else plot
                print(f"plot: {plot_report(report, path, title=f'{split} split of {root.name}')}")
                _plot_samples(ann, images, path, f"{split} split of {root.name}")
            results[split] = report
    across, disjoint = _classes_across(results)
    if across:
        print("\n" + across)
    # a split training needs and the folder lacks (a walk's conversion stopped before instances_val.json) is said;
    # not an error (a val-only folder serves dfine eval)
    missing = [need for need in ("train", "val") if need not in results]
    for need in missing:
        print(f"\n{missing_split(root, need, splits, fmt)} (training needs it)")
    if disjoint:
        print(f"\nerror: {disjoint}")
    print("\n" + "; ".join([f"{split}: {'OK' if r.ok else 'errors'}" for split, r in results.items()]
                           + [f"{need}: missing (training needs it)" for need in missing]
                           + (["train and val: no class in common"] if disjoint else [])))
    return 0 if all(r.ok for r in results.values()) and not disjoint else 1


def _classes_across(reports: Any) -> Tuple[str, Optional[str]]:
    """The notes on classes that training will not both learn and measure, as its start says them (a walk's
    3-image LabelMe set put its only bottle in val, unsaid by the check), ``""`` when none or no train and val;
    and the error when train and val share no class (:func:`~dfine.text.no_class_in_common`), else None.
    A class with a box in neither split is the train report's own table's to show."""
    if "train" not in reports or "val" not in reports:
        return "", None
    from dfine.text import class_coverage_notes, no_class_in_common
    names = {cid: name for split in ("train", "val") for cid, name, _, _ in reports[split].categories}
    boxes = {split: {cid: n for cid, _, _, n in reports[split].categories} for split in ("train", "val")}
    ids = [c for c in names if boxes["train"].get(c) or boxes["val"].get(c)]
    counts = ([names[c] for c in ids], [boxes["train"].get(c, 0) for c in ids], [boxes["val"].get(c, 0) for c in ids])
    return "\n".join(class_coverage_notes(*counts)), no_class_in_common(*counts)


def _folder_fix(fmt: str, kept: bool, root: Path, split: str, ann: Path, names: Optional[str]) -> str:
    """How to repair one split of a dataset folder: ``--fix`` of its COCO file (``kept``: read where
    it is), or for a YOLO, VOC, CVAT folder or one COCO file the conversion, then ``--fix`` of the
    converted file."""
    if kept:
        fixed = ann.with_name(f"{ann.stem}_fixed.json")
        return f"dfine data check {shlex.quote(str(ann))} --fix {shlex.quote(str(fixed))} writes a repaired copy"
    out = f"{root.name}_coco"
    named = f" --names {shlex.quote(names)}" if names else ""
    return (f"to repair: dfine data convert --from {fmt} {shlex.quote(str(root))} -o {out}{named}, then dfine data "
            f"check {out}/annotations/instances_{split}.json --fix {out}/annotations/instances_{split}_fixed.json")
