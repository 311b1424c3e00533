"""Admission (limits and the quota reservation, one script per request), settlement, and the limiter's health."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel import money
from aiaas.kernel.errors import BadRequest, ServiceUnavailable, TooManyRequests
from aiaas.kernel.redis import Keys, RedisClient, RedisUnavailable
from aiaas.kernel.security import Principal
from aiaas.usage import limiter
from aiaas.usage.schemas import (
    Admission,
    UsagePolicy,
)
from aiaas.usage.service.health import HEALTH
from aiaas.usage.service.keys import policy_key, quota_key, quota_keys, window_keys
from aiaas.usage.service.policies import PolicyStore, encode_policy

log = logging.getLogger("aiaas.usage")

ADMISSIONS = Counter("aiaas_usage_admissions_total", "Admission decisions by outcome.", ["outcome"])

RESERVATION_TTL_MS = 15 * 60 * 1000  # longer than the longest stream we serve
SETTLED_MARKER_TTL_MS = 40 * 24 * 3600 * 1000  # outlives any redelivery or replay
# A settlement never adds more than this (2**53 nano-USD, about 9 million USD: above any spend limit), so a
# malformed event cannot push the script's arithmetic past what a double holds exactly.
MAX_CHARGE_NANO_USD = 2**53


# --------------------------------------------------------------------------- Redis health for /ready


# --------------------------------------------------------------------------- admission
def _headers(values: Sequence[int]) -> dict[str, str]:
    lreq, rreq, treq, ltok, rtok, ttok = (int(v) for v in values)
    out: dict[str, str] = {}
    if lreq >= 0:
        out["x-ratelimit-limit-requests"] = str(lreq)
        out["x-ratelimit-remaining-requests"] = str(rreq)
        out["x-ratelimit-reset-requests"] = limiter.format_duration(treq)
    if ltok >= 0:
        out["x-ratelimit-limit-tokens"] = str(ltok)
        out["x-ratelimit-remaining-tokens"] = str(rtok)
        out["x-ratelimit-reset-tokens"] = limiter.format_duration(ttok)
    return out


# The most tokens one request may reserve: far above any real request, and far below 2**53, so the
# limiter's arithmetic (Lua numbers are doubles; HINCRBY takes 64-bit integers) stays exact.
MAX_ADMITTED_TOKENS = 2**40
MAX_CHOICES = 128


def _admission_numbers(prompt: int, max_tokens: int | None, choices: int) -> tuple[int, int, int]:
    """The admission script's numeric arguments, checked; ``BadRequest`` before Redis sees a bad one."""
    if not 0 <= prompt <= MAX_ADMITTED_TOKENS:
        raise BadRequest("The request is too large to admit.", code="request_too_large")
    if max_tokens is not None and not 0 <= max_tokens <= MAX_ADMITTED_TOKENS:
        raise BadRequest(f"max_tokens must be between 0 and {MAX_ADMITTED_TOKENS}.", param="max_tokens",
                         code="invalid_max_tokens")
    if not 1 <= choices <= MAX_CHOICES:
        raise BadRequest(f"n must be between 1 and {MAX_CHOICES}.", param="n", code="invalid_n")
    return int(prompt), -1 if max_tokens is None else int(max_tokens), int(choices)


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
    """Check and charge every limit of the request in one atomic script; see ``usage.api.admit``.

    With ``policies`` (the hot path) the script reads the org's cached policy itself: one Redis call when
    the cache is warm. On a miss the policy is loaded from the database (which fills the cache) and the
    script runs once more with it; while Redis is down it is read from the database to decide fail-open.
    """
    if (policy is None) == (policies is None):
        raise TypeError("admit() takes exactly one of policy= and policies=")
    org_id = principal.org_id or (policy.org_id if policy is not None else "")
    prompt, completion_arg, choices = _admission_numbers(estimated_prompt_tokens, max_tokens, choices)
    price_in, price_out = _spend_rate(spend_rate)

    rid = limiter.new_reservation_id()
    now = limiter.month_of_reservation(rid)
    month = limiter.month_key(now)
    key_id = principal.key_id
    script_keys = [policy_key(keys, org_id), *window_keys(keys, org_id, "org", org_id),
                   *quota_keys(keys, org_id, "org", org_id, month)]
    argv: list[Any] = [rid, limiter.WINDOW_MS, RESERVATION_TTL_MS, prompt, completion_arg,
                       limiter.quota_expire_at_ms(now)]
    if key_id:
        script_keys.extend(window_keys(keys, org_id, "key", key_id))
        argv.extend([1, _lim(principal.rpm_limit), _lim(principal.tpm_limit)])
    else:
        argv.extend([0, -1, -1])
    key_spend_limit = -1
    if key_id and principal.spend_limit_nusd is not None:  # KEYS[8], KEYS[9], after the key's windows
        key_spend_limit = min(max(int(principal.spend_limit_nusd), 0), MAX_CHARGE_NANO_USD)
        script_keys.extend(quota_keys(keys, org_id, "key", key_id, month))

    try:
        res = await limiter.ADMIT_SCRIPT(redis, script_keys, *argv,
                                         encode_policy(policy) if policy is not None else "", choices,
                                         price_in, price_out, key_spend_limit)
        if _s(res[1]) == "no_policy" and policies is not None:
            policy = await policies.load(org_id)
            res = await limiter.ADMIT_SCRIPT(redis, script_keys, *argv, encode_policy(policy), choices,
                                             price_in, price_out, key_spend_limit)
    except RedisUnavailable as exc:
        HEALTH.failed()
        if policy is None and policies is not None:
            policy = await policies.get(org_id)  # Redis down: PolicyStore reads the database
        if policy is not None and policy.fail_open:
            ADMISSIONS.labels("fail_open").inc()
            log.warning("Redis unavailable (%s); org %s fails open: serving uncounted", type(exc).__name__, org_id)
            return Admission(reservation_id=None, headers={}, enforced=False)
        ADMISSIONS.labels("fail_closed").inc()
        raise ServiceUnavailable(
            "Rate limiting is unavailable right now and this organization's policy is to refuse requests "
            "meanwhile. Retry shortly.", code="rate_limiter_unavailable", headers={"Retry-After": "1"},
        ) from exc
    HEALTH.ok()
    admitted, reason, retry_ms = int(res[0]), _s(res[1]), int(res[2])
    if reason == "invalid":  # checked in Python first; the script checks again before it writes
        raise BadRequest("The request's token counts are out of range.", code="request_too_large")
    cost, completion = int(res[9]), int(res[10])
    if reason.startswith("too_large:"):
        # A request larger than a whole limit can never pass: say so instead of a Retry-After that lies.
        ADMISSIONS.labels("too_large").inc()
        raise TooManyRequests(
            f"Request too large: it may use {cost} tokens (prompt {prompt} + completions {completion}) but "
            f"the {reason.partition(':')[2]}'s limit is {int(res[11])} tokens per minute. Lower max_tokens or "
            "shorten the prompt.", code="rate_limit_exceeded", param="max_tokens")
    headers = _headers(res[3:9])
    if admitted:
        ADMISSIONS.labels("admitted").inc()
        return Admission(reservation_id=rid, headers=headers)
    if reason == "quota":
        ADMISSIONS.labels("insufficient_quota").inc()
        wait = (limiter.month_end(now) - now).total_seconds()
        raise TooManyRequests(
            f"You exceeded your organization's monthly token budget: this request needs up to {cost} tokens "
            f"(prompt {prompt} + completions {completion}). The budget renews at the start of next month (UTC).",
            code="insufficient_quota",
            headers={**headers, "Retry-After": str(limiter.retry_after_seconds(wait * 1000))},
        )
    if reason in ("spend", "key_spend"):
        ADMISSIONS.labels("insufficient_quota").inc()
        wait = (limiter.month_end(now) - now).total_seconds()
        whose, at = ("your organization's", 13) if reason == "spend" else ("this API key's", 15)
        limit, used = int(res[at]), int(res[at + 1])
        raise TooManyRequests(
            f"You exceeded {whose} monthly spend limit of ${money.usd_text(limit)} "
            f"(${money.usd_text(used)} spent or held by requests in flight): this request may cost up to "
            f"${money.usd_text(int(res[12]))} (prompt {prompt} + completions {completion} tokens at the model's "
            "price). The limit renews at the start of next month (UTC).",
            code="insufficient_quota",
            headers={**headers, "Retry-After": str(limiter.retry_after_seconds(wait * 1000))},
        )
    if reason not in ("rpm", "tpm"):  # pragma: no cover - the script returns no other reason
        raise RuntimeError(f"admission script refused for an unknown reason {reason!r}")
    ADMISSIONS.labels("rate_limited").inc()
    what = "requests" if reason == "rpm" else "tokens"
    raise TooManyRequests(
        f"Rate limit reached for {what} per minute. Please try again in {limiter.format_duration(retry_ms)}.",
        code="rate_limit_exceeded",
        headers={**headers, "Retry-After": str(limiter.retry_after_seconds(retry_ms))},
    )


# A price per token at most 1 USD (the price book's maximum, a million USD per million tokens).
MAX_PICO_USD_PER_TOKEN = 10**12


def _spend_rate(rate: tuple[int, int] | None) -> tuple[int, int]:
    if rate is None:
        return -1, -1
    price_in, price_out = (int(v) for v in rate)
    if not (0 <= price_in <= MAX_PICO_USD_PER_TOKEN and 0 <= price_out <= MAX_PICO_USD_PER_TOKEN):
        raise ValueError(f"spend rate {rate!r} out of range (pico-USD per token, 0..{MAX_PICO_USD_PER_TOKEN})")
    return price_in, price_out


def _lim(value: int | None) -> int:
    return -1 if value is None else int(value)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- settlement
# At most this many keys in one settlement call (its shared keys and up to about 100 events' markers):
# a script holds Redis while it runs, so a large batch of one org's events is settled in several calls.
_SETTLE_GROUP_KEYS = 108

async def settle(redis: RedisClient, keys: Keys, events: Sequence[CompletionRecorded]) -> int:
    """Correct TPM and settle quota for each event (idempotent per event id); returns how many were new."""
    if not events:
        return 0
    # One script call per group of events that share an org, an API key (or none) and a quota month: the
    # keys they share travel once, then one marker and three arguments per event. One EVALSHA per event,
    # with every key again, was most of the ledger consumer's CPU (redis-py packs each argument in Python).
    groups: dict[tuple[str, str | None, str], tuple[list[str], list[Any]]] = {}
    calls: list[tuple[list[str], list[Any]]] = []
    for ev in events:
        rid = ev.reservation_id or ""
        at = limiter.month_of_reservation(rid) if rid else (ev.started_at or ev.occurred_at)
        month = limiter.month_key(at)
        group = groups.get((ev.org_id, ev.key_id, month))
        if group is None or len(group[0]) >= _SETTLE_GROUP_KEYS:
            rate = [("org", ev.org_id)] + ([("key", ev.key_id)] if ev.key_id else [])
            shared: list[str] = []
            for scope, ident in rate:
                shared.extend(window_keys(keys, ev.org_id, scope, ident))
            shared.extend(quota_keys(keys, ev.org_id, "org", ev.org_id, month))
            if ev.key_id:  # the key's month (tokens and spend) too, so a key limit set mid-month sees it
                shared.extend(quota_keys(keys, ev.org_id, "key", ev.key_id, month))
            group = groups[ev.org_id, ev.key_id, month] = (
                shared, [SETTLED_MARKER_TTL_MS, len(rate), 2 if ev.key_id else 1, limiter.quota_expire_at_ms(at)])
            calls.append(group)
        charge = min(max(int(ev.charged_nano_usd), 0), MAX_CHARGE_NANO_USD)
        group[0].append(keys.tagged("usage", ev.org_id, "settled", ev.event_id))
        group[1].extend((rid, ev.total_tokens, charge))
    results = await limiter.SETTLE_SCRIPT.run_many(redis, calls)
    return sum(int(r) for r in results)


async def spend_usage(redis: RedisClient, keys: Keys, *, org_id: str, at: dt.datetime,
                      key_id: str | None = None) -> tuple[int, int]:
    """``(spent, reserved)`` nano-USD of the org's monthly spend (of one of its keys, with ``key_id``) for
    the month of ``at``."""
    scope, ident = ("key", key_id) if key_id else ("org", org_id)
    spent, reserved = await redis.hmget(quota_key(keys, org_id, scope, ident, at), ["spent", "spend_reserved"])
    return int(spent or 0), int(reserved or 0)


async def quota_usage(redis: RedisClient, keys: Keys, *, org_id: str, scope: str, ident: str,
                      at: dt.datetime) -> tuple[int, int]:
    """``(used, reserved)`` tokens of a scope's quota (the org, or one of its keys) for the month of ``at``."""
    used, reserved = await redis.hmget(quota_key(keys, org_id, scope, ident, at), ["used", "reserved"])
    return int(used or 0), int(reserved or 0)
