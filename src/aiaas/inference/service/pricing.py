"""What spend limits charge a request: its model's prices (``CatalogModel.prices``, from the same catalog
entry the hot path reads anyway), at admission and after the response.

Admission reserves at the highest price any enabled deployment of the model charges now, per input token
(the cached-input price when it is higher) and per output token, in pico-USD rounded up
(``kernel.money``): an upper bound of what the request can cost wherever it is routed. The charge after
the response is the exact cost at the price of the deployment that answered, rounded up to a nano-USD;
it never exceeds the reservation when the upstream used at most the estimated prompt and ``max_tokens``.
A model without a price in force reserves and charges nothing: it is counted as unpriced by the read
side, never as $0 against a limit.
"""

from __future__ import annotations

import datetime as dt

from aiaas.inference.schemas import CatalogModel, ModelPrice
from aiaas.kernel import money


def reservation_rate(model: CatalogModel, at: dt.datetime) -> tuple[int, int] | None:
    """``(pico-USD per input token, per output token)`` to reserve with, or None when no deployment the
    request may reach has a price in force."""
    if not model.prices:
        return None
    best: tuple[int, int] | None = None
    for dep in model.deployments:
        if not dep.enabled:
            continue
        price = money.in_force(model.prices, dep.name, at)
        if price is None:
            continue
        per_input = max(price.input_per_mtok, price.cached_input_per_mtok or price.input_per_mtok)
        rate = (money.pico_usd_per_token(per_input), money.pico_usd_per_token(price.output_per_mtok))
        best = rate if best is None else (max(best[0], rate[0]), max(best[1], rate[1]))
    return best


def price_of(model: CatalogModel, deployment: str, at: dt.datetime) -> ModelPrice | None:
    """The price a request answered by ``deployment`` at ``at`` pays (None: unpriced)."""
    return money.in_force(model.prices, deployment, at) if model.prices else None


def charge(price: ModelPrice | None, *, prompt_tokens: int, cached_prompt_tokens: int, completion_tokens: int) -> int:
    """What a request's tokens cost at ``price``, in nano-USD rounded up (0 when unpriced)."""
    if price is None:
        return 0
    return money.nano_usd_ceil(money.cost_usd(
        input_per_mtok=price.input_per_mtok, cached_input_per_mtok=price.cached_input_per_mtok,
        output_per_mtok=price.output_per_mtok, prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached_prompt_tokens, completion_tokens=completion_tokens))
