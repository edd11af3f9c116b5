"""EMA, warm-up, schedules, parameter groups, best-checkpoint choice, head remap, atomic save."""

from __future__ import annotations

import contextlib
import math
import os
import stat

import pytest
import torch
import torch.nn as nn

from dfine.config import OptimizerConfig, ParamGroup
from dfine.checkpoint import OBJ365_TO_COCO, save_atomic, tuning_state
from dfine.engine.ema import ModelEMA
from dfine.engine.optim import FlatCosine, LinearWarmup, build_optimizer, param_groups
from dfine.engine.trainer import BestTracker


class Net(nn.Module):
    def __init__(self, classes: int = 80):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.decoder = nn.Module()
        self.decoder.enc_score_head = nn.Linear(4, classes)
        self.decoder.norm = nn.LayerNorm(4)


def test_ema_follows_published_decay():
    model = Net()
    ema = ModelEMA(model, decay=0.9999, warmups=1000)
    before = ema.module.decoder.enc_score_head.bias.clone()
    with torch.no_grad():
        model.decoder.enc_score_head.bias.add_(1.0)
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 1000))
    expected = d * before + (1 - d) * model.decoder.enc_score_head.bias
    torch.testing.assert_close(ema.module.decoder.enc_score_head.bias, expected)
    assert ema.updates == 1 and set(ema.state_dict()) == {"module", "updates"}
    assert ModelEMA(model, decay=0.5, warmups=0).decay_at(3) == 0.5


def test_linear_warmup_and_multistep():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1], gamma=0.1)
    warm = LinearWarmup(opt, 4)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        warm.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and warm.finished()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_flat_cosine_shape():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    fc = FlatCosine(opt, lr_gamma=0.5, iters_per_epoch=10, epochs=10, warmup_iter=5, flat_epoch=4, no_aug_epoch=2)
    assert fc.lr(0, 1.0, 0.5) == 0 and fc.lr(5, 1.0, 0.5) == 1.0 and fc.lr(40, 1.0, 0.5) == 1.0
    assert fc.lr(85, 1.0, 0.5) == 0.5 and 0.5 < fc.lr(60, 1.0, 0.5) < 1.0


def test_param_groups_published_regexes():
    cfg = OptimizerConfig(params=(ParamGroup(r"^(?=.*backbone)(?!.*norm|bn).*$", lr=0.1),
                                  ParamGroup(r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$",
                                             weight_decay=0.0)), lr=1.0, weight_decay=0.01)
    model = Net()
    groups = param_groups(cfg, model)
    assert len(groups) == 3 and groups[0]["lr"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[2]["lr"] == 1.0


def test_best_tracker_as_published():
    best = BestTracker()
    assert best.update(0.1, 0, 2) == "stg1"
    assert best.update(0.05, 1, 2) == ""
    assert best.update(0.2, 2, 2) == "stg2"
    assert best.update(0.15, 3, 2) == "restart"
    assert best.update(0.1, 4, 2) == ""  # first epoch after a restart counts as the stage best


def test_obj365_heads_remapped_to_coco():
    coco, obj = Net(80), Net(366)
    loadable, remapped, reinit = tuning_state(coco, obj.state_dict(), "obj365.pth")
    assert "decoder.enc_score_head.weight" in remapped and not reinit
    torch.testing.assert_close(loadable["decoder.enc_score_head.weight"][1],
                               obj.state_dict()["decoder.enc_score_head.weight"][OBJ365_TO_COCO[1] + 1])
    _, remapped, reinit = tuning_state(Net(3), coco.state_dict(), "coco.pth")
    assert not remapped and reinit == ["decoder.enc_score_head.weight", "decoder.enc_score_head.bias"]


def test_a_data_runs_class_heads_are_carried_by_class_name():
    """A walk pre-labelled photos with a COCO model and fine-tuned it on person and suitcase: the heads started
    fresh, the model unlearning what it knew of both. Given the classes' names (``dfine train --data``), the rows
    of the classes the checkpoint has are carried (score heads, and the denoising embedding with its padding
    row), the others start fresh, said; without names (a recipe's run, as published) all start fresh."""
    import warnings as w

    from dfine.checkpoint import class_names_of, load_tuning
    from dfine.data.mscoco import MSCOCO_NAMES
    from dfine.models.dfine import build_model
    from tests.conftest import load_golden
    ckpt = load_golden("n")["checkpoint"]
    state = ckpt["ema"]["module"]
    assert class_names_of(ckpt, state) == list(MSCOCO_NAMES)  # a published file: its names by its head's size
    fresh = build_model("dfine_n", num_classes=3)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with w.catch_warnings(record=True) as said:
        w.simplefilter("always")
        reinit = load_tuning(fresh, state, "coco.pth", names=["Person", "platypus", "suitcase"],
                             their_names=list(MSCOCO_NAMES))
    assert reinit == []
    assert [str(m.message) for m in said] == ["coco.pth: its class heads carried into this model's by class name: "
                                              "Person, suitcase; platypus (not among its classes) start fresh"]
    rows = {"person": 0, "suitcase": list(MSCOCO_NAMES).index("suitcase")}
    got = fresh.state_dict()
    for key in ("decoder.enc_score_head.weight", "decoder.dec_score_head.2.bias",
                "decoder.denoising_class_embed.weight"):
        assert torch.equal(got[key][0], state[key][rows["person"]])
        assert torch.equal(got[key][2], state[key][rows["suitcase"]])
        assert torch.equal(got[key][1], before[key][1])  # platypus: fresh
    padding = "decoder.denoising_class_embed.weight"
    assert torch.equal(got[padding][3], state[padding][80])
    published = build_model("dfine_n", num_classes=3)
    with w.catch_warnings(record=True) as said:
        w.simplefilter("always")
        assert "decoder.enc_score_head.weight" in load_tuning(published, state, "coco.pth")
    assert "start fresh" in str(said[0].message)


def test_tuning_at_another_input_size_keeps_own_anchors():
    """A published checkpoint holds anchors for 640 px; fine-tuning at 320 px recomputes them."""
    from dfine.models.dfine import build_model

    big = build_model("dfine_n", eval_spatial_size=(640, 640))
    small = build_model("dfine_n", eval_spatial_size=(320, 320))
    own_anchors = small.decoder.anchors.clone()
    loadable, remapped, reinit = tuning_state(small, big.state_dict(), "dfine_n_coco.pth")
    assert "decoder.anchors" not in loadable and "decoder.valid_mask" not in loadable
    assert not remapped and not reinit
    assert len(loadable) == len(small.state_dict()) - 2
    small.load_state_dict(loadable, strict=False)
    assert torch.equal(small.decoder.anchors, own_anchors)
    # the checkpoint's size is named (a walk's S checkpoint with --model dfine_n read 'another size?')
    with pytest.raises(Exception, match=r"dfine_s_coco.pth holds a dfine_s model, not this one: fine-tune a dfine_s "
                                        r"\(--model dfine_s, or leave --model out"):
        tuning_state(small, build_model("dfine_s").state_dict(), "dfine_s_coco.pth")


def test_weights_sharing_only_a_class_head_are_a_one_line_error():
    """A state whose only common entries are class heads of another class count loads nothing:
    the error says so (it was an IndexError when nothing differed in shape and nothing was missing)."""
    from dfine.errors import DfineError

    class HeadOnly(torch.nn.Module):
        def __init__(self, k):
            super().__init__()
            self.decoder = torch.nn.Module()
            self.decoder.enc_score_head = torch.nn.Linear(4, k)

    with pytest.raises(DfineError, match=r"only 0 of 2 entries load; 0 differ in shape, 0 are missing and 2 are "
                                         r"class heads of another class count, e.g. decoder.enc_score_head.weight"):
        tuning_state(HeadOnly(3), HeadOnly(5).state_dict(), "heads.pth")
    # one of each: singular words (it read '1 are missing and 1 are class heads')
    with pytest.raises(DfineError, match=r"only 0 of 2 entries load; 0 differ in shape, 1 is missing and 1 is a "
                                         r"class head of another class count"):
        tuning_state(HeadOnly(3), {"decoder.enc_score_head.weight": torch.zeros(5, 4)}, "head.pth")


def test_atomic_save(tmp_path):
    path = save_atomic({"a": torch.ones(2)}, tmp_path / "x" / "c.pth")
    assert torch.load(path)["a"].sum() == 2 and [p.name for p in path.parent.iterdir()] == ["c.pth"]


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_atomic_save_gives_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_atomic({"a": torch.ones(1)}, tmp_path / "c.pth")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600: others on the machine can read it


@pytest.mark.parametrize("failing", [False, True])
def test_dist_cleanup_skips_the_barrier_when_an_exception_leaves(tmp_path, monkeypatch, failing):
    import torch.distributed as td

    from dfine.engine import dist

    td.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    barriers = []
    monkeypatch.setattr(td, "barrier", lambda *a, **k: barriers.append(1))
    with pytest.raises(RuntimeError) if failing else contextlib.nullcontext():
        try:
            if failing:
                raise RuntimeError("rank 0 failed while the others wait in a collective")
        finally:
            dist.cleanup()
    assert not td.is_initialized() and barriers == ([] if failing else [1])


def test_class_names_that_read_as_numbers_are_quoted_in_the_summary():
    """MajidrNEO1879/arithmetic-detection names category 1 '0', 2 '1', ...: unquoted, the start-up line
    read like a list of ids."""
    from types import SimpleNamespace

    from dfine.data.cocojson import LabelMap
    from dfine.engine.summary import classes_line

    digits = SimpleNamespace(label_map=LabelMap((1, 2, 50), ("0", "1", "x")))
    assert classes_line(digits).startswith("3 classes: '0', '1', 'x'; category ids 1, 2, 50 -> labels 0..2")
    words = SimpleNamespace(label_map=LabelMap((1, 2), ("green vegatable", "tile")))
    assert classes_line(words).startswith("2 classes: green vegatable, tile; category ids 1..2")
    one = SimpleNamespace(label_map=LabelMap((1,), ("thing",)))
    assert classes_line(one).startswith("1 class: thing; category ids 1..1")  # not "1 classes"


def test_ap_text_never_shows_a_positive_ap_as_zero():
    """A short run with AP 0.0004 printed "best AP 0.0" beside "best weights: best_stg1.pth"
    (chosen because its AP is above 0): the figure now shows the digit that is there."""
    from dfine.text import ap_text

    assert [ap_text(a) for a in (0.0, 0.0004, 0.00004, 0.0005, 0.412, 1.0)] == ["0.0%", "0.04%", "0.004%", "0.1%",
                                                                                 "41.2%", "100.0%"]
    # never in exponent form ('last AP 7e-06' in a walk)
    assert [ap_text(a) for a in (3.1e-06, 7e-08, 0.000437)] == ["0.0003%", "<0.0001%", "0.04%"]


def test_the_epoch_line_shows_an_ap_as_the_end_line_does():
    """A walk: the end of a run said 'last AP 0.007 (epoch 15)' while that epoch's own line said 'AP 0.0'."""
    from dfine.engine.evaluator import CocoMetrics

    stats = [0.00007, 0.0003, 0.0, -1.0, 0.0, 0.25, 0.4123] + [0.0] * 5
    line = CocoMetrics(stats=stats).summary()
    assert line.startswith("AP 0.007%  AP50 0.03%  AP75 0.0%  APs -  APm 0.0%  APl 25.0%  AR100")


def test_the_predict_hint_names_a_val_image_when_train_shares_its_folder(tmp_path):
    """A walk's one flat folder, split by a seed: the end of training said to predict on the folder it
    had trained on. The hint then names the first val image; split folders keep the val folder."""
    from dfine.engine.summary import images_folder

    class Set:
        def __init__(self, folder, names):
            self.img_folder, self.names, self.folder = str(folder), names, folder

        def __len__(self):
            return len(self.names)

        def image_path(self, i):
            return self.folder / self.names[i]

    flat = tmp_path / "kitchen"
    assert images_folder(Set(flat, ["7.png", "9.png"]), Set(flat, ["1.png", "2.png"])) == str(flat / "7.png")
    assert images_folder(Set(flat, ["7.png", "9.png"])) == str(flat)  # no train set given: as before
    split = tmp_path / "yolo" / "images"
    assert images_folder(Set(split, ["val/7.png", "val/9.png"]), Set(split, ["train/1.png"])) == str(split / "val")
