"""``torchrun --nproc_per_node=2`` (gloo on CPU) matches one process with the same total batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfine.checkpoint import DERIVED, read_checkpoint
from tests.conftest import load_golden
from tests.engine.conftest import write_recipe, write_subset

REPO = Path(__file__).resolve().parents[2]
# float32 (the recipe's use_amp would mean bfloat16 on CPU, whose rounding differs with the
# per-process batch); no denoising (its random groups depend on the per-process batch); one step
SAME = ["-u", "DFINETransformer.num_denoising=0", "use_amp=False", "seed=0", "--max-steps", "1", "--no-progress",
        "-d", "cpu"]


def first_losses(out: Path) -> dict:
    entry = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    return {k: v for k, v in entry.items() if k.startswith("train_loss")}


def test_two_processes_match_one(coco128, tmp_path):
    """Starting from the golden N weights (every branch contributes, the DDF distillation included)
    each loss term of the first step of a 2-process run equals the 1-process run's. The one process
    runs the published ``train.py``, the two ``torchrun -m dfine train``."""
    torch.save(load_golden("n")["checkpoint"], tmp_path / "start.pth")
    train = write_subset(coco128, tmp_path / "train.json", 2)
    val = write_subset(coco128, tmp_path / "val.json", 1, offset=2)
    recipe = write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", train, val, epochs=1, batch=2, size=320)
    common = ["train.py", "-c", str(recipe), "-t", str(tmp_path / "start.pth"), *SAME]
    single = [sys.executable, *common, "--output-dir", str(tmp_path / "one")]
    done = subprocess.run(single, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # from a pip install (no checkout, so no train.py): torchrun -m dfine train, from another folder
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dfine", "train",
           *common[1:], "--output-dir", str(tmp_path / "two")]
    done = subprocess.run(ddp, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = first_losses(tmp_path / "one"), first_losses(tmp_path / "two")
    assert set(one) == set(two) and "train_loss_ddf_aux_0" in one and one["train_loss_ddf_aux_0"] > 0
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key  # rounding moves VFL by ~1e-5
    # the gradients too: the first AdamW step moves the weights the same way
    start = load_golden("n")["checkpoint"]["ema"]["module"]
    moved = {name: read_checkpoint(tmp_path / name / "last.pth")["model"] for name in ("one", "two")}
    keys = [k for k, v in start.items() if v.is_floating_point() and k in moved["one"] and k not in DERIVED]
    step_one = torch.cat([(moved["one"][k] - start[k]).flatten() for k in keys])
    step_two = torch.cat([(moved["two"][k] - start[k]).flatten() for k in keys])
    # measured 9e-5 (rounding); a sync batch norm without the gradient all-reduce gives 2.8e-3
    assert (step_two - step_one).norm() < 5e-4 * step_one.norm()


def test_torchrun_of_a_dataset_folder_says_each_note_once(tmp_path):
    """``torchrun --nproc_per_node=2 -m dfine train --data DIR``: every process reads the dataset, and a walk
    read each dataset note twice, then torch's four-line DDP gradient-strides warning once per process. The
    notes now come from the first process only, the warning from none; the run trains and saves."""
    from tests.data.datasets import ultralytics_folders
    data = ultralytics_folders(tmp_path / "parts", {"train": 4, "val": 2}, (64, 48), "0 0.5 0.5 0.4 0.4")
    (data / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [bolt]\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dfine", "train",
           "--data", str(data), "--model", "dfine_n", "-u", "HGNetv2.pretrained=False", "--epochs", "1",
           "--max-steps", "1", "--imgsz", "256", "--no-progress", "-d", "cpu", "-o", str(tmp_path / "out")]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_checkpoint(tmp_path / "out" / "last.pth")["model"]
    lines = (done.stdout + done.stderr).splitlines()
    said = [line for line in lines if line.startswith(("CPU: ", "train data: ", "classes: "))]
    assert sorted(line.split(":")[0] for line in said) == ["CPU", "classes", "train data"], said
    assert not [line for line in lines if "Grad strides" in line or "bucket_view" in line]
