"""Request and response Structs of the ``usage`` context."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

FailureMode = Literal["open", "closed"]

_NonNegative = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class UsagePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """An org's limits: requests and tokens per minute, monthly token budget and monthly spend limit in
    USD (a decimal string; None = unlimited), and what the streamer does while Redis is unreachable
    (``closed``: 503, ``open``: serve, count later)."""

    org_id: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    monthly_token_budget: int | None = None
    monthly_spend_limit_usd: str | None = None
    default_max_tokens: int = 4096
    redis_failure_mode: FailureMode = "closed"

    @property
    def fail_open(self) -> bool:
        """Whether requests are served uncounted while Redis is down."""
        return self.redis_failure_mode == "open"


class UsagePolicyUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /v1/orgs/{org_id}/usage-policy``: the whole policy (omitted limits mean unlimited).
    ``monthly_spend_limit_usd`` is USD (a number or a decimal string, at most 9 decimals, at most
    9,000,000); requests of models without a price are not charged against it."""

    rpm_limit: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] | None = None
    tpm_limit: Annotated[int, msgspec.Meta(ge=1, le=2**40)] | None = None
    monthly_token_budget: _NonNegative | None = None
    monthly_spend_limit_usd: Decimal | None = None
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 4096
    redis_failure_mode: FailureMode = "closed"


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """An admitted request: its reservation (None when Redis was down and the org fails open) and the
    ``x-ratelimit-*`` headers to put on the response."""

    reservation_id: str | None
    headers: dict[str, str]
    enforced: bool = True


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One ledger row: one inference request."""

    event_id: str
    request_id: str
    org_id: str
    user_id: str | None
    key_id: str | None
    endpoint: str
    model: str
    deployment: str | None
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    ttfb_ms: float | None
    latency_ms: float
    status: str
    http_status: int
    finish_reason: str | None
    error_type: str | None
    stream: bool
    started_at: dt.datetime | None
    occurred_at: dt.datetime


class UsagePage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of the ledger, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    data: list[UsageRecord]
    next_cursor: str | None
    has_more: bool


class UsageFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of a ledger listing."""

    org_id: str
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    model: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    status: str | None = None
