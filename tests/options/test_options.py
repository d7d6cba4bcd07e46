"""The option-declaration mechanism: one declaration, flag and variable parsed alike."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from slipstream.errors import ConfigError
from slipstream.options import Option, Options, boolean, host_port, integer, number, text


@dataclass(frozen=True, slots=True)
class _Config:
    port: int = 8000
    rate_hz: float = 2.0
    name: str | None = None
    verbose: bool = False


_OPTIONS = Options(
    _Config,
    [
        Option("port", "--port", "port to bind", parse=integer(0, 65535), env="PORT"),
        Option("rate_hz", "--rate", "updates per second", parse=number(positive=True), env="RATE"),
        Option("name", "--name", "a name", parse=text, env="NAME", default_text="none"),
        Option("verbose", "--verbose", "say more", env="VERBOSE", switch=True),
    ],
)


def _parse(argv: list[str], environ: dict[str, str]) -> _Config:
    parser = argparse.ArgumentParser()
    _OPTIONS.add_arguments(parser, environ=environ)
    return _OPTIONS.build(parser.parse_args(argv))


def test_defaults_come_from_the_dataclass() -> None:
    assert _parse([], {}) == _Config()


def test_variable_sets_the_default_and_the_flag_wins() -> None:
    env = {"SLIPSTREAM_PORT": "9000", "SLIPSTREAM_RATE": "4", "SLIPSTREAM_VERBOSE": "yes"}
    assert _parse([], env) == _Config(port=9000, rate_hz=4.0, verbose=True)
    assert _parse(["--port", "9100"], env).port == 9100


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLIPSTREAM_PORT", "eighty"),
        ("SLIPSTREAM_PORT", "70000"),
        ("SLIPSTREAM_RATE", "0"),
        ("SLIPSTREAM_RATE", "nan"),
        ("SLIPSTREAM_NAME", "  "),
        ("SLIPSTREAM_VERBOSE", "maybe"),
    ],
)
def test_bad_variable_is_a_config_error_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        _parse([], {variable: value})


def test_bad_flag_is_an_argparse_error_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(["--port", "-1"], {})
    assert exit_info.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_help_names_variable_and_default() -> None:
    parser = argparse.ArgumentParser()
    _OPTIONS.add_arguments(parser, environ={})
    text_ = parser.format_help()
    assert "env SLIPSTREAM_PORT; default 8000" in text_
    assert "env SLIPSTREAM_NAME; default none" in text_
    assert _OPTIONS.env_names() == [
        "SLIPSTREAM_PORT",
        "SLIPSTREAM_RATE",
        "SLIPSTREAM_NAME",
        "SLIPSTREAM_VERBOSE",
    ]


def test_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="no field 'nope'"):
        Options(_Config, [Option("nope", "--nope", "x")])


def test_parsers() -> None:
    assert host_port("[::1]:9092") == "[::1]:9092"
    for bad in ("localhost", ":9092", "h:0", "h:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            host_port(bad)
    assert (boolean("ON"), boolean("0")) == (True, False)
    assert integer(minimum=1)("3") == 3
    with pytest.raises(ValueError, match=">= 1"):
        integer(minimum=1)("0")
