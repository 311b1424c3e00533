"""Login throttling: guesses are expensive for an attacker and cheap for the account's owner.

One atomic Redis script runs before the password is checked (``LOGIN_GATE``), and counts the attempt as
a failure *before* bcrypt runs, so concurrent wrong guesses cannot slip past a check that would only
count them afterwards. A correct password then undoes its count. Three rules:

* **per address**: at most ``login_max_attempts_per_address`` attempts per ``login_address_window_seconds``
  from one client address (whatever the account), the address being the TCP peer or, only behind a
  proxy named in ``AIAAS_TRUSTED_PROXIES``, the forwarded one;
* **per account and address**: after ``login_max_failures_per_account`` failures of one account from one
  address within ``login_failure_window_seconds``, that address may not try that account again until the
  window ends (a lock-out of the guesser, not of the owner elsewhere);
* **per account, from anywhere**: from the same number of failures on, each further attempt waits an
  exponential backoff (1, 2, 4 … seconds, at most ``login_max_backoff_seconds``) after the previous one,
  which caps guessing from many addresses at about one guess per ``login_max_backoff_seconds``. An
  address the owner signed in from recently (30 days) is exempt from the backoff, so a guesser
  elsewhere cannot keep the owner out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiaas.kernel.config import Settings
from aiaas.kernel.errors import TooManyRequests
from aiaas.kernel.redis import Keys, RedisClient, script
from aiaas.kernel.security import sha256_hex

KNOWN_ADDRESS_SECONDS = 30 * 86_400

# The per-address count is one INCR of its own key; the account's three keys share the account's hash
# slot, so this script runs on a Redis Cluster too.
# KEYS: (account, address) failures, account backoff hash, (account, address) known mark.
# ARGV: failure limit, failure window s, max backoff s.
# Returns {allowed (0/1), retry ms, rule ('account' | 'backoff' | '')}.
_GATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= limit then return {0, math.max(redis.call('PTTL', KEYS[1]), 1000), 'account'} end
local known = redis.call('EXISTS', KEYS[3]) == 1
if not known then
  local next_at = tonumber(redis.call('HGET', KEYS[2], 'next') or '0')
  if next_at > now then return {0, next_at - now, 'backoff'} end
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]), 'NX')
local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
if n >= limit then
  local delay = math.min(2 ^ (n - limit), tonumber(ARGV[3])) * 1000
  redis.call('HSET', KEYS[2], 'next', now + delay)
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return {1, 0, ''}
"""
LOGIN_GATE = script(_GATE)


@dataclass(frozen=True)
class LoginKeys:
    """The Redis keys of one login attempt (account by email hash, so no email is stored)."""

    address: str
    failures: str
    backoff: str
    known: str

    @classmethod
    def of(cls, keys: Keys, *, email: str, address: str) -> LoginKeys:
        acct = sha256_hex(email)
        return cls(address=keys("auth", "login", "addr", address),
                   failures=keys.tagged("auth", acct, "login", "fail", address),
                   backoff=keys.tagged("auth", acct, "login", "backoff"),
                   known=keys.tagged("auth", acct, "login", "known", address))


async def admit_attempt(redis: RedisClient, k: LoginKeys, settings: Settings) -> None:
    """Count this attempt (as a failure until proven otherwise) or refuse it with 429 and ``Retry-After``."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(k.address)
        pipe.expire(k.address, settings.login_address_window_seconds, nx=True)
        pipe.pttl(k.address)
        attempts, _, pttl = await pipe.execute()
    if int(attempts) > settings.login_max_attempts_per_address:
        _refuse(max(int(pttl), 1000), b"address")
    allowed, retry_ms, rule = await LOGIN_GATE(
        redis, [k.failures, k.backoff, k.known], settings.login_max_failures_per_account,
        settings.login_failure_window_seconds, settings.login_max_backoff_seconds)
    if not int(allowed):
        _refuse(int(retry_ms), rule if isinstance(rule, bytes) else str(rule).encode())


def _refuse(retry_ms: int, rule: bytes) -> None:
    retry = max(1, math.ceil(retry_ms / 1000))
    what = {b"address": "from this address", b"account": "for this account from this address"}.get(
        rule, "for this account")
    raise TooManyRequests(f"Too many login attempts {what}; retry in {retry} seconds.", code="login_throttled",
                          headers={"Retry-After": str(retry)})


async def succeeded(redis: RedisClient, k: LoginKeys) -> None:
    """The password was right: undo this attempt's failure counts and remember the address as the owner's."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(k.failures, k.backoff)
        pipe.set(k.known, b"1", ex=KNOWN_ADDRESS_SECONDS)
        await pipe.execute()
