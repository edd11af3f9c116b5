"""``dfine export``: a checkpoint -> ONNX (post-processor inside, dynamic batch), OpenVINO IR or a
TensorRT engine."""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from ..errors import DfineError
from ..text import counted, first_few

#: What ``--format`` (and ``dfine.export_model(format=)``) accepts, and the other names users give them.
FORMATS = ("onnx", "openvino", "engine")
FORMAT_ALIASES = {"tensorrt": "engine", "trt": "engine", "ov": "openvino"}


def format_name(text: str) -> str:
    """``text`` as one of ``FORMATS``: lower-cased, with TensorRT's and OpenVINO's other names mapped."""
    name = text.strip().lower()
    return FORMAT_ALIASES.get(name, name)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX, OpenVINO IR or a TensorRT engine",
                              description="Export a checkpoint to ONNX (inputs images, orig_target_sizes; "
                                          "outputs labels, boxes, scores; dynamic batch), to OpenVINO IR "
                                          "(.xml + .bin, the same graph in float32) or a TensorRT fp16 engine.")
    add_model_arguments(p)
    p.add_argument("--format", type=format_name, choices=FORMATS, default="onnx",
                   help="output format (default onnx; engine, also called tensorrt, is a TensorRT fp16 engine; "
                        "openvino and engine also write the .onnx; openvino keeps one there)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N",
                   help="input size: 640, or height width (480 640); default the model's own")
    p.add_argument("-o", "--output", default=None, help="output file (default: beside the checkpoint)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--simplify", dest="simplify", action="store_true", default=None,
                   help="simplify with onnxsim (default: when installed)")
    p.add_argument("--no-simplify", dest="simplify", action="store_false")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip onnx.checker")
    p.add_argument("--static", action="store_true",
                   help="ONNX: fix the batch axis to 1 (for runtimes that need static shapes; "
                        "ONNX Runtime and OpenVINO run the default dynamic-batch file as fast)")
    p.add_argument("--max-batch", type=int, default=32, help="TensorRT: largest batch size (default 32)")
    q = p.add_argument_group("int8 (post-training quantization; writes MODEL_int8.xml / MODEL_int8.onnx)")
    q.add_argument("--int8", action="store_true",
                   help="quantize to int8: OpenVINO IR with NNCF (--format openvino) or ONNX with QDQ nodes for "
                        "ONNX Runtime (--format onnx); needs --calib")
    q.add_argument("--calib", metavar="DATA", help="calibration images: a folder (searched recursively: a COCO, "
                                                   "YOLO or VOC dataset folder works) or a COCO JSON")
    q.add_argument("--calib-size", type=int, default=300, help="calibration images used (default 300, spread evenly)")
    q.add_argument("--max-drop", type=float, default=None, metavar="AP",
                   help="OpenVINO: accuracy-aware quantization, layers go back to float until the AP drop (points) on "
                        "--val-ann/--val-images is at most this, e.g. 0.5")
    q.add_argument("--max-restore", type=int, default=None, metavar="N",
                   help="--max-drop: at most N groups of layers go back to float (default 10; each costs one pass "
                        "over the val set, and a re-ranking when it made things worse)")
    q.add_argument("--val-ann", help="COCO JSON of the val set for --max-drop")
    q.add_argument("--val-images", help="folder of the --val-ann images")
    q.add_argument("--keep-float", nargs="+", default=None, metavar="PART",
                   help="parts kept in float32: head (decoder layers, query selection, post-processor), sampling, "
                        "integral, box-heads, score-heads, decoder-rest, query-selection, or node-name regular "
                        "expressions (default: nothing, measured to cost no AP on the demo models; see README)")
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``-r CHECKPOINT`` and the two ways to give its architecture (``--size`` / ``-c``)."""
    p.add_argument("-r", "--resume", "--checkpoint", "-m", dest="checkpoint", required=True,
                   help="checkpoint .pth or zoo name (-m as in dfine predict)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--size", choices=("n", "s", "m", "l", "x"), help="model size of a published checkpoint")
    g.add_argument("-c", "--config", help="model recipe yml (default: the checkpoint's own, or recognised)")


def _output(args, suffix: str) -> Path:
    if args.output:
        return Path(args.output)
    src = Path(args.checkpoint)
    tag = "_int8" if getattr(args, "int8", False) else ""
    return src.with_name(f"{src.stem if src.suffix else src.name}{tag}{suffix}")


_EXPORTS = {".onnx": "an ONNX", ".xml": "an OpenVINO", ".bin": "an OpenVINO", ".engine": "a TensorRT"}


def refuse_an_export(path: Path, fmt: str, python: bool = False) -> None:
    """An export given as the weights to export (a walk's ``.onnx`` -> openvino was told of torch's
    ``weights_only``): one line saying exports come from the checkpoint, naming one beside it
    (``python``: as a :func:`dfine.export_model` call)."""
    kind = _EXPORTS.get(path.suffix.lower())
    if kind is None:
        return
    beside = next((p for p in (path.with_suffix(".pth"), path.parent / "best_stg2.pth", path.parent / "best_stg1.pth",
                               path.parent / "last.pth") if p.is_file()), None)
    if beside is None:
        hint = "give the one it came from"
    else:
        hint = f"dfine.export_model({str(beside)!r}, {fmt!r})" if python else f"dfine export -r {beside} --format {fmt}"
    raise DfineError(f"{path} is {kind} export; exports are made from a .pth checkpoint: {hint}")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import parse_imgsz
    from ..outputs import removed_if_left_empty
    if args.opset < 17:
        raise DfineError(f"--opset must be 17 or higher, got {args.opset}")
    if args.static and args.format == "engine":
        raise DfineError("--static is for ONNX files; a TensorRT engine takes batches up to --max-batch")
    refuse_an_export(Path(args.checkpoint), args.format)
    imgsz = parse_imgsz(args.imgsz) if args.imgsz else None
    final = {"onnx": ".onnx", "openvino": ".xml", "engine": ".engine"}[args.format]
    onnx_path = _output(args, final).with_suffix(".onnx")
    if args.int8:
        quantize = _int8_plan(args)
        onnx_path = _float_name(onnx_path)
    if args.format == "engine":
        _check_tensorrt(onnx_path, _output(args, ".engine"))
    if args.format == "openvino":
        _check_openvino()
    created = _writable_output(args, _output(args, final), final)
    with removed_if_left_empty(created):
        return _export(args, onnx_path, final, imgsz, quantize if args.int8 else None)


def _export(args: argparse.Namespace, onnx_path: Path, final: str, imgsz, quantize) -> int:
    """Load the checkpoint, export its ONNX to ``onnx_path`` and make the ``final`` file of it."""
    from ..checkpoint import load_model
    from ..export.onnx import export_onnx
    loaded = load_model(args.checkpoint, size=args.size, config=args.config, imgsz=imgsz)
    earlier = {p for p in (onnx_path, _output(args, final)) if p.is_file()}  # said when replaced (they were not)
    # an ONNX export there (a --static one, for a runtime that needs it) is the user's: the IR or the int8 model
    # is made from a fresh ONNX in a temporary folder instead of one written over it (three walks lost theirs so)
    keep = (args.format == "openvino" or args.int8) and onnx_path in earlier
    with tempfile.TemporaryDirectory(prefix="dfine-export-") if keep else nullcontext() as scratch:
        made = Path(scratch) / onnx_path.name if keep else onnx_path
        export_onnx(loaded, made, opset=args.opset, simplify=args.simplify, check=args.check,
                    dynamic_batch=not args.static)
        if keep:
            made_from = "the int8 model is made" if args.int8 else "the IR is converted"
            print(f"kept {onnx_path} as it was (an export of its own; {made_from} from a fresh ONNX)")
        else:
            print(f"wrote {onnx_path} ({_what(loaded, args)})"
                  + (" replacing the one there" if onnx_path in earlier else ""))
        return _after_onnx(args, loaded, made, final, earlier, quantize)


def _writable_output(args: argparse.Namespace, output: Path, final: str) -> list:
    """Before any work, the folder of ``output`` made and checked writable (a walk's ``-o /sys/model.onnx``
    ended in a 25-line PermissionError after the export); returns the folders made. ``-o`` with a suffix the
    format replaces is said (``-o notes.txt`` wrote ``notes.onnx`` without a word)."""
    from ..outputs import prepare_output_dir
    option = "-o" if args.output else "-o (the checkpoint's folder is where the export goes by default)"
    created = prepare_output_dir(output.parent, option)
    given = Path(args.output) if args.output else None
    if given is not None and given.suffix.lower() not in ("", ".onnx", ".xml", ".bin", ".engine"):
        print(f"note: -o {given}: an export's file name ends in its format's suffix; writing "
              f"{output.with_suffix(final)}", file=sys.stderr)
    return created


def _after_onnx(args: argparse.Namespace, loaded, onnx_path: Path, final: str, earlier, quantize) -> int:
    """What an export does with its ONNX file ``onnx_path``: quantize it (``--int8``), convert it to IR or
    build a TensorRT engine of it."""
    if quantize is not None:
        out, info = quantize(onnx_path, _output(args, final))
        always = "; attention's activation products and max-pools stay float" if info.scheme == "transformer" else ""
        print(f"wrote {out} (int8; {info.calibration_images} calibration images; kept in float32 (--keep-float): "
              f"{', '.join(info.float_scopes) or 'nothing'}{always}"
              + (f"; val AP {info.val_ap_float} float32 -> {info.val_ap_int8} int8 as dfine eval measures it, "
                 f"{counted(len(info.restored_to_float), 'operation')} returned to float by --max-drop"
                 if info.val_ap_int8 is not None else "") + ")"
              + (" replacing the one there" if _output(args, final) in earlier else ""))
        if info.met_max_drop is False:
            print(f"warning: the AP drop {info.val_ap_float - info.val_ap_int8:.2f} is above --max-drop "
                  f"{info.max_drop:g} with at most {info.max_restore} groups of layers back in float; raise --max-restore, "
                  f"or use the default int8 export", file=sys.stderr)
        return 0
    if args.format == "openvino":
        from ..export.openvino import export_openvino
        xml = export_openvino(onnx_path, _output(args, ".xml"))
        print(f"wrote {xml} and {xml.with_suffix('.bin')} (float32 OpenVINO IR, {_what(loaded, args)})"
              + (" replacing the ones there" if xml in earlier else ""))
    if args.format == "engine":
        from ..export.tensorrt import build_engine
        meta = {"class_names": list(loaded.class_names), "category_ids": list(loaded.category_ids)}
        if loaded.conf is not None:
            meta["recommended_conf"] = loaded.conf
        if loaded.tiles is not None:
            meta["tiles"] = {"size": list(loaded.tiles)}
        engine = build_engine(onnx_path, _output(args, ".engine"), max_batch=args.max_batch, metadata=meta)
        print(f"wrote {engine}")
    return 0


def _what(loaded, args) -> str:
    """``"input 320x320, batch any, 13 classes: bishop, black-bishop, black-king, ..., --conf 0.41 as its
    training run recommends"``: what a deployment of the file needs to know (the input size the
    checkpoint was trained at, unless --imgsz)."""
    names = list(loaded.class_names)
    h, w = loaded.imgsz
    batch = "batch 1" if args.static else "batch any"
    classes = counted(len(names), "class", "classes") + (f": {first_few(names, 3)}" if names else "")
    conf = "" if loaded.conf is None else f", --conf {loaded.conf:.2f} as its training run recommends"
    return f"input {h}x{w}, {batch}, {classes}{conf}"


def _float_name(path: Path) -> Path:
    """Where the float ONNX goes beside an int8 output: ``m_int8.onnx`` -> ``m.onnx``, else ``m_float.onnx``."""
    stem = path.stem[:-len("_int8")] if path.stem.endswith("_int8") else f"{path.stem}_float"
    return path.with_name(f"{stem}.onnx")


def _int8_plan(args: argparse.Namespace):
    """Check the int8 options (before any export work) and return ``quantize(onnx_path, output)``."""
    from ..export import int8
    if args.format == "engine":
        raise DfineError("--int8 is for --format openvino (NNCF) or onnx (ONNX Runtime QDQ); TensorRT builds "
                         "its own engine precision")
    if not args.calib:
        raise DfineError("--int8 needs calibration images: add --calib DATA (an images folder or a COCO JSON)")
    if args.max_drop is not None and args.format != "openvino":
        raise DfineError("--max-drop (accuracy-aware quantization) needs --format openvino")
    if args.max_drop is not None and args.max_drop <= 0:
        raise DfineError(f"--max-drop must be a positive number of AP points, got {args.max_drop}")
    if args.max_drop is None and (args.val_ann or args.val_images or args.max_restore is not None):
        raise DfineError("--val-ann/--val-images/--max-restore are for --max-drop; add --max-drop AP or drop them")
    if args.max_restore is not None and args.max_restore < 1:
        raise DfineError(f"--max-restore must be at least 1, got {args.max_restore}")
    if args.format == "openvino":
        from ..export.onnx import importable
        missing = [name for name, present in (("openvino", importable("openvino")), ("onnx", importable("onnx")),
                                              ("nncf", importable("nncf", int8.import_nncf))) if not present]
        if missing:
            raise DfineError(f"--int8 --format openvino needs {', '.join(missing)} (not installed): "
                             f"pip install \"dfine[int8]\" (NNCF, OpenVINO and onnx)")
    calib = int8.calibration_images(args.calib, args.calib_size)
    val = None
    if args.max_drop is not None:
        if not (args.val_ann and args.val_images):
            raise DfineError("--max-drop needs the val set to measure AP on: --val-ann FILE --val-images DIR")
        from ..export.evaluate import load_eval_set
        val = load_eval_set(args.val_ann, args.val_images)
    common = dict(calib_source=str(args.calib), float_scopes=int8.resolve_scopes(args.keep_float))
    if args.format == "openvino":
        from ..engine.precision import cpu_features
        note = int8.cpu_note(args.keep_float, cpu_features())
        if note:
            print(note)
        restore = {} if args.max_restore is None else {"max_restore": args.max_restore}
        return lambda onnx_path, out: int8.quantize_openvino(onnx_path, out, calib, max_drop=args.max_drop, val=val,
                                                             **restore, **common)
    return lambda onnx_path, out: int8.quantize_onnx(onnx_path, out, calib, **common)


def _check_openvino() -> None:
    """Fail before the export when OpenVINO is missing."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise DfineError("--format openvino needs OpenVINO and onnx: pip install \"dfine[openvino,onnx]\" (or export "
                         "ONNX, which OpenVINO also reads)") from None


def _check_tensorrt(onnx_path: Path, engine_path: Path) -> None:
    """Fail before the export when TensorRT is missing, showing the trtexec command instead."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        from ..export.tensorrt import trtexec_command
        raise DfineError(f"tensorrt is not installed; export ONNX (--format onnx) and build the engine with: "
                         f"{trtexec_command(onnx_path, engine_path)}") from None
