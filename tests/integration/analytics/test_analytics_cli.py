"""``aiaas analytics rebuild|reprice`` and the ``prices:`` section of ``aiaas apply -f``, as real processes.

A rebuild from the ledger equals the incrementally kept projections (and repairs damaged ones); a reprice
after a late price re-rates history; the price section is applied idempotently, and bad input changes
nothing.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text

from aiaas.analytics import service as analytics_service
from aiaas.analytics.schemas import PriceCreate
from aiaas.analytics.service import price_book
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.usage import service as usage_service
from support import env_of
from usage_support import completion

T0 = dt.datetime(2026, 9, 14, 10, 0, tzinfo=dt.UTC)


def _aiaas(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiaas", *args], env=env_of(settings), capture_output=True,
                          text=True, timeout=120, check=False)


async def _buckets(db: Database, org: str) -> list[Any]:
    async with db.unit_of_work("analytics") as s:
        return list((await s.execute(text(
            "SELECT 'm', bucket_start, model, key_id, status, requests, prompt_tokens, cost_usd, unpriced_requests "
            "FROM analytics.usage_minute WHERE org_id = :o UNION ALL "
            "SELECT 'd', bucket_start, model, key_id, status, requests, prompt_tokens, cost_usd, unpriced_requests "
            "FROM analytics.usage_day WHERE org_id = :o ORDER BY 1, 2, 3, 4, 5"), {"o": org})).all())


class TestRebuildAndReprice:
    async def test_rebuild_equals_incremental_and_reprice_rerates(self, settings: Settings) -> None:
        db = Database(settings, role="test")
        org, model = str(uuid.uuid4()), f"cli-{uuid.uuid4().hex[:8]}"
        try:
            async with db.unit_of_work("analytics") as s:
                await price_book.add_price(s, PriceCreate(model=model, input_per_mtok=Decimal("1"),
                                                          output_per_mtok=Decimal("2"), effective_from=T0))
            events = [completion(org, model=model, prompt=10 + i, completion_tokens=i,
                                 occurred_at=T0 + dt.timedelta(hours=5 * i, minutes=i)) for i in range(20)]
            async with db.unit_of_work("usage") as s:
                await usage_service.record_completions(s, events)
            async with db.unit_of_work("analytics") as s:
                await analytics_service.apply_events(s, events)
            incremental = await _buckets(db, org)
            assert sum(r[5] for r in incremental if r[0] == "d") == 20

            # Damage the projections: drop a day and double another; the rebuild puts them right.
            async with db.unit_of_work("analytics") as s:
                await s.execute(text("DELETE FROM analytics.usage_day WHERE org_id = :o AND bucket_start = :d"),
                                {"o": org, "d": T0.replace(hour=0)})
                await s.execute(text("UPDATE analytics.usage_minute SET requests = requests * 2 WHERE org_id = :o"),
                                {"o": org})
            r = _aiaas(settings, "analytics", "rebuild", "--org", org)
            assert r.returncode == 0, r.stderr
            assert "20 request(s)" in r.stdout
            assert await _buckets(db, org) == incremental

            # A correction from the second day on: reprice re-rates from there and leaves the first day.
            second_day = (T0 + dt.timedelta(days=1)).replace(hour=0)
            async with db.unit_of_work("analytics") as s:
                await price_book.add_price(s, PriceCreate(model=model, input_per_mtok=Decimal("3"),
                                                          output_per_mtok=Decimal("4"), effective_from=second_day))
            r = _aiaas(settings, "analytics", "reprice", "--from", second_day.date().isoformat(), "--org", org)
            assert r.returncode == 0, r.stderr
            after = await _buckets(db, org)
            assert {row[1] for row in after if row[0] == "d"} == {e.occurred_at.replace(hour=0, minute=0)
                                                                   for e in events}
            expected = sum((Decimal(e.prompt_tokens) * (3 if e.occurred_at >= second_day else 1)
                            + Decimal(e.completion_tokens) * (4 if e.occurred_at >= second_day else 2))
                           / 1_000_000 for e in events)
            assert sum(Decimal(row[7]) for row in after if row[0] == "d") == expected
            assert sum(Decimal(row[7]) for row in after if row[0] == "m") == expected

            # Running it again changes nothing.
            before = await _buckets(db, org)
            assert _aiaas(settings, "analytics", "reprice", "--from", second_day.date().isoformat(),
                          "--org", org).returncode == 0
            assert await _buckets(db, org) == before
        finally:
            await db.dispose()

    def test_bad_arguments_are_refused(self, settings: Settings) -> None:
        for args, words in ((["reprice"], "needs --from"), (["rebuild", "--from", "yesterday"], "not an ISO date"),
                            (["rebuild", "--org", "acme"], "not an org id")):
            r = _aiaas(settings, "analytics", *args)
            assert r.returncode == 2 and words in r.stderr, (args, r.stderr)


class TestPricesInTheCatalogFile:
    async def test_applied_once_and_bad_input_changes_nothing(self, settings: Settings, tmp_path: Path) -> None:
        model = f"file-{uuid.uuid4().hex[:8]}"
        good = tmp_path / "catalog.yaml"
        good.write_text(f"prices:\n  - model: {model}\n    input_per_mtok: 0.15\n    cached_input_per_mtok: 0.075\n"
                        f"    output_per_mtok: 0.6\n    effective_from: 2026-11-01T00:00:00Z\n")
        dry = _aiaas(settings, "apply", "-f", str(good), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"+ price {model}" in dry.stdout and "dry run" in dry.stdout
        db = Database(settings, role="test")
        try:
            async with db.unit_of_work("analytics") as s:
                assert await price_book.list_prices(s, model=model) == []
            assert _aiaas(settings, "apply", "-f", str(good)).returncode == 0
            again = _aiaas(settings, "apply", "-f", str(good))
            assert again.returncode == 0 and "already matches" in again.stdout
            async with db.unit_of_work("analytics") as s:
                (price,) = await price_book.list_prices(s, model=model)
            assert (price.input_per_mtok, price.cached_input_per_mtok, price.output_per_mtok) == ("0.15", "0.075",
                                                                                                  "0.6")

            for body, words in (("prices:\n  - model: x\n    input_per_mtok: 1\n    output_per_mtok: 1\n",
                                 "effective_from"),
                                (f"prices:\n  - model: {model}\n    input_per_mtok: -1\n    output_per_mtok: 1\n"
                                 "    effective_from: 2026-12-01T00:00:00Z\n", "input_per_mtok"),
                                ("prices:\n  - model: x\n    input_per_mtok: 1\n    output_per_mtok: 1\n"
                                 "    effective_from: 2026-12-01T00:00:00Z\n    api_key: sk-x\n", "api_key")):
                bad = tmp_path / "bad.yaml"
                bad.write_text(body)
                r = _aiaas(settings, "apply", "-f", str(bad))
                assert r.returncode == 2 and words in r.stderr, (body, r.stderr)
            async with db.unit_of_work("analytics") as s:
                assert len(await price_book.list_prices(s, model=model)) == 1
        finally:
            await db.dispose()
