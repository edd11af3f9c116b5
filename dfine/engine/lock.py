"""One training run at a time in an output folder, and what an earlier run left in one.

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
import re
import socket
from pathlib import Path
from typing import Iterator, List, Optional

from dfine.errors import DfineError

__all__ = ["LOCK_NAME", "RunLocked", "output_lock", "check_unlocked", "training_now", "earlier_run_files", "numbered_folder"]

LOCK_NAME = ".dfine.lock"


class RunLocked(DfineError):
    """Another process is training into ``folder``; ``holder`` says which (``"pid 123 on host"``)."""

    def __init__(self, holder: str, folder: Path):
        super().__init__(f"another run ({holder}) is training into {folder}: wait for it to end, or give this run "
                         f"another output folder (--output-dir)")
        self.holder = holder


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if missing); ``DfineError`` naming the holder when another
    process holds it. The lock file is removed when the holder is done with it (a file left behind
    read as a stale lock); a process that opened it before that locks the file it then finds at the
    path, never the removed one. A folder it created that is empty when it is done is removed."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        f = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunLocked(holder, folder) from None
        if _same_file(f, path):
            break
        f.close()  # locked a file its holder removed meanwhile: lock the one at the path now
    with f:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still held: no one can lock it between the two
            fcntl.flock(f, fcntl.LOCK_UN)
            if created:  # a run stopped before it wrote anything left an empty numbered folder (a walk)
                try:
                    folder.rmdir()  # only when empty
                except OSError:
                    pass


def _same_file(f, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def check_unlocked(folder: Path) -> None:
    """``DfineError`` as :func:`output_lock` gives it when a run is training into ``folder``, before
    anything is written there (``dfine train --data`` converts the dataset into it first)."""
    if (folder / LOCK_NAME).is_file():
        with output_lock(folder):
            pass


def training_now(folder: Path) -> Optional[str]:
    """Who is training into ``folder`` now (``"pid 123 on host"``, as the lock says), or None when no
    run is (no lock file, its holder gone, or no ``fcntl``)."""
    try:
        check_unlocked(folder)
    except RunLocked as e:
        return e.holder
    return None


def earlier_run_files(folder: Path) -> List[str]:
    """The checkpoints a training run left in ``folder`` (``last.pth``, ``best_stg*.pth``,
    ``checkpointNNNN.pth``), sorted by name; ``[]`` when none (or no such folder)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob("*.pth") if p.name in ("last.pth", "best_stg1.pth", "best_stg2.pth")
                  or re.fullmatch(r"checkpoint\d+\.pth", p.name))


def numbered_run(folder: Path, n: int) -> Path:
    """The ``n``-th run folder of the default ``folder``: ``folder`` itself for 1, else ``folder_N``."""
    return folder if n == 1 else folder.with_name(f"{folder.name}_{n}")


def numbered_folder(folder: Path, latest: bool = False) -> Optional[Path]:
    """A new run's folder for the default ``folder``: ``folder`` itself while no run left checkpoints
    there and none is training into it, else the first of ``folder_2``, ``folder_3``, ... that is as
    free (``None`` when ``folder`` is: a second command started while the first was still in its first
    epoch, before any checkpoint, picked the first's folder and stopped on its lock). ``latest``: the
    last of ``folder``, ``folder_2``, ... that holds a run's checkpoints instead (``None`` when none
    does), the run ``--auto-resume`` continues."""
    def numbered(n: int) -> Path:
        return numbered_run(folder, n)

    def taken(path: Path) -> bool:
        return bool(earlier_run_files(path)) or (not latest and training_now(path) is not None)

    n = 1
    while taken(numbered(n)):
        n += 1
    if latest:
        return numbered(n - 1) if n > 1 else None
    return numbered(n) if n > 1 else None
