"""An OpenAI-wire-format upstream for tests and benchmarks: a small aiohttp.web server with failure injection.

Behaviour is chosen by the upstream model name the gateway sends (the deployment's ``upstream_model``):

- ``fake`` (anything else): a normal answer; streams send a role chunk, three content chunks, a finish
  chunk, the usage chunk when ``stream_options.include_usage`` is set, then ``[DONE]``;
- ``no-usage``: like ``fake`` but never reports usage;
- ``cached-reasoning``: like ``fake``, its usage also reporting 4 of the 7 prompt tokens as cached
  (``prompt_tokens_details``) and 2 of the completion tokens as reasoning (``completion_tokens_details``);
- ``slow-first-byte``: waits ``slow_seconds`` before answering;
- ``error-500`` / ``rate-limit`` / ``bad-request``: answers 500 / 429 / 400 with an OpenAI error body;
- ``leaky-400``: answers 400 with an HTML body that is not OpenAI's error shape (and names a secret);
- ``auth-401``: answers 401 with OpenAI's "incorrect API key" error (the gateway's credential is wrong);
- ``drop-mid``: streams two content chunks, then drops the connection;
- ``slow-stream``: streams one chunk every 50 ms for ``slow_chunks`` chunks (for disconnect tests);
- ``agent``: a tool-using model. With ``tools`` and a last message that is not a tool result, it calls the
  first tool with ``AGENT_ARGUMENTS`` (streamed as an id-and-name chunk, then the arguments in three
  fragments, finish ``tool_calls``); after a tool result it answers ``The tool said: <result>``; with a
  ``json_schema`` response format it answers ``AGENT_JSON``. Usage: 11 prompt and 5 completion tokens.

It also speaks the Responses and Messages APIs itself (``fake_native``), for deployments with
``native_apis``.

``fail_with`` (settable at run time) makes every request answer that status; ``requests`` records each
request body and ``headers`` its headers; ``cancelled`` counts streams whose client (the gateway) went away.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import time
from typing import Any

from aiohttp import web

import fake_native

CONTENT = ["Hello", " from", " fake"]
AGENT_ARGUMENTS = '{"location": "Paris", "unit": "celsius"}'
AGENT_JSON = '{"answer": "forty-two"}'
AGENT_USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def _chunk(model: str, delta: dict[str, Any] | None, finish: str | None = None, *, legacy: bool = False,
           text: str = "") -> bytes:
    if legacy:
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    else:
        choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    doc = {"id": "chatcmpl-fake", "object": obj, "created": int(time.time()), "model": model,
           "system_fingerprint": "fp_fake", "choices": [choice]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


class FakeUpstream:
    """Runs on its own thread and loop, so sync tests and the gateway's loop can both use it."""

    def __init__(self, port: int, *, slow_seconds: float = 2.0, slow_chunks: int = 200) -> None:
        self.port = port
        self.slow_seconds = slow_seconds
        self.slow_chunks = slow_chunks
        self.fail_with: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.cancelled = 0
        self.served = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- handlers ---

    async def _error(self, status: int) -> web.Response:
        kinds = {400: ("invalid_request_error", "context_length_exceeded", "This model's maximum context length "
                       "is 8 tokens."), 429: ("rate_limit_error", "rate_limit_exceeded", "Slow down."),
                 500: ("server_error", None, "The fake upstream failed.")}
        typ, code, msg = kinds.get(status, ("server_error", None, "error"))
        body = {"error": {"message": msg, "type": typ, "param": None, "code": code}}
        headers = {"Retry-After": "1"} if status == 429 else {}
        return web.json_response(body, status=status, headers=headers)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, legacy=False)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, legacy=True)

    async def _generate(self, request: web.Request, *, legacy: bool) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        model = body.get("model", "fake")
        if self.fail_with:
            return await self._error(self.fail_with)
        if model == "leaky-400":
            return web.Response(status=400, content_type="text/html",
                                text="<html><body>db password: INTERNAL-SECRET-42</body></html>")
        if model == "auth-401":
            return web.json_response({"error": {"message": "Incorrect API key provided: sk-up****cret.",
                                                "type": "invalid_request_error", "code": "invalid_api_key"}},
                                     status=401)
        if model == "error-500":
            return await self._error(500)
        if model == "rate-limit":
            return await self._error(429)
        if model == "bad-request":
            return await self._error(400)
        if model == "slow-first-byte":
            await asyncio.sleep(self.slow_seconds)
        if model == "agent" and not legacy:
            return await self._agent(request, body)
        usage: dict[str, Any] = {"prompt_tokens": 7, "completion_tokens": len(CONTENT),
                                 "total_tokens": 7 + len(CONTENT)}
        if model == "cached-reasoning":
            usage["prompt_tokens_details"] = {"cached_tokens": 4, "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": 2, "audio_tokens": 0}
        if not body.get("stream"):
            self.served += 1
            text = "".join(CONTENT)
            if legacy:
                doc: dict[str, Any] = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                                       "model": model, "choices": [{"index": 0, "text": text, "logprobs": None,
                                                                    "finish_reason": "stop"}]}
            else:
                doc = {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                       "model": model, "system_fingerprint": "fp_fake",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                                    "logprobs": None, "finish_reason": "stop"}]}
            if model != "no-usage":
                doc["usage"] = usage
            return web.json_response(doc)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            if not legacy:
                await resp.write(_chunk(model, {"role": "assistant", "content": ""}))
            pieces = CONTENT
            if model == "slow-stream":
                pieces = [f" t{i}" for i in range(self.slow_chunks)]
            for i, piece in enumerate(pieces):
                if model == "drop-mid" and i == 2:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if model == "slow-stream":
                    await asyncio.sleep(0.05)
                await resp.write(_chunk(model, {"content": piece}, legacy=legacy, text=piece))
            await resp.write(_chunk(model, {}, "stop", legacy=legacy))
            opts = body.get("stream_options") or {}
            if opts.get("include_usage") and model != "no-usage":
                doc = {"id": "chatcmpl-fake", "object": "text_completion" if legacy else "chat.completion.chunk",
                       "created": int(time.time()), "model": model, "choices": [], "usage": usage}
                await resp.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            self.served += 1
        except (ConnectionResetError, asyncio.CancelledError):
            self.cancelled += 1
            raise
        return resp

    async def _agent(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        messages = body.get("messages") or [{}]
        last = messages[-1]
        tools = body.get("tools") or []
        call: dict[str, Any] | None = None
        text = "".join(CONTENT)
        if tools and last.get("role") != "tool":
            call = {"id": f"call_{len(self.requests)}", "type": "function",
                    "function": {"name": tools[0]["function"]["name"], "arguments": AGENT_ARGUMENTS}}
        elif last.get("role") == "tool":
            text = f"The tool said: {last.get('content')}"
        elif (body.get("response_format") or {}).get("type") == "json_schema":
            text = AGENT_JSON
        finish = "tool_calls" if call else "stop"
        model = body["model"]
        if not body.get("stream"):
            self.served += 1
            message: dict[str, Any] = {"role": "assistant", "content": None if call else text, "refusal": None}
            if call:
                message["tool_calls"] = [call]
            return web.json_response({"id": "chatcmpl-agent", "object": "chat.completion", "created": int(time.time()),
                                      "model": model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                                                   "finish_reason": finish}], "usage": AGENT_USAGE})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(_chunk(model, {"role": "assistant", "content": None if call else ""}))
        if call:
            args = call["function"]["arguments"]
            await resp.write(_chunk(model, {"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                           "function": {"name": call["function"]["name"],
                                                                        "arguments": ""}}]}))
            for piece in (args[:9], args[9:22], args[22:]):
                await resp.write(_chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        else:
            for piece in (text[:5], text[5:12], text[12:]):
                await resp.write(_chunk(model, {"content": piece}))
        await resp.write(_chunk(model, {}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            doc = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                   "model": model, "choices": [], "usage": AGENT_USAGE}
            await resp.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        self.served += 1
        return resp

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.fail_with:
            return await self._error(self.fail_with)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vec = [0.25, -0.5, 1.0]
        data = []
        for i, _ in enumerate(inputs):
            emb: Any = vec
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack("<3f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        n = sum(len(str(x)) for x in inputs)
        self.served += 1
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": n, "total_tokens": n}})

    async def responses_api(self, request: web.Request) -> web.StreamResponse:
        return await fake_native.responses(self, request)

    async def messages_api(self, request: web.Request) -> web.StreamResponse:
        return await fake_native.messages(self, request)

    # --- lifecycle ---

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses_api)
        app.router.add_post("/v1/messages", self.messages_api)
        return app

    def start(self) -> FakeUpstream:
        """Start serving on 127.0.0.1:port (returns once it listens)."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            # A stop ends in-flight streams within a second, as a crashing upstream would.
            self._runner = web.AppRunner(self._app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name=f"fake-upstream-{self.port}")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    @property
    def running(self) -> bool:
        """Whether it serves now."""
        return self._thread is not None

    def stop(self) -> None:
        """Stop serving: the listening socket and every open connection are closed before this returns."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            if self._thread.is_alive():
                raise RuntimeError(f"fake upstream on port {self.port} did not stop")
        self._loop = None
        self._thread = None
