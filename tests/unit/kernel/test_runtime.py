"""Loop lag and GC pauses are measured, and the heap is frozen after start."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiaas.kernel import runtime


def _count(hist, **labels: str) -> float:
    for metric in hist.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def _max_bucket_le(hist, bound: float) -> float:
    """How many observations were at most ``bound`` seconds."""
    for metric in hist.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket") and float(sample.labels["le"]) == bound:
                return sample.value
    raise AssertionError(f"no bucket {bound}")


@pytest.fixture
def only_explicit_collections() -> Iterator[None]:
    """No automatic collection during the test, and no note left from one before it: once any test has
    installed the callback, the worker's own collections are noted too, and would be counted here."""
    runtime.watch_gc()
    was_enabled = gc.isenabled()
    gc.disable()
    runtime.record_gc_pauses()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class TestGcPauses:
    @pytest.mark.usefixtures("only_explicit_collections")
    def test_every_collection_is_timed_by_generation(self) -> None:
        runtime.watch_gc()
        runtime.watch_gc()  # idempotent: one callback
        assert gc.callbacks.count(runtime._on_gc) == 1
        before = _count(runtime.GC_PAUSE, generation="2")
        gc.collect(2)
        gc.collect(2)
        assert _count(runtime.GC_PAUSE, generation="2") == before  # noted, observed on the loop's next tick
        assert runtime.record_gc_pauses() >= 2
        assert _count(runtime.GC_PAUSE, generation="2") == before + 2
        assert runtime.record_gc_pauses() == 0

    @pytest.mark.usefixtures("only_explicit_collections")
    async def test_the_loop_records_the_noted_pauses(self) -> None:
        runtime.watch_gc()
        before = _count(runtime.GC_PAUSE, generation="2")
        task = asyncio.create_task(runtime.watch_loop(interval=0.01))
        try:
            gc.collect(2)
            await asyncio.sleep(0.1)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert _count(runtime.GC_PAUSE, generation="2") == before + 1

    def test_a_collection_inside_a_metric_update_does_not_deadlock(self, tmp_path: Path) -> None:
        """With multiprocess metrics every value shares one non-reentrant lock; a collection that starts
        while it is held (here: on every allocation, while new labels are created under it) must not wait
        for it. Before the pauses were only noted in the callback, this hung at once."""
        script = textwrap.dedent("""
            import gc
            from prometheus_client import Counter
            from aiaas.kernel import runtime
            runtime.watch_gc()
            c = Counter("deadlock_probe_total", "labels made under the lock", ["n"])
            gc.set_threshold(1)
            for i in range(2000):
                c.labels(str(i)).inc()
            gc.set_threshold(700)
            print(runtime.record_gc_pauses())
        """)
        env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
        try:
            done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                  timeout=30, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail("a collection inside prometheus-client's lock deadlocked the process")
        assert done.returncode == 0, done.stderr[-2000:]
        assert int(done.stdout.strip()) > 100  # the collections happened, and were recorded after


class TestLoopLag:
    async def test_a_handler_that_holds_the_loop_shows_as_lag(self) -> None:
        before_total = _count(runtime.LOOP_LAG)
        before_fast = _max_bucket_le(runtime.LOOP_LAG, 0.01)
        task = asyncio.create_task(runtime.watch_loop(interval=0.01))
        try:
            await asyncio.sleep(0.05)
            time.sleep(0.06)  # holding the loop on purpose
            await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        samples = _count(runtime.LOOP_LAG) - before_total
        slow = samples - (_max_bucket_le(runtime.LOOP_LAG, 0.01) - before_fast)
        assert samples >= 3
        assert slow >= 1  # the 60 ms hold: at least one sample far past 10 ms
        assert runtime.LOOP_LAG_MAX._value.get() >= 0.04


class TestFreeze:
    def test_live_objects_leave_the_collectors_reach(self) -> None:
        held = ["a list the collector tracks"]  # alive at the freeze, so frozen with the rest
        assert gc.is_tracked(held)
        try:
            frozen = runtime.freeze_heap()
            # (Other threads may free frozen objects at once, so the count only ever falls after it.)
            assert frozen > 1000 and 0 < gc.get_freeze_count() <= frozen
            # Frozen objects are in no generation the collector walks.
            assert not any(o is held for o in gc.get_objects())
        finally:
            gc.unfreeze()

    async def test_the_heap_is_frozen_again_after_warm_up(self) -> None:
        try:
            gc.freeze()
            before = gc.get_freeze_count()
            warm_up = [[i] for i in range(5000)]  # what first requests build and keep, after the first freeze
            assert all(gc.is_tracked(o) for o in warm_up[:3])
            await runtime.refreeze_after((0.01, 0.02))
            assert gc.get_freeze_count() >= before + 5000
            assert not any(o is warm_up[0] for o in gc.get_objects())
        finally:
            gc.unfreeze()
