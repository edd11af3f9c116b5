"""``dfine fiftyone -m MODEL [--data DATASET | --images DIR --ann-file JSON]``: predictions vs ground truth in the
FiftyOne app.

The dataset is a dataset folder ``--data`` (any format ``dfine train --data`` reads; its val split, or
``--split``), ``--images`` + ``--ann-file`` (COCO format), ``--images`` alone (predictions only), or by
default the ``val_dataloader`` dataset of the recipe ``-c``. Needs ``pip install dfine[fiftyone]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ..errors import DfineError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fiftyone", help="view predictions and ground truth in the FiftyOne app",
                              description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("-m", "--model", "-r", "--resume", dest="model", required=True,
                   help="zoo name, checkpoint .pth, .onnx, OpenVINO .xml or .engine")
    p.add_argument("-c", "--config", help="model recipe yml; its val_dataloader is the default dataset")
    p.add_argument("--data", help="a dataset folder (COCO, YOLO, VOC, ... as dfine train --data reads it): its val "
                                  "split with its ground truth, or --split")
    p.add_argument("--split", choices=("train", "val", "test"), default="val", help="with --data: the split shown")
    p.add_argument("--names", help="with --data: class names of a YOLO folder that names none (a,b,c)")
    p.add_argument("--images", help="images folder of a COCO dataset, or a folder / glob of images")
    p.add_argument("--ann-file", help="COCO-format annotation JSON of --images (ground truth)")
    p.add_argument("-n", "--max-samples", type=int, default=100,
                   help="images drawn at random (default 100; 0: all)")
    p.add_argument("--seed", type=int, default=51, help="seed of that draw (default 51)")
    p.add_argument("--size", choices=("n", "s", "m", "l", "x"), help="model size of a published checkpoint")
    p.add_argument("-d", "--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("-b", "--batch-size", type=int, default=4, help="images per batch (default 4)")
    p.add_argument("--conf", type=float, default=None,
                   help="score threshold (default: the one the model's training run recommends; else 0.5)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N", help="input size: 640 or height width")
    p.add_argument("--name", default="dfine", help="FiftyOne dataset name, replaced if it exists (default dfine)")
    p.add_argument("--persistent", action="store_true", help="keep the dataset in FiftyOne's database")
    p.add_argument("--no-launch", action="store_true", help="only build the dataset, do not open the app")
    p.add_argument("--port", type=int, default=5151, help="app port (default 5151)")
    p.add_argument("--address", default=None, help="app address (default localhost)")
    p.add_argument("--remote", action="store_true", help="serve the app without opening a browser")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


@contextmanager
def _dataset_paths(args: argparse.Namespace) -> Iterator[Tuple[Optional[str], Optional[str]]]:
    """(images, ann_file) from the arguments, else from the recipe's val_dataloader; of ``--data``, its split's
    files (a format other than COCO converted into a temporary folder, removed after; the dataset never written)."""
    if args.data:
        if args.images or args.ann_file:
            raise DfineError(f"--data {args.data} names its images and ground truth; leave out --images and "
                             f"--ann-file (or give those two alone)")
        with _split_paths(Path(args.data), args.split, args.names) as paths:
            yield paths
        return
    if args.split != "val" or args.names:
        raise DfineError(f"--{'split' if args.split != 'val' else 'names'} goes with --data DATASET")
    yield _given_paths(args)


@contextmanager
def _split_paths(data: Path, split: str, names: Optional[str]) -> Iterator[Tuple[str, str]]:
    """(images, ann_file) of ``split`` of the dataset folder ``data``, found as ``dfine train --data`` finds it."""
    from ..commands.data import split_names
    from ..data.archive import dataset_folder
    from ..recipes import dataset_splits, detect_format, missing_split
    root = dataset_folder(data)
    fmt = detect_format(root)
    with tempfile.TemporaryDirectory(prefix="dfine-fiftyone-") as tmp:
        splits, notes = dataset_splits(root, fmt, Path(tmp), names=split_names(names), temporary="view",
                                       split=split)
        for note in notes:
            print(note, file=sys.stderr)
        if split not in splits:
            raise DfineError(missing_split(root, split, splits, fmt, evaluation=True))
        ann, images = splits[split]
        yield str(images), str(ann)


def _given_paths(args: argparse.Namespace) -> Tuple[Optional[str], Optional[str]]:
    """(images, ann_file) of ``--images``/``--ann-file``, else of the recipe's val_dataloader."""
    if args.ann_file and not args.images:
        raise DfineError("--ann-file needs --images: the folder its file_names are relative to")
    if args.images:
        return args.images, args.ann_file
    if not args.config:
        raise DfineError("no dataset: give --data DATASET, --images DIR [--ann-file JSON], or -c CONFIG whose "
                         "val_dataloader names one")
    from ..config import load_config
    from ..recipes import RECIPES_DIR
    dataset = load_config(args.config, recipes=RECIPES_DIR).val_dataloader.dataset
    if not dataset.img_folder or not dataset.ann_file:
        raise DfineError(f"{args.config} names no val_dataloader img_folder/ann_file; give --images and --ann-file")
    return dataset.img_folder, dataset.ann_file


def run(args: argparse.Namespace) -> int:
    from ..integrations import fiftyone as view
    view.import_fiftyone()  # fail fast, before loading the model
    names: Optional[Dict[int, str]] = None
    with _dataset_paths(args) as (images, ann_file):
        if ann_file:
            records, names = view.coco_records(Path(images), Path(ann_file))
        else:
            records = view.folder_records(images)
    records = view.pick(records, args.max_samples, args.seed)

    from ..inference import Detector
    det = Detector(args.model, device=args.device, conf=args.conf, imgsz=args.imgsz, batch_size=args.batch_size,
                   size=args.size, config=args.config)
    dataset, mean_ap, bad = view.build_dataset(det, records, args.name, names, args.persistent,
                                               progress=not args.quiet)
    for path, why in bad[:5]:
        print(f"warning: skipped {path}: {why}", file=sys.stderr)
    summary: List[str] = [f"FiftyOne dataset '{dataset.name}': {len(dataset)} images"]
    if mean_ap is not None:
        summary.append(f"mAP@[.5:.95] {mean_ap:.3f} at conf > {args.conf}")
    if bad:
        summary.append(f"{len(bad)} unreadable skipped")
    print(", ".join(summary))
    if not args.no_launch:
        view.launch(dataset, args.port, args.address, args.remote)
    return 0
