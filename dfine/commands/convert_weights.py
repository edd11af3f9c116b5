"""``dfine convert-weights SRC [DST]``: keep only a training checkpoint's EMA weights."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("convert-weights", help="extract the EMA weights of a training checkpoint",
                              description=__doc__.splitlines()[0])
    p.add_argument("src", help="training checkpoint (.pth) with an 'ema' entry")
    p.add_argument("dst", nargs="?", default=None, help="output file (default <src>_converted.pth)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import extract_ema
    there = args.dst is not None and Path(args.dst).is_file()
    print(f"wrote {extract_ema(args.src, args.dst)}" + (" (replacing the file there)" if there else ""))
    return 0
