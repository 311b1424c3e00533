"""Minimal fast fake OpenAI upstream (raw asyncio.Protocol + uvloop, HTTP/1.1 keep-alive).
POST /v1/chat/completions  -> fixed chat.completion JSON (or SSE if path is /v1/chat/completions/stream
or body contains "stream":true). GET /slow-stream -> 20 events, 5 ms apart (buffering check)."""
import asyncio
import json
import sys

import uvloop

COMPLETION = json.dumps({
    "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1700000000, "model": "llama-3.1-8b-instruct",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! TCP is connection-oriented, UDP is not. " * 4},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 180, "completion_tokens": 48, "total_tokens": 228},
}, separators=(",", ":")).encode()
RESP = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(COMPLETION)) + COMPLETION


def _chunk(b):
    return b"%x\r\n%s\r\n" % (len(b), b)


EVENTS = [b"data: " + json.dumps({"id": "chatcmpl-abc123", "object": "chat.completion.chunk", "created": 1700000000,
                                  "model": "m", "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]},
                                 separators=(",", ":")).encode() + b"\n\n" for i in range(20)] + [b"data: [DONE]\n\n"]
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class Proto(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i]
            cl = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    cl = int(v)
            if len(self.buf) < i + 4 + cl:
                return
            body = self.buf[i + 4:i + 4 + cl]
            self.buf = self.buf[i + 4 + cl:]
            path = head.split(b" ", 2)[1]
            if path == b"/slow-stream":
                asyncio.ensure_future(self.slow())
            elif path.endswith(b"/stream") or b'"stream":true' in body.replace(b" ", b""):
                self.t.write(SSE_HEAD + b"".join(_chunk(e) for e in EVENTS) + b"0\r\n\r\n")
            else:
                self.t.write(RESP)

    async def slow(self):
        self.t.write(SSE_HEAD)
        for e in EVENTS:
            self.t.write(_chunk(e))
            await asyncio.sleep(0.005)
        self.t.write(b"0\r\n\r\n")


async def main(port):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Proto, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 18100))
