"""Who is asking: the fan's address behind trusted proxies (pure, no I/O).

A node behind a load balancer sees the balancer's address on every
connection.  The balancer names the fan in ``Forwarded`` (RFC 7239) or
``X-Forwarded-For``; anyone can send those headers, so a node believes them
only from the proxies it is told to trust (``--trusted-proxy CIDR``).  From
any other peer they are ignored and the peer's own address counts.

Each proxy appends the address it received the request from, so the chain
is read from the right: trusted hops are skipped, and the first address that
is not a trusted proxy is the fan.  An entry that is not an address
(``unknown``, an obfuscated ``_name``, garbage) ends the walk at the last
address known.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from slipstream.errors import ConfigError

__all__ = ["TrustedProxies", "forwarded_for", "parse_address"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> str | None:
    """The IP address in a header entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``), or None."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def forwarded_for(forwarded: str) -> list[str | None]:
    """The ``for=`` addresses of a ``Forwarded`` header, first hop first (None: not an address)."""
    hops: list[str | None] = []
    for element in forwarded.split(","):
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(parse_address(value))
                break
    return hops


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The networks whose forwarding headers a node believes.

    Attributes:
        networks: Trusted networks (empty: no proxy is trusted).
    """

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> TrustedProxies:
        """From ``--trusted-proxy`` values such as ``10.0.0.0/8`` or ``127.0.0.1``.

        Raises:
            ConfigError: A value is not an address or network.
        """
        networks = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"--trusted-proxy {cidr!r} is not an address or network like 10.0.0.0/8"
                ) from None
        return cls(tuple(networks))

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is a trusted proxy."""
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client(
        self, peer: str, forwarded: str | None = None, x_forwarded_for: str | None = None
    ) -> str:
        """The fan's address of a request from ``peer`` with these headers.

        ``Forwarded`` wins over ``X-Forwarded-For`` when both are present;
        several headers of one name are joined with commas first.
        """
        if not self.trusts(peer):
            return peer
        if forwarded:
            hops = forwarded_for(forwarded)
        elif x_forwarded_for:
            hops = [parse_address(part) for part in x_forwarded_for.split(",")]
        else:
            return peer
        address = peer
        for hop in reversed(hops):
            if hop is None:
                break
            address = hop
            if not self.trusts(hop):
                break
        return address
