"""Admission: the one place where rate limits and quotas are checked before an upstream is called.

``admit`` runs once per inference request, after the model is resolved and authorized and before any
deployment is tried. It may raise ``kernel.errors.TooManyRequests`` (429, with ``Retry-After``) to
refuse; otherwise it returns the headers to add to the response (``x-ratelimit-*``) and, if a token
reservation was taken, its id (carried on the ``CompletionRecorded`` event so ``usage`` can settle it).

The metering work fills this in (through ``usage.api``); until then it admits everything.
"""

from __future__ import annotations

import msgspec

from aiaas.kernel.security import Principal


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """What admission decided: headers for the response and an optional reservation id."""

    headers: dict[str, str] = msgspec.field(default_factory=dict)
    reservation_id: str | None = None


ADMIT_ALL = Admission()


async def admit(*, principal: Principal, model: str, estimated_prompt_tokens: int,
                max_tokens: int | None) -> Admission:
    """Admit (or refuse with 429) one request of ``principal`` for ``model``.

    ``estimated_prompt_tokens`` comes from ``tokens.estimate_tokens``; ``max_tokens`` is the client's
    cap on completion tokens (None when it set none).
    """
    return ADMIT_ALL
