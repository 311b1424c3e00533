"""Public interface of the ``usage`` context: the only functions other contexts may call.

The streamer calls, before the upstream call::

    admission = await usage_api.admit(redis, keys, principal=principal, model=model,
                                      estimated_prompt_tokens=n, max_tokens=body.max_tokens,
                                      policies=policies)   # PolicyStore, built once per process
    # put admission.headers on the response; put admission.reservation_id into CompletionRecorded

and publishes one ``CompletionRecorded`` per request afterwards; the worker settles it. The worker also
keeps the ledger's monthly partitions, each in a unit of work of ``usage``::

    await usage_api.ensure_ledger_partitions(session)          # at start and daily: this month and the next
    await usage_api.drop_expired_partitions(session, retention_days=settings.usage_ledger_retention_days)

The read side (``analytics``) rebuilds its projections from the ledger::

    async for event in usage_api.replay_completions(session, since=start, org_id=org):  # oldest first
        ...

Functions here return frozen Structs, never ORM rows.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiaas.kernel.redis import Keys, RedisClient
from aiaas.kernel.security import Principal
from aiaas.usage import service
from aiaas.usage.schemas import Admission, UsagePolicy
from aiaas.usage.service import PolicyStore, drop_expired_partitions, ensure_ledger_partitions, replay_completions

__all__ = ["Admission", "PolicyStore", "UsagePolicy", "admit", "drop_expired_partitions", "ensure_ledger_partitions",
           "ready_state", "replay_completions"]


async def admit(
    redis: RedisClient,
    keys: Keys,
    *,
    principal: Principal,
    model: str,
    estimated_prompt_tokens: int,
    max_tokens: int | None,
    choices: int = 1,
    policy: UsagePolicy | None = None,
    policies: PolicyStore | None = None,
    spend_rate: tuple[int, int] | None = None,
) -> Admission:
    """Admit one inference request or refuse it, in one atomic Redis script.

    Pass exactly one of ``policies`` (the hot path: the script reads the org's cached policy itself, so a
    warm admission is ONE Redis call; on a cache miss the store loads it from the database and fills the
    cache, and the script runs once more with it) or ``policy`` (an explicit policy, e.g. in tests).

    Checks RPM and TPM of the API key (its ``rpm_limit``/``tpm_limit``) and of the org (``policy``), and
    reserves the request's maximum cost (``estimated_prompt_tokens + choices * max_tokens``, with the
    policy's ``default_max_tokens`` when the request sets none; ``choices`` is how many completions the
    upstream is asked for, OpenAI's ``n``) against the org's monthly budget, and, when ``spend_rate`` gives the
    model's price (pico-USD per prompt and per completion token, rounded up; None: unpriced), that many
    tokens' cost against the org's monthly spend limit (the worker settles ``CompletionRecorded.
    charged_nano_usd``). Either everything is charged
    or nothing is; arguments out of range (negative, or above ``MAX_ADMITTED_TOKENS``) raise
    ``BadRequest`` before Redis is touched. Everything it decides on is in its arguments and in ``usage``'s
    own keys: whether the caller may use ``model`` at all is the caller's to check first.

    Raises ``kernel.errors.TooManyRequests`` (429) with code ``rate_limit_exceeded`` or
    ``insufficient_quota`` and ``Retry-After`` plus the ``x-ratelimit-*`` headers. When Redis is
    unreachable: an org whose policy fails open is admitted uncounted (``Admission.enforced`` False,
    ``reservation_id`` None; its usage is still counted when the worker settles the event); otherwise
    ``kernel.errors.ServiceUnavailable`` (503, code ``rate_limiter_unavailable``).

    """
    return await service.admit(redis, keys, principal=principal, model=model,
                               estimated_prompt_tokens=estimated_prompt_tokens, max_tokens=max_tokens,
                               choices=choices, policy=policy, policies=policies, spend_rate=spend_rate)


def ready_state(checks: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """For the streamer's ``make_app(extra_ready_state=...)``: ``{"limits": "enforced"}``, or the
    fail-open/fail-closed state while Redis is unreachable.

    ``checks`` are the readiness results of that ``/ready`` call (its live Redis ``PING`` decides);
    without them the last admission's outcome does.
    """
    if checks is not None and "redis" in checks:
        return {"limits": "enforced"} if checks["redis"] == "ok" else service.HEALTH.down_state()
    return service.HEALTH.state()
