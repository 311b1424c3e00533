"""N requests through a running streamer while its RabbitMQ connection is cut and restored and the worker
is SIGKILLed and restarted: the ledger ends with exactly N rows and the upstream's exact token sums.

The streamer reaches the shared RabbitMQ through a loopback TCP proxy that the test cuts (every
connection reset, new ones refused) and restores; the shared node is never touched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.redis import Keys
from e2e.usage.conftest import (
    CHAT,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    fast_settings,
    make_org,
    start_streamer,
    start_worker,
    stop_worker,
)
from fake_upstream import FakeUpstream
from support import TcpProxy
from usage_support import ledger_totals

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N = 120
MSG = [{"role": "user", "content": "Count me exactly once."}]


async def _rows(db: Database, org: str, *, at_least: int, timeout: float = 60.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    rows = 0
    while loop.time() < deadline:
        rows = (await ledger_totals(db, org))[0]
        if rows >= at_least:
            return rows
        await asyncio.sleep(0.05)
    return rows


async def _spilled(redis: Any, stream: str, timeout: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await redis.xlen(stream) > 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def _send(client: openai.AsyncOpenAI, i: int) -> None:
    if i % 3 == 0:  # streamed, usage not asked for: the gateway still accounts the upstream's usage
        stream = await client.chat.completions.create(model=CHAT, messages=MSG, max_tokens=8,  # type: ignore[arg-type]
                                                      stream=True)
        async for _ in stream:
            pass
    else:
        r = await client.chat.completions.create(model=CHAT, messages=MSG, max_tokens=8)  # type: ignore[arg-type]
        assert r.usage is not None and r.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS


class TestLedgerThroughStreamerFaults:
    async def test_broker_cut_and_sigkilled_worker_count_every_request_once(
        self, settings: Settings, session_env: dict[str, str], usage_upstream: FakeUpstream,
        redis_client: Any,
    ) -> None:
        amqp = urlsplit(settings.amqp_url)
        proxy = TcpProxy(amqp.port or 5672, amqp.hostname or "127.0.0.1")
        await proxy.start()
        proxied_url = amqp._replace(netloc=f"{amqp.username}:{amqp.password}@127.0.0.1:{proxy.port}").geturl()
        streamer = start_streamer(fast_settings(settings, amqp_url=proxied_url))
        org = make_org(settings)
        db = Database(settings, role="test")
        client = openai.AsyncOpenAI(base_url=streamer.base_url, api_key=org.keys["member"].secret, max_retries=0,
                                    timeout=60)
        workers: list[subprocess.Popen[bytes]] = [start_worker(session_env)]
        sent = 0

        async def batch(n: int) -> None:
            nonlocal sent
            await asyncio.gather(*(_send(client, sent + i) for i in range(n)))
            sent += n

        try:
            # 1. Healthy: requests flow to the ledger.
            await batch(30)
            assert await _rows(db, org.id, at_least=1) >= 1

            # 2. RabbitMQ unreachable from the streamer: inference keeps answering, events spill to Redis.
            await proxy.cut()
            await batch(30)
            assert await _spilled(redis_client, Keys(settings.redis_prefix)("inference", "events", "spill"))

            # 3. The worker is SIGKILLed mid-run (unacked messages go back to the queue).
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            await batch(30)

            # 4. RabbitMQ back and a fresh worker: the spill replays, redeliveries change nothing.
            await proxy.restore()
            workers.append(start_worker(session_env))
            await batch(N - sent)
            rows = await _rows(db, org.id, at_least=N, timeout=60)
            await asyncio.sleep(1.0)  # anything counted twice would show up now
            totals = await ledger_totals(db, org.id)
        finally:
            for w in workers:
                stop_worker(w)
            await client.close()
            streamer.stop()
            await proxy.close()
            await db.dispose()
        assert sent == N
        assert rows == N
        assert totals == (N, N * PROMPT_TOKENS, N * COMPLETION_TOKENS, N * (PROMPT_TOKENS + COMPLETION_TOKENS))
        assert streamer.container.publisher.dropped == 0
