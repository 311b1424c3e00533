"""The model catalog: its rules (create, replace, delete, org access) and its Redis cache.

The hot path reads the catalog from Redis only: one ``MGET`` returns the public model's entry, the
caller's org access policy and the model's breaker state, each msgspec-encoded (on a Redis Cluster the
model's two keys share a hash slot and the org's policy is read from its own, in the same round trip).
PostgreSQL is read only on a cache miss (then the entry is written back with a TTL); a model that does
not exist is cached as a short-lived negative entry so unknown names cannot hammer the database. Every
admin change rewrites the affected keys after its transaction commits, so every streamer sees it on its
next request.

While Redis is unreachable the hot-path reads fall back to PostgreSQL (one query per request, nothing
written back, breakers read as closed); the warm path is unchanged, only its exceptions are caught.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.inference import repository
from aiaas.inference.models import DeploymentRow, ModelRow, OrgModelAccessRow
from aiaas.inference.schemas import (
    CatalogModel,
    Deployment,
    DeploymentHealth,
    DeploymentSpec,
    ModelAccess,
    ModelPrice,
    ModelSpec,
    ModelUpdate,
    OrgModelAccess,
)
from aiaas.inference.service.routing import Breakers, health_of
from aiaas.kernel.errors import BadRequest, Conflict, NotFound
from aiaas.kernel.redis import Keys, RedisClient, RedisUnavailable, mget

log = logging.getLogger("aiaas.inference.catalog")

_MISSING = b"-"
_NEGATIVE_TTL = 30
_model_decoder = msgspec.json.Decoder(CatalogModel)
_index_decoder = msgspec.json.Decoder(list[CatalogModel])
_access_decoder = msgspec.json.Decoder(list[str] | None)
_encode = msgspec.json.encode

SessionScope = Callable[[], AbstractAsyncContextManager[AsyncSession]]


# --- rows <-> structs ---


_prices_type = list[ModelPrice]


def decode_prices(raw: list[dict[str, object]] | None) -> list[ModelPrice]:
    """Stored prices (JSON) as structs."""
    return msgspec.convert(raw or [], _prices_type)


def to_catalog_model(row: ModelRow, prices: list[ModelPrice] | None = None) -> CatalogModel:
    """The cached/public form of a model row (deployments loaded) with its prices."""
    return CatalogModel(prices=prices or [],
        id=str(row.id), name=row.name, owned_by=row.owned_by, capabilities=list(row.capabilities),
        context_length=row.context_length, created=int(row.created_at.timestamp()), managed_by=row.managed_by,
        deployments=[Deployment(
            id=str(d.id), name=d.name, provider=d.provider, upstream_model=d.upstream_model, base_url=d.base_url,
            credential_ref=d.credential_ref, weight=d.weight, priority=d.priority,
            connect_timeout=d.connect_timeout, first_byte_timeout=d.first_byte_timeout,
            chunk_timeout=d.chunk_timeout, total_timeout=d.total_timeout, context_length=d.context_length,
            enabled=d.enabled, ca_bundle=d.ca_bundle,
            native_apis=tuple(d.native_apis or ())) for d in row.deployments],
    )


def to_spec(model: CatalogModel) -> ModelSpec:
    """The declarative form of a cached model (what a catalog file would say)."""
    return ModelSpec(
        name=model.name, owned_by=model.owned_by, capabilities=list(model.capabilities),  # type: ignore[arg-type]
        context_length=model.context_length,
        deployments=[DeploymentSpec(
            name=d.name, provider=d.provider, upstream_model=d.upstream_model,  # type: ignore[arg-type]
            base_url=d.base_url, credential_ref=d.credential_ref, weight=d.weight, priority=d.priority,
            connect_timeout=d.connect_timeout, first_byte_timeout=d.first_byte_timeout,
            chunk_timeout=d.chunk_timeout, total_timeout=d.total_timeout, context_length=d.context_length,
            enabled=d.enabled, ca_bundle=d.ca_bundle,
            native_apis=list(d.native_apis)) for d in model.deployments],  # type: ignore[arg-type]
    )


def _deployment_rows(specs: list[DeploymentSpec]) -> list[DeploymentRow]:
    names = [d.name for d in specs]
    if len(set(names)) != len(names):
        raise BadRequest("deployment names must be unique within a model", param="deployments",
                         code="duplicate_deployment")
    for d in specs:
        if d.provider == "openai" and not d.base_url:
            raise BadRequest(f"deployment {d.name!r} of provider openai needs a base_url", param="deployments",
                             code="missing_base_url")
    return [DeploymentRow(
        id=uuid.uuid4(), name=d.name, provider=d.provider, upstream_model=d.upstream_model, base_url=d.base_url,
        credential_ref=d.credential_ref, weight=d.weight, priority=d.priority, connect_timeout=d.connect_timeout,
        first_byte_timeout=d.first_byte_timeout, chunk_timeout=d.chunk_timeout, total_timeout=d.total_timeout,
        context_length=d.context_length, enabled=d.enabled, ca_bundle=d.ca_bundle,
        native_apis=list(d.native_apis)) for d in specs]


# --- rules (take a session, never commit) ---


async def list_models(*, session: AsyncSession) -> list[CatalogModel]:
    """Every model of the catalog."""
    prices = await repository.get_prices(session)
    return [to_catalog_model(r, decode_prices(prices.get(r.name))) for r in await repository.list_models(session)]


async def deployment_health(*, session: AsyncSession, breakers: Breakers) -> list[DeploymentHealth]:
    """Every deployment of the catalog with its circuit breaker, as every streamer sees it right now."""
    models = await list_models(session=session)
    return health_of(models, await breakers.states([m.name for m in models]), now=time.time())


async def _with_prices(session: AsyncSession, row: ModelRow) -> CatalogModel:
    prices = await repository.get_prices(session, [row.name])
    return to_catalog_model(row, decode_prices(prices.get(row.name)))


async def find_model(*, session: AsyncSession, name: str) -> CatalogModel | None:
    """One model by public name, None when the catalog has none of that name."""
    row = await repository.get_model(session, name)
    return await _with_prices(session, row) if row is not None else None


async def get_model(*, session: AsyncSession, name: str) -> CatalogModel:
    """One model by public name."""
    model = await find_model(session=session, name=name)
    if model is None:
        raise NotFound(f"model {name!r} is not in the catalog", code="model_not_found")
    return model


async def set_prices(*, session: AsyncSession, prices: Mapping[str, list[ModelPrice]]) -> list[str]:
    """Make ``prices[model]`` the prices spend limits charge each model with; returns the models whose
    prices changed."""
    stored = await repository.get_prices(session, list(prices))
    changed = []
    for model, entries in sorted(prices.items()):
        ordered = sorted(entries, key=lambda p: (p.effective_from, p.id), reverse=True)
        if model in stored and decode_prices(stored[model]) == ordered:
            continue
        await repository.put_prices(session, model, msgspec.to_builtins(ordered))
        changed.append(model)
    return changed


async def create_model(*, session: AsyncSession, spec: ModelSpec, managed_by: str = "api") -> CatalogModel:
    """Add a public model with its deployments."""
    if await repository.get_model(session, spec.name) is not None:
        raise Conflict(f"model {spec.name!r} already exists", code="model_exists")
    row = ModelRow(id=uuid.uuid4(), name=spec.name, owned_by=spec.owned_by, capabilities=list(spec.capabilities),
                   context_length=spec.context_length, managed_by=managed_by,
                   deployments=_deployment_rows(spec.deployments))
    await repository.add_model(session, row)
    row = await repository.get_model(session, spec.name)
    assert row is not None
    return await _with_prices(session, row)


async def replace_model(*, session: AsyncSession, name: str, update: ModelUpdate,
                        managed_by: str = "api") -> CatalogModel:
    """Replace a model's fields and deployments (deployments keep their id while their name is unchanged)."""
    row = await repository.get_model(session, name, for_update=True)
    if row is None:
        raise NotFound(f"model {name!r} is not in the catalog", code="model_not_found")
    row.owned_by = update.owned_by
    row.capabilities = list(update.capabilities)
    row.context_length = update.context_length
    row.managed_by = managed_by
    await repository.replace_deployments(session, row, _deployment_rows(update.deployments))
    session.expunge(row)
    fresh = await repository.get_model(session, name)
    assert fresh is not None
    return await _with_prices(session, fresh)


async def delete_model(*, session: AsyncSession, name: str) -> None:
    """Remove a model and its deployments."""
    row = await repository.get_model(session, name, for_update=True)
    if row is None:
        raise NotFound(f"model {name!r} is not in the catalog", code="model_not_found")
    await repository.delete_model(session, row)


def _access(row: OrgModelAccessRow) -> OrgModelAccess:
    return OrgModelAccess(org_id=str(row.org_id), models=list(row.models) if row.models is not None else None,
                          managed_by=row.managed_by)


def _org_uuid(org_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(org_id)
    except ValueError:
        raise BadRequest(f"{org_id!r} is not an organization id", param="org_id", code="invalid_org_id") from None


async def list_access(*, session: AsyncSession) -> list[OrgModelAccess]:
    """Every organization's model-access policy."""
    return [_access(r) for r in await repository.list_access(session)]


async def get_access(*, session: AsyncSession, org_id: str) -> OrgModelAccess:
    """An organization's policy (``models`` null when it has none: every model)."""
    row = await repository.get_access(session, _org_uuid(org_id))
    return _access(row) if row else OrgModelAccess(org_id=org_id, models=None, managed_by="api")


async def put_access(*, session: AsyncSession, org_id: str, access: ModelAccess,
                     managed_by: str = "api") -> OrgModelAccess:
    """Set which models an organization may use."""
    models = sorted(set(access.models)) if access.models is not None else None
    return _access(await repository.put_access(session, _org_uuid(org_id), models, managed_by=managed_by))


async def delete_access(*, session: AsyncSession, org_id: str) -> None:
    """Drop an organization's policy (it may then use every model)."""
    await repository.delete_access(session, _org_uuid(org_id))


# --- the cache ---


def _maybe_uuid(org_id: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(org_id) if org_id else None
    except ValueError:
        return None


async def _read_access(session: AsyncSession, org_id: uuid.UUID) -> list[str] | None:
    row = await repository.get_access(session, org_id)
    return list(row.models) if row and row.models is not None else None


class Lookup(msgspec.Struct, frozen=True):
    """What one hot-path ``MGET`` found."""

    model: CatalogModel | None
    org_models: list[str] | None  # None: no org restriction
    breaker_raw: bytes | None


class CatalogCache:
    """The catalog in Redis, filled from PostgreSQL on a miss."""

    def __init__(self, redis: RedisClient, keys: Keys, sessions: SessionScope, *, ttl: int) -> None:
        self._redis = redis
        self._keys = keys
        self._sessions = sessions
        self._ttl = ttl

    def model_key(self, name: str) -> str:
        """The model's entry; its breaker state shares the model's hash slot (``routing.Breakers.key``)."""
        return self._keys.tagged("inference", name, "model")

    def access_key(self, org_id: str) -> str:
        return self._keys("inference", "access", org_id)

    def index_key(self) -> str:
        return self._keys("inference", "models")

    async def lookup(self, name: str, org_id: str | None, breaker_key: str) -> Lookup:
        """The model, the org's policy and the breaker state in one round trip (DB only on a miss).

        Redis unreachable: both read from PostgreSQL, no breaker state (every breaker reads closed).
        """
        keys = [self.model_key(name), breaker_key]
        if org_id:
            keys.append(self.access_key(org_id))
        try:
            values = await mget(self._redis, keys)
        except RedisUnavailable as exc:
            log.debug("catalog cache unavailable (%s): reading %s from the database", type(exc).__name__, name)
            return await self._lookup_db(name, org_id)
        raw_model, breaker = values[0], values[1]
        raw_access = values[2] if org_id else b"null"
        if raw_model is None:
            model = await self.load_model(name, fill_errors_ok=True)
        else:
            model = None if raw_model == _MISSING else _model_decoder.decode(raw_model)
        if raw_access is None:
            org_models = await self.load_access(org_id, fill_errors_ok=True)  # type: ignore[arg-type]
        else:
            org_models = _access_decoder.decode(raw_access)
        return Lookup(model, org_models, breaker)

    async def _lookup_db(self, name: str, org_id: str | None) -> Lookup:
        oid = _maybe_uuid(org_id)
        async with self._sessions() as session:
            model = await find_model(session=session, name=name)
            org_models = await _read_access(session, oid) if oid else None
        return Lookup(model, org_models, None)

    async def _fill(self, key: str, value: bytes, ttl: int, *, errors_ok: bool) -> None:
        if not errors_ok:
            await self._redis.set(key, value, ex=ttl)
            return
        with suppress(RedisUnavailable):  # Redis went away after the read: the next request retries the fill
            await self._redis.set(key, value, ex=ttl)

    async def load_model(self, name: str, *, fill_errors_ok: bool = False) -> CatalogModel | None:
        """Read one model from PostgreSQL and cache it (or its absence)."""
        async with self._sessions() as session:
            model = await find_model(session=session, name=name)
        if model is None:
            await self._fill(self.model_key(name), _MISSING, _NEGATIVE_TTL, errors_ok=fill_errors_ok)
        else:
            await self._fill(self.model_key(name), _encode(model), self._ttl, errors_ok=fill_errors_ok)
        return model

    async def load_access(self, org_id: str, *, fill_errors_ok: bool = False) -> list[str] | None:
        """Read one org's policy from PostgreSQL and cache it."""
        oid = _maybe_uuid(org_id)
        if oid is None:
            return None
        async with self._sessions() as session:
            models = await _read_access(session, oid)
        await self._fill(self.access_key(org_id), _encode(models), self._ttl, errors_ok=fill_errors_ok)
        return models

    async def all_models(self) -> list[CatalogModel]:
        """Every model (for ``GET /v1/models``): one GET, the database only on a miss or a Redis outage."""
        try:
            raw = await self._redis.get(self.index_key())
        except RedisUnavailable:
            async with self._sessions() as session:
                return await list_models(session=session)
        if raw is not None:
            return _index_decoder.decode(raw)
        return await self.refresh_index()

    async def org_models(self, org_id: str | None) -> list[str] | None:
        """An org's policy from the cache (from PostgreSQL while Redis is unreachable)."""
        if not org_id:
            return None
        try:
            raw = await self._redis.get(self.access_key(org_id))
        except RedisUnavailable:
            oid = _maybe_uuid(org_id)
            if oid is None:
                return None
            async with self._sessions() as session:
                return await _read_access(session, oid)
        return _access_decoder.decode(raw) if raw is not None else await self.load_access(org_id,
                                                                                          fill_errors_ok=True)

    async def refresh_index(self) -> list[CatalogModel]:
        """Rewrite the list of models from PostgreSQL."""
        async with self._sessions() as session:
            models = await list_models(session=session)
        await self._redis.set(self.index_key(), _encode(models), ex=self._ttl)
        return models

    async def refresh_models(self, names: list[str]) -> None:
        """After a change committed: rewrite the named models' entries and the index."""
        for name in names:
            await self.load_model(name)
        await self.refresh_index()

    async def refresh_access(self, org_ids: list[str]) -> None:
        """After a policy change committed: rewrite the orgs' entries."""
        for org_id in org_ids:
            await self.load_access(org_id)
