"""ONNX export of dfine_n: ONNX Runtime matches PyTorch deploy + PostProcessor at batch 1 and 4
from one file, at 640x640 and 480x640; the graph passes onnx.checker."""

from __future__ import annotations

import pytest
import torch

from dfine.checkpoint import load_model
from dfine.export.onnx import INPUT_NAMES, OUTPUT_NAMES, export_onnx
from tests.compare import assert_detections_close
from tests.conftest import load_golden

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def golden_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "dfine_n.pth"
    torch.save(load_golden("n")["checkpoint"], path)
    return path


def _batches(imgsz):
    """Batch 1 and batch 4 of golden images resized to ``imgsz``, with int64 original sizes."""
    golden = load_golden("n")
    images = golden["images_uint8"].float() / 255
    if tuple(images.shape[-2:]) != tuple(imgsz):
        images = torch.nn.functional.interpolate(images, size=imgsz, mode="bilinear", align_corners=False)
    sizes = golden["orig_sizes"].long()
    four = torch.cat([images, images.flip(0)]), torch.cat([sizes, sizes.flip(0)])
    return [(images[:1], sizes[:1]), four]


@pytest.fixture(scope="module", params=[(640, 640), (480, 640)], ids=["640x640", "480x640"])
def exported(request, golden_ckpt, tmp_path_factory):
    """(loaded model, ONNX path, imgsz) exported once per size."""
    loaded = load_model(golden_ckpt, imgsz=request.param)
    path = export_onnx(loaded, tmp_path_factory.mktemp("onnx") / "model.onnx", simplify=False)
    return loaded, path, request.param


def test_onnxruntime_matches_torch_at_batch_1_and_4(exported):
    loaded, path, imgsz = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for images, sizes in _batches(imgsz):
        with torch.no_grad():
            ref = loaded.postprocessor(loaded.model(images), sizes)
        labels, boxes, scores = session.run(None, {"images": images.numpy(), "orig_target_sizes": sizes.numpy()})
        assert labels.shape == (len(images), 300) and boxes.shape == (len(images), 300, 4)
        for i in range(len(images)):
            gold = {"labels": ref[0][i], "boxes": ref[1][i], "scores": ref[2][i]}
            assert_detections_close(torch.from_numpy(labels[i]), torch.from_numpy(boxes[i]),
                                    torch.from_numpy(scores[i]), gold, score_tol=1e-4, box_tol=1e-2)


def test_export_matches_golden_deploy_outputs(exported):
    """The exported file reproduces the published deploy outputs (set comparison, README tolerances)."""
    loaded, path, imgsz = exported
    if imgsz != (640, 640):
        pytest.skip("the golden outputs are at 640x640")
    golden = load_golden("n")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = (golden["images_uint8"].float() / 255).numpy()
    labels, boxes, scores = session.run(None, {"images": images, "orig_target_sizes": golden["orig_sizes"].long().numpy()})
    for i in range(2):
        gold = {k: golden["deploy"][k][i] for k in ("labels", "boxes", "scores")}
        assert_detections_close(torch.from_numpy(labels[i]), torch.from_numpy(boxes[i]),
                                torch.from_numpy(scores[i]), gold)


def test_export_is_plain_ops(exported):
    """Without onnxsim, the position embedding is already one constant (no Range/Sin/Cos) and the
    stem's 2x2 pool is a MaxPool (not the eager no-grad slices and maxima)."""
    _, path, _ = exported
    nodes = onnx.load(str(path)).graph.node
    ops = {node.op_type for node in nodes}
    assert not ops & {"Sin", "Cos"}
    assert not [n.name for n in nodes if n.op_type == "Range" and n.name.startswith("/model/encoder/")]
    assert "MaxPool" in ops and not [n.name for n in nodes if n.op_type == "Max" and "/backbone/" in n.name]


def test_no_matrix_product_takes_a_vector(exported):
    """Every MatMul of the export multiplies matrices: ONNX Runtime ran the distribution integral's
    product with a vector (``[Q * 4, 33] x [33]``) about 4x slower than with a ``[33, 1]`` matrix."""
    _, path, _ = exported
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*model.graph.value_info, *model.graph.input]}
    ranks.update({t.name: len(t.dims) for t in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type == "Constant":
            ranks[node.output[0]] = len(onnx.helper.get_attribute_value(node.attribute[0]).dims)
    products = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert any(n.name.startswith("/model/decoder/decoder/MatMul") for n in products)  # the integrals
    assert all(n.input[1] in ranks for n in products)
    assert not [n.name for n in products if min(ranks[i] for i in n.input) < 2]


def test_concatenations_before_a_convolution_are_convolved_part_by_part(exported):
    """The stem's third conv and each FPN block's first conv read their inputs one conv per part,
    summed, instead of a Concat (which OpenVINO ran on a reference kernel: the stem's took longer than
    the conv after it, N at 640 capped at AVX2); the FPN's upsampled part is convolved before the
    Resize, at a quarter of the pixels. ``test_onnxruntime_matches_torch_at_batch_1_and_4`` checks
    the values."""
    loaded, path, _ = exported
    nodes = onnx.load(str(path)).graph.node
    made_by = {out: n for n in nodes for out in n.output}
    stem_convs = [n for n in nodes if n.op_type == "Conv" and n.name.startswith("/model/backbone/stem/")]
    assert len(stem_convs) == 6 and not [n.name for n in stem_convs if made_by.get(n.input[0], n).op_type == "Concat"]
    stem_sums = [n for n in nodes if n.op_type == "Add" and n.name.startswith("/model/backbone/stem/")
                 and all(made_by[i].op_type == "Conv" for i in n.input)]
    assert len(stem_sums) == 1
    resizes = [n for n in nodes if n.op_type == "Resize" and n.name.startswith("/model/encoder/")]
    assert len(resizes) == len(loaded.model.encoder.fpn_blocks) > 0
    for resize in resizes:
        assert made_by[resize.input[0]].op_type == "Conv"  # the conv's low-resolution part, not its input
        (add,) = [n for n in nodes if resize.output[0] in n.input]
        assert add.op_type == "Add" and {made_by[i].op_type for i in add.input} == {"Conv", "Resize"}


def _assert_matches_torch(loaded, run, images, sizes):
    """``run(images, sizes)`` (numpy in and out) equals PyTorch deploy + post-processor."""
    with torch.no_grad():
        ref = loaded.postprocessor(loaded.model(images), sizes)
    labels, boxes, scores = run(images.numpy(), sizes.numpy())
    assert labels.shape == (len(images), 300)
    for i in range(len(images)):
        gold = {"labels": ref[0][i], "boxes": ref[1][i], "scores": ref[2][i]}
        assert_detections_close(torch.from_numpy(labels[i]), torch.from_numpy(boxes[i]),
                                torch.from_numpy(scores[i]), gold, score_tol=1e-4, box_tol=1e-2)


def test_openvino_runs_the_dynamic_file_at_batch_1_and_4(exported):
    """OpenVINO compiles the dynamic-batch file once per batch size, with the batch fixed."""
    pytest.importorskip("openvino")
    from dfine.inference import Detector
    loaded, path, imgsz = exported
    det = Detector(str(path), backend="openvino", threads=2)
    for images, sizes in _batches(imgsz):
        _assert_matches_torch(loaded, det._engine.run, images, sizes)
    assert sorted(det._engine.run.compiled) == [1, 4]


def test_static_export_has_batch_1(golden_ckpt, tmp_path):
    loaded = load_model(golden_ckpt)
    path = export_onnx(loaded, tmp_path / "static.onnx", dynamic_batch=False)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images, sizes = _batches((640, 640))[0]
    _assert_matches_torch(loaded, lambda x, s: session.run(None, {"images": x, "orig_target_sizes": s}), images, sizes)


def test_openvino_ir_keeps_outputs_and_metadata(exported, tmp_path):
    """``--format openvino``: the IR gives PyTorch's outputs and carries the class names."""
    pytest.importorskip("openvino")
    from dfine.export.openvino import export_openvino
    from dfine.inference import Detector
    loaded, path, imgsz = exported
    xml = export_openvino(path, tmp_path / "model.xml")
    assert xml.with_suffix(".bin").is_file()
    det = Detector(str(xml), threads=2)
    assert det.backend == "openvino" and det.imgsz == imgsz
    assert det.class_names == loaded.class_names
    images, sizes = _batches(imgsz)[0]
    _assert_matches_torch(loaded, det._engine.run, images, sizes)


def test_simplified_export_merges_query_key_products_and_still_matches_torch(golden_ckpt, tmp_path):
    """The default export (onnxsim) names every product after its module and gives each
    self-attention one product for its query and key projections (two before), with the same
    outputs as PyTorch."""
    pytest.importorskip("onnxsim")
    loaded = load_model(golden_ckpt, imgsz=(320, 320))
    path = export_onnx(loaded, tmp_path / "model.onnx")
    graph = onnx.load(str(path)).graph
    products = [n for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    assert all(n.name.startswith("/model/") for n in products)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]}
    assert dims == {"images": ["N", 3, 320, 320], "orig_target_sizes": ["N", 2], "labels": ["N", 300],
                    "boxes": ["N", 300, 4], "scores": ["N", 300]}  # onnxsim had renamed one batch axis 'unk__551'
    attention = {n.name.rsplit("/", 1)[0] for n in products if n.name.rsplit("/", 1)[0].endswith("/self_attn")}
    splits = [n for n in graph.node if n.name.endswith("/SplitProducts")]
    assert len(attention) == 1 + len(loaded.model.decoder.decoder.layers) == len(splits)
    for split in splits:  # one Gemm feeds each Split; the two outputs were the query and key projections
        gemm = next(n for n in graph.node if split.input[0] in n.output)
        assert gemm.op_type == "Gemm" and len(split.output) == 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for images, sizes in _batches((320, 320)):
        with torch.no_grad():
            ref = loaded.postprocessor(loaded.model(images), sizes)
        labels, boxes, scores = session.run(None, {"images": images.numpy(), "orig_target_sizes": sizes.numpy()})
        for i in range(len(images)):
            gold = {"labels": ref[0][i], "boxes": ref[1][i], "scores": ref[2][i]}
            assert_detections_close(torch.from_numpy(labels[i]), torch.from_numpy(boxes[i]),
                                    torch.from_numpy(scores[i]), gold, score_tol=1e-4, box_tol=1e-2)


def test_merge_shared_products_stacks_only_full_bias_gemms_of_one_module():
    """Two Gemms of one module on one input become one Gemm and a Split with the same outputs; a
    Gemm with a broadcast (size-1) bias, or one in another module, is left alone."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from dfine.export.onnx import merge_shared_products
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    for name, out, n_out, bias in (("/m/attn/MatMul", "q", 6, 6), ("/m/attn/MatMul_1", "k", 4, 4),
                                   ("/m/attn/MatMul_2", "b", 3, 1), ("/m/other/MatMul", "o", 5, 5)):
        inits += [numpy_helper.from_array(rng.standard_normal((n_out, 8)).astype(np.float32), f"{out}_w"),
                  numpy_helper.from_array(rng.standard_normal(bias).astype(np.float32), f"{out}_b")]
        nodes.append(helper.make_node("Gemm", ["x", f"{out}_w", f"{out}_b"], [out], name=name, transB=1))
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [3, n]) for o, n in (("q", 6), ("k", 4), ("b", 3), ("o", 5))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((3, 8)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert merge_shared_products(model) == 1
    onnx.checker.check_model(model)
    gemms = [n.name for n in model.graph.node if n.op_type == "Gemm"]
    assert gemms == ["/m/attn/MatMul", "/m/attn/MatMul_2", "/m/other/MatMul"]
    assert [n.op_type for n in model.graph.node].count("Split") == 1
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_export_without_onnxsim_says_the_file_is_not_simplified(tmp_path, capsys, monkeypatch):
    """A venv of the demo extra had no onnxsim: ``dfine export`` wrote the traced graph (1,895 nodes
    for the demo model against 824 simplified, ~10% slower in ONNX Runtime) without a word."""
    import dataclasses
    import sys

    from dfine.cli import main
    from tests.models.tiny import tiny_model
    model = tiny_model()
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config),
                "class_names": ["a", "b", "c", "d", "e"], "category_ids": [1, 2, 3, 4, 5]}, ckpt)
    monkeypatch.setitem(sys.modules, "onnxsim", None)  # import fails as when not installed
    assert main(["export", "-r", str(ckpt), "-o", str(tmp_path / "a.onnx")]) == 0
    err = capsys.readouterr().err
    assert f"note: {tmp_path / 'a.onnx'} is not simplified (onnxsim is not installed" in err and "pip install onnxsim" in err
    assert main(["export", "-r", str(ckpt), "-o", str(tmp_path / "b.onnx"), "--no-simplify"]) == 0
    assert "not simplified" not in capsys.readouterr().err  # asked for: nothing to say
