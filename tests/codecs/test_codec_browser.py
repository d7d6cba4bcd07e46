"""The browser decoders in Debian's chromium, loaded the way a page loads them.

``@ably/vcdiff-decoder``'s bundle by a classic script (it defines the global
``vcdiffDecoder``) and the client package's ``clients/js/src/codecs.js`` as an ES
module, both served over HTTP from this checkout; every shared vector must decode
as in Python.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = "clients/js/node_modules/@ably/vcdiff-decoder/dist/vcdiff-decoder.min.js"

pytestmark = pytest.mark.browser


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[str]:
    """Base URL of a static server of the repository on 127.0.0.1."""
    if not (ROOT / BUNDLE).is_file():
        pytest.fail("clients/js/node_modules is missing: run ./scripts/install-test-deps")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(ROOT)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


CHECK_VECTORS = """
async () => {
  const m = await import("/clients/js/src/codecs.js");
  const fixture = await (await fetch("/tests/fixtures/codec_vectors.json")).json();
  const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
  const decode = (v) => v.kind === "keyframe"
    ? m.decodeKeyframe(v.codec, hex(v.payload), v.size)
    : m.decodeDelta(v.codec, Int32Array.from(v.base), hex(v.payload));
  const bad = [];
  for (const v of fixture.valid) {
    try {
      const got = JSON.stringify(Array.from(decode(v)));
      if (got !== JSON.stringify(v.values)) bad.push(`${v.codec} ${v.case} ${v.group}: ${got}`);
    } catch (err) {
      bad.push(`${v.codec} ${v.case} ${v.group}: ${err}`);
    }
  }
  for (const v of fixture.invalid) {
    try {
      decode(v);
      bad.push(`accepted ${v.codec}: ${v.reason}`);
    } catch (err) {
      if (!(err instanceof m.CodecError)) bad.push(`${v.codec} ${v.reason}: ${err}`);
    }
  }
  const codecs = new Set(fixture.valid.map((v) => v.codec));
  return { bad, decoded: fixture.valid.length, codecs: [...codecs].sort(),
           global: typeof globalThis.vcdiffDecoder?.decode };
}
"""


def test_chromium_decodes_every_vector_like_python(web_server: str) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{web_server}/web/")
            page.add_script_tag(url=f"{web_server}/{BUNDLE}")
            result = page.evaluate(CHECK_VECTORS)
        finally:
            browser.close()
    assert result["global"] == "function"
    assert result["codecs"] == ["full", "sparse", "vcdiff"]
    assert result["decoded"] > 100
    assert result["bad"] == []
