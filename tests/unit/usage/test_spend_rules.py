"""Spend limits' arithmetic: money units, which price a request reserves and is charged with, the copy of
the price book admission reads, and the policy's cached form."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.analytics.service import price_book
from aiaas.inference.schemas import CatalogModel, Deployment, ModelPrice
from aiaas.inference.service import pricing
from aiaas.kernel import money
from aiaas.kernel.errors import BadRequest
from aiaas.usage.schemas import UsagePolicy
from aiaas.usage.service import admission
from aiaas.usage.service.policies import encode_policy

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


def _dep(name: str, *, enabled: bool = True) -> Deployment:
    return Deployment(id=name, name=name, provider="openai", upstream_model="m", base_url="http://127.0.0.1:9",
                      credential_ref=None, weight=1, priority=0, connect_timeout=1, first_byte_timeout=1,
                      chunk_timeout=1, total_timeout=1, context_length=None, enabled=enabled)


def _price(id_: int, inp: str, out: str, *, deployment: str = "", cached: str | None = None,
           at: dt.datetime = T0) -> ModelPrice:
    return ModelPrice(id=id_, deployment=deployment, input_per_mtok=Decimal(inp), output_per_mtok=Decimal(out),
                      cached_input_per_mtok=None if cached is None else Decimal(cached), effective_from=at)


def _model(prices: list[ModelPrice], deployments: list[Deployment] | None = None) -> CatalogModel:
    return CatalogModel(id="1", name="m", owned_by="x", capabilities=["chat"], context_length=None, created=0,
                        managed_by="api", deployments=deployments or [_dep("a"), _dep("b")],
                        prices=sorted(prices, key=lambda p: (p.effective_from, p.id), reverse=True))


class TestMoney:
    def test_units(self) -> None:
        assert money.pico_usd_per_token(Decimal("0.15")) == 150_000
        assert money.pico_usd_per_token(Decimal("0.000000001")) == 1  # finer than a pico-USD: rounded up
        assert money.pico_usd_per_token(Decimal(1_000_000)) == 10**12
        assert money.nano_usd_ceil(Decimal("0.0000000001")) == 1
        assert money.nano_usd_ceil(Decimal("1.5")) == 1_500_000_000
        assert money.nano_usd_ceil(Decimal(0)) == 0
        assert money.usd_text(1_500_000_000) == "1.5"
        assert money.usd_text(1) == "0.000000001"
        assert money.usd_text(0) == "0"
        assert money.usd_text(9_000_000 * 10**9) == "9000000"

    def test_cost_prices_cached_tokens_apart(self) -> None:
        c = money.cost_usd(input_per_mtok=Decimal("2.5"), cached_input_per_mtok=Decimal("1.25"),
                           output_per_mtok=Decimal(10), prompt_tokens=100, cached_prompt_tokens=40,
                           completion_tokens=7)
        assert c == (60 * Decimal("2.5") + 40 * Decimal("1.25") + 70) / 1_000_000
        # Nonsense counts from an upstream cannot make a cost negative.
        assert money.cost_usd(input_per_mtok=Decimal(1), cached_input_per_mtok=None, output_per_mtok=Decimal(1),
                              prompt_tokens=-5, cached_prompt_tokens=9, completion_tokens=-1) == 0

    def test_the_largest_limit_is_exact_in_a_double(self) -> None:
        assert money.nano_usd_ceil(money.MAX_SPEND_LIMIT_USD) < 2**53


class TestWhichPrice:
    def test_reserves_at_the_dearest_deployment_and_the_dearer_input_price(self) -> None:
        m = _model([_price(1, "1", "2"), _price(2, "3", "1", deployment="b", cached="5")])
        # a: model price (1, 2); b: its own (max(3, cached 5), 1) -> per token the max of each.
        assert pricing.reservation_rate(m, NOW) == (5_000_000, 2_000_000)
        assert pricing.price_of(m, "a", NOW).id == 1  # type: ignore[union-attr]
        assert pricing.price_of(m, "b", NOW).id == 2  # type: ignore[union-attr]

    def test_future_prices_and_disabled_deployments_do_not_count(self) -> None:
        later = NOW + dt.timedelta(days=1)
        m = _model([_price(1, "1", "1"), _price(2, "100", "100", at=later),
                    _price(3, "50", "50", deployment="off")],
                   deployments=[_dep("a"), _dep("off", enabled=False)])
        assert pricing.reservation_rate(m, NOW) == (1_000_000, 1_000_000)
        assert pricing.reservation_rate(m, later) == (100_000_000, 100_000_000)

    def test_unpriced_model_reserves_and_charges_nothing(self) -> None:
        m = _model([])
        assert pricing.reservation_rate(m, NOW) is None
        assert pricing.price_of(m, "a", NOW) is None
        assert pricing.charge(None, prompt_tokens=10, cached_prompt_tokens=0, completion_tokens=10) == 0
        only_b = _model([_price(1, "1", "1", deployment="b")])
        assert pricing.price_of(only_b, "a", NOW) is None  # a has no price of its own and the model none

    @given(prompt=st.integers(0, 200_000), cached=st.integers(0, 200_000), completion=st.integers(0, 100_000),
           inp=st.decimals(0, 1000, places=9), out=st.decimals(0, 1000, places=9),
           cached_in=st.none() | st.decimals(0, 1000, places=9))
    def test_the_charge_never_exceeds_the_reservation(self, prompt: int, cached: int, completion: int,
                                                      inp: Decimal, out: Decimal, cached_in: Decimal | None) -> None:
        p = ModelPrice(id=1, input_per_mtok=inp, output_per_mtok=out, cached_input_per_mtok=cached_in,
                       effective_from=T0)
        rate = pricing.reservation_rate(_model([p]), NOW)
        assert rate is not None
        reserved = -(-(prompt * rate[0] + completion * rate[1]) // 1000)  # what the script reserves, exactly
        charged = pricing.charge(p, prompt_tokens=prompt, cached_prompt_tokens=cached, completion_tokens=completion)
        assert 0 <= charged <= reserved
        exact = money.cost_usd(input_per_mtok=inp, cached_input_per_mtok=cached_in, output_per_mtok=out,
                               prompt_tokens=prompt, cached_prompt_tokens=cached, completion_tokens=completion)
        assert Decimal(charged) / 10**9 - exact < Decimal("1e-9")  # at most a nano-USD above the exact cost


class TestAdmissionSchedule:
    def test_keeps_what_is_in_force_and_what_comes_later(self) -> None:
        def row(id_: int, days: int, deployment: str | None = None) -> SimpleNamespace:
            return SimpleNamespace(id=id_, model="m", deployment=deployment, input_per_mtok=Decimal(id_),
                                   cached_input_per_mtok=None, output_per_mtok=Decimal(1),
                                   effective_from=NOW + dt.timedelta(days=days))

        rows = [row(1, -30), row(2, -1), row(3, 5), row(4, -40, "d"), row(5, -2, "d"),
                SimpleNamespace(**{**vars(row(6, -1)), "model": "n"})]
        out = price_book.admission_schedule(rows, now=NOW)  # type: ignore[arg-type]
        assert [p.id for p in out["m"]] == [3, 2, 5]  # 1 and 4 were superseded and never apply again
        assert [p.deployment for p in out["m"]] == ["", "", "d"]
        assert [p.id for p in out["n"]] == [6]


class TestPolicy:
    def test_cached_policy_carries_the_limit_in_nano_usd(self) -> None:
        raw = json.loads(encode_policy(UsagePolicy(org_id="o", monthly_spend_limit_usd="12.345")))
        assert raw["spend_limit_nusd"] == 12_345_000_000 and raw["monthly_spend_limit_usd"] == "12.345"
        assert json.loads(encode_policy(UsagePolicy(org_id="o")))["spend_limit_nusd"] is None

    @pytest.mark.parametrize("bad", ["-1", "9000000.000000001", "NaN", "Infinity", "0.0000000001"])
    def test_out_of_range_limits_are_a_clear_400(self, bad: str) -> None:
        with pytest.raises(BadRequest) as exc:
            money.check_spend_limit(Decimal(bad))
        assert exc.value.param == "monthly_spend_limit_usd"

    def test_in_range_limits_pass(self) -> None:
        for ok in (None, Decimal(0), Decimal("0.000000001"), money.MAX_SPEND_LIMIT_USD):
            money.check_spend_limit(ok)

    def test_spend_rate_out_of_range_is_refused_before_redis(self) -> None:
        assert admission._spend_rate(None) == (-1, -1)
        assert admission._spend_rate((0, 10**12)) == (0, 10**12)
        for bad in ((-1, 0), (0, 10**12 + 1)):
            with pytest.raises(ValueError):
                admission._spend_rate(bad)
