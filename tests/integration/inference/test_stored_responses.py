"""Stored Responses API responses against the real PostgreSQL: conversations rebuilt by walking
``previous_response_id``, every read scoped to its org, expiry and pruning, input-item pages."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from aiaas.inference.service import stored_responses
from aiaas.inference.service.stored_responses import ResponseStore
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.errors import BadRequest, NotFound


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    d = Database(settings, role="test")
    yield d
    await d.dispose()


def _store(db: Database, days: int = 30) -> ResponseStore:
    return ResponseStore(lambda: db.unit_of_work("inference"), retention_days=days)


def _response(rid: str, previous: str | None, text_out: str) -> dict[str, Any]:
    return {"id": rid, "object": "response", "previous_response_id": previous, "status": "completed",
            "output": [{"type": "message", "id": f"msg_{rid}", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text_out, "annotations": []}]}]}


def _input(rid: str, said: str) -> list[dict[str, Any]]:
    return [{"type": "message", "id": f"in_{rid}", "role": "user",
             "content": [{"type": "input_text", "text": said}]}]


def _rid() -> str:
    return f"resp_{uuid.uuid4().hex}"


async def _chain(store: ResponseStore, org: str, n: int) -> list[str]:
    ids: list[str] = []
    for i in range(n):
        rid = _rid()
        await store.save(org_id=org, key_id=None, response=_response(rid, ids[-1] if ids else None, f"a{i}"),
                         input_items=_input(rid, f"q{i}"))
        ids.append(rid)
    return ids


def _texts(items: list[dict[str, Any]]) -> list[str]:
    return [part["text"] for item in items for part in item["content"]]


class TestConversation:
    async def test_the_chain_is_rebuilt_oldest_first(self, db: Database) -> None:
        store, org = _store(db), str(uuid.uuid4())
        ids = await _chain(store, org, 4)
        assert _texts(await store.history(org_id=org, response_id=ids[-1])) == \
            ["q0", "a0", "q1", "a1", "q2", "a2", "q3", "a3"]
        assert _texts(await store.history(org_id=org, response_id=ids[1])) == ["q0", "a0", "q1", "a1"]

    async def test_another_orgs_response_is_not_there(self, db: Database) -> None:
        store, org = _store(db), str(uuid.uuid4())
        ids = await _chain(store, org, 2)
        other = str(uuid.uuid4())
        with pytest.raises(NotFound) as err:
            await store.history(org_id=other, response_id=ids[-1])
        assert err.value.param == "previous_response_id"
        with pytest.raises(NotFound):
            await store.get(org_id=other, response_id=ids[0])
        with pytest.raises(NotFound):
            await store.delete(org_id=other, response_id=ids[0])
        assert (await store.get(org_id=org, response_id=ids[0]))["id"] == ids[0]

    async def test_a_chain_stops_at_a_deleted_link(self, db: Database) -> None:
        store, org = _store(db), str(uuid.uuid4())
        ids = await _chain(store, org, 3)
        assert (await store.delete(org_id=org, response_id=ids[1]))["deleted"] is True
        assert _texts(await store.history(org_id=org, response_id=ids[2])) == ["q2", "a2"]

    async def test_a_stored_response_is_written_once(self, db: Database) -> None:
        store, org = _store(db), str(uuid.uuid4())
        rid = _rid()
        await store.save(org_id=org, key_id=None, response=_response(rid, None, "first"), input_items=[])
        await store.save(org_id=org, key_id=None, response=_response(rid, None, "second"), input_items=[])
        got = await store.get(org_id=org, response_id=rid)
        assert got["output"][0]["content"][0]["text"] == "first"

    @pytest.mark.parametrize("bad", ["", "x" * 65, "resp_\x00", "resp_' OR 1=1 --"])
    async def test_ids_that_cannot_be_ours_are_simply_not_found(self, db: Database, bad: str) -> None:
        with pytest.raises(NotFound):
            await _store(db).get(org_id=str(uuid.uuid4()), response_id=bad)


class TestRetention:
    async def test_an_expired_response_is_gone_and_pruned(self, db: Database) -> None:
        store, org = _store(db), str(uuid.uuid4())
        ids = await _chain(store, org, 2)
        async with db.unit_of_work("inference") as s:
            await s.execute(text("UPDATE inference.stored_responses SET expires_at = :t WHERE id = :i"),
                            {"t": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1), "i": ids[0]})
        with pytest.raises(NotFound):
            await store.get(org_id=org, response_id=ids[0])
        assert _texts(await store.history(org_id=org, response_id=ids[1])) == ["q1", "a1"]
        assert await stored_responses.prune_expired(lambda: db.unit_of_work("inference")) >= 1
        async with db.unit_of_work("inference") as s:
            left = (await s.execute(text("SELECT id FROM inference.stored_responses WHERE id = ANY(:i)"),
                                    {"i": ids})).scalars().all()
        assert left == [ids[1]]

    async def test_retention_sets_the_expiry(self, db: Database) -> None:
        store, org = _store(db, days=3), str(uuid.uuid4())
        (rid,) = await _chain(store, org, 1)
        async with db.unit_of_work("inference") as s:
            created, expires = (await s.execute(text(
                "SELECT created_at, expires_at FROM inference.stored_responses WHERE id = :i"), {"i": rid})).one()
        assert expires - created == dt.timedelta(days=3)


class TestInputItems:
    async def test_pages_newest_first_by_default(self, db: Database) -> None:
        store, org = _store(db), str(uuid.uuid4())
        rid = _rid()
        items = [{"type": "message", "id": f"msg_{i}", "role": "user",
                  "content": [{"type": "input_text", "text": str(i)}]} for i in range(5)]
        await store.save(org_id=org, key_id=None, response=_response(rid, None, "x"), input_items=items)
        page = await store.input_items(org_id=org, response_id=rid, limit=2)
        assert [i["id"] for i in page["data"]] == ["msg_4", "msg_3"] and page["has_more"] is True
        assert (page["first_id"], page["last_id"]) == ("msg_4", "msg_3")
        rest = await store.input_items(org_id=org, response_id=rid, limit=10, after="msg_3")
        assert [i["id"] for i in rest["data"]] == ["msg_2", "msg_1", "msg_0"] and rest["has_more"] is False
        asc = await store.input_items(org_id=org, response_id=rid, order="asc", limit=1)
        assert [i["id"] for i in asc["data"]] == ["msg_0"]
        with pytest.raises(BadRequest):
            await store.input_items(org_id=org, response_id=rid, after="msg_nope")
        with pytest.raises(BadRequest):
            await store.input_items(org_id=org, response_id=rid, limit=0)
