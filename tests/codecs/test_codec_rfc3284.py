"""The pre-decode checks of slipstream.codecs.rfc3284 against the RFC's default code table."""

from __future__ import annotations

import pytest
from vcdiff_decoder.codetable import DEFAULT_CODE_TABLE
from vcdiff_decoder.types import InstructionType

from slipstream.codecs import CodecError
from slipstream.codecs.rfc3284 import _SIZES, MAGIC, check_delta


def test_opcode_sizes_match_the_default_code_table() -> None:
    for code in range(256):
        expected = tuple(
            DEFAULT_CODE_TABLE.get(code, slot).size
            for slot in (0, 1)
            if DEFAULT_CODE_TABLE.get(code, slot).type != InstructionType.NO_OP
        )
        assert _SIZES[code] == expected, code


def _delta(target: int, instructions: bytes, data: bytes = b"") -> bytes:
    body = bytes([target, 0, len(data), len(instructions), 0]) + data + instructions
    return MAGIC + b"\x00" + bytes([1, target, 0, len(body)]) + body


def test_a_well_formed_delta_reports_its_target_size() -> None:
    assert check_delta(_delta(8, bytes([19, 8])), 8) == 8  # COPY 8 (explicit size)


@pytest.mark.parametrize(
    ("instructions", "data"),
    [
        (b"\x00\xff\xff\xff\xff\x0f", b"\x00"),  # RUN of 2**32 - 1 bytes
        (bytes([19, 4]), b""),  # COPY 4 of an 8-byte window
        (bytes([1 + 9]), bytes(9)),  # ADD 9 of an 8-byte window
        (bytes([19]), b""),  # COPY with its size missing
    ],
)
def test_instruction_sizes_must_fill_the_window_exactly(instructions: bytes, data: bytes) -> None:
    with pytest.raises(CodecError):
        check_delta(_delta(8, instructions, data), 8)
