"""``dfine zoo``, ``dfine convert-weights`` and ``dfine export`` errors."""

from __future__ import annotations

import sys

import torch

from dfine.cli import main


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_zoo_lists_detectors(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert "dfine_n_coco" in out and "dfine_x_obj2coco" in out and "PPHGNetV2" not in out


def test_convert_weights_keeps_ema(tmp_path, capsys):
    src, dst = tmp_path / "train.pth", tmp_path / "w.pth"
    torch.save({"model": {"a": torch.zeros(1)}, "ema": {"module": {"a": torch.ones(1)}}}, src)
    assert main(["convert-weights", str(src), str(dst)]) == 0
    assert torch.equal(torch.load(dst, weights_only=True)["model"]["a"], torch.ones(1))
    assert "no EMA weights" in _error(capsys, ["convert-weights", str(dst)])
    # the checkpoint given twice: its optimiser state and epoch were replaced by its weights (a walk); untouched now
    before = src.read_bytes()
    assert _error(capsys, ["convert-weights", str(src), str(tmp_path / "." / "train.pth")]) == (
        f"error: the output file {tmp_path / '.' / 'train.pth'} is the checkpoint converted; give another file, or "
        f"leave it out to write {tmp_path / 'train_converted.pth'}")
    assert src.read_bytes() == before
    assert main(["convert-weights", str(src), str(dst)]) == 0  # another file there: said
    assert capsys.readouterr().out.strip() == f"wrote {dst} (replacing the file there)"


def test_export_errors_are_one_line(tmp_path, capsys):
    assert "not found" in _error(capsys, ["export", "-r", str(tmp_path / "missing.pth")])
    assert "--opset" in _error(capsys, ["export", "-r", str(tmp_path / "x.pth"), "--opset", "11"])
    bogus = tmp_path / "bogus.pth"
    torch.save({"model": {"w": torch.zeros(2)}}, bogus)
    assert "not a D-FINE detector" in _error(capsys, ["export", "-r", str(bogus)])
    # -o where nothing can be written: one line before any work (a walk's /sys/model.onnx: a PermissionError traceback)
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["export", "-r", str(bogus), "-o", str(tmp_path / "notes.txt" / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: output folder {tmp_path / 'notes.txt'} cannot be created or "
                                               f"written (a file is in the way); choose another with -o")
    # -o of another suffix: said; the folders made for it gone again when the export fails
    assert main(["export", "-r", str(bogus), "-o", str(tmp_path / "new" / "deeper" / "readme.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (f"note: -o {tmp_path / 'new' / 'deeper' / 'readme.txt'}: an export's file name ends in its "
                      f"format's suffix; writing {tmp_path / 'new' / 'deeper' / 'readme.onnx'}")
    assert "not a D-FINE detector" in err[-1] and not (tmp_path / "new").exists()
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        torch.save({"model": {"w": torch.zeros(2)}}, bogus)
        err = _error(capsys, ["export", "-r", str(bogus), "--size", "n", "--format", "engine"])
        assert "tensorrt is not installed" in err and "trtexec --onnx=" in err


def test_output_cut_short_by_the_reader_is_no_traceback():
    """``dfine zoo | head -1``: the pipe closes while dfine still prints; it raised BrokenPipeError
    with a traceback (seen with ``dfine data check ... | head``)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "dfine.cli", "zoo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_int8_openvino_export_names_every_missing_package_at_once(tmp_path, capsys, monkeypatch):
    """Without OpenVINO and NNCF, ``--int8 --format openvino`` said "needs OpenVINO and onnx"; after
    installing those, a second run said "needs NNCF": one message now names all that is missing and
    the one extra that brings them, quoted for shells that expand brackets (zsh)."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as when not installed
    monkeypatch.setitem(sys.modules, "nncf", None)
    err = _error(capsys, ["export", "-r", str(tmp_path / "x.pth"), "--format", "openvino", "--int8",
                          "--calib", str(tmp_path)])
    assert "needs openvino, nncf (not installed)" in err and 'pip install "dfine[int8]"' in err


def test_export_format_other_names():
    """TensorRT's own name (any case) is --format engine, in the CLI and in dfine.export_model."""
    from dfine.cli import build_parser
    for name in ("tensorrt", "TensorRT", "trt", "engine"):
        argv = ["export", "-r", "m.pth", "--format", name]
        assert build_parser(argv).parse_args(argv).format == "engine"
    argv = ["export", "-r", "m.pth", "--format", "OV"]
    assert build_parser(argv).parse_args(argv).format == "openvino"


def test_export_model_format_other_names(tmp_path):
    import pytest

    import dfine
    from dfine.errors import DfineError
    with pytest.raises(DfineError, match=r"format 'tflite': give one of onnx, openvino, engine"):
        dfine.export_model(tmp_path / "m.pth", "tflite")
    # TensorRT's name is taken: what is said is the missing tensorrt or the missing checkpoint, not the format
    with pytest.raises(DfineError, match="tensorrt is not installed|not found"):
        dfine.export_model(tmp_path / "m.pth", "TRT")


def test_the_public_api_help_holds_no_development_notes():
    """``help(Detector.__call__)`` ended with "(a walk's ``det(image, conf=0.1)`` was a TypeError)": what
    ``help()`` shows of the public API (the names ``dfine`` exports, the objects they return and take, and
    their public methods) says what they do; the history is in comments."""
    import inspect
    import re

    import dfine
    from dfine.data.tile import TileConfig, TiledSplit, tile_dataset
    from dfine.inference import Detections
    from dfine.integrations.tracking import TrackerConfig, TrackFiles, Tracking
    from dfine.slicing import SliceConfig

    public = [getattr(dfine, name) for name in dfine.__all__] + [
        SliceConfig, TileConfig, TiledSplit, tile_dataset, Detections, Tracking, TrackFiles, TrackerConfig]
    shown = {"__init__", "__call__", "__repr__", "__next__", "__iter__"}
    noted = []
    for obj in public:
        members = [(obj.__name__, obj)]
        if inspect.isclass(obj):
            members += [(f"{obj.__name__}.{k}", v.fget if isinstance(v, property) else getattr(v, "__func__", v))
                        for k, v in vars(obj).items() if not k.startswith("_") or k in shown]
        noted += [name for name, member in members
                  if re.search(r"\ba (re-)?walk\b|was a (bare )?TypeError", getattr(member, "__doc__", None) or "")]
    assert noted == []


def test_python_api_keyword_typos_name_the_one_meant():
    """``dfine.train(epoch=2)`` was a bare TypeError (a walk), where the command line says "did you mean
    --epochs?"; the public functions keep their signatures and docstrings for help() and IDEs."""
    import inspect

    import pytest

    import dfine
    for func, given, said in ((dfine.train, {"epoch": 2}, "dfine.train() takes no epoch=; did you mean epochs=?"),
                              (dfine.evaluate, {"imgs": 3}, "dfine.evaluate() takes no imgs=; did you mean imgsz=?"),
                              (dfine.export_model, {"fmt": "onnx"},
                               "dfine.export_model() takes no fmt=; did you mean format=?"),
                              (dfine.Detector, {"confidence": 0.3}, "dfine.Detector() takes no confidence=; did you mean "
                                                                    "conf=?")):
        with pytest.raises(dfine.DfineError) as err:
            func("data", **given)
        assert str(err.value) == said
    assert "epochs" in inspect.signature(dfine.train).parameters and "Train" in dfine.train.__doc__


def test_help_of_the_python_calls_names_every_argument():
    """``help(dfine.train)`` left out epochs, imgsz, batch, max_steps, device and output_dir (a notebook walk):
    each argument of the calls a notebook makes is named in its docstring, as ``name``."""
    import inspect

    import dfine
    missing = [f"{func.__name__}({name}=)" for func in (dfine.train, dfine.evaluate, dfine.track)
               for name in inspect.signature(func).parameters
               if name not in ("kw", "kwargs") and f"``{name}``" not in (func.__doc__ or "")]
    assert missing == []
