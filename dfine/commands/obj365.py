"""``dfine obj365 split|resize --base-dir DIR``: prepare Objects365 as the published recipes expect.

``split`` moves all but the first 5000 val images into train (``new_zhiyuan_objv2_*.json``);
``resize`` shrinks images to a 640-pixel longer side and rescales the annotations
(``new_zhiyuan_objv2_*_resized.json``), in parallel, re-runnable. See :mod:`dfine.data.objects365`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("obj365", help="prepare the Objects365 dataset (split, resize)",
                              description=__doc__.splitlines()[0])
    steps = p.add_subparsers(dest="step", metavar="STEP", required=True)

    s = steps.add_parser("split", help="move val images beyond the first N into train",
                         description="Keep the first --new-val-size val images as val, add the rest to train: "
                                     "writes val/{prefix}_zhiyuan_objv2_val.json and train/{prefix}_zhiyuan_objv2_train.json.")
    _common(s)
    s.add_argument("--new-val-size", type=int, default=5000, help="images kept in val (default 5000)")
    s.add_argument("--link-val-images", action="store_true",
                   help="symlink train/images_from_val -> ../val/images instead of copying the val images there")
    s.add_argument("--force", action="store_true", help="redo the split even when both outputs exist")
    s.set_defaults(func=run_split)

    r = steps.add_parser("resize", help="shrink images to a longer side of --max-size, rescale annotations",
                         description="Resize train/val images whose longer side exceeds --max-size "
                                     "(<name>_resized.jpg) and write {prefix}_zhiyuan_objv2_{subset}_resized.json.")
    _common(r)
    r.add_argument("--max-size", type=int, default=640, help="longest image side in pixels (default 640)")
    r.add_argument("-w", "--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel processes (default: all CPUs; 0: none)")
    r.add_argument("--subsets", nargs="+", choices=("train", "val"), default=["train", "val"],
                   help="which splits to resize (default: train val)")
    r.set_defaults(func=run_resize)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-dir", required=True, type=Path,
                   help="Objects365 folder holding train/ and val/, e.g. /data/Objects365/data")
    p.add_argument("--prefix", default="new", help="name prefix of the new annotation files (default new)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run_split(args: argparse.Namespace) -> int:
    from ..data.objects365 import VAL_PREFIX, link_val_images, split_val
    summary = split_val(args.base_dir, args.new_val_size, args.prefix, force=args.force, progress=not args.quiet)
    print(summary)
    if args.link_val_images:
        link = link_val_images(args.base_dir)
        print(f"linked {link} -> ../val/images" if link else f"{args.base_dir / 'train' / VAL_PREFIX} exists; not linked")
    elif not (args.base_dir / "train" / VAL_PREFIX).exists():
        print(f"next: copy {args.base_dir / 'val' / 'images'}/* to {args.base_dir / 'train' / VAL_PREFIX}/ "
              f"(or re-run with --link-val-images), then `dfine obj365 resize --base-dir {args.base_dir}`")
    return 0


def run_resize(args: argparse.Namespace) -> int:
    from ..data.objects365 import resize_split
    for subset in args.subsets:
        print(resize_split(args.base_dir, subset, args.max_size, args.workers, args.prefix, progress=not args.quiet))
    return 0
