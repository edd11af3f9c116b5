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
    from tests.data.datasets import image, yolo_labels
    src = tmp_path / "fruit"
    for split in ("train", "val"):
        image(src / f"images/{split}/0.jpg", (64, 48))
        yolo_labels(src / f"labels/{split}/0.txt", ["0 0.5 0.5 0.5 0.5"])
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [apple]\n")
    with output_lock(tmp_path / "run"):
        monkeypatch.setenv("RANK", "1")
        assert data_run(src, "dfine_n", output_dir=tmp_path / "run").fmt == "yolo"
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(DfineError, match="is training into"):
            data_run(src, "dfine_n", output_dir=tmp_path / "run")
