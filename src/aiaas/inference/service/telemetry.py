"""What a finished request leaves behind: Prometheus metrics, the GenAI client span and its completion event.

Everything is derived from the request's immutable parts (:mod:`aiaas.inference.service.calls`) after the
response has been sent, never before it.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiaas.inference.events import CompletionRecorded
from aiaas.inference.service import metrics, pricing
from aiaas.inference.service.calls import Outcome, Routed

UNKNOWN_MODEL_LABEL = "<unknown>"
_OPERATION = {"chat.completions": "chat", "completions": "text_completion", "embeddings": "embeddings",
              "responses": "chat", "messages": "chat"}


def tokens(routed: Routed, outcome: Outcome) -> tuple[int, int]:
    """Prompt and completion tokens to account: the upstream's usage, or estimates (a request refused
    before admission consumed nothing, so it is charged nothing)."""
    if outcome.usage_given:
        return outcome.prompt_tokens, outcome.completion_tokens
    prompt = routed.estimated_prompt if routed.admission is not None else 0
    return prompt, outcome.completion_tokens


def event(routed: Routed, outcome: Outcome) -> CompletionRecorded:
    """The integration event of one request."""
    c = routed.caller
    up = routed.upstream
    prompt, completion = tokens(routed, outcome)
    cached = outcome.cached_prompt_tokens if outcome.usage_given else 0
    return CompletionRecorded(
        request_id=c.request_id, org_id=c.org_id, user_id=c.user_id, key_id=c.key_id, endpoint=c.endpoint,
        model=routed.model, deployment=up.deployment if up else None, provider=up.provider if up else None,
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        cached_prompt_tokens=cached, reasoning_tokens=outcome.reasoning_tokens if outcome.usage_given else 0,
        charged_nano_usd=pricing.charge(routed.price, prompt_tokens=prompt, cached_prompt_tokens=cached,
                                        completion_tokens=completion),
        ttfb_ms=round(up.ttfb * 1000, 3) if up else None, latency_ms=round((outcome.ended - c.started) * 1000, 3),
        status=outcome.status, http_status=outcome.http_status, finish_reason=outcome.finish_reason,
        error_type=outcome.error_type, stream=routed.stream,
        reservation_id=routed.admission.reservation_id if routed.admission else None, started_at=c.started_at,
    )


def record_metrics(routed: Routed, outcome: Outcome) -> None:
    """Request, latency and token metrics; model labels come from the catalog only."""
    c = routed.caller
    model = routed.model if routed.known else UNKNOWN_MODEL_LABEL
    dep = routed.upstream.deployment if routed.upstream else ""
    metrics.REQUESTS.labels(c.endpoint, model, dep, outcome.status).inc()
    metrics.LATENCY.labels(c.endpoint, model, dep).observe(outcome.ended - c.started)
    prompt, completion = tokens(routed, outcome)
    if prompt:
        metrics.TOKENS.labels(model, dep, "prompt").inc(prompt)
    if completion:
        metrics.TOKENS.labels(model, dep, "completion").inc(completion)


def record_span(tracer: trace.Tracer, routed: Routed, outcome: Outcome) -> None:
    """The GenAI client span of the request, when the request is traced (nothing is built otherwise)."""
    if not trace.get_current_span().is_recording():
        return
    c = routed.caller
    up = routed.upstream
    op = _OPERATION.get(c.endpoint, c.endpoint)
    start_ns = time.time_ns() - int((time.perf_counter() - c.started) * 1e9)
    end_ns = start_ns + int((outcome.ended - c.started) * 1e9)
    prompt, completion = tokens(routed, outcome)
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": op, "gen_ai.request.model": routed.model,
        "gen_ai.provider.name": up.provider if up else "unknown", "gen_ai.usage.input_tokens": prompt,
        "gen_ai.usage.output_tokens": completion, "aiaas.deployment": up.deployment if up else "",
        "aiaas.stream": routed.stream,
    }
    if up is not None:
        attrs["gen_ai.response.model"] = up.upstream_model
        if up.host:
            attrs["server.address"] = up.host
    if outcome.finish_reason:
        attrs["gen_ai.response.finish_reasons"] = [outcome.finish_reason]
    if outcome.error_type:
        attrs["error.type"] = outcome.error_type
    span = tracer.start_span(f"{op} {routed.model}", kind=SpanKind.CLIENT, start_time=start_ns, attributes=attrs)
    if outcome.status == "error":
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=end_ns)
