"""Helpers of the usage tests: completion events and ledger totals."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.db import Database


def completion(org_id: str, *, prompt: int = 10, completion_tokens: int = 5, **kw: Any) -> CompletionRecorded:
    """A completion event of ``org_id`` with the given token counts."""
    fields: dict[str, Any] = {
        "request_id": f"req_{uuid.uuid4().hex}", "org_id": org_id, "user_id": str(uuid.uuid4()),
        "key_id": str(uuid.uuid4()), "endpoint": "chat.completions", "model": "test-model", "deployment": "d1",
        "provider": "fake", "prompt_tokens": prompt, "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens, "ttfb_ms": 12.5, "latency_ms": 40.0, "status": "ok",
        "http_status": 200, "finish_reason": "stop",
    }
    fields.update(kw)
    return CompletionRecorded(**fields)


async def ledger_totals(db: Database, org_id: str) -> tuple[int, int, int, int]:
    """(rows, prompt, completion, total) tokens of an org in the ledger."""
    async with db.unit_of_work("usage") as s:
        row = (await s.execute(text(
            "SELECT count(*), coalesce(sum(prompt_tokens),0), coalesce(sum(completion_tokens),0), "
            "coalesce(sum(total_tokens),0) FROM usage.requests WHERE org_id = :o"), {"o": org_id})).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])
