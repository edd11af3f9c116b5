"""Training on a few coco128 images at 320 px with the N recipe: outputs, eval, resume, fine-tune."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch

from dfine.checkpoint import read_checkpoint
from dfine.config import load_config
from dfine.engine.trainer import Trainer
from tests.conftest import shared_path
from tests.engine.conftest import write_recipe, write_subset

FAST = "lr_warmup_scheduler: {type: LinearWarmup, warmup_duration: 1}\n"


def recipe(folder: Path, coco: Path, **kw) -> Path:
    train = write_subset(coco, folder / "train.json", 2)
    val = write_subset(coco, folder / "val.json", 1, offset=2)
    return write_recipe(folder / "recipe.yml", coco / "train2017", train, val, batch=2, extra=FAST, **kw)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs of one step (the second after the stop epoch) on 2 images; the finished trainer."""
    coco = shared_path("data", "coco128")
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    trainer = Trainer(load_config(recipe(folder, coco), ["seed=0"]), progress=False)
    trainer.fit()
    return trainer, folder, coco


def test_outputs_and_loss(run):
    trainer, folder, _ = run
    out = folder / "out"
    names = {p.name for p in out.iterdir()}
    assert {"last.pth", "best_stg1.pth", "checkpoint0000.pth", "checkpoint0001.pth", "log.jsonl",
            "loss.png", "lr.png", "map.png"} <= names
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1]
    assert all(math.isfinite(v) for v in trainer.step_losses)
    # the lr each step ran at, per configured lr (the N recipe: the backbone's 0.0004, the rest's optimizer.lr)
    assert [e["train_step_lr"] for e in log] == [{"optimizer.params[0].lr, optimizer.params[1].lr": [0.0004],
                                                  "optimizer.lr": [0.0008]}] * 2
    ckpt = read_checkpoint(out / "last.pth")
    for key in ("model", "ema", "optimizer", "lr_scheduler", "lr_warmup_scheduler", "scaler", "last_epoch",
                "config", "class_names", "category_ids"):
        assert key in ckpt, key
    assert set(ckpt["ema"]) == {"module", "updates"} and ckpt["last_epoch"] == 1
    assert len(ckpt["class_names"]) == 80 and ckpt["category_ids"][:3] == [1, 2, 3]
    assert not list(out.glob("*.tmp"))


def test_the_bar_shows_the_recipes_lr_not_the_backbones(run):
    """The epoch bar's ``lr=`` was param group 0's: the N recipe's backbone lr (4e-4), beside the recipe's
    ``optimizer.lr`` of 8e-4 that the user set, with nothing saying which."""
    from dfine.engine.trainer import main_lr_group
    trainer, _, _ = run
    groups = trainer.optimizer.param_groups
    assert groups[0]["initial_lr"] == 0.0004  # the backbone's
    assert groups[trainer.main_lr_group]["initial_lr"] == trainer.cfg.optimizer.lr == 0.0008
    assert main_lr_group({"optimizer.params[0].lr": 0, "optimizer.params[1].lr, optimizer.lr": 1}) == 1
    assert main_lr_group({"optimizer.lr": 0}) == 0


def test_without_tensorboard_the_run_says_so(run, monkeypatch, capsys):
    """The README promises TensorBoard scalars in the output folder: without the package a run
    says in one line that there are none and where the logs and plots go."""
    import sys

    _, folder, _ = run
    trainer = Trainer(load_config(folder / "recipe.yml", [f"output_dir={folder / 'tb'}"]), progress=False)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    trainer._start_logs()
    assert trainer.writer is None
    assert capsys.readouterr().out.strip() == (f"note: no TensorBoard scalars (tensorboard is not installed: pip install "
                                               f"\"dfine[tensorboard]\"); log.jsonl and the PNG plots go to {folder / 'tb'}")
    # without matplotlib either: no plots, and the note does not promise them
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    trainer._start_logs()
    assert capsys.readouterr().out.strip().splitlines() == [
        "note: no PNG plots of the loss, lr and AP (matplotlib is not installed: pip install \"dfine[plots]\")",
        f"note: no TensorBoard scalars (tensorboard is not installed: pip install \"dfine[tensorboard]\"); log.jsonl goes "
        f"to {folder / 'tb'}"]


def test_test_only(run, capsys):
    _, folder, _ = run
    cfg = load_config(folder / "recipe.yml", [f"resume={folder / 'out' / 'last.pth'}"])
    metrics = Trainer(cfg, test_only=True, progress=False).val()
    assert len(metrics.stats) == 12 and all(-1 <= s <= 1 for s in metrics.stats)
    assert (folder / "out" / "eval.json").is_file()
    # the one line in percent that training prints after each epoch and the eval of an export prints
    assert metrics.summary() in capsys.readouterr().out.splitlines()


def test_eval_on_data_of_other_class_names_is_said(run, tmp_path, capsys):
    """The weights of one dataset evaluated on another whose category ids are the same: it printed
    the other set's class names in the table and AP, without a word (a raccoon model on kangaroos)."""
    _, folder, _ = run
    val = json.loads((folder / "val.json").read_text())
    for c in val["categories"][:2]:
        c["name"] = c["name"].upper() + "_X"
    (tmp_path / "val.json").write_text(json.dumps(val))
    cfg = load_config(folder / "recipe.yml", [f"resume={folder / 'out' / 'last.pth'}", f"output_dir={tmp_path}",
                                              f"val_dataloader.dataset.ann_file={tmp_path / 'val.json'}",
                                              "remap_mscoco_category=false"])  # names from the file
    Trainer(cfg, test_only=True, progress=False).val()
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert said == [f"warning: the model's classes differ from {tmp_path / 'val.json'}'s for 2 of its 80 category "
                    f"ids: 1 is person in the model, PERSON_X in the data; 2 is bicycle in the model, BICYCLE_X in "
                    f"the data; was the model trained on this data?"]


def test_resume_matches_uninterrupted(run, tmp_path):
    trainer, _, coco = run
    r = recipe(tmp_path, coco)
    torch.manual_seed(0)
    Trainer(load_config(r, ["seed=0", "epochs=1"]), progress=False).fit()
    resumed = Trainer(load_config(r, ["seed=0", f"resume={tmp_path / 'out' / 'last.pth'}"]), progress=False)
    assert resumed.last_epoch == 0 and resumed.step == 1
    resumed.fit()
    assert resumed.step_losses[0] == pytest.approx(trainer.step_losses[1], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("when", ["evaluation", "last step"])
def test_resume_after_a_signal_during_the_evaluation_matches_uninterrupted(run, tmp_path, when):
    """Ctrl-C during epoch 1's evaluation (or its last step), then resume: epoch 1 is evaluated (not trained
    again) and epoch 2 trains as in the run without the signal: the same AP of epoch 1, the same loss, the same
    final weights."""
    trainer, folder, coco = run
    r = recipe(tmp_path, coco)
    torch.manual_seed(0)
    first = Trainer(load_config(r, ["seed=0"]), progress=False)

    def interrupted_evaluation():
        first.stop_signal = "SIGINT"
        return None

    if when == "evaluation":
        first.evaluate = interrupted_evaluation
    else:
        step = first.train_step
        first.train_step = lambda *args: (step(*args), setattr(first, "stop_signal", "SIGINT"))[0]
    assert first.fit()["stopped"] == "SIGINT"
    resumed = Trainer(load_config(r, ["seed=0", f"resume={tmp_path / 'out' / 'last.pth'}"]), progress=False)
    assert resumed.last_epoch == 0 and resumed.step == 1 and resumed.pending_eval["epoch"] == 0
    resumed.fit()
    assert resumed.step == 2 and len(resumed.step_losses) == 1  # only epoch 2 trained
    assert resumed.step_losses[0] == pytest.approx(trainer.step_losses[1], rel=1e-6, abs=1e-6)
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (folder / "out" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1]
    for got, want in zip(log, expected):
        assert got["test_AP"] == pytest.approx(want["test_AP"], abs=1e-6)
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6, abs=1e-6)
    final, reference = read_checkpoint(tmp_path / "out" / "last.pth"), read_checkpoint(folder / "out" / "last.pth")
    for key, value in reference["ema"]["module"].items():
        assert torch.allclose(final["ema"]["module"][key].float(), value.float(), rtol=1e-4, atol=1e-5), key


def test_finetune_into_three_classes(run, tmp_path):
    _, folder, coco = run
    train = write_subset(coco, tmp_path / "train3.json", 2, categories=[1, 3, 62])
    r = write_recipe(tmp_path / "r3.yml", coco / "train2017", train, train, batch=2, epochs=1, mscoco=False,
                     extra=FAST)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(load_config(r, [f"tuning={folder / 'out' / 'last.pth'}"]), progress=False, max_steps=1)
    message = " ".join(str(w.message) for w in caught)
    assert trainer.cfg.num_classes == 3
    src = read_checkpoint(folder / "out" / "last.pth")["ema"]["module"]
    # both class counts, and the heads by module (it listed every weight and bias: 361 characters for N)
    assert (f"last.pth has {src['decoder.enc_score_head.weight'].shape[0]} classes and this model 3: its class heads "
            f"start fresh (decoder.denoising_class_embed, decoder.enc_score_head, decoder.dec_score_head.0, ") in message
    assert message.endswith("); every other weight is loaded") and ".bias" not in message
    own = trainer.model.state_dict()
    assert torch.equal(own["backbone.stem.stem1.conv.weight"].cpu(), src["backbone.stem.stem1.conv.weight"])
    trainer.fit()
    assert math.isfinite(trainer.step_losses[0])
    final = read_checkpoint(tmp_path / "out" / "last.pth")
    assert final["class_names"] == ["person", "car", "chair"]
    assert final["progress"].get("tuning_ap") is None  # fresh class heads: nothing to score before training


def test_nonfinite_losses_stop_the_run(run, tmp_path):
    from dfine.errors import DfineError

    _, _, coco = run
    trainer = Trainer(load_config(recipe(tmp_path, coco), ["epochs=1"]), progress=False, max_nonfinite=1)
    trainer.save("last.pth")
    before = (tmp_path / "out" / "last.pth").read_bytes()

    class NaNLoss(torch.nn.Module):
        def forward(self, outputs, targets):
            return {"loss_vfl": outputs["pred_logits"].sum() * float("nan")}

    trainer.criterion = NaNLoss()
    with pytest.raises(DfineError, match="1 non-finite losses in a row") as err:
        trainer.fit()
    assert "\n" not in str(err.value)
    assert (tmp_path / "out" / "last.pth").read_bytes() == before


def repeated_subset(coco: Path, out: Path, n_images: int, copies: int) -> Path:
    """A COCO file listing ``n_images`` coco128 images ``copies`` times each (distinct ids)."""
    data = json.loads(write_subset(coco, out, n_images).read_text())
    images, anns = [], []
    for c in range(copies):
        for im in data["images"]:
            images.append(dict(im, id=im["id"] + 1_000_000 * c))
        for a in data["annotations"]:
            anns.append(dict(a, id=a["id"] + 1_000_000 * c, image_id=a["image_id"] + 1_000_000 * c))
    out.write_text(json.dumps(dict(data, images=images, annotations=anns)))
    return out


def test_loss_falls(tmp_path):
    """20 steps on two images with the published N recipe (320 px, no zoom/crop): the loss falls."""
    coco = shared_path("data", "coco128")
    train = repeated_subset(coco, tmp_path / "train.json", 2, copies=20)
    val = write_subset(coco, tmp_path / "val.json", 1, offset=2)
    r = write_recipe(tmp_path / "recipe.yml", coco / "train2017", train, val, batch=2, epochs=1, stop_epoch=0,
                     extra=FAST + "checkpoint_freq: 100\n")
    trainer = Trainer(load_config(r, ["seed=0", "use_amp=False"]), progress=False)
    trainer.fit()
    losses = trainer.step_losses
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.9 * first, losses


def test_resume_after_the_stop_epoch_stays_without_augmentation(run, tmp_path, monkeypatch):
    """Published issue #74: resuming a checkpoint saved at the stop epoch switched the zoom/crop
    augmentations back on. Here the resumed epoch loads its images without them."""
    from dfine.data.transforms import DetectionTransform

    trainer, folder, _ = run
    assert trainer.stop_epoch == 1 and trainer.last_epoch == 1
    cfg = load_config(folder / "recipe.yml", ["epochs=3", f"resume={folder / 'out' / 'last.pth'}",
                                              f"output_dir={tmp_path / 'out'}"])
    seen = []
    original = DetectionTransform.__call__

    def record(self, image, target, epoch):
        seen.append(self.active(epoch))
        return original(self, image, target, epoch)

    monkeypatch.setattr(DetectionTransform, "__call__", record)
    resumed = Trainer(cfg, progress=False, max_steps=1)
    resumed.fit()
    assert resumed.last_epoch == 2 and seen
    stop_ops = {"RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop"}
    assert all(not stop_ops & set(ops) for ops in seen), seen
    assert stop_ops <= set(resumed.train_loader.dataset.transforms.active(0))  # they exist before the stop epoch


def test_a_checkpoint_of_none_of_the_val_classes_is_an_error(run, tmp_path):
    """Every category id the model shares with the val file naming another class: one line, as for an export."""
    from dfine.errors import DfineError
    _, folder, _ = run
    val = json.loads((folder / "val.json").read_text())
    for c in val["categories"]:
        c["name"] = f"other{c['id']}"
    (tmp_path / "val.json").write_text(json.dumps(val))
    cfg = load_config(folder / "recipe.yml", [f"resume={folder / 'out' / 'last.pth'}", f"output_dir={tmp_path}",
                                              f"val_dataloader.dataset.ann_file={tmp_path / 'val.json'}",
                                              "remap_mscoco_category=false"])
    with pytest.raises(DfineError, match=r"last.pth: the model's classes \(person, bicycle, .*\) are none of "
                                         r".*val.json's.*; evaluate it on the data it was trained for$"):
        Trainer(cfg, test_only=True, progress=False)
    # a training resumed on another dataset: what to do is to continue it on its own, or start one with -t (a walk
    # was told to evaluate it)
    last = folder / "out" / "last.pth"
    with pytest.raises(DfineError, match=rf"; continue it on the data it was trained on, or start a run from its "
                                         rf"weights with -t {re.escape(str(last))}$"):
        Trainer(load_config(folder / "recipe.yml", [f"resume={last}", f"output_dir={tmp_path}", "epochs=5",
                                                    f"train_dataloader.dataset.ann_file={tmp_path / 'val.json'}",
                                                    f"val_dataloader.dataset.ann_file={tmp_path / 'val.json'}",
                                                    "remap_mscoco_category=false",
                                                    "train_dataloader.total_batch_size=1"]), progress=False)
