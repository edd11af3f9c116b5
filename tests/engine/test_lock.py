"""One training run at a time in an output folder (``dfine.engine.lock``)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from dfine.engine.lock import output_lock
from dfine.errors import DfineError

HOLD = ("import sys, time; from pathlib import Path; from dfine.engine.lock import output_lock\n"
        "with output_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)\n")


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: nothing is locked on Windows")
def test_the_lock_names_its_holder_and_a_killed_holder_leaves_none(tmp_path):
    """A run killed with kill -9 (or a crash) cannot release anything itself: the system does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DfineError, match=rf"another run \(pid {holder.pid} on .+\) is training into "):
            with output_lock(tmp_path / "run"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with output_lock(tmp_path / "run"):  # free again
        pass


def test_a_torchrun_process_other_than_the_first_does_not_look_at_the_lock(tmp_path, monkeypatch):
    """The first process of a torchrun job takes the lock when it starts training; the others, which
    may still be converting the dataset then, must not stop on it."""
    from dfine.recipes import data_run
    src = _fruit(tmp_path / "fruit")
    with output_lock(tmp_path / "run"):
        monkeypatch.setenv("RANK", "1")
        assert data_run(src, "dfine_n", output_dir=tmp_path / "run").fmt == "yolo"
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(DfineError, match="is training into"):
            data_run(src, "dfine_n", output_dir=tmp_path / "run")


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: nothing is locked on Windows")
def test_the_lock_file_goes_when_the_run_ends(tmp_path):
    """A walk found .dfine.lock ('pid 10783 on vm') in a finished run's folder and read it as a stale lock."""
    with output_lock(tmp_path / "run"):
        assert (tmp_path / "run" / ".dfine.lock").read_text().startswith("pid ")
    assert not (tmp_path / "run" / ".dfine.lock").exists()
    with pytest.raises(RuntimeError):  # a run that fails removes it too
        with output_lock(tmp_path / "run"):
            raise RuntimeError("crash")
    assert not (tmp_path / "run" / ".dfine.lock").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: nothing is locked on Windows")
def test_a_run_folder_the_lock_made_goes_when_nothing_was_written(tmp_path):
    """A walk's runs stopped during their setup left empty numbered folders (fm_dfine_n_6) behind."""
    with pytest.raises(KeyboardInterrupt):
        with output_lock(tmp_path / "run"):
            raise KeyboardInterrupt
    assert not (tmp_path / "run").exists()
    with output_lock(tmp_path / "run"):  # a run that wrote something keeps its folder
        (tmp_path / "run" / "last.pth").write_bytes(b"x")
    assert (tmp_path / "run" / "last.pth").is_file()
    (tmp_path / "mine").mkdir()  # a folder that was there stays, empty or not
    with output_lock(tmp_path / "mine"):
        pass
    assert (tmp_path / "mine").is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: nothing is locked on Windows")
def test_a_lock_file_removed_by_its_holder_is_not_taken(tmp_path, monkeypatch):
    """A second run that opened the file just before the first removed it must not hold a lock on
    the removed file while a third locks the new one: it locks the file at the path."""
    import fcntl
    import os as os_

    folder = tmp_path / "run"
    folder.mkdir()
    real_open = open
    opened = []

    def open_then_replaced(path, *args, **kwargs):  # the holder removes the file right after we open it
        f = real_open(path, *args, **kwargs)
        if not opened:
            opened.append(path)
            os_.unlink(path)
        return f

    monkeypatch.setattr("builtins.open", open_then_replaced)
    with output_lock(folder):
        monkeypatch.setattr("builtins.open", real_open)
        with real_open(folder / ".dfine.lock") as other:  # the file at the path is the one held
            with pytest.raises(OSError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: nothing is locked on Windows")
def test_a_new_run_beside_one_still_training_says_so(tmp_path, monkeypatch):
    """A second ``dfine train --data`` while the first still trained said the first's folder 'holds an
    earlier run' (a walk); it says the run is training now, and by whom."""
    import os
    import socket

    from dfine.recipes import data_run
    monkeypatch.chdir(tmp_path)
    src = _fruit(tmp_path / "fruit")
    first = (tmp_path / "output" / "fruit_dfine_n").resolve()
    first.mkdir(parents=True)
    (first / "last.pth").write_bytes(b"x")
    with output_lock(first):
        run = data_run(src, "dfine_n", run_folder="new")
    assert run.output_dir == first.with_name("fruit_dfine_n_2")
    assert (f"{first} holds a run still training (pid {os.getpid()} on {socket.gethostname()}; so far last.pth), "
            f"kept: this run trains into {run.output_dir}") in run.notes[0]
    again = data_run(src, "dfine_n", run_folder="new")  # that run over: an earlier run
    assert again.notes[0].startswith(f"{first} holds an earlier run (last.pth), kept")


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: nothing is locked on Windows")
def test_a_new_run_beside_one_in_its_first_epoch_takes_the_next_folder(tmp_path, monkeypatch):
    """The same command started again while the first run was in its first epoch (no checkpoint
    yet: a sweep started a minute apart) picked the first's folder and stopped on its lock."""
    from dfine.recipes import data_run
    monkeypatch.chdir(tmp_path)
    src = _fruit(tmp_path / "fruit")
    first = (tmp_path / "output" / "fruit_dfine_n").resolve()
    with output_lock(first):
        run = data_run(src, "dfine_n", run_folder="new")
    assert run.output_dir == first.with_name("fruit_dfine_n_2")
    assert run.notes[0].startswith(f"{first} holds a run still training (pid ")
    assert f"; so far no checkpoint), kept: this run trains into {run.output_dir}" in run.notes[0]
    assert data_run(src, "dfine_n", run_folder="new").output_dir == first  # that run over, nothing left: free


def test_a_new_run_beside_a_stopped_one_says_auto_resume_continues_it(tmp_path, monkeypatch):
    """A walk pressed Ctrl-C in epoch 2 of 6, then typed the same command again: it started over in
    output/battery_dfine_n_3 saying only that the finished first run was kept; the stopped run in _2,
    the one --auto-resume continues, is named with how far it got."""
    import torch

    from dfine.recipes import data_run
    monkeypatch.chdir(tmp_path)
    src = _fruit(tmp_path / "fruit")
    first = (tmp_path / "output" / "fruit_dfine_n").resolve()
    second = first.with_name("fruit_dfine_n_2")
    for folder, last_epoch in ((first, 5), (second, 0)):
        folder.mkdir(parents=True)
        torch.save({"last_epoch": last_epoch, "config": {"epochs": 6}, "model": {"w": torch.zeros(2)}},
                   folder / "last.pth")
    run = data_run(src, "dfine_n", run_folder="new")
    assert run.output_dir == first.with_name("fruit_dfine_n_3")
    assert run.notes[0] == (f"{first} holds an earlier run (last.pth), kept: this run trains into {run.output_dir} "
                            f"(-o DIR to choose the folder); fruit_dfine_n_2 stopped after epoch 1 of 6: --auto-resume "
                            f"continues it instead")
    torch.save({"last_epoch": 5, "config": {"epochs": 6}}, second / "last.pth")  # finished: nothing to continue
    assert "stopped" not in data_run(src, "dfine_n", run_folder="new").notes[0]


def _fruit(src):
    """A one-class YOLO folder at ``src``: one image in train and in val."""
    from tests.data.datasets import image, yolo_labels
    for split in ("train", "val"):
        image(src / f"images/{split}/0.jpg", (64, 48))
        yolo_labels(src / f"labels/{split}/0.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [apple]\n")
    return src
