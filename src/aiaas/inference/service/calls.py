"""One inference request as the immutable parts its stages make, in the order they make them.

The edge reads the request top to bottom and hands each stage's result to the next:

1. :class:`Caller`: who asked, for which endpoint, when (the edge, once authenticated);
2. :class:`Routed`: what :meth:`Gateway.route <aiaas.inference.service.gateway.Gateway.route>` made of it:
   the model as asked and whether the catalog knows it, the admission (limits charged, reservation),
   the deployment that answered and its first byte, the reply or the open event stream, or the error
   the client gets instead;
3. :class:`Outcome`: how the response ended (status, tokens, finish reason), from the reply's body or the
   relayed stream (:class:`Tally` counts as the events pass);

and :meth:`Gateway.finish` turns the three into metrics, a span and the ``CompletionRecorded`` event.
Nothing here is written by more than one stage.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import msgspec

from aiaas.inference.providers.base import EventStream, UpstreamReply
from aiaas.inference.schemas import ModelPrice, ResponsePeek, Usage
from aiaas.inference.service.tokens import estimate_tokens
from aiaas.kernel.errors import AppError
from aiaas.kernel.events import utcnow
from aiaas.kernel.security import Principal
from aiaas.usage import api as usage_api

_peek = msgspec.json.Decoder(ResponsePeek).decode


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked for what, and when."""

    request_id: str
    endpoint: str
    org_id: str
    user_id: str | None
    key_id: str | None
    started: float = field(default_factory=time.perf_counter)
    started_at: dt.datetime = field(default_factory=utcnow)

    @classmethod
    def of(cls, principal: Principal | None, *, request_id: str, endpoint: str, started: float) -> Caller:
        p = principal
        return cls(request_id=request_id, endpoint=endpoint, org_id=(p.org_id or "") if p else "",
                   user_id=p.user_id if p else None, key_id=p.key_id if p else None, started=started)


@dataclass(frozen=True, slots=True)
class Upstream:
    """The deployment that answered, and when its first byte came."""

    deployment: str
    provider: str
    upstream_model: str
    host: str | None
    ttfb: float  # seconds since the request started


@dataclass(frozen=True, slots=True)
class Routed:
    """A request as the gateway routed it: answered by an upstream (``reply`` or ``events``) or refused
    (``error``, which the client gets as a problem document)."""

    caller: Caller
    model: str  # as the client asked for it
    known: bool  # the catalog has it (so it may be a metric label)
    stream: bool
    estimated_prompt: int
    admission: usage_api.Admission | None = None
    upstream: Upstream | None = None
    reply: UpstreamReply | None = None
    events: EventStream | None = None
    error: AppError | None = None
    error_type: str | None = None  # the last upstream failure's kind, when one failed
    price: ModelPrice | None = None  # what spend limits charge it (the answering deployment's price)
    native: bool = False  # the deployment answered in the client's own wire format (``Parsed.native``)

    @property
    def headers(self) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers of the admission (every response of an admitted request has them)."""
        return self.admission.headers if self.admission is not None else {}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a response ended."""

    status: str  # "ok" | "error" | "cancelled"
    http_status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # of prompt_tokens, as the upstream reported them
    reasoning_tokens: int = 0  # of completion_tokens, as the upstream reported them
    usage_given: bool = False  # the upstream reported usage (else the counts are estimates)
    finish_reason: str | None = None
    error_type: str | None = None
    ended: float = field(default_factory=time.perf_counter)

    @classmethod
    def failed(cls, exc: BaseException, *, error_type: str | None = None) -> Outcome:
        """A request that ended before its response started."""
        if isinstance(exc, AppError):
            return cls(status="error", http_status=exc.status, error_type=error_type or exc.code or exc.type_slug)
        return cls(status="error", http_status=500, error_type=type(exc).__name__)

    @classmethod
    def cancelled(cls, *, http_status: int = 499) -> Outcome:
        """The client went away."""
        return cls(status="cancelled", http_status=http_status, error_type="client_disconnected")


class Tally:
    """Counts one response's usage as its body or events pass (owned by the stage relaying them)."""

    __slots__ = ("cached_prompt_tokens", "chunks", "completion_tokens", "finish_reason", "prompt_tokens",
                 "reasoning_tokens", "saw_done", "stream_error", "stream_failure", "usage_given")

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_prompt_tokens = 0
        self.reasoning_tokens = 0
        self.usage_given = False
        self.chunks = 0
        self.finish_reason: str | None = None
        self.saw_done = False
        self.stream_error = False  # the upstream sent an in-band error event
        self.stream_failure: str | None = None  # the upstream's stream broke off (a failure kind)

    def _usage(self, usage: Usage) -> None:
        self.usage_given = True
        self.prompt_tokens = usage.prompt_tokens
        self.completion_tokens = usage.completion_tokens
        # A detail can never exceed the count it is part of, whatever an upstream says.
        self.cached_prompt_tokens = min(max(usage.cached_tokens, 0), usage.prompt_tokens)
        self.reasoning_tokens = min(max(usage.reasoning_tokens, 0), usage.completion_tokens)

    def body(self, body: bytes) -> None:
        """Usage and finish reason of a whole response body."""
        try:
            peek = _peek(body)
        except msgspec.DecodeError:
            return
        if peek.usage is not None:
            self._usage(peek.usage)
        for c in peek.choices or ():
            if c.finish_reason:
                self.finish_reason = c.finish_reason
            if not self.usage_given:
                text = c.text or (c.message.content if c.message and isinstance(c.message.content, str) else "")
                self.completion_tokens += estimate_tokens(text)

    def event(self, event: bytes, wants_usage: bool) -> bytes | None:
        """Account one SSE event; the bytes to send (None drops the usage chunk nobody asked for)."""
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
        if peek.error:  # a Raw: empty when the chunk has no error member
            self.stream_error = True
        choices = peek.choices
        if peek.usage is not None:
            self._usage(peek.usage)
            if not choices and not wants_usage:
                return None
        for c in choices or ():
            if c.finish_reason:
                self.finish_reason = c.finish_reason
            elif c.delta_has_content or c.text:
                self.chunks += 1
        return event

    def outcome(self, *, status: str, http_status: int = 200, error_type: str | None = None,
                stream: bool = False) -> Outcome:
        """The :class:`Outcome` of what was counted (a stream without usage counts a token per chunk)."""
        completion = self.completion_tokens if self.usage_given or not stream else self.chunks
        if self.stream_error and status == "ok":
            status, error_type = "error", "upstream_stream_error"
        return Outcome(status=status, http_status=http_status, prompt_tokens=self.prompt_tokens,
                       completion_tokens=completion, usage_given=self.usage_given,
                       cached_prompt_tokens=self.cached_prompt_tokens if self.usage_given else 0,
                       reasoning_tokens=self.reasoning_tokens if self.usage_given else 0,
                       finish_reason=self.finish_reason, error_type=error_type)
