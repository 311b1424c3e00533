"""Rules of the read side without a database: the sketch's error bound, merging, prices, bucket windows."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.analytics import sketch
from aiaas.analytics.service import openai_api, queries
from aiaas.analytics.service.prices import PriceBook, PriceEntry, cost
from aiaas.analytics.service.projection import floor
from aiaas.kernel.errors import BadRequest

values = st.lists(st.floats(min_value=0.002, max_value=3_600_000, allow_nan=False), min_size=1, max_size=300)
T = dt.datetime(2026, 11, 2, 13, 47, 31, 123456, tzinfo=dt.UTC)


class TestSketch:
    @given(xs=values, q=st.floats(0, 1))
    def test_every_quantile_is_within_the_stated_error(self, xs: list[float], q: float) -> None:
        exact = sorted(xs)[math.floor(q * (len(xs) - 1))]
        got = sketch.quantile(sketch.of(xs), q)
        assert got is not None and abs(got - exact) <= sketch.ALPHA * exact * (1 + 1e-9)

    @given(a=values, b=values, c=values)
    def test_merging_is_the_histogram_of_all_values_in_any_grouping(self, a: list[float], b: list[float],
                                                                    c: list[float]) -> None:
        ha, hb, hc = sketch.of(a), sketch.of(b), sketch.of(c)
        assert sketch.merge(sketch.merge(ha, hb), hc) == sketch.merge(hc, sketch.merge(hb, ha)) == sketch.of(a + b + c)

    def test_stored_form_round_trips_and_tiny_values_share_the_lowest_bucket(self) -> None:
        h = sketch.of([0.0, -1.0, float("nan"), 1e-9, 5.0])
        assert sketch.from_json(sketch.to_json(h)) == h
        assert sketch.count(h) == 5 and len(h) == 2
        assert sketch.quantile({}, 0.5) is None
        with pytest.raises(ValueError, match="between 0 and 1"):
            sketch.quantile(h, 1.5)


def _entry(i: int, model: str, at: dt.datetime, deployment: str = "", **prices: str) -> PriceEntry:
    p = {"input_per_mtok": "1", "output_per_mtok": "2", "cached_input_per_mtok": None, **prices}
    return PriceEntry(id=i, model=model, deployment=deployment, effective_from=at,
                      input_per_mtok=Decimal(p["input_per_mtok"]), output_per_mtok=Decimal(p["output_per_mtok"]),
                      cached_input_per_mtok=None if p["cached_input_per_mtok"] is None
                      else Decimal(p["cached_input_per_mtok"]))


class TestPriceBook:
    def test_the_entry_in_force_wins_and_a_deployments_own_entry_over_the_models(self) -> None:
        day = dt.timedelta(days=1)
        book = PriceBook([_entry(1, "m", T - 2 * day), _entry(2, "m", T), _entry(3, "m", T, input_per_mtok="9"),
                          _entry(4, "m", T - day, deployment="d1"), _entry(5, "other", T - day)])
        assert book.price_for("m", None, T - day).id == 1  # type: ignore[union-attr]
        assert book.price_for("m", None, T).id == 3  # type: ignore[union-attr]  # same time: the later entry
        assert book.price_for("m", "d1", T).id == 4  # type: ignore[union-attr]
        assert book.price_for("m", "d2", T).id == 3  # type: ignore[union-attr]
        assert book.price_for("m", None, T - 3 * day) is None  # before any price: unpriced, not free
        assert book.price_for("nope", None, T) is None

    def test_cost_is_exact_and_never_goes_negative(self) -> None:
        e = _entry(1, "m", T, input_per_mtok="2.5", cached_input_per_mtok="1.25", output_per_mtok="10")
        assert cost(e, prompt_tokens=1000, cached_prompt_tokens=400, completion_tokens=50) == Decimal("0.0025")
        assert cost(e, prompt_tokens=10, cached_prompt_tokens=99, completion_tokens=-3) == Decimal("0.0000125")
        no_cache_price = _entry(2, "m", T, input_per_mtok="3")
        assert cost(no_cache_price, prompt_tokens=1, cached_prompt_tokens=1, completion_tokens=0) == Decimal("0.000003")


class TestBuckets:
    def test_floors(self) -> None:
        assert floor(T, "minute") == T.replace(second=0, microsecond=0)
        assert floor(T, "hour") == T.replace(minute=0, second=0, microsecond=0)
        assert floor(T.astimezone(dt.timezone(dt.timedelta(hours=-5))), "day") == T.replace(hour=0, minute=0, second=0,
                                                                                             microsecond=0)
        with pytest.raises(ValueError, match="granularity"):
            floor(T, "week")

    def test_the_coarsest_table_that_fits_both_ends(self) -> None:
        day = floor(T, "day")
        assert queries.coarsest(day, day + dt.timedelta(days=30)) == "day"
        assert queries.coarsest(day + dt.timedelta(hours=3), day + dt.timedelta(days=1)) == "hour"
        assert queries.coarsest(T, day + dt.timedelta(days=1)) == "minute"

    def test_instants_past_year_9000_are_refused_not_a_500(self) -> None:
        far = dt.datetime(9999, 12, 31, 23, tzinfo=dt.UTC)
        with pytest.raises(BadRequest) as info:
            queries.check_range(far, far + dt.timedelta(minutes=30))
        assert info.value.param == "start"

    def test_group_names_and_filters(self) -> None:
        assert queries.columns_of(["api_key", "model", "api_key"]) == ["key_id", "model"]
        with pytest.raises(BadRequest):
            queries.columns_of(["colour"])
        with pytest.raises(BadRequest):
            queries.filter_values("key_id", ["not-a-uuid"], "api_key")
        assert queries.filter_values("deployment", ["", "d1"], "deployment") == ["", "d1"]


class TestOpenAIWindow:
    def _w(self, **kw: object) -> openai_api._Window:
        args: dict[str, object] = {"start_time": int(T.timestamp()), "end_time": None, "width": "1d",
                                   "limit": None, "limits": openai_api.LIMITS["1d"], "page": None,
                                   "now": T + dt.timedelta(days=30)}
        args.update(kw)
        return openai_api._Window(**args)  # type: ignore[arg-type]

    def test_buckets_start_on_utc_boundaries_and_page_on(self) -> None:
        w = self._w()
        day0 = int(floor(T, "day").timestamp())
        assert w.starts == [day0 + 86400 * i for i in range(7)]  # OpenAI's default: 7 daily buckets
        assert w.next_page is not None
        nxt = self._w(page=w.next_page)
        assert nxt.starts[0] == day0 + 7 * 86400

    @pytest.mark.parametrize(("kw", "param"), [
        ({"limit": 0}, "limit"), ({"limit": 32}, "limit"), ({"start_time": -1}, "start_time"),
        ({"end_time": int(T.timestamp()) - 5}, "end_time"), ({"page": "!!"}, "page"),
        ({"page": "MTIz"}, "page"), ({"start_time": 10**12}, "start_time"),
        ({"start_time": 253402214400, "end_time": 10**15}, "start_time"), ({"end_time": 10**15}, "end_time"),
    ])
    def test_bad_windows(self, kw: dict[str, object], param: str) -> None:
        with pytest.raises(BadRequest) as info:
            self._w(**kw)
        assert info.value.param == param


class TestReportedQuantiles:
    @pytest.mark.parametrize("ms", [0.015625, 0.0011, 0.123456, 7.5, 123_456.789])
    def test_stay_within_the_sketch_error_at_any_magnitude(self, ms: float) -> None:
        q = queries._quantiles({sketch.bucket(ms): 3})
        for got in (q.p50, q.p95, q.p99):
            assert got is not None and abs(got - ms) <= sketch.ALPHA * ms * 1.000001, (ms, got)
