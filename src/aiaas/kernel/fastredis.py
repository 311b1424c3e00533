"""One pipelined Redis connection for the streamer's hot path (``MGET`` and the admission script).

Every inference request makes two Redis calls. Through redis-py each costs about 75-90 us of CPU on our
machine (connection-pool checkout, a task per write when a socket timeout is set, retry and health
wrappers); coredis (about 145 us) and valkey-glide (about 100 us) cost more (``bench/redis_clients.py``).
The protocol itself needs a fraction of that. This client keeps one connection per process and writes
each command as soon as it is issued, without waiting for earlier replies: Redis answers in order, so
replies are matched to callers first-in first-out, and hiredis parses them. Concurrent requests share
the connection instead of queueing for a pool.

Failures look like redis-py's, so callers keep one error handling (``kernel.redis.RedisUnavailable``):

- connection refused or lost: ``redis.exceptions.ConnectionError`` for every pending and the next call
  (each call after a loss reconnects);
- no reply within ``timeout`` (Redis hung or the network dropped packets): the connection is closed and
  its pending calls fail with ``redis.exceptions.TimeoutError``. One timer per connection checks the
  oldest pending call, not one per call;
- error replies: ``redis.exceptions.ResponseError`` (``NoScriptError`` for ``NOSCRIPT``).

A caller that is cancelled leaves its slot in the queue; the reply is read and dropped, so the next
caller still gets its own. Only plain TCP (``redis://``) is served here; ``make_hot_redis`` returns a
redis-py client for TLS or Unix-socket URLs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Reply = Any


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP (an array of bulk strings), packed by hiredis; str, bytes, int and float only."""
    return hiredis.pack_command(args)  # type: ignore[no-any-return]


def _error(reply: hiredis.ReplyError) -> ResponseError:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)


class _Line(asyncio.Protocol):
    """One connection: commands written at once, replies handed to waiters in order."""

    def __init__(self, timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[tuple[asyncio.Future[Reply], float]] = deque()
        self.closed = False
        self._reader = hiredis.Reader()
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._failure: Exception = RedisConnectionError("Connection to Redis lost.")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self.waiters:  # a reply nobody asked for: the stream is out of step, start over
                self.abort(RedisConnectionError("Redis sent a reply nobody asked for."))
                return
            fut, _ = self.waiters.popleft()
            if fut.done():  # its caller was cancelled; the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(_error(reply))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        while self.waiters:
            fut, _ = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(self._failure)

    def abort(self, failure: Exception) -> None:
        """Fail every pending call with ``failure`` and drop the connection."""
        self._failure = failure
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails the waiters

    def send(self, payload: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Reply]:
        fut: asyncio.Future[Reply] = loop.create_future()
        self.waiters.append((fut, time.monotonic()))
        self.transport.write(payload)  # type: ignore[union-attr]
        if self._timer is None:
            self._timer = loop.call_later(self._timeout, self._check, loop)
        return fut

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self.closed or not self.waiters:
            return
        waited = time.monotonic() - self.waiters[0][1]
        if waited >= self._timeout:
            self.abort(RedisTimeoutError(f"Redis did not answer within {self._timeout}s."))
            return
        self._timer = loop.call_later(self._timeout - waited, self._check, loop)


class PipelinedRedis:
    """A minimal Redis client over one pipelined connection: ``mget``, ``evalsha``, ``eval``, ``execute``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 6379, db: int = 0, username: str | None = None,
                 password: str | None = None, timeout: float = 2.0, connect_timeout: float = 1.0) -> None:
        self._host, self._port, self._db = host, port, db
        self._username, self._password = username, password
        self._timeout, self._connect_timeout = timeout, connect_timeout
        self._line: _Line | None = None
        self._connecting: asyncio.Future[_Line] | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> PipelinedRedis:
        """A client for a ``redis://`` URL (user, password and database number included)."""
        parts = parse_url(url)
        return cls(host=parts.get("host", "127.0.0.1"), port=int(parts.get("port", 6379)),
                   db=int(parts.get("db", 0)), username=parts.get("username"), password=parts.get("password"),
                   **kwargs)

    async def _connect(self) -> _Line:
        if self._connecting is not None:  # another caller is already connecting: share its result
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        line: _Line | None = None
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, line = await loop.create_connection(lambda: _Line(self._timeout), self._host, self._port)
            except TimeoutError as exc:
                raise RedisTimeoutError(f"Timed out connecting to Redis at {self._host}:{self._port}.") from exc
            except OSError as exc:
                raise RedisConnectionError(f"Cannot connect to Redis at {self._host}:{self._port}: {exc}") from exc
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                await line.send(pack(("AUTH", *auth)), loop)
            if self._db:
                await line.send(pack(("SELECT", self._db)), loop)
            self._line = line
            self._connecting.set_result(line)
            return line
        except BaseException as exc:
            if line is not None and line.transport is not None:
                line.transport.close()
            self._connecting.set_exception(exc if isinstance(exc, Exception) else RedisConnectionError("cancelled"))
            self._connecting.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._connecting = None

    async def execute(self, *args: Any) -> Reply:
        """Send one command and wait for its reply."""
        line = self._line
        if line is None or line.closed or line.transport.is_closing():  # type: ignore[union-attr]
            line = await self._connect()
        return await line.send(pack(args), asyncio.get_running_loop())

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """``MGET``: the values of ``keys`` (None where missing)."""
        return await self.execute("MGET", *keys)  # type: ignore[no-any-return]

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Reply:
        """``EVALSHA``; raises ``NoScriptError`` when the server does not have the script."""
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Reply:
        """``EVAL`` (also loads the script into the server's cache)."""
        return await self.execute("EVAL", script, numkeys, *keys_and_args)

    async def aclose(self) -> None:
        """Close the connection (pending calls fail with ``ConnectionError``)."""
        line, self._line = self._line, None
        if line is not None and line.transport is not None:
            line.transport.close()


def make_hot_redis(url: str, *, fallback: Redis) -> PipelinedRedis | Redis:
    """The hot path's client: pipelined for ``redis://`` URLs, ``fallback`` (redis-py) for TLS or sockets."""
    if url.startswith("redis://"):
        return PipelinedRedis.from_url(url)
    return fallback
