"""``dfine data convert|check``: bring a YOLO, VOC or CVAT dataset into COCO form, and check a COCO dataset.

``dfine data convert --from yolo|voc|cvat SRC [-o OUT] [--names a,b,c]`` writes
``OUT/annotations/instances_{train,val,test}.json`` (OUT defaults to SRC) and prints the
command that trains on it. ``dfine data check ANN.json --images DIR [--fix OUT.json] [--plot
PNG] [--deep]`` reports every problem with counts and the first ids; exit 0 when training can
use the file as it is, 1 when it has errors.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

__all__ = ["add_parser", "run_convert", "run_check"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data`` with its ``convert`` and ``check`` subcommands."""
    data = subparsers.add_parser("data", help="convert YOLO / VOC / CVAT datasets to COCO, check a COCO dataset",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = data.add_subparsers(dest="data_command", metavar="{convert,check}")
    conv = sub.add_parser("convert", help="YOLO, VOC or CVAT -> COCO JSON (images stay where they are)")
    conv.add_argument("--from", dest="fmt", required=True, choices=("yolo", "voc", "cvat"),
                      help="source format (cvat: a 'CVAT for images 1.1' export)")
    conv.add_argument("src", help="the dataset folder (or a YOLO data.yaml, a CVAT annotations.xml)")
    conv.add_argument("-o", "--out", help="write OUT/annotations/instances_*.json (default: in SRC)")
    conv.add_argument("--names", help="class names, comma-separated, in class-id order (when no names file exists)")
    conv.add_argument("--val-fraction", type=float, default=0.2,
                      help="share of train images that become val when the source has no val split (default 0.2)")
    conv.add_argument("--seed", type=int, default=0, help="seed of that split (default 0)")
    conv.set_defaults(func=run_convert)
    check = sub.add_parser("check", help="report every problem of a COCO dataset; --fix writes a repaired copy")
    check.add_argument("ann_file", help="COCO annotation JSON")
    check.add_argument("--images", help="the folder the file names are relative to (default: the one a converted "
                                        "file names, else the annotation file's folder when it holds images)")
    check.add_argument("--fix", metavar="OUT.json", help="write a repaired copy here and list each change")
    check.add_argument("--plot", metavar="PNG", help="picture of class counts, box centres and box sizes")
    check.add_argument("--deep", action="store_true", help="decode every pixel (default: image headers only)")
    check.add_argument("--workers", type=int, default=8, help="threads reading images (default 8)")
    check.set_defaults(func=run_check)
    data.set_defaults(func=lambda args: data.print_help() or 2)


def split_names(text: Optional[str]) -> Optional[List[str]]:
    """``--names a,b,c`` as a list of names (None when not given)."""
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def run_convert(args: argparse.Namespace) -> int:
    """Convert and print the summary with the training command."""
    names = split_names(args.names)
    from dfine.data.convert import converter
    convert = converter(args.fmt)
    result = convert(args.src, args.out, names=names, val_fraction=args.val_fraction, seed=args.seed)
    print(result.summary())
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Check (and fix, plot); 0 when training can use the file as it is, else 1."""
    from dfine.data.check import check_dataset, default_images, fix_dataset, plot_report

    images = args.images or default_images(args.ann_file)
    report = check_dataset(args.ann_file, images, level="deep" if args.deep else "headers",
                           workers=args.workers, progress=True)
    print(report.format())
    if args.plot:
        print(f"plot: {plot_report(report, args.plot)}")
    if args.fix:
        changes = fix_dataset(args.ann_file, images, args.fix, report=report, workers=args.workers)
        print(f"fixed copy: {args.fix} ({len(changes)} changes)")
        for line in changes:
            print(f"  {line}")
    return 0 if report.ok else 1
