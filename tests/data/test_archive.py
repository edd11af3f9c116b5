"""A dataset given as its downloaded .zip: unpacked beside it once, whole or not at all, then used."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from dfine.cli import main
from dfine.data import archive
from dfine.data.archive import MARKER, dataset_folder
from dfine.errors import DfineError
from tests.data.test_train_data import TINY, _trained, _yolo


def _zipped(folder, zip_path, prefix=""):
    """``folder``'s files into ``zip_path``, under ``prefix`` (e.g. ``"set/"``)."""
    with zipfile.ZipFile(zip_path, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, prefix + path.relative_to(folder).as_posix())
    return zip_path


def test_train_from_a_zip_as_downloaded(tmp_path, capsys):
    """``dfine train --data set.zip``: it was 'not a COCO, YOLO, VOC ... dataset folder'."""
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "fruit.zip")
    out = tmp_path / "run"
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0
    printed = _trained(out, capsys)
    assert f"--data {src}: unzipped 7 files" in printed.out and f"into {tmp_path / 'fruit'}" in printed.out
    assert (tmp_path / "fruit" / "data.yaml").is_file() and (tmp_path / "fruit" / MARKER).is_file()
    assert "apple" in (out / "data/annotations/instances_train.json").read_text()


def test_unzipped_once_then_used_again(tmp_path, monkeypatch):
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "set.zip", prefix="inside/")
    assert dataset_folder(src) == tmp_path / "set" / "inside"  # one folder in the zip: that folder
    monkeypatch.setattr(archive, "_unzip", lambda *a: pytest.fail("unzipped a second time"))
    assert dataset_folder(src) == tmp_path / "set" / "inside"
    assert dataset_folder(tmp_path / "made") == tmp_path / "made"  # a folder is itself


def test_a_folder_of_that_name_is_never_written_into(tmp_path):
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "set.zip")
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "mine.txt").write_text("mine")
    with pytest.raises(DfineError, match=r"set beside it already exists \(not unzipped by dfine\); give that folder"):
        dataset_folder(src)
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["mine.txt"]


def test_a_changed_zip_is_not_mistaken_for_its_older_unzipping(tmp_path):
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "set.zip")
    dataset_folder(src)
    with zipfile.ZipFile(src, "a") as z:
        z.writestr("extra.txt", "new")
    with pytest.raises(DfineError, match="an older unzipping of it"):
        dataset_folder(src)


def test_members_outside_the_folder_refused(tmp_path):
    src = tmp_path / "evil.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("ok.txt", "fine")
        z.writestr("../escaped.txt", "bad")
    with pytest.raises(DfineError, match=r"member '../escaped.txt' would be written outside"):
        dataset_folder(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_interrupted_unzip_leaves_nothing(tmp_path, monkeypatch):
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "set.zip")
    real, seen = zipfile.ZipFile.extract, []

    def stop_after_two(self, member, path=None, pwd=None):
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(member)
        return real(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        dataset_folder(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made", "set.zip"]


@pytest.mark.parametrize("name, content, message", [
    ("bad.zip", b"not a zip", "is not a readable zip archive .* download it again"),
    ("set.tar.gz", b"\x1f\x8b", "is an archive: unpack it first"),
])
def test_unusable_archives_are_one_line(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DfineError, match=message):
        dataset_folder(tmp_path / name)
    assert main(["data", "check", str(tmp_path / name)]) == 2  # a user error, as every one-line error
    err = capsys.readouterr().err
    assert err.startswith(f"error: dfine data check {tmp_path / name}") and len(err.strip().splitlines()) == 1


def test_unzipped_folder_keeps_the_usual_permissions(tmp_path):
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "set.zip")
    mask = os.umask(0o022)
    try:
        folder = dataset_folder(src)
    finally:
        os.umask(mask)
    assert folder.stat().st_mode & 0o777 == 0o755


def test_calibration_images_from_a_zip(tmp_path):
    from dfine.export.int8 import calibration_images
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "set.zip")
    images = calibration_images(src, limit=10)
    assert len(images) == 3 and all(p.is_relative_to(tmp_path / "set") for p in images)


def test_garbled_member_is_one_line_and_leaves_nothing(tmp_path):
    """A zip whose central directory reads but whose compressed data is garbled (zlib.error, was a traceback)."""
    src = tmp_path / "garbled.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", bytes(range(256)).hex() * 40)
    data = bytearray(src.read_bytes())
    for i in range(200, 260):
        data[i] ^= 0xFF
    src.write_bytes(bytes(data))
    with pytest.raises(DfineError, match="garbled.zip is damaged .* download it again"):
        dataset_folder(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbled.zip"]


def test_an_empty_folder_of_that_name_is_used(tmp_path):
    """A walk had made boards/ (empty) beside boards.zip: told to give that folder, which then was 'not a dataset'."""
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "set.zip")
    (tmp_path / "set").mkdir()
    assert (dataset_folder(src) / "data.yaml").is_file()


def test_two_processes_unzipping_at_once_both_use_the_folder(tmp_path, monkeypatch):
    """Under torchrun every process reads --data: the one that renames its unpacked folder second
    found the first's in place (ENOTEMPTY), which was an error; now it takes that folder."""
    src = _zipped(_yolo(tmp_path / "made"), tmp_path / "set.zip")
    real = os.replace

    def first_another_wins(a, b):
        if not Path(b).exists():
            other = Path(str(b) + ".other")
            shutil.copytree(a, other)
            real(other, b)  # the other process's folder lands first
        return real(a, b)

    monkeypatch.setattr(archive.os, "replace", first_another_wins)
    assert (dataset_folder(src) / "data.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made", "set", "set.zip"]
