"""Metering figures: publish overhead per request, admission cost, and worker ledger ingest rate.

Runs against the local PostgreSQL, Redis and RabbitMQ (AIAAS_* settings or the defaults) in a
throw-away database, Redis prefix and broker prefix; prints figures, asserts nothing.

    python bench/metering.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import msgspec


async def main(n_events: int) -> None:
    from aiaas.entrypoints.bootstrap import Container
    from aiaas.entrypoints.migrate import migrate
    from aiaas.entrypoints.worker import ConsumerRuntime
    from aiaas.inference.events import CompletionRecorded
    from aiaas.kernel.config import load_settings
    from aiaas.kernel.security import Principal
    from aiaas.usage import api as usage_api
    from aiaas.usage.schemas import UsagePolicy

    run = uuid.uuid4().hex[:8]
    base = load_settings()
    url = base.database_url.rsplit("/", 1)[0] + f"/aiaas_bench_{run}"
    settings = msgspec.structs.replace(base, database_url=url, redis_prefix=f"bench-{run}:",
                                       broker_prefix=f"bench-{run}.", env="test")
    await asyncio.to_thread(migrate, settings)
    org = str(uuid.uuid4())

    def event(i: int) -> CompletionRecorded:
        return CompletionRecorded(request_id=f"req_{i}", org_id=org, user_id=None, key_id=None,
                                  endpoint="chat.completions", model="m", deployment="d", provider="p",
                                  prompt_tokens=10, completion_tokens=20, total_tokens=30, ttfb_ms=5.0,
                                  latency_ms=50.0, status="ok", http_status=200)

    streamer = Container(settings, role="streamer")
    await streamer.start()
    worker = Container(settings, role="worker")
    await worker.start()
    # Declare the queue before publishing, then let the backlog build with the consumer stopped.
    conn = await worker.broker.connect()
    ch = await conn.channel()
    await worker.broker.declare_subscription(worker.subscriptions()[0], ch)

    events = [event(i) for i in range(n_events)]
    t0 = time.perf_counter_ns()
    for ev in events:
        streamer.publisher.emit("inference", ev)
    emit_ns = (time.perf_counter_ns() - t0) / n_events
    t0 = time.perf_counter()
    await streamer.publisher.flush(timeout=600)
    confirm_s = time.perf_counter() - t0
    print(f"publish: emit() {emit_ns / 1000:.2f} µs per request on the request path; "
          f"{n_events / confirm_s:,.0f} events/s confirmed by RabbitMQ in the background")

    runtime = ConsumerRuntime(worker)
    t0 = time.perf_counter()
    await runtime.start()
    from sqlalchemy import text

    while True:
        async with worker.db.unit_of_work("usage") as s:
            n = (await s.execute(text("SELECT count(*) FROM usage.requests"))).scalar_one()
        if n >= n_events:
            break
        await asyncio.sleep(0.05)
    ingest_s = time.perf_counter() - t0
    from aiaas.usage.consumers import BATCH

    batches = [s.value for m in BATCH.collect() for s in m.samples if s.name.endswith("_count")]
    print(f"worker: {n_events / ingest_s:,.0f} events/s into the ledger (batched inserts + Redis settlement), "
          f"{n_events / max(batches[0], 1):.0f} events per transaction")

    p = Principal(kind="api_key", user_id=None, org_id=org, key_id=str(uuid.uuid4()), rpm_limit=10**9,
                  tpm_limit=10**12)
    policy = UsagePolicy(org_id=org, rpm_limit=10**9, tpm_limit=10**12, monthly_token_budget=10**15)
    lat = []
    for _ in range(2000):
        t = time.perf_counter_ns()
        await usage_api.admit(streamer.redis, streamer.keys, principal=p, model="m", estimated_prompt_tokens=100,
                              max_tokens=100, policy=policy)
        lat.append((time.perf_counter_ns() - t) / 1000)
    lat.sort()
    print(f"admit: p50 {statistics.median(lat):.0f} µs, p99 {lat[int(len(lat) * 0.99)]:.0f} µs "
          "(one Lua call: key + org windows, org + key quota; policy passed in)")

    # The streamer's path: the policy comes from its Redis cache. Before: a GET, then the script; now the
    # script reads the cache itself (one call). Both are measured side by side, interleaved.
    store = streamer.usage_policies
    await store.store(policy)
    two, one = [], []
    for _ in range(2000):
        t = time.perf_counter_ns()
        got = await store.get(org)
        await usage_api.admit(streamer.redis, streamer.keys, principal=p, model="m", estimated_prompt_tokens=100,
                              max_tokens=100, policy=got)
        two.append((time.perf_counter_ns() - t) / 1000)
        t = time.perf_counter_ns()
        await usage_api.admit(streamer.redis, streamer.keys, principal=p, model="m", estimated_prompt_tokens=100,
                              max_tokens=100, policies=store)
        one.append((time.perf_counter_ns() - t) / 1000)
    for label, xs in (("policy GET + script (before)", two), ("script reads the policy (now)", one)):
        xs.sort()
        print(f"admission with a cached policy, {label}: p50 {statistics.median(xs):.0f} µs, "
              f"p99 {xs[int(len(xs) * 0.99)]:.0f} µs")

    await runtime.stop()
    await ch.close()
    for c in (streamer, worker):
        await c.stop()
    import asyncpg

    admin = await asyncpg.connect(base.database_url.replace("+asyncpg", "").rsplit("/", 1)[0] + "/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "aiaas_bench_{run}" WITH (FORCE)')
    await admin.close()
    from redis.asyncio import Redis

    r = Redis.from_url(settings.redis_url)
    async for k in r.scan_iter(match=f"bench-{run}:*"):
        await r.delete(k)
    await r.aclose()
    import aio_pika

    from aiaas.kernel.broker import declared_names

    c = await aio_pika.connect(settings.amqp_url)
    for kind, name in sorted(declared_names, reverse=True):
        ch2 = await c.channel()
        if kind == "queue":
            await ch2.queue_delete(name)
        else:
            await ch2.exchange_delete(name)
        await ch2.close()
    await c.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=int(os.environ.get("BENCH_EVENTS", "20000")))
    asyncio.run(main(ap.parse_args().events))
