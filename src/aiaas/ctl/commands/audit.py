"""``audit``: the current org's audit log, or (``--platform``, platform admins) every org's."""

from __future__ import annotations

import click

from aiaas.ctl.commands.common import list_all, list_options, show_list
from aiaas.ctl.output import Column, when
from aiaas.ctl.resolve import current_org, find_org, is_id, member_id
from aiaas.ctl.state import State, with_state

COLUMNS = [
    Column("TIME", lambda e: when(e.get("occurred_at"))), Column("ACTION", "action"),
    Column("ACTOR", lambda e: e.get("actor_user_id")), Column("VIA KEY", "actor_key_id"),
    Column("TARGET", lambda e: f"{e.get('target_type')} {e.get('target_id') or ''}".strip()),
    Column("ORG", "org_id"), Column("REQUEST ID", "request_id"),
]


@click.command("audit")
@list_options()
@click.option("--action", help="Only this action, e.g. key.revoke.")
@click.option("--actor", metavar="USER", help="Only by this user (id, or a member's email).")
@click.option("--target", metavar="ID", help="Only about this target.")
@click.option("--platform", is_flag=True, help="Every org's log (platform admins); --org then filters by org.")
@with_state
def audit(st: State, limit: int, every: bool, action: str | None, actor: str | None, target: str | None,
          platform: bool) -> None:
    """Who did what, newest first: every management write with its actor, target and request id."""
    if platform:
        org_filter = None
        if st.org:
            org_filter = st.org if is_id(st.org) else find_org(st, st.org)["id"]
        if actor and not is_id(actor):
            actor = member_id(st, org_filter or current_org(st), actor)
        params = {"org_id": org_filter, "action": action, "actor_user_id": actor, "target_id": target}
        page = list_all(st, lambda cursor, size: st.management().call(
            "GET", "/v1/admin/audit", params={**params, "cursor": cursor, "limit": size}).json(),
            limit=limit, every=every, what="entries")
    else:
        org_id = current_org(st)
        if actor and not is_id(actor):
            actor = member_id(st, org_id, actor)
        params = {"action": action, "actor_user_id": actor, "target_id": target}
        page = list_all(st, lambda cursor, size: st.management().call(
            "GET", "/v1/orgs/{org_id}/audit", org_id=org_id, params={**params, "cursor": cursor, "limit": size}).json(),
            limit=limit, every=every, what="entries")
    show_list(st, page, COLUMNS, what="entries")
