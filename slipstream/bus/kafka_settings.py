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

from slipstream.config import env, parse_host_port
from slipstream.errors import ConfigError

__all__ = [
    "KAFKA_OPTIONS",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "KafkaClientSettings",
    "KafkaOption",
    "add_kafka_arguments",
    "parse_bootstrap",
]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_PASSWORD_ENV = "SLIPSTREAM_KAFKA_SASL_PASSWORD"


@dataclass(frozen=True, slots=True)
class KafkaOption:
    """One client setting: its flag, variable and help.

    Attributes:
        name: Field of :class:`KafkaClientSettings`; the flag is
            ``--kafka-<name>`` with dashes (``--kafka`` for ``bootstrap``) and
            the variable ``SLIPSTREAM_KAFKA_<NAME>`` (``SLIPSTREAM_KAFKA``).
        metavar: Placeholder in ``--help``.
        help: What it sets (``--help`` adds the variable).
        choices: Allowed values, if a closed set.
    """

    name: str
    metavar: str
    help: str
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--kafka" if self.name == "bootstrap" else "--kafka-" + self.name.replace("_", "-")

    @property
    def env_name(self) -> str:
        """The environment variable without its ``SLIPSTREAM_`` prefix."""
        return "KAFKA" if self.name == "bootstrap" else "KAFKA_" + self.name.upper()


#: Every Kafka client flag, in ``--help`` order.
KAFKA_OPTIONS = (
    KafkaOption("bootstrap", "HOST:PORT[,HOST:PORT...]", "Kafka bootstrap servers"),
    KafkaOption(
        "security_protocol", "PROTOCOL",
        "how to talk to the brokers: " + ", ".join(SECURITY_PROTOCOLS) + " (default PLAINTEXT)",
        SECURITY_PROTOCOLS,
    ),
    KafkaOption(
        "sasl_mechanism", "MECHANISM",
        "SASL mechanism with SASL_PLAINTEXT / SASL_SSL: " + ", ".join(SASL_MECHANISMS),
        SASL_MECHANISMS,
    ),
    KafkaOption("sasl_username", "USER", "SASL user name"),
    KafkaOption(
        "sasl_password_file", "FILE",
        f"file holding the SASL password (or set {_PASSWORD_ENV}; there is no password flag)",
    ),
    KafkaOption("ssl_cafile", "FILE", "PEM CA bundle to verify the brokers (default: system CAs)"),
    KafkaOption("ssl_certfile", "FILE", "PEM client certificate, for brokers that require one"),
    KafkaOption("ssl_keyfile", "FILE", "PEM private key of --kafka-ssl-certfile"),
    KafkaOption("client_id", "ID", "client id the brokers log (default slipstream)"),
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
            parse_host_port(server)
        except ConfigError as exc:
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
            parse_host_port(server)
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
        """Read the flags of :func:`add_kafka_arguments`, each falling back on its variable.

        Returns:
            None when no bootstrap server is given (the in-process bus).

        Raises:
            ConfigError: A value is invalid; the message names its flag or variable.
        """
        values: dict[str, str | None] = {}
        sources: dict[str, str] = {}
        for option in KAFKA_OPTIONS:
            value = getattr(args, option.name if option.name != "bootstrap" else "kafka", None)
            source = option.flag
            if value is None:
                value = env(option.env_name)
                source = f"SLIPSTREAM_{option.env_name}"
            elif option.name == "bootstrap" and value == env(option.env_name):
                source = f"--kafka / SLIPSTREAM_{option.env_name}"
            if value is not None and option.choices and value not in option.choices:
                raise ConfigError(
                    f"{source} must be one of {', '.join(option.choices)}, got {value!r}"
                )
            if value is not None and option.name.endswith("file"):
                _check_readable(value, source)
            values[option.name], sources[option.name] = value, source
        bootstrap = values.pop("bootstrap")
        if bootstrap is None:
            return None
        servers = parse_bootstrap(bootstrap, sources["bootstrap"])
        password = env("KAFKA_SASL_PASSWORD")
        password_file = values["sasl_password_file"]
        if password_file is not None:
            password = _read_password(password_file, sources["sasl_password_file"])
        return cls(servers, sasl_password=password, **{k: v for k, v in values.items() if v})

    def to_argv(self) -> list[str]:
        """Flags that give a child ``slipstream`` process these settings.

        The password is not among them: see :meth:`child_env`.
        """
        argv = ["--kafka", self.servers]
        for option in KAFKA_OPTIONS[1:]:
            value = getattr(self, option.name)
            if value is not None and not (
                option.name == "security_protocol" and value == "PLAINTEXT"
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


def _check_readable(path: str, source: str) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"{source}: no such file {path!r}")


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
    """Add the Kafka client flags (:data:`KAFKA_OPTIONS`) to a command.

    Defaults stay None so that :meth:`KafkaClientSettings.from_args` can name
    the variable a bad value came from; ``--kafka`` alone defaults to
    ``SLIPSTREAM_KAFKA``, which commands read to choose the bus.
    """
    group = parser.add_argument_group(
        "Kafka client",
        "Each flag may be set by its environment variable instead; a flag wins.",
    )
    for option in KAFKA_OPTIONS:
        variable = f"SLIPSTREAM_{option.env_name}"
        if option.name == "bootstrap":
            group.add_argument(
                "--kafka",
                metavar=option.metavar,
                default=env(option.env_name),
                required=required and env(option.env_name) is None,
                help=f"{option.help} (env {variable})"
                + ("" if required else "; default: the in-process bus"),
            )
            continue
        group.add_argument(
            option.flag,
            dest=option.name,
            metavar=option.metavar,
            choices=option.choices or None,
            help=f"{option.help} (env {variable})",
        )
    group.add_argument("--kafka-sasl-password", action=_RefusePasswordFlag, help=argparse.SUPPRESS)
