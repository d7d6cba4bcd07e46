"""``slipstream token``: mint a fan or operator token; make an Ed25519 key pair."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipstream.auth import AUTH_OPTIONS, mint_token
from slipstream.catalogue import CATALOGUE
from slipstream.errors import ConfigError
from slipstream.keys import (
    MIN_SECRET_BYTES,
    SigningKey,
    generate_key_pair,
    hmac_key,
    load_private_key,
)
from slipstream.options import Option, Options

__all__ = ["TOKEN_OPTIONS", "register"]


@dataclass(frozen=True, slots=True)
class TokenSigning:
    """How ``slipstream token`` signs (besides ``SLIPSTREAM_SECRET``).

    Attributes:
        private_key: An Ed25519 private key (PEM file); None signs with the secret.
    """

    private_key: str | None = None


def _pem_file(raw: str) -> str:
    if not Path(raw).is_file():
        raise ValueError("expected an existing file (a PEM private key)")
    return raw


TOKEN_OPTIONS = Options(
    TokenSigning,
    [
        Option(
            "private_key", "--private-key",
            "sign with this Ed25519 private key (EdDSA) instead of SLIPSTREAM_SECRET",
            parse=_pem_file, env="TOKEN_PRIVATE_KEY", metavar="PEM", default_text="none",
        ),
    ],
)  # fmt: skip


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
        help="mint a signed, expiring fan or operator token",
        description="Print a token (a JWT) that lets a fan subscribe to the given cars "
        "and channel groups until it expires; pass it to `slipstream subscribe --token`, the "
        "Python client or the page (?token=). Signed with the Ed25519 private key of "
        "--private-key (EdDSA: the nodes hold only its public key, --token-public-key) or "
        f"else the secret in SLIPSTREAM_SECRET (HS256, at least {MIN_SECRET_BYTES} bytes, the "
        "same the nodes use). The token's header names its key (kid), so nodes accept the "
        "current and the previous key during a rotation. "
        f"Premium groups ({premium}) are only granted when named. --operator mints a token "
        "for the operator paths (/v1/sessions) instead, which carries no telemetry.",
    )
    AUTH_OPTIONS.add_arguments(parser, ("secret",))  # SLIPSTREAM_SECRET, no flag
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
    parser.add_argument(
        "--operator",
        action="store_true",
        help="an operator token: opens /v1/sessions and other per-fan details, no telemetry "
        "(--cars and --groups are ignored)",
    )
    TOKEN_OPTIONS.add_arguments(parser)
    parser.add_argument(
        "--generate-key",
        metavar="PATH",
        help="write a new Ed25519 key pair to PATH (private, mode 0600) and PATH.pub (for the "
        "nodes' --token-public-key), print its kid and exit",
    )
    parser.set_defaults(func=_cmd_token)


def _signing_key(args: argparse.Namespace) -> SigningKey:
    if args.private_key:
        return load_private_key(args.private_key)
    secret: str | None = args.secret
    if not secret:
        raise ConfigError(
            "SLIPSTREAM_SECRET is not set: export the secret the broadcast nodes use "
            '(make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"), '
            "or sign with --private-key"
        )
    return hmac_key(secret)


def _cmd_token(args: argparse.Namespace) -> int:
    if args.generate_key:
        private, public, kid = generate_key_pair(args.generate_key)
        sys.stdout.write(f"kid {kid}\nprivate key {private} (keep it on the ticketing side)\n")
        sys.stdout.write(f"public key {public} (give it to the nodes: --token-public-key)\n")
        return 0
    key = _signing_key(args)
    try:
        token = mint_token(
            key, args.cars, args.groups, args.ttl, subject=args.subject, operator=args.operator
        )
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None
    sys.stdout.write(token + "\n")
    return 0
