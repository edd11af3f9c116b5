"""Build hook (the metadata is in pyproject.toml): a wheel carries the published recipes.

The recipes live in ``configs/`` beside the package, where the published commands
(``train.py -c configs/dfine/...``) expect them. A checkout and an editable install read them
there; a plain ``pip install .`` copies them into the wheel as ``dfine/configs``, so that
``dfine train --data``, ``dfine demo`` and ``-c configs/...`` work without a checkout
(``dfine.recipes.RECIPES_DIR`` finds either).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithRecipes(build_py):
    """``build_py`` that also copies ``configs/`` into ``dfine/configs`` of the build."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            shutil.copytree(Path(__file__).resolve().parent / "configs", Path(self.build_lib) / "dfine" / "configs",
                            dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithRecipes})
