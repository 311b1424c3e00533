"""Completion events -> additions to the minute, hour and day buckets (pure; the repository applies them).

Every bucket field is a sum (counts, tokens, cost) or a mergeable histogram, so applying the same set of
events in any order, in any batches, gives the same buckets; the processed-event record (written in the
same transaction) makes a redelivered or duplicated event add nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from aiaas.analytics import sketch
from aiaas.analytics.models import NO_ID, NO_TEXT
from aiaas.analytics.service.prices import PriceBook, cost
from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.events import parse_uuid

GRANULARITIES = ("minute", "hour", "day")

# Dimensions of a bucket, in primary-key order after (org_id, bucket_start).
DIMENSIONS = ("model", "deployment", "key_id", "user_id", "endpoint", "status", "error_type")
# Those of the model-side buckets (``*_by_model``: no API key, no user).
MODEL_DIMENSIONS = ("model", "deployment", "endpoint", "status", "error_type")


_SUM_FIELDS = ("requests", "prompt_tokens", "cached_prompt_tokens", "completion_tokens", "reasoning_tokens",
               "cost_usd", "unpriced_requests", "unpriced_tokens", "latency_sum_ms")


class MalformedEvent(ValueError):
    """An event the projections can never take (ids that are not UUIDs): dead-letter it."""


def floor(at: dt.datetime, granularity: str) -> dt.datetime:
    """The start of the UTC bucket of ``granularity`` that holds ``at``."""
    at = at.astimezone(dt.UTC)
    if granularity == "minute":
        return at.replace(second=0, microsecond=0)
    if granularity == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown granularity {granularity!r}")


def _uuid(value: str | None, name: str) -> uuid.UUID:
    if value is None:
        return NO_ID
    try:
        # Event ids are new every time; the others repeat, and their parse is memoized.
        return uuid.UUID(value) if name == "event_id" else parse_uuid(value)
    except (ValueError, AttributeError, TypeError) as exc:
        raise MalformedEvent(f"{name} {value!r} is not a UUID") from exc


def check_ids(ev: CompletionRecorded) -> None:
    """Raise ``MalformedEvent`` unless every id of the event is a UUID (or absent where it may be)."""
    _uuid(ev.event_id, "event_id")
    _uuid(ev.org_id, "org_id")
    _uuid(ev.key_id, "key_id")
    _uuid(ev.user_id, "user_id")


@dataclass(frozen=True, slots=True)
class Priced:
    """One event with the price-book entry it pays (None: unpriced) and its cost."""

    event: CompletionRecorded
    event_uuid: uuid.UUID
    org_uuid: uuid.UUID
    price_id: int | None
    cost_usd: Decimal | None


def price(events: Iterable[CompletionRecorded], book: PriceBook) -> list[Priced]:
    """Each event with its price; raises ``MalformedEvent`` for ids that are not UUIDs."""
    out = []
    for ev in events:
        entry = book.price_for(ev.model, ev.deployment, ev.occurred_at)
        amount = None if entry is None else cost(entry, prompt_tokens=ev.prompt_tokens,
                                                 cached_prompt_tokens=ev.cached_prompt_tokens,
                                                 completion_tokens=ev.completion_tokens)
        out.append(Priced(ev, _uuid(ev.event_id, "event_id"), _uuid(ev.org_id, "org_id"),
                          entry.id if entry else None, amount))
    return out


@dataclass(slots=True)
class Addition:
    """What a set of events adds to one bucket."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced_requests: int = 0
    unpriced_tokens: int = 0
    latency_sum_ms: float = 0.0
    ttfb_hist: sketch.Histogram = field(default_factory=dict)
    latency_hist: sketch.Histogram = field(default_factory=dict)

    def add(self, p: Priced) -> None:
        ev = p.event
        self.requests += 1
        self.prompt_tokens += ev.prompt_tokens
        self.cached_prompt_tokens += ev.cached_prompt_tokens
        self.completion_tokens += ev.completion_tokens
        self.reasoning_tokens += ev.reasoning_tokens
        tokens = ev.prompt_tokens + ev.completion_tokens
        if p.cost_usd is not None:
            self.cost_usd += p.cost_usd
        elif tokens:  # a request that consumed nothing costs nothing, priced or not
            self.unpriced_requests += 1
            self.unpriced_tokens += tokens
        self.latency_sum_ms += ev.latency_ms
        i = sketch.bucket(ev.latency_ms)
        self.latency_hist[i] = self.latency_hist.get(i, 0) + 1
        if ev.ttfb_ms is not None:
            j = sketch.bucket(ev.ttfb_ms)
            self.ttfb_hist[j] = self.ttfb_hist.get(j, 0) + 1

    def merge(self, other: Addition) -> None:
        """Add another bucket's addition to this one (sums add, histograms merge)."""
        for name in _SUM_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.ttfb_hist, other.ttfb_hist), (self.latency_hist, other.latency_hist)):
            for i, n in theirs.items():
                mine[i] = mine.get(i, 0) + n


BucketKey = tuple[uuid.UUID, dt.datetime, str, str, uuid.UUID, uuid.UUID, str, str, str]


def _dims(p: Priced) -> tuple[str, str, uuid.UUID, uuid.UUID, str, str, str]:
    ev = p.event
    return ((ev.model or NO_TEXT)[:256], (ev.deployment or NO_TEXT)[:256], _uuid(ev.key_id, "key_id"),
            _uuid(ev.user_id, "user_id"), ev.endpoint[:64], ev.status[:32], (ev.error_type or NO_TEXT)[:128])


def additions(priced: Iterable[Priced]) -> dict[str, dict[BucketKey, Addition]]:
    """Per granularity, what the events add to each bucket they fall in.

    Each event is added once, to its minute bucket; the hour buckets are folded from the minute ones and
    the day buckets from the hour ones (every field is a sum or a mergeable histogram, so the fold is
    exact), which costs per bucket rather than per event.
    """
    minute: dict[BucketKey, Addition] = {}
    for p in priced:
        key: BucketKey = (p.org_uuid, floor(p.event.occurred_at, "minute"), *_dims(p))
        add = minute.get(key)
        if add is None:
            add = minute[key] = Addition()
        add.add(p)
    out = {"minute": minute}
    finer = minute
    for g in GRANULARITIES[1:]:
        coarser: dict[BucketKey, Addition] = {}
        for key, a in finer.items():
            wider: BucketKey = (key[0], floor(key[1], g), *key[2:])  # type: ignore[assignment]
            mine = coarser.get(wider)
            if mine is None:
                mine = coarser[wider] = Addition()
            mine.merge(a)
        out[g] = finer = coarser
    return out


ModelKey = tuple[uuid.UUID, dt.datetime, str, str, str, str, str]


def by_model(adds: dict[BucketKey, Addition]) -> dict[ModelKey, Addition]:
    """The same additions without the API key and the user (for the ``*_by_model`` buckets)."""
    out: dict[ModelKey, Addition] = {}
    for key, a in adds.items():
        lean: ModelKey = (*key[:4], *key[6:])  # type: ignore[assignment]
        mine = out.get(lean)
        if mine is None:
            mine = out[lean] = Addition()
        mine.merge(a)
    return out


KEY_COLUMNS = ("org_id", "bucket_start", *DIMENSIONS)
MODEL_KEY_COLUMNS = ("org_id", "bucket_start", *MODEL_DIMENSIONS)


def bucket_rows(adds: dict[BucketKey, Addition] | dict[ModelKey, Addition],
                columns: tuple[str, ...] = KEY_COLUMNS) -> list[dict[str, object]]:
    """The rows to add to stored buckets, in key order (so concurrent writers lock in one order)."""
    rows = []
    for key in sorted(adds):  # type: ignore[type-var]  # tuples of UUIDs, datetimes and strings: a total order
        a = adds[key]  # type: ignore[index]
        row: dict[str, object] = dict(zip(columns, key, strict=True))
        row.update({name: getattr(a, name) for name in _SUM_FIELDS})
        row["ttfb_hist"] = sketch.to_json(a.ttfb_hist)
        row["latency_hist"] = sketch.to_json(a.latency_hist)
        rows.append(row)
    return rows


def processed_rows(priced: Iterable[Priced]) -> list[dict[str, object]]:
    """The processed-event records of priced events (one per event id)."""
    rows: dict[uuid.UUID, dict[str, object]] = {}
    for p in priced:
        rows.setdefault(p.event_uuid, {"event_id": p.event_uuid, "org_id": p.org_uuid,
                                       "occurred_at": p.event.occurred_at, "price_id": p.price_id,
                                       "cost_usd": p.cost_usd})
    return list(rows.values())
