"""A bare ASGI proxy for bench/gateway_overhead.py: the floor of any Python gateway on this stack.

The same uvicorn (uvloop + httptools) and aiohttp client settings as the streamer, forwarding the body to
the upstream and its answer back (SSE chunk by chunk), with no authentication, Redis, accounting or logs.
What the gateway adds beyond this is ours to cut; what this adds is the price of the stack.

    python bench/_bare_proxy.py PORT UPSTREAM_BASE_URL
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from aiaas.inference.providers.http import make_session

PORT, UPSTREAM = int(sys.argv[1]), sys.argv[2].rstrip("/")
STATE: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STATE["session"] = make_session(pool_size=16, keepalive_seconds=60)
                await send({"type": "lifespan.startup.complete"})
            else:
                await STATE["session"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    async with STATE["session"].post(UPSTREAM + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"}) as resp:
        ctype = resp.headers.get("Content-Type", "application/json").encode()
        await send({"type": "http.response.start", "status": resp.status, "headers": [(b"content-type", ctype)]})
        async for chunk in resp.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, loop="uvloop", http="httptools", lifespan="on",
                access_log=False, log_config=None)
