"""``keys create|list|show|rotate|revoke``: API keys of the current org."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from aiaas.ctl.commands.common import list_all, list_options, show_list
from aiaas.ctl.durations import humanize, iso, parse_duration, parse_instant
from aiaas.ctl.errors import UsageFailure
from aiaas.ctl.output import Column, ago, when
from aiaas.ctl.resolve import current_org, key_id
from aiaas.ctl.state import State, with_state

SCOPES = click.Choice(["inference", "management:read", "management:write"])


@click.group("keys")
def app() -> None:
    """API keys of the current organization: create, list, show, rotate, revoke (KEY: an id, the exact name
    or the prefix, sk-...)."""


def _limits(k: dict[str, Any]) -> str:
    parts = [f"{k[f]} {label}" for f, label in (("rpm_limit", "rpm"), ("tpm_limit", "tpm")) if k.get(f)]
    if k.get("monthly_spend_limit_usd"):
        parts.append(f"${k['monthly_spend_limit_usd']}/month")
    return ", ".join(parts)


LIST_COLUMNS = [
    Column("ID", "id"), Column("NAME", "name"), Column("PREFIX", "prefix"), Column("STATUS", "status"),
    Column("SCOPES", "scopes"), Column("MODELS", lambda k: k.get("allowed_models") or "any"),
    Column("LIMITS", _limits), Column("LAST USED", lambda k: ago(k.get("last_used_at"))),
    Column("EXPIRES", lambda k: when(k.get("expires_at")) or "never"),
]
SHOW_COLUMNS = [
    Column("id", "id"), Column("name", "name"), Column("prefix", "prefix"), Column("status", "status"),
    Column("scopes", "scopes"), Column("models", lambda k: k.get("allowed_models") or "any"),
    Column("rpm limit", "rpm_limit"), Column("tpm limit", "tpm_limit"),
    Column("monthly spend limit (USD)", "monthly_spend_limit_usd"), Column("owner", "owner_id"),
    Column("created by", "created_by"), Column("created", lambda k: when(k.get("created_at"))),
    Column("expires", lambda k: when(k.get("expires_at")) or "never"),
    Column("last used", lambda k: ago(k.get("last_used_at"))), Column("revoked", lambda k: when(k.get("revoked_at"))),
    Column("rotated from", "rotated_from"),
]


@app.command("create")
@click.argument("name")
@click.option("--scope", "scopes", type=SCOPES, multiple=True, help="A scope (repeat for several; default: "
              "inference).")
@click.option("--model", "models", multiple=True, help="Allow only this model (repeat for several; default: any).")
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens per minute.")
@click.option("--monthly-spend-limit", "spend_limit", metavar="USD", help="USD per UTC month.")
@click.option("--expires-in", metavar="DURATION", help="Lifetime, e.g. 30d, 12h, 2w.")
@click.option("--expires-at", metavar="TIME", help="Expiry as ISO 8601, e.g. 2027-01-01T00:00:00Z.")
@click.option("--service-account", metavar="ID", help="Issue it to this service account.")
@with_state
def create(st: State, name: str, scopes: tuple[str, ...], models: tuple[str, ...], rpm: int | None, tpm: int | None,
           spend_limit: str | None, expires_in: str | None, expires_at: str | None,
           service_account: str | None) -> None:
    """Create an API key; its secret is printed once."""
    body: dict[str, Any] = {"name": name}
    if scopes:
        body["scopes"] = list(scopes)
    if models:
        body["allowed_models"] = list(models)
    if rpm is not None:
        body["rpm_limit"] = rpm
    if tpm is not None:
        body["tpm_limit"] = tpm
    if spend_limit is not None:
        body["monthly_spend_limit_usd"] = spend_limit
    if service_account is not None:
        body["service_account_id"] = service_account
    expiry = expiry_of(expires_in, expires_at)
    if expiry is not None:
        body["expires_at"] = expiry
    org_id = current_org(st)
    created = st.management().call("POST", "/v1/orgs/{org_id}/keys", org_id=org_id, json=body).json()
    _print_created(st, created, "API key")


def expiry_of(expires_in: str | None, expires_at: str | None) -> str | None:
    """The ``expires_at`` to send for ``--expires-in`` or ``--expires-at`` (at most one of them)."""
    if expires_in is not None and expires_at is not None:
        raise UsageFailure("give either --expires-in or --expires-at, not both")
    try:
        if expires_in is not None:
            return iso(datetime.now(UTC) + parse_duration(expires_in))
        if expires_at is not None:
            return iso(parse_instant(expires_at))
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    return None


@app.command("list")
@list_options()
@click.option("--include-revoked", is_flag=True, help="Also revoked keys.")
@click.option("--owner", metavar="USER_ID", help="Only keys of this user.")
@click.option("--name", help="Only names containing this.")
@with_state
def list_keys(st: State, limit: int, every: bool, include_revoked: bool, owner: str | None, name: str | None) -> None:
    """Your keys in the org (every key for owners and admins), with when each was last used."""
    org_id = current_org(st)
    page = list_all(st, lambda cursor, size: st.management().call(
        "GET", "/v1/orgs/{org_id}/keys", org_id=org_id,
        params={"include_revoked": include_revoked or None, "owner_id": owner, "name": name, "cursor": cursor,
                "limit": size}).json(), limit=limit, every=every, what="keys")
    show_list(st, page, LIST_COLUMNS, what="keys")


@app.command("show")
@click.argument("key")
@with_state
def show(st: State, key: str) -> None:
    """One key's settings and status (never its secret)."""
    org_id = current_org(st)
    found = st.management().call("GET", "/v1/orgs/{org_id}/keys/{key_id}", org_id=org_id,
                                 key_id=key_id(st, org_id, key)).json()
    st.out.record(found, SHOW_COLUMNS, raw=found)


@app.command("rotate")
@click.argument("key")
@click.option("--grace", metavar="DURATION", help="How long the old key keeps working, e.g. 1h, 0 (revoke now); "
              "default: 1d.")
@with_state
def rotate(st: State, key: str, grace: str | None) -> None:
    """Issue a successor with the same settings (its secret printed once); the old key works for --grace."""
    body: dict[str, Any] = {}
    if grace is not None:
        try:
            body["grace_seconds"] = int(parse_duration(grace).total_seconds())
        except ValueError as exc:
            raise UsageFailure(str(exc)) from None
    org_id = current_org(st)
    old = key_id(st, org_id, key)
    created = st.management().call("POST", "/v1/orgs/{org_id}/keys/{key_id}/rotate", org_id=org_id, key_id=old,
                                   json=body).json()
    _print_created(st, created, "New API key")
    seconds = body.get("grace_seconds", 86400)
    st.out.notice(f"the old key {old} is revoked now" if seconds == 0 else
                  f"the old key {old} keeps working for {humanize(timedelta(seconds=seconds))}")


@app.command("revoke")
@click.argument("key")
@with_state
def revoke(st: State, key: str) -> None:
    """Revoke a key, at once on every replica."""
    org_id = current_org(st)
    revoked = st.management().call("DELETE", "/v1/orgs/{org_id}/keys/{key_id}", org_id=org_id,
                                   key_id=key_id(st, org_id, key)).json()
    st.out.done(f"Revoked key {revoked.get('name')} ({revoked.get('id')}, {revoked.get('prefix')}).", revoked)


def _print_created(st: State, created: dict[str, Any], label: str) -> None:
    if not st.out.is_table:
        st.out.record(created, [Column("key", "key")], raw=created)
        return
    st.out.secret(f"{label} secret", created["key"])
    st.out.line("")
    st.out.record(created["api_key"], SHOW_COLUMNS[:10])
