"""The mock OpenAI-wire upstream of ``bench/suite.py``: lean, so it stays the cheapest hop of every path.

``POST /v1/chat/completions`` answers by the model name it is sent:

- any name but ``slow``: non-streamed, one JSON completion with usage; streamed, a role chunk, ``CHUNKS``
  content chunks ``GAP_MS`` apart (a model's token pacing, so the inter-chunk gap a gateway adds can be
  seen), a finish chunk, the usage chunk when ``stream_options.include_usage`` is set, then ``[DONE]``;
- ``slow``: a stream of one content chunk every 0.5 s for at most ``SLOW_SECONDS`` (held-open streams, to
  measure the memory of open streams); it ends early when the client goes away.

``GET /bench/open-streams`` counts the ``slow`` streams still being written, so the suite can see whether a
gateway closed its upstream streams when its clients left (and wait until it did).

The bodies are built once; the request is parsed only for ``model``, ``stream`` and ``stream_options``.
Listens on 127.0.0.1 only.

    python bench/_suite_upstream.py PORT [CHUNKS] [GAP_MS] [SLOW_SECONDS]
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgspec
from aiohttp import web

PORT = int(sys.argv[1])
CHUNKS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
GAP = (float(sys.argv[3]) if len(sys.argv) > 3 else 2.0) / 1000
SLOW_SECONDS = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0


class Request(msgspec.Struct):
    model: str = "fake"
    stream: bool = False
    stream_options: dict[str, object] | None = None


_decode = msgspec.json.Decoder(Request).decode
_encode = msgspec.json.encode
USAGE = {"prompt_tokens": 7, "completion_tokens": CHUNKS, "total_tokens": 7 + CHUNKS}


def _chunk(model: str, delta: dict[str, object], finish: str | None = None) -> bytes:
    doc = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "system_fingerprint": "fp_bench",
           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + _encode(doc) + b"\n\n"


def _usage_chunk(model: str) -> bytes:
    doc = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "choices": [], "usage": USAGE}
    return b"data: " + _encode(doc) + b"\n\n"


def _completion(model: str) -> bytes:
    return _encode({"id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
                    "model": model, "system_fingerprint": "fp_bench",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": " tok" * CHUNKS,
                                                         "refusal": None},
                                 "logprobs": None, "finish_reason": "stop"}], "usage": USAGE})


class Bodies:
    """The bytes of each answer for one model name, built on first use."""

    def __init__(self, model: str) -> None:
        self.completion = _completion(model)
        self.role = _chunk(model, {"role": "assistant", "content": ""})
        self.content = _chunk(model, {"content": " tok"})
        self.finish = _chunk(model, {}, "stop")
        self.usage = _usage_chunk(model)


_bodies: dict[str, Bodies] = {}
OPEN_SLOW = [0]  # slow streams still being written: a gateway whose client left should close its upstream
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def chat(request: web.Request) -> web.StreamResponse:
    req = _decode(await request.read())
    b = _bodies.get(req.model)
    if b is None:
        b = _bodies[req.model] = Bodies(req.model)
    if not req.stream:
        return web.Response(body=b.completion, content_type="application/json")
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    try:
        await resp.write(b.role)
        if req.model == "slow":
            OPEN_SLOW[0] += 1
            try:
                stop = time.monotonic() + SLOW_SECONDS
                while time.monotonic() < stop:
                    await resp.write(b.content)
                    await asyncio.sleep(0.5)
            finally:
                OPEN_SLOW[0] -= 1
        else:
            for i in range(CHUNKS):
                if i:
                    await asyncio.sleep(GAP)
                await resp.write(b.content)
        await resp.write(b.finish)
        if (req.stream_options or {}).get("include_usage"):
            await resp.write(b.usage)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client (a gateway) went away: nothing left to send
    return resp


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "bench"}]})


async def open_streams(_request: web.Request) -> web.Response:
    return web.json_response({"open_slow_streams": OPEN_SLOW[0]})


def main() -> None:
    import uvloop

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/bench/open-streams", open_streams)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
