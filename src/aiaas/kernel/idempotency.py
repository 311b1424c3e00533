"""``Idempotency-Key`` on creating POSTs: a retried request gets the first response, not a second resource.

The first response is stored in Redis for 24 hours under (principal, key), once its transaction has
committed. A retry with the same key and the same request replays it (``Idempotent-Replayed: true``);
the same key with a different request is a 422; a retry while the first is still running is a 409.

A response carrying a secret (a new API key) is stored without it (``secret_field``): a secret is shown
once and never kept in Redis. Its replay is a 409 ``idempotency_secret_unavailable`` whose ``result``
member is the rest of the first response (the key's id and metadata), so the client learns the key was
made and can revoke it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.kernel.db import after_commit
from aiaas.kernel.errors import Conflict, ValidationFailed
from aiaas.kernel.redis import Keys, RedisClient
from aiaas.kernel.security import Principal

HEADER = "idempotency-key"
TTL_SECONDS = 24 * 3600
PENDING_SECONDS = 60


class _Stored(msgspec.Struct):
    fingerprint: str
    status: int = 0
    body: bytes = b""
    redacted: bool = False  # the body's secret was left out: replays cannot show it


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(_Stored)


def _bad_key(detail: str) -> ValidationFailed:
    return ValidationFailed(detail, param="Idempotency-Key",
                            extra={"errors": [{"key": "Idempotency-Key", "message": detail, "source": "header"}]})


async def idempotent(
    request: Request[Any, Any, Any],
    *,
    principal: Principal,
    redis: RedisClient,
    keys: Keys,
    context: str,
    session: AsyncSession,
    produce: Callable[[], Awaitable[Any]],
    status_code: int = 201,
    secret_field: str | None = None,
) -> Response[Any]:
    """Run ``produce`` once per (principal, Idempotency-Key); answer retries with the stored response.

    ``secret_field``: a top-level field of the response that is a secret, never stored (see the module).
    """
    header = request.headers.get(HEADER)
    if header is None:
        return Response(await produce(), status_code=status_code)
    if not 1 <= len(header) <= 255 or not header.isprintable():
        raise _bad_key("Idempotency-Key must be 1 to 255 printable characters.")
    who = principal.key_id or principal.user_id or "anonymous"
    name = keys(context, "idem", hashlib.sha256(f"{who}\x00{header}".encode()).hexdigest())
    body = await request.body()
    fingerprint = hashlib.sha256(f"{request.method} {request.url.path}\x00".encode() + body).hexdigest()
    if not await redis.set(name, _enc.encode(_Stored(fingerprint=fingerprint)), nx=True, ex=PENDING_SECONDS):
        raw = await redis.get(name)
        stored = _dec.decode(raw) if raw else None
        if stored is None:
            raise Conflict("A request with this Idempotency-Key just finished; retry.", code="idempotency_retry")
        if stored.fingerprint != fingerprint:
            raise _bad_key("This Idempotency-Key was used for a different request.")
        if stored.status == 0:
            raise Conflict("A request with this Idempotency-Key is still in progress.", code="idempotency_in_progress")
        if stored.redacted:
            raise Conflict("This request already succeeded; its secret was shown once and is not kept. Revoke "
                           "what it created if the secret was lost, and make a new one.",
                           code="idempotency_secret_unavailable", extra={"result": msgspec.json.decode(stored.body)})
        return Response(content=stored.body, status_code=stored.status, media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})
    try:
        result = await produce()
    except BaseException:
        await redis.delete(name)
        raise
    encoded = msgspec.json.encode(result)
    kept = encoded
    if secret_field is not None:
        kept = msgspec.json.encode({k: v for k, v in msgspec.to_builtins(result).items() if k != secret_field})

    async def remember() -> None:
        await redis.set(name, _enc.encode(_Stored(fingerprint=fingerprint, status=status_code, body=kept,
                                                  redacted=secret_field is not None)), ex=TTL_SECONDS)

    after_commit(session, remember)
    return Response(content=encoded, status_code=status_code, media_type="application/json")
