"""Admission: the one place where rate limits and quotas are checked before an upstream is called.

``Admitter.admit`` runs once per inference request, after the model is resolved and authorized and
before any deployment is tried. It runs ``usage.api.admit`` with the org's ``usage.api.PolicyStore``: one
atomic Lua script reads the org's cached usage policy and checks RPM and TPM of the key and the org and
the quota reservation, so a warm admission is ONE Redis call and no database (a policy cache miss loads
it from the database and runs the script once more). A refusal raises ``kernel.errors.TooManyRequests`` (429
with ``Retry-After``, code ``rate_limit_exceeded`` or ``insufficient_quota``); Redis down raises
``ServiceUnavailable`` (503) unless the org's policy fails open. Otherwise the ``x-ratelimit-*``
headers go on the response and the reservation id into ``CompletionRecorded``, so the worker settles it.
"""

from __future__ import annotations

from aiaas.kernel.redis import Keys, RedisClient
from aiaas.kernel.security import Principal
from aiaas.usage import api as usage_api

Admission = usage_api.Admission


class Admitter:
    """Admission of one process: its Redis client, key naming and the org policy store."""

    def __init__(self, redis: RedisClient, keys: Keys, policies: usage_api.PolicyStore) -> None:
        self._redis = redis
        self._keys = keys
        self._policies = policies

    async def admit(self, *, principal: Principal, model: str, estimated_prompt_tokens: int,
                    max_tokens: int | None, choices: int = 1,
                    spend_rate: tuple[int, int] | None = None) -> Admission:
        """Admit (or refuse with 429/503) one request of ``principal`` for ``model``.

        ``estimated_prompt_tokens`` comes from ``tokens.estimate_tokens``; ``max_tokens`` is the client's
        cap on completion tokens (None when it set none: the policy's ``default_max_tokens`` is reserved),
        reserved ``choices`` times (the completions asked for, OpenAI's ``n``); ``spend_rate`` is the
        model's price to reserve the org's spend limit with (``pricing.reservation_rate``; None: unpriced).
        """
        return await usage_api.admit(self._redis, self._keys, principal=principal, model=model,
                                     estimated_prompt_tokens=estimated_prompt_tokens, max_tokens=max_tokens,
                                     choices=choices, spend_rate=spend_rate, policies=self._policies)
