"""The broadcast tests: the scenario table runs on asyncio's loop and on uvloop (the node's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

#: Tests that run once per event loop the node may run on.
BOTH_LOOPS = ("test_scenarios.py", "test_protocol.py", "test_bad_input.py", "test_slow_fan.py")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.path.name in BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
