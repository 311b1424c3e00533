"""Prepares a streamer for bench/gateway_overhead.py: migrates the bench database, puts the model
``bench/fake`` (pointing at the fake upstream) in the catalog and issues a real API key, written to the file
named by the second argument. The streamer itself is then run as an operator runs it (``aiaas serve``).

Only long-standing service calls are used, so a checkout of an earlier revision can run this file too
(``--baseline`` of gateway_overhead.py runs it with that checkout's code).

    python bench/_seed_for_bench.py UPSTREAM_BASE_URL KEY_FILE
"""

from __future__ import annotations

import asyncio
import sys

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
    with open(key_file, "w") as f:
        f.write(made.api_key or "")


if __name__ == "__main__":
    main()
