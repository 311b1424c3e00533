"""A bare ASGI proxy for bench/gateway_overhead.py: the floor of any Python gateway on this stack.

The same uvicorn (uvloop + httptools) and upstream client (``inference.providers.wire``) as the streamer,
forwarding the body to the upstream and its answer back (SSE line by line), with no authentication,
Redis, accounting or logs.
What the gateway adds beyond this is ours to cut; what this adds is the price of the stack.

    python bench/_bare_proxy.py PORT UPSTREAM_BASE_URL
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from aiaas.inference.providers import wire

PORT, UPSTREAM = int(sys.argv[1]), sys.argv[2].rstrip("/")
STATE: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STATE["pool"] = wire.Pool(limit=16, keepalive=60)
                STATE["origin"] = wire.Origin.parse(UPSTREAM + "/chat/completions")
                await send({"type": "lifespan.startup.complete"})
            else:
                await STATE["pool"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    resp = await STATE["pool"].request(STATE["origin"], body, [(b"Content-Type", b"application/json")],
                                       connect_timeout=5)
    ctype = resp.headers.get("content-type", "application/json").encode()
    await send({"type": "http.response.start", "status": resp.status, "headers": [(b"content-type", ctype)]})
    while line := await resp.readline():
        await send({"type": "http.response.body", "body": line, "more_body": True})
    resp.release()
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, loop="uvloop", http="httptools", lifespan="on",
                access_log=False, log_config=None)
