"""Money, exactly: what tokens cost at a price per million, and the integer units budgets count in.

Prices are ``Decimal`` USD per million tokens (at most 9 decimals). Spend limits count **nano-USD**
(10⁻⁹ USD) as integers, so Redis and its Lua scripts (whose numbers are doubles) add and compare them
exactly up to 2⁵³ nano-USD, about 9 million USD: ``MAX_SPEND_LIMIT_USD`` stays below that. A charge is
rounded *up* to the next nano-USD, so a budget counts a request at most 10⁻⁹ USD above its exact cost
and never below it.

For admission a price is turned into **pico-USD per token** (10⁻¹² USD), rounded up: that is exact for
any price with up to 6 decimals per million tokens and an upper bound for finer ones, which is what a
reservation needs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import ROUND_CEILING, Decimal
from typing import Protocol, TypeVar

from aiaas.kernel.errors import BadRequest

MILLION = Decimal(1_000_000)
NANO_PER_USD = 10**9
PICO_PER_NANO = 1000
MAX_SPEND_LIMIT_USD = Decimal(9_000_000)


def cost_usd(*, input_per_mtok: Decimal, cached_input_per_mtok: Decimal | None, output_per_mtok: Decimal,
             prompt_tokens: int, cached_prompt_tokens: int, completion_tokens: int) -> Decimal:
    """The exact cost of one request: uncached prompt tokens at the input price, cached ones at the
    cached-input price (the input price when there is none), completion tokens (reasoning included) at
    the output price. Negative counts count as 0; cached tokens are at most the prompt tokens."""
    prompt = max(prompt_tokens, 0)
    cached = min(max(cached_prompt_tokens, 0), prompt)
    cached_price = cached_input_per_mtok if cached_input_per_mtok is not None else input_per_mtok
    total = (prompt - cached) * input_per_mtok + cached * cached_price + max(completion_tokens, 0) * output_per_mtok
    return total / MILLION


def nano_usd_ceil(usd: Decimal) -> int:
    """``usd`` in whole nano-USD, rounded up (a budget never counts less than was spent)."""
    return int((usd * NANO_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def pico_usd_per_token(per_mtok: Decimal) -> int:
    """A price per million tokens as pico-USD per token, rounded up (an upper bound for reservations)."""
    return int((per_mtok * MILLION).to_integral_value(rounding=ROUND_CEILING))


def check_spend_limit(value: Decimal | None, *, param: str = "monthly_spend_limit_usd") -> None:
    """A clear 400 for a spend limit below 0, above ``MAX_SPEND_LIMIT_USD`` or finer than 1e-9 USD."""
    if value is None:
        return
    if not value.is_finite() or not 0 <= value <= MAX_SPEND_LIMIT_USD:
        raise BadRequest(f"{param} must be between 0 and {MAX_SPEND_LIMIT_USD} (USD)", param=param,
                         code="invalid_spend_limit")
    if value.as_tuple().exponent < -9:  # type: ignore[operator]
        raise BadRequest(f"{param} takes at most 9 decimals", param=param, code="invalid_spend_limit")


def spend_limit_nusd(value: Decimal | None) -> int | None:
    """A spend limit in USD as the integer nano-USD that admission compares (None: no limit)."""
    return None if value is None else nano_usd_ceil(value)


def usd_decimal(nano_usd: int | None) -> Decimal | None:
    """Nano-USD back as a ``Decimal`` of USD (None stays None)."""
    return None if nano_usd is None else Decimal(nano_usd) / NANO_PER_USD


def decimal_text(d: Decimal) -> str:
    """A decimal as plain text without trailing zeros or an exponent (``2.5``, ``100``, ``0``)."""
    n = d.normalize()
    return format(n, "f") if n else "0"


def usd_text(nano_usd: int) -> str:
    """Nano-USD as a plain decimal string of USD without trailing zeros (``1.5``, ``0.000000001``)."""
    return decimal_text(Decimal(nano_usd) / NANO_PER_USD)


def limit_text(usd: Decimal | None) -> str | None:
    """A spend limit as the API shows it: what admission enforces (rounded up to a nano-USD), as text."""
    nusd = spend_limit_nusd(usd)
    return None if nusd is None else usd_text(nusd)


class Priced(Protocol):
    """A price-book entry as far as choosing one goes."""

    @property
    def deployment(self) -> str: ...
    @property
    def effective_from(self) -> dt.datetime: ...


P = TypeVar("P", bound=Priced)


def in_force(entries: Iterable[P], deployment: str | None, at: dt.datetime) -> P | None:
    """The entry in force on ``deployment`` at ``at``, of ``entries`` ordered newest first: the
    deployment's own entry when one is in force, else the model's (``deployment`` ""); None when
    neither is (the request is unpriced, never free)."""
    fallback = None
    for e in entries:
        if e.effective_from > at:
            continue
        if deployment and e.deployment == deployment:
            return e
        if e.deployment == "" and fallback is None:
            fallback = e
    return fallback
