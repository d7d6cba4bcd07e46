"""Fixtures of the codec tests: the browser decoders under node (web/)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"


@pytest.fixture
def node() -> str:
    """The node executable, once web/node_modules is installed; fails the test otherwise."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is required for the browser decoder tests (install node 20)")
    if not (WEB / "node_modules" / "@slipstream" / "client").is_dir():
        pytest.fail("web/node_modules is missing: run ./scripts/install-test-deps")
    return found


@pytest.fixture
def node_decode(node: str, tmp_path: Path) -> Any:
    """``node_decode(vectors) -> results``: web/scripts/decode-vectors.mjs on a list."""

    def run(vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        path = tmp_path / "vectors.json"
        path.write_text(json.dumps(vectors), encoding="utf-8")
        done = subprocess.run(
            [node, "scripts/decode-vectors.mjs", str(path)],
            cwd=WEB,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        results: list[dict[str, Any]] = json.loads(done.stdout)
        return results

    return run
