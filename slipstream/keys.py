"""Token keys: which key signs, which keys a node accepts, and their ids (``kid``).

Two kinds of key (docs/security.md):

* **HS256 secret** (``SLIPSTREAM_SECRET``): one shared secret signs and
  verifies; the ticketing side and every node hold it.
* **Ed25519 key pair** (JWT ``alg`` ``EdDSA``): the ticketing side alone holds
  the private key (``slipstream token --private-key``); nodes hold only public
  keys (``--token-public-key``) and cannot mint tokens.

Every token names its key in its header (``kid``), derived from the key
itself (the first 16 hex digits of SHA-256 of the secret, or of the raw public
key), so the ticketing side and the nodes agree without configuring ids.  A
node accepts a :class:`KeySet`: the current key and the previous ones, so a
key is rotated without ending sessions (add the new key to the nodes, switch
the ticketing side, remove the old key once its last token expired).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from slipstream.errors import ConfigError

__all__ = [
    "HMAC_ALGORITHM",
    "MIN_SECRET_BYTES",
    "PUBLIC_KEY_ALGORITHM",
    "KeySet",
    "SigningKey",
    "VerifyKey",
    "generate_key_pair",
    "hmac_key",
    "load_private_key",
    "load_public_key",
]

HMAC_ALGORITHM = "HS256"
PUBLIC_KEY_ALGORITHM = "EdDSA"
#: Shortest accepted secret (RFC 7518 section 3.2: a key as long as the hash).
MIN_SECRET_BYTES = 32

_SECRET_HINT = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


def _kid(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:16]


def check_secret(secret: str | bytes) -> bytes:
    """``secret`` as bytes, refused when shorter than :data:`MIN_SECRET_BYTES`."""
    key = secret.encode() if isinstance(secret, str) else secret
    if not isinstance(key, bytes):
        raise TypeError("the secret must be str or bytes")
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"a token secret must be at least {MIN_SECRET_BYTES} bytes (got {len(key)}); "
            + _SECRET_HINT
        )
    return key


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A key a node checks signatures with.

    Attributes:
        kid: The key's id (what tokens name in their header).
        algorithm: ``HS256`` or ``EdDSA``.
        key: The secret (bytes) or the Ed25519 public key.
    """

    kid: str
    algorithm: str
    key: bytes | Ed25519PublicKey

    def __repr__(self) -> str:
        return f"VerifyKey(kid={self.kid!r}, algorithm={self.algorithm!r})"  # never the secret


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key the ticketing side signs with (``kid`` goes in each token's header)."""

    kid: str
    algorithm: str
    key: bytes | Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


def hmac_key(secret: str | bytes) -> SigningKey:
    """The HS256 key of a shared secret (it both signs and verifies).

    Raises:
        ConfigError: The secret is too short.
    """
    key = check_secret(secret)
    return SigningKey(_kid(key), HMAC_ALGORITHM, key)


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_key(path: str | Path) -> VerifyKey:
    """An Ed25519 public key from a PEM file (``slipstream token --generate-key``'s ``.pub``).

    Raises:
        ConfigError: The file is missing or holds no Ed25519 public key.
    """
    try:
        public = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the token public key {path}: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key (make one with --generate-key)")
    return VerifyKey(_kid(_raw_public(public)), PUBLIC_KEY_ALGORITHM, public)


def load_private_key(path: str | Path) -> SigningKey:
    """An Ed25519 private key from a PEM file (unencrypted).

    Raises:
        ConfigError: The file is missing or holds no Ed25519 private key.
    """
    try:
        private = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the token private key {path}: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key (make one with --generate-key)")
    return SigningKey(_kid(_raw_public(private.public_key())), PUBLIC_KEY_ALGORITHM, private)


def generate_key_pair(path: str | Path) -> tuple[Path, Path, str]:
    """Write a new Ed25519 key pair: ``path`` (private, mode 0600) and ``path.pub``.

    Returns:
        The private key's path, the public key's path and the key's ``kid``.

    Raises:
        ConfigError: ``path`` exists already (never overwritten) or cannot be written.
    """
    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + ".pub")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{private_path} exists; pick a new path (keys are never overwritten)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot write {private_path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path, _kid(_raw_public(private.public_key()))


def _with_keys(secrets: Iterable[str | bytes]) -> list[tuple[str | bytes, SigningKey]]:
    return [(secret, hmac_key(secret)) for secret in secrets]


class KeySet:
    """The keys a node accepts tokens from, by ``kid``.

    Args:
        keys: Current and previous keys (order does not matter; ids must differ).

    Raises:
        ConfigError: No key, or two keys with the same id.
    """

    def __init__(self, keys: Iterable[VerifyKey]) -> None:
        self._by_kid: dict[str, VerifyKey] = {}
        for key in keys:
            if key.kid in self._by_kid:
                raise ConfigError(f"token key {key.kid} is given twice")
            self._by_kid[key.kid] = key
        if not self._by_kid:
            raise ConfigError("a node that checks tokens needs at least one key")

    @classmethod
    def of(
        cls, secrets: Iterable[str | bytes] = (), public_keys: Iterable[str | Path] = ()
    ) -> KeySet:
        """The set of HS256 ``secrets`` and the Ed25519 public keys in the files ``public_keys``."""
        keys = [VerifyKey(k.kid, k.algorithm, check_secret(s)) for s, k in _with_keys(secrets)]
        return cls([*keys, *map(load_public_key, public_keys)])

    @property
    def kids(self) -> list[str]:
        """The accepted key ids."""
        return list(self._by_kid)

    def candidates(self, kid: str | None) -> list[VerifyKey]:
        """The keys to check a token naming ``kid`` with (every HS256 key for a token naming none).

        Tokens minted before keys had ids name none; only shared secrets made them.
        """
        if kid is None:
            return [k for k in self._by_kid.values() if k.algorithm == HMAC_ALGORITHM]
        key = self._by_kid.get(kid)
        return [] if key is None else [key]
