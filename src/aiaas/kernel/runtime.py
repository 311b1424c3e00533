"""The interpreter's own pauses, measured: event-loop lag and garbage-collection pauses, and the heap
frozen after start.

A gateway's tail latency is often not its code but the loop not running it: a long garbage collection
or a handler that holds the loop. Every process measures both, off the request path:

- ``aiaas_event_loop_lag_seconds``: a task asks to wake every ``interval`` and records how late it woke
  (how long a ready request would have waited for the loop), with the worst of each scrape in
  ``aiaas_event_loop_lag_max_seconds``;
- ``aiaas_gc_pause_seconds{generation}``: every collection's duration, from ``gc.callbacks``.

The collector's callback only notes each pause; ``watch_loop`` moves the notes into the histograms on its
next tick. Observing from the callback itself deadlocked a streamer: with multiprocess metrics
(``PROMETHEUS_MULTIPROC_DIR``, as every ``--workers`` server has) prometheus-client guards every value
with one process-wide, non-reentrant lock, and a collection triggered by an allocation inside that lock
(a new label's first use allocates there) ran the callback, which waited for the same lock forever: the
loop never ran again, not even to handle SIGTERM.

``freeze_heap()`` runs once a process has built its apps and started serving: ``gc.freeze()`` moves every
object alive then (modules, routes, settings, the catalog's structures: most of the heap) out of the
collector's reach, so the oldest generation's collections, the longest pauses, walk only what requests
allocate afterwards. What the first requests build and keep (modules imported on first use, clients'
pools, compiled statements and the like) comes after that freeze, so ``refreeze_after()`` freezes again
once or twice after serving began: without it every full collection walked that warm-up heap (each over
5 ms, measured with ``bench/runtime_pauses.py``). Freezing leaves out of the collector's reach whatever
cyclic garbage is alive at that instant, a bounded one-off, which is why it happens at a few fixed
moments and not periodically.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import time
from typing import Any

from prometheus_client import Gauge, Histogram

_PAUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

LOOP_LAG = Histogram("aiaas_event_loop_lag_seconds",
                     "How late the event loop ran a timer due now (what a ready request waited for the loop).",
                     buckets=_PAUSE_BUCKETS)
LOOP_LAG_MAX = Gauge("aiaas_event_loop_lag_max_seconds", "The largest event-loop lag since the last sample window "
                     "began (windows of 10 s).", multiprocess_mode="max")
GC_PAUSE = Histogram("aiaas_gc_pause_seconds", "Duration of each garbage collection, by generation.",
                     ["generation"], buckets=_PAUSE_BUCKETS)
GC_PAUSE_CPU = Histogram("aiaas_gc_pause_cpu_seconds", "CPU time of each garbage collection, by generation "
                         "(its duration less what the machine took from the process meanwhile).",
                         ["generation"], buckets=_PAUSE_BUCKETS)

_started: list[tuple[float, float]] = []
# (generation, seconds, CPU seconds) of collections not yet observed; bounded, so a process that never runs
# ``watch_loop`` keeps the newest pauses only.
_pauses: collections.deque[tuple[str, float, float]] = collections.deque(maxlen=10_000)


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    # Runs inside the collection, wherever an allocation triggered it, maybe while prometheus-client holds
    # its lock: note the pause and touch no metric (see the module's docstring).
    if phase == "start":
        _started.append((time.perf_counter(), time.thread_time()))
    elif _started:
        wall, cpu = _started.pop()
        _pauses.append((str(info.get("generation", "?")), time.perf_counter() - wall, time.thread_time() - cpu))


def record_gc_pauses() -> int:
    """Observe the pauses noted since the last call into the histograms; returns how many."""
    n = 0
    while _pauses:
        try:
            generation, wall, cpu = _pauses.popleft()
        except IndexError:  # another thread took the last one
            break
        GC_PAUSE.labels(generation).observe(wall)
        GC_PAUSE_CPU.labels(generation).observe(cpu)
        n += 1
    return n


def watch_gc() -> None:
    """Record every collection's pause (idempotent)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def freeze_heap() -> int:
    """Collect once, then exempt every live object from future collections; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


# Seconds after serving began at which the heap is frozen again (see the module's docstring).
REFREEZE_AFTER = (60.0, 600.0)


async def refreeze_after(delays: tuple[float, ...] = REFREEZE_AFTER) -> None:
    """Freeze the heap again at each of ``delays`` seconds from now (cumulative from the call)."""
    start = time.monotonic()
    for delay in sorted(delays):
        await asyncio.sleep(max(0.0, start + delay - time.monotonic()))
        gc.freeze()


async def watch_loop(interval: float = 0.1, window: float = 10.0) -> None:
    """Sample the loop's lag every ``interval`` seconds until cancelled, and record the GC pauses noted."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    window_start = loop.time()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - due)
        LOOP_LAG.observe(lag)
        worst = max(worst, lag)
        LOOP_LAG_MAX.set(worst)
        record_gc_pauses()
        if loop.time() - window_start >= window:
            worst, window_start = 0.0, loop.time()
