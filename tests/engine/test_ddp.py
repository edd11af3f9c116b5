"""``torchrun --nproc_per_node=2`` (gloo on CPU) matches one process with the same total batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import write_recipe, write_subset

REPO = Path(__file__).resolve().parents[2]
# no denoising (its random groups depend on the per-process batch); one step
SAME = ["-u", "DFINETransformer.num_denoising=0", "seed=0", "--max-steps", "1", "--no-progress", "-d", "cpu"]


def first_loss(out: Path) -> float:
    return json.loads((out / "log.jsonl").read_text().splitlines()[0])["train_loss"]


@pytest.mark.xfail(reason="open: 2-process first-step loss 29.29 vs 29.59 for one process (CPU, gloo, "
                          "CpuSyncBatchNorm, no denoising); a per-process normalisation still differs", strict=False)
def test_two_processes_match_one(coco128, tmp_path):
    train = write_subset(coco128, tmp_path / "train.json", 2)
    val = write_subset(coco128, tmp_path / "val.json", 1, offset=2)
    recipe = write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", train, val, epochs=1, batch=2, size=320)
    single = [sys.executable, "train.py", "-c", str(recipe), "--output-dir", str(tmp_path / "one"), *SAME]
    done = subprocess.run(single, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "train.py",
           "-c", str(recipe), "--output-dir", str(tmp_path / "two"), *SAME]
    done = subprocess.run(ddp, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert first_loss(tmp_path / "two") == pytest.approx(first_loss(tmp_path / "one"), abs=1e-4, rel=1e-5)
