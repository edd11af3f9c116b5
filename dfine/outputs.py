"""Output folders of the commands that write files (``train``, ``eval``, ``predict``, ``track``):
made and checked writable before any work starts, so a bad path fails in one line before a model
is loaded, and removed again when the work stops on an error before anything was written in them."""

from __future__ import annotations

import contextlib
import errno
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence

from dfine.errors import DfineError

__all__ = ["prepare_output_dir", "removed_if_left_empty"]


def prepare_output_dir(path: Path, option: str = "-o") -> List[Path]:
    """Create ``path`` and make sure a file can be written in it; a one-line :class:`DfineError`
    naming it and ``option`` (the command's output option) otherwise: a path through a file,
    ``/proc/x``, a read-only disk. Returns the folders it created, deepest first."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        if isinstance(e, (FileExistsError, NotADirectoryError)) or (path.exists() and not path.is_dir()):
            reason = "a file is in the way" if e.errno in (errno.EEXIST, errno.ENOTDIR) else reason
        raise DfineError(f"output folder {path} cannot be created or written ({reason}); "
                         f"choose another with {option}") from None
    return created


@contextlib.contextmanager
def removed_if_left_empty(folders: Sequence[Path]) -> Iterator[None]:
    """Remove ``folders`` (deepest first) when the block fails and they are still empty: a command
    stopped by an error before it wrote anything leaves no empty output folder behind."""
    try:
        yield
    except BaseException:
        for folder in folders:
            try:
                folder.rmdir()
            except OSError:  # not empty (a conversion, a partial video, a file of the user's) or gone
                break
        raise
