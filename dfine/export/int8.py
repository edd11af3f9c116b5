"""Int8 post-training quantization of an ONNX export: OpenVINO IR with NNCF (optionally
accuracy-aware), or an ONNX file with QDQ nodes for ONNX Runtime.

Calibration needs only images (no labels): a few hundred from the training data, spread evenly
over a folder (searched recursively, so a COCO image folder, a YOLO dataset root or a VOC root
all work) or listed by a COCO JSON.

By default the parts of a DETR head known to be sensitive stay in float32 (:data:`FLOAT_SCOPES`):
the decoder layers (deformable-attention sampling offsets and weights, the FDR distribution heads
and their integral, LQE, score heads), the query-selection heads of the encoder output and the
post-processor. They are a small share of the arithmetic; the backbone and hybrid encoder, where
the time goes, become int8. The choice (and the calibration) is recorded in the model's metadata
under ``quantization`` (a JSON string).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DfineError

__all__ = ["FLOAT_SCOPES", "QuantizeInfo", "calibration_images", "quantize_onnx", "quantize_openvino"]

PathLike = Union[str, os.PathLike]

# node-name patterns (regular expressions over the ONNX export's node names) kept in float32
FLOAT_SCOPES: Tuple[str, ...] = (
    r"/model/decoder/decoder/.*",  # decoder layers: sampling offsets, attention weights, FDR box heads + integral, LQE
    r"/model/decoder/enc_.*",      # query selection: encoder-output projection, score and box heads
    r"/postprocessor/.*",          # top-k and box scaling
)
DEFAULT_CALIB_IMAGES = 300


@dataclass
class QuantizeInfo:
    """What was done, stored as JSON in the model's metadata (``quantization``)."""

    precision: str
    tool: str
    calibration_images: int
    calibration_source: str
    float_scopes: List[str]
    max_drop: Optional[float] = None
    val_ap_float: Optional[float] = None  # AP (percent) on the val set, accuracy-aware mode
    val_ap_int8: Optional[float] = None
    restored_to_float: List[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def calibration_images(source: PathLike, limit: int = DEFAULT_CALIB_IMAGES) -> List[Path]:
    """Up to ``limit`` image paths from ``source`` (a folder, searched recursively, or a COCO JSON
    whose ``file_name`` entries are relative to its folder), spread evenly over the sorted list."""
    from ..commands.predict import IMAGE_SUFFIXES
    src = Path(source)
    if limit < 1:
        raise DfineError(f"--calib-size must be at least 1, got {limit}")
    if src.is_dir():
        paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise DfineError(f"calibration folder {src} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    elif src.is_file() and src.suffix.lower() == ".json":
        from ..data.coco import read_coco_json
        paths = sorted(src.parent / str(im["file_name"]) for im in read_coco_json(src)["images"])
        missing = [p for p in paths if not p.is_file()]
        if missing or not paths:
            raise DfineError(f"the images of {src} are not beside it (first missing: {missing[0] if missing else '-'}); "
                             f"give their folder to --calib instead")
    else:
        raise DfineError(f"--calib {src}: expected a folder of images (COCO, YOLO or VOC dataset folders work) "
                         f"or a COCO JSON file")
    if len(paths) > limit:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, limit).round()]
    return paths


def _inputs(imgsz: Tuple[int, int]):
    """image path -> model inputs ``{"images": [1, 3, H, W], "orig_target_sizes": [1, 2]}``."""
    from ..inference import load_image, preprocess

    def transform(path: Path) -> Dict[str, np.ndarray]:
        images, sizes = preprocess([load_image(path)], imgsz)
        return {"images": images, "orig_target_sizes": sizes}

    return transform


def _onnx_info(onnx_path: PathLike) -> Tuple[Tuple[int, int], Dict[str, str]]:
    """Input size (H, W) and metadata of an ONNX export."""
    import onnx
    model = onnx.load(str(onnx_path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return (dims[2].dim_value, dims[3].dim_value), {p.key: p.value for p in model.metadata_props}


def _matching(names: Sequence[str], patterns: Sequence[str]) -> List[str]:
    regex = [re.compile(p) for p in patterns]
    return [n for n in names if any(r.fullmatch(n) for r in regex)]


def quantize_openvino(onnx_path: PathLike, output: PathLike, calib: Sequence[Path], *, calib_source: str = "",
                      float_scopes: Sequence[str] = FLOAT_SCOPES, max_drop: Optional[float] = None,
                      val: Any = None) -> Tuple[Path, QuantizeInfo]:
    """Int8 OpenVINO IR of the ONNX export ``onnx_path`` at ``output`` (``.xml`` + ``.bin``).

    ``calib``: calibration image paths. ``float_scopes``: node-name patterns kept in float32.
    ``max_drop`` (AP points) with ``val`` (a :class:`dfine.export.evaluate.EvalSet`): NNCF's
    accuracy-aware quantization, which returns layers to float32, most harmful first, until the
    AP on ``val`` is within ``max_drop`` of the float model's."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise DfineError("--int8 needs NNCF and OpenVINO: pip install dfine[int8]") from None
    from .openvino import METADATA_KEY
    nncf.set_log_level(logging.WARNING)  # not one INFO line per operation left in float
    imgsz, meta = _onnx_info(onnx_path)
    model = ov.convert_model(str(onnx_path))
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    ignored = nncf.IgnoredScope(names=_matching(names, float_scopes), validate=False) if float_scopes else None
    dataset = nncf.Dataset(list(calib), _inputs(imgsz))
    common = dict(subset_size=len(calib), model_type=nncf.ModelType.TRANSFORMER, ignored_scope=ignored,
                  fast_bias_correction=True)
    info = QuantizeInfo("int8", f"nncf {nncf.__version__}, openvino {ov.get_version().split('-')[0]}", len(calib),
                        calib_source, list(float_scopes), max_drop)
    if max_drop is None:
        quantized = nncf.quantize(model, dataset, **common)
    else:
        if val is None:
            raise DfineError("--max-drop needs a val set: --val-ann FILE --val-images DIR")
        validate = _ap_fn(imgsz, meta, val)
        quantized = nncf.quantize_with_accuracy_control(
            model, dataset, nncf.Dataset(list(val.images)), validate, max_drop=max_drop / 100,
            drop_type=nncf.DropType.ABSOLUTE, **common)
        core, f32 = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32"}  # not bf16 where the CPU has it
        info.val_ap_float = round(100 * validate(core.compile_model(model, "CPU", f32), val.images), 2)
        info.val_ap_int8 = round(100 * validate(core.compile_model(quantized, "CPU", f32), val.images), 2)
    for key, value in meta.items():
        quantized.set_rt_info(value, [METADATA_KEY, key])
    quantized.set_rt_info(info.to_json(), [METADATA_KEY, "quantization"])
    output = Path(output).with_suffix(".xml")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp.xml")
    ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), output.with_suffix(".bin"))
    os.replace(tmp, output)
    return output, info


def _ap_fn(imgsz: Tuple[int, int], meta: Dict[str, str], val: Any):
    """``(compiled OpenVINO model, [(image id, path), ...]) -> AP (0..1)``, NNCF's validation function;
    an image without ground truth scores 0 (COCO gives -1)."""
    from ..inference import Detector, _metadata
    from .evaluate import evaluate_detector
    names, ids = _metadata(meta)

    def validate(compiled: Any, items: Any) -> float:
        outputs = [compiled.output(n) for n in ("labels", "boxes", "scores")]

        def run(images: np.ndarray, sizes: np.ndarray):
            res = compiled({"images": images, "orig_target_sizes": sizes})
            return tuple(np.asarray(res[o]) for o in outputs)

        detector = Detector.from_run(run, imgsz, names, ids, conf=0.0, backend="openvino")
        return max(0.0, evaluate_detector(detector, val.subset(list(items)), warn=False).ap)

    return validate


def quantize_onnx(onnx_path: PathLike, output: PathLike, calib: Sequence[Path], *, calib_source: str = "",
                  float_scopes: Sequence[str] = FLOAT_SCOPES) -> Tuple[Path, QuantizeInfo]:
    """ONNX file with int8 QDQ nodes (static quantization: per-channel int8 weights, uint8
    activations calibrated by min/max) for ONNX Runtime, at ``output``."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                              quantize_static)
    except ImportError:
        raise DfineError("--int8 for ONNX needs onnx and onnxruntime: pip install dfine[onnx]") from None
    imgsz, meta = _onnx_info(onnx_path)
    transform = _inputs(imgsz)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calib)

        def get_next(self):
            path = next(self.items, None)
            return None if path is None else transform(path)

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    prepared, tmp = (output.with_name(f".{output.stem}.{part}.onnx") for part in ("prep", "tmp"))
    try:
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        nodes = [n.name for n in onnx.load(str(prepared), load_external_data=False).graph.node]
        quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"], per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_matching(nodes, float_scopes))
        info = QuantizeInfo("int8", f"onnxruntime {onnxruntime.__version__} (static QDQ)", len(calib),
                            calib_source, list(float_scopes))
        model = onnx.load(str(tmp))
        del model.metadata_props[:]
        for key, value in {**meta, "quantization": info.to_json()}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
        os.replace(tmp, output)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return output, info
