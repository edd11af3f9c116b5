"""``dfine demo``: generate a shapes dataset, train D-FINE N on the CPU, evaluate, export ONNX,
predict with ONNX Runtime, and write metrics and pictures to ``runs/demo`` (about five minutes on
two quiet cores, longer on a busy machine; no download, no GPU)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="train, evaluate, export and predict on a generated shapes dataset "
                                           "(CPU, minutes)", description=__doc__)
    p.add_argument("-o", "--output", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=_positive, default=7, help="training epochs (default 7; the lr drops in the last)")
    p.add_argument("--imgsz", type=_positive, default=192, help="image and model input size, multiple of 32 (default 192)")
    p.add_argument("--num-train", type=_positive, default=400, help="generated training images (default 400)")
    p.add_argument("--num-val", type=_positive, default=100, help="generated validation images (default 100)")
    p.add_argument("--classes", type=int, choices=range(1, 6), default=3, metavar="{1..5}",
                   help="shape classes: circle, square, triangle, star, cross (default 3)")
    p.add_argument("-b", "--batch-size", type=_positive, default=8, help="training batch size (default 8)")
    p.add_argument("--max-steps", type=_positive, default=None, help="stop each epoch after this many steps")
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dataset and the training (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # argparse said "invalid _positive value: '2.5'"
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def demo_scores(metrics: dict) -> str:
    """The demo's val scores in percent, as the epoch lines and ``dfine eval`` print them
    (``metrics.json`` keeps COCO's fractions): ``val AP 62.4  AP50 81.5  circle AP 61.9 ...``."""
    return (f"val AP {100 * metrics['mAP']:.1f}  AP50 {100 * metrics['mAP50']:.1f}  "
            + "  ".join(f"{name} AP {100 * ap:.1f}" for name, ap in metrics["per_class_AP"].items()))


def run(args: argparse.Namespace) -> int:
    from ..demo.pipeline import DemoSettings, run_demo
    from ..demo.shapes import ShapesSpec

    spec = ShapesSpec(num_train=args.num_train, num_val=args.num_val, image_size=args.imgsz,
                      num_classes=args.classes, seed=args.seed)
    settings = DemoSettings(output_dir=args.output, shapes=spec, image_size=args.imgsz, epochs=args.epochs,
                            batch_size=args.batch_size, max_steps=args.max_steps, threads=args.threads,
                            seed=args.seed, progress=not args.quiet)
    result = run_demo(settings)
    m = result.metrics
    print(f"\n{demo_scores(m)}")
    print(f"trained in {m['train_seconds'] / 60:.1f} min, whole demo {m['total_seconds'] / 60:.1f} min; "
          f"ONNX Runtime {m['onnx_latency_ms_per_image']:.1f} ms per image")
    print(f"checkpoint  {result.checkpoint}\nonnx        {result.onnx}\nmetrics     {args.output / 'metrics.json'}")
    for path in result.pictures:
        print(f"picture     {path}")
    return 0
