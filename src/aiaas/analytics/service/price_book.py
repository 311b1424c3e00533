"""Managing the price book: entries are added, never changed (a correction is a newer entry)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics import repository
from aiaas.analytics.models import Price as PriceRow
from aiaas.analytics.schemas import Price, PriceCreate
from aiaas.kernel.errors import BadRequest
from aiaas.kernel.events import utcnow

MAX_PRICE = Decimal(1_000_000)


def _text(d: Decimal | None) -> str | None:
    if d is None:
        return None
    n = d.normalize()
    return format(n, "f") if n else "0"


def to_price(row: PriceRow) -> Price:
    """The API form of an entry (prices as exact decimal strings)."""
    return Price(id=row.id, model=row.model, deployment=row.deployment or None,
                 input_per_mtok=_text(row.input_per_mtok) or "0",
                 cached_input_per_mtok=_text(row.cached_input_per_mtok),
                 output_per_mtok=_text(row.output_per_mtok) or "0", effective_from=row.effective_from,
                 created_at=row.created_at)


def check_spec(spec: PriceCreate) -> None:
    """Refuse prices below 0, above a million USD per million tokens, with over 9 decimals, or an
    ``effective_from`` without a timezone (a clear 400 naming the field)."""
    if spec.effective_from is not None and spec.effective_from.tzinfo is None:
        raise BadRequest("effective_from needs a timezone, e.g. 2026-11-01T00:00:00Z", param="effective_from")
    for name in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok"):
        value = getattr(spec, name)
        if value is None:
            continue
        if not value.is_finite() or not 0 <= value <= MAX_PRICE:
            raise BadRequest(f"{name} must be between 0 and {MAX_PRICE} (USD per million tokens)", param=name)
        if value.as_tuple().exponent < -9:  # type: ignore[operator]
            raise BadRequest(f"{name} takes at most 9 decimals", param=name)


async def add_price(session: AsyncSession, spec: PriceCreate, *, now: dt.datetime | None = None) -> Price:
    """Add an entry, in force from ``spec.effective_from`` (default now). Prices for the past re-rate
    nothing by themselves: run ``aiaas analytics reprice --from`` for that."""
    check_spec(spec)
    row = await repository.add_price(session, {
        "model": spec.model, "deployment": spec.deployment, "input_per_mtok": spec.input_per_mtok,
        "cached_input_per_mtok": spec.cached_input_per_mtok, "output_per_mtok": spec.output_per_mtok,
        "effective_from": spec.effective_from or now or utcnow()})
    return to_price(row)


async def list_prices(session: AsyncSession, *, model: str | None = None) -> list[Price]:
    """Every entry (of one model), by model then effective time."""
    return [to_price(r) for r in await repository.list_prices(session, model)]


class PriceFileEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``prices:`` entry of a catalog file; ``effective_from`` is required, so applying a file twice
    adds nothing."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    effective_from: dt.datetime
    cached_input_per_mtok: Decimal | None = None
    deployment: Annotated[str, msgspec.Meta(max_length=256)] = ""


def parse_file_section(section: object) -> list[PriceCreate]:
    """The ``prices:`` section of a catalog file as price-book entries (a clear error when malformed)."""
    if isinstance(section, list):
        # YAML reads 0.15 as a float; its shortest text is what the author wrote, so price from that.
        section = [{k: (repr(v) if isinstance(v, float) else v) for k, v in e.items()} if isinstance(e, dict) else e
                   for e in section]
    try:
        entries = msgspec.convert(section or [], list[PriceFileEntry])
    except msgspec.ValidationError as exc:
        raise BadRequest(f"prices: {exc}", param="prices") from None
    specs = [PriceCreate(model=e.model, deployment=e.deployment, input_per_mtok=e.input_per_mtok,
                         cached_input_per_mtok=e.cached_input_per_mtok, output_per_mtok=e.output_per_mtok,
                         effective_from=e.effective_from) for e in entries]
    for spec in specs:
        check_spec(spec)
    return specs


def _same(row: Price, spec: PriceCreate) -> bool:
    return (row.model == spec.model and (row.deployment or "") == spec.deployment
            and row.effective_from == spec.effective_from
            and Decimal(row.input_per_mtok) == spec.input_per_mtok
            and Decimal(row.output_per_mtok) == spec.output_per_mtok
            and (None if row.cached_input_per_mtok is None else Decimal(row.cached_input_per_mtok))
            == spec.cached_input_per_mtok)


async def apply_file(session: AsyncSession, specs: list[PriceCreate], *, dry_run: bool) -> list[str]:
    """Add the entries of a file the book does not hold yet; returns one line per addition. Entries are
    never removed (requests priced with them keep naming them)."""
    have = await list_prices(session)
    changes = []
    for spec in specs:
        if any(_same(row, spec) for row in have):
            continue
        where = f" on {spec.deployment}" if spec.deployment else ""
        changes.append(f"+ price {spec.model}{where} from {spec.effective_from.isoformat()}: "  # type: ignore[union-attr]
                       f"in {spec.input_per_mtok}, out {spec.output_per_mtok} USD/Mtok")
        if not dry_run:
            have.append(await add_price(session, spec))
    return changes
