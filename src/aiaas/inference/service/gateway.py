"""The inference request flow: resolve and authorize the model, admit, route with retries, relay.

Hot path, in order, after the edge decoded the body (``requests.parse``) and ``auth`` resolved the caller
(one Redis ``GET``): one ``MGET`` of ``inference``'s own keys for the model's catalog entry, its breaker
state and the org's model-access policy (:class:`~aiaas.inference.service.catalog.CatalogCache`); then
``usage``'s admission (one script; the limits, from the arguments it is given); then deployments in
routing order until one answers. A failure before the first byte (connect error, timeout, 5xx, 429)
moves on to the next deployment, bounded by ``AIAAS_INFERENCE_MAX_ATTEMPTS`` and
``AIAAS_INFERENCE_RETRY_BUDGET_SECONDS``. Streams start only once the first upstream event is in hand,
so a client never sees an error after a 200 that a retry could have avoided.

The edge calls :meth:`Gateway.route` once and gets a :class:`~aiaas.inference.service.calls.Routed`; it
sends the reply (or relays the stream with :meth:`Gateway.relay`) and then calls :meth:`Gateway.finish`,
which does the accounting (metrics, the GenAI span, the ``CompletionRecorded`` event).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import msgspec

from aiaas.inference.events import CompletionRecorded
from aiaas.inference.providers.base import Call, UpstreamFailure
from aiaas.inference.schemas import CatalogModel, Deployment
from aiaas.inference.service import metrics, pricing, telemetry
from aiaas.inference.service.admission import Admitter
from aiaas.inference.service.calls import Caller, Outcome, Routed, Tally, Upstream
from aiaas.inference.service.catalog import CatalogCache
from aiaas.inference.service.requests import CAPABILITY, Parsed
from aiaas.inference.service.routing import (
    Breakers,
    BreakerState,
    decode_state,
    order_deployments,
    retry_after_seconds,
)
from aiaas.inference.service.upstream_errors import final_error
from aiaas.kernel.errors import AppError, BadRequest, Forbidden, NotFound, ServiceUnavailable
from aiaas.kernel.security import Principal
from aiaas.kernel.tracing import tracer
from aiaas.usage import api as usage_api

_encode = msgspec.json.encode

Provider = Any  # HttpUpstream | LocalRunner: both have complete() and stream()


class Gateway:
    """The inference flow of one process, wired with its cache, breakers and providers."""

    def __init__(self, *, catalog: CatalogCache, breakers: Breakers, http: Provider, local: Provider | None,
                 max_attempts: int, retry_budget: float, publish: Callable[[CompletionRecorded], None],
                 admitter: Admitter) -> None:
        self.catalog = catalog
        self._admitter = admitter
        self.breakers = breakers
        self._providers: dict[str, Provider] = {"openai": http}
        if local is not None:
            self._providers["local"] = local
        self._max_attempts = max_attempts
        self._retry_budget = retry_budget
        self._publish = publish
        self._tracer = tracer("aiaas.inference")

    # --- the one call the edge makes ---

    async def route(self, caller: Caller, principal: Principal, parsed: Parsed) -> Routed:
        """Resolve, authorize and admit the request, and open it on the first deployment that answers.

        Never raises for what the client did or what the upstreams did: such a request comes back with
        ``error`` set (and whatever was decided before it, such as the admission to settle).
        """
        routed = Routed(caller=caller, model=parsed.model, known=False, stream=parsed.stream,
                        estimated_prompt=parsed.estimated_prompt_tokens)
        try:
            model, breaker = await self._resolve(principal, parsed)
            routed = replace(routed, known=True)
            admission = await self._admit(principal, parsed, model, caller.started_at)
            routed = replace(routed, admission=admission)
            return await self._attempts(routed, parsed, model, breaker)
        except AppError as exc:
            return replace(routed, error=exc)

    async def admit_only(self, caller: Caller, principal: Principal, parsed: Parsed) -> Routed:
        """Resolve, authorize and admit a request that calls no upstream (``count_tokens``): it counts
        against the request rate limits like any other, and reserves no tokens and no spend."""
        routed = Routed(caller=caller, model=parsed.model, known=False, stream=False, estimated_prompt=0)
        try:
            await self._resolve(principal, parsed)
            routed = replace(routed, known=True)
            admission = await self._admitter.admit(principal=principal, model=parsed.model, max_tokens=0,
                                                   estimated_prompt_tokens=0)
            return replace(routed, admission=admission)
        except AppError as exc:
            return replace(routed, error=exc)

    async def _resolve(self, principal: Principal, parsed: Parsed) -> tuple[CatalogModel, BreakerState]:
        org_id = principal.org_id
        if not org_id:
            raise Forbidden("Inference needs an API key that belongs to an organization.", code="org_required")
        found = await self.catalog.lookup(parsed.model, org_id, self.breakers.key(parsed.model))
        model = found.model
        if model is None or (found.org_models is not None and parsed.model not in found.org_models):
            raise _unknown_model(parsed.model)  # never tell an org about a model hidden from it
        if not principal.may_use_model(parsed.model):
            raise Forbidden(f"This API key may not use the model `{parsed.model}`.", code="model_not_allowed",
                            param="model")
        if CAPABILITY[parsed.endpoint] not in model.capabilities:
            raise BadRequest(f"The model `{parsed.model}` does not support {parsed.endpoint}.",
                             code="unsupported_endpoint", param="model")
        return model, decode_state(found.breaker_raw)

    async def _admit(self, principal: Principal, parsed: Parsed, model: CatalogModel,
                     at: dt.datetime) -> usage_api.Admission:
        # Embeddings produce no completion tokens: reserve the input only, not the default completion cap.
        max_tokens = 0 if parsed.endpoint == "embeddings" else parsed.max_tokens
        return await self._admitter.admit(principal=principal, model=parsed.model, max_tokens=max_tokens,
                                          choices=parsed.choices,
                                          estimated_prompt_tokens=parsed.estimated_prompt_tokens,
                                          spend_rate=pricing.reservation_rate(model, at))

    async def _attempts(self, routed: Routed, parsed: Parsed, model: CatalogModel, breaker: BreakerState) -> Routed:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        now = time.time()
        order = order_deployments(model.deployments, breaker, now=now)
        if not order:
            wait = retry_after_seconds(model.deployments, breaker, now=now)
            return replace(routed, error=ServiceUnavailable(
                f"Every deployment of `{model.name}` is failing; retry in {wait}s.", code="no_healthy_deployment",
                headers={"Retry-After": str(wait)}))
        last: UpstreamFailure | None = None
        attempts = 0
        for dep, half_open in order:
            if attempts >= self._max_attempts or (attempts and loop.time() - t0 > self._retry_budget):
                break
            if half_open and not await self.breakers.acquire_probe(model.name, dep):
                continue
            provider = self._providers.get(dep.provider)
            if provider is None:
                last = UpstreamFailure("config", f"provider {dep.provider!r} is not available in this process")
                continue
            attempts += 1
            native = parsed.native if parsed.native is not None and parsed.native.api in dep.native_apis else None
            if native is not None:
                call = Call(endpoint=native.api, body=native.upstream_body(dep.upstream_model),
                            public_model=model.name, deadline=t0 + dep.total_timeout, headers=native.headers)
            else:
                call = Call(endpoint=parsed.endpoint, body=parsed.upstream_body(dep.upstream_model),
                            public_model=model.name, deadline=t0 + dep.total_timeout)
            started = time.perf_counter()
            try:
                if parsed.stream:
                    events, reply = await provider.stream(dep, call), None
                else:
                    events, reply = None, await provider.complete(dep, call)
            except UpstreamFailure as failure:
                metrics.UPSTREAM_ERRORS.labels(model.name, dep.name, failure.kind).inc()
                if failure.counts_against_breaker:
                    await self.breakers.failure(model.name, dep)
                last = failure
                if not failure.retryable:
                    break
                continue
            finally:
                if half_open:  # the probe is over: the next one may go after the next cool-down
                    await self.breakers.release_probe(dep)
            metrics.TTFB.labels(model.name, dep.name).observe(time.perf_counter() - started)
            answered = replace(routed, upstream=_upstream(dep, routed.caller), reply=reply, events=events,
                               price=pricing.price_of(model, dep.name, routed.caller.started_at),
                               native=native is not None)
            if dep.id in breaker:
                try:
                    await self.breakers.success(model.name, dep, breaker)
                except BaseException:
                    if events is not None:
                        await events.aclose()
                    raise
            return answered
        return replace(routed, error=final_error(last, model, breaker, now), error_type=last.kind if last else None)

    # --- the response ---

    @staticmethod
    def outcome_of_reply(routed: Routed) -> Outcome:
        """The outcome of a whole (non-streamed) reply that was sent."""
        tally = Tally()
        if routed.reply is not None:
            tally.body(routed.reply.body)
        return tally.outcome(status="ok")

    async def relay(self, routed: Routed, tally: Tally, *, wants_usage: bool,
                    interrupted: Callable[[str], bytes] | None = None) -> AsyncIterator[bytes]:
        """The client's SSE body: the upstream's events as its own bytes, the usage chunk stripped unless
        asked for, counted in ``tally``. If the upstream breaks mid-stream the client gets an in-band
        error event (chat's ``error`` chunk, or what ``interrupted`` renders for another wire format) and
        the stream ends (``tally.stream_failure`` says why). The caller closes ``routed.events`` when it
        is done, however it ends."""
        events = routed.events
        assert events is not None
        event: bytes | None = events.first
        try:
            while event is not None:
                out = tally.event(event, wants_usage)
                if out is not None:
                    yield out
                event = await events.next_event()
        except UpstreamFailure as failure:
            tally.stream_failure = failure.kind
            up = routed.upstream
            metrics.UPSTREAM_ERRORS.labels(routed.model, up.deployment if up else "", f"stream_{failure.kind}").inc()
            message = f"The upstream stream was interrupted: {failure.detail}"
            if interrupted is not None:
                yield interrupted(message)
                return
            yield b"data: " + _encode({"error": {
                "message": message, "type": "server_error", "param": None,
                "code": "upstream_stream_interrupted"}}) + b"\n\n"

    @staticmethod
    def stream_outcome(tally: Tally, *, client_left: bool) -> Outcome:
        """How a relayed stream ended: complete, broken upstream, or cut short by the client."""
        if tally.stream_failure is not None:
            return tally.outcome(status="error", error_type=f"stream_{tally.stream_failure}", stream=True)
        if client_left and not tally.saw_done:
            return tally.outcome(status="cancelled", error_type="client_disconnected", stream=True)
        # A client that leaves after [DONE] but before the upstream's end of body had the whole stream.
        return tally.outcome(status="ok", stream=True)

    # --- after the response ---

    def finish(self, routed: Routed, outcome: Outcome) -> None:
        """Metrics, the GenAI span and the completion event; called after the response was sent."""
        telemetry.record_metrics(routed, outcome)
        telemetry.record_span(self._tracer, routed, outcome)
        if routed.caller.org_id:
            self._publish(telemetry.event(routed, outcome))


def _upstream(dep: Deployment, caller: Caller) -> Upstream:
    return Upstream(deployment=dep.name, provider=dep.provider, upstream_model=dep.upstream_model,
                    host=dep.base_url, ttfb=time.perf_counter() - caller.started)


def _unknown_model(name: str) -> NotFound:
    return NotFound(f"The model `{name}` does not exist or you do not have access to it.",
                    code="model_not_found", param="model")
