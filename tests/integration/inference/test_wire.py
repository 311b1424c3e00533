"""The upstream HTTP/1.1 client against scripted loopback servers: framing, keep-alive, limits, failures, TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from aiaas.inference.providers.wire import ConnectFailed, Origin, Pool, ProtocolFailed
from support import free_port

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]
JSON = [(b"Content-Type", b"application/json")]


class Server:
    """A loopback server answering each request with ``handler(request_bytes, writer)``."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.port = free_port()
        self.connections = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            task = asyncio.current_task()
            if task is not None:
                self._handlers.add(task)
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    request = head + await reader.readexactly(length)
                    self.requests.append(request)
                    await self.handler(request, writer)
                    if writer.is_closing():
                        return
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
                if task is not None:
                    self._handlers.discard(task)

        self._server = await asyncio.start_server(serve, "127.0.0.1", self.port, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Connections still open (kept alive by the client) end with the server.
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def origin(self, path: str = "/v1/chat/completions", scheme: str = "http") -> Origin:
        return Origin.parse(f"{scheme}://127.0.0.1:{self.port}{path}")


def fixed(status: int, body: bytes, *, extra: bytes = b"") -> Handler:
    async def handler(_req: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                % (status, len(body), extra, body))
        await w.drain()

    return handler


def then_close(data: bytes) -> Handler:
    """Write ``data`` and close the connection."""

    async def handler(_req: bytes, w: asyncio.StreamWriter) -> None:
        w.write(data)
        await w.drain()
        w.close()

    return handler


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    p = Pool(limit=4, keepalive=30)
    yield p
    await p.close()


class TestOrigin:
    @pytest.mark.parametrize(("url", "expected"), [
        ("http://h/v1/chat/completions", ("http", "h", 80, b"/v1/chat/completions", b"h")),
        ("https://api.example.com/v1/x?a=1", ("https", "api.example.com", 443, b"/v1/x?a=1", b"api.example.com")),
        ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080, b"/", b"127.0.0.1:8080")),
        ("http://[::1]:9000/p", ("http", "::1", 9000, b"/p", b"[::1]:9000")),
    ])
    def test_parse(self, url: str, expected: tuple[Any, ...]) -> None:
        o = Origin.parse(url)
        assert (o.scheme, o.host, o.port, o.path, o.host_header) == expected

    @pytest.mark.parametrize("url", ["ftp://h/x", "h/x", "http:///x",
                                     "http://user:pw@h/x"])  # pragma: allowlist secret
    def test_refuses(self, url: str) -> None:
        with pytest.raises(ValueError):
            Origin.parse(url)


class TestFraming:
    async def test_request_line_headers_and_body_then_keep_alive(self, pool: Pool) -> None:
        async with Server(fixed(200, b'{"ok":1}')) as srv:
            for _ in range(3):
                resp = await pool.request(srv.origin(), b'{"a":1}', JSON, connect_timeout=1)
                assert resp.status == 200 and resp.headers["content-type"] == "application/json"
                assert await resp.read() == b'{"ok":1}'
                resp.release()
            assert srv.connections == 1
            first = srv.requests[0]
            assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            assert f"Host: 127.0.0.1:{srv.port}\r\n".encode() in first and b"Content-Length: 7\r\n" in first
            assert first.endswith(b'\r\n\r\n{"a":1}')

    async def test_chunked_stream_is_read_line_by_line(self, pool: Pool) -> None:
        async def sse(_req: bytes, w: asyncio.StreamWriter) -> None:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"data: {\"a\"", b":1}\n\n", b"data: [DONE]\n\n"):
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
                await w.drain()
                await asyncio.sleep(0.01)
            w.write(b"0\r\n\r\n")

        async with Server(sse) as srv:
            resp = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            lines = []
            while line := await resp.readline():
                lines.append(line)
            assert lines == [b'data: {"a":1}\n', b"\n", b"data: [DONE]\n", b"\n"]
            assert resp.at_eof()
            resp.release()
            resp2 = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            await resp2.read()
            resp2.release()
            assert srv.connections == 1

    async def test_body_delimited_by_close_and_connection_close(self, pool: Pool) -> None:
        async with Server(then_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")) as srv:
            for _ in range(2):
                resp = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
                assert await resp.read() == b"all of it"
                resp.release()
            assert srv.connections == 2  # never reused after Connection: close

    async def test_abandoned_body_drops_the_connection(self, pool: Pool) -> None:
        async def long(_req: bytes, w: asyncio.StreamWriter) -> None:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await w.drain()

        async with Server(long) as srv:
            resp = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            assert not resp.at_eof()
            resp.release()  # not read to its end: the connection is closed, not pooled
            srv.handler = fixed(200, b"{}")
            resp = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            await resp.read()
            resp.release()
            assert srv.connections == 2

    async def test_error_status_is_returned_with_its_body(self, pool: Pool) -> None:
        async with Server(fixed(429, b'{"error":"slow down"}', extra=b"Retry-After: 7\r\n")) as srv:
            resp = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            assert resp.status == 429 and resp.headers["retry-after"] == "7"
            assert await resp.read() == b'{"error":"slow down"}'
            resp.release()


class TestPool:
    async def test_limit_per_origin_makes_callers_wait_for_a_release(self) -> None:
        pool = Pool(limit=1, keepalive=30)
        async with Server(fixed(200, b"{}")) as srv:
            first = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            second = asyncio.ensure_future(pool.request(srv.origin(), b"{}", JSON, connect_timeout=1))
            await asyncio.sleep(0.05)
            assert not second.done()
            await first.read()
            first.release()
            resp = await asyncio.wait_for(second, 2)
            await resp.read()
            resp.release()
            assert srv.connections == 1
        await pool.close()

    @staticmethod
    async def two_requests_apart(pool: Pool, srv: Server) -> int:
        """Two requests 0.1 s apart; how many connections the server saw."""
        for _ in range(2):
            resp = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            await resp.read()
            resp.release()
            await asyncio.sleep(0.1)
        return srv.connections

    async def test_stale_idle_connections_are_not_reused(self) -> None:
        pool = Pool(limit=4, keepalive=0.05)
        async with Server(fixed(200, b"{}")) as srv:
            assert await self.two_requests_apart(pool, srv) == 2
        await pool.close()

    async def test_connection_closed_by_the_server_while_idle_is_not_reused(self, pool: Pool) -> None:
        async def once(_req: bytes, w: asyncio.StreamWriter) -> None:
            await fixed(200, b"{}")(_req, w)
            await asyncio.sleep(0.02)
            w.close()

        async with Server(once) as srv:
            assert await self.two_requests_apart(pool, srv) == 2

    async def test_a_cancelled_request_frees_its_slot_and_connection(self) -> None:
        pool = Pool(limit=1, keepalive=30)

        async def silent(_req: bytes, w: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        async with Server(silent) as srv:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            srv.handler = fixed(200, b"{}")
            resp = await asyncio.wait_for(pool.request(srv.origin(), b"{}", JSON, connect_timeout=1), 2)
            await resp.read()
            resp.release()
            assert srv.connections == 2
        await pool.close()

    async def test_closed_pool_refuses(self, pool: Pool) -> None:
        await pool.close()
        with pytest.raises(ConnectFailed):
            await pool.request(Origin.parse("http://127.0.0.1:1/x"), b"{}", JSON, connect_timeout=1)


class TestFailures:
    async def test_refused(self, pool: Pool) -> None:
        with pytest.raises(ConnectFailed):
            await pool.request(Origin.parse(f"http://127.0.0.1:{free_port()}/x"), b"{}", JSON, connect_timeout=1)

    async def test_not_http(self, pool: Pool) -> None:
        async def garbage(_req: bytes, w: asyncio.StreamWriter) -> None:
            w.write(b"SSH-2.0-nope\r\n\r\n")
            await w.drain()

        async with Server(garbage) as srv:
            with pytest.raises(ProtocolFailed):
                await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)

    async def test_closed_before_the_status_line(self, pool: Pool) -> None:
        async def hang_up(_req: bytes, w: asyncio.StreamWriter) -> None:
            w.close()

        async with Server(hang_up) as srv:
            with pytest.raises(ProtocolFailed):
                await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)

    async def test_broken_mid_body(self, pool: Pool) -> None:
        async with Server(then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly this")) as srv:
            resp = await pool.request(srv.origin(), b"{}", JSON, connect_timeout=1)
            with pytest.raises(ProtocolFailed):
                await resp.read()
            resp.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
class TestTls:
    async def test_https_upstream(self, tmp_path: Path) -> None:
        key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        async with Server(fixed(200, b'{"tls":true}'), tls=server_ctx) as srv:
            trusting = Pool(ssl_context=ssl.create_default_context(cafile=str(cert)))
            resp = await trusting.request(srv.origin(scheme="https"), b"{}", JSON, connect_timeout=2)
            assert await resp.read() == b'{"tls":true}'
            resp.release()
            await trusting.close()
            default = Pool()  # the system's trust store does not know this certificate
            with pytest.raises(ConnectFailed):
                await default.request(srv.origin(scheme="https"), b"{}", JSON, connect_timeout=2)
            await default.close()
