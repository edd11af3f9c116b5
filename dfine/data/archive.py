"""A dataset given as the zip archive it was downloaded as (Roboflow's "download zip", Kaggle):
unpacked once into a folder beside it, named after it, and used from there.

The folder appears whole or not at all: the archive is unpacked into a hidden folder beside it,
then renamed. A marker file in it (``.dfine-unzipped``: the archive's name, size and modification
time) lets the next command use the folder again; a folder of that name without the marker is the
user's own and is never written into.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Union

from ..errors import DfineError
from ..text import counted, progress_bar

__all__ = ["MARKER", "dataset_folder", "require_path"]

MARKER = ".dfine-unzipped"
_OTHER_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


def dataset_folder(path: Union[str, os.PathLike], option: str = "--data") -> Path:
    """``path`` itself, or for a ``.zip`` archive the folder it is unpacked into (beside it, named
    after it: ``roboflow.zip`` -> ``roboflow/``; when the archive holds one folder and nothing else,
    that folder). Another kind of archive, an unreadable zip, a member that would land outside the
    folder, or a folder of that name that is not an earlier unpacking are one-line errors naming
    the file and what to do. ``option``: how the user gave ``path``, as the messages name it."""
    path = require_path(path, option)
    name = path.name.lower()
    if path.is_file() and any(name.endswith(s) for s in _OTHER_ARCHIVES):
        raise DfineError(f"{option} {path} is an archive: unpack it first (e.g. tar xf / 7z x) and give the folder "
                         f"it makes")
    if not (path.is_file() and name.endswith(".zip")):
        return path
    target = path.with_name(path.name[:-len(".zip")])
    stamp = _stamp(path)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()  # an empty folder of that name holds nothing to keep (a walk was told to give it)
    if target.exists():
        if _marker_of(target) == stamp:
            folder = _inner(target)
            print(f"{option} {path}: using {folder}, unzipped from it before")
            return folder
        what = "an older unzipping of it" if (target / MARKER).is_file() else "not unzipped by dfine"
        raise DfineError(f"{option} {path}: {target} beside it already exists ({what}); give that folder ({option} "
                         f"{target}) or move it away to unzip again")
    files, size = _unzip(path, target, stamp, option)
    folder = _inner(target)
    print(f"{option} {path}: unzipped {counted(files, 'file')} ({size / 1e6:.1f} MB) into {folder} (next time you "
          f"can give {option} {folder})")
    return folder


def require_path(path: Union[str, os.PathLike], option: str = "--data") -> Path:
    """``path`` (``~`` expanded) when it exists; else a one-line error naming the close entry beside it
    (a typo: "annotation file X not found; set ann_file" spoke of config keys, a walk)."""
    path = Path(path).expanduser()
    if not path.exists():
        from ..text import did_you_mean
        what = option if option.startswith("-") else "dataset"  # 'dfine data check X not found' read as the command
        raise DfineError(f"{what} {path} not found{did_you_mean(path)}")
    return path


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"archive": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker_of(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _inner(folder: Path) -> Path:
    """``folder``, or the one folder it holds when it holds nothing else (a zip of ``dataset/``)."""
    entries = [e for e in folder.iterdir() if e.name != MARKER and e.name != "__MACOSX"]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def _unzip(path: Path, target: Path, stamp: dict, option: str) -> tuple:
    """Unpack ``path`` into ``target`` (absent), whole or not at all: (files, bytes unpacked)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DfineError(f"{option} {path} is not a readable zip archive ({exc}); download it again") from None
    with archive:
        members = archive.infolist()
        for m in members:
            parts = PurePosixPath(m.filename.replace("\\", "/")).parts
            if m.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise DfineError(f"{option} {path}: its member {m.filename!r} would be written outside {target}; "
                                 f"not unpacking it (unpack it yourself if you trust it)")
        total = sum(m.file_size for m in members)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.unzipping-", dir=target.parent))
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # as a folder made by unzip would be (mkdtemp's is the owner's alone)
        except OSError as exc:
            raise DfineError(f"{option} {path}: cannot unzip beside it in {target.parent} ({exc.strerror}); unzip it "
                             f"where you can write and give that folder") from None
        try:
            with progress_bar(total=total, unit="B", unit_scale=True, desc=f"unzipping {path.name}",
                              disable=total < 50_000_000, file=sys.stderr) as bar:
                for m in members:
                    archive.extract(m, tmp)
                    bar.update(m.file_size)
            (tmp / MARKER).write_text(json.dumps(stamp))
            try:
                os.replace(tmp, target)
            except OSError:
                if _marker_of(target) != stamp:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process (torchrun's others) unpacked it meanwhile
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a bad CRC, cut-off or garbled data
            shutil.rmtree(tmp, ignore_errors=True)
            raise DfineError(f"{option} {path} is damaged ({exc}); download it again") from None
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DfineError(f"{option} {path}: unzipping into {target.parent} failed ({exc.strerror or exc}); "
                             f"free some space or unzip it elsewhere and give that folder") from None
        except BaseException:  # Ctrl-C: no half-unpacked folder left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return sum(not m.is_dir() for m in members), total
