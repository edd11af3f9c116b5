"""``train.py`` / ``dfine train`` / ``dfine eval`` as users type them, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfine.cli import main
from tests.engine.conftest import write_subset

REPO = Path(__file__).resolve().parents[1]
RECIPE = "configs/dfine/dfine_hgnetv2_n_coco.yml"


def published_keys(coco: Path, train: Path, val: Path, out: Path) -> list:
    """The published ``-u`` keys pointing the N recipe at a tiny subset of coco128."""
    return ["-u", f"train_dataloader.dataset.img_folder={coco / 'train2017'}",
            f"train_dataloader.dataset.ann_file={train}", f"val_dataloader.dataset.img_folder={coco / 'train2017'}",
            f"val_dataloader.dataset.ann_file={val}", "train_dataloader.total_batch_size=2",
            "val_dataloader.total_batch_size=2", "train_dataloader.num_workers=0", "val_dataloader.num_workers=0",
            "epochs=1", "HGNetv2.pretrained=False", "--output-dir", str(out)]


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_train_py_as_published_then_eval(coco128, tmp_path):
    train = write_subset(coco128, tmp_path / "train.json", 2)
    val = write_subset(coco128, tmp_path / "val.json", 1, offset=2)
    out = tmp_path / "out"
    cmd = [sys.executable, "train.py", "-c", RECIPE, "--seed=0", *published_keys(coco128, train, val, out)[:-2],
           "-d", "cpu", "--output-dir", str(out), "--max-steps", "1", "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "last.pth").is_file() and (out / "log.jsonl").is_file()
    entry = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert entry["epoch"] == 0 and entry["train_loss"] > 0
    # the published log's name and keys, for scripts that read them
    published = json.loads((out / "log.txt").read_text().splitlines()[0])
    assert len(published["test_coco_eval_bbox"]) == 12 and published["test_coco_eval_bbox"][0] == entry["test_AP"]
    import dfine
    model = dfine.build_model("dfine_n")
    assert published["n_parameters"] == sum(v.numel() for v in model.parameters() if v.requires_grad)
    # the recipe's 500-step warmup is kept on a 1-step run, and said with the override that shortens it
    assert ("lr warmup 500 steps as the recipe says, more than a tenth of this run's 1 step (2 images, batch 2, "
            "1 epoch) (the lr rises for the whole run); -u lr_warmup_scheduler.warmup_duration=1 shortens it") in done.stdout
    cmd = [sys.executable, "-m", "dfine.cli", "eval", "-c", RECIPE, "-r", str(out / "last.pth"),
           *published_keys(coco128, train, val, tmp_path / "eval")[:-2], "-d", "cpu",
           "--output-dir", str(tmp_path / "eval"), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = " in done.stdout
    assert f"metrics: {tmp_path / 'eval' / 'eval.json'}" in done.stdout  # said where it went
    written = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert written["names"] and set(written["names"]) == set(written["per_class"])


def test_test_only_of_a_checkpoint_trained_at_another_size_says_its_size(coco128, tmp_path, capsys):
    """``--test-only -r`` with the recipe evaluates at the recipe's 640 px as the published command
    does; a checkpoint trained at 320 (``--imgsz 320``) gets a note with the option for its own size."""
    train = write_subset(coco128, tmp_path / "train.json", 2)
    out = tmp_path / "out"
    assert main(["train", "-c", RECIPE, *published_keys(coco128, train, train, out), "-d", "cpu", "--imgsz", "320",
                 "--max-steps", "1", "--no-progress"]) == 0
    capsys.readouterr()
    evaluate = ["train", "-c", RECIPE, "--test-only", "-r", str(out / "last.pth"),
                *published_keys(coco128, train, train, tmp_path / "eval"), "-d", "cpu", "--no-progress"]
    assert main(evaluate) == 0
    err = capsys.readouterr().err
    assert ("note: evaluating at 640x640, the recipe's eval_spatial_size; last.pth was trained at 320x320: add "
            "--imgsz 320 to evaluate it at its own size") in err
    assert main([*evaluate, "--imgsz", "320"]) == 0
    assert "note: evaluating at" not in capsys.readouterr().err


def test_a_recipes_gpu_sized_batches_on_the_cpu_are_said_with_the_override(coco128, tmp_path, capsys, monkeypatch):
    """A walk trained the custom recipe on a CPU: its val batch of 256 went through as one 46 s batch of
    all 171 images at 640 px (no progress to watch; more images run out of memory). The start-up summary
    and an evaluation name the recipe's batches and the override; batches given on the command line are not."""
    from dfine.config import load_config
    from dfine.engine.trainer import Trainer
    train = coco128 / "annotations" / "instances_train2017.json"  # 128 images: one batch of the recipe's 128
    keys = [k for k in published_keys(coco128, train, train, tmp_path / "out")[1:-2] if "total_batch_size" not in k]
    monkeypatch.chdir(tmp_path)  # the recipe's own output_dir (output/...) is made here, not in the checkout
    trainer = Trainer(load_config(REPO / RECIPE, [*keys, "device=cpu"]), progress=False)
    notes = [line for line in trainer.startup_summary() if "sized for GPUs" in line]
    assert notes == ["note: the recipe's batches are (train 128, val 256) sized for GPUs: on the CPU each takes many "
                     "GB of memory and one long step; -u train_dataloader.total_batch_size=8 "
                     "val_dataloader.total_batch_size=8 as dfine train --data uses"]
    summary = trainer.startup_summary()
    # epochs=1 on a recipe whose stage 2 starts at epoch 149: it never comes (a walk found no best_stg2.pth)
    assert ("note: stage 2 (its last epochs without the strong augmentations, best_stg2.pth) starts at epoch 149, "
            "after this run's 1 epoch: it never comes; -u train_dataloader.collate_fn.stop_epoch=1 starts it at "
            "epoch 2") in summary
    assert not any("data-loading workers on" in line for line in summary)  # num_workers=0 given
    import os
    cores = len(os.sched_getaffinity(0))
    keys = [k for k in keys if "num_workers" not in k]
    from dfine.data.loader import DetectionDataLoader
    monkeypatch.setattr(DetectionDataLoader, "_worker_counts_said", set())  # as in a new process
    import warnings
    with warnings.catch_warnings(record=True) as given:
        warnings.simplefilter("always")
        recipes = Trainer(load_config(REPO / RECIPE, [*keys, "device=cpu"]), progress=False)  # the recipe's 4 workers
    said = [line for line in recipes.startup_summary() if "data-loading workers on" in line]
    if cores < 4:
        assert said == [f"note: train 4, val 4 data-loading workers on {cores} cores: -u train_dataloader.num_workers="
                        f"{cores} val_dataloader.num_workers={cores} fits them"]
        # torch's warning of them, naming no key, is not given too (a walk read both)
        assert not [w for w in given if "worker processes" in str(w.message)], [str(w.message) for w in given]
    else:
        assert said == []
    small = Trainer(load_config(REPO / RECIPE, [*keys, "device=cpu", "train_dataloader.total_batch_size=4"]),
                    progress=False)
    assert [line for line in small.startup_summary() if "sized for GPUs" in line] == [
        "note: the recipe's batch is (val 256) sized for GPUs: on the CPU it takes many GB of memory and one long "
        "step; -u val_dataloader.total_batch_size=8 as dfine train --data uses"]


def test_missing_image_folder(coco128, tmp_path, capsys):
    train = write_subset(coco128, tmp_path / "train.json", 2)
    args = published_keys(coco128, train, train, tmp_path / "o")
    args[1] = f"train_dataloader.dataset.img_folder={tmp_path / 'nowhere'}"
    err = one_line_error(capsys, ["train", "-c", RECIPE, *args, "-d", "cpu"])
    assert "nowhere" in err and "not found" in err


def test_annotation_not_coco(coco128, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    err = one_line_error(capsys, ["train", "-c", RECIPE, *published_keys(coco128, bad, bad, tmp_path / "o"), "-d", "cpu"])
    assert "not COCO format" in err


def test_resume_from_another_size(coco128, tmp_path, capsys):
    from dfine import build_model

    ckpt = tmp_path / "s.pth"
    torch.save({"model": build_model("dfine_s").state_dict(), "last_epoch": 3}, ckpt)
    train = write_subset(coco128, tmp_path / "train.json", 2)
    err = one_line_error(capsys, ["train", "-c", RECIPE, *published_keys(coco128, train, train, tmp_path / "o"),
                                  "-d", "cpu", "-r", str(ckpt)])
    # the checkpoint's size is named, not left to be read from shapes ('does not fit this model: 249 shape ...')
    assert f"{ckpt} holds a dfine_s model and this model is another size (" in err
    assert "build a dfine_s (a dfine_s recipe with -c, --model dfine_s, or dfine.build_model('dfine_s'))" in err


def test_resume_and_tune_together(capsys):
    err = one_line_error(capsys, ["train", "-c", RECIPE, "-r", "a.pth", "-t", "b.pth"])
    assert "not both" in err


def test_offline_pretrained_backbone(coco128, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DFINE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    import dfine.hub as hub

    def offline(url, dest, *a, **k):
        raise hub.DownloadError(f"cannot download {url} (network unreachable); if you are offline, fetch it by "
                                f"hand and save it as {dest}")

    monkeypatch.setattr(hub, "_fetch", offline)
    train = write_subset(coco128, tmp_path / "train.json", 2)
    args = [a for a in published_keys(coco128, train, train, tmp_path / "runs" / "o") if a != "HGNetv2.pretrained=False"]
    err = one_line_error(capsys, ["train", "-c", str(REPO / RECIPE), *args, "-d", "cpu"])
    assert "PPHGNetV2_B0_stage1.pth" in err and "http" in err and "HGNetv2.pretrained=False" in err
    # the output folders the run made before it stopped are gone (they were left empty behind)
    assert not (tmp_path / "runs").exists()
    (tmp_path / "mine").mkdir()
    args = [a for a in published_keys(coco128, train, train, tmp_path / "mine") if a != "HGNetv2.pretrained=False"]
    one_line_error(capsys, ["train", "-c", str(REPO / RECIPE), *args, "-d", "cpu"])
    assert (tmp_path / "mine").is_dir()  # a folder that was there before stays


def test_published_checkpoint_test_only(coco128, tmp_path, capsys):
    """A checkpoint in the published layout (``model`` + ``ema``, 640 px anchors) evaluates with
    ``--test-only -r`` as published, here at the recipe's 640 px on one coco128 image."""
    from tests.conftest import load_golden

    ckpt = tmp_path / "dfine_n_coco.pth"
    torch.save(load_golden("n")["checkpoint"], ckpt)
    val = write_subset(coco128, tmp_path / "val.json", 1)
    out = tmp_path / "eval"
    assert main(["train", "-c", RECIPE, "--test-only", "-r", str(ckpt), *published_keys(coco128, val, val, out),
                 "-d", "cpu", "--no-progress"]) == 0
    assert " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = " in capsys.readouterr().out
    stats = json.loads((out / "eval.json").read_text())["stats"]
    assert len(stats) == 12 and all(-1 <= v <= 1 for v in stats.values())


def test_eval_images_of_a_recipe_checkpoint_are_used_and_named_when_missing(coco128, tmp_path, capsys):
    """``dfine eval -c RECIPE -r model.pth --images DIR``: the val images are looked for in DIR (it was
    ignored: the recipe's folder was evaluated without a word), and the error names DIR."""
    from tests.conftest import load_golden

    ckpt = tmp_path / "dfine_n_coco.pth"
    torch.save(load_golden("n")["checkpoint"], ckpt)
    val = write_subset(coco128, tmp_path / "val.json", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert main(["eval", "-c", RECIPE, "-r", str(ckpt), *published_keys(coco128, val, val, tmp_path / "eval"),
                 "-d", "cpu", "--no-progress", "--images", str(elsewhere)]) == 2
    err = capsys.readouterr().err
    assert f"image files not found in {elsewhere}: image ids " in err, err


def test_threads_sets_torchs_threads_for_training_and_evaluation(monkeypatch, capsys):
    """``dfine train --threads N`` (and ``dfine eval --threads N`` of a checkpoint on a recipe) runs
    torch on N threads; there was no --threads for training ('unrecognized arguments')."""
    import dfine.engine.trainer as trainer_module
    from dfine.errors import DfineError

    seen = []

    class Stop:
        def __init__(self, *args, **kwargs):
            seen.append(torch.get_num_threads())
            raise DfineError("stopped here")

    monkeypatch.setattr(trainer_module, "Trainer", Stop)
    before = torch.get_num_threads()
    try:
        for command, n in (("train", 1), ("eval", 2)):
            assert main([command, "-c", RECIPE, "-r", "x.pth", "--threads", str(n)]) == 2
            assert capsys.readouterr().err.strip() == "error: stopped here"
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(before)
    assert main(["eval", "-c", RECIPE, "-r", "x.pth", "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --threads must be at least 1, got 0"
    with pytest.raises(SystemExit):
        main(["train", "-c", RECIPE, "--threads", "0"])


def test_auto_resume_continues_a_stopped_run(coco128, tmp_path, capsys):
    """The same command twice with --auto-resume: the second run continues from last.pth
    (ignoring -t); without it, a warning says last.pth will be overwritten."""
    train = write_subset(coco128, tmp_path / "train.json", 2)
    out = tmp_path / "out"
    keys = published_keys(coco128, train, train, out)

    def command(*flags, epochs=1):
        return ["train", "-c", RECIPE, *keys[:-2], "eval_spatial_size=[320,320]", "use_amp=False", f"epochs={epochs}",
                *keys[-2:], "-d", "cpu", "--max-steps", "1", "--no-progress", *flags]

    assert main(command("--auto-resume")) == 0
    assert "resuming" not in capsys.readouterr().err
    tuned = tmp_path / "weights.pth"
    torch.save({"model": {}}, tuned)  # would be an error if -t were used
    assert main(command("--auto-resume", "-t", str(tuned), epochs=2)) == 0
    assert f"resuming from {out / 'last.pth'}" in capsys.readouterr().err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1]
    assert main(command("--auto-resume", epochs=2)) == 0
    out_text = capsys.readouterr().out
    assert "nothing to train: the checkpoint has finished epoch 2 of 2 (-u epochs=7 trains 5 more" in out_text  # -c
    assert "schedule: all 2 epochs finished (resumed)" in out_text  # it read 'epochs 3..2 of 2'
    assert main(command()) == 0
    assert f"warning: {out} holds an earlier run's best_stg1.pth, last.pth: this run overwrites" in capsys.readouterr().err
    err = one_line_error(capsys, command("--auto-resume", "-r", str(out / "last.pth")))
    assert "--auto-resume" in err


def test_a_recipe_run_resumed_without_o_goes_on_in_the_checkpoints_folder(coco128, tmp_path, capsys, monkeypatch):
    """A walk resumed `dfine train -c RECIPE -o output/withO`'s run with `-r output/withO/last.pth` and no -o: it went
    on in the recipe's output_dir, over another run's checkpoints and log. It goes on in the checkpoint's folder,
    said; an evaluation of it (--test-only) writes beside it too; -o still chooses."""
    from dfine.config import load_config
    recipe = str(Path(__file__).resolve().parents[1] / RECIPE)
    monkeypatch.chdir(tmp_path)
    train = write_subset(coco128, tmp_path / "train.json", 2)
    keys = published_keys(coco128, train, train, tmp_path / "unused")[:-2]

    def command(*flags, epochs=1):
        return ["train", "-c", recipe, *keys, "eval_spatial_size=[320,320]", "use_amp=False", f"epochs={epochs}",
                "-d", "cpu", "--max-steps", "1", "--no-progress", *flags]

    assert main(command("-o", "withO")) == 0
    capsys.readouterr()
    assert main(command("-r", "withO/last.pth", epochs=2)) == 0
    err = capsys.readouterr().err
    recipe_dir = load_config(recipe).output_dir
    assert (f"note: the run goes on in {tmp_path / 'withO'}, the folder of -r withO/last.pth, not the recipe's "
            f"output_dir {recipe_dir} (-o DIR to choose)") in err, err
    log = [json.loads(line) for line in (tmp_path / "withO" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1] and not (tmp_path / "output").exists()
    assert main(["train", "-c", recipe, *keys, "eval_spatial_size=[320,320]", "-d", "cpu", "--no-progress",
                 "--test-only", "-r", "withO/last.pth"]) == 0
    assert (tmp_path / "withO" / "eval.json").is_file() and not (tmp_path / "output").exists()


def test_warnings_during_train_and_eval_print_as_one_line():
    """A warning raised during a run (e.g. -t weights of another class count: heads re-initialised)
    printed Python's file:line and the source line under it; now it is one 'warning: ...' line,
    and the formatter is restored after the run."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys, warnings\nfrom dfine.commands import train\n"
             "def run(args):\n    warnings.warn('other.pth has another number of classes; re-initialised: x')\n"
             "    return 0\n"
             "train._run = run\ncode = train.run(None)\n"
             "from dfine.text import _one_line_warning\n"
             "assert warnings.formatwarning is not _one_line_warning\nsys.exit(code)\n")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "warning: other.pth has another number of classes; re-initialised: x\n"
    # under torchrun, the first process alone says it (a walk read each process's)
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "RANK": "1"}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr



def test_warnings_during_dfine_train_print_as_one_line(tmp_path):
    """A notebook walk's dfine.train() showed 'UserWarning' with Python's source line under it
    ('self._tuned_whole = not ckpt_io.load_tuning(model, state, ...'): one 'warning: ...' line, as the command's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.data.datasets import image, yolo_labels
    for split in ("train", "val"):
        image(tmp_path / f"fruit/images/{split}/0.jpg", (96, 64))
        yolo_labels(tmp_path / f"fruit/labels/{split}/0.txt", ["0 0.5 0.5 0.5 0.5"])
    (tmp_path / "fruit/data.yaml").write_text("train: images/train\nval: images/val\nnames: [apple]\n")
    probe = ("import sys, warnings\nimport dfine\nimport dfine.engine.trainer as trainer\n"
             "class Stub:\n    def __init__(self, *a, **k):\n        pass\n"
             "    def fit(self):\n        warnings.warn('class heads start fresh: x')\n        return {}\n"
             "trainer.Trainer = Stub\n"
             f"dfine.train({str(tmp_path / 'fruit')!r}, 'dfine_n', output_dir={str(tmp_path / 'run')!r}, "
             "device='cpu', overrides=['HGNetv2.pretrained=false'])\n"
             "from dfine.text import _one_line_warning\n"
             "assert warnings.formatwarning is not _one_line_warning\n")  # restored after the call
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "warning: class heads start fresh: x\n" in out.stderr and "warnings.warn(" not in out.stderr, out.stderr


def test_every_u_counts_when_given_more_than_once():
    """``-u A -u B`` kept only B (argparse's last wins): a walk on lunar craters lost
    ``HGNetv2.pretrained=False`` that way and stopped offline for the backbone download."""
    from dfine.cli import build_parser
    from dfine.commands.train import overrides_from_args

    argv = ["train", "--data", "d", "-u", "HGNetv2.pretrained=False", "--epochs", "1", "-u", "a.b=1", "c=2"]
    args = build_parser(argv).parse_args(argv)
    assert overrides_from_args(args) == ["HGNetv2.pretrained=False", "a.b=1", "c=2"]
    argv = ["eval", "-c", "x.yml", "-r", "m.pth"]
    assert build_parser(argv).parse_args(argv).update == []


def test_train_help_names_every_dataset_kind_data_takes(capsys):
    """--data takes CVAT exports too (README, dfine --help); its own help said 'COCO, YOLO or VOC'."""
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    assert "COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder" in " ".join(capsys.readouterr().out.split())


def test_eval_of_a_checkpoint_on_a_data_folder_builds_the_checkpoints_size(coco128, tmp_path, capsys, monkeypatch):
    """``dfine eval -r n.pth --data DIR`` without ``--model``: the model is the checkpoint's size
    (it was the default dfine_s, which the N weights did not fit: '249 shape mismatches')."""
    from tests.conftest import load_golden

    ckpt = tmp_path / "n.pth"
    torch.save(load_golden("n")["checkpoint"], ckpt)
    data = tmp_path / "data"
    (data / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        write_subset(coco128, data / "annotations" / f"instances_{split}.json", 1)
        (data / split).symlink_to(coco128 / "train2017")
    out = tmp_path / "eval"
    assert main(["eval", "-r", str(ckpt), "--data", str(data), "-d", "cpu", "--no-progress", "-o", str(out),
                 "-u", "val_dataloader.num_workers=0", "HGNetv2.pretrained=False"]) == 0
    captured = capsys.readouterr()
    assert f"--model dfine_n: as {ckpt} was trained" in captured.err
    assert len(json.loads((out / "eval.json").read_text())["stats"]) == 12
    assert main(["eval", "-r", str(ckpt), "--data", str(data), "--model", "dfine_s", "-d", "cpu", "--no-progress",
                 "-o", str(out), "-u", "HGNetv2.pretrained=False"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "holds a dfine_n model" in last  # an explicit --model still wins
    # a checkpoint of ours carries the size it was trained at: evaluated there, not at the recipe's 640
    from dfine.checkpoint import config_to_dict, stored_config
    from dfine.models.config import apply_overrides, preset
    at_320 = dict(load_golden("n")["checkpoint"], model_config=config_to_dict(
        apply_overrides(preset("dfine_n"), num_classes=80, eval_spatial_size=(320, 320))))
    torch.save(at_320, tmp_path / "n320.pth")
    assert stored_config(torch.load(tmp_path / "n320.pth", weights_only=True)).eval_spatial_size == (320, 320)
    import dfine.engine.trainer as trainer_module
    seen = []

    class Recorder:
        def __init__(self, cfg, **kwargs):
            seen.append(cfg.eval_spatial_size)

        def val(self):
            pass

    monkeypatch.setattr(trainer_module, "Trainer", Recorder)
    assert main(["eval", "-r", str(tmp_path / "n320.pth"), "--data", str(data), "-d", "cpu", "--no-progress",
                 "-o", str(out), "-u", "val_dataloader.num_workers=0", "HGNetv2.pretrained=False"]) == 0
    assert f"--model dfine_n --imgsz 320: as {tmp_path / 'n320.pth'} was trained" in capsys.readouterr().err
    assert list(seen[-1]) == [320, 320]
    assert main(["eval", "-r", str(tmp_path / "n320.pth"), "--data", str(data), "--imgsz", "480", "-d", "cpu",
                 "--no-progress", "-o", str(out), "-u", "HGNetv2.pretrained=False"]) == 0
    assert list(seen[-1]) == [480, 480]  # an explicit --imgsz wins
    # non-square (tiles of dfine data tile --size 256 384): its own size too (it was evaluated at 640x640)
    torch.save(dict(at_320, model_config=config_to_dict(apply_overrides(
        preset("dfine_n"), num_classes=80, eval_spatial_size=(256, 384)))), tmp_path / "n256x384.pth")
    assert main(["eval", "-r", str(tmp_path / "n256x384.pth"), "--data", str(data), "-d", "cpu", "--no-progress",
                 "-o", str(out), "-u", "HGNetv2.pretrained=False"]) == 0
    assert f"--model dfine_n --imgsz 256 384: as {tmp_path / 'n256x384.pth'} was trained" in capsys.readouterr().err
    assert list(seen[-1]) == [256, 384]
    assert main(["eval", "-r", str(tmp_path / "n256x384.pth"), "--data", str(data), "--imgsz", "256", "384", "32",
                 "-d", "cpu", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --imgsz 256 384 32: give N (square) or H W"


def test_model_for_data_takes_a_zoo_detectors_size_without_downloading():
    import argparse
    from dfine.commands.train import _model_for_data
    ns = argparse.Namespace(model=None, resume=None, tuning="dfine_m_coco")
    assert _model_for_data(ns) == "dfine_m"
    assert _model_for_data(argparse.Namespace(model=None, resume=None, tuning=None)) == "dfine_s"
    assert _model_for_data(argparse.Namespace(model="dfine_x", resume=None, tuning="dfine_m_coco")) == "dfine_x"


def test_eval_of_a_checkpoint_on_data_of_another_class_count_says_both_counts(coco128, tmp_path, capsys):
    """An 80-class checkpoint evaluated on a 3-class dataset: the error said 'does not fit this
    model (another size or class count?): 9 shape mismatches', leaving the user to read shapes
    (met by the walk helper evaluating the demo model on a chess set). It names dfine train's -t, not -t alone."""
    import dfine
    from tests.conftest import load_golden

    ckpt = tmp_path / "n.pth"
    torch.save(load_golden("n")["checkpoint"], ckpt)
    data = tmp_path / "data"
    (data / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        write_subset(coco128, data / "annotations" / f"instances_{split}.json", 2, categories=[1, 3, 62])
        (data / split).symlink_to(coco128 / "train2017")
    assert main(["eval", "-r", str(ckpt), "--data", str(data), "-d", "cpu", "--no-progress",
                 "-u", "HGNetv2.pretrained=False"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"error: {ckpt} was trained for 80 classes and the data here has 3: use it with data of its own 80 "
                    f"classes, or fine-tune it into these with dfine train -t {ckpt}")
    with pytest.raises(dfine.DfineError) as err:  # in a notebook: the call that does it
        dfine.evaluate(ckpt, data, progress=False)
    assert str(err.value).endswith(f"or fine-tune it into these with dfine.train(..., tuning='{ckpt}')")


def test_published_weights_given_to_resume_a_data_run_stop_before_anything_is_written(coco128, tmp_path, capsys):
    """A walk's `dfine train --data YOLO -r dfine_n_coco.pth` (published weights kept beside the user's own
    data/annotations) converted the dataset into the checkpoint's folder, replacing the user's
    instances_train.json, before the class-count error. Weights alone are not a run to resume: one line
    saying -t, before any conversion; --model of another size is said before it too (it came after)."""
    import dfine
    from tests.conftest import load_golden
    from tests.data.datasets import image, yolo_labels

    downloads = tmp_path / "Downloads"
    (downloads / "data/annotations").mkdir(parents=True)
    own = downloads / "data/annotations/instances_train.json"
    own.write_text('{"mine": 1}')
    ckpt = downloads / "dfine_n_coco.pth"
    torch.save(load_golden("n")["checkpoint"], ckpt)
    yolo = tmp_path / "yolo"
    for i in range(3):
        image(yolo / f"{i}.jpg", (64, 48))
        yolo_labels(yolo / f"{i}.txt", ["0 0.5 0.5 0.4 0.4"])
    (yolo / "classes.txt").write_text("mask\n")
    want = (f"{ckpt} holds weights alone, not a training run's state (no optimiser, no epoch: published or converted "
            f"weights?); resuming (-r) goes on with a run of dfine in its folder. To train from these weights, "
            f"fine-tune them with -t {ckpt}")
    assert main(["train", "--data", str(yolo), "-r", str(ckpt), "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {want}"
    with pytest.raises(dfine.DfineError) as err:
        dfine.train(yolo, "dfine_n", resume=ckpt, epochs=1)
    assert str(err.value) == (want.replace("(-r)", "(resume=)").replace(f"with -t {ckpt}", f"with tuning='{ckpt}'"))
    assert main(["train", "--data", str(yolo), "-t", str(ckpt), "--model", "dfine_s", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {ckpt} holds a dfine_n model, not this "
                                                                       f"one: fine-tune a dfine_n (--model dfine_n,")
    # a zoo name given to -r (a re-walk: its cached file trained on as if resumed), before any download
    assert main(["train", "--data", str(yolo), "-r", "dfine_n_coco", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: -r dfine_n_coco: published weights (a zoo name), not a training run to continue (-r); fine-tune them "
        "with -t dfine_n_coco")
    with pytest.raises(dfine.DfineError, match=r"^resume='dfine_n_coco': published weights .* with tuning='dfine_n_coco'$"):
        dfine.train(yolo, "dfine_n", resume="dfine_n_coco")
    assert own.read_text() == '{"mine": 1}' and sorted(os.listdir(downloads)) == ["data", "dfine_n_coco.pth"]
    assert not (tmp_path / "o").exists() and sorted(os.listdir(downloads / "data/annotations")) == [own.name]


def test_a_zoo_name_that_cannot_be_fetched_stops_before_the_dataset_is_converted(tmp_path, capsys, monkeypatch):
    """A walk's offline `dfine train --data YOLO -t dfine_n_coco` converted the dataset into output/NAME/data,
    then failed to download: a run folder holding only data/ stayed behind. The weights are fetched first."""
    from dfine import hub
    from tests.data.datasets import image, yolo_labels

    def offline(name, *args, **kwargs):
        raise hub.DownloadError(f"cannot download {name}: offline")
    monkeypatch.setattr(hub, "fetch_weights", offline)
    yolo = tmp_path / "yolo"
    for i in range(3):
        image(yolo / f"{i}.jpg", (64, 48))
        yolo_labels(yolo / f"{i}.txt", ["0 0.5 0.5 0.4 0.4"])
    (yolo / "classes.txt").write_text("mask\n")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(yolo), "-t", "dfine_n_coco", "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: cannot download dfine_n_coco: offline"
    assert not (tmp_path / "output").exists()


def test_a_data_runs_resume_and_eval_hints_are_its_own_command(coco128, tmp_path, capsys, monkeypatch):
    """``dfine train --data DIR``, stopped by Ctrl-C in epoch 2: the resume hint was the recipe form
    with the dozen ``-u`` keys ``--data`` stands for (900 characters on a VOC folder); now it is the
    user's own options with ``-r``. Both printed hints are run as printed: the resumed run ends, and
    its evaluation hint (``dfine eval -r W --data DIR``) gives the AP the training gave."""
    import shlex

    from dfine.engine.trainer import Trainer

    data = tmp_path / "my data"
    (data / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        write_subset(coco128, data / "annotations" / f"instances_{split}.json", 2, categories=[1, 3])
        (data / split).symlink_to(coco128 / "train2017")
    out = tmp_path / "run"
    real = Trainer.train_one_epoch

    def second_epoch_interrupted(self, epoch):
        if epoch == 1:
            self.stop_signal = "SIGINT"
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", second_epoch_interrupted)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", "my data", "--model", "dfine_n", "--epochs", "2", "--batch", "2", "--imgsz", "160",
                 "--max-steps", "1", "-d", "cpu", "--no-progress", "-o", "run", "-u", "HGNetv2.pretrained=False",
                 "DFINETransformer.num_queries=30", "DFINEPostProcessor.num_top_queries=30",
                 "train_dataloader.num_workers=0", "val_dataloader.num_workers=0"]) == 130
    text = capsys.readouterr()
    hint = (text.out + text.err).split("starts again when you resume: ")[1].splitlines()[0]
    assert shlex.split(hint) == ["dfine", "train", "--data", str(data), "--model", "dfine_n", "--epochs", "2",
                                 "--batch", "2", "--imgsz", "160", "-d", "cpu", "--max-steps", "1", "--no-progress", "-o", str(out),
                                 "-u", "HGNetv2.pretrained=False", "DFINETransformer.num_queries=30",
                                 "DFINEPostProcessor.num_top_queries=30", "train_dataloader.num_workers=0",
                                 "val_dataloader.num_workers=0", "-r", str(out / "last.pth")]
    monkeypatch.setattr(Trainer, "train_one_epoch", real)
    monkeypatch.chdir(coco128)  # printed with absolute paths: it works from any folder
    assert main(shlex.split(hint)[1:]) == 0
    printed = capsys.readouterr().out
    evaluation = printed.split("  eval:    ")[1].splitlines()[0]
    assert " -c " not in evaluation and " --data " in evaluation
    assert "pretrained" not in evaluation and "val_dataloader.num_workers=0" in evaluation  # only what eval uses
    best = Path(shlex.split(evaluation)[3])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1]
    assert main(shlex.split(evaluation)[1:]) == 0
    result = json.loads((best.parent / "eval.json").read_text())
    trained = max(log, key=lambda e: e["test_AP"]) if best.name != "last.pth" else log[-1]
    assert result["stats"] == pytest.approx({k[5:]: v for k, v in trained.items()  # the published key: a list of them
                                             if k.startswith("test_") and k != "test_coco_eval_bbox"}, abs=1e-6)
    assert trained["test_coco_eval_bbox"] == pytest.approx(list(result["stats"].values()), abs=1e-6)
    assert result["names"] == {"1": "person", "3": "car"}  # the dataset's, read through --data


def test_eval_without_data_says_what_to_evaluate_on(tmp_path, capsys):
    """``dfine eval -r best.pth`` alone advised training on a dataset folder (a walk); it now names the ways
    to say the data."""
    ckpt = tmp_path / "best.pth"
    torch.save({"model": {}}, ckpt)
    assert one_line_error(capsys, ["eval", "-r", str(ckpt)]) == (
        f"error: say what to evaluate {ckpt} on: --data DIR (a dataset folder: its val split), --ann-file FILE "
        f"--images DIR, or -c RECIPE (its val set)")
    # a run's checkpoint whose val files are still there: those, ready to paste (a walk's was told only the options)
    ann, images = tmp_path / "data/instances_val.json", tmp_path / "my images"
    images.mkdir()
    ann.parent.mkdir()
    ann.write_text("{}")
    torch.save({"model": {}, "config": {"val_dataloader": {"dataset": {"ann_file": str(ann), "img_folder": str(images)}}}},
               ckpt)
    assert one_line_error(capsys, ["eval", "-r", str(ckpt)]).endswith(
        f"or -c RECIPE (its val set); the val set its run trained with: --ann-file {ann} --images '{images}'")
    ann.unlink()  # gone: nothing to offer
    assert one_line_error(capsys, ["eval", "-r", str(ckpt)]).endswith("or -c RECIPE (its val set)")


def test_eval_help_lists_what_an_evaluation_uses(capsys):
    """``dfine eval --help`` listed every training option (--epochs, --patience, --auto-resume, ...) beside
    -m and --model (a walk); the training-only ones are hidden from it (still accepted, as published)."""
    from dfine.cli import build_parser

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    shown = capsys.readouterr().out
    for option in ("--epochs", "--patience", "--auto-resume", "--max-nonfinite", "--summary-dir", "--use-amp"):
        assert option not in shown, option
    for option in ("--data", "-m MODEL", "--ann-file", "--imgsz", "the checkpoint (.pth) or export (.onnx, .xml) to"):
        assert option in shown, option
    args = build_parser(["eval"]).parse_args(["eval", "-r", "m.pth", "--seed", "0", "--epochs", "2"])
    assert args.seed == 0 and args.epochs == 2
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--patience" in capsys.readouterr().out


def test_num_classes_counting_a_roboflow_placeholder_says_it_was_left_out(coco128, tmp_path, capsys):
    """A walk's published-style recipe set num_classes: 3 for a Roboflow export (placeholder id 0 and two
    classes), as the published code counts it, and read 'has 2 classes (2 categories, ids 1..2)' of a file
    that declares 3."""
    data = json.loads(write_subset(coco128, tmp_path / "t.json", 2, categories=[1, 3]).read_text())
    data["categories"] = [{"id": 0, "name": "things", "supercategory": "none"}] + [
        {**c, "supercategory": "things"} for c in data["categories"]]
    train = tmp_path / "train.json"
    train.write_text(json.dumps(data))
    keys = published_keys(coco128, train, train, tmp_path / "o")
    keys.insert(keys.index("--output-dir"), "num_classes=3")
    err = one_line_error(capsys, ["train", "-c", "configs/dfine/custom/dfine_hgnetv2_n_custom.yml", *keys, "-d", "cpu"])
    assert ("num_classes=3 but " in err and "has 2 classes (2 categories, ids 1..3, not the declared but unused "
            "'things' (id 0), a placeholder left out); set num_classes: 2") in err, err


@pytest.mark.parametrize("argv", [["train"], ["train", "--model", "dfine_n", "--epochs", "2"]])
def test_train_without_data_says_what_to_train_on(argv, capsys):
    """It said '-c RECIPE is required (evaluating a checkpoint uses the recipe's val set)' to someone training."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: say what to train on: --data DIR --model dfine_n") and "\n" not in err
    assert "evaluat" not in err


def test_a_zoo_models_evaluation_on_a_dataset_goes_to_a_folder_of_its_own(coco128, tmp_path, capsys, monkeypatch):
    """A walk's ``dfine eval -r dfine_n_coco --data labels`` wrote the zoo model's eval.json and pictures into
    output/labels_dfine_n, the folder of its own fine-tuned run, recording the model as a path that is not there
    (the zoo name joined to the working folder). It now goes to output/labels_dfine_n_coco, recorded by name."""
    from tests.conftest import load_golden
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DFINE_HOME", str(tmp_path / "home"))
    (tmp_path / "home/weights").mkdir(parents=True)
    torch.save(load_golden("n")["checkpoint"], tmp_path / "home/weights/dfine_n_coco.pth")
    data = tmp_path / "labels"
    (data / "annotations").mkdir(parents=True)
    write_subset(coco128, data / "annotations/instances_train.json", 2)
    write_subset(coco128, data / "annotations/instances_val.json", 2, offset=2)
    (data / "images").symlink_to(coco128 / "train2017")
    run = tmp_path / "output/labels_dfine_n"  # the dataset's own run, whose files stay its own
    run.mkdir(parents=True)
    assert main(["eval", "-r", "dfine_n_coco", "--data", str(data), "--imgsz", "320", "-d", "cpu",
                 "--no-progress"]) == 0
    out = tmp_path / "output/labels_dfine_n_coco"
    assert f"metrics: {out / 'eval.json'}" in capsys.readouterr().out
    assert json.loads((out / "eval.json").read_text())["model"] == "dfine_n_coco"
    assert (out / "eval_predictions.png").is_file() and not list(run.iterdir())


def test_a_recipes_annotation_file_not_found_names_its_key_and_file(coco128, tmp_path, capsys, monkeypatch):
    """A published user's edited custom_detection.yml read 'annotation file data/train/x.json not found; set
    ann_file ...' for val first, naming neither the file that set it nor where a relative path is read from."""
    monkeypatch.chdir(tmp_path)
    recipe = str(Path(__file__).resolve().parents[1] / RECIPE)
    keys = published_keys(coco128, tmp_path / "no" / "train.json", Path("data/val.json"), tmp_path / "out")
    assert main(["train", "-c", recipe, *keys, "-d", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: command line 'train_dataloader.dataset.ann_file={tmp_path / 'no' / 'train.json'}': not "
                   f"found; point it at your COCO-format JSON file",
                   f"command line 'val_dataloader.dataset.ann_file=data/val.json': not found, read from the working "
                   f"folder {tmp_path}; point it at your COCO-format JSON file"]
    # set by a recipe file: the file, the key and the path
    (tmp_path / "mine.yml").write_text(f"__include__: [{recipe}]\nval_dataloader:\n  dataset:\n"
                                       f"    ann_file: data/val.json\n")
    assert main(["train", "-c", str(tmp_path / "mine.yml"), *keys[:4], *keys[5:], "-d", "cpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"{tmp_path / 'mine.yml'}: val_dataloader.dataset.ann_file data/val.json not found, read from the working "
        f"folder {tmp_path}; point it at your COCO-format JSON file")
