"""The score threshold a training run recommends: the best F1 on val of the weights it names, in the
printed predict command, in the checkpoint (so a resumed run knows it) and drawn in confidence.png."""

from __future__ import annotations

import json
import shlex

import pytest

from dfine.checkpoint import read_checkpoint
from dfine.config import load_config
from dfine.engine.evaluator import coco_metrics, conf_line
from dfine.engine.trainer import Trainer
from dfine.recipes import TrainResult
from tests.engine.conftest import write_recipe, write_subset

pytest.importorskip("matplotlib")


def _detections(val: dict, right: float, wrong: float) -> list:
    """Each val box found with score ``right``, and one detection of another class at ``wrong``."""
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": right}
            for a in val["annotations"]]
    other = next(c["id"] for c in val["categories"] if c["id"] != val["annotations"][0]["category_id"])
    return dets + [{**dets[0], "category_id": other, "score": wrong}]


def scripted_run(recipe, evaluations: list) -> dict:
    """``Trainer.fit()`` of one step per epoch whose evaluations return ``evaluations`` in turn, each
    ``(AP, CocoMetrics)``."""
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False"]), progress=False, max_steps=1)
    queue = list(evaluations)

    def evaluate():
        ap, metrics = queue.pop(0)
        metrics.stats[0] = ap
        return metrics

    trainer.evaluate = evaluate
    return trainer.fit()


def test_the_predict_command_gets_the_best_f1_threshold_of_the_best_weights(coco128, tmp_path, capsys):
    train = write_subset(coco128, tmp_path / "train.json", 2)
    val_file = write_subset(coco128, tmp_path / "val.json", 1, offset=2)
    recipe = write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", train, val_file, epochs=2, batch=1,
                          extra="lr_warmup_scheduler: {type: LinearWarmup, warmup_duration: 1}\n")
    val = json.loads(val_file.read_text())
    # epoch 1: AP 0.25 (best_stg1.pth), a false positive above every right box; epoch 2: AP 0.5 (best_stg2.pth)
    evaluations = [(0.25, coco_metrics(val, _detections(val, 0.6, 0.95))),
                   (0.5, coco_metrics(val, _detections(val, 0.8, 0.3)))]
    picks = [m.confidence.pick() for _, m in evaluations]
    assert picks[0]["conf"] != picks[1]["conf"] and picks[1]["f1"] == 1.0

    result = scripted_run(recipe, evaluations)
    printed = capsys.readouterr().out
    out = tmp_path / "out"
    assert result["best_weights"] == out / "best_stg2.pth" and result["best_conf"] == pytest.approx(picks[1])
    returned = TrainResult(out, result)  # what dfine.train() returns
    assert returned.conf == pytest.approx(picks[1]["conf"])
    assert repr(returned) == f"TrainResult({out}, best AP 50.0% at epoch 2: best_stg2.pth, conf {picks[1]['conf']:.2f})"
    predict = next(line.split(":", 1)[1].strip() for line in printed.splitlines() if line.startswith("  predict:"))
    assert shlex.split(predict)[-2:] == ["--conf", f"{picks[1]['conf']:.2f}"]
    assert f"  {conf_line(picks[1], 'the val set')}" in printed.splitlines()
    for picture in ("pr_curves.png", "confidence.png", "confusion_matrix.png", "val_predictions.png"):
        assert (out / picture).stat().st_size > 10_000, picture
    # the run's last line names them (a walk listed the folder to find them)
    assert printed.splitlines()[-1] == (f"pictures: pr_curves.png, confidence.png, confusion_matrix.png, "
                                        f"val_predictions.png, loss.png, lr.png, map.png (in {out})")
    # the confusion matrix is of the best weights' evaluation at their --conf: every box found, nothing else
    best = evaluations[1][1]
    boxes = sum(not a.get("iscrowd", 0) for a in val["annotations"])
    k = len(best.names)
    assert best.confusion_conf == picks[1]["conf"] and best.confusion().trace() == boxes
    assert best.confusion()[k].sum() == 0 and best.confusion()[:, k].sum() == 0
    saved = read_checkpoint(out / "best_stg2.pth")["progress"]["conf"]
    expected = {"stg1": pytest.approx(picks[0]), "stg2": pytest.approx(picks[1]), "last": pytest.approx(picks[1])}
    assert saved == expected

    resumed = Trainer(load_config(recipe, ["seed=0", "use_amp=False", f"resume={out / 'last.pth'}"]), progress=False)
    assert resumed.conf_picks == expected


def test_a_run_whose_best_weights_are_last_pth_recommends_their_conf(coco128, tmp_path, capsys, monkeypatch):
    """No evaluation above AP 0 (a short run): the best weights are last.pth, and the predict command
    carries the --conf of its evaluation (a walk: it had none, so predict's 0.5 drew nothing); its pictures
    are titled with last.pth's epoch (they said the epoch of the first evaluation, 'best' at AP 0)."""
    from dfine.engine import trainer as trainer_module
    train = write_subset(coco128, tmp_path / "train.json", 2)
    val_file = write_subset(coco128, tmp_path / "val.json", 1, offset=2)
    recipe = write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", train, val_file, epochs=2, batch=1,
                          extra="lr_warmup_scheduler: {type: LinearWarmup, warmup_duration: 1}\n")
    val = json.loads(val_file.read_text())
    metrics = coco_metrics(val, _detections(val, 0.2, 0.5))
    drawn = []
    real_plot = trainer_module.plot_evaluation
    monkeypatch.setattr(trainer_module, "plot_evaluation",
                        lambda m, out, what, **kw: drawn.append(what) or real_plot(m, out, what, **kw))
    pick = metrics.confidence.pick()
    metrics.stats[0] = 0.0
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False"]), progress=False, max_steps=1)
    trainer.evaluate = lambda: metrics
    result = trainer.fit()
    printed = capsys.readouterr().out
    assert result["best_weights"] == tmp_path / "out" / "last.pth" and result["best_conf"] == pytest.approx(pick)
    predict = next(line.split(":", 1)[1].strip() for line in printed.splitlines() if line.startswith("  predict:"))
    assert predict.endswith(f" --conf {pick['conf']:.2f}") and (tmp_path / "out" / "confidence.png").is_file()
    assert drawn == ["last.pth, epoch 2, val"]


def test_a_run_without_ap_above_0_is_said_so_in_its_result(tmp_path):
    """print(result) said "best AP 0.0 at epoch 1: last.pth" where the run's log says last.pth (epoch 3)
    is used because no evaluation scored above AP 0 (a walk)."""
    metrics = {"best_epoch": 0, "best_AP": 0.0, "epoch": 2, "best_weights": str(tmp_path / "last.pth")}
    assert repr(TrainResult(tmp_path, metrics)) == f"TrainResult({tmp_path}, no evaluation above AP 0: weights last.pth)"
    metrics.update(best_AP=0.0004)
    assert repr(TrainResult(tmp_path, metrics)) == f"TrainResult({tmp_path}, best AP 0.04% at epoch 1: last.pth)"
    # the tuning= weights scored higher before training: result.best is the run's, said (a walk deployed it)
    metrics.update(tuning_AP=0.961)
    assert repr(TrainResult(tmp_path, metrics)) == (f"TrainResult({tmp_path}, best AP 0.04% at epoch 1: last.pth, not "
                                                    f"beating the tuning= weights' AP 96.1% (the run's last lines say "
                                                    f"why))")


def test_a_val_set_without_boxes_is_not_blamed_on_the_model(coco128, tmp_path, capsys):
    """A val split drawn from one pre-label file took only background images (a walk): the run ended
    'no --conf ... (the model finds next to nothing yet)', blaming the model for the val set."""
    train = write_subset(coco128, tmp_path / "train.json", 2)
    val = json.loads(write_subset(coco128, tmp_path / "val.json", 1, offset=2).read_text())
    val["annotations"] = []
    (tmp_path / "val.json").write_text(json.dumps(val))
    recipe = write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", train, tmp_path / "val.json", epochs=1,
                          batch=1)
    Trainer(load_config(recipe, ["seed=0", "use_amp=False"]), progress=False, max_steps=1).fit()
    printed = capsys.readouterr().out
    assert "  no --conf is recommended: the val set has no boxes to measure one on" in printed
    assert "finds next to nothing" not in printed and "dfine data convert --seed N draws another" in printed
