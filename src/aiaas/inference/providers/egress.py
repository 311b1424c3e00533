"""Where the gateway may connect to: the egress policy every upstream connection is checked against.

A deployment's ``base_url`` is written by a platform admin, but an address is only as safe as what it
resolves to: ``http://metadata.internal`` or a name that resolves to ``127.0.0.1`` would turn the gateway
into a proxy to the cloud's metadata service, the internal API, Redis or PostgreSQL. So the check is
made on the resolved addresses, when a name is resolved for a new connection (the upstream client's
resolver keeps only allowed addresses, cached for a few seconds; a name that changes what it resolves
to, DNS rebinding, is checked again once that cache expires), and the connection goes to an address
checked. An IP-literal host is checked as it is; through a proxy, the upstream's host is resolved and
checked before the request goes to the proxy (the proxy itself is the operator's).

Rules, in order:

1. an address in ``AIAAS_UPSTREAM_EGRESS_DENY`` is refused;
2. an address (and port, when the entry names one) in ``AIAAS_UPSTREAM_EGRESS_ALLOW`` is allowed;
3. outside development, loopback, private (RFC 1918, unique-local), link-local (cloud metadata),
   carrier-grade NAT, multicast, reserved and unspecified addresses are refused; everything else is
   allowed.

Entries are IP addresses or CIDR networks, each optionally followed by ``:port`` (IPv6 in brackets:
``[fd00::1]:8000``), comma-separated. A typical production install that runs vLLM inside its cluster
sets ``AIAAS_UPSTREAM_EGRESS_ALLOW=10.0.0.0/8`` (or the exact pod network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class EgressDenied(Exception):
    """The upstream's address is not one the gateway may connect to."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A network, and optionally the one port of it an entry is about."""

    network: IPNetwork
    port: int | None = None

    def matches(self, ip: IPAddress, port: int) -> bool:
        return ip in self.network and (self.port is None or self.port == port)


def parse_entries(text: str) -> tuple[Entry, ...]:
    """``10.0.0.0/8, 127.0.0.1:9000, [fd00::1]:8000`` as entries; ``ValueError`` naming a bad one."""
    out = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        port: int | None = None
        addr = raw
        if raw.startswith("["):
            addr, _, rest = raw[1:].partition("]")
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ValueError(f"{raw!r}: expected [address]:port")
                port = int(rest[1:])
        elif raw.count(":") == 1:
            addr, _, port_text = raw.partition(":")
            if not port_text.isdigit():
                raise ValueError(f"{raw!r}: the port is not a number")
            port = int(port_text)
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"{raw!r}: the port is out of range")
        try:
            network = ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise ValueError(f"{raw!r} is not an IP address or CIDR network") from None
        out.append(Entry(network, port))
    return tuple(out)


def _internal(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT))


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """The rules above, for one process."""

    allow: tuple[Entry, ...] = ()
    deny: tuple[Entry, ...] = ()
    deny_internal: bool = True

    def allows(self, ip_text: str, port: int) -> bool:
        """Whether a connection to ``ip_text:port`` is allowed."""
        ip = ipaddress.ip_address(ip_text.split("%", 1)[0])  # a zone id (fe80::1%eth0) is not the address
        if any(e.matches(ip, port) for e in self.deny):
            return False
        if any(e.matches(ip, port) for e in self.allow):
            return True
        return not (self.deny_internal and _internal(ip))

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` the gateway may connect to, in resolver order; ``EgressDenied`` if none."""
        try:
            ipaddress.ip_address(host.strip("[]"))
            candidates: Sequence[str] = [host.strip("[]")]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise EgressDenied(f"cannot resolve {host}: {exc}") from exc
            candidates = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [ip for ip in candidates if self.allows(ip, port)]
        if not allowed:
            raise EgressDenied(f"{host}:{port} resolves only to addresses the egress policy refuses "
                               "(see AIAAS_UPSTREAM_EGRESS_ALLOW)")
        return allowed
