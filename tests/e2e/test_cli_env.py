"""``SLIPSTREAM_*`` variables as flag defaults: taken when valid, exit 2 naming them when not.

Every variable the code reads is declared once with :mod:`slipstream.options`;
the tests below find them in the source too, so a variable read some other
way, or declared without a bad-value case here, fails the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from broadcast.cli import NODE_PROCESS_OPTIONS
from broadcast.config import BROADCAST_OPTIONS
from downsample.cli import METRICS_OPTIONS
from downsample.config import DOWNSAMPLE_OPTIONS
from ingest.validate import VALIDATOR_OPTIONS
from slipstream.app.cli import build_parser, main
from slipstream.auth import AUTH_OPTIONS
from slipstream.auth_cli import TOKEN_OPTIONS
from slipstream.client.cli import SUBSCRIBE_OPTIONS
from slipstream.config import BUS_OPTIONS
from slipstream.kafka_settings import KAFKA_OPTIONS
from slipstream.limits import LIMITS_OPTIONS
from slipstream.options import Options

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("slipstream", "simulator", "ingest", "downsample", "broadcast")
DECLARED: tuple[Options[object], ...] = (
    BUS_OPTIONS,
    BROADCAST_OPTIONS,
    NODE_PROCESS_OPTIONS,
    SUBSCRIBE_OPTIONS,
    LIMITS_OPTIONS,
    DOWNSAMPLE_OPTIONS,
    VALIDATOR_OPTIONS,
    AUTH_OPTIONS,
    KAFKA_OPTIONS,
    METRICS_OPTIONS,
    TOKEN_OPTIONS,
)  # type: ignore[assignment]

#: A value each variable must refuse.
BAD = {
    "SLIPSTREAM_KAFKA": "localhost",
    "SLIPSTREAM_PARTITIONS": "eight",
    "SLIPSTREAM_HOST": "   ",
    "SLIPSTREAM_PORT": "http",
    "SLIPSTREAM_PING_INTERVAL_S": "-1",
    "SLIPSTREAM_PING_TIMEOUT_S": "0",
    "SLIPSTREAM_REPLAY_TICKS": "1.5",
    "SLIPSTREAM_HISTORY_TICKS": "-5",
    "SLIPSTREAM_DEFAULT_CODEC": "zip",
    "SLIPSTREAM_POLL_HOLD_S": "soon",
    "SLIPSTREAM_TICK_WAIT_S": "soon",
    "SLIPSTREAM_TICK_WAIT_MAX_S": "inf",
    "SLIPSTREAM_SERVER_ID": "",
    "SLIPSTREAM_FRAMES_TOPIC": "frames topic",
    "SLIPSTREAM_EVENTS_TOPIC": "..",
    "SLIPSTREAM_WORKERS": "two",
    "SLIPSTREAM_TOKEN": "",
    "SLIPSTREAM_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "SLIPSTREAM_MAX_MESSAGE_BYTES": "64k",
    "SLIPSTREAM_MESSAGE_RATE": "fast",
    "SLIPSTREAM_MESSAGE_BURST": "-3",
    "SLIPSTREAM_MAX_SUBSCRIPTIONS": "many",
    "SLIPSTREAM_ALLOWED_ORIGINS": "fans.example.com",
    "SLIPSTREAM_GROUP_ID": " ",
    "SLIPSTREAM_ALLOWED_LATENESS_MS": "lots",
    "SLIPSTREAM_IDLE_FLUSH_MS": "0",
    "SLIPSTREAM_CARS_ALLOWED": "1-x",
    "SLIPSTREAM_SECRET": "too-short",
    "SLIPSTREAM_PREVIOUS_SECRETS": "short,also-short",
    "SLIPSTREAM_TOKEN_PUBLIC_KEYS": "/no/such/key.pub",
    "SLIPSTREAM_TOKEN_PRIVATE_KEY": "/no/such/key.pem",
    "SLIPSTREAM_EVENT_LOOP": "turbo",
    "SLIPSTREAM_TRUSTED_PROXIES": "the-load-balancer",
    "SLIPSTREAM_METRICS_PORT": "99999",
    "SLIPSTREAM_METRICS_HOST": " ",
    "SLIPSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS",
    "SLIPSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI",
    "SLIPSTREAM_KAFKA_SASL_USERNAME": " ",
    "SLIPSTREAM_KAFKA_SASL_PASSWORD": "",
    "SLIPSTREAM_KAFKA_SASL_PASSWORD_FILE": "/no/such/password",
    "SLIPSTREAM_KAFKA_SSL_CAFILE": "/no/such/ca.pem",
    "SLIPSTREAM_KAFKA_SSL_CERTFILE": "/no/such/cert.pem",
    "SLIPSTREAM_KAFKA_SSL_KEYFILE": "/no/such/key.pem",
    "SLIPSTREAM_KAFKA_CLIENT_ID": "",
}


def _declared() -> set[str]:
    return {name for options in DECLARED for name in options.env_names()}


def _source_files() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "static" not in path.parts
    ]


def test_every_variable_in_the_source_is_declared_and_tested() -> None:
    named = set()
    for path in _source_files():
        text = path.read_text()
        named |= {f"SLIPSTREAM_{m}" for m in re.findall(r'\benv="([A-Z0-9_]+)"', text)}
        named |= set(re.findall(r"\bSLIPSTREAM_[A-Z0-9_]*[A-Z0-9]", text))
    assert named - _declared() == set(), "variables named in the code but not declared"
    assert set(BAD) == _declared(), "declared variables without a bad-value case here"


def test_only_the_options_module_reads_the_environment() -> None:
    readers = set()
    for path in _source_files():
        text = path.read_text()
        if re.search(r"os\.environ\.get|os\.getenv|os\.environ\[", text):
            readers.add(str(path.relative_to(ROOT)))
    # The local cluster passes a variable through to the nodes it starts (which parse it);
    # the metrics set prometheus_client's own PROMETHEUS_MULTIPROC_DIR for the library.
    allowed = {"slipstream/options.py", "slipstream/app/cluster/local.py", "slipstream/metrics.py"}
    assert readers <= allowed, readers


def test_a_variable_sets_the_flag_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_TICK_WAIT_S", "2.5")
    monkeypatch.setenv("SLIPSTREAM_REPLAY_TICKS", "480")
    monkeypatch.setenv("SLIPSTREAM_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    args = build_parser().parse_args(["broadcast", "--kafka", "127.0.0.1:9092"])
    assert (args.tick_wait, args.replay_ticks) == (2.5, 480)
    assert LIMITS_OPTIONS.build(args).allowed_origins == ("https://a.example", "https://b.example")
    args = build_parser().parse_args(["run", "--tick-wait", "0.5"])  # a flag wins
    assert args.tick_wait == 0.5


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_variable_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    monkeypatch.setenv(name, BAD[name])
    assert main(["channels"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"slipstream: error: {name}: expected "), err
    assert repr(BAD[name]) in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["SLIPSTREAM_PARTITIONS", "SLIPSTREAM_PORT", "SLIPSTREAM_WORKERS"])
def test_the_process_exits_2(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slipstream", "run", "--help"],
        env={"PATH": "/usr/bin:/bin", name: BAD[name]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert name in result.stderr and "Traceback" not in result.stderr
