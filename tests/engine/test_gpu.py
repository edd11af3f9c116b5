"""CUDA: the golden fixtures on the GPU, AMP training, a run trained on the GPU and deployed on a
machine without one, NCCL runs (skipped without CUDA)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dfine
from dfine.config import load_config
from dfine.engine.trainer import Trainer
from dfine.loss import build_criterion
from tests.compare import assert_detections_close, assert_query_sets_close
from tests.conftest import load_golden
from tests.engine.conftest import write_recipe, write_subset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
REPO = Path(__file__).resolve().parents[2]


def test_amp_training_on_cuda(coco128, tmp_path):
    train = write_subset(coco128, tmp_path / "train.json", 4)
    recipe = write_recipe(tmp_path / "r.yml", coco128 / "train2017", train, train, epochs=1, batch=2)
    trainer = Trainer(load_config(recipe, ["use_amp=true", "device=cuda"]), progress=False)
    assert trainer.scaler.is_enabled()
    trainer.fit()
    assert all(math.isfinite(v) for v in trainer.step_losses)


@pytest.mark.parametrize("gpus", [1, 2])
def test_nccl(coco128, tmp_path, gpus):
    """torchrun with one process per GPU: NCCL, DDP and SyncBN set up, one AMP step."""
    if torch.cuda.device_count() < gpus:
        pytest.skip(f"needs {gpus} GPUs")
    train = write_subset(coco128, tmp_path / "train.json", 4)
    recipe = write_recipe(tmp_path / "r.yml", coco128 / "train2017", train, train, epochs=1, batch=2 * gpus)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "train.py", "-c", str(recipe),
           "--use-amp", "--no-progress", "--max-steps", "1"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def strict_float32():
    """TF32 off for the block (torch lets convolutions use it by default), as the fixtures were made."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_golden_outputs_on_cuda(strict_float32):
    """The published N outputs, eval form and deploy detections, from our model on the GPU."""
    g = load_golden("n")
    model = dfine.build_model("dfine_n")
    dfine.load_checkpoint(model, g["checkpoint"])
    model.eval().cuda()
    x = (g["images_uint8"].float() / 255).cuda()
    with torch.no_grad():
        out = model(x)
    for b in range(2):
        ours = torch.cat([out["pred_logits"][b], out["pred_boxes"][b]], -1).cpu()
        gold = torch.cat([g["eval"]["pred_logits"][b], g["eval"]["pred_boxes"][b]], -1)
        assert_query_sets_close(ours, gold, atol=2e-3)
    post = dfine.PostProcessor(num_classes=80, num_top_queries=300)
    with torch.no_grad():
        dets = post(model.deploy()(x), g["orig_sizes"].float().cuda())
    for b, det in enumerate(dets):
        gold = {k: v[b] for k, v in g["deploy"].items()}
        assert_detections_close(det["labels"].cpu(), det["boxes"].cpu(), det["scores"].cpu(), gold)


def test_golden_losses_on_cuda(strict_float32):
    g = load_golden("n")
    model = dfine.build_model("dfine_n", num_denoising=0)
    state = {k: v for k, v in g["checkpoint"]["ema"]["module"].items() if not k.startswith("decoder.denoising_class_embed.")}
    dfine.load_checkpoint(model, {"model": state})
    model.train().cuda()
    targets = [{k: v.cuda() for k, v in t.items()} for t in g["targets"]]
    losses = build_criterion("dfine_n")(model((g["images_uint8"].float() / 255).cuda(), targets), targets)
    for key, gold in g["train_losses"].items():
        assert losses[key].item() == pytest.approx(gold, rel=1e-4, abs=1e-6), key


def test_detector_on_cuda_finds_what_it_finds_on_the_cpu(tmp_path, strict_float32):
    """dfine.Detector of a checkpoint on the GPU against the CPU, TF32 off: with the fixture's random
    weights TF32 alone moves outputs by up to 1.7 (benchmarks/gpu.py; a trained model's AP by 0.01)."""
    g = load_golden("n")
    ckpt = tmp_path / "n.pth"
    torch.save(g["checkpoint"], ckpt)
    images = [img.permute(1, 2, 0).numpy() for img in g["images_uint8"]]
    on_cpu = dfine.Detector(str(ckpt), conf=0.0)(images)  # all 300: no threshold to fall either side of
    on_gpu = dfine.Detector(str(ckpt), device="cuda", conf=0.0)(images)
    for a, b in zip(on_cpu, on_gpu):
        assert len(a) == len(b) == 300
        gold = {"labels": torch.as_tensor(a.labels), "boxes": torch.as_tensor(a.boxes), "scores": torch.as_tensor(a.scores)}
        assert_detections_close(torch.as_tensor(b.labels), torch.as_tensor(b.boxes), torch.as_tensor(b.scores), gold,
                                score_tol=1e-2, box_tol=2.0)


def _coco_folder(coco128: Path, root: Path, n_images: int) -> Path:
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        write_subset(coco128, root / "annotations" / f"instances_{split}.json", n_images)
        (root / split).symlink_to(coco128 / "train2017")
    return root


def test_trained_on_cuda_deployed_without_cuda(coco128, tmp_path):
    """The user's path: ``dfine train --data DIR -d cuda`` (float16 AMP), then on a machine without a
    GPU (CUDA hidden) export to ONNX and predict with the checkpoint and with the export."""
    data = _coco_folder(coco128, tmp_path / "data", 8)
    run = tmp_path / "run"
    train = [sys.executable, "-m", "dfine", "train", "--data", str(data), "--model", "dfine_n", "--epochs", "1",
             "--batch", "4", "--imgsz", "320", "--max-steps", "2", "-d", "cuda", "--no-progress", "-o", str(run),
             "-u", "HGNetv2.pretrained=False", "train_dataloader.num_workers=0", "val_dataloader.num_workers=0"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "float16" in done.stdout + done.stderr
    no_gpu = {**env, "CUDA_VISIBLE_DEVICES": ""}
    image = str(coco128 / "train2017" / "000000000009.jpg")
    for cmd in (["export", "-r", str(run / "last.pth"), "--format", "onnx", "-o", str(tmp_path / "m.onnx")],
                ["predict", image, "-m", str(run / "last.pth"), "--conf", "0", "-o", str(tmp_path / "p1")],
                ["predict", image, "-m", str(tmp_path / "m.onnx"), "--conf", "0", "-o", str(tmp_path / "p2")]):
        done = subprocess.run([sys.executable, "-m", "dfine", *cmd], cwd=tmp_path, env=no_gpu, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (cmd, done.stderr[-3000:])
        assert "Traceback" not in done.stderr
    assert (tmp_path / "m.onnx").is_file() and any((tmp_path / "p1").iterdir()) and any((tmp_path / "p2").iterdir())

