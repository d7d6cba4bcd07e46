"""How to reach a Kafka cluster: bootstrap servers, TLS, SASL and the client id.

Every command that talks to Kafka takes the same flags, each also an
environment variable, named after the client settings Kafka users know
(``bootstrap.servers``, ``security.protocol``, ``sasl.mechanism``, ...).  They
are declared once, in :data:`KAFKA_OPTIONS`; :func:`add_kafka_arguments` adds
them to a command and :meth:`KafkaClientSettings.from_args` reads them back,
a flag winning over its variable.

The SASL password is never a flag (flags show in ``ps``): it comes from
``SLIPSTREAM_KAFKA_SASL_PASSWORD`` or from the file named by
``--kafka-sasl-password-file``.

The settings are plain strings, so they pickle to worker processes; the TLS
context is made where a client is made (:meth:`KafkaClientSettings.aiokafka_kwargs`).
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from slipstream.errors import ConfigError
from slipstream.options import Option, Options, choice, host_port, text

__all__ = [
    "KAFKA_OPTIONS",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "KafkaClientSettings",
    "KafkaFlags",
    "add_kafka_arguments",
    "parse_bootstrap",
]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_PASSWORD_ENV = "SLIPSTREAM_KAFKA_SASL_PASSWORD"


@dataclass(frozen=True, slots=True)
class KafkaFlags:
    """The client settings as given (flags or variables), before they are checked together.

    Attributes:
        bootstrap: ``HOST:PORT[,HOST:PORT...]``; None for the in-process bus.
        security_protocol: One of :data:`SECURITY_PROTOCOLS`.
        sasl_mechanism: One of :data:`SASL_MECHANISMS`.
        sasl_username: SASL user.
        sasl_password: SASL password (variable only: command lines show in ``ps``).
        sasl_password_file: A file holding the password.
        ssl_cafile: CA bundle to verify the brokers.
        ssl_certfile: Client certificate.
        ssl_keyfile: Its private key.
        client_id: Client id the brokers log.
    """

    bootstrap: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str | None = None


def _bootstrap(raw: str) -> str:
    servers = [part.strip() for part in raw.split(",") if part.strip()]
    if not servers:
        raise ValueError("expected HOST:PORT[,HOST:PORT...]")
    for server in servers:
        host_port(server)
    return ",".join(servers)


def _readable(raw: str) -> str:
    if not Path(raw).is_file():
        raise ValueError("expected an existing file")
    return raw


#: Every Kafka client setting in ``--help`` order: ``--kafka-<name>``, ``SLIPSTREAM_KAFKA_<NAME>``.
KAFKA_OPTIONS = Options(
    KafkaFlags,
    [
        Option(
            "bootstrap", "--kafka", "Kafka bootstrap servers", parse=_bootstrap, env="KAFKA",
            metavar="HOST:PORT[,HOST:PORT...]", dest="kafka", default_text="the in-process bus",
        ),
        Option(
            "security_protocol", "--kafka-security-protocol",
            "how to talk to the brokers: " + ", ".join(SECURITY_PROTOCOLS),
            parse=choice(*SECURITY_PROTOCOLS), env="KAFKA_SECURITY_PROTOCOL", metavar="PROTOCOL",
        ),
        Option(
            "sasl_mechanism", "--kafka-sasl-mechanism",
            "SASL mechanism with SASL_PLAINTEXT / SASL_SSL: " + ", ".join(SASL_MECHANISMS),
            parse=choice(*SASL_MECHANISMS), env="KAFKA_SASL_MECHANISM", metavar="MECHANISM",
        ),
        Option(
            "sasl_username", "--kafka-sasl-username", "SASL user name", parse=text,
            env="KAFKA_SASL_USERNAME", metavar="USER",
        ),
        Option(
            "sasl_password", None, "SASL password (no flag: command lines show in `ps`)",
            parse=text, env="KAFKA_SASL_PASSWORD",
        ),
        Option(
            "sasl_password_file", "--kafka-sasl-password-file",
            f"file holding the SASL password (or set {_PASSWORD_ENV}; there is no password flag)",
            parse=_readable, env="KAFKA_SASL_PASSWORD_FILE", metavar="FILE",
        ),
        Option(
            "ssl_cafile", "--kafka-ssl-cafile", "PEM CA bundle to verify the brokers",
            parse=_readable, env="KAFKA_SSL_CAFILE", metavar="FILE", default_text="system CAs",
        ),
        Option(
            "ssl_certfile", "--kafka-ssl-certfile",
            "PEM client certificate, for brokers that require one",
            parse=_readable, env="KAFKA_SSL_CERTFILE", metavar="FILE",
        ),
        Option(
            "ssl_keyfile", "--kafka-ssl-keyfile", "PEM private key of --kafka-ssl-certfile",
            parse=_readable, env="KAFKA_SSL_KEYFILE", metavar="FILE",
        ),
        Option(
            "client_id", "--kafka-client-id", "client id the brokers log", parse=text,
            env="KAFKA_CLIENT_ID", metavar="ID", default_text="slipstream",
        ),
    ],
)  # fmt: skip


def parse_bootstrap(text: str, source: str = "--kafka") -> tuple[str, ...]:
    """Split ``HOST:PORT[,HOST:PORT...]`` into its servers.

    Raises:
        ConfigError: Empty, or a server is not ``HOST:PORT``; names ``source``.
    """
    servers = tuple(part.strip() for part in text.split(",") if part.strip())
    if not servers:
        raise ConfigError(f"{source}: expected HOST:PORT[,HOST:PORT...], got {text!r}")
    for server in servers:
        try:
            host_port(server)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc} (in {text!r})") from None
    return servers


@dataclass(frozen=True, slots=True)
class KafkaClientSettings:
    """Where the cluster is and how to authenticate to it.

    Attributes:
        bootstrap: Bootstrap servers, ``HOST:PORT`` each.
        security_protocol: One of :data:`SECURITY_PROTOCOLS`.
        sasl_mechanism: One of :data:`SASL_MECHANISMS`, with a SASL protocol.
        sasl_username: SASL user.
        sasl_password: SASL password (kept out of ``repr``).
        sasl_password_file: Where the password was read from, if a file
            (passed on to child processes instead of the password).
        ssl_cafile: CA bundle to verify brokers; None: the system's CAs.
        ssl_certfile: Client certificate (PEM), for mutual TLS.
        ssl_keyfile: Its private key; None when in ``ssl_certfile``.
        client_id: Client id the brokers log; None: the bus's default.
    """

    bootstrap: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str | None = None

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ConfigError("--kafka needs at least one HOST:PORT")
        for server in self.bootstrap:
            try:
                host_port(server)
            except ValueError as exc:
                raise ConfigError(f"--kafka: {exc}") from None
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"--kafka-security-protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                f"got {self.security_protocol!r}"
            )
        if self.sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"{self.security_protocol} needs --kafka-sasl-mechanism, one of "
                    f"{', '.join(SASL_MECHANISMS)} (got {self.sasl_mechanism!r})"
                )
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigError(
                    f"{self.security_protocol} needs --kafka-sasl-username and a password "
                    f"({_PASSWORD_ENV} or --kafka-sasl-password-file)"
                )
        elif self.sasl_mechanism or self.sasl_username:
            raise ConfigError(
                "SASL settings are given but --kafka-security-protocol is "
                f"{self.security_protocol}; use SASL_SSL (or SASL_PLAINTEXT)"
            )
        if not self.tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ConfigError(
                "TLS files are given but --kafka-security-protocol is "
                f"{self.security_protocol}; use SSL (or SASL_SSL)"
            )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("--kafka-ssl-keyfile needs --kafka-ssl-certfile")

    @property
    def tls(self) -> bool:
        """Whether connections use TLS."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        """Whether connections authenticate with SASL."""
        return self.security_protocol.startswith("SASL_")

    @property
    def servers(self) -> str:
        """The bootstrap servers as given to ``--kafka``."""
        return ",".join(self.bootstrap)

    @classmethod
    def plaintext(cls, bootstrap: str) -> KafkaClientSettings:
        """Plaintext settings for ``HOST:PORT[,...]``."""
        return cls(parse_bootstrap(bootstrap))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> KafkaClientSettings | None:
        """The settings of the flags of :func:`add_kafka_arguments` (each with its variable).

        Returns:
            None when no bootstrap server is given (the in-process bus).

        Raises:
            ConfigError: The settings do not go together (the message says how).
        """
        flags = KAFKA_OPTIONS.build(args)
        if flags.bootstrap is None:
            return None
        password = flags.sasl_password
        if flags.sasl_password_file is not None:
            password = _read_password(flags.sasl_password_file, "--kafka-sasl-password-file")
        values = {
            name: getattr(flags, name)
            for name in (
                "sasl_mechanism", "sasl_username", "sasl_password_file",
                "ssl_cafile", "ssl_certfile", "ssl_keyfile", "client_id",
            )
        }  # fmt: skip
        return cls(
            parse_bootstrap(flags.bootstrap),
            security_protocol=flags.security_protocol,
            sasl_password=password,
            **{k: v for k, v in values.items() if v},
        )

    def to_argv(self) -> list[str]:
        """Flags that give a child ``slipstream`` process these settings.

        The password is not among them: see :meth:`child_env`.
        """
        argv = ["--kafka", self.servers]
        for option in KAFKA_OPTIONS.options:
            if option.flag is None or option.field in ("bootstrap", "sasl_password"):
                continue
            value = getattr(self, option.field)
            if value is not None and not (
                option.field == "security_protocol" and value == "PLAINTEXT"
            ):
                argv += [option.flag, value]
        return argv

    def child_env(self) -> dict[str, str]:
        """Environment a child needs besides :meth:`to_argv` (the password, if not in a file)."""
        if self.sasl_password is None or self.sasl_password_file is not None:
            return {}
        return {_PASSWORD_ENV: self.sasl_password}

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that verifies the brokers (and presents a certificate).

        Raises:
            ConfigError: A file cannot be read or is not PEM of the right kind.
        """
        try:
            context = ssl.create_default_context(cafile=self.ssl_cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--kafka-ssl-cafile {self.ssl_cafile}: {exc}") from None
        if self.ssl_certfile:
            try:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"--kafka-ssl-certfile {self.ssl_certfile} / --kafka-ssl-keyfile "
                    f"{self.ssl_keyfile}: {exc}"
                ) from None
        return context

    def aiokafka_kwargs(self, default_client_id: str = "slipstream") -> dict[str, Any]:
        """Keyword arguments of aiokafka's clients for these settings."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap),
            "client_id": self.client_id or default_client_id,
            "security_protocol": self.security_protocol,
        }
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def describe(self) -> str:
        """One line for logs and errors: servers, protocol, mechanism and user (no secret)."""
        text = f"{self.servers} ({self.security_protocol}"
        if self.sasl:
            text += f" {self.sasl_mechanism} as {self.sasl_username}"
        return text + ")"

    def with_bootstrap(self, bootstrap: str) -> KafkaClientSettings:
        """The same settings for other servers."""
        return replace(self, bootstrap=parse_bootstrap(bootstrap))


def _read_password(path: str, source: str) -> str:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read {path!r}: {exc}") from None
    # Files written by `echo` or editors end with a newline that is not part of it.
    return text.rstrip("\r\n")


class _RefusePasswordFlag(argparse.Action):
    """``--kafka-sasl-password``: refused with advice.

    Declared so that argparse does not take it for an abbreviation of
    ``--kafka-sasl-password-file`` (and read the password as a file name).
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            "there is no --kafka-sasl-password (command lines show in `ps`): set "
            f"{_PASSWORD_ENV} or use --kafka-sasl-password-file FILE"
        )


def add_kafka_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add the Kafka client flags (:data:`KAFKA_OPTIONS`) to a command, in a group of their own."""
    group = parser.add_argument_group(
        "Kafka client",
        "Each flag may be set by its environment variable instead; a flag wins.",
    )
    KAFKA_OPTIONS.add_arguments(group, required={"bootstrap"} if required else ())
    group.add_argument("--kafka-sasl-password", action=_RefusePasswordFlag, help=argparse.SUPPRESS)
