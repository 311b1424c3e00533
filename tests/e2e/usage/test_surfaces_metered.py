"""The Responses and Messages APIs are metered like chat: through a running streamer and a real worker, the
ledger's rows for ``responses`` and ``messages`` hold exactly the tokens the ``openai`` and ``anthropic``
SDKs reported, and ``count_tokens`` is recorded as free."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import anthropic
import openai
import pytest
from sqlalchemy import text

from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from e2e.usage.conftest import CHAT, make_org, start_streamer, start_worker, stop_worker
from fake_upstream import FakeUpstream

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "Meter me."}]


async def _by_endpoint(db: Database, org: str, *, rows: int, timeout: float = 60.0) -> dict[str, tuple[int, int, int]]:
    """endpoint -> (rows, prompt tokens, completion tokens) of the org's ledger, once it has ``rows`` rows."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got: dict[str, tuple[int, int, int]] = {}
    while loop.time() < deadline:
        async with db.unit_of_work("usage") as s:
            result = await s.execute(text(
                "SELECT endpoint, count(*), sum(prompt_tokens), sum(completion_tokens) FROM usage.requests "
                "WHERE org_id = :o GROUP BY endpoint"), {"o": org})
            got = {e: (int(n), int(p), int(c)) for e, n, p, c in result.all()}
        if sum(n for n, _, _ in got.values()) >= rows:
            return got
        await asyncio.sleep(0.1)
    return got


def _calls(base_url: str, key: str) -> dict[str, list[tuple[int, int]]]:
    """Four calls on each surface (plain and streamed); the (input, output) tokens each SDK reported."""
    o = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)
    a = anthropic.Anthropic(base_url=base_url.removesuffix("/v1"), api_key=key, max_retries=0, timeout=60)
    seen: dict[str, list[tuple[int, int]]] = {"responses": [], "messages": []}
    for _ in range(2):
        r = o.responses.create(model=CHAT, input="Meter me.")
        assert r.usage is not None
        seen["responses"].append((r.usage.input_tokens, r.usage.output_tokens))
        with o.responses.stream(model=CHAT, input="Meter me.") as s:
            final = s.get_final_response()
        assert final.usage is not None
        seen["responses"].append((final.usage.input_tokens, final.usage.output_tokens))
        m = a.messages.create(model=CHAT, max_tokens=32, messages=HI)  # type: ignore[arg-type]
        seen["messages"].append((m.usage.input_tokens, m.usage.output_tokens))
        with a.messages.stream(model=CHAT, max_tokens=32, messages=HI) as ms:  # type: ignore[arg-type]
            message = ms.get_final_message()
        seen["messages"].append((message.usage.input_tokens, message.usage.output_tokens))
    assert a.messages.count_tokens(model=CHAT, messages=HI).input_tokens > 0  # type: ignore[arg-type]
    return seen


class TestSurfacesMetered:
    async def test_ledger_rows_equal_what_the_sdks_reported(
        self, settings: Settings, session_env: dict[str, str], usage_upstream: FakeUpstream,
    ) -> None:
        org = make_org(settings)
        streamer = start_streamer(settings)
        worker: subprocess.Popen[bytes] = start_worker(session_env)
        db = Database(settings, role="test")
        try:
            seen = await asyncio.to_thread(_calls, streamer.base_url, org.keys["member"].secret)
            ledger = await _by_endpoint(db, org.id, rows=9)
        finally:
            await db.dispose()
            stop_worker(worker)
            streamer.stop()
        expected: dict[str, Any] = {
            endpoint: (len(pairs), sum(p for p, _ in pairs), sum(c for _, c in pairs))
            for endpoint, pairs in seen.items()}
        assert ledger["responses"] == expected["responses"]
        assert ledger["messages"] == expected["messages"]
        assert ledger["messages"][1:] == (4 * 7, 4 * 3)  # the upstream's own counts, not estimates
        assert ledger["messages.count_tokens"] == (1, 0, 0)  # recorded, and free
