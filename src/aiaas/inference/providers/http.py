"""OpenAI-compatible HTTP upstreams (vLLM, llama.cpp server, Ollama, TGI, OpenAI) over keep-alive HTTP/1.1.

One connection pool per process (:class:`~aiaas.inference.providers.wire.Pool`, chosen over aiohttp by
measurement; see its docstring). Timeouts: ``connect_timeout`` for the TCP/TLS connect,
``first_byte_timeout`` until the status line (and, for streams, the first event), ``chunk_timeout`` for
each gap between stream events, and ``total_timeout`` (the request's deadline) overall. Stream events
are passed on as the upstream's own bytes, never re-encoded.
"""

from __future__ import annotations

import asyncio
import functools

from aiaas.inference.providers import wire
from aiaas.inference.providers.base import Call, UpstreamFailure, UpstreamReply
from aiaas.inference.providers.credentials import CredentialResolver
from aiaas.inference.providers.egress import EgressPolicy
from aiaas.inference.schemas import Deployment

PATHS = {"chat.completions": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}
_FIXED_HEADERS = [(b"Content-Type", b"application/json"), (b"Accept-Encoding", b"identity")]


def make_pool(*, pool_size: int, keepalive_seconds: float, egress: EgressPolicy | None = None) -> wire.Pool:
    """The process's upstream connections: at most ``pool_size`` per origin, reused while fresh, each new one
    to an address ``egress`` allows."""
    return wire.Pool(limit=pool_size, keepalive=keepalive_seconds, egress=egress)


@functools.lru_cache(maxsize=1024)
def _origin(base_url: str, endpoint: str) -> wire.Origin:
    # Parsed once per deployment and endpoint, not on every request (the catalog changes rarely).
    return wire.Origin.parse(base_url.rstrip("/") + PATHS[endpoint])


def _headers(dep: Deployment, call: Call, credentials: CredentialResolver) -> list[tuple[bytes, bytes]]:
    headers = [*_FIXED_HEADERS, *((k.encode("latin-1"), v.encode("latin-1")) for k, v in call.extra_headers.items())]
    if dep.credential_ref:
        secret = credentials.resolve(dep.credential_ref)
        if secret is None:
            raise UpstreamFailure("config", f"credential {dep.credential_ref!r} is not configured "
                                            f"({credentials.where(dep.credential_ref)})")
        headers.append((b"Authorization", b"Bearer " + secret))
    return headers


async def _read_failure(resp: wire.Response) -> UpstreamFailure:
    try:
        body = await asyncio.wait_for(resp.read(), 5)
    except Exception:  # the error body is best effort; the status is what matters
        body = b""
    finally:
        resp.release()
    status = resp.status
    kind = "status_429" if status == 429 else "status_5xx" if status >= 500 else "status_4xx"
    return UpstreamFailure(kind, f"upstream answered {status}", status=status, body=body,
                           retry_after=resp.headers.get("retry-after"))


class HttpUpstream:
    """Calls one deployment over HTTP."""

    def __init__(self, pool: wire.Pool, credentials: CredentialResolver | None = None) -> None:
        self._pool = pool
        self._credentials = credentials or CredentialResolver()

    async def _open(self, dep: Deployment, call: Call, first_byte_at: float) -> wire.Response:
        try:
            origin = _origin(dep.base_url or "", call.endpoint)
        except ValueError as exc:
            raise UpstreamFailure("config", f"bad upstream URL: {exc}") from exc
        try:
            async with asyncio.timeout_at(first_byte_at):
                resp = await self._pool.request(origin, call.body, _headers(dep, call, self._credentials),
                                                connect_timeout=dep.connect_timeout)
        except TimeoutError as exc:
            raise UpstreamFailure("timeout", "no response from the upstream before the first-byte timeout") \
                from exc
        except wire.ConnectFailed as exc:
            raise UpstreamFailure("connect", f"cannot connect to the upstream ({exc})") from exc
        except wire.ProtocolFailed as exc:
            raise UpstreamFailure("protocol", f"upstream connection failed ({exc})") from exc
        if resp.status >= 300:
            raise await _read_failure(resp)
        return resp

    async def complete(self, dep: Deployment, call: Call) -> UpstreamReply:
        """Send a non-streaming request and read the whole body."""
        loop = asyncio.get_running_loop()
        first_byte_at = min(loop.time() + dep.first_byte_timeout, call.deadline)
        resp = await self._open(dep, call, first_byte_at)
        try:
            async with asyncio.timeout_at(call.deadline):
                body = await resp.read()
        except TimeoutError as exc:
            resp.close()
            raise UpstreamFailure("timeout", "the upstream response did not finish in time") from exc
        except wire.ProtocolFailed as exc:
            resp.close()
            raise UpstreamFailure("protocol", f"upstream response broke off ({exc})") from exc
        except BaseException:
            resp.close()
            raise
        resp.release()
        return UpstreamReply(body=body, content_type=resp.headers.get("content-type", "application/json"))

    async def stream(self, dep: Deployment, call: Call) -> HttpEventStream:
        """Send a streaming request and wait for its first SSE event."""
        loop = asyncio.get_running_loop()
        first_byte_at = min(loop.time() + dep.first_byte_timeout, call.deadline)
        resp = await self._open(dep, call, first_byte_at)
        stream = HttpEventStream(resp, chunk_timeout=dep.chunk_timeout, deadline=call.deadline)
        try:
            first = await stream.read_event(first_byte_at)
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

    def __init__(self, resp: wire.Response, *, chunk_timeout: float, deadline: float) -> None:
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
                    line = await self._resp.readline()
                    if not line:  # EOF
                        return b"".join(parts) + b"\n" if parts else None
                    if line == b"\n" or line == b"\r\n":
                        if parts:
                            parts.append(line)
                            return b"".join(parts)
                        continue
                    parts.append(line)
        except TimeoutError as exc:
            kind = "timeout"
            raise UpstreamFailure(kind, "the upstream stalled between chunks") from exc
        except wire.ProtocolFailed as exc:
            raise UpstreamFailure("protocol", f"the upstream stream broke off ({exc})") from exc

    async def next_event(self) -> bytes | None:
        """The next event, bounded by the chunk gap and the request deadline."""
        return await self.read_event(min(self._loop.time() + self._chunk_timeout, self._deadline))

    async def aclose(self) -> None:
        """Close the connection unless the body was read to the end (then it returns to the pool)."""
        if self._resp.at_eof():
            self._resp.release()
        else:
            self._resp.close()
