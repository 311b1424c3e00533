"""Business rules of the ``analytics`` context: projections, the price book and the read queries."""

from __future__ import annotations

from aiaas.analytics.service.ingest import apply_events, load_price_book, newest_applied, rebuild
from aiaas.analytics.service.prices import PriceBook, PriceEntry, cost
from aiaas.analytics.service.projection import MalformedEvent

__all__ = ["MalformedEvent", "PriceBook", "PriceEntry", "apply_events", "cost", "load_price_book", "newest_applied",
           "rebuild"]
