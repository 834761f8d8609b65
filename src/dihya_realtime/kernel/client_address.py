"""The client's address, as every limit and audit row must see it.

Behind a reverse proxy (the README's nginx) ``REMOTE_ADDR`` is the proxy: every user would
share one per-address limit. ``X-Forwarded-For`` names the client, but anyone can send that
header, so it is believed only when the peer is a trusted proxy
(``DIHYA_RT_TRUSTED_PROXIES``, CIDRs), and then only up to the first hop that is not itself
trusted: proxies *append* the address they saw, so the right-most untrusted entry is the
one no client could forge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLIENT_ADDRESS_KEY = "dihya_rt.client_address"
"""Where the computed address is cached in a WSGI environ."""


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "::1"]`` → networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1:value.index("]")]
    elif value.count(":") == 1:  # "192.0.2.1:443"
        value = value.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             networks: tuple[Network, ...]) -> bool:
    return ip is not None and any(ip in net for net in networks)


def client_address(environ: Mapping[str, Any], trusted: tuple[Network, ...]) -> str | None:
    """The client address of a WSGI request: ``REMOTE_ADDR``, or when that peer is a trusted
    proxy, the right-most ``X-Forwarded-For`` entry that is not a trusted proxy (the
    left-most entry when all are trusted). A malformed entry stops the walk: it is what the
    last trusted proxy received, so that hop's peer (the entry's right neighbour) is used.
    """
    cached = environ.get(CLIENT_ADDRESS_KEY)
    if cached is not None:
        return str(cached)
    remote = environ.get("REMOTE_ADDR")
    address = remote
    peer = _ip(str(remote)) if remote else None
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded and _trusted(peer, trusted):
        hops = [h for h in str(forwarded).split(",") if h.strip()]
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:
                break
            address = str(ip)
            if not _trusted(ip, trusted):
                break
    elif peer is not None:
        address = str(peer)
    if isinstance(environ, dict) and address is not None:
        environ[CLIENT_ADDRESS_KEY] = address
    return address
