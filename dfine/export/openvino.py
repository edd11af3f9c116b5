"""OpenVINO IR (``.xml`` + ``.bin``) from an ONNX export: the same graph, read about twice as fast,
with no ONNX parser needed where it is deployed. Weights stay float32."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Union

from ..errors import DfineError

__all__ = ["METADATA_KEY", "export_openvino", "ir_metadata"]

PathLike = Union[str, os.PathLike]
METADATA_KEY = "dfine"  # rt_info section holding the ONNX metadata_props (class names, ids, size)


def export_openvino(onnx_path: PathLike, output: PathLike) -> Path:
    """Convert ``onnx_path`` (a :func:`dfine.export.onnx.export_onnx` file) to IR at ``output``
    (``.xml``; its ``.bin`` beside it) and return the ``.xml`` path."""
    try:
        import onnx
        import openvino as ov
    except ImportError:
        raise DfineError("--format openvino needs OpenVINO and onnx: pip install dfine[openvino,onnx] (or openvino onnx)") from None
    output = Path(output).with_suffix(".xml")
    output.parent.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(onnx_path))
    for prop in onnx.load(str(onnx_path), load_external_data=False).metadata_props:
        model.set_rt_info(prop.value, [METADATA_KEY, prop.key])
    ov.save_model(model, str(output), compress_to_fp16=False)
    return output


def ir_metadata(model) -> Dict[str, str]:
    """The metadata :func:`export_openvino` stored in an ``openvino.Model``'s rt_info ({} if none)."""
    if not model.has_rt_info([METADATA_KEY]):
        return {}
    section = model.get_rt_info([METADATA_KEY]).astype(dict)
    return {key: model.get_rt_info([METADATA_KEY, key]).astype(str) for key in section}
