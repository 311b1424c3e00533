"""Integration events the ``inference`` context publishes (exchange ``aiaas.inference``).

``usage`` (the ledger, TPM correction, quota settlement) and ``analytics`` consume them.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from aiaas.kernel.events import Event


class CompletionRecorded(Event, frozen=True, kw_only=True):
    """One inference request finished (successfully or not): what it cost and how it went.

    Published after the response has been sent, exactly once per request; ``event_id`` makes every
    consumer idempotent. Tokens are the upstream's usage when it reported one, otherwise counted.

    Schema 2 added ``cached_prompt_tokens`` (part of ``prompt_tokens``) and ``reasoning_tokens`` (part of
    ``completion_tokens``), both 0 when the upstream did not report them: a schema-1 consumer ignores the
    new fields (unknown fields are skipped), and a schema-1 event decodes here with both at 0.
    Schema 3 added ``charged_nano_usd``: what the org's monthly spend limit is charged (the exact cost at
    the model's price when the request was admitted, in nano-USD rounded up; 0 when unpriced); an older
    event charges nothing.
    """

    routing_key: ClassVar[str] = "completion.recorded"
    schema_version: int = 3

    request_id: str
    org_id: str
    user_id: str | None
    key_id: str | None
    endpoint: str  # "chat.completions" | "completions" | "embeddings"
    model: str
    deployment: str | None
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    ttfb_ms: float | None
    latency_ms: float
    status: str  # "ok" | "error" | "cancelled"
    http_status: int
    finish_reason: str | None = None
    error_type: str | None = None
    stream: bool = False
    reservation_id: str | None = None
    started_at: dt.datetime | None = None
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    charged_nano_usd: int = 0
