"""The price book: which price a request pays, and what it costs, exactly (``Decimal``, USD)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from aiaas.kernel import money


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
    """What a request costs at ``price`` (``kernel.money.cost_usd``: cached prompt tokens at the cached-input
    price, the input price when there is none)."""
    return money.cost_usd(input_per_mtok=price.input_per_mtok, cached_input_per_mtok=price.cached_input_per_mtok,
                          output_per_mtok=price.output_per_mtok, prompt_tokens=prompt_tokens,
                          cached_prompt_tokens=cached_prompt_tokens, completion_tokens=completion_tokens)


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
        return money.in_force(self._by_model.get(model, ()), deployment, at)
