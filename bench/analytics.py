"""Analytics figures: projection ingest by a worker, and read latency over 30 days at 10 million requests.

Run as an operator runs the platform, in a throw-away database and Redis/broker prefixes on the local
services (127.0.0.1 only; stops by itself):

1. **Ingest**: ``--events`` completion events are published by the streamers' ``EventPublisher`` (queues
   declared first, the backlog built with no consumer), once per envelope size of ``--envelopes``; then
   ``aiaas serve --role worker`` is started; the rate at which the projections
   (``analytics.processed_events``) and the ledger (``usage.requests``) take them is printed, from each
   one's first to its last event, with the worker's CPU per event.
2. **Reads**: the minute, hour and day buckets that 10 million requests of one org over 30 days make
   (4 models x 2 deployments x 25 keys x 2 statuses, histograms included) are written straight into the
   projection tables (and summed into the ``*_by_model`` ones, as the worker keeps them), and ``aiaas
   serve --role api`` answers the 30-day queries with the org's API key;
   p50/p99 of each over ``--queries`` requests are printed. (The ledger rows themselves are not written:
   no read of the analytics API touches the ledger.)

    python bench/analytics.py [--events 20000] [--envelopes 1,100] [--queries 200] [--skip-ingest | --skip-reads]
        [--split] [--keep-db]

``--split`` runs the ledger and the projections in a worker process each (``AIAAS_WORKER_CONSUMERS``),
as a large install does, and prints each one's CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_of(settings: object, **extra: str) -> dict[str, str]:
    s = settings
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "AIAAS_DATABASE_URL": s.database_url,  # type: ignore[attr-defined]
           "AIAAS_REDIS_PREFIX": s.redis_prefix, "AIAAS_BROKER_PREFIX": s.broker_prefix,  # type: ignore[attr-defined]
           "AIAAS_LOCAL_MODEL_ENABLED": "false", "AIAAS_LOG_LEVEL": "WARNING", "AIAAS_ENV": "test"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {**env, **extra}


async def _count(db: object, sql: str) -> int:
    from sqlalchemy import text

    async with db.unit_of_work("analytics") as s:  # type: ignore[attr-defined]
        return int(await s.scalar(text(sql)) or 0)


async def ingest(settings: object, n: int, envelope: int, split: bool = False) -> dict[str, float]:
    """Build a backlog of ``n`` events published as a streamer publishes them (``EventPublisher``, envelopes of
    at most ``envelope`` events), then time a worker draining it; returns events/s per consumer and the
    worker's CPU per event."""
    import psutil

    from aiaas.entrypoints.bootstrap import Container
    from aiaas.inference.events import CompletionRecorded
    from aiaas.kernel.publisher import EventPublisher

    orgs = [str(uuid.uuid4()) for _ in range(20)]
    keys = [str(uuid.uuid4()) for _ in range(50)]

    def event(i: int) -> CompletionRecorded:
        return CompletionRecorded(
            request_id=f"req_{i}", org_id=orgs[i % 20], user_id=None, key_id=keys[i % 50],
            endpoint="chat.completions", model=f"model-{i % 4}", deployment=f"d{i % 2}", provider="p",
            prompt_tokens=100 + i % 50, completion_tokens=20 + i % 30, total_tokens=120 + i % 50 + i % 30,
            cached_prompt_tokens=i % 40, ttfb_ms=5.0 + i % 97, latency_ms=50.0 + i % 997,
            status="ok" if i % 20 else "error", error_type=None if i % 20 else "upstream_error", http_status=200)

    container = Container(settings, role="worker")  # type: ignore[arg-type]
    db = container.db
    queries = {"projections": "SELECT count(*) FROM analytics.processed_events",
               "ledger": "SELECT count(*) FROM usage.requests"}
    base = {name: await _count(db, sql) for name, sql in queries.items()}
    ch = await (await container.broker.connect()).channel()
    for sub in container.subscriptions():  # the usage and analytics queues, as a worker declares them
        await container.broker.declare_subscription(sub, ch)
    await ch.close()
    # The streamer's publisher, fed 1,000 events at a time (a busy streamer's drain rounds are smaller, so
    # its envelopes are too: this is the best case of packing, and envelope=1 the worst).
    publisher = EventPublisher(container.broker, envelope_size=envelope, batch_size=1000, buffer_size=100_000)
    for lo in range(0, n, 1000):
        for i in range(lo, min(n, lo + 1000)):
            publisher.emit("inference", event(i))
        await publisher.flush(timeout=120)
    assert publisher.dropped == 0
    await publisher.close()
    await container.stop()

    # One worker consuming both queues, or (``split``) one process per consumer, as a large install runs
    # them (AIAAS_WORKER_CONSUMERS); each consumer's CPU is counted in the process that runs it.
    groups = {"usage": ["ledger"], "analytics": ["projections"]} if split else {"usage,analytics": list(queries)}
    procs = {}
    for consumers, names in groups.items():
        proc = subprocess.Popen([sys.executable, "-m", "aiaas", "serve", "--role", "worker"],  # noqa: ASYNC220
                                env=env_of(settings, AIAAS_WORKER_PORT=str(free_port()),
                                           AIAAS_WORKER_CONSUMERS=consumers), stdout=subprocess.DEVNULL)
        for name in names:
            procs[name] = (proc, psutil.Process(proc.pid))
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    cpu_at_first: dict[int, float] = {}
    cpu_at_last: dict[int, float] = {}

    def cpu_of(ps: psutil.Process) -> float:
        t = ps.cpu_times()
        return float(t.user + t.system)

    try:
        deadline = time.monotonic() + 600
        while len(last) < 2 and time.monotonic() < deadline:
            for name, sql in queries.items():
                if name in last:
                    continue
                got = await _count(db, sql) - base[name]
                ps = procs[name][1]
                if got and name not in first:
                    first[name] = time.monotonic()
                    cpu_at_first.setdefault(ps.pid, cpu_of(ps))
                if got >= n:
                    last[name] = time.monotonic()
                    if split:
                        cpu_at_last[ps.pid] = cpu_of(ps)
            await asyncio.sleep(0.02)
        for _, ps in procs.values():
            cpu_at_last.setdefault(ps.pid, cpu_of(ps))
    finally:
        for proc, _ in {id(p): (p, ps) for p, ps in procs.values()}.values():
            proc.terminate()
            proc.wait(30)
        await db.dispose()
    out = {name: n / max(last[name] - first[name], 1e-9) for name in queries if name in last}
    cpu = {pid: cpu_at_last[pid] - cpu_at_first.get(pid, cpu_at_last[pid]) for pid in cpu_at_last}
    out["cpu_ms_per_event"] = sum(cpu.values()) * 1000 / n
    for name, (_, ps) in procs.items():
        out[f"{name}_cpu_ms_per_event"] = cpu[ps.pid] * 1000 / n
    return out


SYNTH = """
INSERT INTO analytics.{table} (org_id, bucket_start, model, deployment, key_id, user_id, endpoint, status,
    error_type, requests, prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, cost_usd,
    unpriced_requests, unpriced_tokens, latency_sum_ms, ttfb_hist, latency_hist)
SELECT CAST(:org AS uuid), b, 'model-' || m, 'd' || d, CAST(md5('key' || k)::uuid AS uuid), CAST(:nil AS uuid),
    'chat.completions', s, CASE WHEN s = 'ok' THEN '' ELSE 'upstream_error' END,
    p.n, p.n * 120, p.n * 30, p.n * 25, 0, p.n * 0.00055, 0, 0, p.n * 400.0,
    jsonb_build_object('161', p.n / 2, '185', p.n - p.n / 2),
    jsonb_build_object('300', p.n / 3, '322', p.n / 3, '400', p.n - 2 * (p.n / 3))
FROM (SELECT CAST(:per AS bigint) AS n) AS p,
     generate_series(CAST(:start AS timestamptz), CAST(:stop AS timestamptz) - CAST(:step AS interval),
                     CAST(:step AS interval)) AS b,
     generate_series(0, 3) AS m, generate_series(0, 1) AS d, generate_series(0, 24) AS k,
     unnest(ARRAY['ok', 'error']) AS s
"""


_MODEL_KEY = "org_id, bucket_start, model, deployment, endpoint, status, error_type"
_SUMS = ("requests, prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, cost_usd, "
         "unpriced_requests, unpriced_tokens, latency_sum_ms")
BY_MODEL = (f"INSERT INTO analytics.{{table}}_by_model ({_MODEL_KEY}, {_SUMS}, ttfb_hist, latency_hist) "
            f"SELECT {_MODEL_KEY}, " + ", ".join(f"sum({c})" for c in _SUMS.split(", "))
            + ", analytics.hist_sum(ttfb_hist), analytics.hist_sum(latency_hist) "
            f"FROM analytics.{{table}} WHERE org_id = CAST(:org AS uuid) GROUP BY {_MODEL_KEY}")


async def reads(settings: object, n_queries: int) -> None:
    import datetime as dt

    import aiohttp
    import asyncpg
    from sqlalchemy import text

    from aiaas.entrypoints.bootstrap import Container
    from aiaas.entrypoints.setup import bootstrap

    made = await bootstrap(settings, email="bench@example.com", password="bench-password-1234",  # noqa: S106
                           org_name="bench", new_key=True)
    org, key = made.org_id, made.api_key
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(days=30)
    combos = 4 * 2 * 25 * 2
    c = Container(settings, role="api")  # type: ignore[arg-type]
    t0 = time.perf_counter()
    async with c.db.unit_of_work("analytics") as s:
        for table, step, begin in (("usage_day", dt.timedelta(days=1), start),
                                   ("usage_hour", dt.timedelta(hours=1), start),
                                   ("usage_minute", dt.timedelta(minutes=1), end - dt.timedelta(days=1))):
            # Requests per bucket row so that 30 days hold 10 million (the minute rows: the last day's share).
            per = max(1, 10_000_000 // (int((end - start) / step) * combos))
            await s.execute(text(SYNTH.format(table=table)), {"org": org, "nil": str(uuid.UUID(int=0)), "per": per,
                                                              "start": begin, "stop": end, "step": step})
            # The model-side buckets hold the same requests summed over key and user, as the worker keeps them.
            await s.execute(text(BY_MODEL.format(table=table)), {"org": org})
    # VACUUM as autovacuum would after a bulk load, so it does not run during the measurement.
    vacuum = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))  # type: ignore[attr-defined]
    try:
        for table in ("usage_day", "usage_hour", "usage_minute"):
            await vacuum.execute(f"VACUUM (ANALYZE) analytics.{table}, analytics.{table}_by_model")
    finally:
        await vacuum.close()
    async with c.db.unit_of_work("analytics") as s:
        day_rows = await s.scalar(text("SELECT count(*) FROM analytics.usage_day"))
        hour_rows = await s.scalar(text("SELECT count(*) FROM analytics.usage_hour"))
        requests = await s.scalar(text("SELECT sum(requests) FROM analytics.usage_day"))
    await c.redis.aclose()
    await c.db.dispose()
    print(f"\nprojections of one org: {requests:,} requests over 30 days; {day_rows:,} day rows, {hour_rows:,} hour "
          f"rows, the last day in minutes (written in {time.perf_counter() - t0:.0f} s)")

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aiaas", "serve", "--role", "api"],  # noqa: ASYNC220
                            env=env_of(settings, AIAAS_API_PORT=str(port)), stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    span = {"start": start.isoformat(), "end": end.isoformat()}
    st, et = int(start.timestamp()), int(end.timestamp())
    cases = {
        "usage, 30 days by day, by model": ("/v1/analytics/usage", {**span, "group_by": "model"}),
        "usage, 30 days by day, by key (1000-row page)": ("/v1/analytics/usage", {**span, "group_by": "api_key",
                                                                                    "limit": "1000"}),
        "usage, 30 days by hour, by model": ("/v1/analytics/usage", {**span, "granularity": "hour",
                                                                     "group_by": "model", "limit": "1000"}),
        "usage, 30 days by hour, by key (1000-row page)": ("/v1/analytics/usage", {
            **span, "granularity": "hour", "group_by": "api_key", "limit": "1000"}),
        "performance, 30 days, by model x deployment": ("/v1/analytics/performance", span),
        "performance, 30 days, by key": ("/v1/analytics/performance", {**span, "group_by": "api_key"}),
        "OpenAI completions usage, 30 x 1d, by model": ("/v1/organization/usage/completions",
                                                         {"start_time": st, "end_time": et, "limit": 31,
                                                          "group_by[]": "model"}),
        "OpenAI costs, 30 x 1d": ("/v1/organization/costs", {"start_time": st, "end_time": et, "limit": 30}),
        "usage, last day by minute, by model": ("/v1/analytics/usage", {"start": (end - dt.timedelta(days=1))
                                                                        .isoformat(), "end": end.isoformat(),
                                                                        "granularity": "minute", "group_by": "model",
                                                                        "limit": "1000"}),
    }
    try:
        async with aiohttp.ClientSession(headers={"authorization": f"Bearer {key}"}) as http:
            for _ in range(300):
                try:
                    async with http.get(base + "/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            times: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(n_queries):  # interleaved: noise hits every query alike
                for name, (path, params) in cases.items():
                    t = time.perf_counter()
                    async with http.get(base + path, params=params) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"{name}: {r.status} {await r.text()}")
                    times[name].append((time.perf_counter() - t) * 1000)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"read latency through `aiaas serve --role api` over {n_queries} requests each, one at a time (ms)")
    print(f"  {'':48}{'p50':>8}{'p99':>8}")
    for name, xs in times.items():
        xs.sort()
        print(f"  {name:48}{statistics.median(xs):8.1f}{xs[min(len(xs) - 1, int(len(xs) * 0.99))]:8.1f}")


async def _drop(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0].replace("postgresql+asyncpg", "postgresql") + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--envelopes", default="1,100", help="envelope sizes to compare, comma separated (1: an event "
                    "per message, as before envelopes)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--skip-ingest", action="store_true", help="measure the reads only")
    ap.add_argument("--skip-reads", action="store_true", help="measure the ingest only")
    ap.add_argument("--split", action="store_true", help="one worker process per consumer (ledger, projections)")
    ap.add_argument("--keep-db", action="store_true", help="keep the bench database (to EXPLAIN its queries)")
    args = ap.parse_args()
    from aiaas.entrypoints.migrate import migrate
    from aiaas.kernel.config import load_settings

    run = uuid.uuid4().hex[:8]
    base = load_settings()
    url = base.database_url.rsplit("/", 1)[0] + f"/aiaas_bench_{run}"
    settings = msgspec.structs.replace(base, database_url=url, redis_prefix=f"bench-{run}:",
                                       broker_prefix=f"bench-{run}.", env="test", local_model_enabled=False)
    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    migrate(settings)
    from gateway_overhead import clean_up

    try:
        if not args.skip_ingest:
            how = ("one process per consumer (AIAAS_WORKER_CONSUMERS)" if args.split
                   else "both consumers, one process")
            print(f"\ningest of {args.events} events by `aiaas serve --role worker` ({how}; CPU counted from the "
                  "first event stored to the last)")
            print(f"  {'envelope':>8} {'ledger ev/s':>12} {'projections ev/s':>17} {'worker CPU ms/event':>20}"
                  + (f" {'ledger CPU':>11} {'projections CPU':>16}" if args.split else ""))
            for size in (int(x) for x in args.envelopes.split(",")):
                r = asyncio.run(ingest(settings, args.events, size, split=args.split))
                print(f"  {size:>8} {r.get('ledger', 0):>12.0f} {r.get('projections', 0):>17.0f} "
                      f"{r['cpu_ms_per_event']:>20.3f}"
                      + (f" {r['ledger_cpu_ms_per_event']:>11.3f} {r['projections_cpu_ms_per_event']:>16.3f}"
                         if args.split else ""))
        if not args.skip_reads:
            asyncio.run(reads(settings, args.queries))
    finally:
        asyncio.run(clean_up({**os.environ, "AIAAS_REDIS_PREFIX": settings.redis_prefix,
                              "AIAAS_BROKER_PREFIX": settings.broker_prefix}))
        if args.keep_db:
            print(f"kept database {url.rsplit('/', 1)[1]}")
        else:
            asyncio.run(_drop(url))


if __name__ == "__main__":
    main()
