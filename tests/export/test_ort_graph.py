"""The graph ONNX Runtime actually runs for our export (after its fusions and layout changes): one
kernel per layer of the PyTorch model, counted from the model itself.

These are the properties that made our N export's optimized graph run the same heavy kernels as
the published export's (``benchmarks/ort_graph.py --ref`` compares the two node by node; the
published checkout is not available here), and two that the published graph lacks: every
LayerNorm fused (the published AIFI layer leaves one as seven element-wise ops) and the attention
products' transposes folded into ``FusedMatMul``."""

from __future__ import annotations

import collections

import pytest
import torch

from dfine.checkpoint import LoadedModel
from dfine.export.benchmark import op_counts, ort_optimized_session
from dfine.export.onnx import export_onnx
from dfine.models.postprocess import PostProcessor
from tests.models.tiny import tiny_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """(deploy-form tiny model, op counts of the optimized graph ONNX Runtime saved for its export,
    that graph)."""
    torch.manual_seed(0)
    model = tiny_model().deploy()
    loaded = LoadedModel(model, PostProcessor(5, num_top_queries=20).deploy(), model.config, (), (), "tiny")
    folder = tmp_path_factory.mktemp("ortgraph")
    path = export_onnx(loaded, folder / "tiny.onnx", simplify=False)
    ort_optimized_session(str(path), str(folder / "optimized.onnx"), threads=2)
    optimized = onnx.load(str(folder / "optimized.onnx"))
    return model, op_counts(optimized), optimized


def _modules(model: torch.nn.Module) -> collections.Counter:
    return collections.Counter(type(m).__name__ for m in model.modules())


def test_every_layer_runs_as_one_fused_kernel(graphs):
    model, ops, _ = graphs
    mods = _modules(model)
    # batch norms folded, activations fused: one node per convolution, NCHWc or not, and one more
    # for each convolution the export splits by its inputs' channels instead of concatenating them
    # (the stem's third, each FPN block's first)
    split = 1 + len(model.encoder.fpn_blocks)
    assert ops["Conv"] + ops["com.microsoft.nchwc::Conv"] == mods["Conv2d"] + split > split
    assert ops["BatchNormalization"] == 0
    assert ops["LayerNormalization"] == mods["LayerNorm"] > 0
    assert ops["Pow"] == ops["Sqrt"] == 0  # no layer norm left decomposed (x - mean) / sqrt(var)
    assert ops["com.microsoft::QuickGelu"] == mods["SiLU"]  # x * sigmoid(x) in one kernel
    assert ops["com.microsoft::BiasGelu"] + ops["com.microsoft::Gelu"] == mods["GELU"]
    assert ops["Erf"] == 0


def test_attention_products_fold_their_transposes(graphs):
    model, ops, _ = graphs
    mods = _modules(model)
    # q.k^T and the attention-weighted values of each self-attention, transposes folded in
    assert ops["com.microsoft::FusedMatMul"] == 2 * mods["MultiheadAttention"] > 0
    decoder = model.decoder.decoder
    assert len(decoder.layers[0].cross_attn.num_points) > 1
    assert ops["GridSample"] == len(decoder.layers)  # one bilinear sampling per layer, on the canvas of all levels


def test_relu_convolutions_fuse_relu_not_clip(graphs):
    """A ReLU convolution with its learnable affine block at the identity (scale 1, bias 0, as
    built) is exported as Relu, which ONNX Runtime's convolution kernels apply as they store: a
    fused Clip(0, inf) runs MLAS's activation as one more pass over each output (N at 640 on AVX2
    kernels: 3.6% more instructions; benchmarks/ort_callgrind.py)."""
    model, _, optimized = graphs
    from onnx import helper
    acts = collections.Counter()
    for node in optimized.graph.node:
        if node.op_type in ("Conv", "FusedConv"):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            act = attrs.get("activation", b"").decode()
            acts[(act, tuple(round(v, 3) for v in attrs.get("activation_params", ())))] += 1
    labs = [m for m in model.modules() if type(m).__name__ == "LearnableAffineBlock"]
    assert labs and all(float(m.scale) == 1 and float(m.bias) == 0 for m in labs)
    # all but the stem's third conv, exported as two convs whose sum is then clamped by a Relu node
    assert acts[("Relu", ())] >= len(labs) - 1
    assert optimized_ops_count(optimized, "Relu", "/model/backbone/stem/") == 1
    assert not [a for a in acts if a[0] == "Clip" and a[1][:1] == (0.0,)], acts


def optimized_ops_count(graph, op_type: str, prefix: str) -> int:
    """Nodes of ``op_type`` (any domain) whose name starts with ``prefix``."""
    return sum(n.op_type == op_type and n.name.startswith(prefix) for n in graph.graph.node)
