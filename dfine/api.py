"""``dfine.evaluate`` and ``dfine.export_model``: what ``dfine eval`` and ``dfine export`` do, from a
script or a notebook, returning the metrics or the written file instead of only printing them.

Each builds the command's own arguments and runs the command's own code (the same checks, notes and
files), so a notebook and a terminal get the same result; a wrong argument is a ``DfineError`` (the
command's one-line error) rather than a printed error and an exit code.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .errors import DfineError, keyword_hints
from .commands.export import FORMATS, format_name
from .text import missing_model_note

__all__ = ["evaluate", "export_model"]

PathLike = Union[str, os.PathLike]


@keyword_hints
def evaluate(model: PathLike, data: PathLike, *, imgsz: Optional[int] = None, device: Optional[str] = None,
             names: Optional[Union[str, Sequence[str]]] = None, progress: bool = True,
             split: str = "val", slice: Union[None, bool, int, Sequence[int]] = None,
             batch: Optional[int] = None, output_dir: Optional[PathLike] = None) -> Dict[str, Any]:
    """COCO AP of ``model`` (a checkpoint ``.pth`` or an export ``.onnx`` / ``.xml``) on the val split of
    the dataset folder ``data`` (found as ``dfine train --data`` finds it), as ``dfine eval -m MODEL
    --data DATA`` prints it; returns what it writes to ``eval.json``: ``stats`` (``AP``, ``AP50``, ...
    as fractions 0..1), ``per_class`` AP and ``names`` by category id, ``best_conf`` (the ``--conf``
    with the best F1, or ``None``), the file's path as ``path`` and the pictures drawn beside it as
    ``pictures`` (``eval_pr_curves.png``, ``eval_confidence.png``, ``eval_confusion_matrix.png``,
    ``eval_predictions.png``; none without matplotlib). ``split``: ``"val"`` (default), or ``"test"`` for
    the test split (``dfine eval --split test``; its metrics file is ``eval_test.json``). ``slice``: sliced
    inference, as ``dfine eval --slice`` (``True``: tiles of the model's size; ``N`` or ``(H, W)``), for a
    model trained on tiles (``dfine data tile``); its metrics file is ``MODEL.eval_sliced.json``. ``batch``:
    images per forward pass of a checkpoint (``--batch``; on the CPU 8 by default). ``imgsz``: the input size
    in pixels (default: the model's own); ``device``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (default: CUDA
    when there is one); ``progress``: a progress bar (default True). ``output_dir``: the
    folder for the metrics file and its pictures (``-o DIR``; created), instead of beside the model."""
    model_path = Path(model).expanduser()
    if model_path.is_dir():  # evaluate(data, model), swapped: 'model file DATA not found' of a folder that is there
        raise DfineError(f"model={str(model)!r} is a folder (the dataset?); evaluate(model, data) takes the weights "
                         f"first: a .pth, .onnx or .xml file")
    if not model_path.is_file():
        raise DfineError(f"model file {model_path} not found")
    argv = ["eval", "-m", str(model_path), "--data", str(Path(data).expanduser())]
    if imgsz is not None:
        argv += ["--imgsz", str(_whole("imgsz", imgsz))]
    if device is not None:
        argv += ["-d", str(device)]
    if batch is not None:
        argv += ["--batch", str(_whole("batch", batch))]
    if names:
        argv += ["--names", names if isinstance(names, str) else ",".join(map(str, names))]
    if not progress:
        argv.append("--no-progress")
    split = "val" if split == "valid" else split  # Roboflow's folder name for it
    if split not in ("val", "test"):
        raise DfineError(f"split={split!r}: 'val' or 'test'")
    argv += ["--split", split]
    out = None if output_dir is None else Path(output_dir).expanduser()
    if out is not None:
        argv += ["-o", str(out)]
    sliced = slice is not None and slice is not False
    if sliced:
        from .slicing import SliceConfig, slice_tile
        tile = slice_tile(slice)
        if tile is not None:  # slice=0 converted the dataset before --slice 0 was refused (a walk)
            SliceConfig(tile=tile)
        argv += ["--slice", *map(str, tile or ())]
    files = _eval_files(model_path, split, sliced, out)
    before = {p: p.stat().st_mtime_ns for p in files if p.is_file()}
    started = time.time_ns()
    try:
        _run(argv, python=True)
    except DfineError as e:  # 'leave --names out' to dfine.evaluate(names=...) (a walk): the arguments' words
        from .recipes import in_python_words
        raise in_python_words(e) from None
    written = [p for p in files if p.is_file() and before.get(p) != p.stat().st_mtime_ns]
    if not written:
        raise DfineError(f"the evaluation of {model_path} wrote no metrics file")  # pragma: no cover - a bug
    result = json.loads(written[0].read_text(encoding="utf-8"))
    result["path"] = os.path.abspath(written[0])
    from .engine.plots import EVALUATION_PICTURES, evaluation_prefix
    prefix = evaluation_prefix(written[0])
    drawn = (written[0].parent / f"{prefix}{name}" for name in EVALUATION_PICTURES)  # by this evaluation
    result["pictures"] = [os.path.abspath(p) for p in drawn if p.is_file() and p.stat().st_mtime_ns >= started]
    return result


@keyword_hints
def export_model(model: PathLike, format: str = "onnx", *, output: Optional[PathLike] = None,
                 imgsz: Optional[int] = None, static: bool = False, int8: bool = False,
                 calib: Optional[PathLike] = None) -> Path:
    """Export the checkpoint ``model`` as ``dfine export -r MODEL --format FORMAT`` does (``onnx``,
    ``openvino``: the ``.xml`` beside its ``.onnx``, ``engine``: TensorRT); ``int8`` with ``calib``
    (images or a dataset) as ``--int8 --calib``. Returns the file written (``.onnx``, ``.xml`` or
    ``.engine``), with the class names and input size in its metadata."""
    format = format_name(format) if isinstance(format, str) else format  # "ONNX", "tensorrt" (walks)
    if format not in FORMATS:
        raise DfineError(f"format {format!r}: give one of {', '.join(FORMATS)}")
    model_path = Path(model).expanduser()
    if not model_path.is_file():
        raise DfineError(f"checkpoint {model_path} not found{missing_model_note(model_path)}")
    if int8 and calib is None:
        raise DfineError("int8=True needs calib=: a folder of images or a dataset to calibrate on")
    from .commands.export import refuse_an_export
    refuse_an_export(model_path, format, python=True)
    argv = ["export", "-r", str(model_path), "--format", format]
    if output is not None:
        argv += ["-o", str(Path(output).expanduser())]
    if imgsz is not None:
        argv += ["--imgsz", str(_whole("imgsz", imgsz))]
    if static:
        argv.append("--static")
    if int8:
        argv += ["--int8", "--calib", str(Path(calib).expanduser())]
    args = _run(argv)
    from .commands.export import _output

    return _output(args, {"onnx": ".onnx", "openvino": ".xml", "engine": ".engine"}[format])


def _whole(name: str, value: Any) -> int:
    """``value`` of the argument ``name``: one whole number of at least 1, else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        square = " (square inputs, as --imgsz)" if name == "imgsz" else ""
        raise DfineError(f"{name} is one whole number of at least 1{square}, got {value!r}")
    return value


def _eval_files(model: Path, split: str = "val", sliced: bool = False,
                output_dir: Optional[Path] = None) -> List[Path]:
    """Where an evaluation of ``model`` on ``split`` writes its metrics: ``eval.json`` (``eval_test.json``)
    beside a checkpoint, or ``MODEL.eval.json`` (``MODEL.eval_test.json``) beside an export;
    ``MODEL.eval_sliced.json`` for any model evaluated ``sliced``; in ``output_dir`` when it is given."""
    from .engine.summary import eval_file_name
    from .export.evaluate import eval_json_path

    if sliced:
        return [eval_json_path(model, output_dir, split=split, sliced=True)]
    return [eval_json_path(model, output_dir, split=split), Path(output_dir or model.parent) / eval_file_name(split)]


def _run(argv: List[str], python: bool = False) -> Any:
    """Parse ``argv`` as the command line does and run its command, its errors raised; returns the
    parsed arguments. ``python``: the command's notes in the Python call's words (``args.python``)."""
    from .cli import build_parser

    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # argparse printed why
        raise DfineError(f"dfine {' '.join(argv)}: not a valid command (see the message above)") from None
    args.python = python
    args.func(args)
    return args
