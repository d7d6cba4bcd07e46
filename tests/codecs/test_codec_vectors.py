"""The shared vectors (tests/fixtures/codec_vectors.json): current, and decoded alike by
the Python decoders and the browser's (clients/js/src/codecs.js, run by `node --test`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slipstream.codecs import CODECS, CodecError
from slipstream.codecs.vectors import render

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "codec_vectors.json"
CLIENT_JS = Path(__file__).resolve().parents[2] / "clients" / "js"


def _vectors() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return document


def test_the_fixture_is_up_to_date() -> None:
    assert FIXTURE.read_text(encoding="utf-8") == render(), (
        "tests/fixtures/codec_vectors.json is stale: run "
        "`python -m slipstream.codecs.vectors tests/fixtures/codec_vectors.json`"
    )


def _decode(v: dict[str, Any]) -> list[int]:
    codec = CODECS[v["codec"]]
    payload = bytes.fromhex(v["payload"])
    if v["kind"] == "keyframe":
        out = codec.decode_keyframe(payload, v["size"])
    else:
        out = codec.decode_delta(np.array(v["base"], dtype=np.int32), payload)
    values: list[int] = out.tolist()
    return values


def test_python_decodes_every_valid_vector() -> None:
    vectors = _vectors()["valid"]
    assert {(v["codec"], v["kind"]) for v in vectors} == {
        (c, k) for c in CODECS for k in ("keyframe", "delta")
    }
    for v in vectors:
        assert _decode(v) == v["values"], (v["codec"], v["case"], v["group"], v["kind"])


def test_python_rejects_every_invalid_vector() -> None:
    for v in _vectors()["invalid"]:
        with pytest.raises(CodecError):
            _decode(v)


def test_node_agrees_on_every_vector(
    node_decode: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
) -> None:
    document = _vectors()
    results = node_decode(document["valid"] + document["invalid"])
    valid = results[: len(document["valid"])]
    invalid = results[len(document["valid"]) :]
    assert [r.get("values") for r in valid] == [v["values"] for v in document["valid"]]
    for r, v in zip(invalid, document["invalid"], strict=True):
        assert r.get("error", "").startswith("CodecError"), v["reason"]


def test_the_node_codec_tests_pass(node: str) -> None:
    # The package's other node tests start a node of their own: tests/client runs them.
    done = subprocess.run(
        [node, "--test", "test/codecs.test.js"],
        cwd=CLIENT_JS, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
