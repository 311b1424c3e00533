"""Soak and memory: the streamer and the worker under a steady open-loop load, watched for leaks.

The platform runs as an operator runs it (``_soak_platform.py``): ``aiaas serve --role streamer`` and
``aiaas serve --role worker`` (consuming the usage and analytics queues), a real API key from
``_seed_for_bench.py``, the embedded model off, against a lean fake OpenAI-wire upstream
(``_soak_upstream.py``), everything on 127.0.0.1. Phases:

1. **Idle memory**: the streamer's RSS right after start, then after a warm-up (mixed requests at 8
   connections) and some idle seconds: *RSS idle*.
2. **Held-open streams**: ``--streams`` (200) streamed chats whose upstream trickles a chunk a second,
   opened at 100 a second, then all open at once: *RSS held*; ``(RSS held - RSS idle) / N`` is the
   memory of one open stream. Then the clients go away and RSS and open files are read again.
3. **Capacity probe** (unless ``--rate`` is given): requests/s at 32 closed-loop connections for 8 s;
   the soak runs at 80% of it.
4. **Soak**: an open loop for ``--minutes`` at ``--rate`` requests/s, non-streamed and streamed chats
   alternating (``--stream-share``): request *i* is due at ``start + i / rate`` whatever the earlier ones
   do, and its latency (to the response's last byte) counts from when it was due, so a stall shows as
   latency instead of as a lower rate (``_soak_load.py``). Every ``--interval`` seconds a sample
   (``_soak_probes.py``): RSS, open descriptors and CPU% (100% is one core) of the streamer's and the
   worker's process trees, p50/p99 latency and errors of the requests that ended in the interval, the
   streamer's requests in flight, the consumer lag (ready messages of the usage and analytics queues)
   and the events the streamer has not published yet (its buffer and its Redis spill stream), and the
   CPU% of the fake upstream and of this load generator, which share the machine.
5. **After**: the backlog drained, idle RSS again, the ledger's rows against the requests sent (each
   request, warm-up and held streams included, is one row once the worker is done), the streamer's
   event counts, the run's Redis keys by shape (what Redis keeps per request) and the commonest
   warnings of each role's log.

Then a table of the samples and a verdict. The exit status is 1 when a check fails (not in ``--smoke``):

- **RSS**: the least-squares slope of either process tree's RSS over the second half of the soak (the
  first half is warm-up) above ``RSS_SLOPE_MAX`` = 5 MiB per 10 minutes;
- **open files**: either tree's descriptors growing steadily: a second-half slope above ``FD_SLOPE_MAX``
  = 20 per 10 minutes *and* at least two thirds of the second half's sample-to-sample changes rises.
  Descriptors count sockets, so a pool growing to a new peak of concurrency (keep-alive connections,
  the streamer's upstream and Redis pools) adds a step and then a plateau, which this tells from a
  leak, which rises at every sample; the idle counts before and after the soak are printed beside;
- **lag**: the queued messages or the unpublished events unbounded (the run ends with them at >= 80%
  of their maximum, above ``LAG_FLOOR`` = 100, and rising over the second half), or the backlog not
  drained within ``DRAIN_MAX`` = 120 s after the load;
- **errors**: more than ``ERROR_SHARE_MAX`` = 1% of the soak's requests failed (a non-200, a stream
  without ``[DONE]``, a timeout of 60 s, or more than 10,000 in flight at the client).

``--smoke`` (for CI): about 20 s of measuring (a 10 s soak at 5 requests/s, samples every 2.5 s, 10 held
streams) after the start-up; it prints the same table and verdict and enforces nothing.

The soak stops by itself; on Ctrl-C, SIGTERM or a failure it still stops every process it started and
deletes its database, Redis keys and queues.

    python bench/soak.py [--minutes 10] [--rate N] [--interval 10] [--streams 200] [--stream-share 0.5] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import itertools
import os
import platform
import signal
import subprocess
import sys
import traceback
from collections import Counter
from dataclasses import dataclass

import aiohttp
import psutil
from _soak_load import Bucket, Load, held_streams
from _soak_platform import ROOT, Platform
from _soak_probes import Backlog, BacklogReading, Tree, log_summary, pct, redis_footprint, slope

RSS_SLOPE_MAX = 5.0  # MiB per 10 minutes, over the second half of the soak
FD_SLOPE_MAX = 20.0  # descriptors per 10 minutes, over the second half
LAG_FLOOR = 100  # queued messages, or unpublished events
ERROR_SHARE_MAX = 0.01
DRAIN_MAX = 120.0  # seconds for the backlog to drain after the load


@dataclass(frozen=True)
class Sample:
    t: float
    sent: int
    ok: int
    errors: int
    p50: float
    p99: float
    rss: dict[str, float]
    fds: dict[str, int]
    cpu: dict[str, float]
    backlog: BacklogReading

    @property
    def queued(self) -> int:
        return sum(v or 0 for v in self.backlog.queued.values())


def print_header(args: argparse.Namespace, plat: Platform) -> None:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "?"
    dirty = " (tree modified)" if git("status", "--porcelain", "--untracked-files=no") else ""
    s = plat.settings
    print(f"soak of aiaas {version('aiaas')} at {rev}{dirty}, run {plat.run}")
    print(f"  Python {platform.python_version()}, " + ", ".join(
        f"{d} {version(d)}" for d in ("uvicorn", "uvloop", "aiohttp", "redis", "aio-pika", "asyncpg", "psutil")))
    print(f"  {platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"{psutil.virtual_memory().total / 2**30:.1f} GiB")
    print(f"  streamer and worker: 1 process each, AIAAS_ENV=production, local model off, log level WARNING, "
          f"{s.broker_queue_type} queues, envelopes of up to {s.event_envelope_size} events, "  # type: ignore[attr-defined]
          f"ledger batches of {s.usage_ledger_batch_size}")  # type: ignore[attr-defined]
    rate = f"{args.rate:g} requests/s" if args.rate else "80% of the capacity probe"
    print(f"  soak: {args.minutes * 60:.0f} s at {rate}, {args.stream_share:.0%} streamed, a sample every "
          f"{args.interval:g} s; {args.streams} held-open streams")
    if args.smoke:
        print("  smoke: the checks are printed, not enforced")
    else:
        print(f"  checks: RSS slope <= {RSS_SLOPE_MAX:g} MiB/10 min, fds not growing steadily (slope <= "
              f"{FD_SLOPE_MAX:g}/10 min), lag bounded (floor {LAG_FLOOR}) and drained in {DRAIN_MAX:.0f} s, "
              f"errors <= {ERROR_SHARE_MAX:.0%}")
    sys.stdout.flush()


async def print_services(plat: Platform) -> None:
    """The versions of PostgreSQL, Redis and RabbitMQ the run uses."""
    import aio_pika
    import asyncpg
    from redis.asyncio import Redis

    s = plat.settings
    pg = await asyncpg.connect(plat.env["AIAAS_DATABASE_URL"].replace("postgresql+asyncpg", "postgresql"))
    try:
        pg_version = await pg.fetchval("SHOW server_version")
    finally:
        await pg.close()
    redis = Redis.from_url(s.redis_url)  # type: ignore[attr-defined]
    try:
        redis_version = (await redis.info("server"))["redis_version"]
    finally:
        await redis.aclose()
    amqp = await aio_pika.connect(s.amqp_url)  # type: ignore[attr-defined]
    try:
        props = amqp.transport.connection.server_properties if amqp.transport else {}
        mq_version = props.get("version", "?")
    finally:
        await amqp.close()
    print(f"  PostgreSQL {pg_version}, Redis {redis_version}, RabbitMQ {mq_version}", flush=True)


async def measure(args: argparse.Namespace, plat: Platform) -> int:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)  # type: ignore[union-attr]
    await print_services(plat)
    pause = 2.0 if args.smoke else 10.0  # idle seconds before a memory reading
    trees = {"streamer": Tree(plat.procs["streamer"].pid), "worker": Tree(plat.procs["worker"].pid),
             "upstream": Tree(plat.procs["upstream"].pid), "client": Tree(os.getpid(), children=False)}
    streamer = trees["streamer"]
    backlog = Backlog(plat.settings, f"{plat.base_url}/metrics", plat.metrics_token)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2048))
    load = Load(session, plat.base_url, plat.key)
    try:
        rss_start = streamer.rss()
        await load.closed_loop(8, 2.0 if args.smoke else 10.0)  # warm-up: every path, pools and caches
        await asyncio.sleep(pause / 2)
        for t in trees.values():
            t.cpu_percent()
        await asyncio.sleep(pause / 2)
        idle_cpu = {name: t.cpu_percent() for name, t in trees.items()}
        rss_idle, fds_idle = streamer.rss(), streamer.fds()
        print(f"\nstreamer RSS: {rss_start:.1f} MiB after start, {rss_idle:.1f} MiB idle after a warm-up of "
              f"{load.sent} requests ({fds_idle} fds); worker {trees['worker'].rss():.1f} MiB; CPU while idle: "
              f"streamer {idle_cpu['streamer']:.1f}%, worker {idle_cpu['worker']:.1f}%")
        held_rss, held_fds, after_rss, after_fds = await held_streams(plat.base_url, plat.key, args.streams,
                                                                      streamer, settle=pause / 2)
        print(f"{args.streams} held-open streams: streamer RSS {held_rss:.1f} MiB, {held_fds} fds; per open "
              f"stream {(held_rss - rss_idle) * 1024 / args.streams:.1f} KiB and "
              f"{(held_fds - fds_idle) / args.streams:.2f} fds; after they closed {after_rss:.1f} MiB, "
              f"{after_fds} fds")
        rate = args.rate
        if not rate:
            rps, failed = await load.closed_loop(32, 8.0)
            rate = max(1.0, round(0.8 * rps))
            print(f"capacity probe: {rps:.0f} requests/s at 32 connections over 8 s ({failed} failed); "
                  f"the soak runs at 80%: {rate:g} requests/s")
            await asyncio.sleep(pause / 2)
        n = max(1, round(args.minutes * 60 / args.interval))
        seconds = n * args.interval
        print(f"\nsoak: {seconds:.0f} s at {rate:g} requests/s, open loop\n")
        print(table_head(), flush=True)
        load.bucket, load.errors = Bucket(), Counter()
        sent_before = load.sent
        for t in trees.values():
            t.cpu_percent()
        samples: list[Sample] = []
        start = loop.time()
        gen = loop.create_task(load.open_loop(rate, seconds, args.stream_share))
        for k in range(1, n + 1):
            await asyncio.sleep(max(0.0, start + k * args.interval - loop.time()))
            samples.append(await sample(loop.time() - start, load, trees, backlog))
            print(table_row(samples[-1]), flush=True)
        await gen  # the requests still in flight end (or time out)
        soak_sent = load.sent - sent_before
        drained_in, last = await drain(backlog)
        await asyncio.sleep(2.0 if args.smoke else 20.0)  # idle pools shrink: keep-alive 15 s at the client
        final = {name: (trees[name].rss(), trees[name].fds()) for name in ("streamer", "worker")}
        rows = await ledger_rows(plat)
        footprint = await redis_footprint(plat.settings)
    finally:
        await backlog.close()
        await session.close()
    (s_rss, s_fds), (w_rss, w_fds) = final["streamer"], final["worker"]
    print(f"\nafter the soak, idle: streamer {s_rss:.1f} MiB and {s_fds} fds (before: {rss_idle:.1f} MiB, "
          f"{fds_idle} fds), worker {w_rss:.1f} MiB and {w_fds} fds; backlog "
          + (f"drained {drained_in:.1f} s after the load" if drained_in is not None else
             f"NOT drained {DRAIN_MAX:.0f} s after the load")
          + f"; {rows} ledger rows for {load.sent - load.refused + args.streams} requests sent to the streamer in all")
    print("streamer's events: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(last.events.items())))
    print("Redis keys of the run, by shape:\n" + "\n".join(f"  {line}" for line in footprint))
    for role in ("streamer", "worker"):
        lines = log_summary(plat.logs / f"{role}.log")
        print(f"{role}'s log: " + ("nothing at WARNING or above" if not lines else "the commonest lines\n"
                                    + "\n".join(f"  {line}" for line in lines)))
    return verdict(samples, soak_sent, load.errors, drained_in, smoke=args.smoke)


async def sample(t: float, load: Load, trees: dict[str, Tree], backlog: Backlog) -> Sample:
    bucket, load.bucket = load.bucket, Bucket()
    reading = await backlog.read()
    watched = ("streamer", "worker")
    return Sample(t=t, sent=bucket.sent, ok=len(bucket.latencies), errors=sum(bucket.errors.values()),
                  p50=pct(bucket.latencies, 0.5), p99=pct(bucket.latencies, 0.99),
                  rss={n: trees[n].rss() for n in watched}, fds={n: trees[n].fds() for n in watched},
                  cpu={n: tr.cpu_percent() for n, tr in trees.items()}, backlog=reading)


async def drain(backlog: Backlog) -> tuple[float | None, BacklogReading]:
    """Seconds until every queue, the streamer's buffer and its spill are empty after the load (None: not
    within ``DRAIN_MAX``), and the last reading."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while True:
        reading = await backlog.read()
        if reading.empty:
            return loop.time() - t0, reading
        if loop.time() - t0 > DRAIN_MAX:
            return None, reading
        await asyncio.sleep(0.5)


async def ledger_rows(plat: Platform) -> int | str:
    import asyncpg

    try:
        conn = await asyncpg.connect(plat.env["AIAAS_DATABASE_URL"].replace("postgresql+asyncpg", "postgresql"))
    except (OSError, asyncpg.PostgresError) as exc:
        return f"unknown ({type(exc).__name__})"
    try:
        return int(await conn.fetchval("SELECT count(*) FROM usage.requests"))
    finally:
        await conn.close()


def table_head() -> str:
    return (f"{'t s':>5}{'sent':>6}{'ok':>6}{'err':>5}{'p50 ms':>8}{'p99 ms':>8} |{'streamer MiB':>13}{'fds':>5}"
            f"{'CPU%':>5}{'flight':>7} |{'worker MiB':>11}{'fds':>4}{'CPU%':>5} |{'queued usage':>13}"
            f"{'analytics':>10}{'unpub':>7} |{'upstr%':>7}{'client%':>8}")


def table_row(s: Sample) -> str:
    def n(v: int | None) -> str:
        return "?" if v is None else str(v)

    b = s.backlog
    unpub = "?" if b.buffered is None and b.spilled is None else str(b.unpublished)
    return (f"{s.t:5.0f}{s.sent:6d}{s.ok:6d}{s.errors:5d}{s.p50:8.1f}{s.p99:8.1f} |{s.rss['streamer']:13.1f}"
            f"{s.fds['streamer']:5d}{s.cpu['streamer']:5.0f}{n(b.in_flight):>7} |{s.rss['worker']:11.1f}"
            f"{s.fds['worker']:4d}{s.cpu['worker']:5.0f} |{n(b.queued['usage']):>13}{n(b.queued['analytics']):>10}"
            f"{unpub:>7} |{s.cpu['upstream']:7.0f}{s.cpu['client']:8.0f}")


def _unbounded(samples: list[Sample], values: list[int]) -> bool:
    """Ends at >= 80% of its maximum, above the floor, rising over the second half."""
    end = samples[-1].t
    rising = slope([(s.t, float(v)) for s, v in zip(samples, values, strict=True) if s.t > end / 2]) > 0
    return values[-1] > LAG_FLOOR and values[-1] >= 0.8 * max(values) and rising


def verdict(samples: list[Sample], sent: int, errors: Counter[str], drained_in: float | None, *, smoke: bool) -> int:
    """Print the table again and the verdict block; 1 when a check fails (never in smoke)."""
    print("\n" + table_head())
    for s in samples:
        print(table_row(s))
    if not samples:
        print("\nverdict: no samples  FAIL")
        return 0 if smoke else 1
    failed: list[str] = []
    fail = "over the limit (smoke)" if smoke else "FAIL"
    second = [s for s in samples if s.t > samples[-1].t / 2] or samples
    print("\nverdict" + (" (smoke: nothing enforced)" if smoke else ""))
    for name in ("streamer", "worker"):
        rss_slope = slope([(s.t / 600, s.rss[name]) for s in second])
        ok = rss_slope <= RSS_SLOPE_MAX
        print(f"  {name} RSS: {rss_slope:+.2f} MiB per 10 min over the second half (limit {RSS_SLOPE_MAX:g}); "
              f"first {samples[0].rss[name]:.1f}, last {samples[-1].rss[name]:.1f}, "
              f"max {max(s.rss[name] for s in samples):.1f} MiB  {'ok' if ok else fail}")
        if not ok:
            failed.append(f"{name} RSS")
        fd_slope = slope([(s.t / 600, s.fds[name]) for s in second])
        steps = [b.fds[name] - a.fds[name] for a, b in itertools.pairwise(second)]
        rises = sum(1 for d in steps if d > 0)
        steady = fd_slope > FD_SLOPE_MAX and rises >= 2 / 3 * max(len(steps), 1)
        print(f"  {name} fds: {fd_slope:+.1f} per 10 min over the second half, rising in {rises} of {len(steps)} "
              f"intervals; first {samples[0].fds[name]}, last {samples[-1].fds[name]}, max "
              f"{max(s.fds[name] for s in samples)}  {fail + ': growing steadily' if steady else 'ok'}")
        if steady:
            failed.append(f"{name} fds")
    for what, values in (("queued messages (usage + analytics)", [s.queued for s in samples]),
                         ("events not yet published (buffer + spill)", [s.backlog.unpublished for s in samples])):
        bad = _unbounded(samples, values)
        print(f"  {what}: max {max(values)}, last {values[-1]}  {fail + ': growing' if bad else 'ok, bounded'}")
        if bad:
            failed.append(what.split(" (")[0])
    print("  backlog after the load: " + (f"drained in {drained_in:.1f} s  ok" if drained_in is not None else
                                          f"NOT drained in {DRAIN_MAX:.0f} s  {fail}"))
    if drained_in is None:
        failed.append("drain")
    n_err = sum(errors.values())
    share = n_err / max(sent, 1)
    detail = ", ".join(f"{k}: {v}" for k, v in errors.most_common(5))
    print(f"  errors: {n_err} of {sent} requests ({share:.2%}){f' ({detail})' if detail else ''}  "
          f"{'ok' if share <= ERROR_SHARE_MAX else fail}")
    if share > ERROR_SHARE_MAX:
        failed.append("errors")
    served = [s for s in samples if s.ok]
    if served:
        print(f"  latency from the scheduled time: median of the intervals' p50 {pct([s.p50 for s in served], .5):.1f}"
              f" ms, worst p99 {max(s.p99 for s in served):.1f} ms")
    if smoke:
        print("  result: not judged (smoke)" + (f"; over a limit: {', '.join(failed)}" if failed else ""))
    else:
        print(("  result: FAIL (" + ", ".join(failed) + ")") if failed else "  result: pass")
    return 1 if failed and not smoke else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=0.0, help="requests/s (default: 80%% of a capacity probe)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--streams", type=int, default=200, help="held-open streams for the per-stream memory")
    ap.add_argument("--stream-share", type=float, default=0.5, help="share of the soak's requests streamed")
    ap.add_argument("--smoke", action="store_true", help="about 20 s at 5 requests/s; prints, enforces nothing")
    args = ap.parse_args()
    if args.smoke:
        args.minutes, args.rate, args.interval, args.streams = 10 / 60, args.rate or 5.0, 2.5, 10
    args.minutes = max(0.05, min(args.minutes, 24 * 60))
    args.interval = max(1.0, args.interval)
    args.streams = max(1, min(args.streams, 5000))
    args.stream_share = max(0.0, min(args.stream_share, 1.0))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a SIGTERM cleans up like a Ctrl-C
    plat = Platform()
    code = 2
    try:
        print_header(args, plat)
        plat.start()
        runner_kw = {}
        with contextlib.suppress(ImportError):
            import uvloop

            runner_kw["loop_factory"] = uvloop.new_event_loop
        with asyncio.Runner(**runner_kw) as runner:
            code = runner.run(measure(args, plat))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nsoak: interrupted; stopping and cleaning up", file=sys.stderr)
        code = 130
    except Exception:
        traceback.print_exc()
        for name in ("streamer", "worker", "upstream"):
            if tail := plat.log_tail(name, 15):
                print(f"--- last lines of the {name}'s log\n{tail}", file=sys.stderr)
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        plat.stop()
        print(f"clean-up: {asyncio.run(plat.clean_up())}")
    return code


if __name__ == "__main__":
    sys.exit(main())
