"""nginx in front of broadcast nodes: the configuration and the process.

* :func:`render_nginx_config` (pure) writes the nginx configuration used by
  the tests, by ``slipstream run --kafka ... --nodes N`` and shipped as
  ``deploy/nginx/slipstream.conf`` (``python -m slipstream.app.cluster`` prints it).
* :func:`proxy_read_timeout_s` (pure) is the one rule tying nginx's timeouts
  to the node's heartbeat and long-poll hold.
* :class:`Nginx` runs ``nginx -c FILE -p DIR`` in the foreground as the
  current user and stops it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import types
from dataclasses import dataclass
from pathlib import Path

from slipstream.processes import StartError, stop_process, wait_listening

__all__ = [
    "ClusterError",
    "Nginx",
    "NginxConfig",
    "find_nginx",
    "proxy_read_timeout_s",
    "render_nginx_config",
    "wait_listening",
]

log = logging.getLogger(__name__)


class ClusterError(StartError):
    """A process of the local deployment would not start, or died."""


#: Where Debian's package puts the binary (not on a normal user's PATH).
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def proxy_read_timeout_s(ping_interval_s: float, ping_timeout_s: float, poll_hold_s: float) -> int:
    """nginx's ``proxy_read_timeout`` for nodes with these settings.

    The proxy must never be the first to give up on a healthy fan: a live
    WebSocket carries a node ping at least every ``ping_interval_s`` and the
    node itself closes a dead peer after ``ping_interval_s + ping_timeout_s``;
    a held long-poll answers after ``poll_hold_s``.  The timeout is above all
    of these, with 10 s of margin, rounded up to whole seconds.
    """
    for name, value in (
        ("ping_interval_s", ping_interval_s),
        ("ping_timeout_s", ping_timeout_s),
        ("poll_hold_s", poll_hold_s),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    return math.ceil(max(ping_interval_s + ping_timeout_s, poll_hold_s) + 10.0)


@dataclass(frozen=True, slots=True)
class NginxConfig:
    """What :func:`render_nginx_config` needs.

    Attributes:
        listen: ``HOST:PORT`` nginx listens on for fans.
        nodes: ``HOST:PORT`` of every broadcast node.
        prefix: Directory for the pid file, logs and temp paths (nginx ``-p``).
        ping_interval_s: The nodes' ``--ping-interval``.
        ping_timeout_s: The nodes' ``--ping-timeout``.
        poll_hold_s: The nodes' ``--poll-hold``.
        worker_processes: nginx workers (``auto`` = one per core).
        worker_connections: Connections per nginx worker; a proxied fan
            takes two (fan side and node side).
        open_files: ``worker_rlimit_nofile`` (at most the hard limit).
        access_log: Log every request (off under load: it is one line per poll).
        daemon: Run nginx in the background (False for tests and supervisors).
    """

    listen: str
    nodes: tuple[str, ...]
    prefix: str
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    poll_hold_s: float = 25.0
    worker_processes: str = "auto"
    worker_connections: int = 19000
    open_files: int = 20000
    access_log: bool = False
    daemon: bool = False

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("nginx needs at least one broadcast node")
        for address in (self.listen, *self.nodes):
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected HOST:PORT, got {address!r}")
        if self.worker_connections < 16 or self.open_files < self.worker_connections:
            raise ValueError("worker_connections must be >= 16 and <= open_files")


def render_nginx_config(config: NginxConfig) -> str:
    """The nginx configuration for ``config`` (a whole ``nginx.conf``)."""
    timeout = proxy_read_timeout_s(
        config.ping_interval_s, config.ping_timeout_s, config.poll_hold_s
    )
    p = config.prefix.rstrip("/")
    servers = "\n".join(
        f"        server {node} max_fails=3 fail_timeout=5s;" for node in config.nodes
    )
    access = f"access_log {p}/access.log;" if config.access_log else "access_log off;"
    return f"""\
# Slipstream: fans -> nginx -> broadcast nodes (docs/deploy.md).
# Any node serves any fan: ticks and cursors come from the data, so no stickiness.
daemon {"on" if config.daemon else "off"};
worker_processes {config.worker_processes};
worker_rlimit_nofile {config.open_files};
pid {p}/nginx.pid;
error_log {p}/error.log warn;

events {{
    # A proxied fan holds two connections: the fan's and the one to its node.
    worker_connections {config.worker_connections};
    multi_accept on;
}}

http {{
    {access}
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;

    # WebSocket upgrade: pass "Upgrade" on, and "Connection: upgrade" only when asked.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    upstream slipstream_nodes {{
        # Fans stay connected for hours: balance by open connections, not requests.
        least_conn;
{servers}
        keepalive 64;
    }}

    server {{
        listen {config.listen} reuseport backlog=4096;

        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;

        # Above the node's ping interval + ping timeout ({config.ping_interval_s:g} + \
{config.ping_timeout_s:g} s) and its long-poll hold ({config.poll_hold_s:g} s):
        # nginx never closes a healthy fan; the node's heartbeat finds dead ones.
        proxy_read_timeout {timeout}s;
        proxy_send_timeout {timeout}s;
        send_timeout {timeout}s;
        proxy_connect_timeout 2s;

        # A node that is down or refuses (starting, full): try the next one.
        # A fan's cursor makes the retry safe; a held poll is never re-sent mid-answer.
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 3;

        # Ticks are small and frequent: no buffering between node and fan.
        proxy_buffering off;
        tcp_nodelay on;

        location / {{
            proxy_pass http://slipstream_nodes;
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    """Path of the nginx binary (PATH first, then Debian's /usr/sbin), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class Nginx:
    """nginx in the foreground with a rendered config in a directory of its own.

    Args:
        config: What to render; ``config.prefix`` is created if missing.
        binary: The nginx executable (default :func:`find_nginx`).

    Use as ``with Nginx(config) as proxy: ...``; :meth:`stop` is graceful
    (SIGQUIT: open connections are finished) unless ``fast``.
    """

    def __init__(self, config: NginxConfig, binary: str | None = None) -> None:
        if config.daemon:
            raise ValueError("Nginx runs nginx in the foreground: daemon must be False")
        self.config = config
        self.binary = binary or find_nginx()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        """The rendered ``nginx.conf``."""
        return Path(self.config.prefix) / "nginx.conf"

    def error_log(self) -> str:
        """nginx's error log so far (for failure messages)."""
        path = Path(self.config.prefix) / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start(self, timeout_s: float = 10.0) -> None:
        """Write the config, check it (``nginx -t``), start nginx and wait until it listens.

        Raises:
            ClusterError: nginx is missing, rejects the config or does not listen.
        """
        if self.binary is None:
            raise ClusterError("nginx is not installed (Debian: apt-get install nginx)")
        prefix = Path(self.config.prefix)
        prefix.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(render_nginx_config(self.config))
        base = [self.binary, "-p", str(prefix), "-e", str(prefix / "error.log")]
        check = subprocess.run(
            [*base, "-t", "-c", str(self.conf_path)], capture_output=True, check=False
        )
        if check.returncode != 0:
            raise ClusterError(f"nginx rejected {self.conf_path}: {check.stderr.decode()}")
        self.process = subprocess.Popen(
            [*base, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        host, _, port = self.config.listen.rpartition(":")
        try:
            wait_listening(host, int(port), timeout_s, self.process)
        except StartError as exc:
            self.stop(fast=True)
            raise ClusterError(f"{exc}; nginx error log:\n{self.error_log()}") from None
        log.info("nginx listening on %s for %d node(s)", self.config.listen, len(self.config.nodes))

    def stop(self, timeout_s: float = 10.0, *, fast: bool = False) -> None:
        """Stop nginx (SIGQUIT, or SIGTERM when ``fast``; SIGKILL after ``timeout_s``)."""
        process, self.process = self.process, None
        stop_process(process, timeout_s, signal.SIGTERM if fast else signal.SIGQUIT)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop(fast=True)
