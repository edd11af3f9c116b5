"""dfine.Detector: torch, ONNX Runtime and OpenVINO agree on the golden checkpoint; inputs of every
kind; the size is recognised from the weights; TensorRT skips cleanly without CUDA."""

from __future__ import annotations

import json
import os
import platform
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import dfine.allocator
from dfine.errors import DfineError
from dfine.checkpoint import infer_model_name, load_model
from dfine.export.onnx import export_onnx
from dfine.inference import Detector
from tests.compare import assert_detections_close
from tests.conftest import load_golden, shared_path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(golden N checkpoint, its ONNX export at 640)."""
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("det")
    ckpt = folder / "n.pth"
    torch.save(load_golden("n")["checkpoint"], ckpt)
    return ckpt, export_onnx(load_model(ckpt), folder / "n.onnx", simplify=False)


def _images():
    folder = shared_path("data", "coco128", "train2017")
    return [folder / "000000000009.jpg", folder / "000000000025.jpg"]


def _assert_same(a, b, box_tol=1e-2, score_tol=1e-4):
    """Same detections as sets (near-tied scores may swap order)."""
    assert len(a) == len(b) > 0
    gold = {"labels": torch.from_numpy(a.labels), "boxes": torch.from_numpy(a.boxes), "scores": torch.from_numpy(a.scores)}
    assert_detections_close(torch.from_numpy(b.labels), torch.from_numpy(b.boxes), torch.from_numpy(b.scores),
                            gold, score_tol=score_tol, box_tol=box_tol)


def test_backends_agree_and_inputs_of_every_kind(files):
    ckpt, onnx_path = files
    paths = _images()
    torch_det = Detector(str(ckpt), conf=0.02, batch_size=2)
    ort_det = Detector(str(onnx_path), conf=0.02)
    assert (torch_det.backend, ort_det.backend) == ("torch", "onnxruntime")
    if platform.libc_ver()[0] == "glibc" and os.environ.get("DFINE_KEEP_MEMORY") != "0":
        assert dfine.allocator._done  # the PyTorch CPU engine keeps freed memory for the next pass
    ref = torch_det(paths)
    got = ort_det(paths)
    for a, b in zip(ref, got):
        _assert_same(a, b)
        assert a.image_size == Image.open(a.path).size
        assert all(isinstance(n, str) for n in a.names) and len(a.names) == len(a)
    pil = Image.open(paths[0])
    arr = np.asarray(pil.convert("RGB"))
    for item in (pil, arr):
        _assert_same(ort_det(item)[0], got[0])
    if pytest.importorskip("openvino", reason="openvino not installed"):
        _assert_same(Detector(str(onnx_path), conf=0.02, backend="openvino")(paths)[0], got[0], box_tol=5e-2, score_tol=5e-4)


def test_conf_threshold_and_coco_entries(files):
    _, onnx_path = files
    [dets] = Detector(str(onnx_path), conf=0.05)(_images()[0])
    assert (dets.scores > 0.05).all()
    entries = dets.to_coco(9)
    assert len(entries) == len(dets) and all(e["image_id"] == 9 and len(e["bbox"]) == 4 for e in entries)
    x0, y0, x1, y1 = dets.boxes[0]
    assert entries[0]["bbox"][2] == pytest.approx(x1 - x0, abs=0.01)


def test_infer_model_name_from_weights():
    state = load_golden("n")["checkpoint"]["ema"]["module"]
    assert infer_model_name(state) == ("dfine_n", 80)
    with pytest.raises(DfineError, match="none of the D-FINE sizes"):
        infer_model_name({**state, "decoder.enc_score_head.weight": torch.zeros(80, 7)})


def test_bad_arguments_are_one_line_errors(files, tmp_path):
    ckpt, _ = files
    with pytest.raises(DfineError, match="unknown backend"):
        Detector(str(ckpt), backend="tflite")
    with pytest.raises(DfineError, match="cannot run"):
        Detector(str(ckpt), backend="onnxruntime")
    with pytest.raises(DfineError, match="H x W x 3"):
        Detector(str(ckpt))(np.zeros((4, 4), np.float32))
    with pytest.raises(DfineError, match="precision"):
        Detector(str(ckpt), precision="int4")
    with pytest.raises(DfineError, match="OpenVINO setting"):
        Detector(str(ckpt), precision="bf16")
    with pytest.raises(DfineError) as err:  # a walk's `dfine track -b 0` was told of a 'batch size' it never gave
        Detector(str(ckpt), batch_size=0)
    assert str(err.value) == "batch size (batch_size=, the command line's -b) must be >= 1, got 0"


def test_static_batch_file_runs_image_by_image(files, tmp_path):
    """A --static (batch 1) export serves a batch of two images one at a time, with the same results."""
    ckpt, onnx_path = files
    static = export_onnx(load_model(ckpt), tmp_path / "static.onnx", dynamic_batch=False, simplify=False)
    det = Detector(str(static), conf=0.02, batch_size=2)
    assert det._engine.fixed_batch == 1
    for a, b in zip(Detector(str(onnx_path), conf=0.02)(_images()), det(_images())):
        _assert_same(a, b)


def test_tensorrt_engine_needs_cuda_and_tensorrt(tmp_path):
    fake = tmp_path / "m.engine"
    fake.write_bytes(b"x")
    try:
        import tensorrt  # noqa: F401
        has_trt = torch.cuda.is_available()
    except ImportError:
        has_trt = False
    if has_trt:
        pytest.skip("real TensorRT present: covered by GPU tests")
    with pytest.raises(DfineError, match="tensorrt|CUDA"):
        Detector(str(fake))


def _blob_box(image: Image.Image):
    """xyxy of the bright pixels (> 128) of an 8-bit image."""
    ys, xs = np.nonzero(np.asarray(image.convert("L")) > 128)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_boxes_in_the_displayed_image(tmp_path, monkeypatch, capsys, orientation):
    """A phone photo stored sideways with an EXIF rotation: detections come back in the image as
    displayed (the one ImageOps.exif_transpose gives), and predict's annotated copy shows it upright."""
    from PIL import ImageOps
    from dfine.cli import main
    from tests.blob_engine import patch_detector
    patch_detector(monkeypatch, imgsz=(128, 128))
    stored = Image.new("RGB", (256, 128), (10, 10, 10))
    stored.paste((250, 250, 250), (16, 8, 80, 40))  # off-centre: every orientation moves it elsewhere
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    shown = ImageOps.exif_transpose(Image.open(path))
    [dets] = Detector("any.pth")(path)
    assert dets.image_size == shown.size
    assert len(dets) == 1 and np.abs(dets.boxes[0] - _blob_box(shown)).max() <= 3
    [same] = Detector("any.pth")(Image.open(path))  # an opened PIL image is oriented the same way
    np.testing.assert_allclose(same.boxes, dets.boxes)
    out = tmp_path / "out"
    assert main(["predict", str(path), "-m", "any.pth", "-o", str(out)]) == 0
    annotated = Image.open(out / "phone.jpg")
    assert annotated.size == shown.size and annotated.getexif().get(0x0112, 1) == 1


def test_16_bit_image_is_scaled_not_clipped(tmp_path, monkeypatch):
    """A 16-bit PNG (dark background 1000, object 50000 of 65535) is seen as a dark image with a
    bright object; clipping to 255 would turn it all white."""
    from tests.blob_engine import patch_detector
    patch_detector(monkeypatch)
    values = np.full((96, 128), 1000, np.uint16)
    values[20:60, 30:90] = 50000
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    [dets] = Detector("any.pth")(path)
    assert len(dets) == 1 and np.abs(dets.boxes[0] - np.array([30, 20, 90, 60])).max() <= 2


def _overreaching_engine(monkeypatch):
    """A stand-in engine whose boxes reach past the borders of a 128x96 image, as D-FINE's do
    for objects cut by the border (the centre inside, the edges outside)."""
    from dfine.inference import _Engine
    raw = np.array([[-7.5, -3.0, 50.0, 40.0], [100.0, 80.0, 141.0, 130.0], [10.0, 10.0, 20.0, 20.0]], np.float32)

    def run(images, sizes):
        b = len(images)
        return np.zeros((b, 3), np.int64), np.repeat(raw[None], b, axis=0), np.full((b, 3), 0.9, np.float32)

    monkeypatch.setattr("dfine.inference._open", lambda *a, **k: _Engine(run, "torch", (64, 64), ("thing",), (1,)))
    return raw


def test_boxes_handed_to_the_user_lie_within_the_image_but_evaluation_scores_the_raw_boxes(tmp_path, monkeypatch,
                                                                                            capsys):
    from dfine.cli import main
    from dfine.export.evaluate import coco_results
    raw = _overreaching_engine(monkeypatch)
    path = tmp_path / "a.png"
    Image.new("RGB", (128, 96), (40, 40, 40)).save(path)
    [d] = Detector("any.pth")(path)
    np.testing.assert_array_equal(d.boxes, [[0, 0, 50, 40], [100, 80, 128, 96], [10, 10, 20, 20]])
    [unclipped] = Detector("any.pth", clip=False)(path)
    np.testing.assert_array_equal(unclipped.boxes, raw)
    det = Detector("any.pth")
    assert [r["bbox"] for r in coco_results(det, [(1, path)])][:2] == [[-7.5, -3.0, 57.5, 43.0], [100.0, 80.0, 41.0, 50.0]]
    assert det.clip  # the evaluation's unclipped copy left the caller's detector as it was
    out = tmp_path / "out"
    assert main(["predict", str(path), "-m", "any.pth", "-o", str(out)]) == 0
    assert f"1 image -> {out} (3 detections, " in capsys.readouterr().out  # not "1 image(s)"
    for r in json.loads((out / "predictions.json").read_text()):
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 96, r


def test_missing_runtimes_name_the_extra_to_install(monkeypatch):
    """The hint names the package's extra, as every other optional library's does (pip install
    dfine[plots], dfine[track]); 'pip install onnx' for an OpenVINO export left onnxsim and the
    runtime to be found one error at a time."""
    from dfine.commands.export import _check_openvino
    from dfine.inference import _openvino_engine, _ort_engine

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import -> ImportError
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(DfineError, match=r"ONNX models need onnxruntime: pip install \"dfine\[onnx\]\""):
        _ort_engine("model.onnx", "cpu", None)
    with pytest.raises(DfineError, match=r"backend openvino needs OpenVINO: pip install \"dfine\[openvino\]\""):
        _openvino_engine("model.xml", None)
    with pytest.raises(DfineError, match=r"--format openvino needs OpenVINO and onnx: "
                                         r"pip install \"dfine\[openvino,onnx\]\""):
        _check_openvino()
    from dfine.export.onnx import export_onnx
    from dfine.export.openvino import export_openvino
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(DfineError, match=r"ONNX export needs the onnx package: pip install \"dfine\[onnx\]\""):
        export_onnx(None, "model.onnx")
    with pytest.raises(DfineError, match=r"--format openvino needs OpenVINO and onnx: pip install \"dfine\[openvino,onnx\]\""):
        export_openvino("model.onnx", "model.xml")
    from dfine.export.onnx import simplify_onnx
    with pytest.raises(DfineError, match=r"--simplify needs onnxsim: pip install \"dfine\[onnx\]\""):
        simplify_onnx("model.onnx", required=True)


def test_every_install_hint_is_quoted_for_the_shell():
    """zsh (macOS's shell) reads an unquoted ``pip install dfine[onnx]`` as a file pattern and stops at
    "no matches found": every hint in a message is ``pip install "dfine[EXTRA]"``, which bash, zsh,
    PowerShell and cmd all pass on as one argument. Docstrings (in double backquotes) are not messages."""
    import re
    from pathlib import Path

    import dfine
    bare = [f"{path.name}:{n}" for path in Path(dfine.__file__).parent.rglob("*.py")
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"pip install (dfine|\.)\[", line) and "``" not in line]
    assert not bare, bare


def test_detections_print_as_one_line():
    """print(detector(image)[0]) shows one line (where from, how many, the best three), not every array."""
    from dfine.inference import Detections
    boxes = np.array([[1, 2, 30, 40], [5, 6, 7, 8], [1, 1, 2, 2], [3, 3, 4, 4]], np.float32)
    d = Detections(boxes, np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.array([0, 1, 0, 1]),
                   ["cat", "dog", "cat", "dog"], np.array([1, 2, 1, 2]), (640, 480), "a.jpg")
    assert str(d) == ("Detections(a.jpg, 640x480: 4 found: cat 0.90 [1, 2, 30, 40], dog 0.80 [5, 6, 7, 8], "
                      "cat 0.70 [1, 1, 2, 2], ... 1 more)")
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [],
                       np.zeros(0, np.int64), (64, 48))
    assert repr(empty) == "Detections(64x48: 0 found)"


def test_onnx_runtime_threads_wait_passively_when_omp_wait_policy_says_so(monkeypatch, tmp_path):
    """OMP_WAIT_POLICY=PASSIVE (torch's switch for a busy machine) also stops ONNX Runtime's
    threads spinning; otherwise ONNX Runtime's default (spinning, faster on an idle machine)."""
    ort = pytest.importorskip("onnxruntime")
    from dfine.inference import _ort_engine
    seen = []

    class Capture:
        def __init__(self, model, opts, providers):
            try:
                seen.append(opts.get_session_config_entry("session.intra_op.allow_spinning"))
            except Exception:  # onnxruntime raises for an entry never set
                seen.append(None)
            raise RuntimeError("captured")

    monkeypatch.setattr(ort, "InferenceSession", Capture)
    for policy in ("PASSIVE", "active", None):
        if policy is None:
            monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        else:
            monkeypatch.setenv("OMP_WAIT_POLICY", policy)
        with pytest.raises(DfineError):
            _ort_engine(str(tmp_path / "model.onnx"), "cpu", 2)
    assert seen == ["0", None, None]


def test_openvino_reads_the_input_in_place(files):
    """The OpenVINO runner hands its input arrays over without a copy (``share_inputs``); the
    outputs are copies, so the next inference does not overwrite earlier results."""
    pytest.importorskip("openvino", reason="openvino not installed")
    _, onnx_path = files
    run = Detector(str(onnx_path), backend="openvino")._engine.run
    images = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    sizes = np.array([[640, 640]], dtype=np.int64)
    labels, boxes, scores = run(images, sizes)
    [(_, request)] = run.compiled.values()
    assert np.shares_memory(request.get_tensor("images").data, images)
    kept = scores.copy()
    run(np.zeros_like(images), sizes)
    assert np.array_equal(scores, kept)


def test_a_wrong_keyword_of_a_detector_call_names_the_one_meant():
    """``det(image, confidence=0.3)`` was a bare TypeError (a walk), where ``Detector(confidence=...)`` says which
    keyword is meant; the call keeps its signature for help()."""
    import inspect
    det = Detector.from_run(lambda b, s: None, (32, 32), ["thing"], [1])
    with pytest.raises(DfineError) as e:
        det(np.zeros((32, 32, 3), np.uint8), confidence=0.3)
    assert str(e.value) == "dfine.Detector(...)() takes no confidence=; did you mean conf=?"
    assert list(inspect.signature(Detector.__call__).parameters) == ["self", "images", "bgr", "conf"]


def test_a_detector_call_says_which_arrays_it_takes_and_takes_them():
    """``help(det)`` said arrays are ``H x W x 3`` only, where ``H x W x 4`` and gray ``H x W`` ones are read
    too (a walk): the docstring names each kind, and each is read."""
    det = Detector.from_run(lambda b, s: (np.zeros((len(b), 1), np.int64), np.zeros((len(b), 1, 4), np.float32),
                                          np.zeros((len(b), 1), np.float32)), (32, 32), ["thing"], [1])
    doc = " ".join(Detector.__call__.__doc__.split())
    assert "``H x W x 3`` in RGB order, ``H x W x 4`` RGBA (its alpha dropped) or ``H x W`` gray" in doc
    for shape in ((20, 30, 3), (20, 30, 4), (20, 30)):
        [found] = det(np.zeros(shape, np.uint8))
        assert found.image_size == (30, 20)


def test_opencv_frames_are_read_in_bgr_order_when_told():
    """``cv2.imread`` and ``VideoCapture`` give BGR arrays; ``Detector`` reads arrays as RGB, so an
    OpenCV frame passed as it is swaps red and blue, silently. ``bgr=True`` reads it right: the
    model sees the same pixels as from the RGB array or the PIL image."""
    seen = []

    def run(batch, sizes):
        seen.append(batch.copy())
        return np.zeros((len(batch), 1), np.int64), np.zeros((len(batch), 1, 4), np.float32), \
            np.zeros((len(batch), 1), np.float32)

    det = Detector.from_run(run, (32, 32), ["thing"], [1], conf=0.0)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 10  # red, green, blue
    det(rgb)
    det(np.ascontiguousarray(rgb[..., ::-1]), bgr=True)  # as OpenCV holds the same picture
    det(Image.fromarray(rgb), bgr=True)  # a PIL image carries its own order: bgr does not apply
    det(np.ascontiguousarray(rgb[..., ::-1]))  # BGR read as RGB: red and blue swapped
    assert np.array_equal(seen[0], seen[1]) and np.array_equal(seen[0], seen[2])
    assert seen[0][0, 0, 0, 0] > seen[0][0, 2, 0, 0] and np.array_equal(seen[3][0, ::-1], seen[0][0])
    # 4 channels (np.asarray of a PNG, cv2's IMREAD_UNCHANGED): its alpha dropped, as for an RGBA PIL image (a walk)
    alpha = np.full((32, 32, 1), 77, np.uint8)
    det(np.concatenate([rgb, alpha], axis=2))
    det(np.concatenate([rgb[..., ::-1], alpha], axis=2), bgr=True)
    det(Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA"))
    assert all(np.array_equal(seen[0], s) for s in seen[4:7])
    with pytest.raises(DfineError, match="OpenCV's BGR with bgr=True"):
        det(np.zeros((8, 8, 5), np.uint8), bgr=True)


def test_a_detector_prints_what_it_runs():
    """``print(detector)`` was ``<dfine.inference.Detector object at 0x7fad...>`` (a walk helper's finding)."""
    det = Detector.from_run(lambda b, s: None, (320, 320), ["bishop", "king", "pawn", "rook"], [1, 2, 3, 4], conf=0.3)
    assert repr(det) == "Detector(custom, input 320x320, conf 0.3, 4 classes: bishop, king, pawn, ...)"
    one = Detector.from_run(lambda b, s: None, (192, 256), ["raccoon"], [1])
    assert str(one) == "Detector(custom, input 192x256, conf 0.5, 1 class: raccoon)"


def test_what_a_notebook_hands_the_detector(files, tmp_path):
    """A gray H x W array is read as a gray file is; a torch tensor, a folder and a number are one line
    each saying what Detector takes (they were a TypeError from deep inside, and 'image DIR not found'
    for a folder that exists)."""
    ckpt, _ = files
    det = Detector(str(ckpt), conf=0.0)
    gray = (np.arange(64 * 96, dtype=np.uint32).reshape(64, 96) % 251).astype(np.uint8)
    found, stacked = det(gray)[0], det(np.stack([gray] * 3, axis=2))[0]
    assert found.image_size == (96, 64)
    np.testing.assert_allclose(found.boxes, stacked.boxes, atol=1e-3)
    np.testing.assert_allclose(det(gray[:, :, None])[0].scores, stacked.scores, atol=1e-5)
    with pytest.raises(DfineError, match=r"not torch tensors: .*permute\(1, 2, 0\)"):
        det(torch.rand(3, 64, 64))
    with pytest.raises(DfineError, match="not torch tensors"):
        det(torch.rand(2, 3, 64, 64))
    with pytest.raises(DfineError, match=f"image {tmp_path} is a folder: .*dfine predict {tmp_path}"):
        det(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")  # a folder of PNGs: the glob it suggests finds them
    with pytest.raises(DfineError, match=r"glob\('\*\.png'\)"):
        det(tmp_path)
    with pytest.raises(DfineError) as err:  # a pattern, as the command line takes (a walk: 'not found' alone)
        det(str(tmp_path / "*.png"))
    assert str(err.value) == (f"image {tmp_path / '*.png'} not found: Detector takes files, not patterns (detector("
                              f"sorted(Path('{tmp_path}').glob('*.png'))), or dfine predict '{tmp_path / '*.png'}')")
    with pytest.raises(DfineError, match="a file path, a PIL image or an H x W x 3 uint8 array, got int"):
        det(5)
    # this call's threshold, as other detectors take it (a walk's det(image, conf=0.1) was a TypeError)
    every = det(gray)[0]
    cut = float(np.median(every.scores))
    kept = det(gray, conf=cut)[0]
    assert len(kept.scores) == int((every.scores > cut).sum()) and det.conf == 0.0
    with pytest.raises(DfineError, match=r"conf must be a number in 0..1, got 50 \(a percentage\? 0.5 is 50%\)"):
        det(gray, conf=50)


def test_detections_plot_is_the_picture_dfine_predict_writes(files, tmp_path):
    """``Detections.plot()``, for a notebook (there was no public way to draw): from the file, from the
    PIL image and from an OpenCV array with bgr=True, the same pixels as ``dfine predict`` writes for
    that image; one line when the image is not at hand or is not the one the detections are of."""
    from dfine.cli import main

    ckpt, _ = files
    png = tmp_path / "in" / "street.png"
    png.parent.mkdir()
    Image.open(_images()[0]).save(png)
    assert main(["predict", str(png), "-m", str(ckpt), "--conf", "0.05", "-o", str(tmp_path / "out")]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "street.png").convert("RGB"))
    dets = Detector(str(ckpt), conf=0.05)(png)[0]
    assert len(dets) > 0
    drawn = np.asarray(dets.plot())
    assert np.array_equal(drawn, written)
    assert not np.array_equal(drawn, np.asarray(Image.open(png).convert("RGB")))  # something was drawn
    rgb = np.asarray(Image.open(png).convert("RGB"))
    assert np.array_equal(np.asarray(dets.plot(Image.open(png))), written)
    assert np.array_equal(np.asarray(dets.plot(np.ascontiguousarray(rgb[..., ::-1]), bgr=True)), written)
    from_array = Detector(str(ckpt), conf=0.05)(rgb)[0]
    with pytest.raises(DfineError, match=r"not a file: pass it, detections.plot\(image\)"):
        from_array.plot()
    with pytest.raises(DfineError, match=r"the image given is 10x10 px and these detections are of a \d+x\d+ one"):
        dets.plot(Image.new("RGB", (10, 10)))
    # none above conf: the picture says so and how near the model came (a notebook walk got the bare photo)
    top = float(Detector(str(ckpt), conf=0.0)(png)[0].scores.max())
    none = Detector(str(ckpt), conf=0.999)(png)[0]
    assert len(none) == 0 and none.conf == 0.999 and none.top_below == pytest.approx(top, abs=1e-6)
    said = f"no detection above conf 0.999 (the best score {top:.2f})"
    assert none.none_found() == said and repr(none).endswith(f": 0 found; {said})"), repr(none)
    bare = np.asarray(Image.open(png).convert("RGB"))
    assert not np.array_equal(np.asarray(none.plot()), bare)
    assert dets.above(0.999).top_below == pytest.approx(top, abs=1e-6) and dets.above(0.999).conf == 0.999


def test_conf_none_is_the_default_threshold_and_other_types_are_one_line(files):
    """The README's dfine.Detector(result.best, conf=result.conf) after a short run (conf None: none
    recommended) and conf="0.3" ended in a TypeError traceback from a comparison (a walk)."""
    _, onnx_path = files
    assert Detector(str(onnx_path), conf=None).conf == 0.5
    for wrong in ("0.3", 150, True, -0.5):
        with pytest.raises(DfineError) as err:
            Detector(str(onnx_path), conf=wrong)
        assert str(err.value) == f"conf must be a number in 0..1, got {wrong!r}"
    with pytest.raises(DfineError) as err:  # --conf 50 (a walk): said as the fraction it likely meant
        Detector(str(onnx_path), conf=50.0)
    assert str(err.value) == "conf must be a number in 0..1, got 50.0 (a percentage? 0.5 is 50%)"


def test_the_readme_onnx_runtime_code_without_dfine_gives_detectors_boxes(files, tmp_path, capsys, monkeypatch):
    """A walk used the export from plain onnxruntime by guessing the inputs: the README now shows it,
    and its code gives what Detector gives (unclipped, as the code says) for the same image."""
    import re
    from pathlib import Path
    _, onnx_path = files
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"An ONNX export runs without dfine.*?```python\n(.*?)```", readme, re.S).group(1)
    assert "import dfine" not in code and "from dfine" not in code
    image = _images()[0]
    (tmp_path / "model.onnx").symlink_to(onnx_path)
    (tmp_path / "a.jpg").symlink_to(image)
    monkeypatch.chdir(tmp_path)
    assert "score > conf" in code
    exec(compile(code.replace("score > conf", "score > 0.075"), "README", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    [d] = Detector(str(onnx_path), conf=0.075, clip=False)(str(image))
    assert len(printed) == len(d) > 0
    for line, name, score, box in zip(printed, d.names, d.scores, d.boxes):
        got = line.replace("[", " ").replace("]", " ").split()
        assert got[0] == name and abs(float(got[1]) - score) < 1e-3
        assert np.allclose([float(v) for v in got[2:]], box, atol=0.2)
