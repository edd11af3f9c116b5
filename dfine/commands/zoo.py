"""``dfine zoo``: list the published checkpoints (name, dataset, AP, size, cost)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("zoo", help="list the model zoo", description=__doc__.splitlines()[0])
    p.add_argument("--all", action="store_true", help="also list the ImageNet backbones")
    p.set_defaults(func=run)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:g}"


def run(args: argparse.Namespace) -> int:
    from .. import zoo
    entries = zoo.list_entries() if args.all else zoo.list_entries(kind="detector")
    print(f"{'name':28} {'dataset':9} {'model':8} {'COCO AP':>7} {'O365 AP':>7} {'params M':>8} {'GFLOPs':>6} {'T4 ms':>6}")
    for e in entries:
        print(f"{e.name:28} {e.dataset:9} {e.model:8} {_fmt(e.coco_ap):>7} {_fmt(e.obj365_ap):>7} "
              f"{_fmt(e.params_m):>8} {_fmt(e.gflops):>6} {_fmt(e.latency_ms):>6}")
    return 0
