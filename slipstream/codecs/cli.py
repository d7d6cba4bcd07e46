"""Commands of the codecs: ``slipstream bench codecs``."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """The codecs add no top-level command."""


def register_bench(benches: argparse._SubParsersAction[Any]) -> None:
    """Add ``slipstream bench codecs``."""
