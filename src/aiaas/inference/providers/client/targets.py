"""Where an upstream request may go and what it may carry: egress, proxies, TLS trust, header values."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from aiaas.inference.providers.base import UpstreamFailure
from aiaas.inference.providers.egress import EgressDenied, EgressPolicy

DNS_TTL_SECONDS = 10  # aiohttp's default: a name is resolved (and its addresses checked) again this often
TLS_RECHECK_SECONDS = 60.0

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def check_headers(headers: Mapping[str, str]) -> None:
    """Refuse (``config``) a header a parser could read two ways, before anything is sent."""
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise UpstreamFailure("config", f"upstream header name {name!r} is not an HTTP token")
        if not _PRINTABLE.fullmatch(value):
            raise UpstreamFailure("config", f"the value of upstream header {name} has a control or non-ASCII "
                                            "character")


class EgressResolver(AbstractResolver):
    """DNS through aiohttp's default resolver, keeping only the addresses the egress policy allows.

    Raises :class:`~aiaas.inference.providers.egress.EgressDenied` (not an ``OSError``, so aiohttp passes
    it on as it is) when none is allowed. Hosts in :attr:`exempt` (the proxies) are not filtered.
    """

    def __init__(self, policy: EgressPolicy | None) -> None:
        self._policy = policy
        self._inner = aiohttp.DefaultResolver()
        self.exempt: set[tuple[str, int]] = set()
        self._checked: dict[tuple[str, int], float] = {}

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The addresses of ``host`` the gateway may connect to."""
        found = await self._inner.resolve(host, port, family)
        if self._policy is None or (host, port) in self.exempt:
            return found
        allowed = [r for r in found if self._policy.allows(r["host"], port)]
        if not allowed:
            raise EgressDenied(f"{host}:{port} resolves only to addresses the egress policy refuses "
                               "(see AIAAS_UPSTREAM_EGRESS_ALLOW)")
        return allowed

    async def check(self, host: str, port: int) -> None:
        """Resolve and check a host the gateway will not connect to itself (a proxy's target)."""
        if self._policy is None:
            return
        now = time.monotonic()
        if self._checked.get((host, port), 0.0) > now:
            return
        await self._policy.resolve(host, port)  # EgressDenied when no address is allowed
        self._checked[(host, port)] = now + DNS_TTL_SECONDS

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


@dataclass(slots=True)
class Target:
    """What one upstream URL needs on every request, worked out on its first."""

    url: URL
    host: str
    port: int
    https: bool
    slots: asyncio.Semaphore  # the origin's: at most pool_size requests at once
    proxy: URL | None
    proxy_auth: aiohttp.BasicAuth | None
    refused: str | None  # why the request may not go out (egress, an unusable proxy), or None


class Slots(asyncio.Semaphore):
    """An origin's request slots: a semaphore that also says how many are taken (``in_use``)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.taken = 0

    async def acquire(self) -> bool:
        await super().acquire()
        self.taken += 1
        return True

    def release(self) -> None:
        self.taken -= 1
        super().release()


class Targets:
    """The :class:`Target` of each upstream URL, and one :class:`Slots` per origin."""

    def __init__(self, *, pool_size: int, egress: EgressPolicy | None, resolver: EgressResolver) -> None:
        self._pool_size = pool_size
        self._egress = egress
        self._resolver = resolver
        self._targets: dict[str, Target] = {}
        self._slots: dict[tuple[str, str, int], Slots] = {}

    def in_use(self) -> int:
        """Slots taken now, over every origin: requests sent whose response is not yet released."""
        return sum(s.taken for s in self._slots.values())

    async def get(self, url: str) -> Target:
        """The target of ``url`` (the first call per URL reads the proxy settings on a worker thread)."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = await self._new(url)
        return target

    async def _new(self, url: str) -> Target:
        try:
            parsed = URL(url)
        except ValueError as exc:
            raise UpstreamFailure("config", f"bad upstream URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host or parsed.user or parsed.password:
            raise UpstreamFailure("config", "bad upstream URL: expected http(s)://host[:port][/path]")
        host, port = parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
        # Reads the environment and ~/.netrc (the proxy's credentials): not on the loop.
        proxy, proxy_auth, refused = await asyncio.to_thread(proxy_for, parsed)
        if proxy is not None:
            self._resolver.exempt.add((proxy.host or "", proxy.port or 80))
        elif self._egress is not None and _is_ip(host) and not self._egress.allows(host, port):
            # aiohttp does not resolve an IP literal, so the resolver never sees it: checked here.
            refused = f"{host}:{port} is an address the egress policy refuses (see AIAAS_UPSTREAM_EGRESS_ALLOW)"
        key = (parsed.scheme, host, port)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = Slots(self._pool_size)
        return Target(parsed, host, port, parsed.scheme == "https", slots, proxy, proxy_auth, refused)


def proxy_for(url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None, str | None]:  # runs on a worker thread
    """The proxy for ``url`` from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, or why the request may not go out."""
    try:
        proxy, auth = get_env_proxy_for_url(url)
    except LookupError:  # none for this URL, NO_PROXY says so, or one aiohttp cannot use
        configured = urllib.request.getproxies().get(url.scheme)
        if configured and not urllib.request.proxy_bypass(url.host or ""):
            # aiohttp speaks only plain HTTP to a proxy and would skip an https:// one: going around the
            # operator's proxy is not what they asked for.
            return None, None, (f"the proxy configured for {url.scheme}:// upstreams ({url.scheme.upper()}_PROXY) "
                                "is not an http:// URL")
        return None, None, None
    return proxy, auth, None


@dataclass(slots=True)
class _Bundle:
    context: ssl.SSLContext
    signature: tuple[int, int, int]
    recheck_at: float


class TlsBundles:
    """An ``SSLContext`` per deployment CA bundle, loaded on a worker thread and re-read when the file changes."""

    def __init__(self) -> None:
        self._bundles: dict[str, _Bundle] = {}

    async def context(self, path: str) -> ssl.SSLContext:
        """The context trusting the CAs of the PEM file ``path`` (``config`` failure if it cannot be loaded)."""
        bundle = self._bundles.get(path)
        if bundle is None or bundle.recheck_at <= time.monotonic():
            bundle = self._bundles[path] = await asyncio.to_thread(_load, path, bundle)
        return bundle.context


def _load(path: str, old: _Bundle | None) -> _Bundle:  # runs on a worker thread
    try:
        st = os.stat(path)
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if old is not None and old.signature == signature:
            return _Bundle(old.context, signature, time.monotonic() + TLS_RECHECK_SECONDS)
        context = ssl.create_default_context(cafile=path)
        context.set_alpn_protocols(("http/1.1",))  # as aiohttp's own default context says
    except (OSError, ssl.SSLError, ValueError) as exc:
        if old is not None:  # a file being replaced: keep trusting what was loaded, try again soon
            return _Bundle(old.context, old.signature, time.monotonic() + 1.0)
        raise UpstreamFailure("config", f"the deployment's ca_bundle {path} cannot be loaded ({exc})") from exc
    return _Bundle(context, signature, time.monotonic() + TLS_RECHECK_SECONDS)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
