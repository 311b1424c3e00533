"""The inference request flow: resolve and authorize the model, admit, route with retries, relay.

Hot path, in order: decode the body once (``requests.parse``); one Redis ``MGET`` for the model's
catalog entry, the org's access policy and the breaker state; admission (``Admitter.admit``:
one Lua call that reads the org's cached usage policy and checks rate limits and the quota reservation); then
deployments in routing order until one answers. A failure before the first byte (connect error,
timeout, 5xx, 429) moves on to the next deployment, bounded by ``AIAAS_INFERENCE_MAX_ATTEMPTS`` and
``AIAAS_INFERENCE_RETRY_BUDGET_SECONDS``. Streams start only once the first upstream event is in hand,
so a client never sees an error after a 200 that a retry could have avoided.

Accounting (metrics, the GenAI span and the ``CompletionRecorded`` event) happens in ``finish``, which
the HTTP layer calls after the response has been sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiaas.inference.events import CompletionRecorded
from aiaas.inference.providers.base import Call, EventStream, UpstreamFailure, UpstreamReply
from aiaas.inference.schemas import CatalogModel, Deployment, ResponsePeek
from aiaas.inference.service import metrics
from aiaas.inference.service.admission import Admission, Admitter, Gate, GateClosed
from aiaas.inference.service.catalog import CatalogCache
from aiaas.inference.service.requests import CAPABILITY, Parsed
from aiaas.inference.service.routing import Breakers, BreakerState, decode_state, order_deployments, retry_after_seconds
from aiaas.inference.service.tokens import estimate_tokens
from aiaas.inference.service.upstream_errors import final_error
from aiaas.kernel.errors import (
    AppError,
    BadRequest,
    Forbidden,
    NotFound,
    ServiceUnavailable,
)
from aiaas.kernel.events import utcnow
from aiaas.kernel.security import Principal
from aiaas.kernel.tracing import tracer

_peek = msgspec.json.Decoder(ResponsePeek).decode
_encode = msgspec.json.encode
_OPERATION = {"chat.completions": "chat", "completions": "text_completion", "embeddings": "embeddings"}


UNKNOWN_MODEL_LABEL = "<unknown>"


class CallContext:
    """Everything accounted about one request, filled as it goes."""

    __slots__ = (
        "admitted",
        "chunks",
        "completion_tokens",
        "deployment",
        "ended",
        "endpoint",
        "error_type",
        "estimated_prompt",
        "finish_reason",
        "http_status",
        "key_id",
        "model",
        "model_known",
        "org_id",
        "prompt_tokens",
        "provider",
        "request_id",
        "reservation_id",
        "saw_done",
        "started",
        "started_at",
        "status",
        "stream",
        "ttfb",
        "upstream_host",
        "upstream_model",
        "usage_given",
        "user_id",
    )

    def __init__(self, *, request_id: str, endpoint: str, principal: Principal) -> None:
        self.request_id = request_id
        self.endpoint = endpoint
        self.org_id = principal.org_id or ""
        self.user_id = principal.user_id
        self.key_id = principal.key_id
        self.started = time.perf_counter()
        self.started_at = utcnow()
        self.model = ""
        self.model_known = False  # the model is in the catalog (and so may be a metric label)
        self.deployment: str | None = None
        self.provider: str | None = None
        self.upstream_model: str | None = None
        self.upstream_host: str | None = None
        self.status = "error"
        self.http_status = 500
        self.error_type: str | None = None
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usage_given = False
        self.estimated_prompt = 0
        self.chunks = 0
        self.stream = False
        self.ttfb: float | None = None
        self.ended: float | None = None
        self.reservation_id: str | None = None
        self.admitted = False
        self.saw_done = False

    def failed(self, exc: BaseException) -> None:
        """Record how the request failed before its response started."""
        self.status = "error"
        self.ended = time.perf_counter()
        if isinstance(exc, AppError):
            self.http_status = exc.status
            self.error_type = self.error_type or exc.code or exc.type_slug
        else:
            self.http_status = 500
            self.error_type = type(exc).__name__

    def account_body(self, body: bytes) -> None:
        """Usage and finish reason of a whole response body."""
        try:
            peek = _peek(body)
        except msgspec.DecodeError:
            return
        if peek.usage is not None:
            self.usage_given = True
            self.prompt_tokens = peek.usage.prompt_tokens
            self.completion_tokens = peek.usage.completion_tokens
        if peek.choices:
            for c in peek.choices:
                if c.finish_reason:
                    self.finish_reason = c.finish_reason
                if not self.usage_given:
                    text = c.text or (c.message.content if c.message and isinstance(c.message.content, str) else "")
                    self.completion_tokens += estimate_tokens(text)

    def account_event(self, event: bytes, wants_usage: bool) -> bytes | None:
        """Account one SSE event; returns the bytes to send (None drops the usage chunk nobody asked for)."""
        if not event.startswith(b"data:"):
            return event
        payload = event[5:]
        if payload.startswith((b" [DONE]", b"[DONE]")):
            self.saw_done = True
            return event
        try:
            peek = _peek(payload)
        except msgspec.DecodeError:
            return event
        if peek.error is not None:
            self.status = "error"
            self.error_type = "upstream_stream_error"
        choices = peek.choices
        if peek.usage is not None:
            self.usage_given = True
            self.prompt_tokens = peek.usage.prompt_tokens
            self.completion_tokens = peek.usage.completion_tokens
            if not choices and not wants_usage:
                return None
        if choices:
            for c in choices:
                if c.finish_reason:
                    self.finish_reason = c.finish_reason
                elif c.delta_has_content or c.text:
                    self.chunks += 1
        return event

    def settle(self) -> None:
        """Fill the token counts from estimates where the upstream reported none."""
        if not self.usage_given:
            # A request refused before admission passed (429, 503, 4xx) consumed nothing: charge no estimate.
            self.prompt_tokens = self.estimated_prompt if self.admitted else 0
            if self.stream:
                self.completion_tokens = self.chunks

    def event(self) -> CompletionRecorded:
        """The integration event of this request."""
        end = self.ended or time.perf_counter()
        return CompletionRecorded(
            request_id=self.request_id, org_id=self.org_id, user_id=self.user_id, key_id=self.key_id,
            endpoint=self.endpoint, model=self.model, deployment=self.deployment, provider=self.provider,
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            ttfb_ms=round(self.ttfb * 1000, 3) if self.ttfb is not None else None,
            latency_ms=round((end - self.started) * 1000, 3), status=self.status, http_status=self.http_status,
            finish_reason=self.finish_reason, error_type=self.error_type, stream=self.stream,
            reservation_id=self.reservation_id, started_at=self.started_at,
        )


class Prepared(msgspec.Struct):
    """A request resolved to a model, authorized and admitted."""

    parsed: Parsed
    model: CatalogModel
    breaker: BreakerState
    headers: dict[str, str]


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

    # --- resolve, authorize, admit ---

    def prefetch_keys(self, model: str) -> list[str]:
        """The Redis keys :meth:`prepare` needs for ``model``, for the caller to read with the principal."""
        return self.catalog.prefetch_keys(model, self.breakers.key(model))

    async def prepare(self, *, principal: Principal, parsed: Parsed, ctx: CallContext,
                      prefetched: list[bytes | None] | None = None) -> Prepared:
        """Resolve the model, check access and capability, run admission.

        ``prefetched``: the values of :meth:`prefetch_keys`, read in the principal's ``MGET``; the org's
        model-access policy is then checked by the admission script's gate, so a warm request makes two
        Redis calls in all. Without it the catalog is read here (one ``MGET`` with the org's policy).
        """
        ctx.model = parsed.model
        ctx.stream = parsed.stream
        ctx.estimated_prompt = parsed.estimated_prompt_tokens
        org_id = principal.org_id
        if not org_id:
            raise Forbidden("Inference needs an API key that belongs to an organization.", code="org_required")
        if prefetched is not None:
            found = await self.catalog.from_prefetched(parsed.model, prefetched)
        else:
            found = await self.catalog.lookup(parsed.model, org_id, self.breakers.key(parsed.model))
        model = found.model
        if model is None or (found.org_models is not None and parsed.model not in found.org_models):
            raise _unknown_model(parsed.model)
        ctx.model_known = True
        if not principal.may_use_model(parsed.model):
            raise Forbidden(f"This API key may not use the model `{parsed.model}`.", code="model_not_allowed",
                            param="model")
        if CAPABILITY[parsed.endpoint] not in model.capabilities:
            if not found.access_read and not await self._org_may_use(org_id, parsed.model):
                raise _unknown_model(parsed.model)  # never tell an org about a model hidden from it
            raise BadRequest(f"The model `{parsed.model}` does not support {parsed.endpoint}.",
                             code="unsupported_endpoint", param="model")
        # Embeddings produce no completion tokens: reserve the input only, not the default completion cap.
        max_tokens = 0 if parsed.endpoint == "embeddings" else parsed.max_tokens
        gate = None if found.access_read else Gate(self.catalog.access_key(org_id), parsed.model)

        def admit(gate: Gate | None) -> Awaitable[Admission]:
            return self._admitter.admit(principal=principal, model=parsed.model, gate=gate, max_tokens=max_tokens,
                                        choices=parsed.choices, estimated_prompt_tokens=parsed.estimated_prompt_tokens)

        try:
            decision = await admit(gate)
        except GateClosed as closed:
            if not closed.miss or not await self._org_may_use(org_id, parsed.model):
                raise _unknown_model(parsed.model) from None
            decision = await admit(None)  # the org's policy was not cached; now it is, and it admits the model
        if gate is not None and not decision.enforced and not await self._org_may_use(org_id, parsed.model):
            # Redis went away between the two calls: admission failed open without reading the gate.
            raise _unknown_model(parsed.model)
        ctx.reservation_id = decision.reservation_id
        ctx.admitted = True
        return Prepared(parsed, model, decode_state(found.breaker_raw), decision.headers)

    async def _org_may_use(self, org_id: str, model: str) -> bool:
        allowed = await self.catalog.org_models(org_id)
        return allowed is None or model in allowed

    # --- routing with retries ---

    async def _route(self, p: Prepared, ctx: CallContext,
                     attempt: Callable[[Provider, Deployment, Call], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        now = time.time()
        order = order_deployments(p.model.deployments, p.breaker, now=now)
        if not order:
            wait = retry_after_seconds(p.model.deployments, p.breaker, now=now)
            raise ServiceUnavailable(f"Every deployment of `{p.model.name}` is failing; retry in {wait}s.",
                                     code="no_healthy_deployment", headers={"Retry-After": str(wait)})
        last: UpstreamFailure | None = None
        attempts = 0
        for dep, half_open in order:
            if attempts >= self._max_attempts or (attempts and loop.time() - t0 > self._retry_budget):
                break
            if half_open and not await self.breakers.acquire_probe(p.model.name, dep):
                continue
            provider = self._providers.get(dep.provider)
            if provider is None:
                last = UpstreamFailure("config", f"provider {dep.provider!r} is not available in this process")
                continue
            attempts += 1
            call = Call(endpoint=p.parsed.endpoint, body=p.parsed.upstream_body(dep.upstream_model),
                        public_model=p.model.name, deadline=t0 + dep.total_timeout)
            started = time.perf_counter()
            try:
                result = await attempt(provider, dep, call)
            except UpstreamFailure as failure:
                metrics.UPSTREAM_ERRORS.labels(p.model.name, dep.name, failure.kind).inc()
                if failure.counts_against_breaker:
                    await self.breakers.failure(p.model.name, dep)
                last = failure
                ctx.error_type = failure.kind
                if not failure.retryable:
                    break
                continue
            finally:
                if half_open:  # the probe is over: the next one may go after the next cool-down
                    await self.breakers.release_probe(dep)
            ctx.ttfb = time.perf_counter() - ctx.started
            ctx.deployment = dep.name
            ctx.provider = dep.provider
            ctx.upstream_model = dep.upstream_model
            ctx.upstream_host = dep.base_url
            ctx.error_type = None
            metrics.TTFB.labels(p.model.name, dep.name).observe(time.perf_counter() - started)
            if dep.id in p.breaker:
                await self.breakers.success(p.model.name, dep, p.breaker)
            return result
        raise final_error(last, p.model, p.breaker, now)

    async def complete(self, p: Prepared, ctx: CallContext) -> UpstreamReply:
        """A whole response from the first deployment that answers."""
        reply: UpstreamReply = await self._route(p, ctx, lambda prov, dep, call: prov.complete(dep, call))
        ctx.account_body(reply.body)
        ctx.status = "ok"
        ctx.http_status = 200
        ctx.ended = time.perf_counter()
        return reply

    async def open_stream(self, p: Prepared, ctx: CallContext) -> EventStream:
        """An upstream stream whose first event has arrived."""
        stream: EventStream = await self._route(p, ctx, lambda prov, dep, call: prov.stream(dep, call))
        ctx.http_status = 200
        return stream

    async def relay(self, stream: EventStream, ctx: CallContext, wants_usage: bool) -> AsyncIterator[bytes]:
        """The client's SSE body: upstream events passed on as bytes, usage chunk stripped unless asked for.

        If the upstream breaks mid-stream the client gets an in-band ``error`` event and the stream ends;
        if the client goes away the upstream request is closed at once. Either way what was produced is
        accounted.
        """
        event: bytes | None = stream.first
        try:
            while event is not None:
                out = ctx.account_event(event, wants_usage)
                if out is not None:
                    yield out
                event = await stream.next_event()
            if ctx.error_type != "upstream_stream_error":
                ctx.status = "ok"
        except UpstreamFailure as failure:
            ctx.status = "error"
            ctx.error_type = f"stream_{failure.kind}"
            metrics.UPSTREAM_ERRORS.labels(ctx.model, ctx.deployment or "", f"stream_{failure.kind}").inc()
            yield b"data: " + _encode({"error": {
                "message": f"The upstream stream was interrupted: {failure.detail}", "type": "server_error",
                "param": None, "code": "upstream_stream_interrupted"}}) + b"\n\n"
        except BaseException:
            if ctx.saw_done:
                # The client had the whole stream, [DONE] included, and left before the upstream's end of
                # body: nothing was cut short.
                if ctx.error_type != "upstream_stream_error":
                    ctx.status = "ok"
            else:
                ctx.status = "cancelled"
                ctx.error_type = "client_disconnected"
            raise
        finally:
            ctx.ended = time.perf_counter()
            await stream.aclose()

    # --- after the response ---

    def finish(self, ctx: CallContext) -> None:
        """Metrics, the GenAI span and the completion event; called after the response was sent."""
        ctx.settle()
        if ctx.ended is None:
            ctx.ended = time.perf_counter()
        dep = ctx.deployment or ""
        # Label values come from the catalog only: a caller choosing model names must not grow /metrics.
        model = ctx.model if ctx.model_known else UNKNOWN_MODEL_LABEL
        metrics.REQUESTS.labels(ctx.endpoint, model, dep, ctx.status).inc()
        metrics.LATENCY.labels(ctx.endpoint, model, dep).observe(ctx.ended - ctx.started)
        if ctx.prompt_tokens:
            metrics.TOKENS.labels(model, dep, "prompt").inc(ctx.prompt_tokens)
        if ctx.completion_tokens:
            metrics.TOKENS.labels(model, dep, "completion").inc(ctx.completion_tokens)
        self._span(ctx)
        if ctx.org_id:
            self._publish(ctx.event())

    def _span(self, ctx: CallContext) -> None:
        parent = trace.get_current_span()
        if not parent.is_recording():
            return
        op = _OPERATION.get(ctx.endpoint, ctx.endpoint)
        start_ns = time.time_ns() - int((time.perf_counter() - ctx.started) * 1e9)
        end_ns = start_ns + int(((ctx.ended or time.perf_counter()) - ctx.started) * 1e9)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op, "gen_ai.request.model": ctx.model,
            "gen_ai.provider.name": ctx.provider or "unknown", "gen_ai.usage.input_tokens": ctx.prompt_tokens,
            "gen_ai.usage.output_tokens": ctx.completion_tokens, "aiaas.deployment": ctx.deployment or "",
            "aiaas.stream": ctx.stream,
        }
        if ctx.upstream_model:
            attrs["gen_ai.response.model"] = ctx.upstream_model
        if ctx.finish_reason:
            attrs["gen_ai.response.finish_reasons"] = [ctx.finish_reason]
        if ctx.upstream_host:
            attrs["server.address"] = ctx.upstream_host
        if ctx.error_type:
            attrs["error.type"] = ctx.error_type
        span = self._tracer.start_span(f"{op} {ctx.model}", kind=SpanKind.CLIENT, start_time=start_ns,
                                       attributes=attrs)
        if ctx.status == "error":
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end_ns)


def _unknown_model(name: str) -> NotFound:
    return NotFound(f"The model `{name}` does not exist or you do not have access to it.",
                    code="model_not_found", param="model")
