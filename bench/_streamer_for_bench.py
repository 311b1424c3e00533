"""Runs the streamer for bench/gateway_overhead.py: migrates and seeds a bench database, issues a real
API key (written to the file named by the third argument), then serves with key auth and RBAC on."""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec
import uvicorn

from aiaas.entrypoints import streamer
from aiaas.entrypoints.bootstrap import Container
from aiaas.entrypoints.migrate import migrate
from aiaas.entrypoints.setup import bootstrap
from aiaas.inference.schemas import DeploymentSpec, ModelSpec, ModelUpdate
from aiaas.inference.service import catalog
from aiaas.kernel.config import load_settings
from aiaas.kernel.errors import Conflict
from aiaas.kernel.http import RequestContext


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
    port, upstream, key_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    settings = msgspec.structs.replace(load_settings(), local_model_enabled=False)
    migrate(settings)
    asyncio.run(seed(settings, upstream))
    made = asyncio.run(bootstrap(settings, email="bench@example.com", password="bench-password-1234",  # noqa: S106
                                 org_name="bench", new_key=True))
    with open(key_file, "w") as f:
        f.write(made.api_key or "")
    container = Container(settings, role="streamer")
    if os.environ.get("BENCH_NO_EVENTS"):  # to measure what publishing costs the loop
        container.publisher.emit = lambda *_: None  # type: ignore[method-assign]
    app = RequestContext(streamer.create_app(container), role="streamer", access_log=settings.access_log)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_config=None,
                access_log=False)


if __name__ == "__main__":
    main()
