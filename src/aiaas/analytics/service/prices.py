"""The price book: which price a request pays, and what it costs, exactly (``Decimal``, USD)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One price-book entry (immutable; its id is the version a priced request records)."""

    id: int
    model: str
    deployment: str  # "" = every deployment of the model
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None
    output_per_mtok: Decimal
    effective_from: dt.datetime


def cost(price: PriceEntry, *, prompt_tokens: int, cached_prompt_tokens: int, completion_tokens: int) -> Decimal:
    """What a request costs at ``price``: uncached prompt tokens at the input price, cached ones at the
    cached-input price (the input price when there is none), completion tokens (reasoning included) at
    the output price."""
    cached = min(max(cached_prompt_tokens, 0), max(prompt_tokens, 0))
    uncached = max(prompt_tokens, 0) - cached
    cached_price = price.cached_input_per_mtok if price.cached_input_per_mtok is not None else price.input_per_mtok
    total = (uncached * price.input_per_mtok + cached * cached_price
             + max(completion_tokens, 0) * price.output_per_mtok)
    return total / MILLION


class PriceBook:
    """Every entry, indexed for lookups by model (loaded once per batch of events, not kept across)."""

    def __init__(self, entries: Iterable[PriceEntry]) -> None:
        self._by_model: dict[str, list[PriceEntry]] = {}
        for e in entries:
            self._by_model.setdefault(e.model, []).append(e)
        for lst in self._by_model.values():
            # Newest effective time first; of two entries effective at once, the later one (a correction).
            lst.sort(key=lambda e: (e.effective_from, e.id), reverse=True)

    def price_for(self, model: str, deployment: str | None, at: dt.datetime) -> PriceEntry | None:
        """The entry in force for ``model`` on ``deployment`` at ``at``: the deployment's own entry when
        one is in force, else the model's; None when the model has no price then (the request is
        unpriced, never free)."""
        candidates = self._by_model.get(model, ())
        fallback = None
        for e in candidates:
            if e.effective_from > at:
                continue
            if deployment and e.deployment == deployment:
                return e
            if e.deployment == "" and fallback is None:
                fallback = e
        return fallback
