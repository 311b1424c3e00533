"""Shutdown never waits on a background task that ignores its cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from aiaas.entrypoints.bootstrap import cancel_bounded


async def _stubborn(started: asyncio.Event, release: asyncio.Event) -> None:
    started.set()
    while not release.is_set():  # swallows every cancellation, as a library's connect loop can
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)


async def test_a_task_that_swallows_cancellation_is_abandoned_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_stubborn(started, release), name="stubborn")
    await started.wait()
    await asyncio.wait_for(cancel_bounded("stubborn job", task, timeout=0.2), 5)
    assert not task.done()
    assert "stubborn job ignored its cancellation" in caplog.text
    release.set()  # let it end, so the test's loop is left clean
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.done()


async def test_a_well_behaved_task_is_cancelled_and_awaited() -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await cancel_bounded("sleeper", task, timeout=5)
    assert task.cancelled()
    await cancel_bounded("nothing", None)
    await cancel_bounded("done already", task)
