"""``orgs list|create|show|rename|delete|use``: organizations, and which one is current."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from aiaas.ctl import config
from aiaas.ctl.commands.common import confirm, list_all, list_options, show_list, yes_option
from aiaas.ctl.output import Column, when
from aiaas.ctl.resolve import current_org, find_org
from aiaas.ctl.state import State, with_state


@click.group("orgs")
def app() -> None:
    """Organizations: list, create, show, rename, delete, and pick the current one (ORG: an id or the exact
    name)."""


def columns(st: State) -> list[Column]:
    """The columns of an org, the current one marked with ``*``."""
    current = st.prefs.org_id if st.prefs.url == st.url else None
    return [Column(" ", lambda o: "*" if o.get("id") == current else " "), Column("ID", "id"),
            Column("NAME", "name"), Column("ROLE", "role"), Column("CREATED", lambda o: when(o.get("created_at")))]


@app.command("list")
@list_options()
@click.option("--name", help="Only names containing this.")
@with_state
def list_orgs(st: State, limit: int, every: bool, name: str | None) -> None:
    """The organizations you belong to (an API key: its own), the current one marked with *."""
    page = list_all(st, lambda cursor, size: st.management().call(
        "GET", "/v1/orgs", params={"name": name, "cursor": cursor, "limit": size}).json(),
        limit=limit, every=every, what="organizations")
    show_list(st, page, columns(st), what="organizations")


@app.command("create")
@click.argument("name")
@click.option("--use", is_flag=True, help="Make it the current org.")
@with_state
def create(st: State, name: str, use: bool) -> None:
    """Create an organization; you become its owner."""
    org = st.management().call("POST", "/v1/orgs", json={"name": name}).json()
    if use:
        _store_current(st, org)
    st.out.record(org, columns(st)[1:], raw=org)


@app.command("show")
@click.argument("org", required=False)
@with_state
def show(st: State, org: str | None) -> None:
    """One organization (without ORG: the current one)."""
    found = find_org(st, org) if org else find_org(st, current_org(st))
    st.out.record(found, columns(st)[1:], raw=found)


@app.command("rename")
@click.argument("org")
@click.argument("new_name")
@with_state
def rename(st: State, org: str, new_name: str) -> None:
    """Rename an organization (owners)."""
    org_id = find_org(st, org)["id"]
    renamed = st.management().call("PATCH", "/v1/orgs/{org_id}", org_id=org_id, json={"name": new_name}).json()
    if st.prefs.org_id == org_id:
        _store_current(st, renamed)
    st.out.record(renamed, columns(st)[1:], raw=renamed)


@app.command("delete")
@click.argument("org")
@yes_option
@with_state
def delete(st: State, org: str, yes: bool) -> None:
    """Delete an organization (owners): it answers 404 from then on and all its keys are revoked."""
    found = find_org(st, org)
    confirm(st, f"Delete organization {found['name']!r} ({found['id']}) and revoke all its keys?", yes=yes)
    st.management().call("DELETE", "/v1/orgs/{org_id}", org_id=found["id"])
    if st.prefs.org_id == found["id"]:
        config.save_preferences(st.dir, dataclasses.replace(st.prefs, org_id=None, org_name=None))
    st.out.done(f"Deleted organization {found['name']} ({found['id']}).", {"deleted": found["id"]})


@app.command("use")
@click.argument("org")
@with_state
def use(st: State, org: str) -> None:
    """Make an organization the current one (stored in the config file; --org overrides it)."""
    found = find_org(st, org)
    _store_current(st, found)
    st.out.done(f"Current organization: {found['name']} ({found['id']}).", found)


def _store_current(st: State, org: dict[str, Any]) -> None:
    config.save_preferences(st.dir, dataclasses.replace(st.prefs, url=st.url, org_id=org["id"],
                                                        org_name=org.get("name")))
    st.prefs = config.load_preferences(st.dir)
