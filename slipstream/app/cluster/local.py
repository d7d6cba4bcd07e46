"""A local multi-process deployment: simulator, downsamplers, N nodes, nginx.

:class:`LocalCluster` starts them as child processes of this one, and
:func:`run_cluster` is ``slipstream run --kafka HOST:PORT --nodes N``.

A child that dies is reported and started again, after a delay that doubles
with each quick death (:class:`Backoff`), on the same port, so nginx sends
fans to it again; the others keep serving meanwhile.  Only nginx dying, or
Ctrl-C / SIGTERM, stops the deployment.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from broadcast.config import add_broadcast_arguments
from downsample.config import add_downsample_arguments
from simulator.config import add_simulator_arguments
from slipstream.app.cluster.nginx import (
    Nginx,
    NginxConfig,
    find_nginx,
    wait_listening,
)
from slipstream.errors import ConfigError
from slipstream.kafka_settings import KafkaClientSettings
from slipstream.processes import StartError

__all__ = ["Backoff", "LocalCluster", "flags_from", "run_cluster"]

log = logging.getLogger(__name__)


def flags_from(
    args: argparse.Namespace,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    skip: Sequence[str] = (),
) -> list[str]:
    """The flags of ``add_arguments`` whose values in ``args`` differ from their defaults.

    Rebuilds a child process's command line from a parsed ``slipstream run``,
    e.g. the simulator's flags for ``slipstream simulate``.  ``skip`` lists
    flags the caller sets itself (``--port``).
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    out: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.option_strings[0] in skip:
            continue
        if not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        if action.nargs == 0:
            out.append(flag)  # store_true / store_false
        elif isinstance(value, (list, tuple)):
            out += [flag, ",".join(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before starting a dead child again.

    Attributes:
        initial_s: Delay after a child that had run for ``stable_s`` or more.
        max_s: Longest delay.
        stable_s: A child up this long is healthy again: its delay resets.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("Backoff needs 0 < initial_s <= max_s")

    def delay_s(self, previous_s: float | None, uptime_s: float) -> float:
        """The delay after a death following ``uptime_s`` of running.

        Args:
            previous_s: The delay before this run of the child; None at its first death.
            uptime_s: How long it ran this time.
        """
        if previous_s is None or uptime_s >= self.stable_s:
            return self.initial_s
        return min(self.max_s, previous_s * 2)


@dataclass(slots=True)
class _Child:
    """A supervised child: how to start it and its restart state."""

    args: list[str]
    env: dict[str, str]
    started_at: float
    restarts: int = 0
    delay_s: float | None = None
    restart_at: float | None = None


@dataclass(slots=True)
class LocalCluster:
    """A simulator, downsamplers (one group), N broadcast nodes and nginx on this host.

    Args:
        kafka: Kafka bootstrap ``HOST:PORT[,HOST:PORT...]``.
        nodes: Broadcast nodes.
        downsamplers: Downsample processes (one consumer group).
        host: Address every process binds.
        port: nginx's port, the fans' entry (0: a free one); the nodes take
            free ports.
        simulate_args: Extra flags of ``slipstream simulate``.
        downsample_args: Extra flags of every ``slipstream downsample``.
        node_args: Extra flags of every ``slipstream broadcast``.
        nginx_prefix: Where nginx's files go (a temp dir if None).
        kafka_client: TLS and SASL settings passed on to every child.
        backoff: Restart delays of children that die.
    """

    kafka: str
    nodes: int = 2
    downsamplers: int = 2
    host: str = "127.0.0.1"
    port: int = 8000
    simulate_args: Sequence[str] = ()
    downsample_args: Sequence[str] = ()
    node_args: Sequence[str] = ()
    nginx_prefix: str | None = None
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    poll_hold_s: float = 25.0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    node_ports: list[int] = field(default_factory=list)
    nginx: Nginx | None = None
    kafka_client: KafkaClientSettings | None = None
    backoff: Backoff = field(default_factory=Backoff)
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _children: dict[str, _Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.downsamplers < 1:
            raise ValueError("a deployment needs at least one node and one downsampler")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port}")

    @property
    def url(self) -> str:
        """Where fans connect (nginx)."""
        return f"http://{self.host}:{self.port}"

    def _spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        env = {**(self.kafka_client.child_env() if self.kafka_client else {}), **(env or {})}
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "slipstream", *args],
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
        child = self._children.get(name)
        if child is None:
            self._children[name] = _Child(list(args), env, time.monotonic())
        else:
            child.started_at, child.restart_at = time.monotonic(), None
        log.info("started %s (pid %d)", name, self.processes[name].pid)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the nodes, then nginx in front of them, the downsamplers and the simulator.

        Raises:
            ClusterError: A process died or a port never opened.
        """
        client = self.kafka_client or KafkaClientSettings.plaintext(self.kafka)
        kafka = client.with_bootstrap(self.kafka).to_argv()
        self.port = self.port or _free_port(self.host)
        self.node_ports = [_free_port(self.host) for _ in range(self.nodes)]
        for i, port in enumerate(self.node_ports):
            self._spawn(
                f"broadcast-{i + 1}",
                ["broadcast", *kafka, "--host", self.host, "--port", str(port),
                 "--server-id", f"node-{i + 1}", *self.node_args],
                # Every fan reaches the nodes from nginx's address: the per-address
                # cap belongs on the proxy (docs/deploy.md), unless the user set one.
                {"SLIPSTREAM_MAX_CONNECTIONS_PER_ADDRESS":
                 os.environ.get("SLIPSTREAM_MAX_CONNECTIONS_PER_ADDRESS", "1000000")},
            )  # fmt: skip
        for i in range(self.downsamplers):
            self._spawn(f"downsample-{i + 1}", ["downsample", *kafka, *self.downsample_args])
        for i, port in enumerate(self.node_ports):
            wait_listening(self.host, port, timeout_s, self.processes[f"broadcast-{i + 1}"])
        if self.nginx_prefix is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="slipstream-nginx-")
            self.nginx_prefix = self._tmp.name
        nodes = tuple(f"{self.host}:{port}" for port in self.node_ports)
        self.nginx = Nginx(
            NginxConfig(
                f"{self.host}:{self.port}", nodes, self.nginx_prefix,
                ping_interval_s=self.ping_interval_s, ping_timeout_s=self.ping_timeout_s,
                poll_hold_s=self.poll_hold_s,
            )
        )  # fmt: skip
        self.nginx.start()
        self._spawn("simulate", ["simulate", *kafka, *self.simulate_args])

    def failed(self) -> str | None:
        """What has died, if anything (a simulator that finished its race has not)."""
        for name, process in self.processes.items():
            if process.poll() is not None and not (name == "simulate" and process.returncode == 0):
                return f"{name} exited with code {process.returncode}"
        return self.nginx_failed()

    def nginx_failed(self) -> str | None:
        """Why nginx is gone, if it is."""
        nginx = self.nginx
        if nginx is not None and nginx.process is not None and nginx.process.poll() is not None:
            return f"nginx exited: {nginx.error_log()}"
        return None

    def pid(self, name: str) -> int:
        """The process id of child ``name`` (``broadcast-1`` ...)."""
        return self.processes[name].pid

    def restarts(self, name: str) -> int:
        """How often child ``name`` has been started again."""
        child = self._children.get(name)
        return child.restarts if child is not None else 0

    def supervise(self, now: float) -> list[str]:
        """Restart children that died, once their delay is over.

        Call a few times a second with ``time.monotonic()``.  A simulator that
        finished its race is left alone.  Returns what happened, one line each.
        """
        report: list[str] = []
        for name, process in list(self.processes.items()):
            code = process.poll()
            child = self._children[name]
            if code is None or (name == "simulate" and code == 0):
                continue
            if child.restart_at is None:
                uptime_s = now - child.started_at
                child.delay_s = self.backoff.delay_s(child.delay_s, uptime_s)
                child.restart_at = now + child.delay_s
                report.append(
                    f"{name} (pid {process.pid}) exited with code {code} after "
                    f"{uptime_s:.1f} s; restarting it in {child.delay_s:g} s"
                )
            elif now >= child.restart_at:
                child.restarts += 1
                self._spawn(name, child.args, child.env)
                report.append(
                    f"{name} restarted (pid {self.processes[name].pid}, restart {child.restarts})"
                )
        return report

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every process (nginx first), wait, SIGKILL stragglers."""
        if self.nginx is not None:
            self.nginx.stop(fast=True)
            self.nginx = None
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self._children.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def run_cluster(args: argparse.Namespace) -> int:
    """``slipstream run --kafka HOST:PORT --nodes N``: a local deployment until Ctrl-C.

    Starts ``N`` broadcast nodes, ``N`` downsamplers in one consumer group,
    one simulator and nginx on ``--port`` in front of the nodes.

    Raises:
        ConfigError: No ``--kafka``, ``--replay`` given, or nginx is missing.
    """

    if not args.kafka:
        raise ConfigError("--nodes needs --kafka HOST:PORT: the nodes share the race through Kafka")
    if getattr(args, "replay", None) is not None:
        raise ConfigError("--replay runs in one process: drop --nodes, or use --nodes 1")
    if find_nginx() is None:
        raise ConfigError("--nodes puts nginx in front of the nodes: apt-get install nginx")
    client = KafkaClientSettings.from_args(args)
    cluster = LocalCluster(
        args.kafka, kafka_client=client,
        nodes=args.nodes, downsamplers=args.nodes, host=args.host, port=args.port,
        simulate_args=flags_from(args, add_simulator_arguments),
        downsample_args=flags_from(args, add_downsample_arguments),
        node_args=flags_from(args, add_broadcast_arguments, ("--host", "--port", "--server-id")),
        ping_interval_s=args.ping_interval, ping_timeout_s=args.ping_timeout,
        poll_hold_s=args.poll_hold,
    )  # fmt: skip
    stopping = False

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            cluster.start()
        except StartError as exc:  # nginx's ClusterError, or a node that never listened
            raise ConfigError(str(exc)) from None
        nodes = ", ".join(f"{cluster.host}:{p}" for p in cluster.node_ports)
        pids = " ".join(
            f"node-{i} pid {cluster.pid(f'broadcast-{i}')}" for i in range(1, args.nodes + 1)
        )
        sys.stdout.write(
            f"slipstream run: {args.nodes} nodes ({nodes}) behind nginx on {cluster.url}\n"
            f"  processes   {pids}\n"
            f"  dashboard   {cluster.url}\n"
            f"  websocket   ws://{cluster.host}:{cluster.port}/ws\n"
            f"  try:        slipstream subscribe {cluster.url} --count 20 --json\n"
            "Press Ctrl-C to stop.\n"
        )
        sys.stdout.flush()
        while not stopping:
            failure = cluster.nginx_failed()
            if failure is not None:
                sys.stderr.write(f"slipstream run: {failure}; stopping\n")
                return 1
            for line in cluster.supervise(time.monotonic()):
                sys.stderr.write(f"slipstream run: {line}\n")
                sys.stderr.flush()
            # Checked a few times a second; the signal handler only sets a flag.
            time.sleep(0.2)
        return 0
    finally:
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.stderr.write("slipstream run: stopped\n")
