"""``pip install .`` on a machine without npm: the wheel serves the client package.

The wheel is built from the committed files alone (no node_modules, no built copy),
with no node or npm on the PATH; it must hold the client's ES modules under
broadcast/static/client/ (copied by setup.py) and the vendored ESM builds the import
maps name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_client_without_npm(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    listed = subprocess.run(
        [git, "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, timeout=60
    )
    tracked = listed.stdout.decode().split("\0")
    tree = tmp_path / "tree"
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    assert not (tree / "broadcast" / "static" / "client").exists()
    out = tmp_path / "wheel"
    # Only the interpreter's directory on the PATH: no node, no npm.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out)],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("slipstream-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for source in sorted((ROOT / "clients" / "js" / "src").glob("*.js")):
            served = f"broadcast/static/client/{source.name}"
            assert served in names, served
            assert archive.read(served) == source.read_bytes()
        page = archive.read("broadcast/static/index.html").decode()
    mapped = re.findall(r'"(/static/[^"]+)"', page)
    assert "/static/client/index.js" in mapped
    for url in mapped:
        assert f"broadcast{url}" in names, url
