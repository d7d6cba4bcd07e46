"""The page's JS client decodes the node's tick messages as the Python client does.

Real tick messages (the node's own tick assembly and encode-once fan-out, every
codec, keyframe then deltas, cars skipping ticks, a car subset) are decoded by
``broadcast.decoder.StreamDecoder`` and by ``@slipstream/client`` (clients/js/src) under node
(``web/scripts/decode-stream.mjs``); the values must agree.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from broadcast.decoder import FrameItem, StreamDecoder
from broadcast.fanout import EncodedTick
from broadcast.ticks import TickAssembler
from slipstream.catalogue import CATALOGUE, MISSING
from slipstream.codecs import CODECS
from slipstream.records import Frame, RaceEvent
from tests.broadcast.helpers import frame_values

WEB = Path(__file__).resolve().parents[2] / "web"
CARS = (1, 7, 24, 48)
# Ticks at which a car sends no frame (its next delta is against an older base).
SKIPS = {3: {7}, 4: {7, 24}, 6: {48}}


def _messages(codec: str, cars: tuple[int, ...] | None, groups: tuple[int, ...]) -> list[bytes]:
    assembler = TickAssembler(0.0, lambda car: 0)
    start = RaceEvent("R9", 0, "race_start", CARS, {"entries": [{"car": c} for c in CARS]})
    ticks = assembler.add_event(start, 0.0)
    for tick in range(9):
        for car in CARS:
            if car not in SKIPS.get(tick, set()):
                q = frame_values("R9", tick, car)
                if tick == 5 and car == 7:
                    q[[3, 100]] = MISSING  # clutch (inputs) and lap (timing): no value
                ticks += assembler.add_frame(Frame("R9", tick, car, q, 10), 0, float(tick))
        ticks += assembler.poll(float(tick) + 0.5)
    messages = []
    for i, data in enumerate(ticks):
        messages.append(EncodedTick(data).message((cars, groups, codec), i == 0))
    return messages


def _node_decode(tmp_path: Path, messages: list[bytes]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (WEB / "node_modules").is_dir():
        pytest.skip("needs node and web/node_modules (scripts/install-test-deps runs npm ci)")
    path = tmp_path / "stream.json"
    path.write_text(
        json.dumps({"catalogue": CATALOGUE.to_json(), "messages": [m.hex() for m in messages]})
    )
    done = subprocess.run(
        [node, "scripts/decode-stream.mjs", str(path)],
        cwd=WEB, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return list(json.loads(done.stdout))


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize(
    ("cars", "groups"),
    [(None, ("timing", "position")), ((7, 24), ("inputs", "engine", "tyres", "imu"))],
    ids=["field", "detail"],
)
def test_js_client_decodes_like_the_python_client(
    tmp_path: Path, codec: str, cars: tuple[int, ...] | None, groups: tuple[str, ...]
) -> None:
    indices = tuple(g.index for g in CATALOGUE.resolve_groups(list(groups)))
    messages = _messages(codec, cars, indices)
    decoder = StreamDecoder()
    want: dict[tuple[int, int], dict[str, float | None]] = {}
    for message in messages:
        for item in decoder.feed(message):
            if isinstance(item, FrameItem):
                want[(item.tick, item.car)] = item.values
    got_ticks = _node_decode(tmp_path, messages)
    assert [t["tick"] for t in got_ticks] == list(range(9))
    assert not any(t["needsKeyframe"] for t in got_ticks)
    got = {(t["tick"], int(car)): v for t in got_ticks for car, v in t["cars"].items()}
    assert got.keys() == want.keys()
    assert {car for _, car in got} == set(cars or CARS)
    for key, values in want.items():
        assert got[key].keys() == values.keys(), key
        for name, value in values.items():
            js = got[key][name]
            if value is None:
                assert js is None, (key, name)
            else:
                assert js is not None and math.isclose(js, value, rel_tol=1e-9, abs_tol=1e-9)
