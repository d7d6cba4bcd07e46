"""Frame codecs: how one (car, channel group) of a tick travels to fans.

A codec turns quantised values (int32 counts, see :mod:`slipstream.catalogue`)
into *parts*: one byte string per (car, group).  A keyframe part carries the
group's full state; a delta part carries what changed against the previous
frame of the same car.  The broadcast envelope (docs/protocol.md) adds the car,
group, kind and base tick, so a delta applied to the wrong base is detected
before this module sees it.  Every decoder still checks what it can and raises
:class:`CodecError` rather than return a wrong frame (docs/codecs.md lists what
is and is not detected).

Codecs (``CODECS``), all pure (no I/O), encoders vectorised over the cars of a tick:

* ``full``: no delta; every part is the group's values as little-endian int32.
* ``sparse``: changed-channel bitmap + zigzag nibble-varint differences
  (:mod:`slipstream.codecs.sparse`).
* ``vcdiff``: RFC 3284 deltas of the ``full`` bytes against the previous ones
  (:mod:`slipstream.codecs.vcdiff`).

Errors::

    SlipstreamError
    └── CodecError (also ValueError)   a part could not be decoded
"""

from __future__ import annotations

from slipstream.codecs.base import Codec, CodecError
from slipstream.codecs.full import FullCodec
from slipstream.codecs.sparse import SparseCodec
from slipstream.codecs.vcdiff import VcdiffCodec

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "Codec",
    "CodecError",
    "FullCodec",
    "SparseCodec",
    "VcdiffCodec",
    "get_codec",
]

CODECS: dict[str, Codec] = {
    "full": FullCodec(),
    "sparse": SparseCodec(),
    "vcdiff": VcdiffCodec(),
}

#: The codec a subscription gets when it names none (chosen by measurement,
#: see docs/codecs.md).
DEFAULT_CODEC = "sparse"


def get_codec(name: str) -> Codec:
    """The codec called ``name``.

    Raises:
        ValueError: No such codec; the message lists the known ones.
    """
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None
