"""Prepares a streamer for bench/gateway_overhead.py: migrates the bench database, puts the model
``bench/fake`` (pointing at the fake upstream) in the catalog and issues a real API key, written to the file
named by the second argument. The streamer itself is then run as an operator runs it (``aiaas serve``).

Where the code has them, the model gets a price and the org a monthly spend limit far above what the
bench spends, so every request goes through the priced admission and charge. Otherwise only long-standing
service calls are used, so a checkout of an earlier revision can run this file too (``--baseline`` of
gateway_overhead.py runs it with that checkout's code, without prices).

    python bench/_seed_for_bench.py UPSTREAM_BASE_URL KEY_FILE
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal

import msgspec

from aiaas.entrypoints.bootstrap import Container
from aiaas.entrypoints.migrate import migrate
from aiaas.entrypoints.setup import bootstrap
from aiaas.inference.schemas import DeploymentSpec, ModelSpec, ModelUpdate
from aiaas.inference.service import catalog
from aiaas.kernel.config import load_settings
from aiaas.kernel.errors import Conflict


async def seed(settings: object, upstream: str) -> None:
    c = Container(settings, role="api")  # type: ignore[arg-type]
    spec = ModelSpec(name="bench/fake", capabilities=["chat"], deployments=[
        DeploymentSpec(name="fake", upstream_model="fake", base_url=upstream)])
    try:
        async with c.db.unit_of_work("inference") as s:
            try:
                await catalog.create_model(session=s, spec=spec)
            except Conflict:
                await catalog.replace_model(session=s, name=spec.name, update=ModelUpdate(
                    capabilities=["chat"], deployments=spec.deployments))
        await c.catalog.refresh_models([spec.name])
        await _price(c, spec.name)
    finally:
        await c.redis.aclose()
        await c.db.dispose()


async def _price(c: Container, model: str) -> None:
    try:
        from aiaas.analytics import api as analytics_api
        from aiaas.analytics.schemas import PriceCreate
        from aiaas.analytics.service import price_book
    except ImportError:
        return
    if not hasattr(analytics_api, "sync_admission_prices"):
        return  # an earlier revision: no spend limits
    async with c.db.unit_of_work("analytics") as s:
        if not await price_book.list_prices(s, model=model):
            await price_book.add_price(s, PriceCreate(model=model, input_per_mtok=Decimal("0.15"),
                                                      output_per_mtok=Decimal("0.6")))
    await analytics_api.sync_admission_prices(c.session_factory("analytics"), c.inference_session, c.catalog)


async def spend_limit(settings: object, org_id: str) -> None:
    from aiaas.usage import service as usage_service
    from aiaas.usage.schemas import UsagePolicyUpdate

    if "monthly_spend_limit_usd" not in UsagePolicyUpdate.__struct_fields__:
        return
    c = Container(settings, role="api")  # type: ignore[arg-type]
    try:
        async with c.db.unit_of_work("usage") as s:
            await usage_service.put_policy(s, org_id, UsagePolicyUpdate(monthly_spend_limit_usd=Decimal(1_000_000)))
        await c.usage_policies.invalidate(org_id)
    finally:
        await c.redis.aclose()
        await c.db.dispose()


def main() -> None:
    upstream, key_file = sys.argv[1], sys.argv[2]
    settings = msgspec.structs.replace(load_settings(), local_model_enabled=False)
    migrate(settings)
    asyncio.run(seed(settings, upstream))
    made = asyncio.run(bootstrap(settings, email="bench@example.com", password="bench-password-1234",  # noqa: S106
                                 org_name="bench", new_key=True))
    asyncio.run(spend_limit(settings, made.org_id))
    with open(key_file, "w") as f:
        f.write(made.api_key or "")


if __name__ == "__main__":
    main()
