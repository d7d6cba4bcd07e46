"""The Kafka client settings: flags, variables, validation and aiokafka's arguments."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path

import pytest

from slipstream.config import BusConfig, add_bus_arguments
from slipstream.errors import ConfigError
from slipstream.kafka_settings import (
    KAFKA_OPTIONS,
    KafkaClientSettings,
    add_kafka_arguments,
    parse_bootstrap,
)


def parse(*argv: str) -> KafkaClientSettings | None:
    parser = argparse.ArgumentParser()
    add_kafka_arguments(parser)
    return KafkaClientSettings.from_args(parser.parse_args(list(argv)))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KAFKA_OPTIONS.env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SLIPSTREAM_KAFKA_SASL_PASSWORD", raising=False)


def test_no_bootstrap_means_no_kafka() -> None:
    assert parse() is None


def test_bootstrap_list() -> None:
    settings = parse("--kafka", "k1:9092, k2:9093,[::1]:9094")
    assert settings is not None
    assert settings.bootstrap == ("k1:9092", "k2:9093", "[::1]:9094")
    assert settings.aiokafka_kwargs()["bootstrap_servers"] == ["k1:9092", "k2:9093", "[::1]:9094"]
    assert settings.aiokafka_kwargs()["security_protocol"] == "PLAINTEXT"


@pytest.mark.parametrize("text", ["", ",", "k1", "k1:0", "k1:9092,k2", "k1:port"])
def test_bad_bootstrap_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--kafka"):
        parse_bootstrap(text)


def test_every_flag_has_its_variable_and_a_flag_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("SLIPSTREAM_KAFKA", "env:9092")
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SASL_USERNAME", "env-user")
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SSL_CAFILE", str(ca))
    monkeypatch.setenv("SLIPSTREAM_KAFKA_CLIENT_ID", "env-id")
    settings = parse("--kafka-sasl-username", "flag-user")
    assert settings == KafkaClientSettings(
        ("env:9092",), "SASL_SSL", "SCRAM-SHA-512", "flag-user", "s3cret",
        ssl_cafile=str(ca), client_id="env-id",
    )  # fmt: skip
    assert "s3cret" not in repr(settings)


def test_password_file_wins_over_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SASL_PASSWORD", "from-env")
    settings = parse(
        "--kafka", "k:1", "--kafka-security-protocol", "SASL_PLAINTEXT",
        "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "u",
        "--kafka-sasl-password-file", str(secret),
    )  # fmt: skip
    assert settings is not None
    kwargs = settings.aiokafka_kwargs()
    assert kwargs["sasl_plain_password"] == "from-file"
    assert kwargs["sasl_mechanism"] == "PLAIN" and kwargs["sasl_plain_username"] == "u"
    # A child process gets the file, never the password, on its command line.
    assert "from-file" not in settings.to_argv()
    assert settings.child_env() == {}


def test_there_is_no_password_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--kafka", "k:1", "--kafka-sasl-password", "x")
    assert exited.value.code == 2
    assert "SLIPSTREAM_KAFKA_SASL_PASSWORD" in capsys.readouterr().err


def test_child_gets_the_password_through_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SASL_PASSWORD", "pw")
    settings = parse(
        "--kafka", "k:1", "--kafka-security-protocol", "SASL_PLAINTEXT",
        "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "u",
    )  # fmt: skip
    assert settings is not None
    argv = settings.to_argv()
    assert "pw" not in argv
    assert settings.child_env() == {"SLIPSTREAM_KAFKA_SASL_PASSWORD": "pw"}
    monkeypatch.delenv("SLIPSTREAM_KAFKA_SASL_PASSWORD")
    for name, value in settings.child_env().items():
        monkeypatch.setenv(name, value)
    assert parse(*argv) == settings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kafka-security-protocol", "SASL_SSL"], "needs --kafka-sasl-mechanism"),
        (
            ["--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-mechanism", "PLAIN"],
            "needs --kafka-sasl-username and a password",
        ),
        (["--kafka-sasl-username", "u"], "use SASL_SSL"),
        (["--kafka-client-id", "x", "--kafka-ssl-cafile", __file__], "use SSL"),
        (
            ["--kafka-security-protocol", "SSL", "--kafka-ssl-keyfile", __file__],
            "--kafka-ssl-keyfile needs --kafka-ssl-certfile",
        ),
    ],
)
def test_inconsistent_settings_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse("--kafka", "k:1", *argv)


def test_a_missing_file_is_refused_naming_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse("--kafka", "k:1", "--kafka-security-protocol", "SSL", "--kafka-ssl-cafile", "/nope")
    assert exit_.value.code == 2
    assert "--kafka-ssl-cafile: expected an existing file, got '/nope'" in capsys.readouterr().err


def test_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError, match="SLIPSTREAM_KAFKA_SECURITY_PROTOCOL: expected one of"):
        parse("--kafka", "k:1")


def test_tls_settings_make_a_verifying_context() -> None:
    settings = parse("--kafka", "k:1", "--kafka-security-protocol", "SSL")
    assert settings is not None
    context = settings.aiokafka_kwargs()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_bad_certificate_file_is_a_config_error(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    settings = parse(
        "--kafka", "k:1", "--kafka-security-protocol", "SSL", "--kafka-ssl-cafile", str(garbage)
    )
    assert settings is not None
    with pytest.raises(ConfigError, match="--kafka-ssl-cafile"):
        settings.ssl_context()


def test_bus_config_carries_the_settings() -> None:
    parser = argparse.ArgumentParser()
    add_bus_arguments(parser)
    args = parser.parse_args(["--kafka", "a:1,b:2", "--kafka-client-id", "pit-wall"])
    config = BusConfig.from_args(args)
    assert config.kafka == "a:1,b:2"
    assert config.kafka_client is not None and config.kafka_client.client_id == "pit-wall"
    assert BusConfig.from_args(parser.parse_args([])).kafka_client is None
