"""Per-request cost of resolving an API key to a principal: warm (Redis) vs cold (PostgreSQL + fill).

Usage: ``python bench/auth_resolution.py [--n 2000]`` with ``AIAAS_*`` pointing at a migrated database
(``aiaas migrate``) and a Redis. Creates a throwaway user, org and key under a unique Redis prefix and
prints figures only; warm and cold rounds are interleaved so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
import uuid

import msgspec

from aiaas.auth import api as auth_api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import load_settings
from aiaas.kernel.security import OrgRole, Principal, sha256_hex
from aiaas.orgs import api as orgs_api


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main(n: int) -> None:
    settings = msgspec.structs.replace(load_settings(), redis_prefix=f"bench-{uuid.uuid4().hex[:8]}:")
    c = Container(settings, role="streamer")
    try:
        async with c.db.unit_of_work("auth") as s:
            user = await auth_api.create_user(s, email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
                                              password=secrets.token_urlsafe(16), rounds=12, actor=None)
        async with c.db.unit_of_work("orgs") as s:
            org = await orgs_api.create_org(s, name="bench", owner_id=user.id, actor=None)
        owner = Principal(kind="session", user_id=user.id, org_id=org.id, org_role=OrgRole.OWNER)
        async with c.db.unit_of_work("auth") as s:
            created = await auth_api.create_key(s, org_id=org.id, actor=owner,
                                                data=auth_api.KeyCreate(name="bench"))
        resolver = c.authenticator
        token, token_hash = created.key, sha256_hex(created.key)
        assert await resolver.authenticate(token) is not None
        warm: list[float] = []
        cold: list[float] = []
        for i in range(n):
            if i % 10 == 0:  # one cold round per ten warm ones
                await c.principal_cache.drop(token_hash)
                t = time.perf_counter()
                await resolver.authenticate(token)
                cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            await resolver.authenticate(token)
            warm.append(time.perf_counter() - t)
        for name, xs in (("warm (1 Redis GET)", warm), ("cold (PostgreSQL + cache fill)", cold)):
            print(f"{name:32s} n={len(xs):5d}  p50={_pct(xs, .5) * 1e6:8.1f} us  p99={_pct(xs, .99) * 1e6:8.1f} us"
                  f"  mean={statistics.fmean(xs) * 1e6:8.1f} us")
        print(f"cold/warm p50 ratio: {_pct(cold, .5) / _pct(warm, .5):.1f}x")
        await c.principal_cache.drop(token_hash)
    finally:
        await c.last_used.flush()
        async for key in c.redis.scan_iter(match=f"{settings.redis_prefix}*"):
            await c.redis.delete(key)
        await c.redis.aclose()
        await c.db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    asyncio.run(main(parser.parse_args().n))
