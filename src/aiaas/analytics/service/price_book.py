"""Managing the price book: entries are added, never changed (a correction is a newer entry)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics import repository
from aiaas.analytics.models import Price as PriceRow
from aiaas.analytics.schemas import Price, PriceCreate
from aiaas.inference import api as inference_api
from aiaas.kernel import money
from aiaas.kernel.errors import BadRequest
from aiaas.kernel.events import utcnow

log = logging.getLogger("aiaas.analytics.prices")

MAX_PRICE = Decimal(1_000_000)


def _text(d: Decimal | None) -> str | None:
    return None if d is None else money.decimal_text(d)


def _exact(d: Decimal) -> Decimal:
    """The same value without the column's trailing zeros (``2.500000000000000`` -> ``2.5``)."""
    return Decimal(money.decimal_text(d))


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


# --------------------------------------------------------------------------- the copy admission charges with
def admission_schedule(rows: Iterable[PriceRow], *, now: dt.datetime) -> dict[str, list[inference_api.ModelPrice]]:
    """Per model, the entries spend limits may still charge with: for the model and for each deployment
    with entries of its own, the one in force at ``now`` and every later one (older ones never apply
    again)."""
    by_key: dict[tuple[str, str], list[PriceRow]] = {}
    for row in rows:
        by_key.setdefault((row.model, row.deployment or ""), []).append(row)
    out: dict[str, list[inference_api.ModelPrice]] = {}
    for (model, deployment), entries in sorted(by_key.items()):
        entries.sort(key=lambda r: (r.effective_from, r.id), reverse=True)
        keep = []
        for r in entries:
            keep.append(r)
            if r.effective_from <= now:
                break
        out.setdefault(model, []).extend(inference_api.ModelPrice(
            id=r.id, deployment=deployment, input_per_mtok=_exact(r.input_per_mtok),
            cached_input_per_mtok=None if r.cached_input_per_mtok is None else _exact(r.cached_input_per_mtok),
            output_per_mtok=_exact(r.output_per_mtok), effective_from=r.effective_from) for r in keep)
    return out


async def admission_prices(session: AsyncSession, *, models: Iterable[str] | None = None,
                           now: dt.datetime | None = None) -> dict[str, list[inference_api.ModelPrice]]:
    """``admission_schedule`` of the book (of ``models`` only, when given)."""
    wanted = None if models is None else set(models)
    rows = [r for r in await repository.list_prices(session, None) if wanted is None or r.model in wanted]
    return admission_schedule(rows, now=now or utcnow())


async def publish_admission_prices(uow: Callable[[], AbstractAsyncContextManager[Any]], catalog: Any,
                                   prices: dict[str, list[inference_api.ModelPrice]]) -> list[str]:
    """Hand the prices to ``inference`` (which keeps the copy admission reads); a failure is logged, not
    raised: the worker's periodic sync brings the copy up to date."""
    try:
        return await inference_api.set_admission_prices(uow, catalog, prices)
    except Exception:
        log.warning("admission prices of %s not updated yet; the worker's sync retries", sorted(prices),
                    exc_info=True)
        return []
