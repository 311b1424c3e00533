"""The HTTP upstream provider (aiohttp underneath) against scripted loopback servers, a forward proxy and TLS.

Real sockets only: every server here is a small asyncio server written to behave at one edge of the
protocol (a stale keep-alive connection, a 1xx, a body delimited by the close, a stall at each phase).
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme

from aiaas.inference.providers.base import Call, UpstreamFailure
from aiaas.inference.providers.client import UpstreamClient
from aiaas.inference.providers.credentials import CredentialResolver
from aiaas.inference.providers.egress import EgressPolicy, parse_entries
from aiaas.inference.providers.http import HttpEventStream, HttpUpstream
from aiaas.inference.schemas import Deployment
from support import free_port, pipe

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


# --- scripted servers ---


class _Listener:
    """An asyncio server on loopback that tracks its connection handlers, so stopping it ends them all.

    ``thread=True`` runs it on a loop of its own (to keep serving while the test's loop is blocked).
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None, thread: bool = False) -> None:
        self.tls = tls
        self.port = free_port()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if thread:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=f"server-{self.port}")

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self.serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, ssl=self.tls)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _on_own_loop(self, coro: Awaitable[None]) -> None:
        if self._loop is None:
            await coro
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))  # type: ignore[arg-type]

    async def __aenter__(self) -> Any:
        if self._thread is not None:
            self._thread.start()
        await self._on_own_loop(self._start())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._on_own_loop(self._stop())
        finally:
            if self._loop is not None and self._thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
                self._loop.close()


class Server(_Listener):
    """Answers each request with ``handler(request_bytes, writer)``; keeps the connection while it is open.

    ``idle_close``: close a connection that has been idle that long (what servers' keep-alive timeouts do).
    """

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None, thread: bool = False,
                 idle_close: float | None = None) -> None:
        super().__init__(tls=tls, thread=thread)
        self.handler = handler
        self.idle_close = idle_close
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close)
            except TimeoutError:
                return  # idle too long: closed, as a server's keep-alive timeout does
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            request = head + await reader.readexactly(length)
            self.requests.append(request)
            writer.served = served  # type: ignore[attr-defined]  # for handlers that act on reused connections
            served += 1
            await self.handler(request, writer)
            if writer.is_closing() or b"\r\nconnection: close" in head.lower():
                return

    def url(self, scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}/v1"


class Proxy(_Listener):
    """A forward proxy: absolute-URI requests for ``http://`` and ``CONNECT`` tunnels for ``https://``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, _, rest = head.partition(b"\r\n")
        method, target, _ = request_line.decode().split(" ", 2)
        self.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            return
        url = urlsplit(target)
        assert url.scheme == "http" and url.hostname and url.port, target
        lines = [line for line in rest.split(b"\r\n") if line and not line.lower().startswith(
            (b"proxy-", b"connection:"))]
        length = next((int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")), 0)
        body = await reader.readexactly(length)
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
        up_writer.write(f"{method} {url.path} HTTP/1.1\r\n".encode() + b"\r\n".join([*lines, b"Connection: close"])
                        + b"\r\n\r\n" + body)
        await up_writer.drain()
        # The upstream closes after its answer, and so does the proxy, saying so.
        response_head = await up_reader.readuntil(b"\r\n\r\n")
        writer.write(response_head[:-2] + b"Connection: close\r\n\r\n")
        await pipe(up_reader, writer)


def fixed(status: int, body: bytes, *, extra: bytes = b"") -> Handler:
    async def handler(_req: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                % (status, len(body), extra, body))
        await w.drain()

    return handler


def raw(data: bytes, *, close: bool = False) -> Handler:
    async def handler(_req: bytes, w: asyncio.StreamWriter) -> None:
        w.write(data)
        await w.drain()
        if close:
            w.close()

    return handler


def sse(*events: bytes, gap: float = 0.0, then: float = 0.0, chunked: bool = True) -> Handler:
    """A stream of ``events`` (each ``gap`` apart), then ``then`` seconds of silence before its end."""

    async def handler(_req: bytes, w: asyncio.StreamWriter) -> None:
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Connection: close\r\n"
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + framing + b"\r\n")
        for event in events:
            w.write(b"%x\r\n%s\r\n" % (len(event), event) if chunked else event)
            await w.drain()
            if gap:
                await asyncio.sleep(gap)
        if then:
            await asyncio.sleep(then)
        if chunked:
            w.write(b"0\r\n\r\n")
        else:
            w.close()

    return handler


async def silent(_req: bytes, _w: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


# --- the provider under test ---


def deployment(url: str, **kw: Any) -> Deployment:
    fields: dict[str, Any] = {"id": "d1", "name": "d1", "provider": "openai", "upstream_model": "m", "base_url": url,
                              "credential_ref": None, "weight": 1, "priority": 0, "connect_timeout": 2.0,
                              "first_byte_timeout": 5.0, "chunk_timeout": 5.0, "total_timeout": 30.0,
                              "context_length": None, "enabled": True, **kw}
    return Deployment(**fields)


def call(*, seconds: float = 20.0) -> Call:
    return Call(endpoint="chat.completions", body=BODY, public_model="m",
                deadline=asyncio.get_running_loop().time() + seconds)


def make_client(*, pool_size: int = 4, keepalive: float = 30.0, pool_wait: float = 5.0,
                egress: EgressPolicy | None = None) -> UpstreamClient:
    return UpstreamClient(pool_size=pool_size, keepalive_seconds=keepalive, pool_wait_seconds=pool_wait,
                          egress=egress or EgressPolicy(deny_internal=False))


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy variables of the machine running the tests would send these loopback requests elsewhere."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    c = make_client()
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def http(client: UpstreamClient) -> HttpUpstream:
    return HttpUpstream(client)


async def events_of(stream: HttpEventStream) -> list[bytes]:
    out = [stream.first]
    try:
        while (event := await stream.next_event()) is not None:
            out.append(event)
    finally:
        await stream.aclose()
    return out


async def failure(aw: Awaitable[Any]) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as caught:
        await aw
    return caught.value


# --- framing ---


class TestFraming:
    async def test_request_bytes_and_keep_alive(self, http: HttpUpstream) -> None:
        async with Server(fixed(200, b'{"ok":1}')) as srv:
            for _ in range(3):
                reply = await http.complete(deployment(srv.url()), call())
                assert reply.body == b'{"ok":1}' and reply.content_type == "application/json"
            assert srv.connections == 1  # one keep-alive connection for all three
            head, _, body = srv.requests[0].partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            assert lines[0] == b"POST /v1/chat/completions HTTP/1.1" and body == BODY
            headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines[1:])}
            assert headers[b"host"] == f"127.0.0.1:{srv.port}".encode()
            assert headers[b"content-length"] == str(len(BODY)).encode()
            assert headers[b"content-type"] == b"application/json" and headers[b"accept-encoding"] == b"identity"
            assert b"user-agent" not in headers and b"cookie" not in headers

    async def test_chunked_stream_is_read_event_by_event(self, http: HttpUpstream) -> None:
        parts = (b'data: {"a"', b":1}\n\n", b"data: {\"b\":2}\n\ndata: [DO", b"NE]\n\n")
        async with Server(sse(*parts, gap=0.01)) as srv:
            stream = await http.stream(deployment(srv.url()), call())
            assert await events_of(stream) == [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"]
            await http.complete(deployment(srv.url()), call())  # read to its end: the connection was kept
            assert srv.connections == 1

    async def test_body_delimited_by_the_close(self, http: HttpUpstream) -> None:
        async with Server(raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", close=True)) as srv:
            for _ in range(2):
                assert (await http.complete(deployment(srv.url()), call())).body == b"all of it"
            assert srv.connections == 2  # never reused after Connection: close

    async def test_stream_delimited_by_the_close(self, http: HttpUpstream) -> None:
        async with Server(sse(b"data: 1\n\n", b"data: 2\n\n", chunked=False)) as srv:
            assert await events_of(await http.stream(deployment(srv.url()), call())) == [b"data: 1\n\n",
                                                                                          b"data: 2\n\n"]

    async def test_content_length_stream_with_a_last_event_cut_at_the_end(self, http: HttpUpstream) -> None:
        body = b"data: 1\n\ndata: 2\n"
        async with Server(raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))) as srv:
            assert await events_of(await http.stream(deployment(srv.url()), call())) == [b"data: 1\n\n",
                                                                                          b"data: 2\n\n"]

    @pytest.mark.parametrize("informational", [b"HTTP/1.1 100 Continue\r\n\r\n",
                                               b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
                                               b"HTTP/1.1 100 Continue\r\n\r\n"])
    async def test_an_informational_response_is_never_the_final_one(self, http: HttpUpstream,
                                                                    informational: bytes) -> None:
        final = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"ok\":1}"
        async with Server(raw(informational + final)) as srv:
            assert (await http.complete(deployment(srv.url()), call())).body == b'{"ok":1}'
            stream = await http.stream(deployment(srv.url()), call())
            assert stream.first == b'{"ok":1}\n'
            await stream.aclose()

    async def test_the_upstream_bytes_are_passed_on_undecoded(self, http: HttpUpstream) -> None:
        packed = gzip.compress(b'{"ok":1}')
        async with Server(fixed(200, packed, extra=b"Content-Encoding: gzip\r\n")) as srv:
            assert (await http.complete(deployment(srv.url()), call())).body == packed

    async def test_no_cookies_are_kept_and_no_redirect_is_followed(self, http: HttpUpstream) -> None:
        async with Server(fixed(200, b"{}", extra=b"Set-Cookie: s=1; Path=/\r\n")) as srv:
            await http.complete(deployment(srv.url()), call())
            await http.complete(deployment(srv.url()), call())
            assert all(b"cookie:" not in r.lower() for r in srv.requests)
            srv.handler = fixed(307, b"", extra=f"Location: http://127.0.0.1:{srv.port}/elsewhere\r\n".encode())
            failed = await failure(http.complete(deployment(srv.url()), call()))
            assert failed.status == 307 and len(srv.requests) == 3


class TestErrorStatuses:
    @pytest.mark.parametrize(("status", "kind"), [(429, "status_429"), (500, "status_5xx"), (503, "status_5xx"),
                                                  (400, "status_4xx"), (404, "status_4xx")])
    async def test_the_status_and_body_are_in_the_failure(self, http: HttpUpstream, status: int, kind: str) -> None:
        body = b'{"error":{"message":"no"}}'
        async with Server(fixed(status, body, extra=b"Retry-After: 7\r\n")) as srv:
            for attempt in (http.complete, http.stream):
                failed = await failure(attempt(deployment(srv.url()), call()))
                assert (failed.kind, failed.status, failed.body, failed.retry_after) == (kind, status, body, "7")
            assert srv.connections == 1  # the error body was read to its end: the connection was kept


# --- keep-alive connections the server closed ---


def closes_reused(answer: Handler) -> Handler:
    """``answer`` the first request of a connection; close a reused one on the next without a byte."""

    async def handler(req: bytes, w: asyncio.StreamWriter) -> None:
        if w.served:  # type: ignore[attr-defined]
            w.close()
        else:
            await answer(req, w)

    return handler


class TestStaleConnections:
    async def test_an_idle_connection_the_server_closed_is_not_used(self, http: HttpUpstream) -> None:
        async with Server(fixed(200, b"{}"), idle_close=1.0) as srv:
            await http.complete(deployment(srv.url()), call())
            await asyncio.sleep(1.5)
            await http.complete(deployment(srv.url()), call())
            assert srv.connections == 2 and len(srv.requests) == 2

    async def test_a_connection_closed_while_the_client_was_busy_is_retried_on_a_new_one(
            self, http: HttpUpstream) -> None:
        # The server (on its own loop) closes the idle connection while the client's loop is blocked, so the
        # client has not seen the close when it sends the next request on that connection.
        async with Server(fixed(200, b'{"ok":1}'), idle_close=1.0, thread=True) as srv:
            await http.complete(deployment(srv.url()), call())
            time.sleep(2.0)
            assert (await http.complete(deployment(srv.url()), call())).body == b'{"ok":1}'
            assert srv.connections == 2 and len(srv.requests) == 2

    async def test_a_reused_connection_closed_on_the_request_is_retried_once(self, http: HttpUpstream) -> None:
        async with Server(closes_reused(fixed(200, b'{"ok":1}'))) as srv:
            for _ in range(3):
                assert (await http.complete(deployment(srv.url()), call())).body == b'{"ok":1}'
            assert srv.connections == 3  # each later request found its connection closed, and took a new one

    async def test_the_retry_takes_a_new_connection_not_another_idle_one(self, http: HttpUpstream) -> None:
        async with Server(closes_reused(sse(b"data: 1\n\n", then=0.2))) as srv:
            held = [await http.stream(deployment(srv.url()), call()) for _ in range(2)]  # on two connections
            for stream in held:  # two idle connections now, each to be closed on its next request
                assert await events_of(stream) == [b"data: 1\n\n"]
            assert (await http.stream(deployment(srv.url()), call())).first == b"data: 1\n\n"
            assert srv.connections == 3 and len(srv.requests) == 4

    async def test_streams_are_retried_alike(self, http: HttpUpstream) -> None:
        async with Server(closes_reused(sse(b"data: 1\n\n"))) as srv:
            for _ in range(2):
                assert await events_of(await http.stream(deployment(srv.url()), call())) == [b"data: 1\n\n"]
            assert srv.connections == 2

    async def test_a_new_connection_closed_on_the_request_is_not_retried(self, http: HttpUpstream) -> None:
        async with Server(raw(b"", close=True)) as srv:
            failed = await failure(http.complete(deployment(srv.url()), call()))
            assert failed.kind == "protocol" and len(srv.requests) == 1

    async def test_a_reused_connection_broken_after_part_of_a_response_is_not_retried(
            self, http: HttpUpstream) -> None:
        async def then_half(req: bytes, w: asyncio.StreamWriter) -> None:
            if w.served:  # type: ignore[attr-defined]
                await raw(b"HTTP/1.1 200 OK\r\nContent-Le", close=True)(req, w)
            else:
                await fixed(200, b"{}")(req, w)

        async with Server(then_half) as srv:
            await http.complete(deployment(srv.url()), call())
            failed = await failure(http.complete(deployment(srv.url()), call()))
            assert failed.kind == "protocol" and len(srv.requests) == 2

    async def test_the_retry_fails_like_any_new_connection(self, http: HttpUpstream) -> None:
        async def first_only(req: bytes, w: asyncio.StreamWriter) -> None:
            if len(srv.requests) == 1:
                await fixed(200, b"{}")(req, w)
            else:
                w.close()

        async with Server(first_only) as srv:
            await http.complete(deployment(srv.url()), call())
            failed = await failure(http.complete(deployment(srv.url()), call()))
            assert failed.kind == "protocol" and len(srv.requests) == 3 and srv.connections == 2


# --- timeouts, each phase on its own ---


class TestTimeouts:
    async def test_connect_timeout_covers_the_tls_handshake(self, http: HttpUpstream) -> None:
        async with Server(silent) as srv:  # accepts, never says a word of TLS
            started = time.monotonic()
            failed = await failure(http.complete(deployment(srv.url("https"), connect_timeout=0.3), call()))
            assert failed.kind == "connect" and "timed out" in failed.detail
            assert 0.25 < time.monotonic() - started < 2

    async def test_first_byte_timeout(self, http: HttpUpstream) -> None:
        async with Server(silent) as srv:
            started = time.monotonic()
            failed = await failure(http.complete(deployment(srv.url(), first_byte_timeout=0.3), call()))
            assert failed.kind == "timeout" and "first-byte" in failed.detail
            assert 0.25 < time.monotonic() - started < 2

    async def test_the_first_event_is_due_by_the_first_byte_timeout(self, http: HttpUpstream) -> None:
        async with Server(sse(then=5)) as srv:  # headers at once, then nothing
            started = time.monotonic()
            failed = await failure(http.stream(deployment(srv.url(), first_byte_timeout=0.3), call()))
            assert failed.kind == "timeout" and 0.25 < time.monotonic() - started < 2

    async def test_chunk_gap_timeout(self, http: HttpUpstream) -> None:
        async with Server(sse(b"data: 1\n\n", then=5)) as srv:
            stream = await http.stream(deployment(srv.url(), chunk_timeout=0.3), call())
            try:
                failed = await failure(stream.next_event())
            finally:
                await stream.aclose()
            assert failed.kind == "timeout" and "stalled" in failed.detail

    async def test_the_deadline_bounds_a_body_that_keeps_trickling(self, http: HttpUpstream) -> None:
        async def trickle(_req: bytes, w: asyncio.StreamWriter) -> None:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                w.write(b"x")
                await w.drain()
                await asyncio.sleep(0.05)

        async with Server(trickle) as srv:
            started = time.monotonic()
            failed = await failure(http.complete(deployment(srv.url()), call(seconds=0.5)))
            assert failed.kind == "timeout" and 0.45 < time.monotonic() - started < 2

    async def test_the_deadline_bounds_a_stream_that_keeps_going(self, http: HttpUpstream) -> None:
        async with Server(sse(*[b"data: x\n\n"] * 1000, gap=0.05)) as srv:
            stream = await http.stream(deployment(srv.url()), call(seconds=0.5))
            started = time.monotonic()
            try:
                with pytest.raises(UpstreamFailure) as caught:
                    while await stream.next_event() is not None:
                        pass
            finally:
                await stream.aclose()
            assert caught.value.kind == "timeout" and time.monotonic() - started < 2

    async def test_the_deadline_cuts_a_connect_short(self, http: HttpUpstream) -> None:
        async with Server(silent) as srv:
            failed = await failure(http.complete(deployment(srv.url("https"), connect_timeout=5), call(seconds=0.3)))
            assert failed.kind == "timeout" and "time ran out" in failed.detail


# --- the pool ---


class TestPool:
    async def test_at_most_pool_size_connections_per_origin(self) -> None:
        client = make_client(pool_size=2)
        http = HttpUpstream(client)
        try:
            async with Server(sse(b"data: 1\n\n", then=0.3)) as srv:
                streams = [await http.stream(deployment(srv.url()), call()) for _ in range(2)]
                third = asyncio.ensure_future(http.stream(deployment(srv.url()), call()))
                try:
                    await asyncio.sleep(0.1)
                    assert not third.done() and srv.connections == 2
                    await streams[0].aclose()  # abandoned before its end: its connection closed, its slot free
                    streams.append(await asyncio.wait_for(third, 2))
                finally:
                    third.cancel()
                    for s in streams:
                        await s.aclose()
                assert srv.connections == 3
        finally:
            await client.close()

    async def test_the_pool_wait_has_its_own_timeout(self) -> None:
        client = make_client(pool_size=1, pool_wait=0.2)
        http = HttpUpstream(client)
        try:
            async with Server(sse(b"data: 1\n\n", then=5)) as srv:
                held = await http.stream(deployment(srv.url()), call())
                started = time.monotonic()
                failed = await failure(http.complete(deployment(srv.url(), first_byte_timeout=10), call()))
                await held.aclose()
                assert failed.kind == "timeout" and "free connection" in failed.detail
                assert 0.15 < time.monotonic() - started < 2 and len(srv.requests) == 1
        finally:
            await client.close()

    async def test_waiting_for_a_slot_does_not_count_toward_the_first_byte(self) -> None:
        client = make_client(pool_size=1, pool_wait=5)
        http = HttpUpstream(client)
        try:
            async with Server(fixed(200, b'{"ok":1}')) as srv:
                held = await http.stream(deployment(srv.url()), call())

                async def release_later() -> None:
                    await asyncio.sleep(1.5)
                    await held.aclose()

                releasing = asyncio.ensure_future(release_later())
                try:  # waits 1.5 s for the slot, longer than its first-byte timeout
                    reply = await http.complete(deployment(srv.url(), first_byte_timeout=1.0), call())
                finally:
                    await releasing
                assert reply.body == b'{"ok":1}'
        finally:
            await client.close()

    async def test_a_cancelled_request_frees_its_slot_and_closes_its_connection(self) -> None:
        client = make_client(pool_size=1)
        http = HttpUpstream(client)
        try:
            async with Server(silent) as srv:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await http.complete(deployment(srv.url()), call())
                srv.handler = fixed(200, b"{}")
                reply = await asyncio.wait_for(http.complete(deployment(srv.url()), call()), 2)
                assert reply.body == b"{}" and srv.connections == 2
        finally:
            await client.close()

    async def test_an_abandoned_stream_closes_its_connection(self, http: HttpUpstream) -> None:
        async with Server(sse(b"data: 1\n\n", b"data: 2\n\n", gap=0.2)) as srv:
            stream = await http.stream(deployment(srv.url()), call())
            await stream.aclose()
            srv.handler = fixed(200, b"{}")
            await http.complete(deployment(srv.url()), call())
            assert srv.connections == 2


# --- failures of the connection or of the protocol ---


class TestBrokenUpstreams:
    async def test_refused(self, http: HttpUpstream) -> None:
        failed = await failure(http.complete(deployment(f"http://127.0.0.1:{free_port()}/v1"), call()))
        assert failed.kind == "connect"

    async def test_not_http(self, http: HttpUpstream) -> None:
        async with Server(raw(b"SSH-2.0-nope\r\n\r\n")) as srv:
            assert (await failure(http.complete(deployment(srv.url()), call()))).kind == "protocol"

    async def test_closed_before_the_status_line(self, http: HttpUpstream) -> None:
        async with Server(raw(b"", close=True)) as srv:
            assert (await failure(http.stream(deployment(srv.url()), call()))).kind == "protocol"

    async def test_broken_mid_body(self, http: HttpUpstream) -> None:
        async with Server(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly this", close=True)) as srv:
            failed = await failure(http.complete(deployment(srv.url()), call()))
            assert failed.kind == "protocol" and "broke off" in failed.detail

    async def test_broken_mid_stream(self, http: HttpUpstream) -> None:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        async with Server(raw(head + b"9\r\ndata: 1\n\n\r\n5\r\ndata:", close=True)) as srv:
            stream = await http.stream(deployment(srv.url()), call())
            try:
                assert (await failure(stream.next_event())).kind == "protocol"
            finally:
                await stream.aclose()

    async def test_an_endless_line_is_refused(self, http: HttpUpstream) -> None:
        line = b"data: " + b"x" * (4 * 1024 * 1024 + 10)
        async with Server(raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line))) as srv:
            failed = await failure(http.stream(deployment(srv.url()), call()))
            assert failed.kind == "protocol" and "broke off" in failed.detail

    async def test_a_closed_client_refuses(self) -> None:
        client = make_client()
        await client.close()
        failed = await failure(HttpUpstream(client).complete(deployment("http://127.0.0.1:1/v1"), call()))
        assert failed.kind == "connect" and "closed" in failed.detail

    async def test_a_101_is_not_an_answer(self, http: HttpUpstream) -> None:
        async with Server(raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")) as srv:
            assert (await failure(http.complete(deployment(srv.url()), call()))).kind == "protocol"


# --- what is sent ---


class TestHeaders:
    @pytest.mark.parametrize("headers", [{"X-Note": "a\r\nX-Injected: 1"}, {"X-Note": "a\nb"}, {"X-Note": "a\x00"},
                                         {"X-Note": "a\x01b"}, {"X-Note": "tab\there"}, {"X-Note": "caf\u00e9"},
                                         {"X Note": "a"}, {"X-Note:": "a"}, {"": "a"}, {"X-\r\nNote": "a"}])
    async def test_a_header_a_parser_could_read_two_ways_is_refused_before_sending(
            self, client: UpstreamClient, headers: dict[str, str]) -> None:
        async with Server(fixed(200, b"{}")) as srv:
            deadline = asyncio.get_running_loop().time() + 20
            failed = await failure(client.send(srv.url() + "/chat/completions", BODY, headers, connect_timeout=2.0,
                                               first_byte_timeout=5.0, deadline=deadline, read_body=True))
            assert failed.kind == "config" and srv.connections == 0

    @pytest.mark.parametrize("secret", ["tok\r\nX-Injected: 1", "tok\nmore", "tok\x00", "tok\u00e9"])
    async def test_a_credential_that_would_split_the_request_is_refused_and_not_echoed(
            self, client: UpstreamClient, secret: str) -> None:
        http = HttpUpstream(client, CredentialResolver(environ={"UPSTREAM_CREDENTIAL_UP": secret}))
        async with Server(fixed(200, b"{}")) as srv:
            failed = await failure(http.complete(deployment(srv.url(), credential_ref="up"), call()))
            assert failed.kind == "config" and srv.connections == 0 and "tok" not in failed.detail

    async def test_the_credential_goes_in_the_authorization_header(self, client: UpstreamClient) -> None:
        http = HttpUpstream(client, CredentialResolver(environ={"UPSTREAM_CREDENTIAL_UP": "tok-123"}))
        async with Server(fixed(200, b"{}")) as srv:
            await http.complete(deployment(srv.url(), credential_ref="up"), call())
            assert b"\r\nAuthorization: Bearer tok-123\r\n" in srv.requests[0]
            failed = await failure(http.complete(deployment(srv.url(), credential_ref="missing"), call()))
            assert failed.kind == "config" and "UPSTREAM_CREDENTIAL_MISSING" in failed.detail
            assert len(srv.requests) == 1


# --- proxies from the environment ---


class TestProxies:
    async def test_http_through_the_proxy(self, http: HttpUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
        async with Proxy() as proxy, Server(fixed(200, b'{"via":"proxy"}')) as srv:
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
            for _ in range(2):
                assert (await http.complete(deployment(srv.url()), call())).body == b'{"via":"proxy"}'
            assert proxy.seen == [f"POST {srv.url()}/chat/completions"] * 2
            assert srv.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")

    async def test_https_through_a_connect_tunnel(self, http: HttpUpstream, monkeypatch: pytest.MonkeyPatch,
                                                   tls: Tls) -> None:
        async with Proxy() as proxy, Server(fixed(200, b'{"tunnel":1}'), tls=tls.server) as srv:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
            for _ in range(2):
                reply = await http.complete(deployment(srv.url("https"), ca_bundle=tls.bundle), call())
                assert reply.body == b'{"tunnel":1}'
            assert proxy.seen == [f"CONNECT 127.0.0.1:{srv.port}"]  # one tunnel, kept alive

    async def test_no_proxy_bypasses_it(self, http: HttpUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
        async with Proxy() as proxy, Server(fixed(200, b"{}")) as srv:
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
            monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
            await http.complete(deployment(srv.url()), call())
            assert proxy.seen == [] and len(srv.requests) == 1

    async def test_a_proxy_that_is_not_plain_http_is_refused_not_bypassed(
            self, http: HttpUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
        async with Server(fixed(200, b"{}")) as srv:
            monkeypatch.setenv("HTTP_PROXY", "https://user:secret@127.0.0.1:3128")  # pragma: allowlist secret
            failed = await failure(http.complete(deployment(srv.url()), call()))
            assert failed.kind == "config" and "HTTP_PROXY" in failed.detail and "secret" not in failed.detail
            assert srv.connections == 0

    async def test_the_proxy_is_exempt_from_the_egress_policy_but_the_target_is_not(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        async with Proxy() as proxy, Server(fixed(200, b"{}")) as srv:
            monkeypatch.setenv("HTTP_PROXY", f"http://localhost:{proxy.port}")  # a name: through the resolver
            only_the_upstream = EgressPolicy(allow=parse_entries(f"127.0.0.1:{srv.port}"))
            client = make_client(egress=only_the_upstream)
            try:
                await HttpUpstream(client).complete(deployment(srv.url()), call())
            finally:
                await client.close()
            assert len(proxy.seen) == 1
            client = make_client(egress=EgressPolicy())  # loopback refused: the target may not be reached
            try:
                failed = await failure(HttpUpstream(client).complete(deployment(srv.url()), call()))
            finally:
                await client.close()
            assert failed.kind == "config" and len(proxy.seen) == 1 and len(srv.requests) == 1


# --- TLS ---


class Tls:
    def __init__(self, tmp: Path) -> None:
        ca = trustme.CA()
        self.server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.server)
        self.bundle = str(tmp / "ca.pem")
        ca.cert_pem.write_to_path(self.bundle)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return Tls(tmp_path_factory.mktemp("tls"))


class TestTls:
    async def test_trusted_through_the_deployments_ca_bundle(self, http: HttpUpstream, tls: Tls) -> None:
        async with Server(fixed(200, b'{"tls":true}'), tls=tls.server) as srv:
            for host in ("127.0.0.1", "localhost"):
                reply = await http.complete(deployment(srv.url("https", host), ca_bundle=tls.bundle), call())
                assert reply.body == b'{"tls":true}'

    async def test_a_stale_tls_connection_is_retried_too(self, http: HttpUpstream, tls: Tls) -> None:
        async with Server(closes_reused(fixed(200, b'{"tls":true}')), tls=tls.server) as srv:
            for _ in range(2):
                reply = await http.complete(deployment(srv.url("https"), ca_bundle=tls.bundle), call())
                assert reply.body == b'{"tls":true}'
            assert srv.connections == 2 and len(srv.requests) == 3

    async def test_refused_without_it(self, http: HttpUpstream, tls: Tls) -> None:
        async with Server(fixed(200, b"{}"), tls=tls.server) as srv:
            failed = await failure(http.complete(deployment(srv.url("https")), call()))  # the system's store
            assert failed.kind == "connect" and "certificate" in failed.detail.lower()
            assert srv.requests == []

    async def test_a_replaced_bundle_is_picked_up(self, http: HttpUpstream, tls: Tls, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        import aiaas.inference.providers.client.targets as targets_module

        monkeypatch.setattr(targets_module, "TLS_RECHECK_SECONDS", 0.0)  # checked on every request here
        bundle = tmp_path / "ca.pem"
        trustme.CA().cert_pem.write_to_path(str(bundle))  # another CA: the server's certificate is not its
        async with Server(fixed(200, b"{}"), tls=tls.server) as srv:
            dep = deployment(srv.url("https"), ca_bundle=str(bundle))
            assert (await failure(http.complete(dep, call()))).kind == "connect"
            bundle.write_bytes(Path(tls.bundle).read_bytes())  # rotated to the CA that signed it
            assert (await http.complete(dep, call())).body == b"{}"

    async def test_a_bundle_that_cannot_be_loaded_is_a_config_failure(self, http: HttpUpstream, tls: Tls,
                                                                      tmp_path: Path) -> None:
        (tmp_path / "not.pem").write_text("not a certificate")
        async with Server(fixed(200, b"{}"), tls=tls.server) as srv:
            for bundle in (str(tmp_path / "missing.pem"), str(tmp_path / "not.pem")):
                failed = await failure(http.complete(deployment(srv.url("https"), ca_bundle=bundle), call()))
                assert failed.kind == "config" and bundle in failed.detail
            assert srv.connections == 0


# --- egress ---


class TestEgress:
    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
    async def test_loopback_is_refused_unless_allowed(self, host: str) -> None:
        async with Server(fixed(200, b"{}")) as srv:
            client = make_client(egress=EgressPolicy())
            try:
                failed = await failure(HttpUpstream(client).complete(deployment(srv.url(host=host)), call()))
            finally:
                await client.close()
            assert failed.kind == "config" and "egress" in failed.detail and srv.connections == 0
            client = make_client(egress=EgressPolicy(allow=parse_entries(f"127.0.0.1:{srv.port}")))
            try:
                await HttpUpstream(client).complete(deployment(srv.url(host=host)), call())
            finally:
                await client.close()
            assert srv.connections == 1
