"""Pure helpers of the limiter: header durations, Retry-After, months, cursors, ledger rows."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.errors import BadRequest
from aiaas.usage import limiter, service

GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?$")


def _parse(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2])
    m = GO_DURATION.match(text)
    assert m, text
    h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return (h * 3600 + mi * 60 + s) * 1000


class TestFormatDuration:
    @pytest.mark.parametrize(("ms", "text"), [(0, "0ms"), (20, "20ms"), (999.2, "1000ms"), (1000, "1s"),
                                              (1500, "1.5s"), (60_000, "1m0s"), (360_000, "6m0s"),
                                              (3_723_000, "1h2m3s")])
    def test_openai_style(self, ms: float, text: str) -> None:
        assert limiter.format_duration(ms) == text

    @given(st.floats(0, 10_000_000, allow_nan=False))
    def test_round_trips_to_the_millisecond(self, ms: float) -> None:
        assert abs(_parse(limiter.format_duration(ms)) - ms) <= 1.0

    @given(st.floats(0, 10_000_000, allow_nan=False))
    def test_retry_after_is_whole_seconds_never_early(self, ms: float) -> None:
        s = limiter.retry_after_seconds(ms)
        assert s >= 1 and s * 1000 >= ms


class TestMonths:
    def test_reservation_id_names_its_month(self) -> None:
        rid = limiter.new_reservation_id()
        assert limiter.month_key(limiter.month_of_reservation(rid)) == limiter.month_key(dt.datetime.now(dt.UTC))

    @given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2200, 1, 1),
                        timezones=st.just(dt.UTC)))
    def test_month_end_is_the_next_first(self, at: dt.datetime) -> None:
        end = limiter.month_end(at)
        assert end > at and end.day == 1 and (end - dt.timedelta(microseconds=1)).month == at.month


class TestCursor:
    @given(st.datetimes(timezones=st.just(dt.UTC)), st.uuids())
    def test_round_trip(self, at: dt.datetime, eid: uuid.UUID) -> None:
        assert service.decode_cursor(service.encode_cursor(at, eid)) == (at, eid)

    @pytest.mark.parametrize("bad", ["", "x", "bm90aGluZw", "!!!"])
    def test_garbage_is_a_bad_request(self, bad: str) -> None:
        with pytest.raises(BadRequest):
            service.decode_cursor(bad)


class TestLedgerRow:
    def _event(self, **kw: object) -> CompletionRecorded:
        fields: dict[str, object] = dict(request_id="r", org_id=str(uuid.uuid4()), user_id=None, key_id=None,
                                         endpoint="chat.completions", model="m", deployment=None, provider=None,
                                         prompt_tokens=1, completion_tokens=2, total_tokens=3, ttfb_ms=None,
                                         latency_ms=1.0, status="ok", http_status=200)
        fields.update(kw)
        return CompletionRecorded(**fields)  # type: ignore[arg-type]

    def test_malformed_ids_are_permanent_errors(self) -> None:
        with pytest.raises(service.PermanentEventError):
            service.ledger_row(self._event(org_id="not-a-uuid"))

    def test_row_keeps_tokens(self) -> None:
        row = service.ledger_row(self._event())
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (1, 2, 3)


class TestHeaders:
    def test_only_limited_dimensions_appear(self) -> None:
        h = service.admission._headers([60, 59, 1000, -1, -1, 0])
        assert h == {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
                     "x-ratelimit-reset-requests": "1s"}


class TestCsvCells:
    def test_formulas_are_shown_not_run(self) -> None:
        import datetime as dt

        from aiaas.usage.schemas import UsageRecord
        from aiaas.usage.service import CSV_COLUMNS, csv_row

        values = {c: None for c in CSV_COLUMNS}
        values.update(occurred_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC), request_id="=HYPERLINK(1)", model="-1+2",
                      prompt_tokens=-1, endpoint="@x", status="ok", deployment="\tx", provider="+p")
        rec = UsageRecord(**{f: values.get(f) for f in UsageRecord.__struct_fields__})  # type: ignore[arg-type]
        row = dict(zip(CSV_COLUMNS, csv_row(rec), strict=True))
        assert row["request_id"] == "'=HYPERLINK(1)" and row["model"] == "'-1+2" and row["endpoint"] == "'@x"
        assert row["deployment"] == "'\tx" and row["provider"] == "'+p"
        assert row["prompt_tokens"] == "-1" and row["status"] == "ok"  # numbers and plain text as they are
        assert row["occurred_at"] == "2026-12-01T00:00:00+00:00"
