"""The embedded model end to end, and the completion events every request publishes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import msgspec
import openai
import pytest

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.broker import exchange_name
from e2e.inference.conftest import Running, with_thread

pytestmark = pytest.mark.e2e

MSG = [{"role": "user", "content": "Say hello."}]


def client(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.base_url, api_key=running.keys["member"], max_retries=0, timeout=120)


class TestEmbeddedModel:
    def test_chat(self, running: Running) -> None:
        r = client(running).chat.completions.create(model="local/gemma-3-270m", messages=MSG, max_tokens=8)
        assert r.object == "chat.completion"
        assert r.model == "local/gemma-3-270m"
        assert r.usage is not None and r.usage.prompt_tokens > 0
        # The model really generated: text and counted completion tokens, not an empty turn.
        assert r.usage.completion_tokens > 0
        assert (r.choices[0].message.content or "").strip()
        assert r.choices[0].finish_reason in {"stop", "length"}

    def test_stream_with_usage(self, running: Running) -> None:
        chunks = list(client(running).chat.completions.create(
            model="local/gemma-3-270m", messages=MSG, max_tokens=8, stream=True,
            stream_options={"include_usage": True}))
        assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
        assert any(c.choices and c.choices[0].finish_reason for c in chunks)

    def test_completions(self, running: Running) -> None:
        r = client(running).completions.create(model="local/gemma-3-270m", prompt="The sky is", max_tokens=4)
        assert r.object == "text_completion"
        assert r.usage is not None and r.usage.completion_tokens <= 4

    def test_embeddings_need_an_upstream(self, running: Running) -> None:
        with pytest.raises(openai.BadRequestError):
            client(running).embeddings.create(model="local/gemma-3-270m", input="x")


async def _collect(running: Running, trigger: Any, request_ids: set[str]) -> dict[str, CompletionRecorded]:
    """The events of exactly the requests ``trigger`` makes (by request id): the streamer is shared, so other
    tests' events may pass through the same exchange meanwhile."""
    conn = await aio_pika.connect(running.settings.amqp_url)
    try:
        ch = await conn.channel()
        ex = await ch.declare_exchange(exchange_name(running.settings.broker_prefix, "inference"),
                                       aio_pika.ExchangeType.TOPIC, durable=True)
        q = await ch.declare_queue(f"test-{uuid.uuid4().hex}", exclusive=True, auto_delete=True)
        await q.bind(ex, routing_key=CompletionRecorded.routing_key)
        await asyncio.to_thread(trigger)
        got: dict[str, CompletionRecorded] = {}
        async with asyncio.timeout(60):
            async with q.iterator() as it:
                async for message in it:
                    await message.ack()
                    event = msgspec.json.decode(message.body, type=CompletionRecorded)
                    if event.request_id in request_ids:
                        got[event.request_id] = event
                    if len(got) == len(request_ids):
                        break
        return got
    finally:
        await conn.close()


class TestCompletionEvents:
    def test_one_event_per_request_with_every_field(self, running: Running) -> None:
        c = openai.OpenAI(base_url=running.base_url, api_key=running.keys["member"], max_retries=0, timeout=20)
        rid = {name: f"req-events-{name}-{uuid.uuid4().hex}" for name in ("ok", "counted", "missing")}

        def trigger() -> None:
            c.chat.completions.create(model="test/chat", messages=MSG, extra_headers={"x-request-id": rid["ok"]})
            list(c.chat.completions.create(model="test/no-usage", messages=MSG, stream=True,
                                           extra_headers={"x-request-id": rid["counted"]}))
            with pytest.raises(openai.NotFoundError):
                c.chat.completions.create(model="nope/none", messages=MSG,
                                          extra_headers={"x-request-id": rid["missing"]})

        events = with_thread(_collect, running, trigger, set(rid.values()))
        assert set(events) == set(rid.values())  # an event for every request, the failed one too
        ok = events[rid["ok"]]
        assert ok.model == "test/chat"
        ids = running.ids
        assert (ok.org_id, ok.user_id, ok.key_id) == (ids.org_id, ids.user_ids["member"], ids.key_ids["member"])
        assert ok.endpoint == "chat.completions" and ok.deployment == "a" and ok.provider == "openai"
        assert (ok.prompt_tokens, ok.completion_tokens, ok.total_tokens) == (7, 3, 10)
        assert ok.status == "ok" and ok.http_status == 200 and ok.finish_reason == "stop"
        assert ok.ttfb_ms is not None and ok.latency_ms >= ok.ttfb_ms
        assert ok.started_at is not None
        counted = events[rid["counted"]]
        assert counted.model == "test/no-usage" and counted.stream and counted.status == "ok"
        assert counted.completion_tokens == 3 and counted.prompt_tokens > 0  # counted: no upstream usage
        missing = events[rid["missing"]]
        assert missing.model == "nope/none"
        assert missing.status == "error" and missing.http_status == 404 and missing.error_type == "model_not_found"
