"""A plain ``pip install .`` (a wheel, no checkout beside it) carries the published recipes:
``dfine train --data``, ``dfine demo`` and ``-c configs/...`` need them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built as a wheel from a copy of the source (the checkout stays clean) and
    unpacked into a folder of its own; returns that folder."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("dfine", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp / "dist").glob("dfine-*.whl")
    site = tmp / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def test_wheel_carries_every_recipe(installed):
    packaged = sorted(p.relative_to(installed / "dfine" / "configs") for p in (installed / "dfine" / "configs").rglob("*.yml"))
    published = sorted(p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*.yml"))
    assert packaged == published and len(published) > 20


def test_installed_package_finds_its_recipes_from_any_folder(installed, tmp_path):
    """Run from an empty folder against the unpacked wheel only: the ``--data`` recipe and a
    published ``-c configs/...`` name (the tree is the published one, test above, so every
    ``__include__`` resolves as in a checkout)."""
    code = """
import json, dfine.recipes as r
custom = r.RECIPES_DIR / "dfine" / "custom" / "dfine_hgnetv2_n_custom.yml"
coco = r.recipe_path("configs/dfine/dfine_hgnetv2_s_coco.yml")
print(json.dumps({"dir": str(r.RECIPES_DIR), "custom": custom.is_file(), "coco": str(coco)}))
"""
    env = {"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["dir"] == str(installed / "dfine" / "configs")
    assert out["custom"]
    assert out["coco"] == str(installed / "dfine" / "configs" / "dfine" / "dfine_hgnetv2_s_coco.yml")


def test_recipe_path_keeps_what_exists_and_names_the_missing(tmp_path, monkeypatch):
    from dfine.recipes import RECIPES_DIR, recipe_path

    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "configs" / "mine.yml"
    mine.parent.mkdir()
    mine.write_text("epochs: 1\n")
    assert recipe_path("configs/mine.yml") == Path("configs/mine.yml")        # the user's own file wins
    assert recipe_path("configs/dfine/dfine_hgnetv2_n_coco.yml") == RECIPES_DIR / "dfine" / "dfine_hgnetv2_n_coco.yml"
    assert recipe_path("dfine/dfine_hgnetv2_n_coco.yml") == RECIPES_DIR / "dfine" / "dfine_hgnetv2_n_coco.yml"
    assert recipe_path("configs/dfine/typo.yml") == Path("configs/dfine/typo.yml")  # left for the loader's error
