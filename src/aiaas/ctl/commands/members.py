"""``members list|add|set-role|remove``: the people and service accounts of the current org."""

from __future__ import annotations

import click

from aiaas.ctl.commands.common import list_all, list_options, show_list
from aiaas.ctl.output import Column, when
from aiaas.ctl.resolve import current_org, member_id
from aiaas.ctl.state import State, with_state

ROLES = click.Choice(["owner", "admin", "member", "viewer"])


@click.group("members")
def app() -> None:
    """Members of the current organization: list, add, change roles, remove (USER: a user id or an email)."""

COLUMNS = [Column("USER ID", "user_id"), Column("EMAIL", "email"), Column("NAME", "name"), Column("ROLE", "role"),
           Column("KIND", "kind"), Column("JOINED", lambda m: when(m.get("joined_at")))]


@app.command("list")
@list_options()
@click.option("--role", type=ROLES, help="Only members with this role.")
@with_state
def list_members(st: State, limit: int, every: bool, role: str | None) -> None:
    """The members of the org with their roles."""
    org_id = current_org(st)
    page = list_all(st, lambda cursor, size: st.management().call(
        "GET", "/v1/orgs/{org_id}/members", org_id=org_id,
        params={"role": role, "cursor": cursor, "limit": size}).json(),
        limit=limit, every=every, what="members")
    show_list(st, page, COLUMNS, what="members")


@app.command("add")
@click.argument("email")
@click.option("--role", type=ROLES, default="member", show_default=True, help="Their role in the org.")
@with_state
def add(st: State, email: str, role: str) -> None:
    """Add an existing user (by EMAIL) to the org (owners and admins; only owners grant owner)."""
    org_id = current_org(st)
    member = st.management().call("POST", "/v1/orgs/{org_id}/members", org_id=org_id,
                                  json={"email": email, "role": role}).json()
    st.out.record(member, COLUMNS, raw=member)


@app.command("set-role")
@click.argument("user")
@click.option("--role", type=ROLES, required=True, help="The new role.")
@with_state
def set_role(st: State, user: str, role: str) -> None:
    """Change a member's role (an org always keeps one owner)."""
    org_id = current_org(st)
    member = st.management().call("PATCH", "/v1/orgs/{org_id}/members/{user_id}", org_id=org_id,
                                  user_id=member_id(st, org_id, user), json={"role": role}).json()
    st.out.record(member, COLUMNS, raw=member)


@app.command("remove")
@click.argument("user")
@with_state
def remove(st: State, user: str) -> None:
    """Remove a member from the org; their keys in it are revoked at once."""
    org_id = current_org(st)
    uid = member_id(st, org_id, user)
    st.management().call("DELETE", "/v1/orgs/{org_id}/members/{user_id}", org_id=org_id, user_id=uid)
    st.out.done(f"Removed {user} from the organization; their keys in it are revoked.", {"removed": uid})
