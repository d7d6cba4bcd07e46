"""``python -m slipstream.app.cluster``: print the nginx configuration for a set of nodes.

Example (the file shipped as deploy/nginx/slipstream.conf)::

    python -m slipstream.app.cluster --listen 0.0.0.0:80 --prefix /var/lib/slipstream-nginx \\
        --node 10.0.0.11:8000 --node 10.0.0.12:8000 --daemon > /etc/nginx/nginx.conf
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from slipstream.app.cluster.nginx import NginxConfig, render_nginx_config


def main(argv: Sequence[str] | None = None) -> int:
    """Print the configuration; exit 2 on bad arguments."""
    d = NginxConfig("127.0.0.1:8000", ("127.0.0.1:8001",), "/tmp")
    parser = argparse.ArgumentParser(
        prog="python -m slipstream.app.cluster",
        description="Print an nginx.conf that spreads fans over broadcast nodes, passes "
        "WebSocket upgrades and long-polls, and times out only after the nodes' heartbeat "
        "and poll hold (docs/deploy.md).",
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="where fans connect")
    parser.add_argument(
        "--node", action="append", required=True, metavar="HOST:PORT",
        help="a broadcast node (repeat for each)",
    )  # fmt: skip
    parser.add_argument(
        "--prefix", required=True, metavar="DIR",
        help="directory for nginx's pid file, logs and temp files",
    )  # fmt: skip
    parser.add_argument(
        "--ping-interval", type=float, default=d.ping_interval_s, metavar="S",
        help=f"the nodes' --ping-interval (default {d.ping_interval_s:g})",
    )  # fmt: skip
    parser.add_argument(
        "--ping-timeout", type=float, default=d.ping_timeout_s, metavar="S",
        help=f"the nodes' --ping-timeout (default {d.ping_timeout_s:g})",
    )  # fmt: skip
    parser.add_argument(
        "--poll-hold", type=float, default=d.poll_hold_s, metavar="S",
        help=f"the nodes' --poll-hold (default {d.poll_hold_s:g})",
    )  # fmt: skip
    parser.add_argument(
        "--worker-connections", type=int, default=d.worker_connections, metavar="N",
        help=f"per nginx worker, a proxied fan takes 2 (default {d.worker_connections})",
    )  # fmt: skip
    parser.add_argument(
        "--open-files", type=int, default=d.open_files, metavar="N",
        help=f"worker_rlimit_nofile (default {d.open_files})",
    )  # fmt: skip
    parser.add_argument("--daemon", action="store_true", help="let nginx run in the background")
    args = parser.parse_args(argv)
    try:
        config = NginxConfig(
            args.listen, tuple(args.node), args.prefix,
            ping_interval_s=args.ping_interval, ping_timeout_s=args.ping_timeout,
            poll_hold_s=args.poll_hold, worker_connections=args.worker_connections,
            open_files=args.open_files, daemon=args.daemon,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(render_nginx_config(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
