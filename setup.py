"""The one build step pyproject.toml cannot say: ship `grammar/` and `templates/`.

They live at the top of the repository (beside `src/`); a wheel carries copies
inside the `hdrpolicy` package, where `hdrpolicy.assets` finds them.  An
editable install reads the repository's own directories instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ASSETS = ("grammar", "templates")


class BuildPyWithAssets(build_py):
    """`build_py`, then the top-level asset directories copied into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in ASSETS:
            target = Path(self.build_lib) / "hdrpolicy" / name
            shutil.rmtree(target, ignore_errors=True)  # a file removed here leaves no copy
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithAssets})
