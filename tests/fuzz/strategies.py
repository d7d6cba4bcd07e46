"""Input strategies shared by the fuzz targets: arbitrary bytes and near-valid values."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import strategies as st

#: Integers that break naive length and range handling.
EDGE_INTS = st.sampled_from(
    [0, 1, -1, 2, 4, 7, 8, 139, 255, 256, 2**15, 2**16, 2**31 - 1, 2**31, -(2**31),
     2**32 - 1, 2**32, 2**53, 2**63 - 1, -(2**63), 2**64 - 1]
)  # fmt: skip
INTS = st.one_of(EDGE_INTS, st.integers(-(2**63), 2**64 - 1))

#: msgpack headers that claim huge strings, binaries, arrays or maps.
HUGE_HEADERS = st.sampled_from(
    [b"\xc6\xff\xff\xff\xff", b"\xc6\x7f\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
     b"\xdd\xff\xff\xff\xff", b"\xdd\x80\x00\x00\x00", b"\xdf\xff\xff\xff\xff",
     b"\xc9\xff\xff\xff\xff\x01", b"\xdc\xff\xff", b"\xde\xff\xff", b"\xc5\xff\xff"]
)  # fmt: skip

LEAVES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=600),
)
#: Arbitrary msgpack-able values, nested a little.
VALUES: st.SearchStrategy[Any] = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=8),
        st.dictionaries(st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=8,
)


def pack(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` (bin type for bytes)."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def bytes_inputs(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, valid encodings (mutated by the harness), huge-length headers."""
    return st.one_of(
        st.binary(max_size=2048),
        valid,
        valid,
        st.builds(lambda head, tail: head + tail, HUGE_HEADERS, st.binary(max_size=64)),
    )


#: The seed of an example's mutations.
SEEDS = st.integers(0, 2**32 - 1)
