"""Which event loop a serving process runs on: asyncio's, or uvloop if asked.

The node runs on asyncio by default: measured side by side on the same
machine, its WebSocket fan-out cost no more CPU per update on asyncio than on
uvloop, and a node saturated with long-polls kept serving on asyncio where on
uvloop new pollers could not connect (docs/fanout.md).  ``uvloop`` needs the
``slipstream[uvloop]`` extra; ``auto`` takes uvloop when it can be imported.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

from slipstream.config import EVENT_LOOPS
from slipstream.errors import ConfigError

__all__ = ["EVENT_LOOPS", "resolve", "run"]

T = TypeVar("T")


def resolve(name: str) -> str:
    """``uvloop`` or ``asyncio``: what ``name`` means on this machine.

    Raises:
        ConfigError: Unknown name, or ``uvloop`` asked for but not installed.
    """
    if name not in EVENT_LOOPS:
        raise ConfigError(f"unknown event loop {name!r}; expected one of {', '.join(EVENT_LOOPS)}")
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    if name == "uvloop" and not has_uvloop:
        raise ConfigError(
            "--event-loop uvloop: uvloop is not installed (pip install 'slipstream[uvloop]')"
        )
    if name == "auto":
        return "uvloop" if has_uvloop else "asyncio"
    return name


def run(main: Coroutine[Any, Any, T], event_loop: str = "asyncio") -> T:
    """Run ``main`` to completion on the chosen loop (see :func:`resolve`)."""
    if resolve(event_loop) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
