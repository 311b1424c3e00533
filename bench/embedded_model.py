"""The embedded model through the gateway against the same model called directly, in one run.

The streamer runs as an operator runs it (``aiaas serve --role streamer``, default model settings: warmed
at start, the dialogue prompt, every usable CPU), with a real key; "direct" is llama-cpp-python in this
process with the same file, threads and prompt format, measured right after the gateway in the same run.
The two are not interleaved: two llama.cpp models busy on the same two cores slow each other far more
than the gateway does (interleaved, the gateway's TTFB p50 read 500 ms; alone, 50 ms).

Printed: streaming TTFB (to the first content token) p50/p95 for a short chat prompt, and generation
speed (tokens/s) for a 128-token legacy completion.

    python bench/embedded_model.py [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from gateway_overhead import ROOT, clean_up, free_port, pct, wait

PROMPT = [{"role": "user", "content": "Hello"}]
STORY = "Once upon a time, in a small village by the sea,"


def _direct() -> tuple[object, int]:
    from llama_cpp import Llama

    from aiaas.inference.providers import dialogue
    from aiaas.inference.providers.local import default_model_path, usable_cpus

    threads = usable_cpus()
    llm = Llama(model_path=default_model_path(), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                verbose=False, chat_handler=dialogue.chat_handler())
    llm.create_completion(prompt=dialogue.PREFIX, max_tokens=1, temperature=0.0)  # warmed, as the streamer is
    return llm, threads


def direct_ttfb(llm: object) -> float:
    started = time.perf_counter()
    for chunk in llm.create_chat_completion(messages=PROMPT, stream=True, max_tokens=32,  # type: ignore[attr-defined]
                                            repeat_penalty=1.1):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            ttfb = time.perf_counter() - started
            break
    else:
        ttfb = time.perf_counter() - started
    return ttfb


def direct_speed(llm: object) -> float:
    started = time.perf_counter()
    out = llm.create_completion(prompt=STORY, max_tokens=128, temperature=0.8, repeat_penalty=1.1)  # type: ignore[attr-defined]
    return out["usage"]["completion_tokens"] / (time.perf_counter() - started)


async def gateway_ttfb(session: aiohttp.ClientSession, url: str, key: str) -> float:
    body = {"model": "local/gemma-3-270m", "messages": PROMPT, "stream": True, "max_tokens": 32}
    started = time.perf_counter()
    async with session.post(f"{url}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r:
        r.raise_for_status()
        async for line in r.content:
            if line.startswith(b"data: {") and json.loads(line[6:])["choices"][:1] and \
                    json.loads(line[6:])["choices"][0]["delta"].get("content"):
                return time.perf_counter() - started
    return time.perf_counter() - started


async def gateway_speed(session: aiohttp.ClientSession, url: str, key: str) -> float:
    body = {"model": "local/gemma-3-270m", "prompt": STORY, "max_tokens": 128, "temperature": 0.8}
    started = time.perf_counter()
    async with session.post(f"{url}/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r:
        r.raise_for_status()
        out = await r.json()
    return float(out["usage"]["completion_tokens"]) / (time.perf_counter() - started)


def speed_runs(n: int) -> int:
    """Generation-speed runs (128 tokens each) that go with ``n`` TTFB requests."""
    return max(3, n // 6)


async def compare(n: int, url: str, key: str, speeds: int | None = None) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {"direct ttfb": [], "gateway ttfb": [], "direct tok/s": [], "gateway tok/s": []}
    async with aiohttp.ClientSession() as session:
        await gateway_ttfb(session, url, key)  # one request before timing (connection, caches)
        got["gateway ttfb"] = [await gateway_ttfb(session, url, key) for _ in range(n)]
        got["gateway tok/s"] = [await gateway_speed(session, url, key) for _ in range(speeds or speed_runs(n))]
    return got


def compare_direct(n: int, llm: object, got: dict[str, list[float]], speeds: int | None = None) -> None:
    direct_ttfb(llm)
    got["direct ttfb"] = [direct_ttfb(llm) for _ in range(n)]
    got["direct tok/s"] = [direct_speed(llm) for _ in range(speeds or speed_runs(n))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()
    n = max(4, min(args.requests, 500))
    port = free_port()
    tag = f"embedded-{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'src'}", "AIAAS_LOG_LEVEL": "WARNING",
           "AIAAS_STREAMER_PORT": str(port), "AIAAS_REDIS_PREFIX": f"bench-{tag}:",
           "AIAAS_BROKER_PREFIX": f"bench-{tag}."}
    base = env.get("AIAAS_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas_bench")
    env["AIAAS_DATABASE_URL"] = base.rsplit("/", 1)[0] + "/aiaas_bench_embedded"
    key_file = Path(tempfile.mkdtemp()) / "key"
    subprocess.run([sys.executable, str(ROOT / "bench" / "_seed_for_bench.py"), "http://127.0.0.1:9/v1",
                    str(key_file)], env=env, check=True, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([sys.executable, "-m", "aiaas", "serve", "--role", "streamer"], env=env,
                            stdout=subprocess.DEVNULL)
    try:
        wait(port)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # ready = the model is loaded and warmed
            if subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/ready"], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        got = asyncio.run(compare(n, f"http://127.0.0.1:{port}/v1", key_file.read_text().strip()))
        llm, threads = _direct()
        compare_direct(n, llm, got)
    finally:
        proc.terminate()
        proc.wait(30)
        asyncio.run(clean_up(env))
    import llama_cpp

    print(f"embedded model: Gemma 3 270M Q4_K_M, llama-cpp-python {llama_cpp.__version__}, {threads} threads, "
          f"{n} streamed chats each way (prompt {PROMPT[0]['content']!r}, max_tokens 32)\n")
    print(f"{'':16}{'p50':>10}{'p95':>10}{'min':>10}{'max':>10}")
    for name in ("direct ttfb", "gateway ttfb"):
        xs = got[name]
        print(f"{name:16}{pct(xs, 0.5):>8.1f}ms{pct(xs, 0.95):>8.1f}ms{min(xs) * 1000:>8.1f}ms{max(xs) * 1000:>8.1f}ms")
    for name in ("direct tok/s", "gateway tok/s"):
        xs = sorted(got[name])
        print(f"{name:16}{xs[len(xs) // 2]:>10.1f}{'':>10}{xs[0]:>10.1f}{xs[-1]:>10.1f}")
    ratio = pct(got["gateway ttfb"], 0.5) / max(pct(got["direct ttfb"], 0.5), 1e-9)
    speed = _median(got["gateway tok/s"]) / _median(got["direct tok/s"])
    print(f"\ngateway/direct: TTFB p50 x{ratio:.2f}, generation speed x{speed:.2f}")


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


if __name__ == "__main__":
    main()
