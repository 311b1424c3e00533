"""OpenAI-compatible HTTP upstreams (vLLM, llama.cpp server, Ollama, TGI, OpenAI) over keep-alive HTTP/1.1.

Requests go through the process's :class:`~aiaas.inference.providers.client.UpstreamClient` (one tuned
aiohttp session; pooling, stale connections, proxies, TLS and the egress policy are described there).
Timeouts: the pool wait (a process setting), then the deployment's ``connect_timeout`` for DNS, TCP, TLS
and a proxy's tunnel, ``first_byte_timeout`` from when the request is sent until the status line (and,
for streams, the first event), ``chunk_timeout`` for each gap between stream events, and
``total_timeout`` (the request's deadline) overall. Stream events are passed on as the upstream's own
bytes, never re-encoded.
"""

from __future__ import annotations

import asyncio
import functools

from aiaas.inference.providers.base import Call, UpstreamFailure, UpstreamReply
from aiaas.inference.providers.client import Response, UpstreamClient
from aiaas.inference.providers.credentials import CredentialResolver
from aiaas.inference.schemas import Deployment

PATHS = {"chat.completions": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings",
         "responses": "/responses", "messages": "/messages"}


@functools.lru_cache(maxsize=1024)
def _url(base_url: str, endpoint: str) -> str:
    # Built once per deployment and endpoint, not on every request (the catalog changes rarely).
    return base_url.rstrip("/") + PATHS[endpoint]


async def _read_failure(resp: Response) -> UpstreamFailure:
    try:
        body = await asyncio.wait_for(resp.read(), 5)
    except Exception:  # the error body is best effort; the status is what matters
        body = b""
    finally:
        resp.release()
    status = resp.status
    if status < 200:  # a 101 (a 1xx other than that is never a final response)
        return UpstreamFailure("protocol", f"upstream answered {status}", status=status)
    kind = "status_429" if status == 429 else "status_5xx" if status >= 500 else "status_4xx"
    return UpstreamFailure(kind, f"upstream answered {status}", status=status, body=body,
                           retry_after=resp.headers.get("retry-after"))


class HttpUpstream:
    """Calls one deployment over HTTP."""

    def __init__(self, client: UpstreamClient, credentials: CredentialResolver | None = None) -> None:
        self._client = client
        self._credentials = credentials or CredentialResolver()

    def _headers(self, dep: Deployment, call: Call) -> dict[str, str] | None:
        headers = dict(call.headers) if call.headers else None
        if not dep.credential_ref:
            return headers
        secret = self._credentials.resolve(dep.credential_ref)
        if secret is None:
            raise UpstreamFailure("config", f"credential {dep.credential_ref!r} is not configured "
                                            f"({self._credentials.where(dep.credential_ref)})")
        headers = headers or {}
        if call.endpoint == "messages":  # Anthropic's API takes its key in x-api-key, not as a bearer token
            headers["x-api-key"] = secret.decode("latin-1")
        else:
            headers["Authorization"] = "Bearer " + secret.decode("latin-1")
        return headers

    async def _open(self, dep: Deployment, call: Call, *, read_body: bool) -> Response:
        if not dep.base_url:
            raise UpstreamFailure("config", f"deployment {dep.name!r} has no base_url")
        resp = await self._client.send(_url(dep.base_url, call.endpoint), call.body, self._headers(dep, call),
                                       connect_timeout=dep.connect_timeout, first_byte_timeout=dep.first_byte_timeout,
                                       deadline=call.deadline, ca_bundle=dep.ca_bundle, read_body=read_body)
        if not 200 <= resp.status < 300:
            raise await _read_failure(resp)
        return resp

    async def complete(self, dep: Deployment, call: Call) -> UpstreamReply:
        """Send a non-streaming request and read the whole body (by the request's deadline)."""
        resp = await self._open(dep, call, read_body=True)
        resp.release()
        return UpstreamReply(body=resp.body or b"", content_type=resp.headers.get("content-type", "application/json"))

    async def stream(self, dep: Deployment, call: Call) -> HttpEventStream:
        """Send a streaming request and wait for its first SSE event (due by the first-byte timeout)."""
        resp = await self._open(dep, call, read_body=False)
        stream = HttpEventStream(resp, chunk_timeout=dep.chunk_timeout, deadline=call.deadline)
        try:
            first = await stream.read_event(resp.first_byte_at)
        except BaseException:
            await stream.aclose()
            raise
        if first is None:
            await stream.aclose()
            raise UpstreamFailure("protocol", "the upstream closed the stream before its first event")
        stream.first = first
        return stream


class HttpEventStream:
    """SSE events of one upstream response, read line by line and handed on as bytes."""

    def __init__(self, resp: Response, *, chunk_timeout: float, deadline: float) -> None:
        self._resp = resp
        self._chunk_timeout = chunk_timeout
        self._deadline = deadline
        self._loop = asyncio.get_running_loop()
        self.first = b""

    async def read_event(self, until: float) -> bytes | None:
        """Read one event (lines up to a blank line); None at a clean end of the stream."""
        parts: list[bytes] = []
        try:
            async with asyncio.timeout_at(until):
                while True:
                    line = await self._resp.readline()  # UpstreamFailure "protocol" if the stream breaks
                    if not line:  # EOF
                        return b"".join(parts) + b"\n" if parts else None
                    if line == b"\n" or line == b"\r\n":
                        if parts:
                            parts.append(line)
                            return b"".join(parts)
                        continue
                    parts.append(line)
        except TimeoutError as exc:
            raise UpstreamFailure("timeout", "the upstream stalled between chunks") from exc

    async def next_event(self) -> bytes | None:
        """The next event, bounded by the chunk gap and the request deadline."""
        return await self.read_event(min(self._loop.time() + self._chunk_timeout, self._deadline))

    async def aclose(self) -> None:
        """Close the connection unless the body was read to the end (then it returns to the pool)."""
        if self._resp.at_eof():
            self._resp.release()
        else:
            self._resp.close()
