"""``slipstream run``: every stage in one process."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``run`` command."""
