"""Shared configuration: topic names and the bus selection.

Every component has a frozen config dataclass built from CLI flags, whose
defaults may come from ``SLIPSTREAM_*`` environment variables; each option is
declared once with :mod:`slipstream.options` (here: :data:`BUS_OPTIONS`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from slipstream.errors import ConfigError
from slipstream.kafka_settings import KafkaClientSettings, add_kafka_arguments
from slipstream.options import Option, Options, integer

__all__ = [
    "BUS_OPTIONS",
    "DEFAULT_PARTITIONS",
    "DLQ_TOPIC",
    "EVENTS_TOPIC",
    "EVENT_LOOPS",
    "FRAMES_TOPIC",
    "RAW_TOPIC",
    "BusConfig",
    "add_bus_arguments",
    "parse_host_port",
]

RAW_TOPIC = "slipstream.raw"
FRAMES_TOPIC = "slipstream.frames"
EVENTS_TOPIC = "slipstream.events"
DLQ_TOPIC = "slipstream.dlq"

#: Event loops a serving process may run on (``asyncio`` by default; ``auto``: uvloop
#: when installed; :mod:`slipstream.loop` runs them).
EVENT_LOOPS = ("auto", "uvloop", "asyncio")

#: Partitions of the raw and frames topics when Slipstream creates them.
DEFAULT_PARTITIONS = 8


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT``.

    Raises:
        ConfigError: Not of the form HOST:PORT with a port in 1..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Which bus to use.

    Attributes:
        kafka: Kafka bootstrap ``HOST:PORT[,HOST:PORT...]``; None for the in-process bus.
        partitions: Partitions of topics Slipstream creates.
        connect_timeout_s: How long to wait for the broker before giving up.
        kafka_client: TLS, SASL and client id for ``kafka``; None: plaintext.
    """

    kafka: str | None = None
    partitions: int = DEFAULT_PARTITIONS
    connect_timeout_s: float = 10.0
    kafka_client: KafkaClientSettings | None = None

    def __post_init__(self) -> None:
        if self.kafka is not None:
            for server in self.kafka.split(","):
                parse_host_port(server.strip())
        if self.partitions <= 0:
            raise ConfigError("--partitions must be at least 1")
        if self.connect_timeout_s <= 0:
            raise ConfigError("the connect timeout must be positive")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BusConfig:
        """Build from the flags added by :func:`add_bus_arguments`."""
        client = KafkaClientSettings.from_args(args)
        kafka = client.servers if client is not None else None
        return BUS_OPTIONS.build(args, kafka=kafka, kafka_client=client)


BUS_OPTIONS = Options(
    BusConfig,
    [
        Option(
            "partitions", "--partitions", "partitions of topics Slipstream creates",
            parse=integer(minimum=1), env="PARTITIONS", metavar="N",
        ),
    ],
)  # fmt: skip


def add_bus_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add the Kafka client flags (``--kafka`` ...; ``--kafka`` or its variable required if
    ``required``) and ``--partitions`` to a command."""
    add_kafka_arguments(parser, required=required)
    BUS_OPTIONS.add_arguments(parser)
