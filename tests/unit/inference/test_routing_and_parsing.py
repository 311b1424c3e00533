"""Pure rules of the inference path: request validation, routing order, breaker state, stream accounting."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.inference.schemas import CatalogModel, Deployment
from aiaas.inference.service import telemetry
from aiaas.inference.service.calls import Caller, Outcome, Routed, Tally
from aiaas.inference.service.requests import param_of, parse
from aiaas.inference.service.routing import decode_state, health_of, order_deployments, retry_after_seconds
from aiaas.inference.service.tokens import estimate_tokens
from aiaas.kernel.errors import BadRequest
from aiaas.usage import api as usage_api


def dep(name: str, *, weight: int = 1, priority: int = 0, enabled: bool = True) -> Deployment:
    return Deployment(id=name, name=name, provider="openai", upstream_model="m", base_url="http://x", weight=weight,
                      credential_ref=None, priority=priority, connect_timeout=1, first_byte_timeout=1,
                      chunk_timeout=1, total_timeout=10, context_length=None, enabled=enabled)


class TestParse:
    def test_unknown_fields_kept_as_raw_bytes_and_model_replaced(self) -> None:
        body = b'{"model":"pub","messages":[{"role":"user","content":"x"}],"tools":[{"a": 1.50}],"seed":3}'
        p = parse("chat.completions", body)
        out = msgspec.json.decode(p.upstream_body("up"))
        assert out["model"] == "up" and out["seed"] == 3
        assert b'[{"a": 1.50}]' in p.upstream_body("up")  # byte for byte, not re-encoded

    def test_stream_forces_usage(self) -> None:
        p = parse("chat.completions", b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,'
                                      b'"stream_options":{"include_usage":false,"other":1}}')
        assert not p.wants_usage
        assert msgspec.json.decode(p.upstream_body("m"))["stream_options"] == {"include_usage": True, "other": 1}

    @pytest.mark.parametrize(("body", "param"), [
        (b'{"messages":[{"role":"user","content":"x"}]}', "model"),
        (b'{"model":"m","messages":[]}', "messages"),
        (b'{"model":"m","messages":[{"content":"x"}]}', "messages[0].role"),
        (b'{"model":"m","messages":[{"role":"u","content":"x"}]}', "messages[0].role"),
        (b'{"model":"m","messages":[{"role":"user"}]}', "messages[0].content"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":9}', "temperature"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{}}', "stream_options"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1000000000000000000}',
         "max_tokens"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"n":129}', "n"),
        (b'{"model":"m\\u0000x","messages":[{"role":"user","content":"x"}]}', "model"),
        (b'{"model":"m\\n","messages":[{"role":"user","content":"x"}]}', "model"),
    ])
    def test_invalid_names_param(self, body: bytes, param: str) -> None:
        with pytest.raises(BadRequest) as info:
            parse("chat.completions", body)
        assert info.value.param == param

    def test_an_assistant_message_may_hold_only_tool_calls(self) -> None:
        body = (b'{"model":"m","messages":[{"role":"user","content":"x"},'
                b'{"role":"assistant","content":null,"tool_calls":[]}]}')
        assert parse("chat.completions", body).model == "m"

    @pytest.mark.parametrize(("body", "choices"), [
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"n":4}', 4),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}]}', 1),
    ])
    def test_choices_are_what_admission_multiplies_by(self, body: bytes, choices: int) -> None:
        assert parse("chat.completions", body).choices == choices

    def test_best_of_counts_for_legacy_completions(self) -> None:
        assert parse("completions", b'{"model":"m","prompt":"x","n":2,"best_of":5}').choices == 5

    def test_deep_nesting_is_a_400_not_a_recursion_error(self) -> None:
        body = b'{"model":"m","messages":[{"role":"user","content":' + b"[" * 5000 + b"]" * 5000 + b"}]}"
        with pytest.raises(BadRequest) as info:
            parse("chat.completions", body)
        assert info.value.code == "json_too_deep"

    @given(st.binary(max_size=200))
    def test_garbage_is_always_400(self, body: bytes) -> None:
        try:
            parsed = parse("completions", body)
        except BadRequest as exc:
            assert exc.status == 400
        else:
            assert parsed.model

    def test_param_of_plain_message(self) -> None:
        assert param_of("Expected `object`, got `array`") is None


class TestRouting:
    def test_priority_first_open_breakers_skipped(self) -> None:
        deps = [dep("a", priority=1), dep("b"), dep("c"), dep("off", enabled=False), dep("zero", weight=0)]
        order = order_deployments(deps, {"c": (5, 2000.0)}, now=1000.0)
        assert [d.name for d, _ in order] == ["b", "a"]

    def test_half_open_keeps_its_place(self) -> None:
        order = order_deployments([dep("a")], {"a": (5, 999.0)}, now=1000.0)
        assert order == [(dep("a"), True)]

    def test_weights_drive_first_choice(self) -> None:
        rng = random.Random(1)
        deps = [dep("heavy", weight=9), dep("light", weight=1)]
        firsts = [order_deployments(deps, {}, now=0, rng=rng)[0][0].name for _ in range(2000)]
        assert 0.85 < firsts.count("heavy") / 2000 < 0.95

    def test_retry_after(self) -> None:
        assert retry_after_seconds([dep("a")], {"a": (3, 1010.5)}, now=1000.0) == 11
        assert retry_after_seconds([dep("a")], {}, now=1000.0) == 1

    def test_breaker_state_decoding(self) -> None:
        assert decode_state(None) == {}
        assert decode_state(b"garbage") == {}
        assert decode_state(b'{"a":[2,0]}') == {"a": (2, 0.0)}


def _routed(*, admitted: bool, stream: bool = False) -> Routed:
    caller = Caller(request_id="r", endpoint="chat.completions", org_id="o", user_id=None, key_id="k")
    admission = usage_api.Admission(reservation_id="res", headers={}) if admitted else None
    return Routed(caller=caller, model="m", known=True, stream=stream, estimated_prompt=4, admission=admission)


class TestAccounting:
    def test_usage_chunk_stripped_unless_asked(self) -> None:
        tally = Tally()
        usage = b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":5,"total_tokens":7}}\n\n'
        assert tally.event(usage, wants_usage=False) is None
        assert tally.event(usage, wants_usage=True) == usage
        outcome = tally.outcome(status="ok", stream=True)
        assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.usage_given) == (2, 5, True)

    def test_counts_chunks_without_usage(self) -> None:
        tally = Tally()
        for piece in (b'{"choices":[{"delta":{"role":"assistant"}}]}', b'{"choices":[{"delta":{"content":"a"}}]}',
                      b'{"choices":[{"delta":{"content":"b"}}]}',
                      b'{"choices":[{"delta":{},"finish_reason":"length"}]}'):
            assert tally.event(b"data: " + piece + b"\n\n", wants_usage=False)
        assert tally.event(b"data: [DONE]\n\n", wants_usage=False)
        assert tally.event(b": keep-alive\n\n", wants_usage=False)
        outcome = tally.outcome(status="ok", stream=True)
        routed = _routed(admitted=True, stream=True)
        assert telemetry.tokens(routed, outcome) == (4, 2) and outcome.finish_reason == "length"

    def test_refused_before_admission_charges_nothing(self) -> None:
        routed = _routed(admitted=False)
        outcome = Outcome.failed(BadRequest("no"))
        assert telemetry.tokens(routed, outcome) == (0, 0)
        ev = telemetry.event(routed, outcome)
        assert ev.total_tokens == 0 and ev.status == "error" and ev.http_status == 400 and ev.reservation_id is None

    def test_body_without_usage_is_estimated(self) -> None:
        tally = Tally()
        tally.body(b'{"choices":[{"message":{"content":"12345678"},"finish_reason":"stop"}]}')
        outcome = tally.outcome(status="ok")
        assert outcome.completion_tokens == 2 and outcome.finish_reason == "stop" and not outcome.usage_given

    def test_an_in_band_upstream_error_makes_the_stream_an_error(self) -> None:
        tally = Tally()
        tally.event(b'data: {"error":{"message":"boom"}}\n\n', wants_usage=False)
        outcome = tally.outcome(status="ok", stream=True)
        assert (outcome.status, outcome.error_type) == ("error", "upstream_stream_error")

    def test_event_fields(self) -> None:
        routed = _routed(admitted=True)
        ev = telemetry.event(routed, Outcome(status="ok", http_status=200, prompt_tokens=3, completion_tokens=2,
                                             usage_given=True, finish_reason="stop"))
        assert (ev.org_id, ev.key_id, ev.model, ev.reservation_id) == ("o", "k", "m", "res")
        assert (ev.prompt_tokens, ev.completion_tokens, ev.total_tokens, ev.finish_reason) == (3, 2, 5, "stop")


def test_estimate_tokens() -> None:
    assert estimate_tokens(b"") == 0
    assert estimate_tokens(b"abcde") == 2


class TestDeploymentHealth:
    def _model(self) -> CatalogModel:
        deps = [Deployment(id=f"d{i}", name=f"dep{i}", provider="openai", upstream_model="m", base_url="http://x",
                           credential_ref=None, weight=1, priority=0, connect_timeout=1.0, first_byte_timeout=1.0,
                           chunk_timeout=1.0, total_timeout=1.0, context_length=None, enabled=True)
                for i in range(4)]
        return CatalogModel(id="m", name="m", owned_by="aiaas", capabilities=["chat"], context_length=None,
                            created=0, managed_by="api", deployments=deps)

    def test_open_half_open_and_closed_read_as_routing_reads_them(self) -> None:
        state = {"d0": (3, 200.0), "d1": (3, 50.0), "d2": (1, 0.0)}
        got = {h.deployment: (h.breaker, h.consecutive_failures) for h in health_of([self._model()], {"m": state},
                                                                                    now=100.0)}
        assert got == {"dep0": ("open", 3), "dep1": ("half_open", 3), "dep2": ("closed", 1), "dep3": ("closed", 0)}

    def test_unreadable_redis_is_unknown_not_healthy(self) -> None:
        assert {h.breaker for h in health_of([self._model()], None, now=0.0)} == {"unknown"}
