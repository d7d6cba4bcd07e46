"""slipstream/proxies.py: forwarding headers are believed from trusted proxies only (pure)."""

from __future__ import annotations

import pytest

from slipstream.errors import ConfigError
from slipstream.proxies import TrustedProxies, forwarded_for, parse_address

LB = TrustedProxies.parse(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "xff", "client"),
    [
        # An untrusted peer's headers are ignored, whatever they say.
        ("203.0.113.9", None, "198.51.100.1", "203.0.113.9"),
        ("203.0.113.9", "for=198.51.100.1", None, "203.0.113.9"),
        # The load balancer names the fan.
        ("10.1.2.3", None, "198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "for=198.51.100.1;proto=https", None, "198.51.100.1"),
        ("10.1.2.3", 'for="[2001:db8::7]:4711"', None, "2001:db8::7"),
        ("10.1.2.3", None, "198.51.100.1:5000", "198.51.100.1"),
        # A fan that sends its own header: the chain is read from the right, so the
        # address the load balancer saw wins over the fan's claim.
        ("10.1.2.3", None, "1.1.1.1, 198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "for=1.1.1.1, for=198.51.100.1", None, "198.51.100.1"),
        # Two trusted hops (an edge proxy, then the balancer).
        ("10.1.2.3", None, "198.51.100.1, 10.9.9.9", "198.51.100.1"),
        # Forwarded wins over X-Forwarded-For.
        ("10.1.2.3", "for=198.51.100.2", "198.51.100.1", "198.51.100.2"),
        # Garbage or an obfuscated hop ends the walk at the last address known.
        ("10.1.2.3", None, "not-an-address", "10.1.2.3"),
        ("10.1.2.3", "for=_hidden, for=10.4.4.4", None, "10.4.4.4"),
        ("10.1.2.3", None, None, "10.1.2.3"),
        ("::1", None, "198.51.100.1", "198.51.100.1"),
        ("::ffff:10.0.0.1", None, "198.51.100.1", "198.51.100.1"),
    ],
)
def test_the_client_address(peer: str, forwarded: str | None, xff: str | None, client: str) -> None:
    assert LB.client(peer, forwarded, xff) == client


def test_no_trusted_proxy_means_the_peer_always() -> None:
    nobody = TrustedProxies()
    assert nobody.client("127.0.0.1", "for=198.51.100.1", "198.51.100.1") == "127.0.0.1"
    assert not nobody.trusts("127.0.0.1")


def test_parsing() -> None:
    assert parse_address(" 192.0.2.1 ") == "192.0.2.1"
    assert parse_address('"[::1]:80"') == "::1"
    assert parse_address("unknown") is None
    assert forwarded_for("for=192.0.2.1;by=10.0.0.1, proto=http;for=192.0.2.2") == [
        "192.0.2.1",
        "192.0.2.2",
    ]
    with pytest.raises(ConfigError, match=r"10\.0\.0\.0/8"):
        TrustedProxies.parse(["10.0.0.0/33"])
