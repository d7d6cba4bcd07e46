"""VCDIFF interop: our deltas against Debian's xdelta3, PyPI vcdiff-decoder and
npm @ably/vcdiff-decoder; xdelta3's deltas through our Python decode path."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import vcdiff_decoder
from numpy.typing import NDArray

from slipstream.app.bench.codecs import synthetic_race
from slipstream.catalogue import CATALOGUE, MISSING
from slipstream.codecs import CODECS, CodecError
from slipstream.codecs.vcdiff import to_planes

XDELTA3 = shutil.which("xdelta3") or "/usr/bin/xdelta3"
GROUPS = CATALOGUE.groups
VCDIFF = CODECS["vcdiff"]


def _cases() -> list[tuple[str, NDArray[np.int32], NDArray[np.int32]]]:
    """(name, prev, q) pairs of 2 cars: a race, none/all changed, MISSING, extremes."""
    race = synthetic_race(2, 3, seed=11)
    rng = np.random.default_rng(5)
    extreme = rng.choice(np.array([MISSING, -1, 0, 2**31 - 1], np.int32), (2, len(CATALOGUE)))
    stale = race[1].copy()
    stale[:, ::3] = MISSING
    return [
        ("race", race[1], race[2]),
        ("none-changed", race[1], race[1].copy()),
        ("all-changed", race[1], race[1] + 1),
        ("stale", race[1], stale),
        ("extremes", extreme, extreme[::-1].copy()),
    ]


CASES = _cases()


def _xdelta3(*args: str | Path) -> bytes:
    done = subprocess.run([XDELTA3, *map(str, args)], capture_output=True, check=True, timeout=30)
    return done.stdout


@pytest.mark.parametrize(("case", "prev", "q"), CASES, ids=[c[0] for c in CASES])
def test_our_deltas_decode_with_xdelta3(
    case: str, prev: NDArray[np.int32], q: NDArray[np.int32], tmp_path: Path
) -> None:
    deltas = VCDIFF.encode_deltas(prev, q, GROUPS)
    car = 0
    for gi, g in enumerate(GROUPS):
        base, delta = tmp_path / f"{gi}.base", tmp_path / f"{gi}.vcdiff"
        base.write_bytes(to_planes(prev[car, g.start : g.stop]))
        delta.write_bytes(deltas[car][gi])
        target = to_planes(q[car, g.start : g.stop])
        assert _xdelta3("-d", "-c", "-s", base, delta) == target, g.name


@pytest.mark.parametrize(("case", "prev", "q"), CASES, ids=[c[0] for c in CASES])
def test_our_deltas_decode_with_pypi_vcdiff_decoder(
    case: str, prev: NDArray[np.int32], q: NDArray[np.int32]
) -> None:
    deltas = VCDIFF.encode_deltas(prev, q, GROUPS)
    for car in range(q.shape[0]):
        for gi, g in enumerate(GROUPS):
            source = to_planes(prev[car, g.start : g.stop])
            target = to_planes(q[car, g.start : g.stop])
            assert vcdiff_decoder.decode(source, deltas[car][gi]) == target


def _xdelta3_deltas(
    prev: NDArray[np.int32], q: NDArray[np.int32], tmp_path: Path
) -> list[tuple[NDArray[np.int32], NDArray[np.int32], bytes]]:
    """(base, target, delta) of car 0's groups, encoded by the xdelta3 tool."""
    out = []
    for gi, g in enumerate(GROUPS):
        base, target = tmp_path / f"{gi}.base", tmp_path / f"{gi}.target"
        base.write_bytes(to_planes(prev[0, g.start : g.stop]))
        target.write_bytes(to_planes(q[0, g.start : g.stop]))
        delta = _xdelta3("-e", "-S", "none", "-A", "-n", "-c", "-s", base, target)
        out.append((prev[0, g.start : g.stop], q[0, g.start : g.stop], delta))
    return out


@pytest.mark.parametrize(("case", "prev", "q"), CASES, ids=[c[0] for c in CASES])
def test_xdelta3_deltas_decode_in_the_python_client_path(
    case: str, prev: NDArray[np.int32], q: NDArray[np.int32], tmp_path: Path
) -> None:
    for base, target, delta in _xdelta3_deltas(prev, q, tmp_path):
        np.testing.assert_array_equal(VCDIFF.decode_delta(base.copy(), delta), target)


def test_xdelta3_deltas_with_a_checksum_still_decode_in_python(tmp_path: Path) -> None:
    """Without -n xdelta3 adds its Adler-32 extension; the PyPI decoder verifies it."""
    _, prev, q = CASES[0]
    g = GROUPS[1]
    base, target = tmp_path / "base", tmp_path / "target"
    base.write_bytes(to_planes(prev[0, g.start : g.stop]))
    target.write_bytes(to_planes(q[0, g.start : g.stop]))
    delta = _xdelta3("-e", "-S", "none", "-A", "-c", "-s", base, target)
    np.testing.assert_array_equal(
        VCDIFF.decode_delta(prev[0, g.start : g.stop].copy(), delta), q[0, g.start : g.stop]
    )
    wrong = bytearray(delta)
    wrong[-1] ^= 0x01  # an ADD byte or address: the checksum no longer matches
    with pytest.raises(CodecError):
        VCDIFF.decode_delta(prev[0, g.start : g.stop].copy(), bytes(wrong))


@pytest.mark.parametrize(("case", "prev", "q"), CASES, ids=[c[0] for c in CASES])
def test_our_and_xdelta3_deltas_decode_with_ably_under_node(
    case: str,
    prev: NDArray[np.int32],
    q: NDArray[np.int32],
    tmp_path: Path,
    node_decode: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
) -> None:
    ours = VCDIFF.encode_deltas(prev, q, GROUPS)
    vectors, expected = [], []
    for car in range(q.shape[0]):
        for gi, g in enumerate(GROUPS):
            base = prev[car, g.start : g.stop].tolist()
            vectors.append({"codec": "vcdiff", "kind": "delta", "size": g.size, "base": base})
            vectors[-1]["payload"] = ours[car][gi].hex()
            expected.append(q[car, g.start : g.stop].tolist())
    for base_values, target, delta in _xdelta3_deltas(prev, q, tmp_path):
        vectors.append(
            {"codec": "vcdiff", "kind": "delta", "size": base_values.size}
            | {"base": base_values.tolist(), "payload": delta.hex()}
        )
        expected.append(target.tolist())
    results = node_decode(vectors)
    assert [r.get("values", r.get("error")) for r in results] == expected
