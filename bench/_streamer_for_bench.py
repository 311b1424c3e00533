"""Runs the streamer for bench/gateway_overhead.py: migrates and seeds a bench database, then serves.

Until API-key authentication is merged, requests carry a fixed principal (the same seam the tests use);
switch to a real key when it is.
"""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec
import uvicorn

from aiaas.entrypoints import streamer
from aiaas.entrypoints.bootstrap import Container
from aiaas.entrypoints.migrate import migrate
from aiaas.inference.schemas import DeploymentSpec, ModelSpec, ModelUpdate
from aiaas.inference.service import catalog
from aiaas.kernel.config import load_settings
from aiaas.kernel.errors import Conflict
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole, Principal

PRINCIPAL = Principal(kind="api_key", user_id="0190a000-0000-7000-8000-0000000000a1",
                      org_id="0190a000-0000-7000-8000-000000000001", key_id="0190a000-0000-7000-8000-0000000000b1",
                      org_role=OrgRole.MEMBER)


def principal() -> Principal:
    return PRINCIPAL


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
    port, upstream = int(sys.argv[1]), sys.argv[2]
    settings = msgspec.structs.replace(load_settings(), local_model_enabled=False)
    migrate(settings)
    asyncio.run(seed(settings, upstream))
    container = Container(settings, role="streamer")
    if os.environ.get("BENCH_NO_EVENTS"):  # to measure what publishing costs the loop
        container.publisher.emit = lambda *_: None  # type: ignore[method-assign]
    app = RequestContext(streamer.create_app(container, principal_provider=principal), role="streamer",
                         access_log=False)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_config=None,
                access_log=False)


if __name__ == "__main__":
    main()
