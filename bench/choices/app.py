"""Litestar app under test: /health, /echo (msgspec Struct body), /stream (raw SSE via Stream), /sse (ServerSentEvent)."""
from __future__ import annotations

import msgspec
from litestar import Litestar, get, post
from litestar.response import ServerSentEvent, Stream


class Message(msgspec.Struct):
    role: str
    content: str


class ChatReq(msgspec.Struct):
    model: str
    messages: list[Message]
    temperature: float = 1.0
    max_tokens: int | None = None
    stream: bool = False
    user: str | None = None


class EchoResp(msgspec.Struct):
    model: str
    n_messages: int
    chars: int


_enc = msgspec.json.Encoder()


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@post("/echo")
async def echo(data: ChatReq) -> EchoResp:
    return EchoResp(model=data.model, n_messages=len(data.messages), chars=sum(len(m.content) for m in data.messages))


def _event(i: int) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"tok{i}"}}]}


@get("/stream")
async def stream() -> Stream:
    async def gen():
        for i in range(20):
            yield b"data: " + _enc.encode(_event(i)) + b"\n\n"

    return Stream(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@get("/sse")
async def sse() -> ServerSentEvent:
    async def gen():
        for i in range(20):
            yield _enc.encode(_event(i)).decode()

    return ServerSentEvent(gen())


app = Litestar([health, echo, stream, sse], debug=False)
