"""``bench/suite.py --smoke`` as a user runs it: one Markdown table with numbers for direct and aiaas, and
nothing of the run left behind (processes, its database, Redis keys, exchanges).

The suite names everything after ``--run-id``: its database ``aiaas_bench_<run>``, Redis and broker
prefixes ``bench-<run>``, and every process it starts carries ``AIAAS_BENCH_SUITE_RUN=<run>`` in its
environment, which is how a leftover is found even after it was re-parented.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
LIMIT = 240  # seconds; about 40 on a quiet 2-core machine, more while the rest of the suite runs beside it
NUMERIC = ["c=1 p50", "c=1 p99", "TTFB p50", "gap p50", "RPS c=16", "max RPS p99<50", "CPU ms/req",
           "RSS idle MB"]


def table(out: str, first: str = "contender") -> dict[str, dict[str, str]]:
    """A Markdown table of the suite's output, found by its first header: row -> column -> cell."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=False))
    return rows


def number(cell: str) -> float:
    """A cell's median (``1,234.5`` or ``1.2 [1.0, 1.4]``)."""
    return float(cell.split()[0].replace(",", ""))


def leftovers(run: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.environ().get("AIAAS_BENCH_SUITE_RUN") == run:
                found.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}")
        except (psutil.Error, OSError):
            continue
    return found


async def stored_state(service_urls: dict[str, str], run: str) -> list[str]:
    import aio_pika
    from redis.asyncio import Redis

    from aiaas.kernel.broker import exchange_name

    left = []
    admin = service_urls["database"].replace("postgresql+asyncpg", "postgresql").rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", f"aiaas_bench_{run}"):
            left.append(f"database aiaas_bench_{run}")
    finally:
        await conn.close()
    redis = Redis.from_url(service_urls["redis"])
    try:
        left += [f"Redis key {k!r}" async for k in redis.scan_iter(match=f"bench-{run}:*", count=1000)]
    finally:
        await redis.aclose()
    amqp = await aio_pika.connect(service_urls["amqp"])
    try:
        ch = await amqp.channel()
        name = exchange_name(f"bench-{run}.", "inference")
        try:
            await ch.get_exchange(name, ensure=True)
            left.append(f"exchange {name}")
        except aio_pika.exceptions.ChannelClosed:
            pass
    finally:
        await amqp.close()
    return left


def log_tails(logs: Path, lines: int = 15) -> str:
    """The last lines of every server's log the suite kept, for a failure's message."""
    parts = []
    for log in sorted(logs.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(parts) or "(no server logs kept)"


def test_smoke_prints_the_table_and_cleans_up(service_urls: dict[str, str], tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    run = f"smoke_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "AIAAS_DATABASE_URL": service_urls["database"], "AIAAS_REDIS_URL": service_urls["redis"],
           "AIAAS_AMQP_URL": service_urls["amqp"]}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # Small database pools: the suite's four aiaas processes with the default pools (10 + overflow per
    # context database) took PostgreSQL past its 100 connections while the other tests of the step ran,
    # and theirs failed with "too many clients". The smoke's figures are not published.
    env.update({"AIAAS_DB_POOL_SIZE": "2", "AIAAS_DB_MAX_OVERFLOW": "2"})
    # Not under coverage: the suite measures processes as an operator runs them, and aiaas's own code is
    # measured by the other end-to-end tests. (The stalls once blamed on coverage, every request waiting
    # out its 30 s timeout, were a streamer deadlocked in its GC callback: see ``kernel/runtime.py``.)
    for name in [k for k in env if k == "COVERAGE_PROCESS_CONFIG" or k.startswith(("COV_CORE_", "COVERAGE_"))]:
        env.pop(name)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "suite.py"), "--smoke", "--run-id", run,
                             "--keep-logs", str(logs)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the suite stops and deletes what it started before it exits
        stdout, stderr = proc.communicate(timeout=90)
        pytest.fail(f"the smoke run took over {LIMIT} s: {stderr[-2000:]}\n{log_tails(logs)}")
    took = time.monotonic() - started
    assert proc.returncode == 0, f"{stderr[-3000:]}\n{log_tails(logs)}"
    rows = table(stdout)
    assert {"direct", "aiaas x1"} <= rows.keys(), stdout
    for name in ("direct", "aiaas x1"):
        for column in NUMERIC:
            assert math.isfinite(number(rows[name][column])), (name, column, rows[name][column])
    aiaas = rows["aiaas x1"]
    assert number(aiaas["RPS c=16"]) > 0
    assert number(aiaas["worker ev/s"]) > 0, "the worker stored none of the run's events"
    assert number(aiaas["mgmt p99 @50/s"]) > 0
    # LiteLLM is left out of a smoke run (whether its virtualenv exists differs between machines), and says so.
    assert rows["LiteLLM"]["c=1 p50"].startswith("not run: --smoke"), stdout
    # The embedded model through a streamer of the run and called directly (the test extras include it).
    model = table(stdout, "embedded model")
    assert set(model) == {"llama-cpp-python direct", "through aiaas (streamer)"}, stdout
    for side in model.values():
        for column in ("TTFB p50 ms", "TTFB p95 ms", "tokens/s"):
            assert number(side[column]) > 0, (side, column)
    assert took < LIMIT
    assert leftovers(run) == []
    assert asyncio.run(stored_state(service_urls, run)) == []
