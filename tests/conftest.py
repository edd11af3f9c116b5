"""Shared test fixtures: the ``../shared`` folder (real data and golden fixtures).

Tests that need ``../shared`` skip when it is absent, and fail instead when
``DFINE_REQUIRE_SHARED=1`` (which ``.ci/run`` sets).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("DFINE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ``../shared``; skips (or fails under DFINE_REQUIRE_SHARED=1) when missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"{path} not found (tests need ../shared beside the repository)"
        if os.environ.get("DFINE_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@functools.lru_cache(maxsize=None)
def _load_golden(size: str) -> dict:
    return torch.load(shared_path("golden", f"dfine_{size}_golden.pth"), weights_only=True)


def load_golden(size: str) -> dict:
    """The golden fixture of ``dfine_{size}`` (see ../shared/README.md), cached per session."""
    shared_path("golden", f"dfine_{size}_golden.pth")
    return _load_golden(size)


@pytest.fixture
def coco128() -> Path:
    """``../shared/data/coco128`` (train2017/ images + annotations/instances_train2017.json)."""
    return shared_path("data", "coco128")


@pytest.fixture(autouse=True, scope="session")
def _dfine_home(tmp_path_factory):
    """What the code caches while tests run (image headers checked before training) goes to a
    temporary ``DFINE_HOME``, not the user's ``~/.cache/dfine``; a ``DFINE_HOME`` already set is kept."""
    if os.environ.get("DFINE_HOME"):
        yield
        return
    os.environ["DFINE_HOME"] = str(tmp_path_factory.mktemp("dfine_home"))
    yield
    os.environ.pop("DFINE_HOME", None)


@pytest.fixture(autouse=True, scope="session")
def _nothing_left_in_the_working_folder():
    """No test leaves a file or folder in the folder pytest runs in (the checkout): a run folder
    made there by a default (``output/...``, ``runs/...``) fails the session, naming it."""
    before = set(os.listdir("."))
    yield
    left = sorted(set(os.listdir(".")) - before - {".pytest_cache"})
    assert not left, f"tests left {left} in {Path.cwd()}: give them tmp_path (or monkeypatch.chdir(tmp_path))"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def ctrl_c_after_each_step(monkeypatch):
    """Every training step ends with what the SIGINT handler does on Ctrl-C (the run then stops after
    its step, as it would for a real Ctrl-C)."""
    from dfine.engine.trainer import Trainer

    real = Trainer.train_step

    def step_then_ctrl_c(self, *args):
        out = real(self, *args)
        self.stop_signal = "SIGINT"
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_ctrl_c)
