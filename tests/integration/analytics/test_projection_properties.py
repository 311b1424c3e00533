"""The projections against a naive recomputation, for generated event streams.

Streams hold several orgs, priced, deployment-priced and unpriced models, events delivered twice and out
of order, in batches of any size. Whatever the delivery, every minute, hour and day bucket must hold what
a plain recomputation over the distinct events says (to the token and to the exact decimal cost), the
percentiles must be within the sketch's relative error of the exact ones, and a rebuild from the same
events must give the same buckets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text

from aiaas.analytics import service, sketch
from aiaas.analytics.schemas import PriceCreate
from aiaas.analytics.service import price_book, queries
from aiaas.analytics.service.projection import floor
from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database

T0 = dt.datetime(2026, 10, 30, 22, 0, tzinfo=dt.UTC)
MILLION = Decimal(1_000_000)

raw_event = st.fixed_dictionaries({
    "org": st.integers(0, 1),
    "model": st.sampled_from(["priced", "by-deployment", "unpriced"]),
    "deployment": st.sampled_from([None, "d1", "d2"]),
    "key": st.sampled_from([None, 0, 1]),
    "status": st.sampled_from([("ok", None), ("error", "upstream_error"), ("error", "rate_limited"),
                               ("cancelled", "client_disconnected")]),
    "prompt": st.integers(0, 5000),
    "cached_share": st.floats(0, 1),
    "completion": st.integers(0, 3000),
    "reasoning_share": st.floats(0, 1),
    "latency": st.floats(0.0005, 120_000, allow_nan=False),
    "ttfb": st.one_of(st.none(), st.floats(0.0005, 60_000, allow_nan=False)),
    "seconds": st.integers(0, 3 * 86400),  # spans day boundaries and the price change below
})
streams = st.lists(raw_event, min_size=1, max_size=40)


def _events(raws: list[dict[str, Any]], orgs: list[str], keys: list[str], prefix: str) -> list[CompletionRecorded]:
    out = []
    for r in raws:
        status, error_type = r["status"]
        prompt, completion = r["prompt"], r["completion"]
        out.append(CompletionRecorded(
            request_id=f"req_{uuid.uuid4().hex}", org_id=orgs[r["org"]], user_id=None,
            key_id=keys[r["key"]] if r["key"] is not None else None, endpoint="chat.completions",
            model=f"{prefix}-{r['model']}", deployment=r["deployment"], provider="fake",
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
            cached_prompt_tokens=int(prompt * r["cached_share"]),
            reasoning_tokens=int(completion * r["reasoning_share"]), ttfb_ms=r["ttfb"], latency_ms=r["latency"],
            status=status, http_status=200 if status == "ok" else 502, error_type=error_type,
            occurred_at=T0 + dt.timedelta(seconds=r["seconds"])))
    return out


def _prices(prefix: str) -> list[PriceCreate]:
    """A model priced from the start and re-priced a day in; one priced per deployment (d1 only, over a
    model-wide price that starts later); one never priced."""
    d = Decimal
    return [
        PriceCreate(model=f"{prefix}-priced", input_per_mtok=d("2.5"), cached_input_per_mtok=d("1.25"),
                    output_per_mtok=d("10"), effective_from=T0 - dt.timedelta(days=1)),
        PriceCreate(model=f"{prefix}-priced", input_per_mtok=d("0.000000001"), output_per_mtok=d("0.6"),
                    effective_from=T0 + dt.timedelta(days=1)),
        PriceCreate(model=f"{prefix}-by-deployment", deployment="d1", input_per_mtok=d("0.15"),
                    output_per_mtok=d("0.6"), effective_from=T0 - dt.timedelta(days=1)),
        PriceCreate(model=f"{prefix}-by-deployment", input_per_mtok=d("3"), output_per_mtok=d("15"),
                    effective_from=T0 + dt.timedelta(hours=30)),
    ]


def _naive_price(prices: list[tuple[int, PriceCreate]], ev: CompletionRecorded) -> PriceCreate | None:
    live = [(p.effective_from, i, p) for i, p in prices if p.model == ev.model and p.effective_from <= ev.occurred_at]
    own = [x for x in live if ev.deployment and x[2].deployment == ev.deployment]
    general = [x for x in live if x[2].deployment == ""]
    pick = max(own or general, default=None, key=lambda x: (x[0], x[1]))
    return pick[2] if pick else None


def _naive_cost(p: PriceCreate, ev: CompletionRecorded) -> Decimal:
    cached = ev.cached_prompt_tokens
    cached_price = p.cached_input_per_mtok if p.cached_input_per_mtok is not None else p.input_per_mtok
    return ((ev.prompt_tokens - cached) * p.input_per_mtok + cached * cached_price
            + ev.completion_tokens * p.output_per_mtok) / MILLION


def _naive_buckets(events: list[CompletionRecorded], prices: list[tuple[int, PriceCreate]],
                   granularity: str) -> dict[tuple[Any, ...], list[Any]]:
    out: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0, Decimal(0), 0, 0])
    for ev in events:
        key = (ev.org_id, floor(ev.occurred_at, granularity), ev.model, ev.deployment or "", ev.key_id or "",
               ev.status, ev.error_type or "")
        row = out[key]
        row[0] += 1
        row[1] += ev.prompt_tokens
        row[2] += ev.cached_prompt_tokens
        row[3] += ev.completion_tokens
        row[4] += ev.reasoning_tokens
        p = _naive_price(prices, ev)
        if p is not None:
            row[5] += _naive_cost(p, ev)
        elif ev.prompt_tokens + ev.completion_tokens:
            row[6] += 1
            row[7] += ev.prompt_tokens + ev.completion_tokens
    return dict(out)


async def _stored(db: Database, table: str, orgs: list[str]) -> dict[tuple[Any, ...], list[Any]]:
    async with db.unit_of_work("analytics") as s:
        rows = (await s.execute(text(
            f"SELECT org_id::text, bucket_start, model, deployment, key_id::text, status, error_type, requests, "  # noqa: S608
            f"prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, cost_usd, "
            f"unpriced_requests, unpriced_tokens FROM analytics.{table} WHERE org_id = ANY(CAST(:orgs AS uuid[]))"),
            {"orgs": orgs})).all()
    nil = str(uuid.UUID(int=0))
    return {(r[0], r[1], r[2], r[3], "" if r[4] == nil else r[4], r[5], r[6]): [*r[7:12], Decimal(r[12]), r[13], r[14]]
            for r in rows}


_MODEL_SIDE = ("org_id, bucket_start, model, deployment, endpoint, status, error_type, requests, prompt_tokens, "
               "cached_prompt_tokens, completion_tokens, reasoning_tokens, cost_usd, unpriced_requests, "
               "unpriced_tokens, round(latency_sum_ms::numeric, 6), ttfb_hist, latency_hist")


async def _model_side_differs(db: Database, granularity: str, orgs: list[str]) -> list[Any]:
    """Rows where the ``*_by_model`` buckets are not the full buckets summed over key and user (histograms
    included), either way round (float latency sums compared to 1e-6 ms: their order of addition differs)."""
    keys = "org_id, bucket_start, model, deployment, endpoint, status, error_type"
    summed = (f"SELECT {keys}, sum(requests), sum(prompt_tokens), sum(cached_prompt_tokens), "  # noqa: S608
              f"sum(completion_tokens), sum(reasoning_tokens), sum(cost_usd), sum(unpriced_requests), "
              f"sum(unpriced_tokens), round(sum(latency_sum_ms)::numeric, 6), analytics.hist_sum(ttfb_hist), "
              f"analytics.hist_sum(latency_hist) FROM analytics.usage_{granularity} "
              f"WHERE org_id = ANY(CAST(:orgs AS uuid[])) GROUP BY {keys}")
    lean = (f"SELECT {_MODEL_SIDE} FROM analytics.usage_{granularity}_by_model "  # noqa: S608
            f"WHERE org_id = ANY(CAST(:orgs AS uuid[]))")
    async with db.unit_of_work("analytics") as s:
        return list((await s.execute(text(f"({summed} EXCEPT {lean}) UNION ALL ({lean} EXCEPT {summed})"),
                                     {"orgs": orgs})).all())


def _exact_quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[math.floor(q * (len(values) - 1))]


def _close(estimate: float | None, exact: float) -> bool:
    assert estimate is not None
    if exact <= sketch.MIN_MS:
        return estimate <= sketch.MIN_MS * (1 + sketch.ALPHA)
    return abs(estimate - exact) <= sketch.ALPHA * exact * 1.000001


class TestProjectionsMatchARecomputation:
    @hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(raws=streams, data=st.data())
    def test_any_delivery_gives_the_naive_buckets(self, settings: Settings, raws: list[dict[str, Any]],
                                                 data: st.DataObject) -> None:
        n = len(raws)
        # Delivery: every event at least once, some twice, in any order, in batches of any size.
        extra = data.draw(st.lists(st.integers(0, n - 1), max_size=n), label="duplicates")
        order = data.draw(st.permutations(list(range(n)) + extra), label="order")
        cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(order) - 1)), max_size=5), label="cuts")))
        asyncio.run(self._run(settings, raws, order, cuts))

    async def _run(self, settings: Settings, raws: list[dict[str, Any]], order: list[int], cuts: list[int]) -> None:
        db = Database(settings, role="test")
        try:
            orgs = [str(uuid.uuid4()), str(uuid.uuid4())]
            keys = [str(uuid.uuid4()), str(uuid.uuid4())]
            prefix = uuid.uuid4().hex[:10]
            events = _events(raws, orgs, keys, prefix)
            specs = _prices(prefix)
            async with db.unit_of_work("analytics") as s:
                made = [await price_book.add_price(s, spec) for spec in specs]
            prices = [(m.id, spec) for m, spec in zip(made, specs, strict=True)]

            delivered = [events[i] for i in order]
            bounds = [0, *cuts, len(delivered)]
            for a, b in itertools.pairwise(bounds):
                if a < b:
                    async with db.unit_of_work("analytics") as s:
                        await service.apply_events(s, delivered[a:b])

            for granularity, table in (("minute", "usage_minute"), ("hour", "usage_hour"), ("day", "usage_day")):
                assert await _stored(db, table, orgs) == _naive_buckets(events, prices, granularity), granularity
                assert await _model_side_differs(db, granularity, orgs) == [], granularity

            async with db.unit_of_work("analytics") as s:
                for org in orgs:
                    mine = [e for e in events if e.org_id == org]
                    report = await queries.performance(
                        s, org_ids=[uuid.UUID(org)], start=T0, end=T0 + dt.timedelta(days=4), group_by=[],
                        filters={})
                    if not mine:
                        assert report.data == []
                        continue
                    (row,) = report.data
                    assert row.requests == len(mine)
                    assert row.errors == sum(e.status != "ok" for e in mine)
                    for q, got in ((0.5, row.latency_ms.p50), (0.95, row.latency_ms.p95), (0.99, row.latency_ms.p99)):
                        assert _close(got, _exact_quantile([e.latency_ms for e in mine], q)), (q, got)
                    ttfbs = [e.ttfb_ms for e in mine if e.ttfb_ms is not None]
                    if ttfbs:
                        assert _close(row.ttfb_ms.p99, _exact_quantile(ttfbs, 0.99))
                    else:
                        assert row.ttfb_ms.p50 is None

            # A rebuild of one org from its distinct events (what the ledger holds) gives the same buckets.
            before = await _stored(db, "usage_minute", orgs)

            async def ledger(start: dt.datetime | None) -> Any:
                for e in events:
                    if e.org_id == orgs[0] and (start is None or e.occurred_at >= start):
                        yield e

            await service.rebuild(lambda: db.unit_of_work("analytics"), ledger, since=T0 + dt.timedelta(days=1),
                                  org_id=orgs[0], chunk=7)
            assert await _stored(db, "usage_minute", orgs) == before
            assert await _model_side_differs(db, "minute", orgs) == []
        finally:
            await db.dispose()
