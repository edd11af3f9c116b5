"""The OpenVINO IR of a simplified export runs its matrix products on the tokens
(``dfine.export.openvino.unflatten_products``): the ``.onnx`` file keeps onnxsim's 2-D Gemm form,
which ONNX Runtime runs faster, and the IR computes the same values with fewer nodes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dfine.cli import main
from tests.compare import assert_detections_close
from tests.models.tiny import tiny_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ov = pytest.importorskip("openvino")
pytest.importorskip("onnxsim")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``dfine export --format openvino`` of a random tiny model (simplified, as by default):
    (the .onnx, the .xml)."""
    torch.manual_seed(0)
    model = tiny_model()
    folder = tmp_path_factory.mktemp("ov")
    ckpt = folder / "tiny.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config),
                "class_names": ["a", "b", "c", "d", "e"], "category_ids": [1, 2, 3, 4, 5]}, ckpt)
    assert main(["export", "-r", str(ckpt), "--format", "openvino", "-o", str(folder / "tiny.xml")]) == 0
    return folder / "tiny.onnx", folder / "tiny.xml"


def _feed(size: int):
    return {"images": np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32),
            "orig_target_sizes": np.array([[size, size], [size // 2, size]], dtype=np.int64)}


def _assert_same(got, want) -> None:
    """(labels, boxes, scores) of each image equal as sets (near-tied scores may swap places)."""
    for i in range(len(want[0])):
        gold = {k: torch.from_numpy(np.asarray(v[i])) for k, v in zip(("labels", "boxes", "scores"), want)}
        assert_detections_close(*(torch.from_numpy(np.asarray(v[i])) for v in got), gold, score_tol=1e-5,
                                box_tol=1e-3)


def _token_gemms(model) -> list:
    """Gemm nodes fed by a Reshape (onnxsim's flattened token products)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    return [n for n in model.graph.node if n.op_type == "Gemm" and producer.get(n.input[0]) is not None
            and producer[n.input[0]].op_type == "Reshape"]


def test_products_go_back_on_the_tokens_with_the_same_values(exported):
    from dfine.export.openvino import unflatten_products
    onnx_path, _ = exported
    model = onnx.load(str(onnx_path))
    size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    before = len(_token_gemms(model))
    assert before >= 10  # the .onnx file keeps the Gemm form for ONNX Runtime
    rewritten = unflatten_products(model)
    onnx.checker.check_model(model)
    # left as Gemm: only self-attention's output projections, whose reshape merges the heads (not the leading axes)
    assert rewritten >= 10 and all("self_attn" in n.name for n in _token_gemms(model))
    assert sum(n.op_type == "MatMul" and not n.name.startswith("/") for n in model.graph.node) == 0  # module names kept
    feed = _feed(size)
    want = ort.InferenceSession(str(onnx_path)).run(None, feed)
    _assert_same(ort.InferenceSession(model.SerializeToString()).run(None, feed), want)


def test_the_ir_has_fewer_nodes_and_gives_the_onnx_files_detections(exported):
    onnx_path, xml = exported
    core = ov.Core()
    props = {"INFERENCE_PRECISION_HINT": "f32"}
    ir = core.compile_model(str(xml), "CPU", props)
    plain = core.compile_model(ov.convert_model(str(onnx_path)), "CPU", props)  # the file as it is, Gemm form

    def executed(compiled, kind=None) -> int:
        kinds = [op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()]
        return sum(k not in ("Const", "Input", "Output") and kind in (None, k) for k in kinds)

    assert executed(ir, "FullyConnected") == executed(plain, "FullyConnected")
    assert executed(ir) < 0.95 * executed(plain) and executed(ir, "Reshape") < 0.8 * executed(plain, "Reshape")
    size = ir.input("images").get_partial_shape()[2].get_length()
    feed = _feed(size)
    want = ort.InferenceSession(str(onnx_path)).run(None, feed)
    got = ir.create_infer_request().infer(feed)
    _assert_same([got[ir.output(name)] for name in ("labels", "boxes", "scores")], want)


def test_files_that_are_not_an_ir_say_so_in_one_line(exported, tmp_path, capfd):
    """Garbage given as an .xml made OpenVINO try its TensorFlow front end, which printed two parse
    errors of its own, and the error said only "(Exception from src/inference/src/cpp/core.cpp:84:)"."""
    import shutil

    from dfine import DfineError
    from dfine.inference import Detector
    xml = exported[1]
    cases = {"not an XML file": "garbage, not xml", "its root element is <graph>, not <net>": '<?xml version="1.0"?><graph/>'}
    for expected, text in cases.items():
        bad = tmp_path / "bad.xml"
        bad.write_text(text)
        with pytest.raises(DfineError, match=expected) as e:
            Detector(str(bad), backend="openvino")
        assert "dfine export --format openvino" in str(e.value) and "\n" not in str(e.value)
    copy = tmp_path / "copy.xml"
    shutil.copy(xml, copy)
    with pytest.raises(DfineError, match="its weights file copy.bin is not beside it"):
        Detector(str(copy), backend="openvino")
    copy.with_suffix(".bin").write_bytes(xml.with_suffix(".bin").read_bytes()[:1000])  # cut short
    with pytest.raises(DfineError, match=r"not a readable model for OpenVINO \(Incorrect weights in bin file!\)"):
        Detector(str(copy), backend="openvino")
    assert "GraphDef" not in capfd.readouterr().err  # OpenVINO's other front ends were never asked


def test_an_onnx_export_there_is_kept_by_an_openvino_export(exported, tmp_path, capsys):
    """Two walks exported --static ONNX for a runtime that needs it, then --format openvino: the .onnx was
    replaced by a dynamic one ('replacing the one there'). It is the user's export: kept as it was, said; the IR
    is converted from a fresh ONNX, and works as the one converted beside its ONNX."""
    onnx_path, first_xml = exported
    ckpt = onnx_path.with_suffix(".pth")
    static = tmp_path / "tiny.onnx"
    assert main(["export", "-r", str(ckpt), "--static", "-o", str(static)]) == 0
    kept = static.read_bytes()
    assert [d.dim_value for d in onnx.load(str(static)).graph.input[0].type.tensor_type.shape.dim][0] == 1
    capsys.readouterr()
    assert main(["export", "-r", str(ckpt), "--format", "openvino", "-o", str(tmp_path / "tiny.xml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"kept {static} as it was (an export of its own; the IR is converted from a fresh ONNX)"
    assert static.read_bytes() == kept and sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny.bin", "tiny.onnx", "tiny.xml"]
    assert (tmp_path / "tiny.bin").read_bytes() == first_xml.with_suffix(".bin").read_bytes()
