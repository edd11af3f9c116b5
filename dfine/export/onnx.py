"""ONNX export: the detector with its post-processor inside, and a batch axis that works.

Inputs ``images [N, 3, H, W]`` float 0..1 and ``orig_target_sizes [N, 2]`` int64 (width,
height); outputs ``labels [N, K]`` int64, ``boxes [N, K, 4]`` xyxy pixels, ``scores [N, K]``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import DfineError
from ..checkpoint import LoadedModel

__all__ = ["DeployModel", "INPUT_NAMES", "OUTPUT_NAMES", "add_metadata", "export_onnx", "importable", "merge_shared_products",
           "restore_product_names", "simplify_onnx"]

INPUT_NAMES = ("images", "orig_target_sizes")
OUTPUT_NAMES = ("labels", "boxes", "scores")
PathLike = Union[str, os.PathLike]


class DeployModel(nn.Module):
    """``(images, orig_target_sizes) -> (labels, boxes, scores)``: model and post-processor in one."""

    def __init__(self, model: nn.Module, postprocessor: nn.Module):
        super().__init__()
        self.model = model
        self.postprocessor = postprocessor

    def forward(self, images: Tensor, orig_target_sizes: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self.postprocessor(self.model(images), orig_target_sizes)


def export_onnx(loaded: LoadedModel, output: PathLike, *, imgsz: Optional[Sequence[int]] = None,
                opset: int = 17, simplify: Optional[bool] = None, check: bool = True,
                dynamic_batch: bool = True) -> Path:
    """Export ``loaded`` to ``output`` and return its path.

    ``imgsz`` (height, width) is the fixed input size (default: the size the model was built
    for, whose anchors are then constants). The batch axis ``N`` is dynamic, or fixed to 1 with
    ``dynamic_batch=False`` (for runtimes that need static shapes; ONNX Runtime and OpenVINO run
    the dynamic file as fast). ``check`` runs ``onnx.checker``; ``simplify`` runs onnxsim
    (``None``: when installed).
    """
    try:
        import onnx
    except ImportError:
        raise DfineError("ONNX export needs the onnx package: pip install \"dfine[onnx]\" (onnx, onnxruntime, onnxsim)") from None
    h, w = tuple(imgsz) if imgsz is not None else loaded.imgsz
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    wrapper = DeployModel(loaded.model, loaded.postprocessor).eval().cpu()
    # a dynamic axis is traced at batch 2: a size-1 axis may be specialised away by the tracer
    n = 2 if dynamic_batch else 1
    images = torch.rand(n, 3, h, w)
    sizes = torch.tensor([[w, h]] * n, dtype=torch.int64)
    axes = {name: {0: "N"} for name in INPUT_NAMES + OUTPUT_NAMES} if dynamic_batch else None
    # traced with gradients on: the layers' no-grad eager shortcuts (the stem's 2x2 max-pool as
    # slices and maxima) are slower in ONNX Runtime and OpenVINO than the plain ops (MaxPool)
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (images, sizes), str(output), input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    if simplify or simplify is None:
        if not simplify_onnx(output, required=bool(simplify)) and not importable("onnxsim"):
            print(f"note: {output} is not simplified (onnxsim is not installed; the traced graph keeps about "
                  f"twice the nodes, and OpenVINO's IR is built for the simplified form): pip install onnxsim",
                  file=sys.stderr)
    model = onnx.load(str(output))
    add_metadata(model, loaded, (h, w))
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, str(output))
    return output


def add_metadata(model: "onnx.ModelProto", loaded: LoadedModel, imgsz: Tuple[int, int]) -> None:
    """Record class names, category ids, input size, the recommended score threshold and the tiles
    it was trained on (JSON; each absent when the checkpoint has none) in the model's ``metadata_props``."""
    meta = {"class_names": json.dumps(list(loaded.class_names)),
            "category_ids": json.dumps(list(loaded.category_ids)),
            "imgsz": json.dumps(list(imgsz)), "producer": "dfine"}
    if loaded.conf is not None:
        meta["recommended_conf"] = json.dumps(loaded.conf)
    if loaded.tiles is not None:  # trained on tiles: used whole, the backends say so
        meta["tiles"] = json.dumps({"size": list(loaded.tiles)})
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def importable(module: str, importer: Optional[Callable[[], Any]] = None) -> bool:
    """True when ``module`` imports (through ``importer()`` when given): for one error or note that
    names every optional package missing."""
    try:
        importer() if importer else importlib.import_module(module)
    except ImportError:
        return False
    return True


def simplify_onnx(path: PathLike, required: bool = False) -> bool:
    """Simplify the ONNX file at ``path`` in place with onnxsim; ``False`` when it is not installed
    (a :class:`DfineError` when ``required``) or when its result fails onnxsim's own check."""
    try:
        import onnx
        import onnxsim
    except ImportError:
        if required:
            raise DfineError("--simplify needs onnxsim: pip install \"dfine[onnx]\" (or onnxsim)") from None
        return False
    before = onnx.load(str(path))
    model, ok = onnxsim.simplify(before)
    if ok:
        restore_product_names(before, model)
        restore_dim_names(before, model)
        merge_shared_products(model)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return bool(ok)


def restore_dim_names(before: "onnx.ModelProto", after: "onnx.ModelProto") -> None:
    """Give the inputs' and outputs' free dimensions of ``after`` the names they had in ``before``:
    onnxsim renamed the batch axis of ``orig_target_sizes`` to ``unk__551`` while ``images`` kept
    ``N``, so tools no longer saw that the two batches are one."""
    for old_values, new_values in ((before.graph.input, after.graph.input), (before.graph.output, after.graph.output)):
        old = {v.name: v.type.tensor_type.shape.dim for v in old_values}
        for value in new_values:
            for was, dim in zip(old.get(value.name, ()), value.type.tensor_type.shape.dim):
                if was.dim_param and not dim.HasField("dim_value"):
                    dim.dim_param = was.dim_param


def restore_product_names(before: "onnx.ModelProto", after: "onnx.ModelProto") -> int:
    """Give the matrix products onnxsim rebuilt (a ``MatMul`` and its bias ``Add`` fused into a
    ``Gemm`` named ``Gemm_12``) the name of the product they replace, found by its weight, so that
    the module path (``/model/decoder/decoder/layers.0/cross_attn/MatMul``) survives into
    OpenVINO, whose node names are the ONNX names, and int8 float scopes (``--keep-float``) match
    them. Returns how many nodes were renamed."""
    by_weight: Dict[str, str] = {}
    for node in before.graph.node:
        if node.op_type in ("MatMul", "Gemm") and node.name.startswith("/") and len(node.input) > 1:
            by_weight.setdefault(node.input[1], node.name)
    taken = {node.name for node in after.graph.node}
    renamed = 0
    for node in after.graph.node:
        base = by_weight.get(node.input[1]) if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 else None
        if base and not node.name.startswith("/"):
            name, k = base, 0
            while name in taken:  # a layer called more than once (the query position head)
                k += 1
                name = f"{base}_{k}"
            node.name = name
            taken.add(name)
            renamed += 1
    return renamed


def merge_shared_products(model: "onnx.ModelProto") -> int:
    """Merge the ``Gemm`` products of one module that read the same input (self-attention's query
    and key projections) into one ``Gemm`` with their weights side by side, followed by a ``Split``
    into the original outputs: one node fewer per pair, one product call instead of two, and in an
    int8 IR one quantized input (part of int8's 0.70 -> 0.62x step, benchmarks/RESULTS.md "Int8"; ONNX Runtime's
    instruction count for N stayed 0.98x the published export's). Values are unchanged (each
    output column is the same dot product). Returns how many products were merged away."""
    import numpy as np
    from onnx import helper, numpy_helper
    inits = {t.name: t for t in model.graph.initializer}
    groups: Dict[Tuple[str, str, int], list] = {}
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or len(node.input) != 3 or node.input[1] not in inits or node.input[2] not in inits
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0)):
            continue
        weight_dims, bias_dims = list(inits[node.input[1]].dims), list(inits[node.input[2]].dims)
        if len(weight_dims) != 2 or bias_dims != [weight_dims[0 if attrs.get("transB", 0) else 1]]:
            continue  # only a full bias per output column (not a broadcast one) can be stacked
        groups.setdefault((node.input[0], node.name.rsplit("/", 1)[0], attrs.get("transB", 0)), []).append(node)
    merged = 0
    for (_, scope, trans_b), nodes in groups.items():
        if len(nodes) < 2:
            continue
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        biases = [numpy_helper.to_array(inits[n.input[2]]) for n in nodes]
        first = nodes[0]
        weight = numpy_helper.from_array(np.concatenate(weights, axis=0 if trans_b else 1), f"{first.name}/merged_weight")
        bias = numpy_helper.from_array(np.concatenate(biases), f"{first.name}/merged_bias")
        sizes = numpy_helper.from_array(np.array([b.shape[0] for b in biases], dtype=np.int64), f"{first.name}/merged_sizes")
        model.graph.initializer.extend([weight, bias, sizes])
        outputs = [n.output[0] for n in nodes]
        first.input[1], first.input[2] = weight.name, bias.name
        first.output[0] = f"{first.name}/merged_output"
        split = helper.make_node("Split", [first.output[0], sizes.name], outputs, name=f"{scope}/SplitProducts", axis=1)
        position = list(model.graph.node).index(first)
        for n in nodes[1:]:
            model.graph.node.remove(n)
        model.graph.node.insert(position + 1, split)
        merged += len(nodes) - 1
    used = {i for n in model.graph.node for i in n.input}
    for t in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(t)
    return merged
