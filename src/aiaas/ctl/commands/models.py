"""``models``: what an API key can call, or (platform admins) the catalog and each deployment's health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from aiaas.ctl.output import Column
from aiaas.ctl.state import State, with_state


def _created(m: dict[str, Any]) -> str | None:
    stamp = m.get("created")
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d") if isinstance(stamp, int | float) else None


def _deployments(m: dict[str, Any]) -> str:
    return ", ".join(f"{d.get('name')} ({d.get('provider')}:{d.get('upstream_model')}"
                     + ("" if d.get("enabled", True) else ", disabled") + ")" for d in m.get("deployments") or [])


@click.command("models")
@click.option("--catalog", is_flag=True, help="The whole catalog with deployments (platform admins, management "
              "API).")
@click.option("--health", is_flag=True, help="Each deployment's circuit breaker as the streamers see it "
              "(platform admins).")
@with_state
def models(st: State, catalog: bool, health: bool) -> None:
    """The models your API key may call (inference API), the catalog with --catalog, breakers with --health."""
    if health:
        data = st.management().call("GET", "/v1/admin/deployments").json()
        st.out.items(data, [Column("MODEL", "model"), Column("DEPLOYMENT", "deployment"),
                            Column("PROVIDER", "provider"), Column("ENABLED", "enabled"),
                            Column("WEIGHT", "weight", "right"), Column("PRIORITY", "priority", "right"),
                            Column("BREAKER", "breaker"), Column("FAILURES", "consecutive_failures", "right"),
                            Column("OPEN UNTIL", "open_until")], raw=data, empty="the catalog has no deployments")
        return
    if catalog:
        data = st.management().call("GET", "/v1/admin/models").json()
        st.out.items(data, [Column("NAME", "name"), Column("CAPABILITIES", "capabilities"),
                            Column("CONTEXT", "context_length", "right"), Column("DEPLOYMENTS", _deployments),
                            Column("MANAGED BY", "managed_by")], raw=data, empty="the catalog is empty")
        return
    listing = st.inference().call("GET", "/v1/models").json()
    st.out.items(listing.get("data") or [], [Column("ID", "id"), Column("OWNED BY", "owned_by"),
                                             Column("CREATED", _created)], raw=listing, empty="no models")
