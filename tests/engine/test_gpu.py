"""CUDA: AMP training step and a two-GPU NCCL run (skipped without CUDA)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfine.config import load_config
from dfine.engine.trainer import Trainer
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


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_nccl_two_gpus(coco128, tmp_path):
    train = write_subset(coco128, tmp_path / "train.json", 4)
    recipe = write_recipe(tmp_path / "r.yml", coco128 / "train2017", train, train, epochs=1, batch=4)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "train.py", "-c", str(recipe),
           "--use-amp", "--no-progress", "--max-steps", "1"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
