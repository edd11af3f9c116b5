"""TensorRT: build an fp16 engine from our ONNX export, and run one.

Accuracy-sensitive layers (softmax, normalisation, top-k, reductions, sigmoid, exp/log)
are pinned to fp32 while the convolutions and matrix products run in fp16. The engine's
class names and input size are written beside it as ``<engine>.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ..errors import DfineError

__all__ = ["TensorRTRunner", "build_engine", "trtexec_command"]

PathLike = Union[str, os.PathLike]


def trtexec_command(onnx_path: PathLike, engine_path: PathLike) -> str:
    """The equivalent ``trtexec`` command line (for machines without the tensorrt Python package)."""
    return f"trtexec --onnx={onnx_path} --saveEngine={engine_path} --fp16"


def _import_trt(onnx_path: Optional[PathLike] = None, engine_path: Optional[PathLike] = None):
    try:
        import tensorrt as trt
    except ImportError:
        hint = f"; or build it with: {trtexec_command(onnx_path, engine_path)}" if onnx_path else ""
        raise DfineError(f"tensorrt is not installed (pip install tensorrt, needs an NVIDIA GPU){hint}") from None
    return trt


def _keep_fp32(trt: Any, layer: Any) -> bool:
    """Whether ``layer`` is on an accuracy-sensitive path that must stay fp32."""
    kinds = {trt.LayerType.SOFTMAX, trt.LayerType.NORMALIZATION, trt.LayerType.TOPK, trt.LayerType.REDUCE}
    if layer.type in kinds:
        return True
    if layer.type == trt.LayerType.ACTIVATION:
        layer.__class__ = trt.IActivationLayer
        return layer.type == trt.ActivationType.SIGMOID
    if layer.type == trt.LayerType.UNARY:
        layer.__class__ = trt.IUnaryLayer
        return layer.op in (trt.UnaryOperation.EXP, trt.UnaryOperation.LOG)
    return False


def _pin_fp32(trt: Any, network: Any) -> int:
    """Pin the accuracy-sensitive layers of ``network`` to fp32; returns how many."""
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if _keep_fp32(trt, layer):
            layer.__class__ = trt.ILayer
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float32, trt.float16):
                    layer.set_output_type(j, trt.float32)
            count += 1
    return count


def build_engine(onnx_path: PathLike, engine_path: PathLike, *, fp16: bool = True, max_batch: int = 32,
                 opt_batch: int = 1, workspace_gib: float = 4.0, metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Build a TensorRT engine from ``onnx_path`` (dynamic batch 1..``max_batch``) into ``engine_path``."""
    trt = _import_trt(onnx_path, engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0 if int(trt.__version__.split(".")[0]) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DfineError(f"TensorRT cannot parse {onnx_path}: {errors[:200]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        _pin_fp32(trt, network)
    _, _, h, w = network.get_input(0).shape
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, h, w), (opt_batch, 3, h, w), (max_batch, 3, h, w))
    profile.set_shape("orig_target_sizes", (1, 2), (opt_batch, 2), (max_batch, 2))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DfineError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    meta = dict(metadata or {}, imgsz=[int(h), int(w)])
    Path(f"{engine_path}.json").write_text(json.dumps(meta))
    return engine_path


class TensorRTRunner:
    """Run a serialized engine on CUDA: ``runner(images, sizes) -> (labels, boxes, scores)`` numpy."""

    def __init__(self, engine_path: PathLike, device: str = "cuda:0"):
        import torch
        trt = _import_trt()
        if not torch.cuda.is_available():
            raise DfineError("TensorRT engines need a CUDA GPU, and none is available")
        self.device = torch.device(device)
        self.trt, self.torch = trt, torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise DfineError(f"{engine_path} is not a TensorRT engine built by this TensorRT version")
        self.context = self.engine.create_execution_context()
        side = Path(f"{engine_path}.json")
        self.metadata: Dict[str, str] = {}
        if side.is_file():
            meta = json.loads(side.read_text())
            self.metadata = {k: json.dumps(v) for k, v in meta.items()}
        shape = self.engine.get_tensor_shape("images")
        self.imgsz: Tuple[int, int] = (int(shape[2]), int(shape[3]))

    def __call__(self, images: np.ndarray, sizes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch, trt = self.torch, self.trt
        feeds = {"images": torch.from_numpy(images).to(self.device),
                 "orig_target_sizes": torch.from_numpy(sizes).to(self.device)}
        outputs = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                feeds[name] = feeds[name].to(dtype).contiguous()
                self.context.set_input_shape(name, tuple(feeds[name].shape))
                self.context.set_tensor_address(name, feeds[name].data_ptr())
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
                outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device=self.device)
                self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return tuple(outputs[n].cpu().numpy() for n in ("labels", "boxes", "scores"))  # type: ignore[return-value]
