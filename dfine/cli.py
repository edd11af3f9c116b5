"""``dfine`` command line: ``dfine train|eval|export|predict|benchmark|zoo|convert-weights|obj365|fiftyone ...``.

Thin: each subcommand lives in ``dfine/commands/<name>.py``, which defines
``add_parser(subparsers)`` registering its parser with ``set_defaults(func=run)`` where
``run(args) -> int``. User errors (:class:`~dfine.errors.DfineError`, bad values) end in one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from .errors import DfineError

# subcommand modules under dfine.commands, in help order; a missing one is skipped
COMMANDS = ("train", "predict", "track", "export", "benchmark", "zoo", "convert_weights", "obj365", "fiftyone")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfine", description="D-FINE object detection: train, evaluate, "
                                     "export and deploy.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"dfine.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"dfine.commands.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DfineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
