"""The upstream HTTP client itself: aiohttp's session and connector, the timer of each request, the retry."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import ssl
import weakref
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.http import RawResponseMessage
from aiohttp.http_exceptions import HttpProcessingError

from aiaas.inference.providers.base import UpstreamFailure
from aiaas.inference.providers.client.targets import (
    DNS_TTL_SECONDS,
    EgressResolver,
    Target,
    Targets,
    TlsBundles,
    check_headers,
)
from aiaas.inference.providers.egress import EgressDenied, EgressPolicy

READ_BUFSIZE = 128 * 1024  # aiohttp pauses reading at twice this many unread bytes
MAX_LINE_BYTES = 4 * 1024 * 1024  # one SSE line (an event's data) may be this long
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)
_FIXED_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
# What reading a body raises when the connection breaks or the upstream sends what is not HTTP.
_BROKEN = (aiohttp.ClientError, HttpProcessingError)
_STALE_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED})

# Phases of a request, which say what a timeout means.
_CONNECT, _FIRST_BYTE, _BODY = "connect", "first_byte", "body"


class _Attempt:
    """One request's first-byte timer and what the connector tells it; reached through ``_ATTEMPT``."""

    __slots__ = ("by_deadline", "deadline", "first_byte_at", "first_byte_timeout", "fresh", "loop", "phase",
                 "reused", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timer: asyncio.Timeout, *, first_byte_timeout: float,
                 deadline: float) -> None:
        self.loop = loop
        self.timer = timer
        self.first_byte_timeout = first_byte_timeout
        self.deadline = deadline
        self.fresh = False  # the connector must hand over a new connection (the retry of a stale one)
        self.reused = False  # the connection handed over had served a request before
        self.first_byte_at = deadline
        self.phase = _CONNECT
        self.by_deadline = False  # the phase's time limit is the request's deadline

    def sending(self, reused: bool) -> None:
        """The connection is ready and the request about to be written: the first-byte clock starts."""
        self.reused = reused
        self.phase = _FIRST_BYTE
        at = self.loop.time() + self.first_byte_timeout
        self.by_deadline = at >= self.deadline
        self.first_byte_at = self.deadline if self.by_deadline else at
        self.timer.reschedule(self.first_byte_at)

    def reading(self) -> None:
        """The headers are in: the body has until the deadline."""
        self.phase = _BODY
        self.by_deadline = True
        self.timer.reschedule(self.deadline)

    def connecting(self) -> None:
        """A new connection is to be made: the connect timeout (aiohttp's) bounds it, not this timer."""
        self.phase = _CONNECT
        self.timer.reschedule(None)


_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("aiaas_upstream_attempt", default=None)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, telling the request whether its connection is a reused one (and when it is ready)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._served: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: aiohttp.ClientTimeout) -> Any:
        attempt = _ATTEMPT.get()
        while True:
            conn = await super().connect(req, traces, timeout)
            protocol = conn.protocol
            reused = protocol in self._served
            if reused and attempt is not None and attempt.fresh:
                # The retry of a stale connection goes on a new one: a server that closed one idle connection
                # (its idle timeout, a restart) has most likely closed the others as well.
                conn.close()
                continue
            self._served.add(protocol)
            if attempt is not None:
                attempt.sending(reused)
            return conn


class Response:
    """An upstream response whose status line and headers have arrived; the body is read on demand.

    ``release`` (or ``close``) must be called once it is done with: it gives the origin's slot back.
    """

    __slots__ = ("_done", "_resp", "_slots", "body", "first_byte_at", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, slots: asyncio.Semaphore, first_byte_at: float,
                 body: bytes | None = None) -> None:
        self._resp = resp
        self._slots = slots
        self._done = False
        self.status = resp.status
        self.headers = resp.headers  # case-insensitive
        self.first_byte_at = first_byte_at  # loop time by which the first byte (and first event) was due
        self.body = body  # the whole body, when it was read with the headers (``send(read_body=True)``)

    async def read(self) -> bytes:
        """The rest of the body (``UpstreamFailure`` ``protocol`` if it breaks off)."""
        if self.body is not None:
            return self.body
        try:
            return await self._resp.read()
        except _BROKEN as exc:
            raise UpstreamFailure("protocol", f"the upstream response broke off ({_describe(exc)})") from exc

    async def readline(self) -> bytes:
        """The next line including its ``\\n`` (the rest of the body at its end; ``b""`` after it)."""
        try:
            return await self._resp.content.readline(max_line_length=MAX_LINE_BYTES)
        except _BROKEN as exc:
            raise UpstreamFailure("protocol", f"the upstream stream broke off ({_describe(exc)})") from exc

    def at_eof(self) -> bool:
        """Whether the whole body has arrived and been read."""
        return self._resp.content.at_eof()

    def release(self) -> None:
        """Done: the connection returns to the pool if the body was read to its end, else it is closed."""
        if not self._done:
            self._done = True
            self._resp.release()
            self._slots.release()

    def close(self) -> None:
        """Drop the connection (a body abandoned half way)."""
        if not self._done:
            self._done = True
            self._resp.close()
            self._slots.release()


def _stale(exc: BaseException) -> bool:
    """Whether ``exc`` says the server had closed the connection before sending any byte of a response."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return not isinstance(exc.message, RawResponseMessage)  # no part of a response was parsed
    if isinstance(exc, aiohttp.ClientConnectionResetError):  # the transport was closing when written to
        return True
    return (isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError)
            and exc.errno in _STALE_ERRNOS)


class UpstreamClient:
    """The process's upstream connections (see the package's docstring). Made on the running loop."""

    def __init__(self, *, pool_size: int, keepalive_seconds: float, pool_wait_seconds: float,
                 egress: EgressPolicy | None = None) -> None:
        self._pool_wait = pool_wait_seconds
        self._resolver = EgressResolver(egress)
        connector = _Connector(limit=0, limit_per_host=pool_size, keepalive_timeout=keepalive_seconds,
                               resolver=self._resolver, use_dns_cache=True, ttl_dns_cache=DNS_TTL_SECONDS)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=_FIXED_HEADERS, skip_auto_headers=("User-Agent", "Accept"),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False, timeout=_NO_TIMEOUT,
            read_bufsize=READ_BUFSIZE, raise_for_status=False)
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._targets = Targets(pool_size=pool_size, egress=egress, resolver=self._resolver)
        self._bundles = TlsBundles()

    def _timeout(self, connect_timeout: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(connect_timeout)
        if timeout is None:
            timeout = self._timeouts[connect_timeout] = _connect_timeout(connect_timeout)
        return timeout

    async def send(self, url: str, body: bytes, headers: Mapping[str, str] | None = None, *,
                   connect_timeout: float, first_byte_timeout: float, deadline: float,
                   ca_bundle: str | None = None, read_body: bool = False) -> Response:
        """``POST`` ``body`` to ``url`` and wait for the status line and headers; ``UpstreamFailure`` if not.

        ``headers`` come on top of ``Content-Type: application/json`` and ``Accept-Encoding: identity``;
        ``deadline`` is the loop time by which the whole request must be over. ``read_body``: a 2xx body is
        read too (into :attr:`Response.body`, under the same timer: one fewer per request).
        """
        if headers:
            check_headers(headers)
        if self._session.closed:
            raise UpstreamFailure("connect", "the upstream client is closed (the process is stopping)")
        target = await self._targets.get(url)
        if target.refused is not None:
            raise UpstreamFailure("config", target.refused)
        tls: ssl.SSLContext | bool = True  # True: the system's trust store
        if target.https and ca_bundle:
            tls = await self._bundles.context(ca_bundle)
        if target.proxy is not None:
            try:
                await self._resolver.check(target.host, target.port)
            except EgressDenied as exc:
                raise UpstreamFailure("config", str(exc)) from exc
        loop = asyncio.get_running_loop()
        slots = target.slots
        if slots.locked():
            try:
                async with asyncio.timeout_at(min(loop.time() + self._pool_wait, deadline)):
                    await slots.acquire()
            except TimeoutError:
                raise UpstreamFailure("timeout", f"no free connection to the upstream within {self._pool_wait:g}s "
                                                 "(AIAAS_INFERENCE_UPSTREAM_POOL_SIZE, _POOL_WAIT_SECONDS)") from None
        else:
            await slots.acquire()  # returns at once
        try:
            return await self._post(target, body, headers, tls, loop, slots, connect_timeout=connect_timeout,
                                    first_byte_timeout=first_byte_timeout, deadline=deadline, read_body=read_body)
        except BaseException:
            slots.release()
            raise

    async def _post(self, target: Target, body: bytes, headers: Mapping[str, str] | None,
                    tls: ssl.SSLContext | bool, loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore, *,
                    connect_timeout: float, first_byte_timeout: float, deadline: float,
                    read_body: bool) -> Response:
        left = deadline - loop.time()
        if left <= 0:
            raise UpstreamFailure("timeout", "the request's time ran out before the upstream was called")
        # The connect phase is aiohttp's ClientTimeout.connect: it skips its timer when an idle connection
        # is reused (the common case), and it does not see the pool wait, which the slots above took.
        connect_by_deadline = left <= connect_timeout
        timeout = _connect_timeout(left) if connect_by_deadline else self._timeout(connect_timeout)
        resp: aiohttp.ClientResponse | None = None
        content: bytes | None = None
        attempt: _Attempt | None = None
        try:
            async with asyncio.timeout_at(None) as timer:  # scheduled by the connector once it has a connection
                attempt = _Attempt(loop, timer, first_byte_timeout=first_byte_timeout, deadline=deadline)
                token = _ATTEMPT.set(attempt)
                try:
                    while True:
                        try:
                            resp = await self._session.post(
                                target.url, data=body, headers=headers, allow_redirects=False, proxy=target.proxy,
                                proxy_auth=target.proxy_auth, ssl=tls, timeout=timeout)
                            break
                        except aiohttp.ClientError as exc:
                            if attempt.fresh or not attempt.reused or not _stale(exc):
                                raise
                            attempt.fresh = True  # once, on a new connection, with a connect timeout of its own
                            attempt.connecting()
                            left = deadline - loop.time()
                            connect_by_deadline = left <= connect_timeout
                            timeout = _connect_timeout(max(left, 0.001)) if connect_by_deadline \
                                else self._timeout(connect_timeout)
                    if read_body and 200 <= resp.status < 300:
                        attempt.reading()
                        content = await resp.read()
                except BaseException:
                    if resp is not None:
                        resp.close()
                    raise
                finally:
                    _ATTEMPT.reset(token)
        except (TimeoutError, EgressDenied, aiohttp.ClientError, HttpProcessingError) as exc:
            assert attempt is not None
            raise _failure(exc, attempt, connect_timeout=connect_timeout, connect_by_deadline=connect_by_deadline) \
                from exc
        return Response(resp, slots, attempt.first_byte_at, content)

    def in_use(self) -> int:
        """Requests holding a connection now (0 when the process is idle: what the leak tests check)."""
        return self._targets.in_use()

    async def close(self) -> None:
        """Close every connection (in use or idle) and the resolver."""
        await self._session.close()
        await self._resolver.close()


def _connect_timeout(seconds: float) -> aiohttp.ClientTimeout:
    # Only the connect phase: DNS, TCP, TLS, a proxy's tunnel (not rounded up to whole seconds).
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_connect=None, sock_read=None,
                                 ceil_threshold=86_400)


def _failure(exc: BaseException, attempt: _Attempt, *, connect_timeout: float,
             connect_by_deadline: bool) -> UpstreamFailure:
    """The failure kind (and a detail for logs) of what a request raised."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # aiohttp's connect timeout
        if connect_by_deadline:
            return UpstreamFailure("timeout", "the request's time ran out while connecting to the upstream")
        return UpstreamFailure("connect", f"connecting to the upstream timed out after {connect_timeout:g}s")
    if isinstance(exc, TimeoutError):  # the request's own timer
        if attempt.phase == _BODY:
            return UpstreamFailure("timeout", "the upstream response did not finish in time")
        if attempt.by_deadline:
            return UpstreamFailure("timeout", "the request's time ran out before the upstream answered")
        return UpstreamFailure("timeout", "no response from the upstream before the first-byte timeout")
    if isinstance(exc, EgressDenied):
        return UpstreamFailure("config", str(exc))
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return UpstreamFailure("connect", f"the proxy refused the tunnel to the upstream ({exc.status})")
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS, TLS, the proxy
        return UpstreamFailure("connect", f"cannot connect to the upstream ({exc})")
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamFailure("config", f"bad upstream URL: {exc}")
    if attempt.phase == _BODY:
        return UpstreamFailure("protocol", f"the upstream response broke off ({_describe(exc)})")
    return UpstreamFailure("protocol", f"upstream connection failed ({_describe(exc)})")  # broken, or not HTTP


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
