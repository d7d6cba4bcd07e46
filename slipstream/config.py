"""Shared configuration: topic names, bus selection, flag and environment helpers.

Every component has a frozen config dataclass built from CLI flags, whose
defaults may come from ``SLIPSTREAM_*`` environment variables.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from slipstream.errors import ConfigError

if TYPE_CHECKING:
    from slipstream.bus.kafka_settings import KafkaClientSettings

__all__ = [
    "DEFAULT_PARTITIONS",
    "DLQ_TOPIC",
    "EVENTS_TOPIC",
    "FRAMES_TOPIC",
    "RAW_TOPIC",
    "BusConfig",
    "add_bus_arguments",
    "env",
    "env_int",
    "env_number",
    "parse_host_port",
]

RAW_TOPIC = "slipstream.raw"
FRAMES_TOPIC = "slipstream.frames"
EVENTS_TOPIC = "slipstream.events"
DLQ_TOPIC = "slipstream.dlq"

_T = TypeVar("_T")
#: Partitions of the raw and frames topics when Slipstream creates them.
DEFAULT_PARTITIONS = 8


def env(name: str, default: str | None = None) -> str | None:
    """Value of ``SLIPSTREAM_<NAME>`` or ``default``."""
    return os.environ.get(f"SLIPSTREAM_{name.upper()}", default)


def env_number(name: str, default: float) -> float:
    """Number in ``SLIPSTREAM_<NAME>``, or ``default`` when unset.

    Raises:
        ConfigError: The variable is set but is not a number.
    """
    return _env_parsed(name, default, float, "a number")


def env_int(name: str, default: int) -> int:
    """Integer in ``SLIPSTREAM_<NAME>``, or ``default`` when unset.

    Raises:
        ConfigError: The variable is set but is not an integer.
    """
    return _env_parsed(name, default, int, "an integer")


def _env_parsed(name: str, default: _T, parse: Callable[[str], _T], kind: str) -> _T:
    text = env(name)
    if text is None:
        return default
    try:
        return parse(text)
    except ValueError:
        raise ConfigError(f"SLIPSTREAM_{name.upper()} must be {kind}, got {text!r}") from None


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
        # Imported here: slipstream.bus imports this module.
        from slipstream.bus.kafka_settings import KafkaClientSettings

        client = KafkaClientSettings.from_args(args)
        kafka = client.servers if client is not None else None
        return cls(kafka=kafka, partitions=args.partitions, kafka_client=client)


def add_bus_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add the Kafka client flags (``--kafka`` ...) and ``--partitions`` to a command."""
    from slipstream.bus.kafka_settings import add_kafka_arguments

    add_kafka_arguments(parser, required=required)
    parser.add_argument(
        "--partitions",
        type=int,
        default=int(env("PARTITIONS", str(DEFAULT_PARTITIONS)) or DEFAULT_PARTITIONS),
        help=f"partitions of topics Slipstream creates (default {DEFAULT_PARTITIONS})",
    )
