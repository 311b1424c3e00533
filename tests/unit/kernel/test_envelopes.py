"""Envelopes: how the publisher packs drained events and how the broker unpacks them (no broker needed)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.kernel.broker import (
    EnvelopedEvent,
    PoisonMessage,
    _event_id,
    gather_outcomes,
    pack_envelope,
    unpack_envelope,
)
from aiaas.kernel.publisher import EventPublisher, _Pending


def _item(context: str, key: str, n: int) -> _Pending:
    return _Pending(context, key, f"e{n}", msgspec.json.encode({"n": n, "text": "a,b]\"["}), None)


class TestPacking:
    @given(st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8), max_size=3),
                    min_size=1, max_size=20))
    def test_unpacking_gives_back_each_event_byte_for_byte(self, objs: list[dict[str, object]]) -> None:
        bodies = [msgspec.json.encode(o) for o in objs]
        assert unpack_envelope(pack_envelope(bodies)) == bodies

    @pytest.mark.parametrize("body", [b"", b"{}", b"[1,", b"not json", b'{"a": [1]}'])
    def test_a_body_that_is_not_an_array_is_poison(self, body: bytes) -> None:
        with pytest.raises(PoisonMessage, match="not a JSON array"):
            unpack_envelope(body)


class TestEventIds:
    def test_the_event_id_is_read_from_the_body(self) -> None:
        assert _event_id(b'{"a": [1, {"event_id": "no"}], "event_id": "e-1", "z": 2}') == "e-1"

    @pytest.mark.parametrize("body", [b"{}", b"[]", b"nope", b'{"event_id": 5}'])
    def test_none_when_the_body_has_no_string_event_id(self, body: bytes) -> None:
        assert _event_id(body) is None


class TestGrouping:
    def _groups(self, items: list[_Pending], size: int) -> list[list[str]]:
        publisher = EventPublisher(broker=None, envelope_size=size)  # type: ignore[arg-type]
        return [[i.event_id for i in g] for g in publisher._envelopes(items)]

    def test_consecutive_events_of_one_key_share_an_envelope_up_to_the_size(self) -> None:
        items = [_item("inference", "completion.recorded", n) for n in range(7)]
        assert self._groups(items, 3) == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6"]]

    def test_a_change_of_context_or_routing_key_starts_a_new_envelope_and_order_is_kept(self) -> None:
        items = [_item("inference", "a", 0), _item("inference", "a", 1), _item("inference", "b", 2),
                 _item("orgs", "b", 3), _item("orgs", "b", 4), _item("inference", "a", 5)]
        assert self._groups(items, 100) == [["e0", "e1"], ["e2"], ["e3", "e4"], ["e5"]]

    def test_size_one_sends_every_event_alone(self) -> None:
        items = [_item("inference", "a", n) for n in range(3)]
        assert self._groups(items, 1) == [["e0"], ["e1"], ["e2"]]

    @given(st.lists(st.tuples(st.sampled_from(["x", "y"]), st.sampled_from(["a", "b"])), max_size=60),
           st.integers(1, 10))
    def test_every_event_once_in_order_and_no_envelope_mixes_or_overflows(
            self, keys: list[tuple[str, str]], size: int) -> None:
        items = [_item(c, k, n) for n, (c, k) in enumerate(keys)]
        publisher = EventPublisher(broker=None, envelope_size=size)  # type: ignore[arg-type]
        groups = publisher._envelopes(items)
        assert [i for g in groups for i in g] == items
        for g in groups:
            assert 1 <= len(g) <= size
            assert len({(i.context, i.routing_key) for i in g}) == 1


class TestBatchOutcomes:
    """``gather_outcomes``: what a batch handler reports for each of an envelope's events."""

    async def test_each_outcome_in_order_whether_refused_at_once_failed_later_or_done(self) -> None:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []

        def enqueue(message: EnvelopedEvent) -> asyncio.Future[None]:
            n = msgspec.json.decode(message.body)["n"]
            if n == 1:
                raise PoisonMessage("n=1 is malformed")  # refused before joining the batch
            fut: asyncio.Future[None] = loop.create_future()
            futures.append(fut)
            return fut

        async def commit() -> None:  # the consumer's batch: one fails, the others succeed
            await asyncio.sleep(0)
            futures[1].set_exception(RuntimeError("n=2 failed"))
            for fut in (futures[0], futures[2]):
                fut.set_result(None)

        messages = [EnvelopedEvent(msgspec.json.encode({"n": n}), None) for n in range(4)]
        task = asyncio.create_task(commit())
        out = await gather_outcomes(enqueue, messages)
        await task
        assert out[0] is None and out[3] is None
        assert isinstance(out[1], PoisonMessage)
        assert isinstance(out[2], RuntimeError) and "n=2" in str(out[2])

    async def test_an_envelope_whose_every_event_is_refused_waits_for_nothing(self) -> None:
        def enqueue(message: EnvelopedEvent) -> asyncio.Future[None]:
            raise PoisonMessage("bad")

        out = await gather_outcomes(enqueue, [EnvelopedEvent(b"{}", None)] * 3)
        assert all(isinstance(o, PoisonMessage) for o in out)
