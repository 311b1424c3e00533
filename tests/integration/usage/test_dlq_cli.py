"""``aiaas dlq list|replay|purge`` against the real RabbitMQ."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import aio_pika

from aiaas.kernel.config import Settings


async def _dead_letter(settings: Settings, message_id: str) -> None:
    from aiaas.kernel.broker import declared_names

    declared_names.update({("queue", f"{settings.broker_prefix}aiaas.usage.from.inference"),
                           ("queue", f"{settings.broker_prefix}aiaas.usage.from.inference.dlq"),
                           ("exchange", f"{settings.broker_prefix}aiaas.usage.from.inference.dlx"),
                           ("exchange", f"{settings.broker_prefix}aiaas.inference")})
    qname = f"{settings.broker_prefix}aiaas.usage.from.inference.dlq"
    conn = await aio_pika.connect(settings.amqp_url)
    ch = await conn.channel()
    await ch.declare_queue(qname, durable=True, arguments={"x-queue-type": settings.broker_queue_type})
    await ch.default_exchange.publish(aio_pika.Message(b'{"bad": true}', message_id=message_id), routing_key=qname)
    await conn.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiaas", "dlq", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


class TestDlqCli:
    async def test_list_replay_purge(self, settings: Settings, session_env: dict[str, str]) -> None:
        mid = f"dead-{uuid.uuid4()}"
        r = _cli(session_env, "purge", "--yes", "--queue", "usage.from.inference")
        assert r.returncode == 0, r.stderr
        await _dead_letter(settings, mid)
        r = _cli(session_env, "list", "--queue", "usage.from.inference")
        assert r.returncode == 0, r.stderr
        listed = [json.loads(line) for line in r.stdout.splitlines()]
        assert [m["message_id"] for m in listed] == [mid]
        # Listing leaves it there; purge removes it.
        r = _cli(session_env, "purge", "--yes")
        assert "purged 1" in r.stdout
        assert _cli(session_env, "list").stdout.strip() == ""
        assert _cli(session_env, "list", "--queue", "nope.from.nothing").returncode == 2

    async def test_replay_moves_back_to_the_queue(self, settings: Settings, session_env: dict[str, str]) -> None:
        mid = f"dead-{uuid.uuid4()}"
        _cli(session_env, "purge", "--yes")
        await _dead_letter(settings, mid)
        r = _cli(session_env, "replay", "--queue", "usage.from.inference")
        assert "replayed 1" in r.stdout, r.stderr
        # No worker runs here: the message waits in the main queue (a worker would dead-letter it again).
        conn = await aio_pika.connect(settings.amqp_url)
        ch = await conn.channel()
        q = await ch.declare_queue(f"{settings.broker_prefix}aiaas.usage.from.inference", passive=True)
        got = None
        for _ in range(20):
            got = await q.get(fail=False, timeout=5)
            if got is None or got.message_id == mid:
                break
            await got.nack(requeue=True)
        assert got is not None and got.message_id == mid
        await got.ack()
        await conn.close()
