"""Rate limits and quota reservations as atomic Redis Lua scripts.

One script call per request (``ADMIT``) reads the org's cached usage policy and checks and charges, all or
nothing, every limit that applies:

* **RPM / TPM**, per scope (the API key, the org): an exact sliding 60-second window. Each admitted
  request is one member (its reservation id) of the scope's sorted set, scored by its admission time
  in Redis's own clock (``TIME``, so replicas' clocks never matter); its token charge sits in a hash
  with a running ``_sum``. A request is admitted when ``count + 1 <= RPM`` and ``_sum + cost <= TPM``
  after the members older than the window are purged. At most RPM requests and TPM tokens are therefore
  admitted in any 60-second window, across any number of streamer replicas.
* **Quota**, per scope (the org's monthly budget, optionally the key's): a hash per scope and month with
  ``used`` (settled tokens), ``reserved`` (tokens held by requests in flight) and one ``r:<id>`` field
  per reservation; a sorted set orders reservations by expiry. A request is admitted only when
  ``used + reserved + cost <= budget`` after expired reservations are released, so concurrent requests
  can never overrun the budget beyond what was reserved.
* **Spend**, the org's monthly limit in nano-USD (``kernel.money``), in the same hash as its token quota:
  ``spent`` (settled), ``spend_reserved`` (held by requests in flight) and one ``m:<id>`` field per
  reservation, released with the token reservation of the same id. A request reserves its maximum cost at
  the model's price (the caller passes the price per token; unpriced requests reserve nothing) and is
  admitted only when ``spent + spend_reserved + cost <= limit``. An API key may have a monthly spend limit
  of its own, kept the same way in the key's quota hash and checked beside the org's.

``SETTLE`` runs once for each completed request (in calls that settle the worker's events of one org, key
and month together; guarded by a per-event marker, so redelivery changes nothing): it corrects the
request's TPM charge to the real token count, releases its reservation and adds the real count to
``used``. A reservation whose settlement never comes (the streamer crashed)
expires and is released by the next admission in that scope; a settlement arriving after that adds the
real count to ``used`` all the same.
"""

from __future__ import annotations

import datetime as dt
import math

import uuid_utils

from aiaas.kernel.redis import script

WINDOW_MS = 60_000

# Expired reservations are released at most 500 per call and scope, so one call stays short; the next
# call continues where it stopped (the sums stay exact: members are released with their charge). Window
# members are purged completely on every call: a window holds only the last minute's admitted requests,
# and its count and token sum decide admission, so they must not include expired members.

# Negations are written `0 - x`: Lua turns `-0` into the string "-0", which HINCRBY rejects.
#
# KEYS (all in the org's hash slot, so a Redis Cluster runs the script): the org's cached policy (JSON,
# as ``PolicyStore`` writes it), the org's window (W, T) and quota (Q, R) keys, then, for a request made
# with an API key, the key's window keys.
# ARGV: reservation id, window ms, reservation ttl ms, prompt tokens, max_tokens (-1 = none: the policy's
# default_max_tokens), quota keys' expiry (ms epoch), has key (0/1), key rpm, key tpm (-1 = no limit), then
# the policy JSON, or '' to read it from KEYS[1], then the number of choices the completion cap is
# multiplied by (OpenAI's ``n``; absent = 1), then the price per prompt and per completion token in
# pico-USD (-1 or absent = unpriced), then the key's monthly spend limit in nano-USD (-1 or absent = none;
# then KEYS[8] and KEYS[9] are the key's quota hash and reservation set). The token budget is the org's
# (no key has one of its own).
# Returns {admitted, reason, retry_ms, lreq, rreq, treq, ltok, rtok, ttok, cost, completion, too_large_tpm,
# spend_cost_nusd, spend_limit_nusd, spend_used_nusd, key_spend_limit_nusd, key_spend_used_nusd}
# with reason '' (admitted), 'rpm', 'tpm', 'quota', 'spend', 'key_spend', 'too_large:<scope>' (cost exceeds a
# whole TPM limit;
# nothing charged), 'no_policy' (KEYS[1] absent or unreadable: nothing read or charged; call again with
# the policy in ARGV) or 'invalid' (a number out of range); nothing is charged for any of these.
ADMIT = """
local praw = ARGV[10]
if praw == '' then
  praw = redis.call('GET', KEYS[1])
  if not praw then return {0, 'no_policy', 0, -1, -1, 0, -1, -1, 0, 0, 0, -1, 0, -1, 0} end
end
local okp, policy = pcall(cjson.decode, praw)
if not okp or type(policy) ~= 'table' then return {0, 'no_policy', 0, -1, -1, 0, -1, -1, 0, 0, 0, -1, 0, -1, 0} end
local function lim(v)
  if v == nil or v == cjson.null then return -1 end
  return tonumber(v)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid = ARGV[1]
local window = tonumber(ARGV[2])
local resv_ttl = tonumber(ARGV[3])
local prompt = tonumber(ARGV[4])
local completion = tonumber(ARGV[5])
local choices = tonumber(ARGV[11] or '1')
-- Every number is checked before anything is written: a script that fails half-way leaves its earlier
-- writes in place (Redis does not roll a script back), and a value HINCRBY cannot take would do that.
local function bad(v, low)
  return v == nil or v ~= v or v < low or v > 1099511627776 or math.floor(v) ~= v
end
if bad(prompt, 0) or bad(completion, -1) or bad(choices, 1) or choices > 128 then
  return {0, 'invalid', 0, -1, -1, 0, -1, -1, 0, 0, 0, -1, 0, -1, 0}
end
if completion < 0 then completion = lim(policy['default_max_tokens']) end
if bad(completion, -1) then return {0, 'invalid', 0, -1, -1, 0, -1, -1, 0, 0, 0, -1, 0, -1, 0} end
if completion < 0 then completion = 4096 end
completion = completion * choices
local cost = prompt + completion
local quota_expire_at = tonumber(ARGV[6])
local has_key = ARGV[7] == '1'

-- Spend: the request's maximum cost in nano-USD (rounded up) at the prices given, when the org has a
-- limit. Exact while the cost in pico-USD stays below 2^53; above, a per-token price rounded up to a
-- nano-USD still bounds it. A cost beyond any limit (at most 9e15) is refused below without a write.
local pin, pout = tonumber(ARGV[12] or '-1'), tonumber(ARGV[13] or '-1')
if pin == nil or pout == nil or pin ~= pin or pout ~= pout or pin > 1e12 or pout > 1e12
    or math.floor(pin) ~= pin or math.floor(pout) ~= pout then
  return {0, 'invalid', 0, -1, -1, 0, -1, -1, 0, 0, 0, -1, 0, -1, 0}
end
local spend_limit = lim(policy['spend_limit_nusd'])
local key_spend_limit = tonumber(ARGV[14] or '-1')
if key_spend_limit == nil or key_spend_limit ~= key_spend_limit or key_spend_limit < -1
    or key_spend_limit > 9007199254740992 or math.floor(key_spend_limit) ~= key_spend_limit then
  return {0, 'invalid', 0, -1, -1, 0, -1, -1, 0, 0, 0, -1, 0, -1, 0}
end
local priced = pin >= 0 and pout >= 0
local spend = 0
if (spend_limit >= 0 or key_spend_limit >= 0) and priced then
  local pico = prompt * pin + completion * pout
  if pico < 9007199254740992 then
    spend = math.ceil(pico / 1000)
  else
    spend = prompt * math.ceil(pin / 1000) + completion * math.ceil(pout / 1000)
  end
end

-- Scopes in order: rate (key, then org), quota (org, then key); a scope without any limit is skipped.
local rate, quota = {}, {}
if has_key and (tonumber(ARGV[8]) >= 0 or tonumber(ARGV[9]) >= 0) then
  rate[#rate + 1] = {'key', KEYS[6], KEYS[7], tonumber(ARGV[8]), tonumber(ARGV[9])}
end
local org_rpm, org_tpm = lim(policy['rpm_limit']), lim(policy['tpm_limit'])
if org_rpm >= 0 or org_tpm >= 0 then
  rate[#rate + 1] = {'org', KEYS[2], KEYS[3], org_rpm, org_tpm}
end
quota[1] = {KEYS[4], KEYS[5], lim(policy['monthly_token_budget'])}

-- A request larger than a whole limit can never pass: refuse it without charging anything.
for i = 1, #rate do
  local tpm = rate[i][5]
  if tpm >= 0 and tpm < cost then
    return {0, 'too_large:' .. rate[i][1], 0, -1, -1, 0, -1, -1, 0, cost, completion, tpm, 0, -1, 0}
  end
end

local function purge_window(W, T)
  while true do
    local old = redis.call('ZRANGEBYSCORE', W, '-inf', now - window, 'LIMIT', 0, 500)
    if #old == 0 then return end
    local toks = redis.call('HMGET', T, unpack(old))
    local freed = 0
    for j = 1, #old do freed = freed + (tonumber(toks[j]) or 0) end
    redis.call('HDEL', T, unpack(old))
    redis.call('HINCRBY', T, '_sum', 0 - freed)
    redis.call('ZREM', W, unpack(old))
    if #old < 500 then return end
  end
end

-- One chunk per call: after a long worker outage tens of thousands of reservations may expire at once,
-- and releasing them all in one call would stall Redis for every request. Until the backlog is gone the
-- org's `reserved` still counts them, which can only refuse early, never admit beyond the budget.
local function purge_reservations(Q, R)
  local old = redis.call('ZRANGEBYSCORE', R, '-inf', now, 'LIMIT', 0, 500)
  if #old == 0 then return end
  for j = 1, #old do
    local f = 'r:' .. old[j]
    local amt = tonumber(redis.call('HGET', Q, f))
    if amt then
      redis.call('HINCRBY', Q, 'reserved', 0 - amt)
      redis.call('HDEL', Q, f)
    end
    local m = tonumber(redis.call('HGET', Q, 'm:' .. old[j]))
    if m then
      redis.call('HINCRBY', Q, 'spend_reserved', 0 - m)
      redis.call('HDEL', Q, 'm:' .. old[j])
    end
  end
  redis.call('ZREM', R, unpack(old))
end

-- Retry time: when enough of the window's oldest members expire to fit `need` more (count or tokens).
local function wait_for(W, T, excess, by_tokens)
  local members = redis.call('ZRANGE', W, 0, -1, 'WITHSCORES')
  local freed = 0
  for j = 1, #members, 2 do
    if by_tokens then
      freed = freed + (tonumber(redis.call('HGET', T, members[j])) or 0)
    else
      freed = freed + 1
    end
    if freed >= excess then
      return math.max(tonumber(members[j + 1]) + window - now, 1)
    end
  end
  return window
end

local refused = nil
local retry = 0
-- Header values: the scope with the least remaining, per dimension (-1 = no limit in any scope).
local lreq, rreq, treq, ltok, rtok, ttok = -1, -1, 0, -1, -1, 0
local counts, sums = {}, {}

for i = 1, #rate do
  local W, T, rpm, tpm = rate[i][2], rate[i][3], rate[i][4], rate[i][5]
  purge_window(W, T)
  local count = redis.call('ZCARD', W)
  local sum = tonumber(redis.call('HGET', T, '_sum')) or 0
  counts[i], sums[i] = count, sum
  if rpm >= 0 and count + 1 > rpm and not refused then
    refused = 'rpm'
    retry = wait_for(W, T, count + 1 - rpm, false)
  end
  if tpm >= 0 and sum + cost > tpm and not refused then
    refused = 'tpm'
    retry = wait_for(W, T, sum + cost - tpm, true)
  end
end

for i = 1, #quota do
  local Q, R, budget = quota[i][1], quota[i][2], quota[i][3]
  purge_reservations(Q, R)
  if budget >= 0 and not refused then
    local used = tonumber(redis.call('HGET', Q, 'used')) or 0
    local reserved = tonumber(redis.call('HGET', Q, 'reserved')) or 0
    if used + reserved + cost > budget then
      refused = 'quota'
      retry = -1
    end
  end
end

-- An unpriced request is not counted against a spend limit (the read side counts it as unpriced), so it
-- is not refused by one either. Returns what the scope has spent or holds.
local function check_spend(Q, limit, reason)
  if limit < 0 or not priced then return 0 end
  local held = (tonumber(redis.call('HGET', Q, 'spent')) or 0)
               + (tonumber(redis.call('HGET', Q, 'spend_reserved')) or 0)
  if held + spend > limit and not refused then
    refused = reason
    retry = -1
  end
  return held
end
local spent = check_spend(KEYS[4], spend_limit, 'spend')
if key_spend_limit >= 0 and priced then purge_reservations(KEYS[8], KEYS[9]) end
local key_spent = check_spend(KEYS[8] or '', key_spend_limit, 'key_spend')

local admitted = (refused == nil)
for i = 1, #rate do
  local W, T, rpm, tpm = rate[i][2], rate[i][3], rate[i][4], rate[i][5]
  local count, sum = counts[i], sums[i]
  if admitted then
    redis.call('ZADD', W, now, rid)
    redis.call('HSET', T, rid, cost)
    redis.call('HINCRBY', T, '_sum', cost)
    redis.call('PEXPIRE', W, window + 1000)
    redis.call('PEXPIRE', T, window + 1000)
    count, sum = count + 1, sum + cost
  end
  local newest = redis.call('ZRANGE', W, -1, -1, 'WITHSCORES')
  local reset = 0
  if #newest > 0 then reset = math.max(tonumber(newest[2]) + window - now, 0) end
  if rpm >= 0 then
    local rem = math.max(rpm - count, 0)
    if lreq < 0 or rem < rreq then lreq, rreq, treq = rpm, rem, reset end
  end
  if tpm >= 0 then
    local rem = math.max(tpm - sum, 0)
    if ltok < 0 or rem < rtok then ltok, rtok, ttok = tpm, rem, reset end
  end
end

if admitted then
  for i = 1, #quota do
    local Q, R = quota[i][1], quota[i][2]
    redis.call('HINCRBY', Q, 'reserved', cost)
    redis.call('HSET', Q, 'r:' .. rid, cost)
    redis.call('ZADD', R, now + resv_ttl, rid)
    redis.call('PEXPIREAT', Q, quota_expire_at)
    redis.call('PEXPIREAT', R, quota_expire_at)
  end
  if spend > 0 then
    redis.call('HINCRBY', KEYS[4], 'spend_reserved', spend)
    redis.call('HSET', KEYS[4], 'm:' .. rid, spend)
    if key_spend_limit >= 0 then
      redis.call('HINCRBY', KEYS[8], 'spend_reserved', spend)
      redis.call('HSET', KEYS[8], 'm:' .. rid, spend)
      redis.call('ZADD', KEYS[9], now + resv_ttl, rid)
      redis.call('PEXPIREAT', KEYS[8], quota_expire_at)
      redis.call('PEXPIREAT', KEYS[9], quota_expire_at)
    end
  end
end

-- A reply integer must fit 64 bits: a cost beyond any limit is reported as 2^53.
return {admitted and 1 or 0, refused or '', retry, lreq, rreq, treq, ltok, rtok, ttok, cost, completion, -1,
        math.min(spend, 9007199254740992), spend_limit, spent, key_spend_limit, key_spent}
"""
ADMIT_SCRIPT = script(ADMIT)

# Settles several events of one org, one API key (or none) and one quota month in one call: the keys they
# share come once, then one marker per event. KEYS: the TPM windows of each rate scope (pairs: requests,
# tokens), the quota hash and its reservation set of each quota scope, then the events' markers. ARGV:
# marker TTL, number of rate scopes, number of quota scopes, quota expiry, then per event its reservation
# id, real token count and charge. An event whose marker exists already (settled before) changes nothing.
SETTLE = """
local ttl = tonumber(ARGV[1])
local nrate = tonumber(ARGV[2])
local nquota = tonumber(ARGV[3])
local quota_expire_at = tonumber(ARGV[4])
local first_marker = 2 * nrate + 2 * nquota
local settled = 0
for e = 0, #KEYS - first_marker - 1 do
  local rid = ARGV[5 + 3 * e]
  local actual = tonumber(ARGV[6 + 3 * e])
  local charge = tonumber(ARGV[7 + 3 * e])
  if redis.call('SET', KEYS[first_marker + 1 + e], '1', 'NX', 'PX', ttl) then
    settled = settled + 1
    if rid ~= '' then
      for i = 0, nrate - 1 do
        local T = KEYS[2 + 2 * i]
        local est = tonumber(redis.call('HGET', T, rid))
        if est then
          redis.call('HSET', T, rid, actual)
          redis.call('HINCRBY', T, '_sum', actual - est)
        end
      end
    end
    for i = 0, nquota - 1 do
      local Q, R = KEYS[1 + 2 * nrate + 2 * i], KEYS[2 + 2 * nrate + 2 * i]
      if rid ~= '' then
        local f = 'r:' .. rid
        local amt = tonumber(redis.call('HGET', Q, f))
        if amt then
          redis.call('HINCRBY', Q, 'reserved', 0 - amt)
          redis.call('HDEL', Q, f)
          redis.call('ZREM', R, rid)
        end
        local m = tonumber(redis.call('HGET', Q, 'm:' .. rid))
        if m then
          redis.call('HINCRBY', Q, 'spend_reserved', 0 - m)
          redis.call('HDEL', Q, 'm:' .. rid)
          redis.call('ZREM', R, rid)
        end
      end
      redis.call('HINCRBY', Q, 'used', actual)
      if charge > 0 then redis.call('HINCRBY', Q, 'spent', charge) end
      redis.call('PEXPIREAT', Q, quota_expire_at)
    end
  end
end
return settled
"""
SETTLE_SCRIPT = script(SETTLE)


def new_reservation_id() -> str:
    """A UUIDv7: unique, and its timestamp names the month whose quota it reserves."""
    return str(uuid_utils.uuid7())


def month_of_reservation(reservation_id: str) -> dt.datetime:
    """The instant a reservation id was made (from its UUIDv7 timestamp)."""
    ms = uuid_utils.UUID(reservation_id).timestamp
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def month_key(at: dt.datetime) -> str:
    """``YYYYMM`` of a UTC instant: the quota period."""
    at = at.astimezone(dt.UTC)
    return f"{at.year:04d}{at.month:02d}"


def month_end(at: dt.datetime) -> dt.datetime:
    """Start of the next UTC month after ``at``."""
    at = at.astimezone(dt.UTC)
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return dt.datetime(year, month, 1, tzinfo=dt.UTC)


def quota_expire_at_ms(at: dt.datetime) -> int:
    """When a month's quota keys may go: 35 days after the month ends (late settlements still land)."""
    return int((month_end(at) + dt.timedelta(days=35)).timestamp() * 1000)


def format_duration(ms: float) -> str:
    """A duration the way OpenAI's ``x-ratelimit-reset-*`` headers write it: ``20ms``, ``1s``, ``6m0s``."""
    ms = max(0.0, ms)
    if ms < 1000:
        return f"{math.ceil(ms)}ms"
    total = ms / 1000
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    sec = f"{seconds:.3f}".rstrip("0").rstrip(".")
    if hours >= 1:
        return f"{int(hours)}h{int(minutes)}m{sec}s"
    if minutes >= 1:
        return f"{int(minutes)}m{sec}s"
    return f"{sec}s"


def retry_after_seconds(ms: float) -> int:
    """``Retry-After`` in whole seconds, never 0 (a client retrying at once would be refused again)."""
    return max(1, math.ceil(ms / 1000))
