"""Names to ids: an org by id or exact name, a member by user id or email, a key by id, name or prefix."""

from __future__ import annotations

import re
from typing import Any

from aiaas.ctl.client import paginate
from aiaas.ctl.errors import NOT_FOUND, CtlError, UsageFailure
from aiaas.ctl.state import State

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def is_id(ref: str) -> bool:
    """Whether ``ref`` has the shape of an id (a UUID) rather than a name."""
    return bool(_UUID.match(ref))


def current_org(st: State) -> str:
    """The id of the org commands act on: ``--org``/``AIAAS_ORG``, else (for a session) the one ``orgs use``
    stored, else the caller's only org (an API key has exactly one)."""
    if st.resolved_org:
        return st.resolved_org
    if st.org:
        org_id = st.org if is_id(st.org) else find_org(st, st.org)["id"]
    elif st.prefs.org_id and st.prefs.url == st.url and not st.api_key:  # a key acts in its own org
        org_id = st.prefs.org_id
    else:
        page = st.management().call("GET", "/v1/orgs", params={"limit": 2}).json()
        orgs = page.get("data") or []
        if len(orgs) != 1:
            raise UsageFailure("no organization selected: run `aiaasctl orgs use ORG` or pass --org"
                               if orgs else "you belong to no organization: create one with `aiaasctl orgs create`")
        org_id = orgs[0]["id"]
    st.remember_org(org_id)
    return org_id


def find_org(st: State, ref: str) -> dict[str, Any]:
    """The org ``ref`` names: an id, or the exact name of one of your orgs."""
    if is_id(ref):
        return st.management().call("GET", "/v1/orgs/{org_id}", org_id=ref).json()  # type: ignore[no-any-return]
    # The API's name filter matches substrings: keep the exact matches.
    page = paginate(lambda cursor, size: st.management().call(
        "GET", "/v1/orgs", params={"name": ref, "cursor": cursor, "limit": size}).json(), limit=None)
    return _one([o for o in page.data if o["name"] == ref], f"organization {ref!r}")


def member_id(st: State, org_id: str, ref: str) -> str:
    """The user id of the member ``ref`` names: a user id, or an email (any case)."""
    if is_id(ref):
        return ref
    if "@" not in ref:
        raise UsageFailure(f"{ref!r} is neither a user id nor an email")
    page = paginate(lambda cursor, size: st.management().call(
        "GET", "/v1/orgs/{org_id}/members", org_id=org_id, params={"cursor": cursor, "limit": size}).json(),
        limit=None)
    found = [m for m in page.data if str(m.get("email", "")).lower() == ref.lower()]
    return str(_one(found, f"member {ref!r}")["user_id"])


def key_id(st: State, org_id: str, ref: str) -> str:
    """The id of the key ``ref`` names: an id, its exact name, or its prefix (``sk-AbCdEfGhI``). When a name
    is shared (a rotated key keeps its predecessor's), the one active key wins."""
    if is_id(ref):
        return ref
    params: dict[str, Any] = {"include_revoked": True}
    if not ref.startswith("sk-"):
        params["name"] = ref
    page = paginate(lambda cursor, size: st.management().call(
        "GET", "/v1/orgs/{org_id}/keys", org_id=org_id, params={**params, "cursor": cursor, "limit": size}).json(),
        limit=None)
    found = [k for k in page.data
             if k.get("name") == ref or (ref.startswith("sk-") and ref.startswith(str(k.get("prefix"))))]
    active = [k for k in found if k.get("status") == "active"]
    return str(_one(active if len(active) == 1 else found, f"key {ref!r}")["id"])


def _one(found: list[dict[str, Any]], what: str) -> dict[str, Any]:
    if not found:
        raise CtlError(f"no {what} found", exit_code=NOT_FOUND)
    if len(found) > 1:
        ids = ", ".join(str(f.get("id") or f.get("user_id")) for f in found[:5])
        raise UsageFailure(f"{what} is ambiguous ({len(found)} match: {ids}); use an id")
    return found[0]
