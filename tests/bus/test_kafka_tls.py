"""Kafka over TLS (stunnel in front of Tansu) and the errors of a cluster that cannot be used.

The pipeline runs end to end over TLS, with and without a client certificate;
an untrusted CA, a refused SASL mechanism and an unreachable bootstrap list
each fail within 15 s with a message naming the broker and the cause.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from slipstream.testing.broker import TansuBroker, free_port
from slipstream.testing.tls import StunnelTls, find_stunnel
from tests.e2e.test_run import _check_frames, _env, running, subscribe

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(find_stunnel() is None, reason="needs stunnel (Debian package stunnel4)"),
]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and an unrelated CA."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("slipstream-client@example.org")
    files = TlsFiles(*(tmp_path / name for name in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key", "other-ca.pem",
    )))  # fmt: skip
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.server_key))
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    client.private_key_pem.write_to_path(str(files.client_key))
    files.client_cert.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    trustme.CA().cert_pem.write_to_path(str(files.other_ca))
    return files


def tls_broker(files: TlsFiles, *, mutual: bool) -> Iterator[str]:
    """A fresh Tansu behind stunnel; yields the TLS bootstrap ``127.0.0.1:PORT``."""
    port = free_port()
    with (
        TansuBroker(advertised_port=port) as broker,
        StunnelTls(
            port, broker.port, files.server_cert, files.server_key,
            client_ca=files.ca if mutual else None,
        ),
    ):  # fmt: skip
        yield f"127.0.0.1:{port}"


@pytest.fixture
def server_tls(tls_files: TlsFiles) -> Iterator[str]:
    yield from tls_broker(tls_files, mutual=False)


@pytest.fixture
def mutual_tls(tls_files: TlsFiles) -> Iterator[str]:
    yield from tls_broker(tls_files, mutual=True)


def test_pipeline_over_tls(server_tls: str, tls_files: TlsFiles) -> None:
    with running(
        "--kafka", server_tls, "--kafka-security-protocol", "SSL",
        "--kafka-ssl-cafile", str(tls_files.ca), "--cars", "4", "--speed", "4",
    ) as (_, url):  # fmt: skip
        _check_frames(subscribe(url, "--count", "40"), 40)


def test_pipeline_over_mutual_tls(
    mutual_tls: str, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client certificate from the environment, the rest from flags.
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SSL_CERTFILE", str(tls_files.client_cert))
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SSL_KEYFILE", str(tls_files.client_key))
    with running(
        "--kafka", mutual_tls, "--kafka-security-protocol", "SSL",
        "--kafka-ssl-cafile", str(tls_files.ca), "--cars", "4", "--speed", "4",
    ) as (_, url):  # fmt: skip
        _check_frames(subscribe(url, "--count", "40"), 40)


def failing(*args: str, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``slipstream downsample ARGS``, expecting exit code 2; returns stderr and seconds."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "downsample", *args],
        capture_output=True, text=True, env={**_env(), **(env or {})}, timeout=60,
    )  # fmt: skip
    elapsed_s = time.monotonic() - started
    # Printed (-s) for docs/kafka.md; the whole command, interpreter start included.
    print(f"exit {out.returncode} after {elapsed_s:.2f} s: {out.stderr.strip()[-160:]!r}")
    assert out.returncode == 2, out.stderr
    return out.stderr, elapsed_s


def test_untrusted_ca_fails_naming_broker_and_cause(server_tls: str, tls_files: TlsFiles) -> None:
    err, elapsed_s = failing(
        "--kafka", server_tls, "--kafka-security-protocol", "SSL",
        "--kafka-ssl-cafile", str(tls_files.other_ca),
    )  # fmt: skip
    assert elapsed_s < 15, err
    assert f"{server_tls}: TLS certificate not trusted" in err, err
    assert "certificate verify failed" in err and "--kafka-ssl-cafile" in err, err


def test_mutual_tls_without_client_certificate_fails(mutual_tls: str, tls_files: TlsFiles) -> None:
    err, elapsed_s = failing(
        "--kafka", mutual_tls, "--kafka-security-protocol", "SSL",
        "--kafka-ssl-cafile", str(tls_files.ca),
    )  # fmt: skip
    assert elapsed_s < 15, err
    assert f"{mutual_tls}: the server closed the connection" in err, err
    assert "--kafka-ssl-certfile" in err, err


def test_plaintext_client_against_tls_listener_fails(server_tls: str) -> None:
    err, elapsed_s = failing("--kafka", server_tls)
    assert elapsed_s < 15, err
    assert server_tls in err, err


def test_refused_sasl_mechanism_fails_naming_broker_and_cause(kafka_broker: TansuBroker) -> None:
    # Tansu without authentication answers SaslHandshake with UnsupportedSaslMechanism.
    err, elapsed_s = failing(
        "--kafka", kafka_broker.bootstrap, "--kafka-security-protocol", "SASL_PLAINTEXT",
        "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", "race-control",
        env={"SLIPSTREAM_KAFKA_SASL_PASSWORD": "not-on-the-command-line"},
    )  # fmt: skip
    assert elapsed_s < 15, err
    assert f"{kafka_broker.bootstrap}: the broker refused SASL mechanism SCRAM-SHA-256" in err, err
    assert "not-on-the-command-line" not in err


def test_unreachable_bootstrap_list_fails_naming_every_server() -> None:
    servers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    # Nothing listens on either port now.
    err, elapsed_s = failing("--kafka", ",".join(servers))
    assert elapsed_s < 15, err
    for server in servers:
        assert f"{server}: connection refused" in err, err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLIPSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("SLIPSTREAM_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("SLIPSTREAM_KAFKA_SSL_CAFILE", "/no/such/ca.pem"),
        ("SLIPSTREAM_KAFKA", "broker-without-port"),
    ],
)
def test_bad_environment_value_exits_2_naming_the_variable(variable: str, value: str) -> None:
    env = {"SLIPSTREAM_KAFKA": "127.0.0.1:9", variable: value}
    if variable == "SLIPSTREAM_KAFKA_SASL_MECHANISM":
        env["SLIPSTREAM_KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL"
    err, _ = failing(env=env)
    assert variable in err, err
