"""Request and response Structs of the ``analytics`` context."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

Granularity = Literal["minute", "hour", "day"]
GroupBy = Literal["model", "deployment", "api_key", "user", "endpoint", "status", "error_type"]

_Price = Decimal  # bounds are checked by the service (0 to 1,000,000, at most 9 decimals)
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _Group(msgspec.Struct, kw_only=True):
    """The fields a row is grouped by (``group_by``): those grouped by are set, the others null."""

    model: str | None = None
    deployment: str | None = None
    api_key_id: str | None = None
    user_id: str | None = None
    endpoint: str | None = None
    status: str | None = None
    error_type: str | None = None


class UsageRow(_Group, kw_only=True):
    """One time bucket of one group: requests, tokens and cost. Grouped-by fields are set, others null."""

    bucket_start: dt.datetime
    bucket_end: dt.datetime
    requests: int
    errors: int
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: str  # exact, as a decimal string: a float would not add up to the cent
    unpriced_requests: int  # requests with tokens whose model had no price then: not in cost_usd
    unpriced_tokens: int


class UsagePage(msgspec.Struct, kw_only=True):
    """A page of usage rows, oldest bucket first."""

    data: list[UsageRow]
    granularity: Granularity
    next_cursor: str | None
    has_more: bool


class Quantiles(msgspec.Struct, kw_only=True):
    """Quantiles in milliseconds, each within ``relative_error`` of the true value (null: no samples)."""

    p50: float | None
    p95: float | None
    p99: float | None


class PerformanceRow(_Group, kw_only=True):
    """How one group (by default a model and deployment) performed over the whole range; grouped-by
    fields are set, others null."""

    requests: int
    errors: int
    error_rate: float
    ttfb_ms: Quantiles
    latency_ms: Quantiles
    completion_tokens: int
    tokens_per_second: float | None  # completion tokens over the summed request time


class PerformanceReport(msgspec.Struct, kw_only=True):
    """Performance per group over ``[start, end)``, read from ``granularity`` buckets."""

    data: list[PerformanceRow]
    start: dt.datetime
    end: dt.datetime
    granularity: Granularity
    relative_error: float


class PriceCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new price-book entry: USD per million tokens, in force from ``effective_from`` (default now)."""

    model: _Name
    input_per_mtok: _Price
    output_per_mtok: _Price
    cached_input_per_mtok: _Price | None = None
    deployment: Annotated[str, msgspec.Meta(max_length=256)] = ""
    effective_from: dt.datetime | None = None


class Price(msgspec.Struct, kw_only=True):
    """One price-book entry; ``id`` is the version a request priced with it records."""

    id: int
    model: str
    deployment: str | None
    input_per_mtok: str
    cached_input_per_mtok: str | None
    output_per_mtok: str
    effective_from: dt.datetime
    created_at: dt.datetime


# --------------------------------------------------------------------------- OpenAI's organization API
# Field names and meanings follow OpenAI's published OpenAPI document (UsageResponse, UsageTimeBucket,
# UsageCompletionsResult, UsageEmbeddingsResult, CostsResult), so its SDK and tools read them unchanged.
class _Grouped(msgspec.Struct, kw_only=True):
    # Set when grouped by it; null otherwise (aiaas has no projects, batches or service tiers: always null).
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None


class CompletionsResult(_Grouped, kw_only=True):
    """``organization.usage.completions.result``."""

    object: Literal["organization.usage.completions.result"] = "organization.usage.completions.result"
    input_tokens: int  # including cached
    input_cached_tokens: int
    input_uncached_tokens: int
    output_tokens: int
    num_model_requests: int
    batch: bool | None = None
    service_tier: str | None = None


class EmbeddingsResult(_Grouped, kw_only=True):
    """``organization.usage.embeddings.result``."""

    object: Literal["organization.usage.embeddings.result"] = "organization.usage.embeddings.result"
    input_tokens: int
    num_model_requests: int


class Amount(msgspec.Struct, kw_only=True):
    """A monetary value (``value`` rounded to the nanodollar; the exact sum is in /v1/analytics/usage)."""

    value: float
    currency: str = "usd"


class CostsResult(msgspec.Struct, kw_only=True):
    """``organization.costs.result``: ``line_item`` is the model when grouped by it."""

    object: Literal["organization.costs.result"] = "organization.costs.result"
    amount: Amount
    line_item: str | None = None
    project_id: str | None = None
    api_key_id: str | None = None


class CompletionsBucket(msgspec.Struct, kw_only=True):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[CompletionsResult]


class EmbeddingsBucket(msgspec.Struct, kw_only=True):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[EmbeddingsResult]


class CostsBucket(msgspec.Struct, kw_only=True):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[CostsResult]


class CompletionsPage(msgspec.Struct, kw_only=True):
    """OpenAI's ``UsageResponse`` of completions usage."""

    object: Literal["page"] = "page"
    data: list[CompletionsBucket]
    has_more: bool
    next_page: str | None


class EmbeddingsPage(msgspec.Struct, kw_only=True):
    """OpenAI's ``UsageResponse`` of embeddings usage."""

    object: Literal["page"] = "page"
    data: list[EmbeddingsBucket]
    has_more: bool
    next_page: str | None


class CostsPage(msgspec.Struct, kw_only=True):
    """OpenAI's ``UsageResponse`` of costs."""

    object: Literal["page"] = "page"
    data: list[CostsBucket]
    has_more: bool
    next_page: str | None
