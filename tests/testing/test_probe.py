"""probe() against things that are not Kafka brokers (the real one is in test_broker.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from slipstream.testing.broker import BrokerError
from slipstream.testing.broker import probe as broker_probe
from slipstream.testing.probe import ProtocolError, probe


def _serve_once(answer: bytes) -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer_one() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(answer)

        thread = threading.Thread(target=answer_one, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        thread.join(10)


@pytest.fixture
def http_server() -> Iterator[int]:
    yield from _serve_once(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def short_answer_server() -> Iterator[int]:
    # A plausible length, then the connection closes early.
    yield from _serve_once(b"\x00\x00\x00\x10\x00\x00")


def test_http_server_is_not_kafka(http_server: int) -> None:
    with pytest.raises(ProtocolError, match=r"not \d+ bytes long"):
        probe("127.0.0.1", http_server, timeout_s=5)


def test_broker_probe_reports_broker_error(http_server: int) -> None:
    with pytest.raises(BrokerError):
        broker_probe("127.0.0.1", http_server, timeout_s=5)


def test_truncated_answer(short_answer_server: int) -> None:
    with pytest.raises(ConnectionError):
        probe("127.0.0.1", short_answer_server, timeout_s=5)


def test_nothing_listening() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        probe("127.0.0.1", port, timeout_s=5)
