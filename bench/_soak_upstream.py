"""The fake OpenAI-wire upstream of ``bench/soak.py``: lean, so the soak's CPU goes to the gateway.

``POST /v1/chat/completions``:

- non-streamed: one JSON completion with usage, built once;
- streamed: a role chunk, three content chunks, a finish chunk, the usage chunk when the request asks for
  it (``"include_usage":true``, which the gateway always sends) and ``[DONE]``, built once and written
  in two writes (the first chunk alone, so the first byte is a real first chunk);
- streamed, when the request's text contains ``"trickle"``: one content chunk every ``TRICKLE_GAP``
  seconds for at most ``TRICKLE_SECONDS`` (a held-open stream, to measure what an open stream costs the
  gateway's memory); it ends early when the gateway goes away.

The request is parsed only by looking for those byte strings. Listens on 127.0.0.1 only; stops on
SIGTERM or SIGINT.

    python bench/_soak_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import msgspec
from aiohttp import web

TRICKLE_GAP = 1.0
TRICKLE_SECONDS = 300.0
PIECES = ("Soak", " test", " reply")
USAGE = {"prompt_tokens": 9, "completion_tokens": len(PIECES), "total_tokens": 9 + len(PIECES)}
SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _event(delta: dict[str, str] | None, finish: str | None = None, usage: bool = False) -> bytes:
    doc: dict[str, object] = {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": int(time.time()),
                              "model": "fake", "system_fingerprint": "fp_soak",
                              "choices": [] if usage else [{"index": 0, "delta": delta or {}, "logprobs": None,
                                                            "finish_reason": finish}]}
    if usage:
        doc["usage"] = USAGE
    return b"data: " + msgspec.json.encode(doc) + b"\n\n"


COMPLETION = msgspec.json.encode({
    "id": "chatcmpl-soak", "object": "chat.completion", "created": int(time.time()), "model": "fake",
    "system_fingerprint": "fp_soak", "usage": USAGE,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(PIECES), "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}]})
FIRST = _event({"role": "assistant", "content": ""})
REST = b"".join(_event({"content": p}) for p in PIECES) + _event(None, "stop")
USAGE_EVENT = _event(None, usage=True)
DONE = b"data: [DONE]\n\n"
TRICKLE = _event({"content": " tick"})


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if b'"stream":true' not in body.replace(b" ", b""):
        return web.Response(body=COMPLETION, content_type="application/json")
    resp = web.StreamResponse(headers=SSE)
    await resp.prepare(request)
    await resp.write(FIRST)
    if b'"trickle"' in body:
        until = time.monotonic() + TRICKLE_SECONDS
        while time.monotonic() < until:
            await asyncio.sleep(TRICKLE_GAP)
            try:
                await resp.write(TRICKLE)
            except (ConnectionError, RuntimeError):  # the gateway went away: its stream was closed
                return resp
        await resp.write(_event(None, "stop"))
    else:
        await resp.write(REST)
    wants_usage = b'"include_usage":true' in body.replace(b" ", b"")
    await resp.write((USAGE_EVENT if wants_usage else b"") + DONE)
    return resp


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # the plain loop is fine, only slower
        asyncio.run(serve(int(sys.argv[1])))
    else:
        uvloop.run(serve(int(sys.argv[1])))
