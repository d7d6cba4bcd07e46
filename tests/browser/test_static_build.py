"""The committed front-end assets equal what ``npm run build`` (in web/) makes.

The client package's source (clients/js/src) is built into ``static/client/``, not
committed: the repository holds one copy of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
STATIC = ROOT / "broadcast" / "static"


def _build(out: Path) -> list[Path]:
    node = shutil.which("node")
    if node is None or not (WEB / "node_modules").is_dir():
        pytest.skip("needs node and web/node_modules (scripts/install-test-deps runs npm ci)")
    subprocess.run(
        [node, "scripts/build-static.mjs", "--out", str(out)],
        cwd=WEB, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return sorted(p for p in out.rglob("*") if p.is_file())


def test_committed_assets_match_the_build(tmp_path: Path) -> None:
    built = _build(tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p in built}
    # The vendor libraries, the page code and the client package all come from the build.
    assert {"vendor/uPlot.esm.js", "vendor/msgpack.mjs", "vendor/vcdiff-decoder.mjs"} <= names
    assert {"js/fan.js", "js/ops.js"} <= names
    client = {f"client/{p.name}" for p in (ROOT / "clients" / "js" / "src").glob("*.js")}
    assert {"client/index.js", "client/stream.js", "client/codecs.js"} <= client <= names
    committed = [n for n in sorted(names) if not n.startswith("client/")]
    stale = [n for n in committed if (STATIC / n).read_bytes() != (tmp_path / n).read_bytes()]
    assert not stale, f"broadcast/static is out of date for {stale}: run `npm run build` in web/"


@pytest.mark.skipif(
    os.environ.get("CI") != "true", reason="CI only (a working tree may be mid-edit)"
)
def test_ci_build_left_the_committed_assets_unchanged() -> None:
    # .ci/run has just run `npm run build` over broadcast/static: had the committed
    # copies been stale, the build changed them and git sees it.
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    done = subprocess.run(
        [git, "status", "--porcelain", "--", "broadcast/static"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout == "", (
        "`npm run build` changed the committed assets; run it in web/ and commit:\n" + done.stdout
    )


def test_the_client_source_is_committed_once() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    files = subprocess.run(
        [git, "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    for name in ("stream.js", "codecs.js", "client.js"):
        copies = [f for f in files if f.endswith(f"/{name}") and "node_modules" not in f]
        assert copies == [f"clients/js/src/{name}"], copies


def test_pages_load_nothing_from_outside() -> None:
    for page in ("index.html", "ops.html"):
        html = (STATIC / page).read_text(encoding="utf-8")
        assert "http://" not in html and "https://" not in html and "//cdn" not in html
    for path in STATIC.rglob("*.js"):
        if "vendor" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert "https://" not in text and "http://" not in text, path
