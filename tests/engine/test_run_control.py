"""Stopping and failing well: signals, early stopping, disk full, out of memory, unwritable output
folders, inputs too small for the queries, stale temporaries; and the run's summaries."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dfine.cli import main
from dfine.config import load_config
from dfine.engine import trainer as trainer_module
from dfine.engine.trainer import Trainer
from dfine.errors import DfineError
from tests.engine.conftest import write_recipe, write_subset

REPO = Path(__file__).resolve().parents[2]
FAST = "lr_warmup_scheduler: {type: LinearWarmup, warmup_duration: 1}\n"


def scored_as(trainer: Trainer, aps) -> None:
    """Make ``trainer``'s evaluations report the APs ``aps`` in turn (the rest of each is real)."""
    real, queue = trainer.evaluate, list(aps)

    def scored():
        metrics = real()
        metrics.stats[0] = queue.pop(0)
        return metrics

    trainer.evaluate = scored


def tiny_recipe(folder: Path, coco: Path, **kw) -> Path:
    """2 training images, 1 validation image, N at 320 px, batch 1 (so two steps an epoch)."""
    train = write_subset(coco, folder / "train.json", 2)
    val = write_subset(coco, folder / "val.json", 1, offset=2)
    kw.setdefault("batch", 1)
    return write_recipe(folder / "recipe.yml", coco / "train2017", train, val, extra=FAST, **kw)


def test_sigterm_stops_after_the_step_and_keeps_last_pth(coco128, tmp_path, capsys):
    trainer = Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=2), ["seed=0"]), progress=False,
                      max_steps=2, patience=5)
    last = tmp_path / "out" / "last.pth"
    original, calls, after_epoch_1 = trainer.train_step, [], {}

    def step_then_signal(*args):
        out = original(*args)
        calls.append(1)
        if len(calls) == 3:  # first step of the second epoch
            after_epoch_1["bytes"] = last.read_bytes()
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    trainer.train_step = step_then_signal
    real = trainer.evaluate

    def scored():  # epoch 1 scores above 0, so its weights are also best_stg1.pth
        metrics = real()
        metrics.stats[0] = 0.25
        return metrics

    trainer.evaluate = scored
    result = trainer.fit()
    assert result["stopped"] == "SIGTERM" and len(calls) == 3  # no step after the signal
    assert last.read_bytes() == after_epoch_1["bytes"]
    assert trainer.last_epoch == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "stopped by SIGTERM during epoch 2" in text and f"-r {last}" in text
    # the resume command keeps the run's own options (without --max-steps it trained whole epochs)
    assert f"--max-steps 2 --patience 5 -r {last}" in text and "--max-nonfinite" not in text
    best = tmp_path / "out" / "best_stg1.pth"
    assert f"best weights so far: {best} (AP 25.0% at epoch 1)" in text and best.is_file()  # where they are, too
    assert not list(last.parent.glob(".*.tmp"))  # no temporary left behind
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_signal_during_the_evaluation_keeps_the_epochs_training(coco128, tmp_path, capsys):
    """Ctrl-C while the epoch's evaluation ran threw the finished training away ('an epoch is kept with
    its evaluation'): now last.pth holds the trained epoch with its evaluation pending, and the resumed
    run evaluates it without training it again."""
    from dfine.checkpoint import read_checkpoint

    recipe = tiny_recipe(tmp_path, coco128, epochs=1)
    trainer = Trainer(load_config(recipe, ["seed=0"]), progress=False)

    def interrupted_evaluation():
        trainer.stop_signal = "SIGINT"
        return None  # what evaluate returns when a signal stopped it

    trainer.evaluate = interrupted_evaluation
    assert trainer.fit()["stopped"] == "SIGINT"
    text = capsys.readouterr()
    last = tmp_path / "out" / "last.pth"
    assert (f"stopped by SIGINT during the evaluation of epoch 1: its training is kept in {last} (epoch 1 trained, "
            f"not evaluated); resuming evaluates it first and ends the run: dfine train -c ") in text.out + text.err
    saved = read_checkpoint(last)
    assert saved["last_epoch"] == 0 and saved["pending_eval"]["epoch"] == 0 and saved["step"] == 2
    assert torch.equal(saved["ema"]["module"]["decoder.enc_score_head.weight"],  # saved on the CPU, trained on any
                       trainer.ema.module.state_dict()["decoder.enc_score_head.weight"].cpu())
    resumed = Trainer(load_config(recipe, ["seed=0", f"resume={last}"]), progress=False)
    steps = []
    original = resumed.train_step
    resumed.train_step = lambda *args: steps.append(1) or original(*args)
    result = resumed.fit()
    assert result["stopped"] == "" and steps == []  # evaluated, not trained again
    text = capsys.readouterr()
    assert ("epoch 1 was trained and a signal stopped the run before its evaluation ended: evaluating it first"
            in text.out)
    assert "nothing to train" not in text.out + text.err
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0] and log[0]["train_loss"] == pytest.approx(saved["pending_eval"]["train"]["loss"])
    assert "test_AP" in log[0] and read_checkpoint(last)["pending_eval"] is None


def test_a_resumed_run_draws_the_pictures_of_best_weights_evaluated_before_the_resume(coco128, tmp_path, capsys):
    """A walk's run, killed after its best epoch and resumed, ended with the pictures (val_predictions.png,
    pr_curves.png, ...) of the weights before them, and its last lines named only loss, lr and map: the best
    weights' metrics had been evaluated by the session before. The resumed run evaluates them again for them."""
    recipe = tiny_recipe(tmp_path, coco128, epochs=2, stop_epoch=2)
    first = Trainer(load_config(recipe, ["seed=0", "epochs=1"]), progress=False, max_steps=1)
    scored_as(first, [0.3])
    first.fit()
    out = tmp_path / "out"
    (out / "val_predictions.png").write_bytes(b"the pictures of weights before the best")
    capsys.readouterr()
    resumed = Trainer(load_config(recipe, ["seed=0", f"resume={out / 'last.pth'}"]), progress=False, max_steps=1)
    scored_as(resumed, [0.1, 0.3])  # epoch 2 does not improve; then best_stg1.pth evaluated again
    result = resumed.fit()
    assert result["best_weights"] == out / "best_stg1.pth" and result["best_epoch"] == 0
    text = capsys.readouterr().out
    assert "best_stg1.pth (epoch 1) was evaluated before this run was resumed: evaluating it again for its pictures" \
        in text
    assert "pictures: pr_curves.png, confidence.png, confusion_matrix.png, val_predictions.png, loss.png" in text
    assert (out / "val_predictions.png").read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    Trainer(load_config(recipe, ["seed=0", f"resume={out / 'last.pth'}"]), progress=False).fit()  # nothing to train
    assert "evaluating it again" not in capsys.readouterr().out


def test_a_signal_in_an_epochs_last_step_keeps_the_epoch(coco128, tmp_path, capsys):
    """A notebook walk's Interrupt came in epoch 2's only step: the step finished, then the whole epoch was
    thrown away ('epoch 2 starts again when you resume'). Its training is whole: kept with its evaluation
    pending, as a signal during the evaluation keeps it, and the resumed run evaluates it without training."""
    from dfine.checkpoint import read_checkpoint

    recipe = tiny_recipe(tmp_path, coco128, epochs=1)
    trainer = Trainer(load_config(recipe, ["seed=0"]), progress=False)
    real, calls = trainer.train_step, []

    def last_step_then_signal(*args):
        out = real(*args)
        calls.append(1)
        if len(calls) == len(trainer.train_loader):  # the epoch's last step
            trainer.stop_signal = "SIGINT"
        return out

    trainer.train_step = last_step_then_signal
    evaluated = []
    trainer.evaluate = lambda: evaluated.append(1)
    assert trainer.fit()["stopped"] == "SIGINT" and evaluated == []
    last = tmp_path / "out" / "last.pth"
    text = capsys.readouterr()
    assert (f"stopped by SIGINT during epoch 1's last step: its training is kept in {last} (epoch 1 trained, not "
            f"evaluated); resuming evaluates it first and ends the run") in text.out + text.err
    saved = read_checkpoint(last)
    assert saved["last_epoch"] == 0 and saved["pending_eval"]["epoch"] == 0 and saved["step"] == len(calls)
    resumed = Trainer(load_config(recipe, ["seed=0", f"resume={last}"]), progress=False)
    steps = []
    resumed.train_step = lambda *args: steps.append(1)
    assert resumed.fit()["stopped"] == "" and steps == []  # evaluated, not trained again
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0] and "test_AP" in log[0]


def test_signal_handler_writes_without_print(tmp_path, capfd):
    """The handler must not print through Python's buffered streams: a signal arriving while the
    main thread is printing (a progress bar refresh) makes ``print`` raise "reentrant call", which
    ended the run with a traceback instead of stopping it after the step."""
    trainer = Trainer.__new__(Trainer)
    trainer.stop_signal, trainer.output_dir = None, tmp_path

    def reentrant(text):
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stdout>'>")

    trainer._print = reentrant
    with trainer._signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs in the main thread between bytecodes
    assert trainer.stop_signal == "SIGINT"
    assert "SIGINT: stopping after this step" in capfd.readouterr().err
    # during the evaluation there is no step to finish (a walk): it says what it stops after
    trainer.stop_signal, trainer._evaluating = None, True
    with trainer._signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert "SIGINT: stopping after this batch of the evaluation (press Ctrl-C again" in capfd.readouterr().err


def test_from_python_a_second_ctrl_c_raises_instead_of_ending_the_process(tiny, monkeypatch, capsys):
    """A notebook walk pressed Interrupt twice during dfine.train: the second one ended the process
    (os._exit), the kernel died with every variable, the lock file stayed, and the lines went to the
    server's terminal. From Python it raises KeyboardInterrupt: the lock is released, the bar closed,
    last.pth intact, and the lines go to sys.stderr (the cell)."""
    import io

    from dfine.checkpoint import read_checkpoint
    recipe, tmp_path = tiny
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=2"]), progress=True, max_steps=2)
    assert not trainer.exit_on_second_signal  # the command line sets it
    original, bars, make_bar = trainer.train_step, [], trainer._bar

    def interrupted_twice(*args, **kwargs):
        if trainer.last_epoch == 0:  # epoch 2: epoch 1's last.pth is written
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
        return original(*args, **kwargs)

    trainer.train_step = interrupted_twice
    trainer._bar = lambda *a, **k: bars.append(make_bar(*a, **k)) or bars[-1]
    cell = io.StringIO()
    monkeypatch.setattr(sys, "stderr", cell)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    last = tmp_path / "out" / "last.pth"
    assert (f"SIGINT again: stopping now (checkpoints are written atomically; {last} is intact)"
            in cell.getvalue()) and "SIGINT: stopping after this step" in cell.getvalue()
    assert read_checkpoint(last)["last_epoch"] == 0
    assert not (tmp_path / "out" / ".dfine.lock").exists()
    assert len(bars) == 2 and all(bar.disable for bar in bars)  # closed: none redraws itself later
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the caller's handler is back


def test_a_training_slowed_by_other_jobs_says_so_between_its_steps(tiny, monkeypatch, capsys):
    """The trainer times each step with its SlowdownWatch and prints the note it gives, once (a walk's
    steps went from 1 s to 18 s while another job ran, and nothing said why)."""
    import dfine.device as device
    recipe, _ = tiny
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=4"]), progress=False)
    calls = []

    def clock():  # 2 steps an epoch, each 1 s in epochs 1-2, 10 s in epochs 3-4: another job came
        calls.append(None)
        step = (len(calls) - 1) // 2
        return step * 100.0 + (len(calls) % 2 == 0) * (1.0 if step < 4 else 10.0)

    trainer.slowdown.clock = clock
    monkeypatch.setattr(device, "busy_cpu_note", lambda what, python=False: f"note: busy ({what}, {python})")
    trainer.fit()
    out = capsys.readouterr().out
    # a run of the command line: its words (dfine.train's run gives Python's, tests/test_device.py)
    assert out.count("note: steps now take 10.0 s, 10x the 1.0 s of earlier ones; busy (the training steps, "
                     "False)") == 1
    assert len(calls) == 16


def test_a_second_ctrl_c_while_the_loaders_shut_down_does_not_raise_there(tmp_path, monkeypatch):
    """A re-walk's second Interrupt came while the loaders shut down after the step the first one
    stopped: raised inside the loader's __del__, it printed torch's 'Exception ignored' traceback.
    Once the loop has stopped, a second signal says so and the run ends as the first asked."""
    import io
    trainer = Trainer.__new__(Trainer)
    trainer.stop_signal, trainer.output_dir, trainer._unwinding = "SIGINT", tmp_path, True
    cell = io.StringIO()
    monkeypatch.setattr(sys, "stderr", cell)
    with trainer._signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # no KeyboardInterrupt here
    assert "SIGINT again: already stopping (the data loaders are shutting down)" in cell.getvalue()
    trainer._unwinding = False  # still in the step: the second one raises at once
    with pytest.raises(KeyboardInterrupt):
        with trainer._signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)


def _cli_run(folder: Path, coco: Path, workers: int) -> subprocess.Popen:
    recipe = tiny_recipe(folder, coco, epochs=3)
    cmd = [sys.executable, "-m", "dfine.cli", "train", "-c", str(recipe), "-d", "cpu", "--no-progress",
           "-u", f"train_dataloader.num_workers={workers}"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_for(proc: subprocess.Popen, marker: str, lines: list) -> None:
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            return
    raise AssertionError("".join(lines[-20:]))


def _ctrl_c(proc: subprocess.Popen, markers: list) -> tuple:
    """Send SIGINT to the process group (as a terminal does) at each marker; (output, seconds
    from the last SIGINT to the exit)."""
    lines: list = []
    try:
        for marker in markers:
            _wait_for(proc, marker, lines)
            os.killpg(proc.pid, signal.SIGINT)
        start = time.time()
        rest, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return "".join(lines) + rest, time.time() - start


def test_ctrl_c_with_loader_workers_stops_within_a_step(coco128, tmp_path):
    """Ctrl-C reaches the whole process group (main process and data workers)."""
    proc = _cli_run(tmp_path, coco128, workers=1)
    text, seconds = _ctrl_c(proc, ["epoch 1 [1/2]"])
    assert proc.returncode == 130, text[-2000:]
    assert seconds < 60
    assert text.count("SIGINT: stopping after this step") == 1  # said once, not again by each loader worker
    # a loaded machine's signal can come after step 2, the epoch's last, began: that epoch is then kept, not evaluated
    kept = "during epoch 1's last step: its training is kept" in text
    assert ("no epoch had finished" in text) != kept and "Traceback" not in text, text[-2000:]
    assert not os.path.lexists(tmp_path / "out" / "log.txt")  # no link to a log.jsonl never written (a walk)
    assert kept or "best weights so far" not in text  # none yet (nor another run's files)
    after = text.split("SIGINT: stopping")[1]
    # the step in progress finishes (step 2 when the signal came after step 2 began: a loaded machine), no other
    assert after.count("] loss ") <= 1 and "epoch 2 [" not in after  # no step of epoch 2


def test_sigterm_to_the_process_group_with_loader_workers_stops_within_a_step(coco128, tmp_path):
    """``timeout``, schedulers and service managers send SIGTERM to every process of the job: the loader
    workers died of it (torch's worker handler exits on a SIGTERM not from its parent) and torch raised
    in the middle of the step, a 100-line traceback instead of the resume line (a walk)."""
    proc = _cli_run(tmp_path, coco128, workers=2)  # with 1, its batches were often all loaded before the signal
    lines: list = []
    try:
        _wait_for(proc, "epoch 2 [1/2]", lines)  # epoch 1 finished: there is a last.pth to resume from
        os.killpg(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    text = "".join(lines) + rest
    assert "Traceback" not in text and "DataLoader worker" not in text, text[-3000:]
    assert text.count("SIGTERM: stopping after this step (send SIGTERM again to quit at once)") == 1  # not Ctrl-C
    assert "stopped by SIGTERM during epoch 2" in text and "-r " in text  # the resume command
    assert proc.returncode == 128 + signal.SIGTERM, text[-2000:]
    assert (tmp_path / "out" / "log.txt").read_text() == (tmp_path / "out" / "log.jsonl").read_text() != ""


def test_second_ctrl_c_exits_at_once(coco128, tmp_path):
    proc = _cli_run(tmp_path, coco128, workers=0)
    text, seconds = _ctrl_c(proc, ["epoch 1 [1/2]", "stopping after this step"])
    assert proc.returncode == 130 and seconds < 10
    assert "SIGINT again: exiting now" in text


def test_patience_stops_and_keeps_the_best(coco128, tmp_path, capsys):
    trainer = Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=4), ["seed=0"]), progress=False,
                      max_steps=1, patience=1)
    aps = iter([0.2, 0.1, 0.3, 0.4])  # epoch 2 does not improve: stop there
    real = trainer.evaluate

    def fake_ap():
        metrics = real()
        metrics.stats[0] = next(aps)
        return metrics

    trainer.evaluate = fake_ap
    result = trainer.fit()
    assert result["stopped"] == "patience" and trainer.last_epoch == 1
    assert result["best_AP"] == 0.2 and result["best_epoch"] == 0
    assert result["best_weights"] == tmp_path / "out" / "best_stg1.pth"
    text = capsys.readouterr()
    assert "early stop after epoch 2" in text.out + text.err
    with pytest.raises(DfineError, match="patience"):
        Trainer(load_config(tmp_path / "recipe.yml"), patience=0)


def test_disk_full_keeps_the_previous_checkpoint(coco128, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe given relative to the current folder
    trainer = Trainer(load_config(Path(tiny_recipe(tmp_path, coco128, epochs=1)).name), progress=False)
    trainer.save("last.pth")
    before = (tmp_path / "out" / "last.pth").read_bytes()
    real_save = torch.save

    def half_then_full(obj, f, *a, **k):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(DfineError) as err:
        trainer.save("last.pth")
    monkeypatch.setattr(torch, "save", real_save)
    message = str(err.value)
    assert "No space left on device" in message and "previous file is intact" in message and "\n" not in message
    assert f"resume with dfine train -c {tmp_path / 'recipe.yml'}" in message  # absolute: works from any folder
    assert f"-r {(tmp_path / 'out' / 'last.pth').resolve()}" in message
    assert (tmp_path / "out" / "last.pth").read_bytes() == before
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                                                "can't allocate memory: you tried to allocate 123456789 bytes")])
def test_out_of_memory_names_batch_and_size(coco128, tmp_path, error):
    trainer = Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=1, batch=2)), progress=False)

    def oom(*args):
        raise error

    trainer._step = oom
    with pytest.raises(DfineError) as err:
        trainer.fit()
    message = str(err.value)
    assert "out of" in message and "batch size 2" in message and "image size 320x320" in message
    assert "total_batch_size=1" in message and "--imgsz 224" in message


@pytest.mark.parametrize("where", ["proc", "through_file", "read_only"])
def test_unwritable_output_folder_fails_before_building(coco128, tmp_path, capsys, monkeypatch, where):
    recipe = tiny_recipe(tmp_path, coco128)
    if where == "proc":
        out = Path("/proc/x")
    elif where == "through_file":
        (tmp_path / "afile").write_text("")
        out = tmp_path / "afile" / "out"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)

    def never(*a, **k):
        raise AssertionError("built before the output folder was checked")

    monkeypatch.setattr(trainer_module, "build_from_config", never)
    monkeypatch.setattr(trainer_module, "build_dataset", never)
    assert main(["train", "-c", str(recipe), "-d", "cpu", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: output folder {out} cannot be created or written") and "\n" not in err


def test_input_too_small_for_the_queries_fails_before_building(coco128, tmp_path, capsys, monkeypatch):
    recipe = tiny_recipe(tmp_path, coco128)
    monkeypatch.setattr(trainer_module, "build_dataset", lambda *a, **k: pytest.fail("built"))
    assert main(["train", "-c", str(recipe), "-d", "cpu", "--imgsz", "128"]) == 2
    err = capsys.readouterr().err.strip()
    assert "128x128 gives 80 encoder tokens, fewer than DFINETransformer.num_queries=300" in err and "\n" not in err


def test_stale_temporaries_are_removed_and_never_resumed(coco128, tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, coco128, epochs=1)
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".last.pth.k2j4h1.tmp", out / ".best_stg1.pth.a8b8c8.tmp"]
    stale[0].write_bytes(b"")
    stale[1].write_bytes(b"\x80" * 4096)
    other = out / "notes.tmp"  # not of our naming: kept
    other.write_text("mine")
    trainer = Trainer(load_config(recipe), progress=False)
    assert not any(p.exists() for p in stale) and other.exists()
    assert trainer.last_epoch == -1  # started fresh: a temporary is never a checkpoint


def test_summaries_name_data_classes_and_next_commands(coco128, tmp_path, capsys):
    """A Roboflow-style export: placeholder category 0 (supercategory of the others), ids from 0,
    one background image."""
    data = json.loads(write_subset(coco128, tmp_path / "rf.json", 3, categories=[1, 3]).read_text())
    data["categories"] = [{"id": 0, "name": "things", "supercategory": "none"},
                          {"id": 1, "name": "person", "supercategory": "things"},
                          {"id": 2, "name": "car", "supercategory": "things"}]
    for i, a in enumerate(data["annotations"]):
        a["id"], a["category_id"] = i, 1 if a["category_id"] == 1 else 2
    extra = json.loads(write_subset(coco128, tmp_path / "bg.json", 1, offset=10).read_text())["images"][0]
    data["images"].append(extra)
    (tmp_path / "rf.json").write_text(json.dumps(data))
    recipe = write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", tmp_path / "rf.json", tmp_path / "rf.json",
                          epochs=1, batch=4, mscoco=False, extra=FAST)
    # device pinned: on a machine with CUDA the trainer picks it (the H200 run of session 21)
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "device=cpu"]), progress=False, max_steps=1)
    start = "\n".join(trainer.startup_summary())
    n_boxes = len(data["annotations"])
    assert f"train data: 4 images, {n_boxes} boxes, 1 background image (" in start  # one: singular
    assert "2 classes: person, car; category ids 1..2 -> labels 0..1" in start
    assert "left out 1 declared but unused category 'things' (id 0)" in start
    assert "M parameters" in start and "device: cpu" in start and "precision float32" in start
    assert "\nweights: random (HGNetv2.pretrained=False: trained from nothing)\n" in start
    assert "schedule: 1 epoch, 1 step per epoch (batch 4 per process)" in start  # not "1 epochs, 1 steps"
    assert f"output: {tmp_path / 'out'}" in start
    result = trainer.fit()
    text = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in text
    best = tmp_path / "out" / ("best_stg1.pth" if result["best_AP"] > 0 else "last.pth")  # 1 step: AP 0 likely
    assert result["best_weights"] == best and f"best weights: {best}" in text
    assert f"dfine eval -c {recipe} -r {best}" in text and f"dfine export -r {best} --format onnx" in text
    assert f"dfine predict -m {best} {coco128 / 'train2017'}" in text
    assert "UserWarning" not in text
    log = json.loads((tmp_path / "out" / "log.jsonl").read_text().splitlines()[0])
    assert len(log["train_step_losses"]) == 1 and (tmp_path / "out" / "loss.png").stat().st_size > 10_000


def test_ap_zero_all_along_keeps_training_after_the_stop_epoch(coco128, tmp_path, capsys):
    """A hard dataset where no evaluation scores above AP 0: best_stg1.pth is the first epoch's
    weights, no better than later ones. The stop-epoch EMA restart (and the restarts after
    epochs that do not improve) must not throw the training since then away, and the weights to
    use next are the last ones."""
    trainer = Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=3, stop_epoch=1, size=256),
                                  ["seed=0", "use_amp=False"]), progress=False,
                      max_steps=1)
    scored_as(trainer, [0.0] * 3)
    result = trainer.fit()
    out = tmp_path / "out"
    steps = [float(s["step"]) for s in torch.load(out / "last.pth", weights_only=False)["optimizer"]["state"].values()]
    assert set(steps) == {3.0}  # one optimiser step in each of the 3 epochs, none undone by a reload
    assert result["best_weights"] == out / "last.pth" and result["best_AP"] == 0.0
    text = capsys.readouterr()
    assert "no evaluation has scored above AP 0" in text.out + text.err
    assert f"best weights: {out / 'last.pth'}" in text.out
    # the stop-epoch restart before epoch 2, the restart after epoch 2 for epoch 3, none after the last epoch
    restarts = [line.split(":")[0] for line in (text.out + text.err).splitlines() if "EMA restarted" in line]
    assert restarts == ["epoch 2", "epoch 3"], restarts
    assert ("(stage 2 of the published recipe: its last epochs train without the strong augmentations; best_stg1.pth "
            "is not reloaded, though: no evaluation has scored above AP 0 yet") in text.out
    # the second is the stage-2 rule, said as such (it gave the stop epoch's reason again, a walk)
    lines = text.out.splitlines()
    second = next(line for line in lines if line.startswith("epoch 3: EMA restarted"))
    # said after the line of the epoch it speaks of (it came before it)
    assert lines.index(second) > next(i for i, line in enumerate(lines) if line.startswith("epoch 2/3: loss"))
    assert second.endswith("(epoch 2 did not improve on stage 2's best AP: the published stage-2 rule goes back to "
                           "best_stg1.pth with a lower decay; the best weights stay where they are; best_stg1.pth is "
                           "not reloaded, though: no evaluation has scored above AP 0 yet, so it is no better than "
                           "the current weights)"), second  # one parenthesis (two read as a contradiction, a walk)


def test_an_interrupted_plot_leaves_the_previous_picture(tmp_path, monkeypatch):
    """The run's plots are drawn after training; a Ctrl-C while one is being written left half a
    PNG. Now each goes through a temporary file: the previous picture stays, nothing is left over."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from dfine.engine.trainer import plot_history

    (tmp_path / "loss.png").write_bytes(b"the previous picture")

    def interrupted(self, fname, **kw):
        Path(fname).write_bytes(b"half a pic")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    history = [{"epoch": 0, "step": 2, "train_step_losses": [3.0, 2.0], "train_loss": 2.5, "train_lr": 1e-4,
                "test_AP": 0.1}]
    with pytest.raises(KeyboardInterrupt):
        plot_history(history, tmp_path)
    assert (tmp_path / "loss.png").read_bytes() == b"the previous picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]


def test_a_log_line_cut_off_by_a_crash_does_not_stop_the_resumed_run(tmp_path):
    """``kill -9`` (or a power cut) while log.jsonl was appended left half a line, and resuming
    failed on it with a JSONDecodeError traceback; the whole lines are read, the cut one named."""
    from dfine.engine.trainer import read_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"epoch": 0, "train_loss": 3.0}\n{"epoch": 1, "train_loss": 2.5}\n{"epoch": 2, "train_lo')
    assert read_log(log, last_epoch=1) == ([{"epoch": 0, "train_loss": 3.0}, {"epoch": 1, "train_loss": 2.5}], [3])
    assert read_log(log, last_epoch=0)[0] == [{"epoch": 0, "train_loss": 3.0}]  # later epochs: not this run's


def test_a_new_run_into_an_earlier_runs_folder_starts_its_own_log(coco128, tmp_path):
    """A new run into a folder that holds an earlier run appended to that run's log.jsonl; resumed,
    it read both runs' epoch 1 and its plots drew two points at epoch 1 and two loss curves."""
    from dfine.engine.trainer import read_log

    out = tmp_path / "out"
    out.mkdir()
    earlier = [{"epoch": 0, "train_loss": 31.9, "step": 2, "train_step_losses": [31.0, 32.8]},
               {"epoch": 1, "train_loss": 33.7, "step": 4, "train_step_losses": [33.0, 34.4]}]
    (out / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in earlier))
    Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=1), ["seed=0"]), progress=False).fit()
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [0] and lines[0]["train_loss"] != 31.9  # this run's epoch only
    assert not list(out.glob(".*.tmp"))
    # a log written before the fix: the later line of an epoch is this run's
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(e) + "\n" for e in earlier + [{"epoch": 0, "train_loss": 39.7}]))
    assert read_log(mixed, last_epoch=0)[0] == [{"epoch": 0, "train_loss": 39.7}]


def _drawn(monkeypatch, history, tmp_path, lr_names=None, stop_epoch=None):
    """The figures :func:`plot_history` draws for ``history``, by file name, instead of written."""
    import matplotlib.pyplot as plt

    from dfine.engine.trainer import plot_history

    plt.close("all")  # the figures of earlier calls, kept open by keep() below
    figures = {}

    def keep(fig, path, dpi=110):
        figures[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(trainer_module, "save_figure", keep)
    plot_history(history, tmp_path, lr_names, stop_epoch)
    return figures


def test_map_plot_shows_percent_like_the_terminal(tmp_path, monkeypatch):
    """The terminal and eval.json's summary print AP 41.2; map.png drew 0.412 on a 0..1 axis, and
    a statistic COCO could not compute (-1: no box of that size) would have read -100."""
    pytest.importorskip("matplotlib")
    history = [{"epoch": 0, "step": 2, "test_AP": 0.125, "test_AP50": 0.25, "test_AP75": -1.0},
               {"epoch": 1, "step": 4, "test_AP": 0.412, "test_AP50": 0.6, "test_AP75": 0.5}]
    ax = _drawn(monkeypatch, history, tmp_path)["map.png"].axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines["AP"] == pytest.approx([12.5, 41.2]) and lines["AP50"] == pytest.approx([25.0, 60.0])
    assert math.isnan(lines["AP75"][0]) and lines["AP75"][1] == pytest.approx(50.0)
    assert "%" in ax.get_ylabel()
    # a run at AP 0 (a walk): the axis starts at 0, not at -0.05
    zero = [{"epoch": e, "step": 2 * e + 2, "test_AP": 0.0, "test_AP50": 0.0, "test_AP75": 0.0} for e in range(3)]
    assert _drawn(monkeypatch, zero, tmp_path)["map.png"].axes[0].get_ylim()[0] == 0


def test_lr_plot_draws_each_step_so_a_warmup_shows(tmp_path, monkeypatch):
    """lr.png drew one point per epoch (the last step's lr): a warm-up shorter than an epoch, the
    usual case, did not show at all. Now each step's lr, per configured lr, at the loss plot's steps."""
    pytest.importorskip("matplotlib")
    history = [{"epoch": 0, "step": 3, "train_lr": 3e-4,
                "train_step_lr": {"optimizer.params[0].lr": [1e-4, 2e-4, 3e-4], "optimizer.lr": [2e-4, 4e-4, 6e-4]}},
               {"epoch": 1, "step": 6, "train_lr": 3e-4,
                "train_step_lr": {"optimizer.params[0].lr": [3e-4] * 3, "optimizer.lr": [6e-4] * 3}}]
    ax = _drawn(monkeypatch, history, tmp_path)["lr.png"].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert sorted(lines) == ["optimizer.lr", "optimizer.params[0].lr"]
    assert list(lines["optimizer.lr"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(lines["optimizer.lr"].get_ydata()) == pytest.approx([2e-4, 4e-4, 6e-4, 6e-4, 6e-4, 6e-4])
    assert "step" in ax.get_xlabel()
    # a log written before the steps were recorded: one point per epoch, as before
    for e in history:
        del e["train_step_lr"]
    ax = _drawn(monkeypatch, history, tmp_path)["lr.png"].axes[0]
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[1, 2]] and ax.get_xlabel() == "epoch"


def test_stage_two_is_marked_on_the_loss_lr_and_map_plots(tmp_path, monkeypatch):
    """The terminal says when stage 2 starts (augmentation off, EMA restarted from best_stg1.pth); the
    pictures showed a loss drop and an AP jump there without a word (a walk). A dashed line marks it."""
    pytest.importorskip("matplotlib")
    history = [{"epoch": e, "step": 3 * (e + 1), "train_loss": 30.0 - e, "train_step_losses": [30.0 - e] * 3,
                "train_step_lr": {"optimizer.lr": [8e-4] * 3}, "test_AP": 0.1 * e, "test_AP50": 0.2 * e,
                "test_AP75": 0.05 * e} for e in range(3)]

    def marks(ax):
        lines = [list(line.get_xdata()) for line in ax.get_lines() if line.get_linestyle() == "--"]
        texts = [t.get_text().strip() for t in ax.texts]
        return lines, texts

    figures = _drawn(monkeypatch, history, tmp_path, stop_epoch=2)  # epochs 1-2 stage 1, epoch 3 stage 2
    for name, panel, x in (("loss.png", 0, 6.5), ("loss.png", 1, 2.5), ("lr.png", 0, 6.5), ("map.png", 0, 2.5)):
        assert marks(figures[name].axes[panel]) == ([[x, x]], ["stage 2"]), (name, panel)
    for stop in (None, 5, 0):  # no stage 2 reached, or no stage-1 epoch to set it apart from
        figures = _drawn(monkeypatch, history, tmp_path, stop_epoch=stop)
        assert all(marks(ax) == ([], []) for name in ("loss.png", "map.png") for ax in figures[name].axes), stop


def test_loss_plot_of_a_one_step_run_shows_the_step(tmp_path, monkeypatch):
    """A run of one step (dfine.train on a CVAT set, one epoch, batch 8) drew an empty per-step panel:
    a line through a single point draws nothing. Short runs mark each step."""
    pytest.importorskip("matplotlib")
    history = [{"epoch": 0, "step": 1, "train_loss": 30.5, "train_step_losses": [30.5], "test_AP": 0.1,
                "train_step_lr": {"optimizer.lr": [8e-4]}}]
    left = _drawn(monkeypatch, history, tmp_path)["loss.png"].axes[0]
    drawn = [line for line in left.get_lines() if list(line.get_ydata()) == [30.5]]
    assert any(line.get_marker() not in (None, "None", "", " ") for line in drawn)
    figures = _drawn(monkeypatch, history + [], tmp_path)
    for name in ("loss.png", "lr.png", "map.png"):  # one tick '1', not 0.96 ... 1.04
        for ax in figures[name].axes:
            assert list(ax.get_xticks()) == [1.0], (name, list(ax.get_xticks()))
    many = [{"epoch": 0, "step": 100, "train_loss": 1.0, "train_step_losses": [1.0] * 100}]
    left = _drawn(monkeypatch, many, tmp_path)["loss.png"].axes[0]
    assert all(line.get_marker() in (None, "None", "", " ") for line in left.get_lines())  # long runs: lines only


def test_lr_plot_legend_names_the_model_parts(tmp_path, monkeypatch):
    """lr.png's legend read 'optimizer.params[0].lr, optimizer.params[1].lr' (4e-4) beside
    'optimizer.lr' (8e-4): which parameters run at which lr was left to the recipe's regexes; then
    'backbone: optimizer.params[0].lr, ...', config keys where a user reads words. Words alone now."""
    pytest.importorskip("matplotlib")
    from dfine.engine.trainer import lr_labels, lr_series
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs/dfine/custom/dfine_hgnetv2_n_custom.yml", [])
    names = lr_labels(cfg.optimizer, lr_series(cfg.optimizer, 4))
    # in words: the config keys beside them read as the recipe's, not the picture's (a walk)
    assert names == {"optimizer.params[0].lr, optimizer.params[1].lr": "backbone (2 parameter groups)",
                     "optimizer.lr": "the rest"}
    history = [{"epoch": 0, "step": 2, "train_step_lr": {k: [1e-4, 2e-4] for k in names}}]
    ax = _drawn(monkeypatch, history, tmp_path, names)["lr.png"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(names.values())


def test_each_epoch_line_says_its_time_and_the_time_to_go(coco128, tmp_path, capsys):
    """A 220-epoch recipe on a CPU runs for hours: each epoch's line now says how long the epoch took
    and, at the run's mean pace, how long the epochs left will take (none after the last)."""
    import re

    trainer = Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=2), ["seed=0"]), progress=False, max_steps=1)
    trainer.fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if re.match(r"epoch \d/2: loss", line)]
    assert len(lines) == 2, lines
    first = re.search(r"AR100 \S+  (\S+), about (\S+) to go$", lines[0])
    assert first and first.group(1) == first.group(2), lines[0]  # one epoch left, at the first one's pace
    assert re.search(r"AR100 \S+  \d+s$", lines[1]), lines[1]  # the last: its time, nothing to go
    assert len(trainer._epoch_seconds) == 2 and all(s > 0 for s in trainer._epoch_seconds)


def test_a_class_without_val_boxes_is_said_before_training(coco128, tmp_path):
    """A class with training boxes and none in the val set (a public chess set: 1 'bishop' box in
    train, none in val) cannot be measured by the run's AP; the start of the run says so under
    the classes line (nothing did)."""
    train = json.loads(write_subset(coco128, tmp_path / "train.json", 12, categories=[1, 3]).read_text())
    val = json.loads(write_subset(coco128, tmp_path / "val.json", 3, categories=[1, 3]).read_text())
    cars = sum(a["category_id"] == 3 for a in train["annotations"])
    assert cars > 0
    val["annotations"] = [a for a in val["annotations"] if a["category_id"] == 1]  # no car in val
    (tmp_path / "val.json").write_text(json.dumps(val))
    recipe = write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", tmp_path / "train.json",
                          tmp_path / "val.json", epochs=1, mscoco=False, extra=FAST)
    lines = Trainer(load_config(recipe), progress=False).startup_summary()
    at = next(i for i, line in enumerate(lines) if line.startswith("classes: "))
    assert lines[at + 1] == (f"note: 1 class without a box in the val set, so not measured by its AP (the AP averages "
                             f"the others): car ({cars} in train)")
    same = write_recipe(tmp_path / "same.yml", coco128 / "train2017", tmp_path / "train.json", tmp_path / "train.json",
                        epochs=1, mscoco=False, extra=FAST)  # val = train: every class has val boxes
    lines = Trainer(load_config(same), progress=False).startup_summary()
    assert not any("without a box in the val set" in line for line in lines)
    # the other way round: a class whose only boxes are in val (a walk's label typo) cannot be learned
    swapped = write_recipe(tmp_path / "swapped.yml", coco128 / "train2017", tmp_path / "val.json",
                           tmp_path / "train.json", epochs=1, batch=2, mscoco=False, extra=FAST)
    lines = Trainer(load_config(swapped), progress=False).startup_summary()
    vals = sum(a["category_id"] == 3 for a in train["annotations"])
    assert (f"note: 1 class without a box in the train set, which the model cannot learn (its AP stays 0): car "
            f"({vals} in val)") in "\n".join(lines)
    # a class the files declare with no box in either (a walk's subset: the table at the end named one more)
    for name in ("train", "val"):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        data["categories"].append({"id": 38, "name": "kite", "supercategory": "sports"})
        (tmp_path / f"{name}_kite.json").write_text(json.dumps(data))
    kite = write_recipe(tmp_path / "kite.yml", coco128 / "train2017", tmp_path / "train_kite.json",
                        tmp_path / "val_kite.json", epochs=1, mscoco=False, extra=FAST)
    lines = Trainer(load_config(kite), progress=False).startup_summary()
    assert ("note: 1 class without a box in train or val (named only: never learned nor measured): "
            "kite") in "\n".join(lines).splitlines()


def test_a_run_stopped_in_its_first_epoch_draws_no_empty_plots(coco128, tmp_path, capsys):
    """Ctrl-C in the first epoch left loss.png, lr.png and an empty map.png (axes around 0, no
    point) beside no checkpoint (a walk helper's finding); nothing is drawn without a finished epoch,
    and a run with one draws all three."""
    pytest.importorskip("matplotlib")
    trainer = Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=1), ["seed=0"]), progress=False,
                      max_steps=2)
    original = trainer.train_step

    def step_then_signal(*args):
        out = original(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    trainer.train_step = step_then_signal
    assert trainer.fit()["stopped"] == "SIGINT"
    out = tmp_path / "out"
    assert not list(out.glob("*.png")) and not (out / "last.pth").exists()
    assert "nothing to resume" in capsys.readouterr().out
    Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=1), ["seed=0"]), progress=False, max_steps=1).fit()
    assert sorted(p.name for p in out.glob("*.png")) == ["confidence.png", "confusion_matrix.png", "loss.png", "lr.png",
                                                         "map.png", "pr_curves.png", "val_predictions.png"]


def test_a_new_run_never_names_an_earlier_runs_best_weights(coco128, tmp_path, capsys):
    """The same dfine.train() cell run twice into one folder: the earlier run's best_stg2.pth stayed
    beside the new run's files and was named its best weights (export would have taken the other
    model); nothing was said in Python. A warning now names the earlier files, and the new run's best
    weights are its own."""
    recipe = tiny_recipe(tmp_path, coco128, epochs=2)
    out = tmp_path / "out"

    def run(aps):
        trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False"]), progress=False, max_steps=1)
        scored_as(trainer, aps)
        return trainer.fit()

    first = run([0.25, 0.5])
    assert first["best_weights"] == out / "best_stg2.pth"
    assert "holds an earlier run" not in capsys.readouterr().err
    second = run([0.1, 0.05])  # its best: epoch 1, best_stg1.pth; it writes no best_stg2.pth
    printed = capsys.readouterr()
    assert printed.err.splitlines()[0] == (
        f"warning: {out} holds an earlier run's best_stg1.pth, best_stg2.pth, checkpoint0000.pth, checkpoint0001.pth, "
        f"last.pth: this run overwrites the files "
        f"it writes (and starts log.jsonl afresh) and never takes the earlier ones for its own; to continue that run "
        f"instead, resume from {out / 'last.pth'} (-r, or --auto-resume), or choose another output folder to keep both")
    assert second["best_weights"] == out / "best_stg1.pth" and f"best weights: {out / 'best_stg1.pth'}" in printed.out
    assert (out / "best_stg2.pth").is_file()  # the earlier run's, left as it was


def test_a_run_on_a_busy_cpu_says_how_much_slower_and_what_helps(coco128, tmp_path, monkeypatch):
    """A walk on a shared 2-core machine: steps of 5-20 s instead of 0.4 s (OpenMP threads spinning while
    other jobs hold the cores) and only the README said why. The run's summary now says it, before the
    first step, unless OMP_WAIT_POLICY=PASSIVE is already set or the machine is quiet."""
    cores = os.cpu_count() or 1
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0 * cores, 0.0, 0.0))
    monkeypatch.setattr("dfine.device.others_running", lambda: 2)  # the other jobs running now, whatever this machine does
    trainer = Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=1), ["seed=0", "device=cpu"]), progress=False)
    said = [line for line in trainer.startup_summary() if "other jobs share this CPU" in line]
    assert said == [f"note: load average {3.0 * cores:.1f} on {cores} cores: other jobs share this CPU, so the "
                    f"training steps run many times slower than on an idle machine; with OMP_WAIT_POLICY=PASSIVE in "
                    f"the environment (or fewer threads: --threads 1) waiting threads sleep instead of spinning, much "
                    f"faster on a busy machine (README, Deploy)"]
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert not [line for line in trainer.startup_summary() if "other jobs" in line]
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2 * cores, 0.0, 0.0))
    assert not [line for line in trainer.startup_summary() if "other jobs" in line]


def test_a_tiny_val_set_and_a_run_without_ap_are_said_plainly(coco128, tmp_path, capsys):
    """A walk: a VOC set's 6 val images chose the best weights without a word; and 'best AP 0.0 at
    epoch 1' beside 'best weights: last.pth' read as a contradiction."""
    recipe = tiny_recipe(tmp_path, coco128, epochs=1)  # 1 val image
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False"]), progress=False, max_steps=1)
    lines = trainer.startup_summary()
    at = next(i for i, line in enumerate(lines) if line.startswith("val data:"))
    assert lines[at + 1] == ("note: the val set has only 1 image: its AP moves a lot from epoch to epoch, and the best "
                             "weights are chosen on it; 20 or more measure better")
    scored_as(trainer, [0.0])
    trainer.fit()
    out = capsys.readouterr().out
    assert "no evaluation scored above AP 0 (epochs 1..1): the best weights are the most trained ones" in out
    assert "best AP 0.0% at" not in out and f"best weights: {tmp_path / 'out' / 'last.pth'}" in out


def test_loss_lr_and_map_are_drawn_after_each_long_enough_epoch(tiny, monkeypatch):
    """The pictures were drawn at the run's end only: a run watched while training, or killed, showed
    none or an earlier stop's (a walk). They are drawn after every epoch that took at least 20 times
    as long as drawing them."""
    recipe, tmp_path = tiny
    drawn = []
    real = trainer_module.plot_history

    def spy(history, out, *args):
        drawn.append([e["epoch"] for e in history])
        return real(history, out, *args)

    monkeypatch.setattr(trainer_module, "plot_history", spy)
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False"]), progress=False, max_steps=1)
    trainer._plot_seconds = 0.0  # drawing counted as free: after the first epoch whatever its time
    trainer.fit()
    assert drawn[0] == [0] and drawn[-1] == [0, 1]  # after epoch 1 (mid-run), and at the end
    assert (tmp_path / "out" / "map.png").stat().st_size > 10_000
    # the rule itself, without the clock of a loaded machine: an epoch of 30 s draws, one of 0.1 s does not
    drawn.clear()
    trainer._plot_seconds, trainer._epoch_seconds = 0.5, [30.0]
    trainer._draw_history_now()
    assert drawn == [[0, 1]] and trainer._plot_seconds > 0
    trainer._plot_seconds, trainer._epoch_seconds = 0.5, [0.1]
    trainer._draw_history_now()
    assert drawn == [[0, 1]]


def test_a_resumed_runs_end_says_the_time_of_all_its_sessions(tiny, coco128, capsys):
    """'done in 1m28s' after a run resumed three times counted the last session only (a walk: ~6 min
    of training over 4 sessions). The checkpoint carries the seconds so far; the end says both."""
    from dfine.checkpoint import read_checkpoint
    recipe, tmp_path = tiny
    Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=1"]), progress=False, max_steps=1).fit()
    first = read_checkpoint(tmp_path / "out" / "last.pth")["progress"]["seconds"]
    assert first > 0
    assert "this session" not in capsys.readouterr().out  # a run of one session says its time alone
    resumed = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=2",
                                           f"resume={tmp_path / 'out' / 'last.pth'}"]), progress=False, max_steps=1)
    last = tmp_path / "out" / "last.pth"
    assert f"weights: {last} (-r: the run continues)" in resumed.startup_summary()
    assert not any("the train set has" in line for line in resumed.startup_summary())
    # resumed on a train set that changed since (a walk added images): said
    fewer = write_subset(coco128, tmp_path / "fewer.json", 6)
    grown = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=2", f"resume={last}",
                                         f"train_dataloader.dataset.ann_file={fewer}"]), progress=False, max_steps=1)
    assert ("note: the train set has 6 images; last.pth was trained on 8 (epochs 1..1): the coming epochs train on "
            "these") in grown.startup_summary()
    tuned = Trainer(load_config(recipe, ["seed=0", "use_amp=False", f"tuning={last}",
                                         f"output_dir={tmp_path / 'tuned'}"]), progress=False, max_steps=1)
    assert f"weights: {last} (-t: fine-tuned from its weights, from epoch 1)" in tuned.startup_summary()
    result = resumed.fit()
    done = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("done in "))
    assert "(this session; " in done and done.endswith(" with the sessions before its resume)")
    total = read_checkpoint(tmp_path / "out" / "last.pth")["progress"]["seconds"]
    assert first < total <= first + result["seconds"] + 1


def test_more_epochs_for_a_run_past_its_stop_epoch_stay_in_stage_two(coco128, tmp_path, capsys):
    """A walk asked a finished run for more epochs (-r last.pth --epochs 11, which moves the stop epoch):
    the new epochs trained with the strong augmentations again (AP 17.6 -> 11.3%) and the new stop epoch
    restarted the EMA from best_stg1.pth, the weights of before stage 2. The run stays in stage 2 now."""
    from dfine.checkpoint import read_checkpoint
    recipe = tiny_recipe(tmp_path, coco128, epochs=2, stop_epoch=1)
    first = Trainer(load_config(recipe, ["seed=0"]), progress=False, max_steps=1)
    scored_as(first, [0.1, 0.3])
    first.fit()
    out = tmp_path / "out"
    assert read_checkpoint(out / "best_stg1.pth")["last_epoch"] == 0
    capsys.readouterr()
    more = Trainer(load_config(recipe, ["seed=0", "epochs=4", "train_dataloader.collate_fn.stop_epoch=3",
                                        f"resume={out / 'last.pth'}"]), progress=False, max_steps=1)
    assert more.stop_epoch == 1
    assert ("note: last.pth had reached stage 2 (epoch 2 on): epochs 3..4 stay in it: no strong augmentations, "
            "and an epoch that does not improve stage 2's best AP goes back to best_stg1.pth, as stage 2 does (4 "
            "epochs put stage 2 at epoch 4: epoch 3 would have trained with the augmentations again, then restarted "
            "from best_stg1.pth); for more training with the augmentations, fine-tune from its best weights with -t"
            ) in more.startup_summary()
    scored_as(more, [0.35, 0.4])
    result = more.fit()
    text = capsys.readouterr().out
    assert "EMA restarted" not in text
    assert read_checkpoint(out / "best_stg1.pth")["last_epoch"] == 0  # stage 1's best, untouched
    assert read_checkpoint(out / "best_stg2.pth")["last_epoch"] == 3 and result["best_weights"] == out / "best_stg2.pth"
    # a run still in stage 1 moves its stop epoch with its epochs, as before
    (tmp_path / "early").mkdir()
    early = tiny_recipe(tmp_path / "early", coco128, epochs=1, stop_epoch=1)
    Trainer(load_config(early, ["seed=0"]), progress=False, max_steps=1).fit()
    longer = Trainer(load_config(early, ["seed=0", "epochs=3", "train_dataloader.collate_fn.stop_epoch=2",
                                         f"resume={tmp_path / 'early' / 'out' / 'last.pth'}"]), progress=False)
    assert longer.stop_epoch == 2 and longer.stage_note == ""


def test_the_best_weights_named_are_the_file_saved_with_the_best_ap(coco128, tmp_path):
    """A walk's extended run saved its best AP (5.7%, stage 1 again) in best_stg1.pth while an older
    best_stg2.pth (0.7%) was there: 'best weights so far' named best_stg2.pth."""
    trainer = Trainer(load_config(tiny_recipe(tmp_path, coco128, epochs=1), ["seed=0"]), progress=False)
    for name in ("best_stg1.pth", "best_stg2.pth"):
        trainer.save(name)
    trainer.best_ap = 0.057
    assert trainer._best_weights() == tmp_path / "out" / "best_stg2.pth"  # none recorded: the published order
    trainer.best_file = "best_stg1.pth"
    assert trainer._best_weights() == tmp_path / "out" / "best_stg1.pth"
    trainer.save("last.pth")
    from dfine.checkpoint import read_checkpoint
    assert read_checkpoint(tmp_path / "out" / "last.pth")["progress"]["best_file"] == "best_stg1.pth"


def test_a_stage_two_restart_is_logged_and_marked_in_the_plots(coco128, tmp_path, monkeypatch):
    """A walk trained a finished run longer: epoch 6 did not improve, epoch 7 went back to best_stg1.pth
    (the published stage-2 rule) and the AP fell, which map.png drew without a word. The epoch that began
    by going back says so in log.jsonl, and the plots mark it."""
    recipe = tiny_recipe(tmp_path, coco128, epochs=4, stop_epoch=1)
    trainer = Trainer(load_config(recipe, ["seed=0"]), progress=False, max_steps=1)
    scored_as(trainer, [0.3, 0.4, 0.2, 0.1])  # epoch 3 does not improve: epoch 4 goes back to best_stg1.pth
    trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [e.get("ema_restart", False) for e in log] == [False, False, False, True]
    figures = _drawn(monkeypatch, log, tmp_path, stop_epoch=1)
    for name, panel, x in (("loss.png", 0, log[2]["step"] + 0.5), ("loss.png", 1, 3.5), ("map.png", 0, 3.5)):
        ax = figures[name].axes[panel]
        dotted = [list(line.get_xdata()) for line in ax.get_lines() if line.get_color() == "tab:orange"]
        assert dotted == [[x, x]] and any(t.get_text().strip() == "back to best_stg1" for t in ax.texts), name


def test_a_restart_due_after_the_last_epoch_is_made_when_the_run_is_trained_longer(coco128, tmp_path, capsys):
    """A walk's run ended on a stage-2 epoch that did not improve; trained longer, the note said 'an epoch that
    does not improve stage 2's best AP goes back to best_stg1.pth', and epoch 4 went straight on from last.pth:
    the restart due was made after last.pth was written, and not at all after a last epoch. last.pth keeps it
    due now, and the next epoch, in this run or a resumed or longer one, starts with it."""
    from dfine.checkpoint import read_checkpoint
    recipe = tiny_recipe(tmp_path, coco128, epochs=3, stop_epoch=1)
    first = Trainer(load_config(recipe, ["seed=0"]), progress=False, max_steps=1)
    scored_as(first, [0.3, 0.4, 0.2])  # the last epoch does not improve: nothing to restart for in this run
    first.fit()
    out = tmp_path / "out"
    assert "EMA restarted from best_stg1.pth" not in capsys.readouterr().out.split("epoch 3/3")[-1]
    assert read_checkpoint(out / "last.pth")["progress"]["restart_pending"] is True
    longer = Trainer(load_config(recipe, ["seed=0", "epochs=4", "train_dataloader.collate_fn.stop_epoch=3",
                                          f"resume={out / 'last.pth'}"]), progress=False, max_steps=1)
    assert ("epoch 4 stays in it: no strong augmentations, and an epoch that does not improve stage 2's best AP goes "
            "back to best_stg1.pth, as stage 2 does (4 epochs put stage 2 at epoch 4, which would have restarted from "
            "best_stg1.pth); for more") in "\n".join(longer.startup_summary())  # it said 'epochs 4..3 would have'
    scored_as(longer, [0.1, 0.4])  # epoch 4; then best_stg2.pth (epoch 2) again, for its pictures
    longer.fit()
    text = capsys.readouterr().out
    assert ("epoch 4: EMA restarted from best_stg1.pth with decay 0.9998 (epoch 3 did not improve on stage 2's best "
            "AP: the published stage-2 rule goes back to best_stg1.pth with a lower decay; the best weights stay where "
            "they are)") in text, text
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e.get("ema_restart", False) for e in log] == [False, False, False, True]
    # the first epoch after a restart is the stage's best (published): none due after it
    assert read_checkpoint(out / "last.pth")["progress"]["restart_pending"] is False


def test_a_fine_tune_of_a_model_of_more_classes_that_was_not_beaten_says_to_keep_these_classes(coco128, tmp_path,
                                                                                               capsys):
    """A walk's fine-tune of the COCO model into 5 of its classes did not beat its start, and was told to deploy
    the 80-class COCO file (`dfine export -r dfine_n_coco`), which no evaluation on its data takes: the start
    scored with its heads of these classes carried, so it is deployed keeping these classes (predict --classes)."""
    from tests.conftest import load_golden
    start = tmp_path / "coco.pth"
    torch.save(load_golden("n")["checkpoint"], start)  # 80 classes, COCO's names
    train = write_subset(coco128, tmp_path / "train.json", 2, categories=[1, 3, 62])
    val = write_subset(coco128, tmp_path / "val.json", 1, offset=2, categories=[1, 3, 62])
    recipe = write_recipe(tmp_path / "recipe.yml", coco128 / "train2017", train, val, extra=FAST, batch=1,
                          mscoco=False)
    with pytest.warns(UserWarning, match="class heads start fresh"):
        trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=1", f"tuning={start}"]),
                          progress=False, max_steps=1)
    assert trainer._tuning_classes() == ["person", "car", "chair"]
    trainer._tuned_whole = True  # as a --data run carrying its heads by name: scored first
    scored_as(trainer, [0.3, 0.2])
    trainer.fit()
    assert (f"this run did not beat the weights it started from: {start}, its heads of these classes carried (AP "
            f"30.0% on this val set before training), remains better; it scores classes of its own besides these, so "
            f"deploy it keeping these: dfine predict -m {start} IMAGES --classes person car chair (its names and "
            f"category ids)") in capsys.readouterr().out


def test_the_trainer_scores_with_the_recipes_max_dets(tiny):
    """evaluator.max_dets reaches the training's evaluation (the published recipes' 100 on Objects365)."""
    recipe, _ = tiny
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "evaluator.max_dets=7"]), progress=False)
    metrics = trainer.evaluate()
    assert metrics.max_dets == 7 and metrics.max_dets_fixed and "AR7 " in metrics.summary() + " "


def test_map_plot_shows_the_tuning_ap_even_at_zero(tmp_path, monkeypatch):
    """A walk's -t weights scored AP 0: their dotted line lay under the x axis, named in the legend but
    nowhere to be seen. The legend gives the AP, and the line is drawn over the axis."""
    history = [{"epoch": 0, "test_AP": 0.01, "test_AP50": 0.02, "test_AP75": 0.0, "tuning_AP": 0.0},
               {"epoch": 1, "test_AP": 0.05, "test_AP50": 0.1, "test_AP75": 0.01}]
    ax = _drawn(monkeypatch, history, tmp_path)["map.png"].axes[0]
    line, = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert line.get_label() == "the -t weights before training: AP 0.0%" and list(line.get_ydata()) == [0, 0]
    assert line.get_zorder() > ax.spines["bottom"].get_zorder() and not line.get_clip_on()
    assert "the -t weights before training: AP 0.0%" in [t.get_text() for t in ax.get_legend().get_texts()]
    # above every epoch's AP: the axis reaches it (a walk's line at 1.1% was drawn over the title, axis to 0.75)
    history[0]["tuning_AP"] = 0.2  # every epoch's AP, AP50 and AP75 below 20%
    ax = _drawn(monkeypatch, history, tmp_path)["map.png"].axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 20


def test_a_fine_tune_scores_its_starting_weights_and_says_when_it_did_not_beat_them(tiny, capsys):
    """A walk fine-tuned its model on more data with -t and ended at AP 13.6% against 16.9% for the
    weights it started from on the same val set, and nothing said so. A -t checkpoint loaded whole is
    evaluated first (its AP is the mark to beat), without changing the training that follows."""
    from dfine.checkpoint import read_checkpoint
    recipe, tmp_path = tiny
    Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=1"]), progress=False, max_steps=1).fit()
    start = tmp_path / "out" / "last.pth"
    capsys.readouterr()

    def tuned(name: str) -> Trainer:
        return Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=1", f"tuning={start}",
                                            f"output_dir={tmp_path / name}"]), progress=False, max_steps=1)

    trainer = tuned("tuned")
    scored_as(trainer, [0.3, 0.2])
    result = trainer.fit()
    text = capsys.readouterr().out
    assert f"evaluating the -t weights before training (the AP this run has to beat): {start}" in text
    assert "the -t weights before training: AP 30.0%  AP50 " in text
    assert "best AP 20.0% at epoch 1, last AP 20.0% (epoch 1); the -t weights: AP 30.0% before training" in text
    assert (f"this run did not beat the weights it started from: {start} (AP 30.0% on this val set) remain the "
            f"better weights; deploy them instead of the above (dfine export -r {start} --format onnx)") in text
    assert text.index("did not beat") > text.index("best weights: ")  # after the commands it corrects (a walk)
    assert result["tuning_AP"] == pytest.approx(0.3)
    log = [json.loads(line) for line in (tmp_path / "tuned" / "log.jsonl").read_text().splitlines()]
    assert log[0]["tuning_AP"] == pytest.approx(0.3)
    assert read_checkpoint(tmp_path / "tuned" / "last.pth")["progress"]["tuning_ap"] == pytest.approx(0.3)

    unscored = tuned("unscored")  # the same fine-tune without the evaluation first: the same training
    unscored._tuned_whole = False
    unscored.fit()
    assert "evaluating the -t weights" not in capsys.readouterr().out
    assert unscored.step_losses == pytest.approx(trainer.step_losses, rel=1e-6)

    better = tuned("better")
    scored_as(better, [0.1, 0.2])
    better.fit()
    text = capsys.readouterr().out
    assert "; the -t weights: AP 10.0% before training" in text and "did not beat" not in text

    # val labels that are dfine predict's pre-labels, uncorrected (a re-walk: -t the model that made them scored
    # AP 100% and was to be deployed instead): that AP says nothing of which weights are better; corrected since
    # (the scores gone), pre-labels of the -t weights themselves (a walk's -t model read AP 96.1 on them, 49.9 on
    # the truth, and was to be deployed instead): no fair mark either
    val = tmp_path / "val.json"
    data = json.loads(val.read_text())
    boxes = data["annotations"]
    cases = [("own", "dfine predict -m m.onnx", [{**a, "score": 0.9} for a in boxes],
              f"this run did not beat the -t weights {start} (AP 100.0%) on val labels that are the uncorrected "
              f"pre-labels of dfine predict -m m.onnx: that AP measures agreement with the model that made them, not "
              f"which weights are better; correct the labels, then compare"),
             ("corrected", f"dfine predict -m {start} --conf 0.5", boxes,
              f"this run did not beat the -t weights {start} (AP 100.0%) on val labels that began as their own "
              f"pre-labels (dfine predict -m {start} --conf 0.5), corrected since: every box left as they made it "
              f"favours them, so that AP is not a fair mark; compare on labels no model made")]
    for name, made, annotations, said in cases:
        val.write_text(json.dumps({**data, "annotations": annotations,
                                   "info": {"description": f"pre-labels of {made}", "images_folder": "."}}))
        run = tuned(name)
        scored_as(run, [1.0, 0.2])
        run.fit()
        text = capsys.readouterr().out
        assert said in text and "deploy them instead" not in text, name


def test_images_with_more_boxes_than_queries_are_said_with_the_override(tiny):
    """A dense walk (up to 376 cells an image) trained D-FINE's 300 queries on them without a word:
    each query is matched to one box, the rest are never learned nor found."""
    import collections
    recipe, tmp_path = tiny
    trainer = Trainer(load_config(recipe, ["DFINETransformer.num_queries=10", "DFINEPostProcessor.num_top_queries=10"]),
                      progress=False)
    expected = []
    for split in ("train", "val"):
        ds = getattr(trainer, f"{split}_set")
        data = json.loads(Path(ds.ann_file).read_text())
        per = collections.Counter(a["image_id"] for a in data["annotations"] if not a.get("iscrowd"))
        over = sum(1 for n in per.values() if n > 10)
        expected += [f"{over} {split} image{'s' if over > 1 else ''}"] if over else []
    assert expected  # coco128's busy images
    most = max(trainer.train_set.boxes_per_image().max(), trainer.val_set.boxes_per_image().max())
    note = next(line for line in trainer.startup_summary() if "queries" in line)
    assert note.startswith(f"note: {' and '.join(expected)} hold") and f"than the model's 10 queries (up to {most} in " in note
    assert note.endswith(f"-u DFINETransformer.num_queries={-(-(most + 1) // 100) * 100} DFINEPostProcessor."
                         f"num_top_queries={-(-(most + 1) // 100) * 100} raises them (more memory and time a step)")
    plain = Trainer(load_config(recipe), progress=False)
    assert not any("queries" in line for line in plain.startup_summary())


def test_the_best_weights_line_is_absolute_as_the_commands_under_it(tiny, monkeypatch, capsys):
    """With -o output/long the end said 'best weights: output/long/best_stg2.pth' above commands with
    absolute paths (a walk)."""
    recipe, tmp_path = tiny
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=1", "output_dir=rel/out"]),
                      progress=False, max_steps=1)
    scored_as(trainer, [0.2])
    trainer.fit()
    assert f"best weights: {tmp_path / 'rel' / 'out' / 'best_stg1.pth'}\n" in capsys.readouterr().out


def test_the_step_plots_name_dotted_epoch_ends_only_where_they_are_drawn(tmp_path, monkeypatch):
    """A walk's 2-epoch run: its one epoch end was under the stage-2 line, and the x label still said
    'dotted: epoch ends'. An epoch end at the stage line is that line alone; the label names dotted
    lines only when there are some."""
    def epoch(i, step):
        return {"epoch": i, "step": step, "train_loss": 1.0 - i / 10, "train_step_losses": [1.0] * 5,
                "train_step_lr": [1e-4] * 5}

    for history, ends in (([epoch(0, 5), epoch(1, 10)], []), ([epoch(0, 5), epoch(1, 10), epoch(2, 15)], [10.5])):
        figures = _drawn(monkeypatch, history, tmp_path, stop_epoch=1)
        for name in ("loss.png", "lr.png"):
            ax = figures[name].axes[0]
            grey = [list(line.get_xdata())[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
            assert grey == ends, name
            assert ax.get_xlabel() == ("step (dotted: epoch ends)" if ends else "step"), name


def test_epoch_bar_shows_the_epochs_mean_loss(tiny, capsys):
    """A walk's log ended an epoch's bar with ``loss=0.0002`` (its last batch: background tiles) beside
    the epoch's mean of 7.4 and read it as a model that had learned everything: the bar shows the mean."""
    recipe, _ = tiny
    trainer = Trainer(load_config(recipe, ["seed=0", "use_amp=False", "epochs=1"]), progress=True)
    losses = iter([9.0, 0.0])  # two steps: 8 images, batch 4
    trainer.train_step = lambda *a, **k: {"loss_a": torch.tensor(next(losses))}
    stats = trainer.train_one_epoch(0)
    assert stats["loss"] == pytest.approx(4.5)
    bar = capsys.readouterr().err.strip().splitlines()[-1]
    assert "mean_loss=4.5000" in bar and "2/2" in bar, bar
