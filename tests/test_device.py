"""``-d/--device`` of every command: a GPU command run on a machine without one (or a device name
torch does not know) is one line before anything is built; it was a CUDA traceback from a training step."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

from dfine.cli import main
from dfine.device import resolve_device
from dfine.errors import DfineError
from tests.engine.conftest import write_subset


def test_devices_this_machine_has_and_has_not(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    for name, said in (("gpu", "unknown device 'gpu': use cpu, cuda or cuda:N"),
                       ("mps", "device 'mps' is not supported: use cpu, cuda or cuda:N")):
        with pytest.raises(DfineError) as e:
            resolve_device(name)
        assert str(e.value) == said
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DfineError, match=r"device cuda:1 asked for but CUDA is not available here \(.*\); use -d cpu "
                                         r"\(Python: device='cpu'\)$"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(DfineError) as e:
        resolve_device("cuda:1")
    assert str(e.value) == "device cuda:1 asked for but this machine has 1 CUDA device (cuda:0..cuda:0)"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_a_gpu_command_on_a_machine_without_one_is_one_line(coco128, tmp_path, capsys, monkeypatch):
    """``dfine train --data DIR -d cuda`` copied onto a laptop: one line, before the dataset is
    converted or an output folder made (it was 'RuntimeError: Found no NVIDIA driver' after both)."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "yolo"
    (data / "images" / "train").mkdir(parents=True)
    (data / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(data / "images" / "train" / "a.jpg")
    (data / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    for device in ("cuda", "cuda:1", "gpu", "mps"):
        assert main(["train", "--data", str(data), "--names", "thing", "-d", device]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and device in err, err
        assert not (tmp_path / "output").exists()
    import dfine
    with pytest.raises(DfineError, match=r"CUDA is not available here .*; use device='cpu'$"):
        dfine.train(data, names=["thing"], device="cuda")  # the Python call alike (a walk: after converting)
    assert not (tmp_path / "output").exists()
    from tests.conftest import load_golden

    torch.save(load_golden("n")["checkpoint"], tmp_path / "x.pth")
    assert main(["benchmark", "-d", "cuda"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err
    ann = write_subset(coco128, tmp_path / "val.json", 1)
    assert main(["eval", "-r", "x.pth", "--ann-file", str(ann), "--images", str(coco128 / "train2017"),
                 "-d", "cuda"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err


def test_predict_devices_and_runtimes_that_cannot_use_them(tmp_path, capsys, monkeypatch):
    """A checkpoint on an unknown device is one line; an ONNX model asked onto CUDA by an
    onnxruntime without its CUDA provider says it runs on the CPU (it did so without a word); an
    OpenVINO IR, which runs on the CPU, asked onto CUDA is one line."""
    from tests.conftest import load_golden

    monkeypatch.chdir(tmp_path)
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 48)).save(image)
    torch.save(load_golden("n")["checkpoint"], tmp_path / "n.pth")
    assert main(["predict", str(image), "-m", "n.pth", "-d", "gpu"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown device 'gpu': use cpu, cuda or cuda:N"
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    assert main(["export", "-r", "n.pth", "--format", "openvino", "--imgsz", "320", "-o", "n.xml"]) == 0
    capsys.readouterr()
    assert main(["predict", str(image), "-m", "n.xml", "-d", "cuda"]) == 2
    assert "OpenVINO runs n.xml on the CPU; drop -d cuda" in capsys.readouterr().err
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert main(["predict", str(image), "-m", "n.onnx", "-d", "cuda"]) == 0
        err = capsys.readouterr().err
        assert "warning: device cuda asked for, but this onnxruntime has no CUDA provider" in err


def test_busy_cpu_note_only_while_others_run(monkeypatch):
    """A walk was told 'other jobs share this CPU' on an idle machine: the minute's load average still
    counted its own run that had just ended. The note now also needs another process running now."""
    import dfine.device as device
    monkeypatch.setattr(device.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(device, "others_running", lambda: 0)
    assert device.busy_cpu_note("the steps") is None
    monkeypatch.setattr(device, "others_running", lambda: 3)
    assert device.busy_cpu_note("the steps").startswith("note: load average 9.0")
    monkeypatch.setattr(device, "others_running", lambda: None)  # no /proc: the load average alone, as before
    assert device.busy_cpu_note("the steps") is not None
    said = device.busy_cpu_note("the steps")
    assert "OMP_WAIT_POLICY=PASSIVE in the environment (or fewer threads: --threads 1)" in said
    # dfine.train's words (a notebook walk was told --threads 1; a running kernel cannot set the variable for torch)
    said = device.busy_cpu_note("the steps", python=True)
    assert "OMP_WAIT_POLICY=PASSIVE set before Python starts (or fewer threads: threads=1)" in said, said
    watch = device.SlowdownWatch("the steps", recent=1, python=True)
    assert watch.observe(1.0) is None and "threads=1" in watch.observe(9.0)


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="Linux's /proc/loadavg")
def test_others_running_sees_a_busy_process():
    import subprocess
    import sys
    import time

    from dfine.device import others_running
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert others_running() >= 1
    finally:
        busy.kill()
        busy.wait()


def test_steps_that_slow_down_on_a_busy_cpu_are_said_once(monkeypatch):
    """A walk's training steps went from 1 s to 15-19 s while another job took the CPU; the note at
    the start had found the machine idle, and the walk blamed the precision. A slowdown of 4x or more
    on a busy machine is said once; a slower step on an idle one (or multi-scale's 1.6x) is not."""
    import dfine.device as device
    busy = {"note": None}
    monkeypatch.setattr(device, "busy_cpu_note", lambda what, python=False: busy["note"] and f"note: {busy['note']} ({what})")
    watch = device.SlowdownWatch("the steps")
    assert [watch.observe(s) for s in (3.0, 1.0, 1.1, 1.0, 1.6, 1.6, 1.6)] == [None] * 7  # multi-scale sizes
    assert [watch.observe(s) for s in (9.0, 9.0, 9.0)] == [None] * 3  # 9x, but nobody else runs
    busy["note"] = "load average 4.0 on 2 cores: other jobs share this CPU"
    said = [watch.observe(s) for s in (9.0, 9.0, 12.0, 9.0)]
    assert said[0] == ("note: steps now take 9.0 s, 9x the 1.0 s of earlier ones; load average 4.0 on 2 cores: "
                       "other jobs share this CPU (the steps)")
    assert said[1:] == [None] * 3  # once
