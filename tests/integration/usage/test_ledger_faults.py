"""No event is lost or counted twice while RabbitMQ goes away and a worker is SIGKILLed mid-batch.

RabbitMQ outage: the publisher reaches the shared RabbitMQ through a loopback TCP proxy that the test
cuts (every connection reset, new ones refused) and restores — an outage from the app's view that leaves
the shared node alone. The worker is a real ``aiaas serve --role worker`` process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import msgspec
import pytest

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.broker import Broker, Subscription
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.publisher import EventPublisher
from aiaas.kernel.redis import Keys
from support import TcpProxy, free_port
from usage_support import completion, ledger_totals

pytestmark = pytest.mark.slow


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**env, "AIAAS_WORKER_PORT": str(free_port()), "AIAAS_USAGE_LEDGER_BATCH_SIZE": "50",
           "AIAAS_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "aiaas", "serve", "--role", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _wait_rows(db: Database, org: str, *, at_least: int, timeout: float = 60.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    rows = 0
    while loop.time() < deadline:
        rows = (await ledger_totals(db, org))[0]
        if rows >= at_least:
            return rows
        await asyncio.sleep(0.01)
    return rows


class TestLedgerSurvivesFaults:
    async def test_broker_outage_and_sigkilled_worker_lose_nothing(
        self, settings: Settings, session_env: dict[str, str], redis_client: object, db: Database
    ) -> None:
        amqp = urlsplit(settings.amqp_url)
        proxy = TcpProxy(amqp.port or 5672, amqp.hostname or "127.0.0.1")
        await proxy.start()
        proxied = msgspec.structs.replace(
            settings, amqp_url=amqp._replace(netloc=f"{amqp.username}:{amqp.password}@127.0.0.1:{proxy.port}").geturl())
        broker = Broker(proxied)
        await broker.connect()
        publisher = EventPublisher(broker, redis=redis_client, keys=Keys(settings.redis_prefix),  # type: ignore[arg-type]
                                   publish_timeout=1.0, replay_interval=0.1)
        # The queue exists before the first event, as it does in production once a worker has run.
        direct = Broker(settings)
        sub = Subscription(consumer="usage", source="inference", routing_keys=[CompletionRecorded.routing_key],
                           handler=None)  # type: ignore[arg-type]
        ch = await (await direct.connect()).channel()
        await direct.declare_subscription(sub, ch)

        org = str(uuid.uuid4())
        third = 600
        events = [completion(org, prompt=1 + i % 17, completion_tokens=i % 29) for i in range(3 * third)]
        workers: list[subprocess.Popen[bytes]] = []
        try:
            # 1. RabbitMQ up, no worker yet: a backlog builds in the queue.
            for ev in events[:third]:
                publisher.emit("inference", ev)
            await publisher.flush()

            # 2. RabbitMQ unreachable: events spill to Redis.
            await proxy.cut()
            for ev in events[third: 2 * third]:
                publisher.emit("inference", ev)
            await publisher.flush(timeout=30)
            assert await publisher.spilled_backlog("inference") > 0

            # 3. A worker starts on the backlog and is SIGKILLed as soon as its first batches commit.
            workers.append(_start_worker(session_env))
            seen = await _wait_rows(db, org, at_least=1)
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            assert 0 < seen < 3 * third

            # 4. RabbitMQ back: the spill replays in order, new events queue behind it.
            await proxy.restore()
            for ev in events[2 * third:]:
                publisher.emit("inference", ev)
            assert await publisher.drain_spill(timeout=60)

            # 5. A fresh worker takes over the unacked and the new messages.
            workers.append(_start_worker(session_env))
            rows = await _wait_rows(db, org, at_least=len(events), timeout=90)
            await asyncio.sleep(1.0)  # anything redelivered twice would show up now
            totals = await ledger_totals(db, org)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
                    w.wait(timeout=30)
            await publisher.close()
            await broker.close()
            await ch.close()
            await direct.close()
            await proxy.close()
        assert rows == len(events)
        assert totals == (len(events), sum(e.prompt_tokens for e in events),
                          sum(e.completion_tokens for e in events), sum(e.total_tokens for e in events))
        assert publisher.dropped == 0
