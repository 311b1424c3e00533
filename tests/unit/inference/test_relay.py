"""The relay's accounting when the client leaves: before ``[DONE]`` it is a cancelled stream, after it not."""

from __future__ import annotations

import asyncio
from typing import Any

from aiaas.inference.service.calls import Caller, Outcome, Routed, Tally
from aiaas.inference.service.gateway import Gateway

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
DONE = b"data: [DONE]\n\n"


class Stream:
    """An upstream stream that hands out ``events`` and then waits forever (its end of body is late)."""

    def __init__(self, events: list[bytes]) -> None:
        self.first, self._rest, self.closed = events[0], events[1:], False

    async def next_event(self) -> bytes | None:
        if self._rest:
            return self._rest.pop(0)
        await asyncio.Event().wait()
        return None

    async def aclose(self) -> None:
        self.closed = True


def _gateway() -> Gateway:
    none: Any = None
    return Gateway(catalog=none, breakers=none, http=none, local=None, max_attempts=1, retry_budget=1.0,
                   publish=lambda _e: None, admitter=none)


async def _read_then_leave(events: list[bytes], upto: int) -> tuple[Outcome, Tally]:
    gateway = _gateway()
    caller = Caller(request_id="req_t", endpoint="chat.completions", org_id="o", user_id="u", key_id="k")
    routed = Routed(caller=caller, model="m", known=True, stream=True, estimated_prompt=1, events=Stream(events))
    tally = Tally()
    relay = gateway.relay(routed, tally, wants_usage=False)
    for _ in range(upto):
        await relay.__anext__()
    await relay.aclose()  # the client went away
    return gateway.stream_outcome(tally, client_left=True), tally


async def test_leaving_after_done_is_a_complete_stream() -> None:
    outcome, tally = await _read_then_leave([CHUNK, DONE], upto=2)
    assert outcome.status == "ok" and outcome.error_type is None and tally.chunks == 1


async def test_leaving_before_done_is_a_cancelled_stream() -> None:
    outcome, _ = await _read_then_leave([CHUNK, CHUNK, DONE], upto=1)
    assert outcome.status == "cancelled" and outcome.error_type == "client_disconnected"
