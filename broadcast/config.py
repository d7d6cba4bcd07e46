"""Configuration of a broadcast node (flags and ``SLIPSTREAM_*`` variables)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from slipstream.codecs import CODECS, DEFAULT_CODEC
from slipstream.config import EVENTS_TOPIC, FRAMES_TOPIC, env, env_int, env_number
from slipstream.errors import ConfigError
from slipstream.loop import EVENT_LOOPS
from slipstream.proxies import TrustedProxies

__all__ = ["BroadcastConfig", "add_broadcast_arguments"]


@dataclass(frozen=True, slots=True)
class BroadcastConfig:
    """How a broadcast node serves fans.

    Attributes:
        host: Address to bind.
        port: Port to bind (0 picks a free one; see ``BroadcastServer.port``).
        ping_interval_s: WebSocket keepalive ping interval.
        ping_timeout_s: A peer that does not answer a ping within this is closed.
        close_timeout_s: How long a closing handshake may take before the
            connection is aborted.
        replay_ticks: Ticks kept in the replay ring (240 = 2 minutes at 2 Hz).
        history_ticks: Most ticks a resume re-reads from the bus beyond the
            ring (7200 = 1 hour); 0 disables resuming from the bus.
        default_codec: Codec of a subscription that names none (the codec
            benchmark's choice, ``slipstream.codecs.DEFAULT_CODEC``; docs/codecs.md).
        poll_hold_s: How long ``GET /v1/poll`` holds a request with nothing new.
        max_send_buffer_bytes: A connection whose unsent bytes exceed this is
            behind: its deltas are dropped and it gets the next keyframe.
        slow_fan_ticks: A connection behind for this many ticks in a row is
            closed (code 4008).
        tick_wait_s: Wait for a tick's missing cars before the tick is emitted
            without them, while the pipeline keeps pace.
        tick_wait_max_s: Longest the wait grows to while frames come late
            (docs/protocol.md, tick assembly).
        max_message_bytes: Largest client message accepted (close 1009 beyond).
        max_errors: Bad client messages tolerated before the connection is
            closed (code 1008).
        server_id: Name of this node in the hello (default: a random id).
        socket_send_buffer_bytes: Kernel send buffer of each accepted socket
            (SO_SNDBUF), so a stalled fan holds at most this much kernel memory
            (Linux would otherwise grow it to ``tcp_wmem`` max, often 4 MiB);
            None leaves the kernel's autotuning alone.
        frames_topic: Topic of the 2 Hz frames.
        events_topic: Topic of the race events.
        reuse_port: Listen with SO_REUSEPORT, sharing the port with other
            workers (set by ``slipstream broadcast --workers N``).
        event_loop: ``auto`` (uvloop when installed), ``uvloop`` or ``asyncio``
            (see :mod:`slipstream.loop`).
        trusted_proxies: Networks (CIDR) of the proxies whose ``Forwarded`` /
            ``X-Forwarded-For`` name the fan; from any other peer they are ignored.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 5.0
    replay_ticks: int = 240
    history_ticks: int = 7200
    default_codec: str = DEFAULT_CODEC
    poll_hold_s: float = 25.0
    max_send_buffer_bytes: int = 1 << 20
    slow_fan_ticks: int = 20
    tick_wait_s: float = 1.0
    tick_wait_max_s: float = 10.0
    max_message_bytes: int = 64 * 1024
    max_errors: int = 10
    server_id: str | None = None
    socket_send_buffer_bytes: int | None = 256 * 1024
    frames_topic: str = FRAMES_TOPIC
    events_topic: str = EVENTS_TOPIC
    reuse_port: bool = False
    event_loop: str = "auto"
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        for name in ("ping_interval_s", "ping_timeout_s", "close_timeout_s", "poll_hold_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.tick_wait_s < 0:
            raise ConfigError("tick_wait_s must be >= 0")
        if self.tick_wait_max_s < self.tick_wait_s:
            raise ConfigError(
                f"--tick-wait-max ({self.tick_wait_max_s:g}) must be >= --tick-wait "
                f"({self.tick_wait_s:g})"
            )
        if self.replay_ticks < 1:
            raise ConfigError("replay_ticks must be at least 1")
        if self.history_ticks < 0:
            raise ConfigError("history_ticks must be >= 0")
        if self.max_send_buffer_bytes < 1024:
            raise ConfigError("max_send_buffer_bytes must be at least 1024")
        if self.slow_fan_ticks < 1 or self.max_errors < 1:
            raise ConfigError("slow_fan_ticks and max_errors must be at least 1")
        if self.max_message_bytes < 256:
            raise ConfigError("max_message_bytes must be at least 256")
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"unknown event loop {self.event_loop!r}; expected one of {', '.join(EVENT_LOOPS)}"
            )
        TrustedProxies.parse(self.trusted_proxies)  # ConfigError on a bad value
        if self.default_codec not in CODECS:
            raise ConfigError(
                f"unknown default codec {self.default_codec!r}; known: {', '.join(CODECS)}"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BroadcastConfig:
        """Build from the flags added by :func:`add_broadcast_arguments`."""
        return cls(
            host=args.host,
            port=args.port,
            ping_interval_s=args.ping_interval,
            ping_timeout_s=args.ping_timeout,
            replay_ticks=args.replay_ticks,
            history_ticks=args.history_ticks,
            default_codec=args.default_codec,
            poll_hold_s=args.poll_hold,
            max_send_buffer_bytes=args.max_send_buffer,
            slow_fan_ticks=args.slow_fan_ticks,
            tick_wait_s=args.tick_wait,
            tick_wait_max_s=max(args.tick_wait_max, args.tick_wait),
            server_id=args.server_id,
            event_loop=args.event_loop,
            # Only `slipstream broadcast` has these (other stages name topics too).
            frames_topic=getattr(args, "frames_topic", None) or FRAMES_TOPIC,
            events_topic=getattr(args, "events_topic", None) or EVENTS_TOPIC,
            trusted_proxies=tuple(
                p.strip() for v in args.trusted_proxy for p in v.split(",") if p.strip()
            ),
        )


def add_broadcast_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the broadcast node's flags to a command."""
    d = BroadcastConfig()
    parser.add_argument(
        "--host",
        default=env("HOST", d.host),
        help=f"address to bind (env SLIPSTREAM_HOST; default {d.host})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env("PORT", str(d.port)) or d.port),
        help="port for WebSocket, long-poll, pages and metrics "
        f"(env SLIPSTREAM_PORT; default {d.port}; 0 = any free port)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        metavar="S",
        default=env_number("PING_INTERVAL_S", d.ping_interval_s),
        help=f"WebSocket keepalive ping interval in seconds (default {d.ping_interval_s:g})",
    )
    parser.add_argument(
        "--ping-timeout",
        type=float,
        metavar="S",
        default=env_number("PING_TIMEOUT_S", d.ping_timeout_s),
        help=f"close a peer that does not answer a ping within this (default {d.ping_timeout_s:g})",
    )
    parser.add_argument(
        "--replay-ticks",
        type=int,
        metavar="N",
        default=env_int("REPLAY_TICKS", d.replay_ticks),
        help=f"ticks kept for resuming fans (default {d.replay_ticks} = 2 min at 2 Hz)",
    )
    parser.add_argument(
        "--history-ticks",
        type=int,
        metavar="N",
        default=env_int("HISTORY_TICKS", d.history_ticks),
        help="most ticks a resume re-reads from Kafka past the replay ring "
        f"(default {d.history_ticks} = 1 h; 0 = never)",
    )
    parser.add_argument(
        "--default-codec",
        default=env("DEFAULT_CODEC", d.default_codec),
        help=f"codec of subscriptions that name none (default {d.default_codec})",
    )
    parser.add_argument(
        "--poll-hold",
        type=float,
        metavar="S",
        default=env_number("POLL_HOLD_S", d.poll_hold_s),
        help=f"how long /v1/poll holds a request when nothing is new (default {d.poll_hold_s:g})",
    )
    parser.add_argument(
        "--max-send-buffer",
        type=int,
        metavar="BYTES",
        default=d.max_send_buffer_bytes,
        help="unsent bytes beyond which a fan is behind and gets keyframes only "
        f"(default {d.max_send_buffer_bytes})",
    )
    parser.add_argument(
        "--slow-fan-ticks",
        type=int,
        metavar="N",
        default=d.slow_fan_ticks,
        help=f"close a fan that stays behind this many ticks (default {d.slow_fan_ticks})",
    )
    parser.add_argument(
        "--tick-wait",
        type=float,
        metavar="S",
        default=env_number("TICK_WAIT_S", d.tick_wait_s),
        help="wait for a tick's late cars before emitting it without them, while the "
        f"pipeline keeps pace (env SLIPSTREAM_TICK_WAIT_S; default {d.tick_wait_s:g})",
    )
    parser.add_argument(
        "--tick-wait-max",
        type=float,
        metavar="S",
        default=env_number("TICK_WAIT_MAX_S", d.tick_wait_max_s),
        help="longest the tick wait grows to while frames arrive late (a lagging pipeline); "
        "it decays back to --tick-wait once ticks complete on time; raised to --tick-wait "
        f"if below it (env SLIPSTREAM_TICK_WAIT_MAX_S; default {d.tick_wait_max_s:g})",
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=env("EVENT_LOOP", d.event_loop),
        help="the node's event loop: uvloop (faster writes to many fans), asyncio, or auto = "
        f"uvloop when installed (env SLIPSTREAM_EVENT_LOOP; default {d.event_loop})",
    )
    parser.add_argument(
        "--server-id",
        default=env("SERVER_ID"),
        help="this node's name in the hello and /healthz (env SLIPSTREAM_SERVER_ID; "
        "default: a random node-XXXXXXXX)",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="CIDR",
        default=[p for p in (env("TRUSTED_PROXIES") or "").split(",") if p.strip()],
        help="believe Forwarded / X-Forwarded-For only from peers in this network (e.g. the "
        "load balancer's 10.0.0.0/8), so per-address limits and logs see the fan; repeatable "
        "or comma-separated (env SLIPSTREAM_TRUSTED_PROXIES; default: none, the headers are "
        "ignored)",
    )
