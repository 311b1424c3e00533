"""Interleaved uvicorn vs granian benchmark of app.py. Usage: python bench_server.py [rounds]"""
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

import loadgen
import procstat
import uvloop
from payload import BODY

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
BIN = os.path.dirname(PY)
WORKERS = os.environ.get("BENCH_WORKERS", "1")
ONLY = os.environ.get("BENCH_ONLY")  # substring filter on test labels, e.g. "wrk"
SERVERS = {
    "uvicorn": (18001, [f"{BIN}/uvicorn", "app:app", "--host", "127.0.0.1", "--port", "18001", "--loop", "uvloop",
                        "--http", "httptools", "--workers", WORKERS, "--no-access-log", "--log-level", "warning"]),
    "granian": (18002, [f"{BIN}/granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "18002",
                        "--workers", WORKERS, "--loop", "uvloop", "--no-access-log", "--log-level", "warning", "app:app"]),
}
if os.environ.get("BENCH_GRANIAN_RUST_TASK"):  # experimental Rust task impl (Python < 3.12 only)
    SERVERS["granian-rt"] = (18003, [f"{BIN}/granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "18003",
                                     "--workers", "1", "--loop", "uvloop", "--task-impl", "rust", "--no-access-log",
                                     "--log-level", "warning", "app:app"])
WRK = shutil.which("wrk")
PIN = os.environ.get("BENCH_PIN")  # e.g. "1": servers -> taskset CPU 1, load generators -> CPU 0
if PIN:
    for _k, (_port, _cmd) in SERVERS.items():
        _cmd[:0] = ["taskset", "-c", "1"]
    os.sched_setaffinity(0, {0})


def wait_ready(port, timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} not ready")


def run_wrk(url, lua=None, conns=32, dur=5):
    cmd = (["taskset", "-c", "0"] if PIN else []) + [WRK, "-t1", f"-c{conns}", f"-d{dur}s", "--latency"] + (["-s", lua] if lua else []) + [url]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE, timeout=dur + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_us = float(p99.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[p99.group(2)] if p99 else None
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errs:
        print("   wrk warning:", errs.group(0), file=sys.stderr)
    return {"rps": rps, "n": n, "p99_us": p99_us}


def tests(port):
    b = f"http://127.0.0.1:{port}"
    t = [
        ("health c1", lambda: loadgen.latency(b + "/health"), 3300),
        ("echo c1", lambda: loadgen.latency(b + "/echo", "POST", BODY), 3300),
        ("stream c1", lambda: loadgen.stream(b + "/stream"), 550),
        ("sse(ServerSentEvent) c1", lambda: loadgen.stream(b + "/sse"), 550),
        ("health c32 aiohttp", lambda: loadgen.throughput(b + "/health"), None),
        ("echo c32 aiohttp", lambda: loadgen.throughput(b + "/echo", "POST", BODY), None),
    ]
    if WRK:
        t += [
            ("health c32 wrk", lambda: run_wrk(b + "/health"), None),
            ("echo c32 wrk", lambda: run_wrk(b + "/echo", "post.lua"), None),
            ("stream c32 wrk", lambda: run_wrk(b + "/stream"), None),
        ]
    return [x for x in t if not ONLY or ONLY in x[0]]


def rss_mb(pids):
    tot = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                tot += int(next(l for l in f if l.startswith("VmRSS")).split()[1])
        except (OSError, StopIteration):
            pass
    return tot / 1024


async def main(rounds):
    procs = {}
    for name, (port, cmd) in SERVERS.items():
        procs[name] = subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for name, (port, _) in SERVERS.items():
            wait_ready(port)
        time.sleep(1)
        pids = {n: procstat.tree(p.pid) for n, p in procs.items()}
        print(f"workers={WORKERS} idle RSS (MB, process tree): " + ", ".join(f"{n}={rss_mb(p):.0f} ({len(p)} procs)" for n, p in pids.items()))
        results = {}  # (test, server) -> list of dicts
        names = list(SERVERS)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate start
            if r % 2:
                order = order[::-1]
            ntests = len(tests(0))
            for ti in range(ntests):
                for name in order:
                    label, fn, nreq = tests(SERVERS[name][0])[ti]
                    c0 = procstat.cpu_seconds(pids[name])
                    t0 = time.perf_counter()
                    res = fn()
                    if asyncio.iscoroutine(res):
                        res = await res
                    wall = time.perf_counter() - t0
                    c1 = procstat.cpu_seconds(pids[name])
                    n = nreq or res.get("n")
                    # throughput() counts only the measured window; approximate CPU/req with wall-rate
                    if "rps" in res and "n" in res and nreq is None:
                        n = res["rps"] * wall if label.endswith("aiohttp") else res["n"]
                    res["srv_cpu_us_per_req"] = (c1 - c0) / n * 1e6 if n else None
                    results.setdefault((label, name), []).append(res)
                    print(f"round {r} {label:26s} {name:8s} " + " ".join(f"{k}={v:.0f}" for k, v in res.items() if isinstance(v, float)), flush=True)
        out = {f"{k[0]}|{k[1]}": v for k, v in results.items()}
        print("RSS after load (MB): " + ", ".join(f"{n}={rss_mb(p):.0f}" for n, p in pids.items()))
        with open(os.path.join(HERE, f"results_server_w{WORKERS}{'_' + ONLY if ONLY else ''}{'_pinned' if PIN else ''}.json"), "w") as f:
            json.dump(out, f, indent=1)
        # summary: median over rounds, plus granian/uvicorn ratio per round (median)
        print("\nSUMMARY (median of rounds; ratio = X/uvicorn, median of per-round ratios)")
        for label, *_ in tests(0):
            u = results[(label, "uvicorn")]
            for key in u[0]:
                if key == "n" or u[0][key] is None:
                    continue
                parts = [f"uvicorn={statistics.median(x[key] for x in u):9.1f}"]
                for other in names[1:]:
                    g = results[(label, other)]
                    gm = statistics.median(x[key] for x in g)
                    ratio = statistics.median(gg[key] / uu[key] for uu, gg in zip(u, g) if uu[key])
                    parts.append(f"{other}={gm:9.1f} ({ratio:4.2f}x)")
                print(f"{label:24s} {key:19s} " + "  ".join(parts))
    finally:
        for name, p in procs.items():
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
            err = p.stderr.read().decode()[-2000:]
            if err.strip():
                print(f"--- {name} stderr ---\n{err}")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
