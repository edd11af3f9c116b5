"""Output folders of the commands that write files (``train``, ``eval``, ``predict``, ``track``):
made and checked writable before any work starts, so a bad path fails in one line before a model
is loaded, and removed again when the work stops on an error before anything was written in them.
``predict`` and ``track`` number their default folders (``runs/predict2``, ...) instead of mixing
two runs in one, and never write over one of their own inputs."""

from __future__ import annotations

import contextlib
import errno
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

from dfine.errors import DfineError

__all__ = ["prepare_output_dir", "removed_if_left_empty", "numbered_run_dir", "check_outputs", "refuse_file_in_path"]


def refuse_file_in_path(folder: Path, option: str = "-o") -> None:
    """A one-line error when the output folder ``folder``, or the first of its parents that exists, is a
    file (``-o notes.txt``: a traceback from deep in the writing, after the work); creates nothing."""
    folder = Path(folder).expanduser()
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise DfineError(f"output folder {folder} cannot be created ({path} is a file); choose another "
                                 f"with {option}")
            return


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


def numbered_run_dir(base: Path) -> Path:
    """``base`` when it is not there or empty, else the first of ``base2``, ``base3``, ... that is not
    (``runs/predict2``, as Ultralytics numbers its runs): a second run into the default folder replaced
    the first one's ``predictions.json`` and left its pictures beside the new ones."""
    base = Path(base)
    candidate, number = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        number += 1
        candidate = base.with_name(f"{base.name}{number}")
    return candidate


def check_outputs(out: Path, writes: Iterable[Path], inputs: Iterable[Path], option: str = "-o",
                  default: str = "") -> Optional[str]:
    """Before any work: a one-line :class:`DfineError` when a file the command will write in ``out``
    (``writes``) is one of its ``inputs`` (``dfine predict photos -o photos`` wrote the annotated
    copies over the user's photos); else a note naming the files of an earlier run it will replace
    (None when it replaces none)."""
    sources = {Path(p).resolve(): Path(p) for p in inputs}
    writes = list(writes)
    for path in writes:
        if Path(path).resolve() in sources:
            raise DfineError(f"{option} {out} would overwrite the input {sources[Path(path).resolve()]} (the output "
                             f"keeps the input's file name); choose an output folder that holds no input"
                             + (f" (default: {default})" if default else ""))
    replaced = [p for p in writes if Path(p).is_file()]
    if not replaced:
        return None
    from dfine.text import counted, first_few
    names = {Path(p).name for p in writes}
    others = sorted(p.name for p in Path(out).iterdir() if p.is_file() and p.name not in names)
    return (f"note: {out} holds files of an earlier run; {counted(len(replaced), 'file')} of the same names "
            f"{'is' if len(replaced) == 1 else 'are'} replaced ({first_few([p.name for p in replaced], 3)})"
            + (f", {counted(len(others), 'other')} stay{'s' if len(others) == 1 else ''} ({first_few(others, 3)})"
               if others else ""))
