"""A bare ASGI proxy for the benchmarks: the floor of a Python gateway on this stack.

The same uvicorn (uvloop + httptools) as the streamer, forwarding the body to the upstream and its answer
back (SSE line by line), with no authentication, Redis, accounting or logs. The upstream client is the
streamer's (``aiaas``: ``inference.providers.client.UpstreamClient``, a tuned aiohttp session and the
gateway's rules) unless another is named; the others are measured by ``bench/upstream_clients.py``:
``aiohttp`` (a session with aiohttp's defaults), ``aiohttp-tuned`` (the streamer's session settings
without its rules), and pyreqwest, rnet and aiosonic, which must be installed beside the project.

    python bench/_bare_proxy.py PORT UPSTREAM_BASE_URL [aiaas|aiohttp|aiohttp-tuned|pyreqwest|rnet|aiosonic]
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn

PORT, UPSTREAM = int(sys.argv[1]), sys.argv[2].rstrip("/")
CLIENT = sys.argv[3] if len(sys.argv) > 3 else "aiaas"
URL = UPSTREAM + "/chat/completions"
Forward = Callable[[bytes], AsyncIterator[bytes]]


async def _nothing() -> None:
    return None


async def make_client() -> tuple[Forward, Callable[[], Awaitable[Any]]]:
    """A function streaming the upstream's answer to a body, and one closing the client."""
    if CLIENT == "aiaas":
        import asyncio

        from aiaas.inference.providers.client import UpstreamClient

        upstream = UpstreamClient(pool_size=16, keepalive_seconds=60, pool_wait_seconds=10)

        async def forward_aiaas(body: bytes) -> AsyncIterator[bytes]:
            deadline = asyncio.get_running_loop().time() + 600
            resp = await upstream.send(URL, body, connect_timeout=5, first_byte_timeout=60, deadline=deadline)
            try:
                while line := await resp.readline():
                    yield line
            finally:
                resp.release()

        return forward_aiaas, upstream.close
    if CLIENT in ("aiohttp", "aiohttp-tuned"):
        import aiohttp

        if CLIENT == "aiohttp":
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16), auto_decompress=False)
            headers: dict[str, str] | None = {"Content-Type": "application/json"}
        else:  # the settings of inference.providers.client, without its timeouts, retry, egress and proxies
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=16, keepalive_timeout=60),
                headers={"Content-Type": "application/json", "Accept-Encoding": "identity"},
                skip_auto_headers=("User-Agent", "Accept"), cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None), read_bufsize=128 * 1024)
            headers = None

        async def forward_aiohttp(body: bytes) -> AsyncIterator[bytes]:
            async with session.post(URL, data=body, headers=headers) as resp:
                async for line in resp.content:
                    yield line

        return forward_aiohttp, session.close
    if CLIENT == "pyreqwest":
        from pyreqwest.client import ClientBuilder

        client = await ClientBuilder().build().__aenter__()

        async def forward_pyreqwest(body: bytes) -> AsyncIterator[bytes]:
            resp = await client.post(URL).body_bytes(body).header("content-type", "application/json").build().send()
            yield bytes(await resp.bytes())

        return forward_pyreqwest, lambda: client.__aexit__(None, None, None)
    if CLIENT == "rnet":
        import rnet

        rclient = rnet.Client()

        async def forward_rnet(body: bytes) -> AsyncIterator[bytes]:
            resp = await rclient.post(URL, body=body, headers={"content-type": "application/json"})
            yield bytes(await resp.bytes())

        return forward_rnet, _nothing
    if CLIENT == "aiosonic":
        import aiosonic

        sonic = aiosonic.HTTPClient()

        async def forward_aiosonic(body: bytes) -> AsyncIterator[bytes]:
            resp = await sonic.post(URL, data=body, headers={"content-type": "application/json"})
            yield await resp.content()

        return forward_aiosonic, _nothing
    raise SystemExit(f"unknown client {CLIENT!r}")


STATE: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STATE["forward"], STATE["close"] = await make_client()
                await send({"type": "lifespan.startup.complete"})
            else:
                await STATE["close"]()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    started = False
    async for piece in STATE["forward"](body):
        if not started:
            ctype = b"text/event-stream" if piece.startswith(b"data:") else b"application/json"
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]})
            started = True
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    if not started:
        await send({"type": "http.response.start", "status": 502, "headers": []})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, loop="uvloop", http="httptools", lifespan="on",
                access_log=False, log_config=None)
