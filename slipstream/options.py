"""One declaration per option: field, flag, environment variable, parser and help.

A component declares each of its options once, as an :class:`Option` naming a
field of its frozen config dataclass; an :class:`Options` set built from them
adds the argparse flags and builds the config from the parsed arguments::

    OPTIONS = Options(BusConfig, [
        Option("partitions", "--partitions", "partitions of topics Slipstream creates",
               parse=integer(minimum=1), env="PARTITIONS", metavar="N"),
    ])
    OPTIONS.add_arguments(parser)   # reads SLIPSTREAM_PARTITIONS now, as the flag's default
    config = OPTIONS.build(args)    # BusConfig(partitions=...)

The same parser checks the flag and the variable. A bad value in a variable
raises :class:`~slipstream.errors.ConfigError` naming the variable (the
command line turns it into exit code 2); a bad flag value is an argparse
error naming the flag (exit code 2 as well). Defaults come from the config
dataclass's fields unless an option gives its own; the help text gets the
variable and the default appended, so ``--help`` never drifts from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from slipstream.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "Option",
    "Options",
    "boolean",
    "choice",
    "env_value",
    "host_port",
    "integer",
    "number",
    "text",
]

#: Every environment variable Slipstream reads starts with this.
ENV_PREFIX = "SLIPSTREAM_"

_C = TypeVar("_C")
_T = TypeVar("_T")
_NO_DEFAULT: Any = object()


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a component.

    Attributes:
        field: Name of the config dataclass field the option sets.
        flag: Command-line flag, e.g. ``"--port"``; None for an option set only
            by its variable (a secret, which must not show in ``ps``).
        help: What the option does; the variable and the default are appended.
        parse: Turns the text of the flag or the variable into the field's
            value; raises ``ValueError`` with a message saying what is expected.
        env: Variable name without the prefix (``"PORT"`` reads
            ``SLIPSTREAM_PORT``); None when no variable sets the option.
        metavar: Placeholder of the value in ``--help``.
        default: The option's default when it differs from the field's (or
            the field has none).
        default_text: How ``--help`` shows the default (e.g. ``"a random id"``);
            by default the default value itself, omitted when it is None.
        dest: Attribute of the parsed arguments; argparse's (the flag without
            dashes) by default.
        switch: A flag without a value (``store_true``); its variable takes
            ``1/0``, ``true/false``, ``yes/no`` or ``on/off``.
        repeat: A flag that may be given several times, each value parsed;
            its variable takes the values comma-separated.  The field gets a
            tuple.
    """

    field: str
    flag: str | None
    help: str
    parse: Callable[[str], Any] = str
    env: str | None = None
    metavar: str | None = None
    default: Any = _NO_DEFAULT
    default_text: str | None = None
    dest: str | None = None
    switch: bool = False
    repeat: bool = False

    @property
    def env_name(self) -> str | None:
        """The full variable name, e.g. ``SLIPSTREAM_PORT``."""
        return None if self.env is None else ENV_PREFIX + self.env

    @property
    def arg_name(self) -> str:
        """Attribute of the parsed arguments that holds the value."""
        if self.dest is not None:
            return self.dest
        return self.field if self.flag is None else self.flag.lstrip("-").replace("-", "_")


class Options(Generic[_C]):
    """The options of one config dataclass.

    Args:
        config: The frozen config dataclass the options build.
        options: Its options, in ``--help`` order.

    Raises:
        TypeError: An option names a field ``config`` does not have.
    """

    def __init__(self, config: type[_C], options: Iterable[Option]) -> None:
        self.config = config
        self.options = tuple(options)
        fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
        self._defaults: dict[str, Any] = {}
        # Values of repeatable options when no flag gives any (argparse would append
        # the flags to a list default instead of replacing it).
        self._unrepeated: dict[str, Any] = {}
        for option in self.options:
            field = fields.get(option.field)
            if field is None:
                raise TypeError(f"{config.__name__} has no field {option.field!r}")
            if option.default is not _NO_DEFAULT:
                self._defaults[option.field] = option.default
            elif field.default is not dataclasses.MISSING:
                self._defaults[option.field] = field.default
            else:
                self._defaults[option.field] = None

    def __getitem__(self, field: str) -> Option:
        for option in self.options:
            if option.field == field:
                return option
        raise KeyError(field)

    def env_names(self) -> list[str]:
        """Every variable these options read (``SLIPSTREAM_...``)."""
        return [o.env_name for o in self.options if o.env_name is not None]

    def add_arguments(
        self,
        parser: argparse.ArgumentParser | argparse._ArgumentGroup,
        fields: Collection[str] | None = None,
        *,
        required: Collection[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Add the flags, their defaults read from the variables now.

        Args:
            parser: The command's parser (or an argument group of it).
            fields: Only these options (all by default).
            required: Options that must be given, by flag or by variable.
            environ: The environment (``os.environ`` by default).

        Raises:
            ConfigError: A variable holds a value its option's parser refuses.
        """
        environ = os.environ if environ is None else environ
        for option in self.options:
            if fields is not None and option.field not in fields:
                continue
            from_env = env_value(option, environ)
            default = self._defaults[option.field] if from_env is _NO_DEFAULT else from_env
            if option.flag is None:
                parser.set_defaults(**{option.arg_name: default})
                continue
            kwargs: dict[str, Any] = {
                "dest": option.arg_name,
                "default": default,
                "help": self._help(option, required=option.field in required),
            }
            if option.repeat:
                self._unrepeated[option.field] = default
                kwargs["default"] = None
                kwargs["action"] = "append"
                kwargs["type"] = _flag_parser(option)
                kwargs["metavar"] = option.metavar
            elif option.switch:
                kwargs["action"] = "store_true"
            else:
                kwargs["type"] = _flag_parser(option)
                kwargs["metavar"] = option.metavar
                kwargs["required"] = option.field in required and default is None
            parser.add_argument(option.flag, **kwargs)

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """The fields set by the parsed flags present in ``args``."""
        values = {}
        for option in self.options:
            if not hasattr(args, option.arg_name):
                continue
            value = getattr(args, option.arg_name)
            if option.repeat:
                given = value is not None
                value = tuple(value) if given else self._unrepeated.get(option.field, value)
            values[option.field] = value
        return values

    def build(self, args: argparse.Namespace, **overrides: Any) -> _C:
        """The config from the parsed flags, with ``overrides`` on top.

        Raises:
            ConfigError: The config refuses the combination (its own checks).
        """
        return self.config(**{**self.values(args), **overrides})

    def _help(self, option: Option, *, required: bool = False) -> str:
        notes = []
        if option.env_name is not None:
            notes.append(f"env {option.env_name}")
        default = self._defaults[option.field]
        if required:
            notes.append("required")
        elif option.default_text is not None:
            notes.append(f"default {option.default_text}")
        elif default is not None and not option.switch:
            notes.append(
                f"default {default:g}" if isinstance(default, float) else f"default {default}"
            )
        return f"{option.help} ({'; '.join(notes)})" if notes else option.help


def env_value(option: Option, environ: Mapping[str, str] | None = None) -> Any:
    """The option's value from its variable; a sentinel when unset (or no variable).

    Raises:
        ConfigError: The variable is set to a value the option's parser refuses.
    """
    name = option.env_name
    environ = os.environ if environ is None else environ
    if name is None or name not in environ:
        return _NO_DEFAULT
    raw = environ[name]
    parse = boolean if option.switch else option.parse
    try:
        if option.repeat:
            return tuple(parse(item.strip()) for item in raw.split(",") if item.strip())
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}, got {raw!r} (fix or unset the variable)") from None


def _flag_parser(option: Option) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return option.parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}, got {raw!r}") from None

    parse.__name__ = option.metavar or option.field  # argparse names it in some errors
    return parse


# -- parsers: each raises ValueError saying what is expected ---------------------


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers in ``minimum..maximum`` (either bound optional)."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer{_range(minimum, maximum)}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"expected an integer{_range(minimum, maximum)}")
        return value

    return parse


def number(minimum: float | None = None, *, positive: bool = False) -> Callable[[str], float]:
    """A parser of finite numbers, at least ``minimum`` or (``positive``) above 0."""

    def parse(raw: str) -> float:
        what = "a positive number" if positive else f"a number{_range(minimum, None)}"
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected {what}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected {what}")
        if (positive and value <= 0) or (minimum is not None and value < minimum):
            raise ValueError(f"expected {what}")
        return value

    return parse


def text(raw: str) -> str:
    """A parser of non-empty text without surrounding whitespace."""
    value = raw.strip()
    if not value:
        raise ValueError("expected a non-empty value")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser of one of ``allowed``."""

    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return raw

    return parse


def host_port(raw: str) -> str:
    """A parser of ``HOST:PORT`` (port 1..65535); returns the text unchanged."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT with a port in 1..65535")
    return raw


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def boolean(raw: str) -> bool:
    """A parser of switches: 1/0, true/false, yes/no, on/off (any case)."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
