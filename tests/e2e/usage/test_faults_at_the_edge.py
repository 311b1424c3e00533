"""Faults injected at every await of the inference edge, on the real path: a streamer's Container (real
PostgreSQL, Redis, RabbitMQ, the aiohttp upstream client) and a fake upstream over loopback.

Whatever fails (the client's ``send`` at each message, its ``receive``, the upstream stream at each read,
the accounting, or a cancellation at any loop step, before the first byte, while a whole answer is
generated or mid-stream), the upstream connection is given back: the client's pool is back to zero
requests in use the moment the request returns, and every request is accounted exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from aiaas.entrypoints import streamer
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference.schemas import DeploymentSpec, ModelSpec
from aiaas.inference.service import catalog as catalog_service
from aiaas.inference.service.calls import Outcome
from aiaas.kernel.config import Settings
from e2e.inference.conftest import with_thread
from e2e.usage.conftest import CHAT, make_org
from fake_upstream import FakeUpstream

pytestmark = pytest.mark.e2e

SLOW = "faults/slow-first-byte"
STREAM_SLOW = "faults/slow-stream"


class Injected(RuntimeError):
    """The fault this test injects."""


async def _seed_slow_models(settings: Settings, up: FakeUpstream) -> None:
    container = Container(settings, role="api")
    try:
        async with container.db.unit_of_work("inference") as session:
            existing = {m.name for m in await catalog_service.list_models(session=session)}
            for name, upstream_model in ((SLOW, "slow-first-byte"), (STREAM_SLOW, "slow-stream")):
                if name not in existing:
                    dep = DeploymentSpec(name="u", provider="openai", upstream_model=upstream_model,
                                         base_url=up.base_url)
                    await catalog_service.create_model(session=session, spec=ModelSpec(
                        name=name, capabilities=["chat", "completions"], deployments=[dep]))
        await container.catalog.refresh_models([SLOW, STREAM_SLOW])
    finally:
        await container.redis.aclose()
        await container.db.dispose()


@pytest.fixture
async def edge(settings: Settings, usage_upstream: FakeUpstream) -> AsyncIterator[tuple[Container, Any, str]]:
    """A started streamer Container, its ASGI app (the edge in front of Litestar) and an API key."""
    with_thread(_seed_slow_models, settings, usage_upstream)
    org = make_org(settings)
    container = Container(settings, role="streamer")
    await container.start()
    try:
        yield container, streamer.create_app(container), org.keys["member"].secret
    finally:
        await container.stop()


class Client:
    """One ASGI request: ``send`` and ``receive`` as a server hands them over, with faults on demand.

    ``disconnect_after``: the client leaves once that many messages were sent to it (0: right after its
    body, before any byte of the answer).
    """

    def __init__(self, body: dict[str, Any], *, send_fails_at: int | None = None,
                 receive_fails_at: int | None = None, disconnect_after: int | None = None) -> None:
        self.body = json.dumps(body).encode()
        self.sent: list[dict[str, Any]] = []
        self.sends = self.receives = 0
        self.send_fails_at, self.receive_fails_at, self.disconnect_after = send_fails_at, receive_fails_at, \
            disconnect_after
        self.gone = asyncio.Event()
        if disconnect_after == 0:
            self.gone.set()

    async def receive(self) -> dict[str, Any]:
        n, self.receives = self.receives, self.receives + 1
        if n == self.receive_fails_at:
            raise Injected(f"receive #{n}")
        if n == 0:
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()  # as a server does: the next message is the client leaving
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        n, self.sends = self.sends, self.sends + 1
        if n == self.send_fails_at:
            raise Injected(f"send #{n}")
        self.sent.append(message)
        if self.sends == self.disconnect_after:
            self.gone.set()
        await asyncio.sleep(0)  # a real send yields to the loop

    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)


def _scope(key: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
            "root_path": "", "headers": [(b"authorization", f"Bearer {key}".encode()),
                                         (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {"request_id": "req_faults"}}


def _body(model: str, *, stream: bool) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, "max_tokens": 5}


class Accounted:
    """Every ``Gateway.finish`` of the container, by outcome; optionally failing (a fault in accounting)."""

    def __init__(self, container: Container, *, fails: bool = False) -> None:
        gateway = container.gateway
        assert gateway is not None
        self.outcomes: list[Outcome] = []
        real: Callable[..., None] = gateway.finish

        def finish(routed: Any, outcome: Outcome) -> None:
            self.outcomes.append(outcome)
            real(routed, outcome)
            if fails:
                raise Injected("finish")

        gateway.finish = finish  # type: ignore[method-assign]
        self._gateway, self._real = gateway, real

    def restore(self) -> None:
        self._gateway.finish = self._real  # type: ignore[method-assign]


async def _serve(app: Any, key: str, client: Client) -> BaseException | None:
    try:
        await app(_scope(key), client.receive, client.send)
    except BaseException as exc:
        return exc
    finally:
        client.gone.set()
    return None


def _idle(container: Container) -> int:
    assert container.upstream_pool is not None
    return container.upstream_pool.in_use()


class TestEveryFaultGivesTheConnectionBack:
    @pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
    async def test_a_send_that_fails_at_each_message(self, edge: tuple[Container, Any, str], stream: bool) -> None:
        container, app, key = edge
        accounted = Accounted(container)
        clean = Client(_body(CHAT, stream=stream))
        assert await _serve(app, key, clean) is None and clean.status() == 200 and _idle(container) == 0
        assert clean.sends >= (3 if stream else 2)
        for at in range(clean.sends):
            client = Client(_body(CHAT, stream=stream), send_fails_at=at)
            await _serve(app, key, client)
            assert _idle(container) == 0, f"send #{at} left an upstream connection in use"
        assert len(accounted.outcomes) == clean.sends + 1  # each request accounted, once
        assert all(o.status == "error" for o in accounted.outcomes[1:])
        accounted.restore()

    @pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
    async def test_a_receive_that_fails(self, edge: tuple[Container, Any, str], stream: bool) -> None:
        container, app, key = edge
        accounted = Accounted(container)
        failed = Client(_body(CHAT, stream=stream), receive_fails_at=0)  # reading the body fails
        assert await _serve(app, key, failed) is None and failed.status() == 500
        assert _idle(container) == 0 and accounted.outcomes == []  # refused before the caller was known
        watched = Client(_body(CHAT, stream=stream), receive_fails_at=1)  # the disconnect watcher's read fails
        assert await _serve(app, key, watched) is None and watched.status() == 200
        assert _idle(container) == 0 and [o.status for o in accounted.outcomes] == ["ok"]
        accounted.restore()

    @pytest.mark.parametrize("model,stream,after", [
        (SLOW, False, 0), (STREAM_SLOW, True, 0), (STREAM_SLOW, True, 1), (STREAM_SLOW, True, 4)],
        ids=["whole-before-first-byte", "stream-before-first-byte", "stream-after-the-start", "mid-stream"])
    async def test_a_client_that_leaves(self, edge: tuple[Container, Any, str], model: str, stream: bool,
                                        after: int, usage_upstream: FakeUpstream) -> None:
        container, app, key = edge
        accounted = Accounted(container)
        loop = asyncio.get_running_loop()
        started = loop.time()
        client = Client(_body(model, stream=stream), disconnect_after=after)
        assert await _serve(app, key, client) is None
        assert loop.time() - started < usage_upstream.slow_seconds  # the upstream's wait was cut short
        assert _idle(container) == 0
        assert [(o.status, o.http_status) for o in accounted.outcomes] == [
            ("cancelled", 499 if after == 0 else 200)]
        accounted.restore()

    async def test_accounting_that_fails(self, edge: tuple[Container, Any, str]) -> None:
        container, app, key = edge
        accounted = Accounted(container, fails=True)
        for stream in (True, False):
            assert isinstance(await _serve(app, key, Client(_body(CHAT, stream=stream))), Injected)
            assert _idle(container) == 0
        assert [o.status for o in accounted.outcomes] == ["ok", "ok"]
        accounted.restore()

    @pytest.mark.parametrize("model,stream", [(CHAT, True), (CHAT, False), (STREAM_SLOW, True), (SLOW, False)],
                             ids=["stream", "whole", "slow-stream", "slow-first-byte"])
    async def test_a_cancellation_at_every_step(self, edge: tuple[Container, Any, str], model: str, stream: bool,
                                                usage_upstream: FakeUpstream) -> None:
        """The server cancels the request (it is shutting down) after k turns of the loop, for k from 0 to
        past the turn where the request ends (or, upstream slow, waits on the upstream): every await of
        the edge on the way sees a cancellation."""
        container, app, key = edge
        accounted = Accounted(container)
        # The sweep is by loop turns, and how many turns an I/O wait spins depends on the machine's load at
        # that moment: a sweep that never landed inside the upstream call is made again (at most 3 times).
        for _attempt in range(3):
            # How many turns a warm request takes when nothing cancels it (to its end, or to the upstream's wait);
            # the first one also fills the caches.
            for _ in range(2):
                probe = asyncio.create_task(_serve(app, key, Client(_body(model, stream=stream))))
                seen, turns = len(usage_upstream.requests), 0
                while not probe.done() and (model == CHAT or len(usage_upstream.requests) == seen):
                    await asyncio.sleep(0)
                    turns += 1
                if not probe.done():
                    probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
                assert _idle(container) == 0
            cancelled = 0
            # Past the end (a few requests that finish first), or, upstream slow, well into its wait.
            last = turns + turns // 4 + 2 if model == CHAT else max(2 * turns, 20)
            # Every turn of the first 120 (where the edge's own awaits are: admission, routing, the relay's first
            # reads), then about 100 more spread to the end. Under load a probe spins many turns waiting on I/O,
            # and a uniform stride alone could then step over every turn where the request is in flight.
            for steps in sorted(set(range(min(last, 120))) | set(range(0, last, max(1, last // 100)))):
                client = Client(_body(model, stream=stream))
                task = asyncio.create_task(_serve(app, key, client))
                for _ in range(steps):
                    await asyncio.sleep(0)
                ended = task.done()
                task.cancel()
                (outcome,) = await asyncio.gather(task, return_exceptions=True)
                if ended:
                    assert outcome is None and client.status() == 200
                else:
                    cancelled += 1
                    assert isinstance(outcome, asyncio.CancelledError), f"a cancellation after {steps} turns was lost"
                assert _idle(container) == 0, f"a cancellation after {steps} loop turns left a connection in use"
            assert cancelled > 5 and _idle(container) == 0, (turns, last, cancelled)
            if "cancelled" in {o.status for o in accounted.outcomes}:
                break
        statuses = {o.status for o in accounted.outcomes}
        assert "cancelled" in statuses and statuses <= {"cancelled", "ok"}
        accounted.restore()
