"""``dfine export``: a checkpoint -> ONNX (post-processor inside, dynamic batch), OpenVINO IR or a
TensorRT engine."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DfineError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX, OpenVINO IR or a TensorRT engine",
                              description="Export a checkpoint to ONNX (inputs images, orig_target_sizes; "
                                          "outputs labels, boxes, scores; dynamic batch), to OpenVINO IR "
                                          "(.xml + .bin, the same graph in float32) or a TensorRT fp16 engine.")
    add_model_arguments(p)
    p.add_argument("--format", choices=("onnx", "openvino", "engine"), default="onnx",
                   help="output format (default onnx; openvino and engine also write the .onnx)")
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
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``-r CHECKPOINT`` and the two ways to give its architecture (``--size`` / ``-c``)."""
    p.add_argument("-r", "--resume", "--checkpoint", dest="checkpoint", required=True,
                   help="checkpoint .pth or zoo name")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--size", choices=("n", "s", "m", "l", "x"), help="model size of a published checkpoint")
    g.add_argument("-c", "--config", help="model recipe yml (default: the checkpoint's own, or recognised)")


def _output(args, suffix: str) -> Path:
    if args.output:
        return Path(args.output)
    src = Path(args.checkpoint)
    return src.with_suffix(suffix) if src.suffix else Path(f"{src.name}{suffix}")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model, parse_imgsz
    from ..export.onnx import export_onnx
    if args.opset < 17:
        raise DfineError(f"--opset must be 17 or higher, got {args.opset}")
    if args.static and args.format == "engine":
        raise DfineError("--static is for ONNX files; a TensorRT engine takes batches up to --max-batch")
    imgsz = parse_imgsz(args.imgsz) if args.imgsz else None
    final = {"onnx": ".onnx", "openvino": ".xml", "engine": ".engine"}[args.format]
    onnx_path = _output(args, final).with_suffix(".onnx")
    if args.format == "engine":
        _check_tensorrt(onnx_path, _output(args, ".engine"))
    if args.format == "openvino":
        _check_openvino()
    loaded = load_model(args.checkpoint, size=args.size, config=args.config, imgsz=imgsz)
    export_onnx(loaded, onnx_path, opset=args.opset, simplify=args.simplify, check=args.check,
                dynamic_batch=not args.static)
    print(f"wrote {onnx_path}")
    if args.format == "openvino":
        from ..export.openvino import export_openvino
        xml = export_openvino(onnx_path, _output(args, ".xml"))
        print(f"wrote {xml} and {xml.with_suffix('.bin')}")
    if args.format == "engine":
        from ..export.tensorrt import build_engine
        meta = {"class_names": list(loaded.class_names), "category_ids": list(loaded.category_ids)}
        engine = build_engine(onnx_path, _output(args, ".engine"), max_batch=args.max_batch, metadata=meta)
        print(f"wrote {engine}")
    return 0


def _check_openvino() -> None:
    """Fail before the export when OpenVINO is missing."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise DfineError("--format openvino needs OpenVINO: pip install openvino (or export ONNX, "
                         "which OpenVINO also reads)") from None


def _check_tensorrt(onnx_path: Path, engine_path: Path) -> None:
    """Fail before the export when TensorRT is missing, showing the trtexec command instead."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        from ..export.tensorrt import trtexec_command
        raise DfineError(f"tensorrt is not installed; export ONNX (--format onnx) and build the engine with: "
                         f"{trtexec_command(onnx_path, engine_path)}") from None
