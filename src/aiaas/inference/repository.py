"""Every query of the ``inference`` context, and nothing else."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from aiaas.inference.models import DeploymentRow, ModelPriceRow, ModelRow, OrgModelAccessRow


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
                     "context_length", "enabled", "ca_bundle"):
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
