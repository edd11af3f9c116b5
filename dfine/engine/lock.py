"""One training run at a time in an output folder.

Two runs writing one folder (a run started again while the first still trains, in another terminal
or a notebook) interleave their ``last.pth``, ``best_stg*.pth`` and ``log.jsonl``, and neither says a
word. :func:`output_lock` holds an advisory lock on ``OUTPUT_DIR/.dfine.lock`` while a run trains; a
second run stops at once, naming the first. The operating system releases the lock when the holder
ends, however it ends (a crash or ``kill -9`` leaves no stale lock). Where ``fcntl`` is missing
(Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

from dfine.errors import DfineError

__all__ = ["LOCK_NAME", "output_lock", "check_unlocked"]

LOCK_NAME = ".dfine.lock"


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if missing); ``DfineError`` naming the holder when another
    process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise DfineError(f"another run ({holder}) is training into {folder}: wait for it to end, or give this run "
                             f"another output folder (--output-dir)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_unlocked(folder: Path) -> None:
    """``DfineError`` as :func:`output_lock` gives it when a run is training into ``folder``, before
    anything is written there (``dfine train --data`` converts the dataset into it first)."""
    if (folder / LOCK_NAME).is_file():
        with output_lock(folder):
            pass
