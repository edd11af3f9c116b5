"""Int8 export of a tiny model (128 px, 4 calibration images) and ``dfine eval`` of exported models.

The evaluation set's ground truth is made from the int8 model's own top detections, so the AP that
``dfine eval`` prints is high only when it ran that very model with the Detector's pre-processing,
and it must equal the AP of ``Detector`` predictions scored directly."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dfine.cli import main
from dfine.engine.evaluator import coco_metrics
from dfine.export.evaluate import coco_results, load_eval_set
from dfine.export.int8 import (DEFAULT_REASON, DEFAULT_SCHEME, FLOAT_SCOPES, HEAD_INT8_TYPES, HEAD_PREFIXES,
                               SCOPE_GROUPS, WEIGHTS_7BIT, _source_name, resolve_scopes)
from dfine.inference import Detector
from tests.models.tiny import tiny_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

NAMES = ["circle", "square", "triangle", "star", "cross"]
IDS = [3, 5, 7, 9, 11]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Random tiny model (5 classes, 128x128), saved the way the trainer saves (config, names, ids)."""
    torch.manual_seed(0)
    model = tiny_model()
    path = tmp_path_factory.mktemp("int8") / "tiny.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config),
                "class_names": NAMES, "category_ids": IDS}, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six real COCO128 images in a folder of their own (the calibration and evaluation images)."""
    from tests.conftest import shared_path
    src = sorted(shared_path("data", "coco128", "train2017").glob("*.jpg"))[:6]
    folder = tmp_path_factory.mktemp("images")
    for p in src:
        (folder / p.name).symlink_to(p)
    return folder


@pytest.fixture(scope="module")
def int8_ir(checkpoint, images):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    out = checkpoint.with_name("tiny_int8.xml")
    assert main(["export", "-r", str(checkpoint), "--format", "openvino", "--int8", "--calib", str(images),
                 "--calib-size", "4", "-o", str(out)]) == 0  # simplified, as users export
    return out


def _self_labelled_set(model, images, folder):
    """A COCO JSON whose boxes are ``model``'s three best detections per image."""
    det = Detector(str(model), conf=0.0)
    paths = sorted(images.glob("*.jpg"))
    ann = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in zip(IDS, NAMES)]}
    for image_id, (path, d) in enumerate(zip(paths, det([str(p) for p in paths])), start=1):
        w, h = d.image_size
        ann["images"].append({"id": image_id, "file_name": path.name, "width": w, "height": h})
        for (x0, y0, x1, y1), cat in zip(d.boxes[:3].tolist(), d.category_ids[:3].tolist()):
            ann["annotations"].append({"id": len(ann["annotations"]) + 1, "image_id": image_id, "category_id": cat,
                                       "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                       "iscrowd": 0})
    path = folder / "self.json"
    path.write_text(json.dumps(ann))
    return path


def fq_consumers(model) -> list:
    """The operations (other than reshapes and transposes) of an OpenVINO model with an input that
    comes from a FakeQuantize (int8 once compiled), looking back through reshapes and transposes
    (the symmetric scheme puts the quantizer before the Reshape in front of a Linear layer)."""
    shape_ops = ("Reshape", "Transpose", "Squeeze", "Unsqueeze")

    def quantized(node) -> bool:
        for _ in range(8):
            if node.get_type_name() == "FakeQuantize":
                return True
            if node.get_type_name() not in shape_ops:
                return False
            node = node.input(0).get_source_output().get_node()
        return False

    return [op for op in model.get_ordered_ops() if op.get_type_name() not in shape_ops + ("FakeQuantize",)
            and any(quantized(i.get_source_output().get_node()) for i in op.inputs())]


def _eval_ap(capsys, argv) -> float:
    """AP (percent) that ``dfine eval`` prints."""
    assert main(["eval", "--no-progress", *argv]) == 0
    return float(re.search(r"\bAP (\S+)%", capsys.readouterr().out).group(1))


def test_int8_ir_carries_metadata_and_quantizes_the_head_too(int8_ir):
    import openvino as ov
    from dfine.export.openvino import ir_metadata
    model = ov.Core().read_model(int8_ir)
    meta = ir_metadata(model)
    assert json.loads(meta["class_names"]) == NAMES and json.loads(meta["category_ids"]) == IDS
    assert json.loads(meta["imgsz"]) == [128, 128]
    info = json.loads(meta["quantization"])
    assert info["precision"] == "int8" and info["calibration_images"] == 4
    assert info["float_scopes"] == [] and info["reason"] == DEFAULT_REASON and info["scheme"] == DEFAULT_SCHEME
    consumers = {n.get_friendly_name() for n in fq_consumers(model)}
    assert any(name.startswith("/model/backbone/") for name in consumers)
    for part in ("sampling", "box-heads", "decoder-rest", "query-selection"):  # measured: no AP lost there
        assert any(re.fullmatch(p, n) for p in SCOPE_GROUPS[part] for n in consumers), part


def test_int8_weights_use_7_bits_so_cpus_without_vnni_keep_the_ap(int8_ir):
    """An 8-bit weight times an 8-bit activation, summed in pairs into 16 bits (what a CPU without VNNI
    does), saturates: the demo model's int8 IR read 50.7 AP with VNNI and 46.1 on AVX2 kernels. Every
    layer's weights are 7-bit now (grouped convolutions, which NNCF leaves, aside), and the metadata
    says so."""
    import openvino as ov
    from dfine.export.openvino import ir_metadata
    model = ov.Core().read_model(int8_ir)
    assert json.loads(ir_metadata(model)["quantization"])["weights"] == WEIGHTS_7BIT
    weights = [op.get_data().astype(np.int16) for op in model.get_ordered_ops()
               if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    plain = [w for w in weights if w.ndim < 5]  # 5-D: grouped / depthwise convolutions
    assert len(plain) > 10 and max(int(np.abs(w).max()) for w in plain) <= 64


def test_default_scheme_leaves_attention_products_in_float_and_smoothquant_scheme_does_not(int8_ir, images):
    """The default scheme keeps the products of two activations (self-attention's query-key and
    attention-value products) and the max-pool in float, the Linear layers int8; scheme ``smoothquant`` (NNCF's own
    transformer defaults) quantizes the query-key products."""
    import openvino as ov
    from dfine.export.int8 import attention_products, calibration_images, quantize_openvino
    onnx_path = int8_ir.with_name("tiny.onnx")
    attention = set(attention_products(ov.Core().read_model(onnx_path).get_ordered_ops()))
    scopes = {n.rsplit("/", 1)[0] for n in attention}  # the encoder's and each decoder layer's self-attention
    assert all(s.endswith("/self_attn") for s in scopes) and len(scopes) >= 3 and len(attention) == 2 * len(scopes)

    def int8_consumers(model_path):
        return {n.get_friendly_name() for n in fq_consumers(ov.Core().read_model(model_path))}

    default = int8_consumers(int8_ir)
    assert not attention & default
    runtime = ov.Core().compile_model(int8_ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).get_runtime_model()
    pools = [op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.get_ordered_ops()
             if op.get_rt_info()["layerType"].astype(str) == "Pooling"]
    assert pools and all(p == "f32" for p in pools), pools  # the stem's max-pool runs float (faster there)
    assert any(re.fullmatch(r".*/self_attn/.*", n) for n in default)  # the projections are int8
    out, info = quantize_openvino(onnx_path, int8_ir.with_name("sq_int8.xml"), calibration_images(images, 2),
                                  scheme="smoothquant")
    assert info.scheme == "smoothquant" and attention & int8_consumers(out)  # the query-key products


def test_head_matmuls_scheme_quantizes_body_adds_and_only_matmuls_and_norms_in_the_head(int8_ir, images):
    """Scheme ``head-matmuls``: residual Adds outside the head take int8 inputs (their convolutions
    chain in int8); in the head only matrix products and norms do, its element-wise arithmetic (the
    sampling locations) stays float. The IR's metadata names the scheme."""
    import openvino as ov
    from dfine.export.int8 import calibration_images, quantize_openvino
    out, info = quantize_openvino(int8_ir.with_name("tiny.onnx"), int8_ir.with_name("hm_int8.xml"),
                                  calibration_images(images, 2), scheme="head-matmuls")
    model = ov.Core().read_model(out)
    assert json.loads(model.get_rt_info(["dfine", "quantization"]).astype(str))["scheme"] == "head-matmuls"
    nodes = fq_consumers(model)
    assert any(n.get_type_name() == "Add" and n.get_friendly_name().startswith(("/model/backbone/", "/model/encoder/"))
               for n in nodes)
    head = [n for n in nodes if _source_name(n).startswith(HEAD_PREFIXES)]
    assert {"MatMul", "MVN"} <= {n.get_type_name() for n in head} <= set(HEAD_INT8_TYPES)


def test_profile_of_int8_ir_names_parts_and_int8_kernels(int8_ir):
    """``openvino_profile`` (benchmarks/int8.py --profile): every node the CPU plugin ran, timed,
    in a part of the model; the backbone's convolutions on int8 kernels, the deformable sampling
    (GridSample) in float; ``profile_table`` sums them per part."""
    from dfine.export.benchmark import openvino_profile, profile_table
    nodes = openvino_profile(str(int8_ir), threads=1, runs=2)
    assert nodes and all(0 <= n.min_ms <= n.ms for n in nodes) and nodes == sorted(nodes, key=lambda n: -n.ms)
    assert sorted(n.index for n in nodes) == list(range(len(nodes)))  # how rounds are matched node by node
    parts = {n.part for n in nodes}
    assert {"backbone", "encoder", "decoder-other"} <= parts
    assert any(n.int8 and n.part == "backbone" and n.type == "Convolution" for n in nodes)
    assert any(not n.int8 and n.type == "GridSample" for n in nodes)
    lines = profile_table({"int8": nodes}, lambda n: n.part, "part")
    backbone = next(line for line in lines if line.startswith("| backbone |"))
    ms = sum(n.ms for n in nodes if n.part == "backbone")
    assert backbone.split("|")[2].strip().startswith(f"{ms:.2f} (") and lines[-1].startswith("| total |")
    fastest = sum(n.min_ms for n in nodes)
    assert profile_table({"int8": nodes}, lambda n: n.part, "part", stat="min_ms")[-1] == f"| total | {fastest:.2f} x{len(nodes)} |"


def test_int8_export_on_a_cpu_without_int8_dot_products_suggests_keeping_the_head_in_float():
    from dfine.export.int8 import cpu_note
    assert "--keep-float head" in cpu_note(None, ["avx2"])
    assert cpu_note(None, ["avx2", "avx512f", "avx512_vnni"]) is None  # VNNI: the default pays
    assert cpu_note(["head"], ["avx2"]) is None  # the user chose the parts


def test_keep_float_parts_reach_the_products_of_a_simplified_export(checkpoint, images, tmp_path):
    """onnxsim rebuilds each matrix product (MatMul + bias Add -> Gemm, named ``Gemm_12``); the export
    gives it back its module path, so that every product of the head belongs to a named part and
    ``--keep-float PART`` keeps exactly those products in float (before, ``sampling`` and
    ``box-heads`` matched no product at all and int8 took them silently)."""
    pytest.importorskip("onnxsim")
    pytest.importorskip("nncf")
    import onnx
    import openvino as ov
    from dfine.export.int8 import calibration_images, quantize_openvino
    out = tmp_path / "simplified.onnx"
    assert main(["export", "-r", str(checkpoint), "-o", str(out)]) == 0
    products = [n.name for n in onnx.load(str(out)).graph.node if n.op_type in ("Gemm", "MatMul")]
    assert products and all(name.startswith("/model/") for name in products), products
    head = [n for n in products if n.startswith(HEAD_PREFIXES)]
    parts = {g: [n for n in head if any(re.fullmatch(p, n) for p in SCOPE_GROUPS[g])]
             for g in ("sampling", "integral", "box-heads", "score-heads", "decoder-rest", "query-selection")}
    assert all(parts.values()), parts
    assert sorted(n for g in parts.values() for n in g) == sorted(head)  # each product in one part

    def int8_products(float_scopes):
        ir, _ = quantize_openvino(out, tmp_path / "q.xml", calibration_images(images, 2),
                                  float_scopes=resolve_scopes(float_scopes))
        names = {n.get_friendly_name() for n in fq_consumers(ov.Core().read_model(ir))}
        # OpenVINO names a Gemm's product after it (NAME/WithoutBiases)
        return {p for p in products if p in names or any(n.startswith(p + "/") for n in names)}

    default = int8_products(None)
    assert set(parts["sampling"]) | set(parts["box-heads"]) <= default
    kept = int8_products(["sampling", "box-heads"])
    assert not (set(parts["sampling"]) | set(parts["box-heads"])) & kept
    assert default & set(parts["decoder-rest"]) <= kept and default & set(parts["decoder-rest"])


def test_keep_float_words_are_parts_or_patterns():
    assert resolve_scopes(None) == FLOAT_SCOPES == ()
    assert resolve_scopes(["none"]) == ()
    assert resolve_scopes(["head"]) == SCOPE_GROUPS["head"]
    assert resolve_scopes(["sampling", "integral", "sampling", "/model/x/.*"]) == (
        *SCOPE_GROUPS["sampling"], *SCOPE_GROUPS["integral"], "/model/x/.*")


def test_a_keep_float_pattern_matching_no_operation_is_an_error():
    """A walk's ``--keep-float heads`` (the part is ``head``) matched none of the model's 2,490 operations: nothing
    stayed float32 while the export's line and the IR's metadata said 'heads' did. A pattern of one's own that
    matches nothing is an error naming the parts (a part's own patterns may match nothing in a model)."""
    from dfine.errors import DfineError
    from dfine.export.int8 import _matching
    nodes = ["/model/decoder/decoder/layers.0/cross_attn/MatMul", "/model/backbone/stem/Conv"]
    with pytest.raises(DfineError, match=r"^--keep-float 'heads' matches no operation of the model: did you mean "
                                         r"head\? give a part \(sampling, .*\) or a regular expression"):
        _matching(nodes, resolve_scopes(["heads"]))
    assert _matching(nodes, resolve_scopes(["integral", "/model/backbone/.*"])) == ["/model/backbone/stem/Conv"]


def test_eval_of_int8_ir_matches_detector_predictions(int8_ir, images, tmp_path, capsys):
    ann = _self_labelled_set(int8_ir, images, tmp_path)
    ap = _eval_ap(capsys, ["-r", str(int8_ir), "--ann-file", str(ann), "--images", str(images), "--threads", "2"])
    data = load_eval_set(ann, images)
    direct = coco_metrics(data.ann, coco_results(Detector(str(int8_ir), conf=0.0), data.images))
    assert ap == pytest.approx(round(100 * direct.ap, 1), abs=0.051)
    assert ap > 50  # the model's own top detections are ground truth: a different model scores far lower


def test_an_onnx_export_there_is_kept_by_an_int8_export(checkpoint, images, tmp_path, capsys):
    """A walk exported ONNX, then --format openvino --int8: the int8 export wrote its float ONNX over it
    ('replacing the one there'), where a float OpenVINO export keeps it. It is kept here too, said; the int8
    IR is made from a fresh ONNX in a temporary folder."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    import shutil
    ckpt = shutil.copy(checkpoint, tmp_path / "tiny.pth")
    assert main(["export", "-r", str(ckpt), "--static"]) == 0
    mine = (tmp_path / "tiny.onnx").read_bytes()
    capsys.readouterr()
    assert main(["export", "-r", str(ckpt), "--format", "openvino", "--int8", "--calib", str(images),
                 "--calib-size", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"kept {tmp_path / 'tiny.onnx'} as it was (an export of its own; the int8 model is made from "
                      f"a fresh ONNX)")
    assert (tmp_path / "tiny.onnx").read_bytes() == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.pth", "tiny_int8.bin", "tiny_int8.xml"]
    assert len(Detector(str(tmp_path / "tiny_int8.xml"), conf=0.0)(str(sorted(images.glob("*.jpg"))[0]))) == 1
    assert not [line for line in out if "replacing" in line]
    assert main(["export", "-r", str(ckpt), "--format", "openvino", "--int8", "--calib", str(images),
                 "--calib-size", "2"]) == 0  # again: the int8 IR there is replaced, said as a float export says it
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert wrote[-1].startswith(f"wrote {tmp_path / 'tiny_int8.xml'} (int8; ") and wrote[-1].endswith(
        ") replacing the one there"), wrote


def test_accuracy_aware_int8_stops_within_its_limit(int8_ir, checkpoint, images, tmp_path, capsys):
    """``--max-drop`` on a drop int8 cannot be trusted to meet (0.001 AP points against the float
    model's own detections): the accuracy-aware export measures both, returns what it must to
    float (at most ``--max-restore`` groups), ends, and says what it did, the IR agreeing.

    Only the first stem convolution is int8 (``--keep-float``): one group of layers for NNCF to
    rank (one model compile) instead of one per stem layer, so the test costs little beyond the
    export and NNCF's quantization. Either int8 meets the drop as it is (nothing restored, that
    convolution still int8 in the IR), or its group goes back and the model is float32 again
    (nothing int8 left, and the metadata names what went back): both end within the drop."""
    import openvino as ov
    from dfine.export.openvino import ir_metadata
    ann = _self_labelled_set(checkpoint.with_name("tiny.onnx"), images, tmp_path)  # the float export of int8_ir
    out = tmp_path / "acc_int8.xml"
    stem1 = "/model/backbone/stem/stem1/"
    assert main(["export", "-r", str(checkpoint), "--format", "openvino", "--int8", "--calib", str(images),
                 "--calib-size", "4", "-o", str(out), "--max-drop", "0.001", "--max-restore", "1",
                 "--keep-float", f"(?!{stem1}).*", "--val-ann", str(ann), "--val-images", str(images)]) == 0
    model = ov.Core().read_model(out)
    info = json.loads(ir_metadata(model)["quantization"])
    assert info["max_restore"] == 1 and info["ranking_images"] == 6 and info["max_drop"] == 0.001
    # each pass over the val set is said as it ends (NNCF's bars reach a log only at the end)
    passes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("accuracy-aware int8: val AP")]
    assert passes[0].endswith("(float32)") and passes[1].endswith("(int8)")
    assert info["val_ap_float"] > 50  # its own detections are the ground truth
    assert info["met_max_drop"] is True and info["val_ap_float"] - info["val_ap_int8"] <= 0.001
    int8_ops = {n.get_friendly_name() for n in fq_consumers(model)}
    assert all(name.startswith(stem1) for name in int8_ops)  # nothing outside the scope was quantized
    if info["restored_to_float"]:  # the one group went back: float32 again
        assert all(name.startswith(stem1) for name in info["restored_to_float"])
        assert not int8_ops
    else:  # int8 met the drop as it was
        assert int8_ops
    # the AP it reports is what dfine eval of the saved file reads, and the file keeps its batch axis free
    assert model.input("images").get_partial_shape()[0].is_dynamic
    data = load_eval_set(ann, images)
    evaluated = coco_metrics(data.ann, coco_results(Detector(str(out), conf=0.0), data.images)).ap
    assert info["val_ap_int8"] == pytest.approx(100 * evaluated, abs=0.006)


def test_accuracy_aware_ap_is_measured_at_the_batch_detector_compiles(int8_ir, monkeypatch):
    """A walk's --max-drop export said 'val AP 10.67 float32 -> 10.2 int8' where dfine eval of the file
    read 9.9: the IR was compiled with a dynamic batch, Detector fixes it, and int8 results differ
    between the two. The AP is measured on a model of batch 1 now."""
    import openvino as ov
    from dfine.export import int8 as int8_module
    seen = []

    class Stop(Exception):
        pass

    def compile_model(self, model, device, props):
        seen.append(model.input("images").get_partial_shape())
        raise Stop

    monkeypatch.setattr(ov.Core, "compile_model", compile_model)
    model = ov.Core().read_model(int8_ir)
    assert model.input("images").get_partial_shape()[0].is_dynamic
    validation = int8_module._APValidation((64, 64), {}, None)
    with pytest.raises(Stop):
        validation.full_set_ap(model)
    assert seen[0][0] == 1 and model.input("images").get_partial_shape()[0].is_dynamic  # a copy was reshaped


def test_onnx_int8_qdq_runs_and_carries_metadata(checkpoint, images, tmp_path, capsys):
    import onnx
    out = tmp_path / "tiny_int8.onnx"
    assert main(["export", "-r", str(checkpoint), "--int8", "--calib", str(images), "--calib-size", "3",
                 "-o", str(out)]) == 0
    assert (tmp_path / "tiny.onnx").is_file()  # the float export beside it
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == NAMES and json.loads(meta["quantization"])["calibration_images"] == 3
    ops = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert any(n.name.startswith("/model/backbone/") or "backbone" in n.output[0] for n in ops)
    det = Detector(str(out), conf=0.0)
    assert repr(det).startswith("Detector(onnxruntime int8, ")  # said apart from its float32 export
    assert repr(Detector(str(tmp_path / "tiny.onnx"))).startswith("Detector(onnxruntime, ")
    [d] = det(str(sorted(images.glob("*.jpg"))[0]))
    assert d.names and set(d.category_ids.tolist()) <= set(IDS)
    ann = _self_labelled_set(out, images, tmp_path)
    assert _eval_ap(capsys, ["-r", str(out), "--ann-file", str(ann), "--images", str(images)]) > 50


def test_eval_of_float_onnx_on_part_of_a_set(checkpoint, images, tmp_path, capsys, monkeypatch):
    out = tmp_path / "tiny.onnx"
    assert main(["export", "-r", str(checkpoint), "--no-simplify", "-o", str(out)]) == 0
    ann = _self_labelled_set(out, images, tmp_path)
    assert main(["eval", "--no-progress", "-r", str(out), "--ann-file", str(ann), "--images", str(images),
                 "--max-images", "4"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"\(4 images, \d+ box(es)?\)", text) and float(re.search(r"\bAP (\S+)%", text).group(1)) > 50
    assert re.search(r"^category +AP %  boxes$", text, re.M)  # the per-class table, as for a checkpoint
    written = tmp_path / "tiny.onnx.eval.json"  # beside the model, named after it (and said where)
    assert f"metrics: {written}" in text
    saved = json.loads(written.read_text())
    assert saved["stats"]["AP"] == pytest.approx(float(re.search(r"\bAP (\S+)%", text).group(1)) / 100, abs=5e-4)
    assert saved["names"] == {str(i): n for i, n in zip(IDS, NAMES)} and set(saved["per_class"]) == set(saved["names"])
    assert saved["model"] == str(out) and saved["num_images"] == 4 and saved["ann_file"] == str(ann)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, nothing left over
    monkeypatch.chdir(tmp_path)  # paths given relative to the folder it is run from are written absolute
    assert main(["eval", "--no-progress", "-r", out.name, "--ann-file", ann.name, "--images", str(images),
                 "--max-images", "2", "-o", "elsewhere"]) == 0
    saved = json.loads((tmp_path / "elsewhere" / "tiny.onnx.eval.json").read_text())  # -o chooses the folder
    assert saved["num_images"] == 2 and saved["ann_file"] == str(ann) and saved["model"] == str(out)


def test_eval_of_a_checkpoint_on_a_coco_file(checkpoint, images, tmp_path, capsys):
    """``dfine eval -r model.pth --ann-file ... --images ...`` as for an export (the checkpoint carries
    its model, names, ids and input size); it was refused with '-c RECIPE is required'."""
    ann = _self_labelled_set(checkpoint, images, tmp_path)
    out = tmp_path / "metrics"
    assert _eval_ap(capsys, ["-r", str(checkpoint), "--ann-file", str(ann), "--images", str(images),
                             "-o", str(out)]) > 50  # its own (clipped) detections as the ground truth
    saved = json.loads((out / f"{checkpoint.name}.eval.json").read_text())
    assert saved["model"] == str(checkpoint) and saved["names"] == {str(i): n for i, n in zip(IDS, NAMES)}


def test_eval_json_of_each_export_of_a_run_has_its_own_name(tmp_path):
    """``--format openvino`` writes model.onnx and model.xml side by side; evaluated one after the
    other, both wrote model.eval.json and the second replaced the first."""
    from dfine.export.evaluate import eval_json_path

    paths = [eval_json_path(tmp_path / name) for name in ("model.onnx", "model.xml", "model_int8.xml",
                                                           "model_int8.onnx")]
    assert [p.name for p in paths] == ["model.onnx.eval.json", "model.xml.eval.json", "model_int8.xml.eval.json",
                                       "model_int8.onnx.eval.json"]
    assert eval_json_path(tmp_path / "model.xml", "out") == Path("out") / "model.xml.eval.json"


@pytest.mark.parametrize("argv, words", [
    (["--int8"], "--calib"),
    (["--int8", "--calib", "/nonexistent"], "/nonexistent"),
    (["--int8", "--calib", "IMAGES", "--max-drop", "0.5"], "--format openvino"),
    (["--int8", "--calib", "IMAGES", "--format", "openvino", "--max-drop", "0.5"], "--val-ann"),
    (["--int8", "--calib", "IMAGES", "--keep-float", "("], "neither a part"),
])
def test_int8_option_errors_are_one_line(checkpoint, images, capsys, argv, words):
    argv = [str(images) if a == "IMAGES" else a for a in argv]
    assert main(["export", "-r", str(checkpoint), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err


def test_eval_errors_are_one_line(checkpoint, images, tmp_path, capsys):
    present = tmp_path / "model.onnx"
    present.write_bytes(b"")
    for argv, words in [(["-r", str(tmp_path / "missing.onnx"), "--ann-file", "a.json", "--images", str(images)],
                         "missing.onnx not found"),
                        (["-r", str(present)], "--ann-file"),
                        (["-r", str(present), "--ann-file", str(tmp_path / "a.json"), "--images", str(images)],
                         "a.json not found"),
                        (["-r", str(checkpoint)], "-c RECIPE")]:
        assert main(["eval", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and words in err


def test_detector_from_run_equals_the_file_backend(checkpoint, images, tmp_path):
    """``Detector.from_run`` (the hook accuracy-aware quantization evaluates through) gives the
    detections of the same model loaded from its file."""
    out = tmp_path / "tiny.onnx"
    assert main(["export", "-r", str(checkpoint), "--no-simplify", "-o", str(out)]) == 0
    det = Detector(str(out), conf=0.0)
    same = Detector.from_run(det._engine.run, det.imgsz, NAMES, IDS, conf=0.0)
    paths = [str(p) for p in sorted(images.glob("*.jpg"))[:2]]
    for a, b in zip(det(paths), same(paths)):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert a.names == b.names and a.category_ids.tolist() == b.category_ids.tolist()


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch logs its CUDA notice only without a CUDA runtime")
def test_int8_export_does_not_print_torchs_cuda_notice():
    """NNCF makes torch import its extension builder, which logs "No CUDA runtime is found" on a
    CPU machine: a line about nothing the user asked for, silenced around NNCF's import and calls."""
    import subprocess
    import sys
    code = ("import torch\nfrom dfine.export.int8 import _no_cuda_notice\n"
            "with _no_cuda_notice():\n    import torch.utils.cpp_extension\n")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loud = subprocess.run([sys.executable, "-c", "import torch, torch.utils.cpp_extension"],
                          capture_output=True, text=True, check=True)
    assert "No CUDA runtime is found" in loud.stderr  # what the user saw
    assert "No CUDA runtime is found" not in quiet.stderr


def test_int8_export_line_says_what_the_scheme_keeps_float(checkpoint, images, tmp_path, capsys):
    pytest.importorskip("nncf")
    out = tmp_path / "m_int8.xml"
    assert main(["export", "-r", str(checkpoint), "--format", "openvino", "--int8", "--calib", str(images),
                 "--calib-size", "2", "--no-simplify", "-o", str(out)]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith(f"wrote {out}"))
    assert "kept in float32 (--keep-float): nothing; attention's activation products and max-pools stay float" in line


def test_calibration_from_a_roboflow_split_file_finds_its_images_folder(tmp_path):
    """``--calib train/_annotations.coco.json`` (a walk) said its images were not beside it, though data check
    and eval find them in ``train/images/``; a file whose images are nowhere near is still one line."""
    from dfine.errors import DfineError
    from dfine.export.int8 import calibration_images
    from tests.data.datasets import image
    split = tmp_path / "train"
    names = [f"p{i}.jpg" for i in range(3)]
    for name in names:
        image(split / "images" / name)
    ann = split / "_annotations.coco.json"
    ann.write_text(json.dumps({"images": [{"id": i, "file_name": n, "width": 64, "height": 48}
                                          for i, n in enumerate(names)], "annotations": [], "categories": []}))
    assert calibration_images(ann, 10) == [split / "images" / n for n in names]
    lost = tmp_path / "lost.json"
    lost.write_text(ann.read_text())
    with pytest.raises(DfineError, match="the images of .*lost.json are not beside it"):
        calibration_images(lost, 10)
