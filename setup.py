"""Build hook: the node serves @slipstream/client's ES modules, copied at build time.

The repository holds one copy of the client's source, clients/js/src; the broadcast
node serves it from broadcast/static/client/ (the pages import it through an import
map).  Copying here, in Python, keeps ``pip install .`` free of npm; ``npm run build``
in web/ makes the same copy for development.  See docs/clients.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "clients" / "js" / "src"
TARGET = ROOT / "broadcast" / "static" / "client"


class BuildPy(build_py):
    """build_py that first copies the client's modules into the node's static files."""

    def run(self) -> None:
        if SOURCE.is_dir():
            TARGET.mkdir(parents=True, exist_ok=True)
            for path in sorted(SOURCE.glob("*.js")):
                shutil.copyfile(path, TARGET / path.name)
        super().run()


setup(cmdclass={"build_py": BuildPy})
