"""Choosing deployments, and the circuit breaker that keeps failing ones out of rotation.

Breaker state lives in Redis, not in the process, so every streamer replica sees the same state and a
restart forgets nothing: one key per public model (``inference:breaker:{model}``) holds a small JSON
object ``{deployment_id: [consecutive_failures, open_until_epoch]}``. It is read in the same ``MGET``
as the catalog entry (no extra round trip on the hot path) and written only when something changes: a
failure (one atomic Lua script) or the first success after failures. A deployment whose breaker has
cooled down is half-open: one request at a time (a ``SET NX PX`` probe lock) may try it; its success
closes the breaker, its failure re-opens it for another cool-down.

While Redis is unreachable there is no shared state: the lookup reads every breaker as closed and the
writes (failure counts, probe locks) are skipped, so routing falls back to plain priority and weight
order with retries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Sequence

import msgspec

from aiaas.inference.schemas import CatalogModel, Deployment, DeploymentHealth
from aiaas.inference.service import metrics
from aiaas.kernel.redis import Keys, RedisClient, RedisUnavailable, script

log = logging.getLogger("aiaas.inference.routing")

BreakerState = dict[str, tuple[int, float]]

_state_decoder = msgspec.json.Decoder(BreakerState)

# KEYS[1] breaker key; ARGV: deployment id, "fail"|"ok", threshold, now, cooldown, ttl seconds.
_UPDATE = """
local raw = redis.call('GET', KEYS[1])
local st = {}
if raw then st = cjson.decode(raw) end
local e = st[ARGV[1]]
if ARGV[2] == 'fail' then
  if not e then e = {0, 0} end
  e[1] = e[1] + 1
  local opened = 0
  if e[1] >= tonumber(ARGV[3]) then
    e[2] = tonumber(ARGV[4]) + tonumber(ARGV[5])
    opened = 1
  end
  st[ARGV[1]] = e
  redis.call('SET', KEYS[1], cjson.encode(st), 'EX', tonumber(ARGV[6]))
  return opened
end
st[ARGV[1]] = nil
if next(st) == nil then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], cjson.encode(st), 'EX', tonumber(ARGV[6])) end
return 0
"""


_UPDATE_SCRIPT = script(_UPDATE)


def decode_state(raw: bytes | None) -> BreakerState:
    """The breaker state read from Redis (empty when absent or unreadable)."""
    if not raw:
        return {}
    try:
        return _state_decoder.decode(raw)
    except msgspec.DecodeError:
        return {}


def order_deployments(deployments: Sequence[Deployment], state: BreakerState, *, now: float,
                      rng: random.Random | None = None) -> list[tuple[Deployment, bool]]:
    """Deployments to try, in order, each with whether its breaker is half-open (needs a probe lock).

    Enabled deployments with weight > 0 are grouped by priority (0 first); inside a group the order is a
    weighted random permutation (each deployment's key is ``u ** (1 / weight)``, larger first), so the
    first choice follows the weights and the fallbacks are the remaining ones. Open breakers are left
    out; half-open ones keep their place, so they get probe traffic even while the others are healthy.
    """
    r = rng or random
    keyed: list[tuple[int, float, Deployment, bool]] = []
    for d in deployments:
        if not d.enabled or d.weight <= 0:
            continue
        key = r.random() ** (1.0 / d.weight)
        entry = state.get(d.id)
        half_open = False
        if entry is not None and entry[1] > 0:
            if now < entry[1]:
                continue  # open
            half_open = True
        keyed.append((d.priority, -key, d, half_open))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [(t[2], t[3]) for t in keyed]


def retry_after_seconds(deployments: Sequence[Deployment], state: BreakerState, *, now: float) -> int:
    """Seconds until the first open breaker half-opens (at least 1)."""
    waits = [state[d.id][1] - now for d in deployments if d.id in state and state[d.id][1] > now]
    return max(1, int(min(waits)) + 1) if waits else 1


def health_of(models: Sequence[CatalogModel], states: dict[str, BreakerState] | None, *,
              now: float) -> list[DeploymentHealth]:
    """Each deployment of ``models`` with its breaker, read as routing reads it (``states`` None: unknown)."""
    out: list[DeploymentHealth] = []
    for model in models:
        state = None if states is None else states.get(model.name, {})
        for d in model.deployments:
            failures, until = (state or {}).get(d.id, (0, 0.0))
            if state is None:
                breaker = "unknown"
            elif until > now:
                breaker = "open"
            elif until > 0:
                breaker = "half_open"
            else:
                breaker = "closed"
            out.append(DeploymentHealth(
                model=model.name, deployment=d.name, deployment_id=d.id, provider=d.provider, enabled=d.enabled,
                weight=d.weight, priority=d.priority, breaker=breaker, consecutive_failures=failures,
                open_until=dt.datetime.fromtimestamp(until, dt.UTC) if until > 0 else None))
    return out


class Breakers:
    """Reads and updates breaker state in Redis for one public model at a time."""

    def __init__(self, redis: RedisClient, keys: Keys, *, failures: int, cooldown: float) -> None:
        self._redis = redis
        self._keys = keys
        self._failures = failures
        self._cooldown = cooldown
        self._ttl = int(max(cooldown * 20, 600))

    def key(self, model: str) -> str:
        """The Redis key of ``model``'s breaker state (in the model's hash slot, next to its catalog entry)."""
        return self._keys.tagged("inference", model, "breaker")

    async def states(self, models: Sequence[str]) -> dict[str, BreakerState] | None:
        """The breaker state of each of ``models`` (one pipelined GET each: the keys live in different
        slots of a cluster); None when Redis cannot be read."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in models:
                    pipe.get(self.key(model))
                raws = await pipe.execute()
        except RedisUnavailable:
            return None
        return {model: decode_state(raw) for model, raw in zip(models, raws, strict=True)}

    async def acquire_probe(self, model: str, dep: Deployment) -> bool:
        """Whether this request may probe a half-open deployment (one probe at a time)."""
        ms = int(max(dep.first_byte_timeout, 1.0) * 1000)
        try:
            ok = await self._redis.set(self._keys("inference", "probe", dep.id), b"1", nx=True, px=ms)
        except RedisUnavailable:
            return True  # no shared state to coordinate on: let this request probe
        return bool(ok)

    async def release_probe(self, dep: Deployment) -> None:
        """End this request's probe of ``dep``, whatever its outcome.

        Without this a failed probe would hold the lock for its whole expiry (the first-byte timeout,
        60 s by default), and a deployment that came back would see no traffic for that long although its
        cool-down had passed. The expiry stays as the guard against a process that dies mid-probe.
        """
        with contextlib.suppress(*RedisUnavailable):
            await self._redis.delete(self._keys("inference", "probe", dep.id))

    async def failure(self, model: str, dep: Deployment) -> None:
        """Count a failure; opens the breaker at the threshold (or re-opens a half-open one)."""
        try:
            opened = await _UPDATE_SCRIPT(self._redis, [self.key(model)], dep.id, "fail", self._failures, time.time(),
                                          self._cooldown, self._ttl)
        except RedisUnavailable:
            log.warning("breaker of %s/%s not updated: Redis unavailable", model, dep.name)
            return
        if opened:
            metrics.DEPLOYMENT_HEALTHY.labels(model, dep.name).set(0)
            metrics.BREAKER_TRANSITIONS.labels(model, dep.name, "open").inc()

    async def success(self, model: str, dep: Deployment, state: BreakerState) -> None:
        """Reset the failure count, only if there is one (so the happy path never writes)."""
        entry = state.get(dep.id)
        if entry is None:
            return
        try:
            await _UPDATE_SCRIPT(self._redis, [self.key(model)], dep.id, "ok", self._failures, time.time(),
                                 self._cooldown, self._ttl)
        except RedisUnavailable:
            return
        if entry[1] > 0:
            metrics.DEPLOYMENT_HEALTHY.labels(model, dep.name).set(1)
            metrics.BREAKER_TRANSITIONS.labels(model, dep.name, "closed").inc()
