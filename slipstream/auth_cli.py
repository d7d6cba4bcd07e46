"""``slipstream token``: mint a fan token from ``SLIPSTREAM_SECRET``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from slipstream.auth import AUTH_OPTIONS, MIN_SECRET_BYTES, mint_token
from slipstream.catalogue import CATALOGUE
from slipstream.errors import ConfigError

__all__ = ["register"]


def _cars(text: str) -> list[int] | None:
    if text.strip() == "*":
        return None
    try:
        cars = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected car numbers like 24,48 or *, got {text!r}"
        ) from None
    if not cars:
        raise argparse.ArgumentTypeError("give at least one car number, or *")
    return cars


def _groups(text: str) -> list[str] | None:
    if text.strip() == "*":
        return None
    groups = [part.strip() for part in text.split(",") if part.strip()]
    if not groups:
        raise argparse.ArgumentTypeError("give at least one group name, or *")
    return groups


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``token`` command."""
    premium = ", ".join(g.name for g in CATALOGUE.groups if g.premium) or "none"
    parser = commands.add_parser(
        "token",
        help="mint a signed, expiring fan token (needs SLIPSTREAM_SECRET)",
        description="Print a token (an HS256 JWT) that lets a fan subscribe to the given cars "
        "and channel groups until it expires; pass it to `slipstream subscribe --token`, the "
        "Python client or the page (?token=). Signed with the secret in SLIPSTREAM_SECRET "
        f"(at least {MIN_SECRET_BYTES} bytes), the same the broadcast nodes use. "
        f"Premium groups ({premium}) are only granted when named.",
    )
    AUTH_OPTIONS.add_arguments(parser)  # SLIPSTREAM_SECRET, no flag
    parser.add_argument(
        "--cars",
        type=_cars,
        default=None,
        metavar="N,N|*",
        help="car numbers the fan may see, e.g. 24,48 (default *: every car)",
    )
    parser.add_argument(
        "--groups",
        type=_groups,
        default=None,
        metavar="G,G|*",
        help="channel groups the fan may see, e.g. tyres,engine (default *: every group but "
        f"the premium ones: {premium}); see `slipstream channels`",
    )
    parser.add_argument(
        "--ttl",
        type=float,
        default=3600.0,
        metavar="S",
        help="lifetime in seconds (default 3600); the session ends when it expires",
    )
    parser.add_argument("--subject", help="who the token is for (kept in the token, for logs)")
    parser.set_defaults(func=_cmd_token)


def _cmd_token(args: argparse.Namespace) -> int:
    secret: str | None = args.secret
    if not secret:
        raise ConfigError(
            "SLIPSTREAM_SECRET is not set: export the secret the broadcast nodes use "
            '(make one with: python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    try:
        token = mint_token(secret, args.cars, args.groups, args.ttl, subject=args.subject)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None
    sys.stdout.write(token + "\n")
    return 0
