"""The provider interface shared by the HTTP upstream and the embedded model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# kind -> whether a failure of that kind (before the first byte) may be retried on another deployment.
RETRYABLE_KINDS = {"connect": True, "timeout": True, "status_5xx": True, "status_429": True, "protocol": True,
                   "overloaded": True, "status_4xx": False, "config": True}


class UpstreamFailure(Exception):
    """A deployment failed; ``kind`` is one of ``RETRYABLE_KINDS``'s keys."""

    def __init__(self, kind: str, detail: str, *, status: int | None = None, body: bytes | None = None,
                 retry_after: str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.body = body
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether another deployment may be tried."""
        return RETRYABLE_KINDS.get(self.kind, False)

    @property
    def counts_against_breaker(self) -> bool:
        """A 4xx is the client's fault and a full local queue is load, not the deployment's health."""
        return self.kind not in {"status_4xx", "overloaded"}


@dataclass
class UpstreamReply:
    """A whole (non-streamed) response body from a deployment."""

    body: bytes
    content_type: str = "application/json"


class EventStream(Protocol):
    """An open stream of SSE events (each ``data: ...\\n\\n`` as bytes) whose first event has arrived."""

    first: bytes

    async def next_event(self) -> bytes | None:
        """The next event's bytes, or None at the end; raises UpstreamFailure when the upstream breaks."""
        ...

    async def aclose(self) -> None:
        """Release the upstream (cancelling it if it is still generating)."""
        ...


@dataclass
class Call:
    """What a provider needs for one attempt."""

    endpoint: str  # "chat.completions" | "completions" | "embeddings" | (passed through) "responses" | "messages"
    body: bytes  # the upstream request body (model already replaced)
    public_model: str
    deadline: float  # loop time by which the whole request must finish
    headers: dict[str, str] | None = None  # a passed-through request's own headers (``anthropic-beta``)
