"""The usage ledger: rows from completion events (idempotent by event id), listing, CSV export."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.errors import BadRequest
from aiaas.kernel.events import parse_uuid
from aiaas.usage import repository
from aiaas.usage.models import RequestRecord
from aiaas.usage.schemas import (
    UsageFilter,
    UsagePage,
    UsageRecord,
)
from aiaas.usage.service.retention import ensure_partitions_for


class PermanentEventError(ValueError):
    """An event that can never be recorded (malformed ids): dead-letter it without retrying."""


# --------------------------------------------------------------------------- ledger
def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        # Event ids are new every time; the others repeat, and their parse is memoized.
        return uuid.UUID(value) if field == "event_id" else parse_uuid(value)
    except (ValueError, AttributeError, TypeError) as exc:
        raise PermanentEventError(f"{field} {value!r} is not a UUID") from exc


def ledger_row(ev: CompletionRecorded) -> dict[str, Any]:
    """The ledger row of one completion event; raises ``PermanentEventError`` on malformed ids."""
    org = _uuid(ev.org_id, "org_id")
    if org is None:  # pragma: no cover - the field is required by the event schema
        raise PermanentEventError("org_id missing")
    return {
        "event_id": _uuid(ev.event_id, "event_id"),
        "request_id": ev.request_id[:128],
        "org_id": org,
        "user_id": _uuid(ev.user_id, "user_id"),
        "key_id": _uuid(ev.key_id, "key_id"),
        "endpoint": ev.endpoint[:64],
        "model": ev.model[:256],
        "deployment": ev.deployment[:256] if ev.deployment else None,
        "provider": ev.provider[:128] if ev.provider else None,
        "prompt_tokens": ev.prompt_tokens,
        "completion_tokens": ev.completion_tokens,
        "total_tokens": ev.total_tokens,
        "cached_prompt_tokens": ev.cached_prompt_tokens,
        "reasoning_tokens": ev.reasoning_tokens,
        "ttfb_ms": ev.ttfb_ms,
        "latency_ms": ev.latency_ms,
        "status": ev.status[:32],
        "http_status": ev.http_status,
        "finish_reason": ev.finish_reason[:64] if ev.finish_reason else None,
        "error_type": ev.error_type[:128] if ev.error_type else None,
        "stream": ev.stream,
        "reservation_id": ev.reservation_id,
        "started_at": ev.started_at,
        "occurred_at": ev.occurred_at,
    }


async def record_completions(session: AsyncSession, events: Sequence[CompletionRecorded],
                             rows_of_events: Sequence[dict[str, Any]] | None = None) -> int:
    """Add events to the ledger (duplicates by event id are skipped); returns how many rows were new.

    ``rows_of_events``: their ``ledger_row``s, when the caller has built them already (the consumer, which
    builds each on arrival to refuse a malformed event alone).

    A row whose month has no partition yet (an event from long ago, or from a clock far ahead) is not
    lost: the insert is retried once after the partitions of the batch's months are created.
    """
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows_of_events if rows_of_events is not None else map(ledger_row, events):
        rows.setdefault(row["event_id"], row)  # the same event twice in one batch: keep one
    batch = list(rows.values())
    if not batch:
        return 0
    try:
        # A savepoint, so a refused insert leaves the caller's transaction usable for the retry.
        async with session.begin_nested():
            return await repository.insert_requests(session, batch)
    except Exception as exc:
        if not repository.is_missing_partition(exc):
            raise
    await ensure_partitions_for(session, [r["occurred_at"] for r in batch])
    return await repository.insert_requests(session, batch)


def _record(row: RequestRecord) -> UsageRecord:
    return UsageRecord(
        event_id=str(row.event_id), request_id=row.request_id, org_id=str(row.org_id),
        user_id=str(row.user_id) if row.user_id else None, key_id=str(row.key_id) if row.key_id else None,
        endpoint=row.endpoint, model=row.model, deployment=row.deployment, provider=row.provider,
        prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens, total_tokens=row.total_tokens,
        ttfb_ms=row.ttfb_ms, latency_ms=row.latency_ms, status=row.status, http_status=row.http_status,
        finish_reason=row.finish_reason, error_type=row.error_type, stream=row.stream, started_at=row.started_at,
        occurred_at=row.occurred_at,
    )


def encode_cursor(at: dt.datetime, event_id: uuid.UUID) -> str:
    """An opaque cursor for the row after which the next page starts."""
    raw = f"{at.isoformat()}|{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The position a cursor names; ``BadRequest`` when it was not made by ``encode_cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, eid = raw.split("|", 1)
        parsed = dt.datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed, uuid.UUID(eid)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("cursor is not valid; use the next_cursor of a previous page", param="cursor") from exc


def validate_filter(flt: UsageFilter) -> None:
    """Refuse malformed ids in a filter with a clear 400 (never a database error)."""
    for field in ("org_id", "key_id", "user_id"):
        value = getattr(flt, field)
        if value is not None:
            try:
                uuid.UUID(value)
            except ValueError as exc:
                raise BadRequest(f"{field} must be a UUID", param=field) from exc
    if flt.since and flt.until and flt.since >= flt.until:
        raise BadRequest("since must be before until", param="since")


async def list_usage(session: AsyncSession, flt: UsageFilter, *, cursor: str | None, limit: int) -> UsagePage:
    """One page of an org's ledger, newest first."""
    validate_filter(flt)
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.list_requests(session, flt, after=after, limit=limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1].occurred_at, rows[-1].event_id) if has_more and rows else None
    return UsagePage(data=[_record(r) for r in rows], next_cursor=nxt, has_more=has_more)


CSV_COLUMNS = ("occurred_at", "event_id", "request_id", "org_id", "key_id", "user_id", "endpoint", "model",
               "deployment", "provider", "status", "http_status", "prompt_tokens", "completion_tokens",
               "total_tokens", "ttfb_ms", "latency_ms", "stream", "finish_reason", "error_type")


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): a model name or a
# request id a tenant chose could otherwise run in the spreadsheet of whoever opens the export.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_row(rec: UsageRecord) -> list[str]:
    """The CSV cells of one ledger row, in ``CSV_COLUMNS`` order; text that a spreadsheet would run as a
    formula is prefixed with ``'`` (OWASP's advice), so it is shown, never evaluated."""
    out = []
    for column in CSV_COLUMNS:
        value = getattr(rec, column)
        if value is None:
            out.append("")
        elif isinstance(value, dt.datetime):
            out.append(value.isoformat())
        elif isinstance(value, str) and value.startswith(_FORMULA_START):
            out.append("'" + value)
        else:
            out.append(str(value))
    return out


async def export_usage(session: AsyncSession, flt: UsageFilter) -> AsyncIterator[UsageRecord]:
    """Every matching ledger row, newest first."""
    validate_filter(flt)
    async for row in repository.stream_requests(session, flt):
        yield _record(row)


def _event(row: RequestRecord) -> CompletionRecorded:
    return CompletionRecorded(
        event_id=str(row.event_id), occurred_at=row.occurred_at, traceparent=None, request_id=row.request_id,
        org_id=str(row.org_id), user_id=str(row.user_id) if row.user_id else None,
        key_id=str(row.key_id) if row.key_id else None, endpoint=row.endpoint, model=row.model,
        deployment=row.deployment, provider=row.provider, prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens, total_tokens=row.total_tokens,
        cached_prompt_tokens=row.cached_prompt_tokens, reasoning_tokens=row.reasoning_tokens, ttfb_ms=row.ttfb_ms,
        latency_ms=row.latency_ms, status=row.status, http_status=row.http_status, finish_reason=row.finish_reason,
        error_type=row.error_type, stream=row.stream, reservation_id=row.reservation_id, started_at=row.started_at)


async def replay_completions(session: AsyncSession, *, since: dt.datetime | None = None,
                             org_id: str | None = None, batch: int = 2000) -> AsyncIterator[CompletionRecorded]:
    """The ledger's requests (of one org, from ``since`` on) as the completion events that reported them,
    oldest first: what a read side rebuilds its projections from."""
    async for row in repository.stream_all(session, since=since, org_id=uuid.UUID(org_id) if org_id else None,
                                           batch=batch):
        yield _event(row)
