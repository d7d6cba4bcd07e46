"""Configuration of a broadcast node (flags and ``SLIPSTREAM_*`` variables)."""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass

from slipstream.bus.names import topic_name
from slipstream.codecs import CODECS, DEFAULT_CODEC
from slipstream.config import EVENT_LOOPS, EVENTS_TOPIC, FRAMES_TOPIC
from slipstream.errors import ConfigError
from slipstream.options import Option, Options, choice, integer, number, text
from slipstream.proxies import TrustedProxies

__all__ = ["BROADCAST_OPTIONS", "NODE_FIELDS", "BroadcastConfig", "add_broadcast_arguments"]


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
        event_loop: ``asyncio`` (the default), ``uvloop`` or ``auto`` (uvloop when
            installed); see :mod:`slipstream.loop` and docs/fanout.md for the figures.
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
    event_loop: str = "asyncio"
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
        # The wait never shrinks below the base wait (see --tick-wait-max).
        return BROADCAST_OPTIONS.build(
            args, tick_wait_max_s=max(args.tick_wait_max, args.tick_wait)
        )


def _cidr(raw: str) -> str:
    try:
        ipaddress.ip_network(raw.strip(), strict=False)
    except ValueError:
        raise ValueError("expected a network such as 10.0.0.0/8 or an address") from None
    return raw.strip()


def _codec(raw: str) -> str:
    if raw not in CODECS:
        raise ValueError(f"expected a codec: {', '.join(CODECS)}")
    return raw


#: The broadcast node's options (``slipstream broadcast`` and ``slipstream run``);
#: the topics are added by ``slipstream broadcast`` only (other stages name topics too).
BROADCAST_OPTIONS = Options(
    BroadcastConfig,
    [
        Option("host", "--host", "address to bind", parse=text, env="HOST"),
        Option(
            "port", "--port",
            "port for WebSocket, long-poll, pages and metrics (0 = any free port)",
            parse=integer(0, 65535), env="PORT",
        ),
        Option(
            "ping_interval_s", "--ping-interval", "WebSocket keepalive ping interval in seconds",
            parse=number(positive=True), env="PING_INTERVAL_S", metavar="S",
        ),
        Option(
            "ping_timeout_s", "--ping-timeout",
            "close a peer that does not answer a ping within this",
            parse=number(positive=True), env="PING_TIMEOUT_S", metavar="S",
        ),
        Option(
            "replay_ticks", "--replay-ticks", "ticks kept for resuming fans",
            parse=integer(minimum=1), env="REPLAY_TICKS", metavar="N",
            default_text="240 = 2 min at 2 Hz",
        ),
        Option(
            "history_ticks", "--history-ticks",
            "most ticks a resume re-reads from Kafka past the replay ring",
            parse=integer(minimum=0), env="HISTORY_TICKS", metavar="N",
            default_text="7200 = 1 h; 0 = never",
        ),
        Option(
            "default_codec", "--default-codec", "codec of subscriptions that name none",
            parse=_codec, env="DEFAULT_CODEC",
        ),
        Option(
            "poll_hold_s", "--poll-hold", "how long /v1/poll holds a request when nothing is new",
            parse=number(positive=True), env="POLL_HOLD_S", metavar="S",
        ),
        Option(
            "max_send_buffer_bytes", "--max-send-buffer",
            "unsent bytes beyond which a fan is behind and gets keyframes only",
            parse=integer(minimum=1024), metavar="BYTES",
        ),
        Option(
            "slow_fan_ticks", "--slow-fan-ticks", "close a fan that stays behind this many ticks",
            parse=integer(minimum=1), metavar="N",
        ),
        Option(
            "tick_wait_s", "--tick-wait",
            "wait for a tick's late cars before emitting it without them, while the "
            "pipeline keeps pace",
            parse=number(minimum=0.0), env="TICK_WAIT_S", metavar="S",
        ),
        Option(
            "tick_wait_max_s", "--tick-wait-max",
            "longest the tick wait grows to while frames arrive late (a lagging pipeline); "
            "it decays back to --tick-wait once ticks complete on time; raised to --tick-wait "
            "if below it",
            parse=number(minimum=0.0), env="TICK_WAIT_MAX_S", metavar="S",
        ),
        Option(
            "server_id", "--server-id", "this node's name in the hello and /healthz",
            parse=text, env="SERVER_ID", default_text="a random node-XXXXXXXX",
        ),
        Option(
            "event_loop", "--event-loop",
            "the node's event loop: asyncio, uvloop (pip install 'slipstream[uvloop]'), "
            "or auto = uvloop when installed (docs/fanout.md compares them)",
            parse=choice(*EVENT_LOOPS), env="EVENT_LOOP",
        ),
        Option(
            "trusted_proxies", "--trusted-proxy",
            "believe Forwarded / X-Forwarded-For only from peers in this network (e.g. the "
            "load balancer's 10.0.0.0/8), so per-address limits and logs see the fan; "
            "repeatable",
            parse=_cidr, env="TRUSTED_PROXIES", metavar="CIDR", repeat=True,
            default_text="none: the headers are ignored",
        ),
        Option(
            "frames_topic", "--frames-topic", "topic of the 2 Hz frames",
            parse=topic_name, env="FRAMES_TOPIC",
        ),
        Option(
            "events_topic", "--events-topic", "topic of the race events",
            parse=topic_name, env="EVENTS_TOPIC",
        ),
    ],
)  # fmt: skip

#: The options every command serving fans has (not the topics).
NODE_FIELDS = tuple(
    o.field for o in BROADCAST_OPTIONS.options if o.field not in ("frames_topic", "events_topic")
)


def add_broadcast_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the broadcast node's flags to a command."""
    BROADCAST_OPTIONS.add_arguments(parser, NODE_FIELDS)
