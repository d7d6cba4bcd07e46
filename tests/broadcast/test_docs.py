"""docs/protocol.md and docs/asyncapi.yaml name every message, error and notice the code sends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = "\n".join(p.read_text() for p in sorted((ROOT / "broadcast").glob("*.py")))
DOCS = {name: (ROOT / "docs" / name).read_text() for name in ("protocol.md", "asyncapi.yaml")}


def found(pattern: str) -> set[str]:
    return set(re.findall(pattern, SOURCES))


KINDS = {
    "message types": found(r'"t": "(\w+)"'),
    "error codes": found(r'ProtocolError\(\s*"(\w+)"'),
    "notice codes": found(r'notice_message\(\s*"(\w+)"'),
    "control ops": {"subscribe", "keyframe", "unsubscribe", "ping"},
}


@pytest.mark.parametrize("doc", sorted(DOCS))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_docs_name_everything_the_code_sends(doc: str, kind: str) -> None:
    names = KINDS[kind]
    assert len(names) >= 4, f"found too few {kind} in the code: {names}"
    missing = sorted(n for n in names if not re.search(rf"\b{n}\b", DOCS[doc]))
    assert not missing, f"{doc} lacks {kind}: {missing}"


def test_the_docs_name_the_close_codes_and_subprotocol() -> None:
    for text in DOCS.values():
        for code in ("1008", "1009", "1011", "1012", "4008", "slipstream.v1"):
            assert code in text
