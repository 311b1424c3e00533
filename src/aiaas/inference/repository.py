"""Every query of the ``inference`` context, and nothing else."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from aiaas.inference.models import DeploymentRow, ModelPriceRow, ModelRow, OrgModelAccessRow, StoredResponseRow


async def list_models(session: AsyncSession) -> list[ModelRow]:
    """Every model with its deployments, by name."""
    rows = await session.scalars(
        select(ModelRow).options(selectinload(ModelRow.deployments)).order_by(ModelRow.name))
    return list(rows)


async def get_model(session: AsyncSession, name: str, *, for_update: bool = False) -> ModelRow | None:
    """One model by public name, with its deployments."""
    stmt = select(ModelRow).options(selectinload(ModelRow.deployments)).where(ModelRow.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).one_or_none()


async def add_model(session: AsyncSession, row: ModelRow) -> ModelRow:
    """Insert a model (and its deployments)."""
    session.add(row)
    await session.flush()
    return row


async def replace_deployments(session: AsyncSession, row: ModelRow, deployments: list[DeploymentRow]) -> None:
    """Make ``deployments`` the model's deployments, keeping the ids of those whose name is unchanged."""
    by_name = {d.name: d for d in row.deployments}
    keep: list[DeploymentRow] = []
    for new in deployments:
        old = by_name.pop(new.name, None)
        if old is None:
            new.model_id = row.id
            keep.append(new)
            continue
        for attr in ("provider", "upstream_model", "base_url", "credential_ref", "weight", "priority",
                     "connect_timeout", "first_byte_timeout", "chunk_timeout", "total_timeout",
                     "context_length", "enabled", "ca_bundle", "native_apis"):
            setattr(old, attr, getattr(new, attr))
        keep.append(old)
    for gone in by_name.values():
        await session.delete(gone)
    row.deployments = keep
    await session.flush()


async def delete_model(session: AsyncSession, row: ModelRow) -> None:
    """Delete a model and (by cascade) its deployments."""
    await session.delete(row)
    await session.flush()


async def get_access(session: AsyncSession, org_id: uuid.UUID) -> OrgModelAccessRow | None:
    """An organization's model-access policy, if it has one."""
    return await session.get(OrgModelAccessRow, org_id)


async def list_access(session: AsyncSession) -> list[OrgModelAccessRow]:
    """Every organization's model-access policy."""
    return list(await session.scalars(select(OrgModelAccessRow).order_by(OrgModelAccessRow.org_id)))


async def put_access(session: AsyncSession, org_id: uuid.UUID, models: list[str] | None, *,
                     managed_by: str) -> OrgModelAccessRow:
    """Create or replace an organization's model-access policy."""
    row = await session.get(OrgModelAccessRow, org_id)
    if row is None:
        row = OrgModelAccessRow(org_id=org_id, models=models, managed_by=managed_by)
        session.add(row)
    else:
        row.models = models
        row.managed_by = managed_by
    await session.flush()
    return row


async def delete_access(session: AsyncSession, org_id: uuid.UUID) -> bool:
    """Remove an organization's policy (it may then use every model); whether one existed."""
    result = await session.execute(delete(OrgModelAccessRow).where(OrgModelAccessRow.org_id == org_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_prices(session: AsyncSession, names: list[str] | None = None) -> dict[str, list[dict[str, object]]]:
    """The stored prices of the named models (of every model when ``names`` is None), by model name."""
    stmt = select(ModelPriceRow.model, ModelPriceRow.prices)
    if names is not None:
        if not names:
            return {}
        stmt = stmt.where(ModelPriceRow.model.in_(names))
    return {model: list(prices) for model, prices in (await session.execute(stmt)).all()}


async def put_prices(session: AsyncSession, model: str, prices: list[dict[str, object]]) -> None:
    """Create or replace a model's stored prices."""
    stmt = insert(ModelPriceRow).values(model=model, prices=prices)
    await session.execute(stmt.on_conflict_do_update(index_elements=[ModelPriceRow.model],
                                                     set_={"prices": stmt.excluded.prices, "updated_at": func.now()}))


# --- stored Responses API responses ---

# A conversation longer than this many responses is cut at its oldest end (far beyond any context window).
MAX_CHAIN = 1000


async def add_response(session: AsyncSession, row: StoredResponseRow) -> None:
    """Store a response (a retried write of the same id keeps the first)."""
    values = {c.key: getattr(row, c.key) for c in StoredResponseRow.__table__.columns}
    await session.execute(insert(StoredResponseRow).values(**values).on_conflict_do_nothing(index_elements=["id"]))


async def get_response(session: AsyncSession, org_id: uuid.UUID, response_id: str,
                       now: dt.datetime) -> StoredResponseRow | None:
    """One of the org's stored responses that has not expired."""
    stmt = select(StoredResponseRow).where(StoredResponseRow.id == response_id, StoredResponseRow.org_id == org_id,
                                           StoredResponseRow.expires_at > now)
    return (await session.scalars(stmt)).one_or_none()


async def response_chain(session: AsyncSession, org_id: uuid.UUID, response_id: str,
                         now: dt.datetime) -> list[tuple[list[dict[str, object]], list[dict[str, object]]]]:
    """(input items, output items) of ``response_id`` and every response before it, oldest first, in one
    recursive query; empty when ``response_id`` is not the org's or has expired. The walk stops at the
    first link that is missing, expired or another org's."""
    t = StoredResponseRow
    alive = (t.org_id == org_id) & (t.expires_at > now)
    start = select(t.id, t.previous_response_id, t.input_items, t.response["output"].label("output"),
                   literal(0).label("depth")).where(t.id == response_id, alive)
    chain = start.cte("chain", recursive=True)
    step = select(t.id, t.previous_response_id, t.input_items, t.response["output"],
                  (chain.c.depth + 1)).join(chain, t.id == chain.c.previous_response_id).where(
                      alive, chain.c.depth < MAX_CHAIN)
    chain = chain.union_all(step)
    rows = (await session.execute(select(chain.c.input_items, chain.c.output).order_by(chain.c.depth.desc()))).all()
    return [(list(items or []), list(output or [])) for items, output in rows]


async def delete_response(session: AsyncSession, org_id: uuid.UUID, response_id: str, now: dt.datetime) -> bool:
    """Delete one of the org's stored responses; whether it was there."""
    t = StoredResponseRow
    result = await session.execute(delete(t).where(t.id == response_id, t.org_id == org_id, t.expires_at > now))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def prune_responses(session: AsyncSession, now: dt.datetime, *, limit: int) -> int:
    """Delete up to ``limit`` expired responses (oldest expiry first); how many went."""
    t = StoredResponseRow
    ids = select(t.id).where(t.expires_at <= now).order_by(t.expires_at).limit(limit).scalar_subquery()
    result = await session.execute(delete(t).where(t.id.in_(ids)))
    return int(result.rowcount)  # type: ignore[attr-defined]
