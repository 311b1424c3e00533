"""The projections fold the hour and day buckets from the minute ones: the same additions as adding every
event to every granularity's bucket on its own."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.analytics.service.projection import GRANULARITIES, Addition, Priced, additions, floor
from aiaas.inference.events import CompletionRecorded

ORGS = [str(uuid.UUID(int=i + 1)) for i in range(2)]
KEYS = [None, str(uuid.UUID(int=100))]
START = dt.datetime(2026, 11, 30, 22, 58, tzinfo=dt.UTC)  # two hours before a day (and a month) ends

events = st.builds(
    lambda org, key, model, status, offset, prompt, completion, latency, ttfb, priced: (CompletionRecorded(
        request_id="r", org_id=org, user_id=None, key_id=key, endpoint="chat.completions", model=model,
        deployment=None, provider=None, prompt_tokens=prompt, completion_tokens=completion,
        total_tokens=prompt + completion, ttfb_ms=ttfb, latency_ms=latency, status=status, http_status=200,
        occurred_at=START + dt.timedelta(seconds=offset)), priced),
    st.sampled_from(ORGS), st.sampled_from(KEYS), st.sampled_from(["a", "b"]), st.sampled_from(["ok", "error"]),
    st.floats(min_value=0, max_value=3 * 3600, allow_nan=False), st.integers(0, 5000), st.integers(0, 5000),
    st.floats(min_value=0.01, max_value=60_000, allow_nan=False),
    st.none() | st.floats(min_value=0.01, max_value=60_000, allow_nan=False), st.booleans())


def _priced(ev: CompletionRecorded, priced: bool) -> Priced:
    amount = Decimal(ev.prompt_tokens) * Decimal("0.000001") if priced else None
    return Priced(ev, uuid.UUID(ev.event_id), uuid.UUID(ev.org_id), 1 if priced else None, amount)


def _naive(priced: list[Priced], granularity: str) -> dict[tuple[object, ...], Addition]:
    """Every event added to its own bucket of ``granularity``, with no fold."""
    out: dict[tuple[object, ...], Addition] = {}
    for p in priced:
        ev = p.event
        key = (p.org_uuid, floor(ev.occurred_at, granularity), ev.model, ev.status, ev.key_id)
        out.setdefault(key, Addition()).add(p)
    return out


def _comparable(a: Addition) -> dict[str, object]:
    got = dataclasses.asdict(a)
    got["latency_sum_ms"] = round(got["latency_sum_ms"], 6)  # a sum of floats in another grouping
    return got


@settings(max_examples=60, deadline=None)
@given(st.lists(events, min_size=1, max_size=80))
def test_folded_buckets_equal_the_buckets_of_every_event(drawn: list[tuple[CompletionRecorded, bool]]) -> None:
    priced = [_priced(ev, p) for ev, p in drawn]
    got = additions(priced)
    assert set(got) == set(GRANULARITIES)
    for g in GRANULARITIES:
        want = _naive(priced, g)
        # The key: org, bucket, model, deployment, key, user, endpoint, status, error type.
        mine = {(k[0], k[1], k[2], k[7], None if k[4].int == 0 else str(k[4])): v for k, v in got[g].items()}
        assert mine.keys() == want.keys(), g
        for key, a in want.items():
            assert _comparable(mine[key]) == _comparable(a), (g, key)
        assert all(k[1] == floor(k[1], g) for k in got[g]), g


def test_an_hour_bucket_merges_its_minutes_and_a_day_its_hours() -> None:
    org = ORGS[0]
    evs = [CompletionRecorded(request_id="r", org_id=org, user_id=None, key_id=None, endpoint="chat.completions",
                              model="m", deployment=None, provider=None, prompt_tokens=10, completion_tokens=1,
                              total_tokens=11, ttfb_ms=None, latency_ms=5.0, status="ok", http_status=200,
                              occurred_at=START + dt.timedelta(minutes=m)) for m in (0, 1, 3, 62)]
    got = additions([_priced(ev, True) for ev in evs])
    assert sorted(a.requests for a in got["minute"].values()) == [1, 1, 1, 1]
    assert sorted(a.requests for a in got["hour"].values()) == [1, 1, 2]  # 22:58 22:59 | 23:01 | 00:00
    assert sorted(a.requests for a in got["day"].values()) == [1, 3]  # 11-30 | 12-01
    assert sum(a.cost_usd for a in got["day"].values()) == Decimal("0.00004")
