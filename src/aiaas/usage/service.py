"""Business rules of metering: admission (limits + quota), settlement, the ledger, org policies."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

import msgspec
from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.errors import BadRequest, ServiceUnavailable, TooManyRequests
from aiaas.kernel.fastredis import PipelinedRedis
from aiaas.kernel.redis import Keys, RedisUnavailable
from aiaas.kernel.security import Principal
from aiaas.usage import limiter, repository
from aiaas.usage.models import OrgPolicy, RequestRecord
from aiaas.usage.schemas import (
    Admission,
    Gate,
    GateClosed,
    UsageFilter,
    UsagePage,
    UsagePolicy,
    UsagePolicyUpdate,
    UsageRecord,
)

log = logging.getLogger("aiaas.usage")

ADMISSIONS = Counter("aiaas_usage_admissions_total", "Admission decisions by outcome.", ["outcome"])

RESERVATION_TTL_MS = 15 * 60 * 1000  # longer than the longest stream we serve
SETTLED_MARKER_TTL_MS = 40 * 24 * 3600 * 1000  # outlives any redelivery or replay

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class PermanentEventError(ValueError):
    """An event that can never be recorded (malformed ids): dead-letter it without retrying."""


# --------------------------------------------------------------------------- Redis health for /ready
class LimiterHealth:
    """What the streamer's ``/ready`` reports: whether limits are enforced or Redis is down."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.default_mode = "closed"

    def ok(self) -> None:
        self.down_since = None

    def failed(self) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()

    def state(self) -> dict[str, str]:
        if self.down_since is None:
            return {"limits": "enforced"}
        return self.down_state()

    def down_state(self) -> dict[str, str]:
        return {"limits": f"redis unavailable: not enforced; per-org policy decides: fail-open orgs are served "
                          f"and counted later, fail-closed orgs get 503 (default fail-{self.default_mode})"}


HEALTH = LimiterHealth()


# --------------------------------------------------------------------------- keys
def _window_keys(keys: Keys, scope: str, ident: str) -> tuple[str, str]:
    return keys("usage", "rl", scope, ident), keys("usage", "rl", scope, ident, "tok")


def _quota_keys(keys: Keys, scope: str, ident: str, month: str) -> tuple[str, str]:
    return keys("usage", "quota", scope, ident, month), keys("usage", "quota", scope, ident, month, "resv")


def _policy_key(keys: Keys, org_id: str) -> str:
    return keys("usage", "policy", org_id)


def quota_key(keys: Keys, scope: str, ident: str, at: dt.datetime) -> str:
    """The Redis hash holding ``used``/``reserved`` of a scope for the month of ``at``."""
    return _quota_keys(keys, scope, ident, limiter.month_key(at))[0]


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
    redis: Redis | PipelinedRedis,
    keys: Keys,
    *,
    principal: Principal,
    model: str,
    estimated_prompt_tokens: int,
    max_tokens: int | None,
    choices: int = 1,
    policy: UsagePolicy | None = None,
    policies: PolicyStore | None = None,
    gate: Gate | None = None,
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

    rid = limiter.new_reservation_id()
    now = limiter.month_of_reservation(rid)
    month = limiter.month_key(now)
    key_id = principal.key_id
    script_keys = [_policy_key(keys, org_id), *_window_keys(keys, "org", org_id),
                   *_quota_keys(keys, "org", org_id, month)]
    argv: list[Any] = [rid, limiter.WINDOW_MS, RESERVATION_TTL_MS, prompt, completion_arg,
                       limiter.quota_expire_at_ms(now)]
    if key_id:
        script_keys.extend([*_window_keys(keys, "key", key_id), *_quota_keys(keys, "key", key_id, month)])
        argv.extend([1, _lim(principal.rpm_limit), _lim(principal.tpm_limit), _lim(principal.token_budget)])
    else:
        argv.extend([0, -1, -1, -1])
    if gate is not None:
        script_keys.append(gate.key)
    member = gate.member if gate is not None else ""

    try:
        res = await limiter.ADMIT_SCRIPT(redis, script_keys, *argv,
                                         _policy_encoder.encode(policy) if policy is not None else "", member,
                                         choices)
        if _s(res[1]) == "no_policy" and policies is not None:
            policy = await policies.load(org_id)
            res = await limiter.ADMIT_SCRIPT(redis, script_keys, *argv, _policy_encoder.encode(policy), member,
                                             choices)
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
    if reason in ("gate_closed", "gate_miss"):
        raise GateClosed(miss=reason == "gate_miss")
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
    if reason not in ("rpm", "tpm"):  # pragma: no cover - the script returns no other reason
        raise RuntimeError(f"admission script refused for an unknown reason {reason!r}")
    ADMISSIONS.labels("rate_limited").inc()
    what = "requests" if reason == "rpm" else "tokens"
    raise TooManyRequests(
        f"Rate limit reached for {what} per minute. Please try again in {limiter.format_duration(retry_ms)}.",
        code="rate_limit_exceeded",
        headers={**headers, "Retry-After": str(limiter.retry_after_seconds(retry_ms))},
    )


def _lim(value: int | None) -> int:
    return -1 if value is None else int(value)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- settlement
async def settle(redis: Redis, keys: Keys, events: Sequence[CompletionRecorded]) -> int:
    """Correct TPM and settle quota for each event (idempotent per event id); returns how many were new."""
    if not events:
        return 0
    pipe = redis.pipeline(transaction=False)
    for ev in events:
        rid = ev.reservation_id or ""
        at = limiter.month_of_reservation(rid) if rid else (ev.started_at or ev.occurred_at)
        month = limiter.month_key(at)
        script_keys = [keys("usage", "settled", ev.event_id)]
        rate = [("org", ev.org_id)] + ([("key", ev.key_id)] if ev.key_id else [])
        for scope, ident in rate:
            script_keys.extend(_window_keys(keys, scope, ident))
        for scope, ident in rate:
            script_keys.extend(_quota_keys(keys, scope, ident, month))
        pipe.eval(limiter.SETTLE, len(script_keys), *script_keys, rid, ev.total_tokens, SETTLED_MARKER_TTL_MS,
                  len(rate), len(rate), limiter.quota_expire_at_ms(at))
    results = await pipe.execute()
    return sum(int(r) for r in results)


async def quota_usage(redis: Redis, keys: Keys, *, scope: str, ident: str, at: dt.datetime) -> tuple[int, int]:
    """``(used, reserved)`` tokens of a scope's quota for the month of ``at``."""
    used, reserved = await redis.hmget(quota_key(keys, scope, ident, at), ["used", "reserved"])
    return int(used or 0), int(reserved or 0)


# --------------------------------------------------------------------------- ledger
def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError) as exc:
        raise PermanentEventError(f"{field} {value!r} is not a UUID") from exc


def ledger_row(ev: CompletionRecorded) -> dict[str, Any]:
    """The ledger row of one completion event; raises ``PermanentEventError`` on malformed ids."""
    org = _uuid(ev.org_id, "org_id")
    if org is None:  # pragma: no cover - the field is required by the event schema
        raise PermanentEventError("org_id missing")
    return {
        "event_id": _uuid(ev.event_id, "event_id"),
        "request_id": ev.request_id[:128],
        "org_id": org,
        "user_id": _uuid(ev.user_id, "user_id"),
        "key_id": _uuid(ev.key_id, "key_id"),
        "endpoint": ev.endpoint[:64],
        "model": ev.model[:256],
        "deployment": ev.deployment[:256] if ev.deployment else None,
        "provider": ev.provider[:128] if ev.provider else None,
        "prompt_tokens": ev.prompt_tokens,
        "completion_tokens": ev.completion_tokens,
        "total_tokens": ev.total_tokens,
        "ttfb_ms": ev.ttfb_ms,
        "latency_ms": ev.latency_ms,
        "status": ev.status[:32],
        "http_status": ev.http_status,
        "finish_reason": ev.finish_reason[:64] if ev.finish_reason else None,
        "error_type": ev.error_type[:128] if ev.error_type else None,
        "stream": ev.stream,
        "reservation_id": ev.reservation_id,
        "started_at": ev.started_at,
        "occurred_at": ev.occurred_at,
    }


async def record_completions(session: AsyncSession, events: Sequence[CompletionRecorded]) -> int:
    """Add events to the ledger (duplicates by event id are skipped); returns how many rows were new."""
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for ev in events:
        row = ledger_row(ev)
        rows.setdefault(row["event_id"], row)  # the same event twice in one batch: keep one
    return await repository.insert_requests(session, list(rows.values()))


def _record(row: RequestRecord) -> UsageRecord:
    return UsageRecord(
        event_id=str(row.event_id), request_id=row.request_id, org_id=str(row.org_id),
        user_id=str(row.user_id) if row.user_id else None, key_id=str(row.key_id) if row.key_id else None,
        endpoint=row.endpoint, model=row.model, deployment=row.deployment, provider=row.provider,
        prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens, total_tokens=row.total_tokens,
        ttfb_ms=row.ttfb_ms, latency_ms=row.latency_ms, status=row.status, http_status=row.http_status,
        finish_reason=row.finish_reason, error_type=row.error_type, stream=row.stream, started_at=row.started_at,
        occurred_at=row.occurred_at,
    )


def encode_cursor(at: dt.datetime, event_id: uuid.UUID) -> str:
    """An opaque cursor for the row after which the next page starts."""
    raw = f"{at.isoformat()}|{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The position a cursor names; ``BadRequest`` when it was not made by ``encode_cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, eid = raw.split("|", 1)
        parsed = dt.datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed, uuid.UUID(eid)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("cursor is not valid; use the next_cursor of a previous page", param="cursor") from exc


def validate_filter(flt: UsageFilter) -> None:
    """Refuse malformed ids in a filter with a clear 400 (never a database error)."""
    for field in ("org_id", "key_id", "user_id"):
        value = getattr(flt, field)
        if value is not None:
            try:
                uuid.UUID(value)
            except ValueError as exc:
                raise BadRequest(f"{field} must be a UUID", param=field) from exc
    if flt.since and flt.until and flt.since >= flt.until:
        raise BadRequest("since must be before until", param="since")


async def list_usage(session: AsyncSession, flt: UsageFilter, *, cursor: str | None, limit: int) -> UsagePage:
    """One page of an org's ledger, newest first."""
    validate_filter(flt)
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.list_requests(session, flt, after=after, limit=limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1].occurred_at, rows[-1].event_id) if has_more and rows else None
    return UsagePage(data=[_record(r) for r in rows], next_cursor=nxt, has_more=has_more)


CSV_COLUMNS = ("occurred_at", "event_id", "request_id", "org_id", "key_id", "user_id", "endpoint", "model",
               "deployment", "provider", "status", "http_status", "prompt_tokens", "completion_tokens",
               "total_tokens", "ttfb_ms", "latency_ms", "stream", "finish_reason", "error_type")


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): a model name or a
# request id a tenant chose could otherwise run in the spreadsheet of whoever opens the export.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_row(rec: UsageRecord) -> list[str]:
    """The CSV cells of one ledger row, in ``CSV_COLUMNS`` order; text that a spreadsheet would run as a
    formula is prefixed with ``'`` (OWASP's advice), so it is shown, never evaluated."""
    out = []
    for column in CSV_COLUMNS:
        value = getattr(rec, column)
        if value is None:
            out.append("")
        elif isinstance(value, dt.datetime):
            out.append(value.isoformat())
        elif isinstance(value, str) and value.startswith(_FORMULA_START):
            out.append("'" + value)
        else:
            out.append(str(value))
    return out


async def export_usage(session: AsyncSession, flt: UsageFilter) -> AsyncIterator[UsageRecord]:
    """Every matching ledger row, newest first."""
    validate_filter(flt)
    async for row in repository.stream_requests(session, flt):
        yield _record(row)


# --------------------------------------------------------------------------- policies
def _policy(org_id: str, row: OrgPolicy | None, default_mode: str) -> UsagePolicy:
    if row is None:
        return UsagePolicy(org_id=org_id, redis_failure_mode=default_mode)  # type: ignore[arg-type]
    return UsagePolicy(
        org_id=org_id, rpm_limit=row.rpm_limit, tpm_limit=row.tpm_limit,
        monthly_token_budget=row.monthly_token_budget, default_max_tokens=row.default_max_tokens,
        redis_failure_mode=row.redis_failure_mode,  # type: ignore[arg-type]
    )


_policy_encoder = msgspec.json.Encoder()
_policy_decoder = msgspec.json.Decoder(UsagePolicy)


class PolicyStore:
    """Org policies for the hot path: Redis (minutes), then the database on a miss.

    Nothing is kept in process memory between requests (a policy change is seen by every replica at
    once, on the write-through to Redis). With a warm Redis entry an admission reads no database.
    While Redis is down the policy is read from the database, so each org's fail-open/fail-closed
    choice still applies (that outage path costs one query per request; the defaults if PostgreSQL is
    unreachable too).
    """

    def __init__(self, redis: Redis, keys: Keys, sessions: SessionFactory, *, default_mode: str = "closed",
                 redis_ttl: int = 300) -> None:
        self._redis = redis
        self._keys = keys
        self._sessions = sessions
        self._default_mode = default_mode
        self._redis_ttl = redis_ttl
        HEALTH.default_mode = default_mode

    def _key(self, org_id: str) -> str:
        return _policy_key(self._keys, org_id)

    async def get(self, org_id: str) -> UsagePolicy:
        """The policy of ``org_id`` (the defaults when it has none)."""
        try:
            raw = await self._redis.get(self._key(org_id))
        except RedisUnavailable:
            raw = None
        if raw is not None:
            return _policy_decoder.decode(raw)
        return await self.load(org_id)

    async def load(self, org_id: str) -> UsagePolicy:
        """The policy of ``org_id`` from the database (the defaults when it has none or the database is
        unreachable), written to the Redis cache when Redis is up. For ``admit`` on a cache miss."""
        try:
            oid = uuid.UUID(org_id)
        except ValueError:
            return _policy(org_id, None, self._default_mode)
        try:
            async with self._sessions() as session:
                row = await repository.get_policy(session, oid)
                policy = _policy(org_id, row, self._default_mode)
        except Exception:  # database unreachable: the defaults, not an error on the hot path
            log.warning("cannot load usage policy of %s; using defaults", org_id, exc_info=True)
            return _policy(org_id, None, self._default_mode)
        with suppress(RedisUnavailable):
            await self._redis.set(self._key(org_id), _policy_encoder.encode(policy), ex=self._redis_ttl)
        return policy

    async def store(self, policy: UsagePolicy) -> None:
        """Write a changed policy through to Redis (every replica reads it on its next request)."""
        try:
            await self._redis.set(self._key(policy.org_id), _policy_encoder.encode(policy), ex=self._redis_ttl)
        except RedisUnavailable:
            log.warning("policy cache of %s not updated: Redis unavailable", policy.org_id)

    async def invalidate(self, org_id: str) -> None:
        """Forget a changed policy in Redis (the next request reloads it from the database)."""
        try:
            await self._redis.delete(self._key(org_id))
        except RedisUnavailable:
            log.warning("policy cache of %s not invalidated: Redis unavailable", org_id)


async def get_policy(session: AsyncSession, org_id: str, *, default_mode: str = "closed") -> UsagePolicy:
    """An org's stored policy (the defaults when none is stored)."""
    return _policy(org_id, await repository.get_policy(session, _org_uuid(org_id)), default_mode)


async def put_policy(session: AsyncSession, org_id: str, data: UsagePolicyUpdate) -> UsagePolicy:
    """Create or replace an org's policy."""
    row = await repository.upsert_policy(session, _org_uuid(org_id), msgspec.structs.asdict(data))
    return _policy(org_id, row, "closed")


def _org_uuid(org_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(org_id)
    except ValueError as exc:
        raise BadRequest("org_id must be a UUID", param="org_id") from exc
