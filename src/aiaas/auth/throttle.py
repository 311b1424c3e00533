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

from redis.asyncio import Redis

from aiaas.kernel.config import Settings
from aiaas.kernel.errors import TooManyRequests
from aiaas.kernel.redis import Keys, LuaScript
from aiaas.kernel.security import sha256_hex

KNOWN_ADDRESS_SECONDS = 30 * 86_400

# KEYS: address counter, (account, address) failures, account backoff hash, (account, address) known mark.
# ARGV: address limit, address window s, failure limit, failure window s, max backoff s.
# Returns {allowed (0/1), retry ms, rule ('address' | 'account' | 'backoff' | '')}.
_GATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local attempts = redis.call('INCR', KEYS[1])
if attempts == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
if attempts > tonumber(ARGV[1]) then return {0, math.max(redis.call('PTTL', KEYS[1]), 1000), 'address'} end
local limit = tonumber(ARGV[3])
local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures >= limit then return {0, math.max(redis.call('PTTL', KEYS[2]), 1000), 'account'} end
local known = redis.call('EXISTS', KEYS[4]) == 1
if not known then
  local next_at = tonumber(redis.call('HGET', KEYS[3], 'next') or '0')
  if next_at > now then return {0, next_at - now, 'backoff'} end
end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]), 'NX')
local n = redis.call('HINCRBY', KEYS[3], 'n', 1)
if n >= limit then
  local delay = math.min(2 ^ (n - limit), tonumber(ARGV[5])) * 1000
  redis.call('HSET', KEYS[3], 'next', now + delay)
end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return {1, 0, ''}
"""
LOGIN_GATE = LuaScript(_GATE)


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
                   failures=keys("auth", "login", "fail", acct, address),
                   backoff=keys("auth", "login", "backoff", acct),
                   known=keys("auth", "login", "known", acct, address))


async def admit_attempt(redis: Redis, k: LoginKeys, settings: Settings) -> None:
    """Count this attempt (as a failure until proven otherwise) or refuse it with 429 and ``Retry-After``."""
    allowed, retry_ms, rule = await LOGIN_GATE(
        redis, [k.address, k.failures, k.backoff, k.known], settings.login_max_attempts_per_address,
        settings.login_address_window_seconds, settings.login_max_failures_per_account,
        settings.login_failure_window_seconds, settings.login_max_backoff_seconds)
    if int(allowed):
        return
    retry = max(1, math.ceil(int(retry_ms) / 1000))
    what = {b"address": "from this address", b"account": "for this account from this address"}.get(
        rule if isinstance(rule, bytes) else str(rule).encode(), "for this account")
    raise TooManyRequests(f"Too many login attempts {what}; retry in {retry} seconds.", code="login_throttled",
                          headers={"Retry-After": str(retry)})


async def succeeded(redis: Redis, k: LoginKeys) -> None:
    """The password was right: undo this attempt's failure counts and remember the address as the owner's."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(k.failures, k.backoff)
        pipe.set(k.known, b"1", ex=KNOWN_ADDRESS_SECONDS)
        await pipe.execute()
