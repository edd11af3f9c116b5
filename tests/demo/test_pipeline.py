"""``dfine demo`` at a minimal size: data, one training step, ONNX export, ONNX Runtime
predictions, metrics.json and every picture (valid PNGs with real content)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dfine.cli import main
from dfine.demo.pipeline import PICTURES, DemoSettings, run_demo
from dfine.demo.shapes import ShapesSpec

pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")


def test_demo_pipeline_minimal(tmp_path, capsys):
    settings = DemoSettings(output_dir=tmp_path / "demo", shapes=ShapesSpec(num_train=8, num_val=4, image_size=96),
                            image_size=96, epochs=1, batch_size=4, max_steps=1, num_queries=30, num_denoising=10,
                            num_preview=4, progress=False)
    result = run_demo(settings)
    out = settings.output_dir
    printed = capsys.readouterr().out  # the eval command after training is the data folder's, and it runs as printed
    hint = next(line.split(":", 1)[1].strip() for line in printed.splitlines() if line.startswith("  eval:"))
    assert hint.startswith(f"dfine eval -r {out.resolve()}/") and f"--data {settings.data_dir.resolve()} --imgsz 96" in hint
    import shlex
    assert main(shlex.split(hint)[1:] + ["--no-progress"]) == 0
    assert [p.name for p in result.pictures] == list(PICTURES)
    for path in result.pictures:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) >= 300, path
            pixels = np.asarray(im.convert("RGB"))
        colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
        assert pixels.std() > 10 and colours > 50, f"{path.name}: looks empty ({colours} colours)"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert set(metrics["per_class_AP"]) == {"circle", "square", "triangle"}
    for key in ("mAP", "mAP50", "train_seconds", "onnx_latency_ms_per_image"):
        assert isinstance(metrics[key], float) and metrics[key] >= 0 and np.isfinite(metrics[key]), key
    assert metrics["onnx_latency_ms_per_image"] > 0 and metrics["train_seconds"] > 0
    assert (out / "last.pth").is_file() and result.onnx == out / "model.onnx" and result.onnx.stat().st_size > 1e6
    assert len(json.loads((out / "data" / "val.json").read_text())["images"]) == 4


def test_demo_cli_rejects_sizes_the_model_cannot_run(capsys):
    assert main(["demo", "--imgsz", "64", "-o", "unused"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: demo image size 64 gives 20 encoder tokens, fewer than the 100 queries; use an image size of at least 160"]
    with pytest.raises(SystemExit) as e:
        main(["demo", "--epochs", "0"])
    assert e.value.code == 2


def test_ctrl_c_during_the_demo_training_ends_the_demo(tmp_path, ctrl_c_after_each_step, capsys):
    """A walk: after Ctrl-C the demo went on to export, predict and draw the half-trained model, ended with
    the usual summary as if nothing had happened, and printed a 2,000-character resume command of a
    training the demo's later steps would not follow. It now ends there, saying how to start it again."""
    out = tmp_path / "demo"
    code = main(["demo", "-o", str(out), "--num-train", "8", "--num-val", "4", "--imgsz", "160", "--epochs", "2",
                 "-b", "4", "--max-steps", "2", "-q"])
    assert code == 130
    printed = capsys.readouterr()
    assert ("stopped by SIGINT during epoch 1 of 2: the demo ends here (no export, predictions or pictures of a "
            "half-trained model); the same dfine demo command starts it again") in printed.out
    assert "dfine train -c" not in printed.out + printed.err
    assert not (out / "model.onnx").exists() and not (out / "metrics.json").exists()


def test_demo_summary_prints_ap_in_percent_as_the_epoch_lines_do():
    """The epoch lines said "AP 49.9" and the demo's last line "mAP 0.499" for the same model (a walk)."""
    from dfine.commands.demo import demo_scores
    metrics = {"mAP": 0.4994, "mAP50": 0.8151, "per_class_AP": {"circle": 0.619, "square": 0.0}}
    assert demo_scores(metrics) == "val AP 49.9  AP50 81.5  circle AP 61.9  square AP 0.0"
