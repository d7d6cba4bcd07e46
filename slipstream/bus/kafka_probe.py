"""Why a Kafka cluster cannot be reached: one connection attempt per bootstrap server.

aiokafka tries the bootstrap servers one after the other, logs why each one
failed and then raises "Unable to bootstrap": the cause never reaches the
caller.  :func:`diagnose` repeats the attempt per server, with the same TLS
and SASL settings, and returns a cause a user can act on for each.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from slipstream.config import parse_host_port
from slipstream.kafka_settings import KafkaClientSettings

__all__ = ["ServerProblem", "diagnose", "explain"]


@dataclass(frozen=True, slots=True)
class ServerProblem:
    """Why one bootstrap server could not be used.

    Attributes:
        server: ``HOST:PORT``.
        cause: What went wrong, with what to check.
    """

    server: str
    cause: str

    def __str__(self) -> str:
        return f"{self.server}: {self.cause}"


def explain(exc: BaseException, client: KafkaClientSettings) -> str:
    """A cause and a fix for a failed connection attempt."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        ca = client.ssl_cafile or "the system CA store"
        return (
            f"TLS certificate not trusted ({exc.verify_message or text}); "
            f"check --kafka-ssl-cafile (now {ca}) and the broker's host name"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake failed ({text}); is this a TLS listener, and does it require "
            "a client certificate (--kafka-ssl-certfile)?"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return (
            f"the broker refused SASL mechanism {client.sasl_mechanism} ({text}); "
            "set --kafka-sasl-mechanism to one it offers, or check the security protocol"
        )
    if isinstance(exc, (SaslAuthenticationFailed, AuthenticationFailedError)):
        return f"SASL authentication failed ({text}); check the user name and password"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens there; check the host and port"
    if isinstance(exc, TimeoutError):
        return (
            "no answer in time: the host drops packets, or the security protocol does not "
            "match the listener (TLS against plaintext or the reverse)"
        )
    if isinstance(exc, OSError):
        return f"cannot connect ({text}); check the host name and port"
    if isinstance(exc, KafkaConnectionError):
        hint = (
            "if the listener requires a client certificate, set --kafka-ssl-certfile"
            if client.tls
            else "if it is a TLS listener, set --kafka-security-protocol SSL (or SASL_SSL)"
        )
        return f"the server closed the connection ({text}); {hint}"
    if isinstance(exc, KafkaError):
        return f"{type(exc).__name__}: {text}"
    return text


async def _attempt(
    server: str, client: KafkaClientSettings, timeout_s: float, client_id: str
) -> ServerProblem | None:
    host, port = parse_host_port(server)
    kwargs = client.aiokafka_kwargs(client_id)
    del kwargs["bootstrap_servers"]
    try:
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **kwargs)
    except (OSError, KafkaError, TimeoutError) as exc:
        return ServerProblem(server, explain(exc, client))
    conn.close()
    return None


async def diagnose(
    client: KafkaClientSettings, timeout_s: float = 3.0, client_id: str = "slipstream"
) -> list[ServerProblem]:
    """Try every bootstrap server at once; returns the problems found (empty: all fine).

    Args:
        client: The settings the failed clients used.
        timeout_s: Longest wait for each server.
        client_id: Default client id when the settings name none.
    """
    outcomes = await asyncio.gather(
        *(_attempt(server, client, timeout_s, client_id) for server in client.bootstrap)
    )
    return [problem for problem in outcomes if problem is not None]
