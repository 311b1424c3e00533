"""Hybrid mode: the catalog and org model-access policies declared in a YAML file kept in Git.

``aiaas apply -f FILE`` reconciles the database with the file: models and policies in the file are
created or replaced (and marked ``managed_by: file``); file-managed ones no longer in the file are
deleted; those created through the admin API and absent from the file are left alone. Applying the
same file twice changes nothing. ``--dry-run`` prints the plan without writing. Credentials are never
inline: a deployment names the environment variable (or mounted secret) holding its key in
``credential_ref``, and unknown fields such as ``api_key`` are rejected.

Example::

    models:
      - name: gpt-4o-mini
        owned_by: openai
        capabilities: [chat]
        deployments:
          - name: openai
            upstream_model: gpt-4o-mini
            base_url: https://api.example.com/v1
            credential_ref: OPENAI_API_KEY
    org_model_access:
      - org_id: 0190a000-0000-7000-8000-000000000001
        models: [gpt-4o-mini]

A ``prices:`` section, if present, belongs to the price book (``analytics``); ``aiaas apply`` hands it
there and this module never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec
import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.inference.schemas import ModelAccess, ModelSpec, ModelUpdate
from aiaas.inference.service import catalog
from aiaas.kernel.errors import BadRequest


class OrgAccessSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    org_id: Annotated[str, msgspec.Meta(min_length=1)]
    models: list[str] | None


class CatalogFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The whole file."""

    models: list[ModelSpec] = msgspec.field(default_factory=list)
    org_model_access: list[OrgAccessSpec] = msgspec.field(default_factory=list)


class CatalogFileError(BadRequest):
    """The catalog file cannot be read or does not match the schema."""


@dataclass(frozen=True)
class Change:
    """One planned change: ``op`` is ``create``, ``update`` or ``delete``."""

    op: str
    kind: str  # "model" | "access"
    name: str
    detail: str = ""

    def __str__(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.op]
        return f"{sign} {self.kind} {self.name}" + (f": {self.detail}" if self.detail else "")


def load_yaml(text: str) -> dict[str, object]:
    """The YAML document of a catalog file (a mapping; other sections are read by their own contexts)."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogFileError(f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise CatalogFileError("catalog file: the document must be a mapping (models:, org_model_access:, ...)")
    return doc


def parse_text(text: str) -> CatalogFile:
    """Parse and validate the YAML text of a catalog file."""
    return parse_doc(load_yaml(text))


def parse_doc(doc: object) -> CatalogFile:
    """Validate the catalog sections of a parsed catalog file."""
    try:
        parsed = msgspec.convert(doc, CatalogFile)
    except msgspec.ValidationError as exc:
        raise CatalogFileError(f"catalog file: {exc}") from None
    names = [m.name for m in parsed.models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CatalogFileError(f"catalog file declares {', '.join(dupes)} more than once")
    return parsed


def _update_of(spec: ModelSpec) -> ModelUpdate:
    return ModelUpdate(owned_by=spec.owned_by, capabilities=spec.capabilities, context_length=spec.context_length,
                       deployments=spec.deployments)


def _differences(want: ModelSpec, have: ModelSpec) -> str:
    a, b = msgspec.to_builtins(want), msgspec.to_builtins(have)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "changes " + ", ".join(changed)


async def plan_and_apply(*, session: AsyncSession, file: CatalogFile, dry_run: bool) -> list[Change]:
    """Compute the changes that make the database match ``file``; apply them unless ``dry_run``."""
    changes: list[Change] = []
    existing = {m.name: m for m in await catalog.list_models(session=session)}
    for spec in file.models:
        have = existing.get(spec.name)
        if have is None:
            changes.append(Change("create", "model", spec.name))
            if not dry_run:
                await catalog.create_model(session=session, spec=spec, managed_by="file")
        elif catalog.to_spec(have) != spec or have.managed_by != "file":
            detail = _differences(spec, catalog.to_spec(have)) if catalog.to_spec(have) != spec \
                else "now managed by the file"
            changes.append(Change("update", "model", spec.name, detail))
            if not dry_run:
                await catalog.replace_model(session=session, name=spec.name, update=_update_of(spec),
                                            managed_by="file")
    declared = {m.name for m in file.models}
    for name, have in existing.items():
        if have.managed_by == "file" and name not in declared:
            changes.append(Change("delete", "model", name))
            if not dry_run:
                await catalog.delete_model(session=session, name=name)
    policies = {p.org_id: p for p in await catalog.list_access(session=session)}
    for access in file.org_model_access:
        want = sorted(set(access.models)) if access.models is not None else None
        current = policies.get(access.org_id)
        if current is None or current.models != want or current.managed_by != "file":
            changes.append(Change("create" if current is None else "update", "access", access.org_id,
                                  f"models {want}"))
            if not dry_run:
                await catalog.put_access(session=session, org_id=access.org_id, access=ModelAccess(models=want),
                                         managed_by="file")
    declared_orgs = {a.org_id for a in file.org_model_access}
    for org_id, current in policies.items():
        if current.managed_by == "file" and org_id not in declared_orgs:
            changes.append(Change("delete", "access", org_id))
            if not dry_run:
                await catalog.delete_access(session=session, org_id=org_id)
    return changes
