"""``dfine train|eval|export|predict|benchmark|zoo|convert-weights|obj365|fiftyone|demo ...``.

Thin: each subcommand lives in ``dfine/commands/<module>.py``, which defines
``add_parser(subparsers)`` registering its parser(s) with ``set_defaults(func=run)`` where
``run(args) -> int``. User errors (:class:`~dfine.errors.DfineError`, bad values) end in one
line on stderr and exit code 2, never a traceback.

Start-up is instant: ``dfine --help`` imports no command module, and ``dfine COMMAND ...``
imports only that command's module, whose module level must stay light (no torch, no optional
library: import them inside ``run``). ``tests/test_cli_startup.py`` checks both.
To add a command: one row in :data:`COMMANDS` and a module with ``add_parser``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from typing import List, Optional, Sequence, Tuple

from .errors import DfineError

# (command, module under dfine.commands that registers it, one-line help for `dfine --help`), in help order.
# A module may register several commands (train: train and eval); a missing module is skipped.
COMMANDS: Tuple[Tuple[str, str, str], ...] = (
    ("demo", "demo", "train, evaluate, export and predict on a generated shapes dataset (CPU, minutes)"),
    ("train", "train", "train or fine-tune a detector (published train.py options)"),
    ("eval", "train", "COCO AP of a checkpoint or an exported model (.onnx, .xml)"),
    ("predict", "predict", "detect objects in images, folders, globs or videos"),
    ("track", "track", "track objects through a video, folder of frames, webcam or stream"),
    ("export", "export", "export a checkpoint to ONNX, OpenVINO IR or a TensorRT engine"),
    ("benchmark", "benchmark", "params, GFLOPs and latency on this machine"),
    ("zoo", "zoo", "list the model zoo"),
    ("convert-weights", "convert_weights", "extract the EMA weights of a training checkpoint"),
    ("obj365", "obj365", "prepare the Objects365 dataset (split, resize)"),
    ("fiftyone", "fiftyone", "view predictions and ground truth in the FiftyOne app"),
    ("data", "data", "convert YOLO / VOC / CVAT datasets to COCO, check a dataset"),
)


def _command_of(argv: Sequence[str]) -> Optional[str]:
    """The subcommand named by ``argv`` (its first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def _register(sub: argparse._SubParsersAction, module_name: str) -> bool:
    """Import ``dfine.commands.<module_name>`` and let it add its parsers; False if absent."""
    try:
        module = importlib.import_module(f"dfine.commands.{module_name}")
    except ModuleNotFoundError as e:
        if e.name == f"dfine.commands.{module_name}":
            return False
        raise
    module.add_parser(sub)
    return True


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line that names where the options are listed (argparse
    prints the whole usage block first: nine lines for ``dfine train``, the error last)."""

    argv: Sequence[str] = ()  # the command line being parsed (main sets it): its other tools' options get a hint

    def error(self, message: str):  # type: ignore[override]
        if not message.startswith("unrecognized arguments"):  # e.g. '-m/--model is required' after --weights X
            options = {o for action in self._actions for o in action.option_strings}
            hints = _hints(self, [w for w in self.argv if w.startswith("--") and w.split("=", 1)[0] not in options],
                           fuzzy=False)
            message += "".join(f"; {h}" for h in hints)
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The ``dfine`` parser, with the full parser of the command ``argv`` names (every command's
    when ``argv`` is None) and a help-only entry for each other command."""
    parser = _Parser(prog="dfine", description="D-FINE object detection: train, evaluate, "
                                     "export and deploy.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"dfine {__version__}")  # a walk tried it first
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else _command_of(argv)
    for module_name in dict.fromkeys(m for name, m, _ in COMMANDS if argv is None or name == wanted):
        _register(sub, module_name)
    for name, module_name, text in COMMANDS:
        if name not in sub.choices and importlib.util.find_spec(f"dfine.commands.{module_name}") is not None:
            sub.add_parser(name, help=text, description=text)  # listed; its module is imported when it runs
    return parser


# options of YOLOv5 / Ultralytics / the published scripts that newcomers type -> ours that do the same, the
# first this command has (spelling alone led '--conf-thres' to '--threads'); a text: why there is none
_OTHER_TOOLS = {
    **dict.fromkeys(("conf-thres", "conf-threshold", "confidence", "score-thres", "score-threshold", "threshold"),
                    ("--conf",)),
    **dict.fromkeys(("img", "img-size", "imgsize", "image-size", "size"), ("--imgsz",)),
    **dict.fromkeys(("batch-size", "bs"), ("--batch", "--batch-size")),
    **dict.fromkeys(("project", "save-dir", "out", "output", "name"), ("--output", "--output-dir")),
    **dict.fromkeys(("dataset", "data-dir"), ("--data",)),
    "weights": ("--tuning", "--model", "--resume"),  # train: fine-tune from them; predict, export: the model
    **dict.fromkeys(("half", "fp16"),
                    "half precision is a TensorRT engine on a GPU (dfine export --format engine, fp16 by default); "
                    "on a CPU: --precision bf16 (OpenVINO, CPUs with AVX512-BF16 or AMX) or an int8 export"),
    **dict.fromkeys(("iou-thres", "iou", "nms", "agnostic-nms"),
                    "D-FINE needs no NMS (one box per object by design), so there is no IoU threshold to set"),
}


def _hints(parser: argparse.ArgumentParser, words: Sequence[str], fuzzy: bool = True) -> List[str]:
    """A hint for each unknown word of ``parser``'s command line: another tool's option named by ours
    of the same meaning, ``epochs=3`` (Ultralytics' style) by ``--epochs 3`` or ``-u``, and (``fuzzy``)
    a misspelt option by the closest one (``--cnof``: did you mean --conf?)."""
    import difflib

    options = [o for action in parser._actions for o in action.option_strings]
    hints = []
    for word in words:
        if not word.startswith("-"):
            key, _, value = word.partition("=")
            if value and f"--{key.replace('_', '-')}" in options:
                hints.append(f"{word}: options take dashes: --{key.replace('_', '-')} {value}")
            elif value and "-u" in options:
                hints.append(f"{word}: recipe keys go after -u (-u {word})")
            continue
        name = word.split("=", 1)[0]
        known = _OTHER_TOOLS.get(name.lstrip("-").replace("_", "-").lower())
        if isinstance(known, str):
            hints.append(f"{word}: {known}")
            continue
        close = ([o for o in known if o in options][:1] if known is not None
                 else difflib.get_close_matches(name, options, n=1, cutoff=0.6) if fuzzy else [])
        if close:
            hints.append(f"{word}: did you mean {close[0]}?")
    return hints


def _unrecognized(parser: argparse.ArgumentParser, argv: Sequence[str], extra: Sequence[str]) -> None:
    """Exit (2) with the usage of the command ``argv`` names (``dfine predict``, ``dfine data
    check``), not the top-level one, and a hint for each unknown word (:func:`_hints`)."""
    current = parser
    for word in (w for w in argv if not w.startswith("-")):
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        current = subs[0].choices[word]
    hints = _hints(current, extra)
    current.error(f"unrecognized arguments: {' '.join(extra)}" + ("; " + "; ".join(hints) if hints else ""))


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _Parser.argv = argv
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, argv, extra)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe is met here, not in the interpreter's flush at exit
        return code
    except DfineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`dfine zoo | head -3`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
