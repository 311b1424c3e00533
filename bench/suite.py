"""aiaas and LiteLLM side by side: one command, one Markdown table, every contender in the same run against
the same mock OpenAI-wire upstream (``_suite_upstream.py``).

Contenders: the mock hit **directly** (the floor); **aiaas** run as an operator runs it (``aiaas serve``
as api, worker and streamer, ``--workers 1`` and ``2`` for the streamer, a real API key with a rate limit,
its org under a policy with rate limits, a token budget and a spend limit, the worker storing every
event); **LiteLLM**'s proxy (pinned, in its own virtualenv made on first use, ``litellm --config ...
--num_workers N`` for N = 1 and 2, a master key, no database).

Scenarios, each repeated ``--repeats`` times (min/median/max printed): concurrency 1 (interleaved,
non-streamed and streamed), concurrency ``--concurrency`` (closed loop, with CPU per request of the
server's process tree and, for aiaas, the worker's ingest of the events), open-loop fixed rates (latency
from the scheduled send time), the highest open-loop rate with p99 under ``--p99-ms``, memory idle and
with ``--streams`` slow streams held open, and the management API at a fixed rate. Every load goes to
127.0.0.1 and stops by itself; everything started (processes, the database ``aiaas_bench_<run>``, Redis
keys and queues under the run's prefixes) is stopped or deleted at the end.

    python bench/suite.py [--repeats 3] [--smoke] [--no-litellm] [--processes 1,2] [--help for the rest]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import math
import os
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import _suite_embedded as embedded_model
import _suite_load as load
import _suite_phases as phases
import _suite_servers as servers
import aiohttp
import uvloop

SLOW_SECONDS = 30.0  # how long a mock slow stream lasts at most (the held-open streams)


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs of every scenario (min/median/max over them)")
    ap.add_argument("--requests", type=int, default=200, help="concurrency-1 requests per contender and mode")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each closed-loop phase and open-loop rate")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rates", default="25,100", help="open-loop rates (requests/s), comma separated")
    ap.add_argument("--search-steps", type=int, default=5, help="probes of the highest-rate search")
    ap.add_argument("--probe-seconds", type=float, default=2.0, help="length of each probe of that search")
    ap.add_argument("--p99-ms", type=float, default=50.0, help="the p99 bound of that search")
    ap.add_argument("--streams", type=int, default=200, help="slow streams held open for the memory figure")
    ap.add_argument("--mgmt-rates", default="50,200", help="management API requests/s (open loop), comma separated")
    ap.add_argument("--mgmt-seconds", type=float, default=3.0)
    ap.add_argument("--chunks", type=int, default=4, help="content chunks of each mock stream")
    ap.add_argument("--gap-ms", type=float, default=2.0, help="the mock's pause between content chunks")
    ap.add_argument("--processes", default="1,2", help="server processes of the aiaas streamer and of LiteLLM")
    ap.add_argument("--no-litellm", action="store_true", help="measure direct and aiaas only")
    ap.add_argument("--embedded-requests", type=int, default=30, help="streamed chats of the embedded model, each way")
    ap.add_argument("--no-embedded", action="store_true", help="leave the embedded model out")
    ap.add_argument("--smoke", action="store_true", help="tiny counts, one repeat, one process each, no LiteLLM "
                    "(under a minute): what CI runs")
    ap.add_argument("--with-litellm", action="store_true", help="with --smoke: LiteLLM too, if its virtualenv is "
                    "already there")
    ap.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy every server's output there at the end")
    ap.add_argument("--run-id", default="", help="names the run's database, prefixes and processes (default random)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.repeats, a.requests, a.seconds, a.rates, a.search_steps, a.probe_seconds = 1, 20, 0.5, "20", 2, 0.5
        a.streams, a.mgmt_rates, a.mgmt_seconds, a.processes = 10, "50", 0.5, "1"
        a.embedded_requests = 4
    a.repeats = max(1, min(a.repeats, 20))
    a.run_id = "".join(ch for ch in (a.run_id or f"suite_{uuid.uuid4().hex[:8]}").lower() if ch.isalnum() or ch == "_")
    return a


def _phase_settings(a: argparse.Namespace) -> phases.Settings:
    return phases.Settings(
        requests=max(5, min(a.requests, 20_000)), seconds=max(0.5, min(a.seconds, 60.0)),
        concurrency=max(1, min(a.concurrency, 256)), rates=[float(r) for r in a.rates.split(",") if r.strip()],
        search_steps=max(1, min(a.search_steps, 12)), probe_seconds=max(0.5, min(a.probe_seconds, 30.0)),
        p99_ms=a.p99_ms, streams=max(1, min(a.streams, 2000)),
        mgmt_rates=[max(1.0, min(float(r), 2000.0)) for r in a.mgmt_rates.split(",") if r.strip()],
        mgmt_seconds=max(0.5, min(a.mgmt_seconds, 60.0)), warmup=8 if a.smoke else 60,
        pause=0.2 if a.smoke else 1.0, slow_seconds=SLOW_SECONDS)


@dataclass
class Started:
    """What ``_start`` brought up: the contenders, the management loads, the aiaas worker's ledger, and why
    a contender is missing."""

    contenders: list[phases.Contender] = field(default_factory=list)
    mgmt: dict[str, tuple[phases.Send, servers.Server]] = field(default_factory=dict)
    ledger: phases.Ledger | None = None
    inference_key: str = ""
    litellm_version: str | None = None
    missing: dict[str, str] = field(default_factory=dict)  # contender -> why it did not run


def _start(a: argparse.Namespace, stack: servers.Stack, procs: list[int], figs: phases.Figures) -> Started:
    got = Started()
    upstream = servers.start_upstream(stack, chunks=a.chunks, gap_ms=a.gap_ms, slow_seconds=SLOW_SECONDS)
    upstream.wait_ready("/v1/models", timeout=30)
    got.contenders.append(phases.Contender("direct", "direct", load.Target(
        f"http://127.0.0.1:{upstream.port}/v1/chat/completions", "x", "fake", "slow"), upstream))
    venv = servers.litellm_venv()
    if a.no_litellm:
        got.missing["LiteLLM"] = "--no-litellm"
    elif a.smoke and not a.with_litellm:
        got.missing["LiteLLM"] = "--smoke (add --with-litellm)"
    elif a.smoke and servers.litellm_installed(venv) != servers.LITELLM_VERSION:
        got.missing["LiteLLM"] = f"--smoke and no LiteLLM {servers.LITELLM_VERSION} virtualenv yet"
    else:
        try:
            got.litellm_version = servers.ensure_litellm(venv)
        except Exception as exc:  # whatever stops LiteLLM, the rest still runs
            got.missing["LiteLLM"] = f"{type(exc).__name__}: {exc}"
    try:
        aiaas = servers.start_aiaas(stack, upstream, procs)
    except Exception as exc:  # the table still says what ran and why aiaas did not
        got.missing["aiaas"] = f"{type(exc).__name__}: {exc}"
    else:
        for n, srv in aiaas.streamers.items():
            got.contenders.append(phases.Contender(f"aiaas x{n}", "aiaas", load.Target(
                f"http://127.0.0.1:{srv.port}/v1/chat/completions", aiaas.inference_key, "bench/fake",
                "bench/slow"), srv, n))
        got.mgmt[f"aiaas x{procs[0]}"] = (_aiaas_send(aiaas), aiaas.api)
        got.ledger = phases.Ledger(aiaas.database_url, aiaas.worker)
        got.inference_key = aiaas.inference_key
    if "LiteLLM" in got.missing:
        return got
    try:
        # Started once aiaas is up: uvicorn's supervisor kills a LiteLLM worker that takes longer to start
        # than its health check allows, which on a busy machine it does again and again.
        litellm = servers.start_litellm(stack, venv, upstream, procs)
        servers.wait_litellm(litellm)
    except Exception as exc:
        got.missing["LiteLLM"] = f"{type(exc).__name__}: {exc}"
        return got
    for n, srv in litellm.servers.items():
        got.contenders.append(phases.Contender(f"LiteLLM x{n}", "litellm", load.Target(
            f"http://127.0.0.1:{srv.port}/v1/chat/completions", litellm.master_key, "bench-fake",
            "bench-slow"), srv, n))
    first = litellm.servers[procs[0]]
    status = servers.http_status(f"http://127.0.0.1:{first.port}/key/list",
                                 {"authorization": f"Bearer {litellm.master_key}"})
    if status == 200:
        got.mgmt[f"LiteLLM x{procs[0]}"] = (_get_send(f"http://127.0.0.1:{first.port}", ["/key/list"],
                                                      litellm.master_key), first)
    else:
        figs.note(f"LiteLLM management p99 n/a: its `/key/list` answers {status} without a database "
                  "(LiteLLM keeps keys only in one; this run gives it none)")
    return got


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's finally: everything started is stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    a = _args(argv)
    s = _phase_settings(a)
    procs = sorted({max(1, min(int(p), 8)) for p in a.processes.split(",") if p.strip()})
    started = time.monotonic()
    load_at_start = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    stack = servers.Stack(a.run_id)
    figs = phases.Figures()
    got = Started()
    embedded: embedded_model.Embedded | None = None
    try:
        phases.progress(f"run {a.run_id}: starting the mock, aiaas and LiteLLM")
        got = _start(a, stack, procs, figs)
        phases.progress("servers up")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            for i in range(a.repeats):
                try:
                    runner.run(phases.repeat(i, got.contenders, s, figs, ledger=got.ledger, mgmt=got.mgmt))
                except Exception as exc:  # report what was measured so far, and why it stopped
                    figs.note(f"repeat {i + 1} stopped: {type(exc).__name__}: {exc}")
                    break
            if got.ledger is not None:
                runner.run(got.ledger.close())
        embedded = _embedded(a, stack, got, figs)
    finally:
        phases.progress("stopping and deleting everything the run started")
        stack.close(a.keep_logs)
    machine = servers.versions(got.litellm_version)
    machine["load average (1/5/15 min) at the start"] = load_at_start
    print(report(a, s, got, figs, machine, procs, time.monotonic() - started, embedded))
    return 0 if "aiaas" not in got.missing else 1


def _embedded(a: argparse.Namespace, stack: servers.Stack, got: Started,
              figs: phases.Figures) -> embedded_model.Embedded | None:
    """The embedded model through a streamer of the run and direct, after the load phases."""
    if a.no_embedded or "aiaas" in got.missing or stack.aiaas_env is None:
        return None
    why = embedded_model.missing()
    if why is None:
        phases.progress("the embedded model: through a streamer, then called directly")
        try:
            # A smoke shows the table works: one 128-token speed run each way, not three (about 20 s of
            # both cores on this machine, beside the rest of the test step).
            return embedded_model.measure(stack, stack.aiaas_env, got.inference_key,
                                          max(4, min(a.embedded_requests, 500)), speeds=1 if a.smoke else None)
        except Exception as exc:  # the side-by-side table still stands
            why = f"{type(exc).__name__}: {exc}"
    figs.note(f"embedded model not measured: {why}")
    return None


def _aiaas_send(aiaas: servers.Aiaas) -> phases.Send:
    org = aiaas.org_id
    return _get_send(f"http://127.0.0.1:{aiaas.api.port}", [
        f"/v1/orgs/{org}/keys", f"/v1/usage/requests?org_id={org}&limit=50", f"/v1/orgs/{org}/members",
        "/v1/users/me"], aiaas.admin_key)


def _get_send(base: str, paths: list[str], key: str) -> phases.Send:
    """A management read per call, cycling through ``paths``."""
    cycle = itertools.cycle(paths)
    headers = {"authorization": f"Bearer {key}"}

    async def send(session: aiohttp.ClientSession) -> None:
        path = next(cycle)
        async with session.get(base + path, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise load.BadStatus(f"GET {path.split('?')[0]}: {r.status}")

    return send


# key, header, decimals, meaning (all latencies in ms; "added": the contender's figure minus direct's of
# the same repeat, direct's own row giving the absolute floor)
def figures(s: phases.Settings) -> list[tuple[str, str, int, str]]:
    n = s.concurrency
    return [
        ("c1_p50", "c=1 p50", 2, "non-streamed latency at concurrency 1, added (ms)"),
        ("c1_p99", "c=1 p99", 2, ""),
        ("cN_p50", f"c={n} p50", 2, f"non-streamed latency at concurrency {n} (closed loop), added"),
        ("cN_p99", f"c={n} p99", 2, ""),
        ("ttfb_p50", "TTFB p50", 2, "streamed, time to the first content chunk at concurrency 1, added"),
        ("ttfb_p99", "TTFB p99", 2, ""),
        ("gap_p50", "gap p50", 2, "gap between consecutive content chunks at concurrency 1, added "
                                  "(direct: the mock's own pacing)"),
        ("gap_p99", "gap p99", 2, ""),
        ("rps_req", f"RPS c={n}", 0, f"non-streamed requests/s at concurrency {n}"),
        ("rps_stream", f"streams/s c={n}", 0, f"streams/s at concurrency {n}"),
        *[(f"open{r:g}", f"p99 @{r:g}/s", 2, "") for r in s.rates],
        ("max_rps", f"max RPS p99<{s.p99_ms:g}", 0, f"highest open-loop rate found with p99 < {s.p99_ms:g} ms "
                                                    "and no error"),
        ("cpu_req", "CPU ms/req", 2, f"CPU (user+system) of the server's process tree per request, at "
                                     f"concurrency {n}"),
        ("cpu_stream", "CPU ms/stream", 2, ""),
        ("rss_idle", "RSS idle MB", 0, "resident memory of the server's process tree, summed (pages that "
                                       "forked workers share count in each), after the warm-up, before any "
                                       "load (once per run)"),
        ("rss_1k", "MB/1k streams", 1, f"RSS growth with {s.streams} slow streams held open, times "
                                       f"1000/{s.streams} (extrapolated; once per run, before any load)"),
        ("ingest", "worker ev/s", 0, f"events the aiaas worker stored in the usage ledger per second during "
                                     f"the concurrency-{n} phases (bounded by the rate they came in)"),
        ("ingest_cpu", "worker CPU ms/ev", 2, "the aiaas worker's CPU per stored event"),
        *[(f"mgmt{r:g}", f"mgmt p99 @{r:g}/s", 1, "") for r in s.mgmt_rates],
        ("mgmt_failed", "mgmt failed %", 0, f"share of the management requests at {max(s.mgmt_rates):g}/s that "
                                            "failed (aiaas's api answers 503 past 64 requests in flight)"),
        ("mgmt_cpu", "mgmt CPU ms/req", 1, f"CPU of the management server's process tree per request at "
                                           f"{max(s.mgmt_rates):g}/s"),
    ]


def _cell(vals: list[float] | None, decimals: int) -> str:
    if not vals:
        return "—"
    good = [v for v in vals if not math.isnan(v)]
    if not good:
        return "err"

    def f(v: float) -> str:
        return f"{v:,.{decimals}f}"

    med = statistics.median(good)
    if len(good) == 1:
        return f(med)
    return f"{f(med)} [{f(min(good))}, {f(max(good))}]"


def report(a: argparse.Namespace, s: phases.Settings, got: Started, figs: phases.Figures, versions: dict[str, str],
           procs: list[int], elapsed: float, embedded: embedded_model.Embedded | None = None) -> str:
    figure_list = figures(s)
    out = [f"## Side by side: direct, aiaas, LiteLLM ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)", ""]
    out += [f"- {k}: {v}" for k, v in versions.items()]
    out += ["- command: `" + " ".join(["python bench/suite.py", *sys.argv[1:]]) + "`",
            f"- settings: {a.repeats} repeat(s); concurrency-1 {s.requests} requests per contender and mode; "
            f"closed loops and open-loop rates {s.seconds:g} s each; rate search {s.search_steps} probes of "
            f"{s.probe_seconds:g} s; {s.streams} held-open streams; mock streams {a.chunks} content chunks "
            f"{a.gap_ms:g} ms apart; server processes {', '.join(map(str, procs))}",
            f"- took {elapsed / 60:.1f} min", ""]
    out.append("| contender | " + " | ".join(h for _, h, _, _ in figure_list) + " |")
    out.append("|---|" + "---|" * len(figure_list))
    for c in got.contenders:
        cells = [_cell(figs.values.get(k, {}).get(c.name), d) for k, _, d, _ in figure_list]
        out.append(f"| {c.name} | " + " | ".join(cells) + " |")
    for name, why in got.missing.items():
        out.append(f"| {name} | not run: {why.replace('|', '/')} |" + " |" * (len(figure_list) - 1))
    out += ["", "Cells: median [min, max] over the repeats. Latency columns are ms **added** to direct's figure "
            "of the same repeat (direct's row: its own absolute figure); xN: N server processes.", ""]
    out += [f"- {h}: {m}" for _, h, _, m in figure_list if m]
    out += [f"- p99 @R/s: non-streamed p99 in an open loop at R requests/s for {s.seconds:g} s, latency from "
            "each request's scheduled send time, added",
            f"- mgmt p99 @R/s: management API p99 in an open loop at R requests/s for {s.mgmt_seconds:g} s (aiaas: "
            "GET keys, usage requests, members, users/me in turn, on the one api process; LiteLLM: `/key/list`)"]
    out += [f"- note: {n}" for n in figs.notes]
    out += [f"- rate search, {name} (last repeat): {probes}" for name, probes in figs.probes.items()]
    if embedded is not None:
        out += ["", f"### The embedded model (Gemma 3 270M Q4_K_M, llama-cpp-python {embedded.version}, "
                f"{embedded.threads} threads)", "", *embedded_model.table(embedded), "",
                f"{embedded.requests} streamed chats each way (`\"Hello\"`, max_tokens 32), TTFB to the first "
                "content token; tokens/s: median [min, max] of 128-token completions. Through aiaas: a streamer "
                "of the run with the model on (`aiaas serve --role streamer`, warmed before `/ready`), the run's "
                "key; direct: llama-cpp-python in the suite's process, same file, threads and prompt format, "
                "after that streamer stopped."]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
