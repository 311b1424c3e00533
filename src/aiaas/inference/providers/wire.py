"""A lean HTTP/1.1 client for OpenAI-compatible upstreams: keep-alive connections, httptools parsing.

The gateway makes one upstream request per inference request, and the client's cost is paid on every one.
Measured on our machine (``bench/upstream_clients.py``: a bare ASGI proxy in front of the fake upstream,
concurrency 1, added p50): this module 0.15 ms, pyreqwest 0.31, aiohttp 0.33, rnet 0.40, aiosonic 0.52.
httptools (llhttp, the parser uvicorn runs on) does the parsing here, chunked bodies included; this
module only keeps connections and hands bytes over:

- ``Pool.request`` writes one ``POST`` on an idle keep-alive connection of the origin (or a new one,
  TLS for ``https``) and returns as soon as the status line and headers are in: a :class:`Response`
  whose body is read whole (``read``) or line by line as it arrives (``readline``, for SSE);
- a response read to its end goes back to the pool (``release``); one abandoned half way, or a
  connection the server marked ``close``, is closed (``close``); idle connections older than
  ``keepalive`` seconds are not reused;
- at most ``limit`` connections per origin are open; further requests wait for one to be released;
- timeouts are the caller's (``asyncio.timeout``), except ``connect_timeout`` here. A cancelled request
  never returns its connection to the pool.

Failures raise :class:`ConnectFailed` (refused, unreachable, connect timeout, TLS) or
:class:`ProtocolFailed` (the connection broke or the reply was not HTTP); the provider maps them to its
failure kinds. Not supported, because OpenAI-compatible upstreams do not need them: proxies, redirects,
cookies, compression (the request says ``Accept-Encoding: identity``), HTTP/2.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass

import httptools

from aiaas.inference.providers.egress import EgressDenied, EgressPolicy

_HIGH_WATER = 256 * 1024  # buffered, unread body bytes above which reading from the socket pauses


class ConnectFailed(Exception):
    """No connection to the upstream (refused, unreachable, TLS failure or connect timeout)."""


class ProtocolFailed(Exception):
    """The connection broke, or the upstream's reply was not valid HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where to connect, and what to put in the request line and ``Host`` header."""

    scheme: str
    host: str
    port: int
    path: bytes
    host_header: bytes

    @classmethod
    def parse(cls, url: str) -> Origin:
        """An ``http://`` or ``https://`` URL (path and query kept as given)."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url!r}")
        authority, slash, path = rest.partition("/")
        path = slash + path if slash else "/"
        if "@" in authority:
            raise ValueError("credentials in upstream URLs are not supported; use a credential reference")
        default = 443 if scheme == "https" else 80
        if authority.startswith("["):  # IPv6 literal
            host, _, port_part = authority[1:].partition("]")
            port = int(port_part[1:]) if port_part.startswith(":") else default
        else:
            host, _, port_text = authority.partition(":")
            port = int(port_text) if port_text else default
        if not host:
            raise ValueError(f"no host in {url!r}")
        return cls(scheme, host, port, path.encode(), authority.encode("idna"))


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the response being read on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.broken: Exception | None = None
        self._loop = asyncio.get_running_loop()
        self._reset()

    def _reset(self) -> None:
        self.headers: dict[str, str] = {}
        self.status = 0
        self.body = bytearray()
        self.complete = False
        self.keep_alive = True
        self._headers_done: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(ProtocolFailed(f"invalid HTTP from the upstream: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_done.done() and not self.complete and self._reads_to_eof():
            self.complete = True  # a body delimited by the end of the connection
            self.keep_alive = False
            self._wake()
            return
        if not self.complete:
            self._fail(ProtocolFailed("the upstream closed the connection" + (f" ({exc})" if exc else "")))
        self.broken = self.broken or ProtocolFailed("connection closed")

    # --- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if not self._headers_done.done():
            self._headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # --- used by Response
    def _reads_to_eof(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.broken = exc
        if not self._headers_done.done():
            self._headers_done.set_exception(exc)
            self._headers_done.exception()  # retrieved here; the request re-raises it
        self._wake()

    async def wait_for_data(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def send(self, payload: bytes) -> asyncio.Future[None]:
        self._reset()
        self.transport.write(payload)  # type: ignore[union-attr]
        return self._headers_done

    @property
    def usable(self) -> bool:
        return self.broken is None and self.transport is not None and not self.transport.is_closing()


class Response:
    """An upstream response whose status line and headers have arrived; the body is read on demand."""

    __slots__ = ("_conn", "_done", "_origin", "_pool", "headers", "status")

    def __init__(self, pool: Pool, origin: Origin, conn: _Connection) -> None:
        self._pool = pool
        self._origin = origin
        self._conn = conn
        self._done = False
        self.status = conn.status
        self.headers = conn.headers  # names in lower case

    def at_eof(self) -> bool:
        """Whether the whole body has arrived and been read."""
        return self._conn.complete and not self._conn.body

    async def read(self) -> bytes:
        """The rest of the body."""
        conn = self._conn
        while not conn.complete:
            if conn.broken is not None:
                raise conn.broken
            await conn.wait_for_data()
        if conn.broken is not None and not conn.complete:
            raise conn.broken
        data = bytes(conn.body)
        conn.body.clear()
        return data

    async def readline(self) -> bytes:
        """The next line including its ``\\n`` (the rest of the body at its end; ``b""`` after it)."""
        conn = self._conn
        while True:
            i = conn.body.find(b"\n")
            if i >= 0:
                line = bytes(conn.body[: i + 1])
                del conn.body[: i + 1]
                return line
            if conn.complete:
                line = bytes(conn.body)
                conn.body.clear()
                return line
            if conn.broken is not None:
                raise conn.broken
            await conn.wait_for_data()

    def release(self) -> None:
        """Give the connection back when the body was read to its end; close it otherwise."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and not conn.body and conn.keep_alive and conn.usable:
            self._pool._put_back(self._origin, conn)
        else:
            self._pool._discard(self._origin, conn)

    def close(self) -> None:
        """Drop the connection (a body abandoned half way)."""
        if not self._done:
            self._done = True
            self._pool._discard(self._origin, self._conn)


class Pool:
    """Keep-alive connections per origin, at most ``limit`` open per origin."""

    def __init__(self, *, limit: int = 100, keepalive: float = 15.0, ssl_context: ssl.SSLContext | None = None,
                 egress: EgressPolicy | None = None) -> None:
        self._egress = egress
        self._limit = limit
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def request(self, origin: Origin, body: bytes, headers: list[tuple[bytes, bytes]], *,
                      connect_timeout: float) -> Response:
        """``POST`` ``body`` to ``origin`` and wait for the status line and headers."""
        if self._closed:
            raise ConnectFailed("the upstream pool is closed")
        key = (origin.scheme, origin.host, origin.port)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self._limit)
        await slots.acquire()
        conn: _Connection | None = None
        try:
            conn = self._take_idle(key) or await self._connect(origin, connect_timeout)
            head = [b"POST ", origin.path, b" HTTP/1.1\r\nHost: ", origin.host_header,
                    b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
            for name, value in headers:
                head += (name, b": ", value, b"\r\n")
            head += (b"\r\n", body)
            await conn.send(b"".join(head))
            return Response(self, origin, conn)
        except BaseException:
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            slots.release()
            raise

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the server
            if conn.usable and now - conn.idle_since < self._keepalive:
                return conn
            if conn.transport is not None:
                conn.transport.close()
        return None

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                # Connect to an address the egress policy allowed (resolved once, then used): a name
                # cannot resolve to something else between the check and the connect.
                host = (await self._egress.resolve(origin.host, origin.port))[0] if self._egress else origin.host
                _, conn = await loop.create_connection(_Connection, host, origin.port, ssl=tls,
                                                       server_hostname=origin.host if tls else None)
        except EgressDenied as exc:
            raise ConnectFailed(str(exc)) from exc
        except TimeoutError as exc:
            raise ConnectFailed(f"connect to {origin.host}:{origin.port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        return conn

    def _put_back(self, origin: Origin, conn: _Connection) -> None:
        key = (origin.scheme, origin.host, origin.port)
        conn.idle_since = time.monotonic()
        if self._closed:
            conn.transport.close()  # type: ignore[union-attr]
        else:
            self._idle.setdefault(key, deque()).append(conn)
        self._slots[key].release()

    def _discard(self, origin: Origin, conn: _Connection) -> None:
        if conn.transport is not None:
            conn.transport.abort()
        self._slots[(origin.scheme, origin.host, origin.port)].release()

    async def close(self) -> None:
        """Close every idle connection; connections in use are closed when released."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                conn = idle.pop()
                if conn.transport is not None:
                    conn.transport.close()
        await asyncio.sleep(0)
