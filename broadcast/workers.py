"""``slipstream broadcast --workers N``: N node processes sharing one port.

Each worker is a full broadcast node (its own Kafka reader of every
partition, replay ring and fans); they listen on the same address with
``SO_REUSEPORT``, so the kernel spreads new connections over them.  One host
then uses all its cores and holds more fans than one process may open files
(docs/deploy.md).  Ticks and cursors come from the data, so a fan may resume
on any worker, as on any node.

The parent only supervises: it reserves the port, starts the workers
(``spawn``: no event loop or socket is inherited), restarts a worker that
dies after it was serving, and stops them all on SIGTERM/SIGINT.  A worker
that dies before it ever served (bad flags, broker unreachable, port taken)
stops the whole group with exit code 1.

Metrics: the workers keep them in one directory of the node
(``<tmp>/slipstream-metrics-<host>-<port>``, emptied at start, removed at stop;
``prometheus_client``'s multiprocess mode), so a scrape of ``/metrics`` (and
the ``/ops`` page), whichever worker answers, shows the whole node.  The
parent marks a dead worker's live gauges gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import queue
import shutil
import signal
import socket
import tempfile
import time
import types
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from pathlib import Path

from broadcast.config import BroadcastConfig
from broadcast.server import BroadcastServer
from slipstream.auth import AuthConfig
from slipstream.bus import make_bus
from slipstream.config import BusConfig
from slipstream.errors import ConfigError
from slipstream.gate import Gate
from slipstream.limits import LimitsConfig
from slipstream.logs import configure_logging
from slipstream.loop import run as run_loop
from slipstream.metrics import Registry, forget_process, prepare_multiprocess_dir

__all__ = ["MAX_WORKERS", "run_workers"]

logger = logging.getLogger(__name__)

#: More workers than this is a typo, not a deployment.
MAX_WORKERS = 256
#: A restarted worker waits this long first, so a crash loop does not spin.
RESTART_DELAY_S = 1.0


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) ``host:port`` with SO_REUSEPORT; port 0 picks one.

    Held until the workers listen: it keeps the port from anyone who binds
    without SO_REUSEPORT, and tells every worker the same port.  A bound
    socket that does not listen is given no connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
        ) from None
    return sock


def _worker_main(
    index: int,
    bus_config: BusConfig,
    config: BroadcastConfig,
    gate: tuple[AuthConfig | None, LimitsConfig | None],
    log_level: str,
    log_format: str,
    ready: Queue[int],
    metrics_dir: Path,
) -> None:
    """Entry point of one worker process (spawned)."""

    configure_logging(log_level, log_format)
    # SIGINT from a terminal reaches the whole process group: the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Each worker enforces the limits on its own connections.
    run_loop(_serve(index, bus_config, config, Gate(*gate), ready, metrics_dir), config.event_loop)


async def _serve(
    index: int,
    bus_config: BusConfig,
    config: BroadcastConfig,
    gate: Gate,
    ready: Queue[int],
    metrics_dir: Path,
) -> None:

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    registry = Registry(multiprocess_dir=metrics_dir)
    bus = make_bus(bus_config)
    await bus.start()
    try:
        async with BroadcastServer(config, bus, registry, gate=gate):
            ready.put(index)
            await stop.wait()
    finally:
        await bus.stop()
        registry.close()


class _Supervisor:
    def __init__(
        self,
        bus_config: BusConfig,
        config: BroadcastConfig,
        workers: int,
        gate: Gate | None,
        log_level: str,
        log_format: str,
    ) -> None:
        self.context = multiprocessing.get_context("spawn")
        # Configs cross the process boundary; each worker builds its own Gate.
        self.gate = (gate.auth, gate.limits) if gate is not None else (None, None)
        self.bus_config = bus_config
        self.config = config
        self.log = (log_level, log_format)
        self.ready: Queue[int] = self.context.Queue()
        self.processes: dict[int, SpawnProcess] = {}
        self.served: set[int] = set()
        self.count = workers
        self.stopping = False
        base = config.server_id or "node"
        self.ids = [f"{base}-w{i + 1}" for i in range(workers)]
        # One directory per listening address: two nodes on one host never share it.
        where = f"{config.host}-{config.port}".replace("/", "_")
        self.metrics_dir = Path(tempfile.gettempdir()) / f"slipstream-metrics-{where}"

    def spawn(self, index: int) -> None:
        config = dataclasses.replace(self.config, server_id=self.ids[index], reuse_port=True)
        process = self.context.Process(
            target=_worker_main,
            args=(
                index,
                self.bus_config,
                config,
                self.gate,
                *self.log,
                self.ready,
                self.metrics_dir,
            ),
            name=f"slipstream-broadcast-w{index + 1}",
        )
        process.start()
        self.processes[index] = process
        logger.info("worker %s started (pid %s)", self.ids[index], process.pid)

    def drain_ready(self) -> None:
        while True:
            try:
                index = self.ready.get_nowait()
            except queue.Empty:
                return
            if index not in self.served:
                self.served.add(index)
                logger.info("worker %s serving", self.ids[index])

    def on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        self.stopping = True

    def run(self, reservation: socket.socket) -> int:
        prepare_multiprocess_dir(self.metrics_dir)
        try:
            return self._run(reservation)
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _run(self, reservation: socket.socket) -> int:
        for index in range(self.count):
            self.spawn(index)
        code = 0
        restart_at: dict[int, float] = {}
        while not self.stopping:
            # Woken by a worker exiting; otherwise a few times a second for signals.
            wait([p.sentinel for p in self.processes.values()], timeout=0.2)
            self.drain_ready()
            if reservation.fileno() >= 0 and len(self.served) == self.count:
                reservation.close()  # every worker listens: the port is theirs
            now = time.monotonic()
            for index, process in list(self.processes.items()):
                if process.is_alive() or index in restart_at:
                    continue
                if process.pid is not None:  # its gauges (fans, memory) are gone with it
                    forget_process(process.pid, self.metrics_dir)
                if index not in self.served:
                    logger.error(
                        "worker %s exited with code %s before serving; stopping",
                        self.ids[index], process.exitcode,
                    )  # fmt: skip
                    self.stopping, code = True, 1
                    break
                logger.warning(
                    "worker %s exited with code %s; restarting it in %g s",
                    self.ids[index], process.exitcode, RESTART_DELAY_S,
                )  # fmt: skip
                self.served.discard(index)
                restart_at[index] = now + RESTART_DELAY_S
            for index, when in list(restart_at.items()):
                if now >= when and not self.stopping:
                    del restart_at[index]
                    self.spawn(index)
        self.stop_all()
        return code

    def stop_all(self, timeout_s: float = 10.0) -> None:
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
        for process in self.processes.values():
            process.join(timeout_s)
            if process.is_alive():
                process.kill()
                process.join()
        self.ready.close()
        logger.info("all %d workers stopped", len(self.processes))


def run_workers(
    bus_config: BusConfig,
    config: BroadcastConfig,
    workers: int,
    *,
    gate: Gate | None = None,
    log_level: str = "info",
    log_format: str = "human",
) -> int:
    """Run ``workers`` node processes on ``config.host:config.port`` until SIGTERM/SIGINT.

    Worker ``i`` (from 1) is named ``<server_id or "node">-w<i>``.  Port 0
    picks one free port for all of them (logged).  Every worker enforces
    ``gate``'s auth and limits (per-address limits count per worker).

    Returns:
        0 after a clean stop; 1 when a worker died before it served.

    Raises:
        ConfigError: ``workers`` out of range or the port cannot be bound.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be in 1..{MAX_WORKERS}, got {workers}")
    reservation = _reserve_port(config.host, config.port)
    port = reservation.getsockname()[1]
    supervisor = _Supervisor(
        bus_config, dataclasses.replace(config, port=port), workers, gate, log_level, log_format
    )
    previous = {
        sig: signal.signal(sig, supervisor.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    logger.info("%d broadcast workers sharing %s:%d", workers, config.host, port)
    try:
        return supervisor.run(reservation)
    finally:
        with contextlib.suppress(OSError):
            reservation.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
