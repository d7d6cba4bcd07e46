"""The pages' side routes of a node: ``/ops``, ``/v1/race`` and ``/v1/sessions``.

* ``GET /ops``: the operator's dashboard page (``static/ops.html``).
* ``GET /v1/race``: what a page that joins mid-race needs and the stream no
  longer carries: the current race's ``race_start`` data (track, laps, entry
  list with drivers), its latest ``flag`` event and its last race-control
  events (as ``event`` messages, lap events aside), as JSON.
* ``GET /v1/sessions``: every fan of this node (WebSocket, event stream) with
  its subscription, cursor and the bytes per second its subscription costs,
  and the count of held long-polls, as JSON (for operators and the browser tests).

:class:`RaceInfo` is a pure core fed with the ticks the node publishes.
It also registers ``slipstream_process_resident_bytes`` (the process's
resident memory, read from ``/proc`` when it is there).
"""

from __future__ import annotations

import resource
import sys
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from broadcast.fan import LIVE
from broadcast.hub import Hub
from broadcast.ticks import TickData
from slipstream.catalogue import CATALOGUE
from slipstream.metrics import Registry

__all__ = ["RaceInfo", "add_admin_routes", "resident_bytes"]

STATIC = Path(__file__).with_name("static")
#: Latest ticks whose message sizes make a session's bytes per second.
RATE_TICKS = 8
#: Race-control events (all but ``lap``) kept for pages that join mid-race.
RECENT_EVENTS = 30


class RaceInfo:
    """The current race's start data, latest flag and recent race-control events."""

    def __init__(self, recent: int = RECENT_EVENTS) -> None:
        self.race: str | None = None
        self.start: dict[str, Any] | None = None
        self.flag: dict[str, Any] | None = None
        self.ended: dict[str, Any] | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent)

    def observe(self, ticks: Iterable[TickData]) -> None:
        """Take the events of ticks as the node publishes them."""
        for data in ticks:
            if data.race != self.race:
                self.race, self.start, self.flag, self.ended = data.race, None, None, None
                self.recent.clear()
            for event in data.events:
                if event.kind != "lap":  # one per car and lap: too many to keep
                    self.recent.append(
                        {"race": event.race, "tick": data.tick, "kind": event.kind,
                         "t_ns": event.t_ns, "cars": list(event.cars), "data": event.data}
                    )  # fmt: skip
                if event.kind == "race_start":
                    self.start = dict(event.data)
                elif event.kind == "flag":
                    self.flag = {"tick": data.tick, **event.data}
                elif event.kind == "race_end":
                    self.ended = dict(event.data)

    def to_json(self) -> dict[str, Any]:
        """The ``/v1/race`` body."""
        return {
            "race": self.race,
            "start": self.start,
            "flag": self.flag,
            "end": self.ended,
            "events": list(self.recent),
        }


def resident_bytes() -> float:
    """Resident memory of this process in bytes (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return float(pages * resource.getpagesize())
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak if sys.platform == "darwin" else peak * 1024)


def _session_rows(hub: Hub) -> list[dict[str, Any]]:
    ticks = list(hub.ring)[-RATE_TICKS:]
    span_s = (ticks[-1].emitted_ns - ticks[0].emitted_ns) / 1e9 if len(ticks) > 1 else 0.0
    fans = hub.fans
    rows: list[dict[str, Any]] = []
    sizes_of: dict[Any, list[int]] = {}  # fans of one subscription cost the same
    for fan in fans:
        sub = fan.sub
        race, tick = fans.position(fan)
        row: dict[str, Any] = {
            "id": fan.id,
            "transport": fan.transport,
            "remote": fan.remote,
            "live": fan.state == LIVE,
            "race": race,
            "tick": tick,
            "cars": None,
            "groups": None,
            "codec": None,
            "bytes_per_tick": 0.0,
            "bytes_per_s": 0.0,
        }
        if sub is not None:
            row["cars"] = list(sub.cars) if sub.cars is not None else None
            row["groups"] = [CATALOGUE.groups[g].name for g in sub.groups]
            row["codec"] = sub.codec
            # Live fans get the shared delta message of their subscription per tick.
            sizes = sizes_of.get(sub.key)
            if sizes is None:
                sizes = sizes_of[sub.key] = [len(t.message(sub.key, False)) for t in ticks]
            if sizes:
                row["bytes_per_tick"] = sum(sizes) / len(sizes)
            if span_s > 0:
                row["bytes_per_s"] = sum(sizes[1:]) / span_s
        rows.append(row)
    rows.sort(key=lambda r: str(r["id"]))
    return rows


def add_admin_routes(
    app: web.Application, hub: Hub, race_info: RaceInfo, registry: Registry
) -> None:
    """Register ``/ops``, ``/v1/race`` and ``/v1/sessions`` on a node's app."""
    registry.gauge(
        "slipstream_process_resident_bytes", "Resident memory of this process"
    ).set_function(resident_bytes)

    async def ops(request: web.Request) -> web.StreamResponse:
        page = STATIC / "ops.html"
        if not page.exists():
            return web.Response(status=404, text="ops page not installed\n")
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

    async def race(request: web.Request) -> web.Response:
        return web.json_response(race_info.to_json(), headers={"Cache-Control": "no-store"})

    async def sessions(request: web.Request) -> web.Response:
        body = {"sessions": _session_rows(hub), "poll_waiting": hub.poll_waiting}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    app.router.add_get("/ops", ops)
    app.router.add_get("/v1/race", race)
    app.router.add_get("/v1/sessions", sessions)
