"""TansuBroker: a real broker process, started, probed and stopped."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from slipstream.testing import unique_name
from slipstream.testing.broker import BrokerError, TansuBroker, broker_binary, free_port, probe

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.kafka
def test_start_probe_stop() -> None:
    broker = TansuBroker()
    with pytest.raises(BrokerError, match="not started"):
        _ = broker.bootstrap
    with broker:
        host, port = broker.bootstrap.split(":")
        assert host == "127.0.0.1" and int(port) == broker.port
        assert ("127.0.0.1", broker.port) in probe("127.0.0.1", broker.port)
        assert broker.running
        with pytest.raises(BrokerError, match="already started"):
            broker.start()
    assert not broker.running
    with pytest.raises(OSError):
        probe("127.0.0.1", broker.port, timeout_s=1.0)


@pytest.mark.kafka
def test_port_in_use_is_refused() -> None:
    # Tansu itself would share a port with another Tansu (SO_REUSEPORT).
    with TansuBroker() as first, pytest.raises(BrokerError, match="already in use"):
        TansuBroker(first.port).start()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(BrokerError, match="already in use"):
            TansuBroker(listener.getsockname()[1]).start()


def test_binary_that_exits_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "fake-broker"
    fake.write_text("#!/bin/sh\necho 'cannot start: out of luck' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match=r"code 3(.|\n)*out of luck"):
        TansuBroker(free_port(), binary=str(fake)).start()


def test_missing_binary_is_reported(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="cannot run"):
        TansuBroker(binary=str(tmp_path / "nothing")).start()


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        TansuBroker(70000)
    with pytest.raises(ValueError):
        TansuBroker(start_timeout_s=0)
    with pytest.raises(ValueError, match="advertised_port"):
        TansuBroker(advertised_port=0)


@pytest.mark.kafka
def test_a_broker_can_advertise_another_address() -> None:
    """In front of a proxy: clients get the proxy's address, the broker listens on its own."""
    proxy_port = free_port()
    with TansuBroker(advertised_port=proxy_port) as broker:
        assert broker.bootstrap == f"127.0.0.1:{proxy_port}" and broker.port != proxy_port
        assert probe("127.0.0.1", broker.port) == [("127.0.0.1", proxy_port)]


def test_binary_comes_from_the_installed_wheel() -> None:
    path = broker_binary()
    assert os.access(path, os.X_OK)


def test_binary_without_a_writable_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file as HOME: ~/.calfkit/bin cannot be created, not even by root.
    home = tmp_path / "home"
    home.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CALF_TANSU_BIN", raising=False)
    path = broker_binary()
    assert os.access(path, os.X_OK)
    assert not path.startswith(str(home))


def test_unique_names_differ_and_are_valid_topics() -> None:
    names = {unique_name("raw") for _ in range(100)}
    assert len(names) == 100
    assert all(
        n.startswith("raw.") and n.replace(".", "").replace("-", "").isalnum() for n in names
    )


@pytest.mark.kafka
def test_module_runs_a_broker_until_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "slipstream.testing.broker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        bootstrap = process.stdout.readline().strip()
        host, port = bootstrap.split(":")
        assert ("127.0.0.1", int(port)) in probe(host, int(port))
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(OSError):
        probe(host, int(port), timeout_s=1.0)


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    """Wait for a process that is not our child to exit (pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(fd)


_FORGETFUL_OWNER = """
import os, signal, sys
from slipstream.testing.broker import TansuBroker
broker = TansuBroker()
broker.start()
print(broker._process.pid, broker.port, flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.kafka
@pytest.mark.parametrize("how", ["exit", "kill"])
def test_broker_dies_with_an_owner_that_forgot_it(how: str) -> None:
    # "exit": the interpreter ends normally (atexit); "kill": SIGKILL (the
    # kernel's parent-death signal).
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    owner = subprocess.run(
        [sys.executable, "-c", _FORGETFUL_OWNER, how],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    pid, port = (int(word) for word in owner.stdout.split())
    assert _wait_for_exit(pid, 10.0), f"broker {pid} outlived its owner ({how})"
    with pytest.raises(OSError):
        probe("127.0.0.1", port, timeout_s=1.0)
