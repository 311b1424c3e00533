"""PostgreSQL refusing connections: a request that needs it answers 503 to retry, never 500.

The api runs in-process against the real Redis and RabbitMQ, with its database URL on a loopback port
where nothing listens (PostgreSQL down, as the client sees it). An API key the principal cache does not
know must be resolved from the database, so authenticating it needs PostgreSQL.
"""

from __future__ import annotations

import secrets

import msgspec
from litestar.testing import AsyncTestClient

from aiaas.entrypoints import api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from support import free_port


async def test_a_request_that_needs_postgres_gets_a_503(settings: Settings) -> None:
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/aiaas"
    s = msgspec.structs.replace(settings, database_url=down)
    app = RequestContext(api.create_app(Container(s, role="api")), role="test")
    key = "sk-" + secrets.token_urlsafe(32)[:43]
    async with AsyncTestClient(app=app) as client:
        r = await client.get("/v1/users/me", headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"] == "2"
    # asyncpg surfaces a refused connect as the socket's own error, which names no store
    assert r.json()["code"] == "dependency_unavailable"
