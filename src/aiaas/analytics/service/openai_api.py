"""OpenAI's organization Usage and Costs APIs over the projections, with OpenAI's parameters and limits.

Buckets start on UTC boundaries of ``bucket_width`` (the first one holds ``start_time``); every bucket in
the range is listed, empty ones with no results, as OpenAI does. ``page`` is the start of the next bucket.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics import repository
from aiaas.analytics.schemas import (
    Amount,
    CompletionsBucket,
    CompletionsPage,
    CompletionsResult,
    CostsBucket,
    CostsPage,
    CostsResult,
    EmbeddingsBucket,
    EmbeddingsPage,
    EmbeddingsResult,
)
from aiaas.analytics.service.projection import floor
from aiaas.analytics.service.queries import LATEST, shown
from aiaas.kernel.errors import BadRequest

GRANULARITY = {"1m": "minute", "1h": "hour", "1d": "day"}
WIDTH = {"1m": 60, "1h": 3600, "1d": 86400}
# (default, maximum) number of buckets per page, from OpenAI's API reference.
LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
COSTS_LIMITS = (7, 180)
ENDPOINTS = {"completions": ["chat.completions", "completions", "responses", "messages"], "embeddings": ["embeddings"]}
USAGE_GROUPS = {"completions": {"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"},
                "embeddings": {"project_id", "user_id", "api_key_id", "model"}}
COSTS_GROUPS = {"project_id", "line_item", "api_key_id"}
COLUMN = {"user_id": "user_id", "api_key_id": "key_id", "model": "model", "line_item": "model"}


def _page(page: str | None) -> int | None:
    if page is None:
        return None
    try:
        return int(base64.urlsafe_b64decode(page + "=" * (-len(page) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("page is not valid: use next_page of the previous response", param="page") from exc


def _next_page(start: int) -> str:
    return base64.urlsafe_b64encode(str(start).encode()).decode().rstrip("=")


def _uuids(values: Sequence[str] | None, param: str) -> list[uuid.UUID] | None:
    if not values:
        return None
    try:
        return [uuid.UUID(v) for v in values]
    except ValueError as exc:
        raise BadRequest(f"{param} must be ids this API gave out", param=param) from exc


class _Window:
    """The buckets one page covers."""

    def __init__(self, *, start_time: int, end_time: int | None, width: str, limit: int | None,
                 limits: tuple[int, int], page: str | None, now: dt.datetime) -> None:
        latest = int(LATEST.timestamp())
        if not 0 <= start_time < latest:
            raise BadRequest(f"start_time must be Unix seconds before {LATEST.year}", param="start_time")
        if end_time is not None and end_time > latest:
            raise BadRequest(f"end_time must be Unix seconds before {LATEST.year}", param="end_time")
        default, maximum = limits
        if limit is None:
            limit = default
        if not 1 <= limit <= maximum:
            raise BadRequest(f"limit must be between 1 and {maximum} for bucket_width={width}", param="limit")
        self.seconds = WIDTH[width]
        granularity = GRANULARITY[width]
        try:
            first = floor(dt.datetime.fromtimestamp(start_time, dt.UTC), granularity)
        except (OverflowError, OSError, ValueError) as exc:
            raise BadRequest("start_time is out of range", param="start_time") from exc
        self.end = end_time if end_time is not None else int(now.timestamp())
        if self.end <= start_time:
            raise BadRequest("end_time must be after start_time", param="end_time")
        begin = int(first.timestamp())
        resumed = _page(page)
        if resumed is not None:
            if not begin <= resumed < self.end or (resumed - begin) % self.seconds:
                raise BadRequest("page does not belong to this query", param="page")
            begin = resumed
        self.starts = []
        b = begin
        while b < self.end and len(self.starts) < limit:
            self.starts.append(b)
            b += self.seconds
        self.next_page = _next_page(b) if b < self.end else None
        self.granularity = granularity

    @property
    def range(self) -> tuple[dt.datetime, dt.datetime]:
        last = self.starts[-1] + self.seconds
        return dt.datetime.fromtimestamp(self.starts[0], dt.UTC), dt.datetime.fromtimestamp(last, dt.UTC)


def _groups(group_by: Sequence[str] | None, allowed: set[str]) -> list[str]:
    out = []
    for g in group_by or ():
        if g not in allowed:
            raise BadRequest(f"group_by {g!r} is not supported here: use {', '.join(sorted(allowed))}",
                             param="group_by")
        if g not in out:
            out.append(g)
    return out


async def _rows(session: AsyncSession, w: _Window, org_id: uuid.UUID, groups: list[str],
                filters: dict[str, list[Any]]) -> dict[int, list[Any]]:
    cols = [COLUMN[g] for g in groups if g in COLUMN]
    cols = list(dict.fromkeys(cols))
    start, end = w.range
    rows = await repository.bucket_rows(session, w.granularity, org_ids=[org_id], start=start, end=end,
                                        group_by=cols, filters=filters)
    out: dict[int, list[Any]] = {}
    for r in rows:
        out.setdefault(int(r._mapping["bucket_start"].timestamp()), []).append(r._mapping)
    return out


def _grouped(m: Any, groups: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in groups:
        if g in ("user_id", "api_key_id", "model"):
            out[g] = shown(COLUMN[g], m[COLUMN[g]])
        if g == "batch":
            out["batch"] = False  # aiaas has no batch API: every request is a non-batch one
    return out


async def usage_page(session: AsyncSession, kind: str, *, org_id: uuid.UUID, start_time: int,
                     end_time: int | None, bucket_width: str, group_by: Sequence[str] | None,
                     models: Sequence[str] | None, api_key_ids: Sequence[str] | None,
                     user_ids: Sequence[str] | None, project_ids: Sequence[str] | None, limit: int | None,
                     page: str | None, now: dt.datetime) -> CompletionsPage | EmbeddingsPage:
    """One page of ``/v1/organization/usage/{completions|embeddings}``."""
    if bucket_width not in GRANULARITY:
        raise BadRequest("bucket_width must be 1m, 1h or 1d", param="bucket_width")
    w = _Window(start_time=start_time, end_time=end_time, width=bucket_width, limit=limit,
                limits=LIMITS[bucket_width], page=page, now=now)
    groups = _groups(group_by, USAGE_GROUPS[kind])
    filters: dict[str, list[Any]] = {"endpoint": ENDPOINTS[kind]}
    if models:
        filters["model"] = list(models)
    if (keys := _uuids(api_key_ids, "api_key_ids")) is not None:
        filters["key_id"] = keys
    if (users := _uuids(user_ids, "user_ids")) is not None:
        filters["user_id"] = users
    by_start = {} if project_ids else await _rows(session, w, org_id, groups, filters)  # no projects here
    buckets: list[Any] = []
    for s in w.starts:
        results: list[Any] = []
        for m in by_start.get(s, ()):
            prompt, cached = int(m["prompt_tokens"]), int(m["cached_prompt_tokens"])
            if kind == "completions":
                results.append(CompletionsResult(
                    input_tokens=prompt, input_cached_tokens=cached, input_uncached_tokens=prompt - cached,
                    output_tokens=int(m["completion_tokens"]), num_model_requests=int(m["requests"]),
                    **_grouped(m, groups)))
            else:
                results.append(EmbeddingsResult(input_tokens=prompt, num_model_requests=int(m["requests"]),
                                                **_grouped(m, groups)))
        bucket_type = CompletionsBucket if kind == "completions" else EmbeddingsBucket
        buckets.append(bucket_type(start_time=s, end_time=s + w.seconds, results=results))
    page_type = CompletionsPage if kind == "completions" else EmbeddingsPage
    return page_type(data=buckets, has_more=w.next_page is not None, next_page=w.next_page)


async def costs_page(session: AsyncSession, *, org_id: uuid.UUID, start_time: int, end_time: int | None,
                     bucket_width: str, group_by: Sequence[str] | None, api_key_ids: Sequence[str] | None,
                     project_ids: Sequence[str] | None, limit: int | None, page: str | None,
                     now: dt.datetime) -> CostsPage:
    """One page of ``/v1/organization/costs`` (daily buckets; ``line_item`` is the model)."""
    if bucket_width != "1d":
        raise BadRequest("bucket_width must be 1d for costs", param="bucket_width")
    w = _Window(start_time=start_time, end_time=end_time, width="1d", limit=limit, limits=COSTS_LIMITS,
                page=page, now=now)
    groups = _groups(group_by, COSTS_GROUPS)
    filters: dict[str, list[Any]] = {}
    if (keys := _uuids(api_key_ids, "api_key_ids")) is not None:
        filters["key_id"] = keys
    by_start = {} if project_ids else await _rows(session, w, org_id, groups, filters)
    buckets = []
    for s in w.starts:
        results = []
        for m in by_start.get(s, ()):
            extra: dict[str, Any] = {}
            if "line_item" in groups:
                extra["line_item"] = shown("model", m["model"])
            if "api_key_id" in groups:
                extra["api_key_id"] = shown("key_id", m["key_id"])
            results.append(CostsResult(amount=Amount(value=float(round(m["cost_usd"], 9))), **extra))
        buckets.append(CostsBucket(start_time=s, end_time=s + w.seconds, results=results))
    return CostsPage(data=buckets, has_more=w.next_page is not None, next_page=w.next_page)
