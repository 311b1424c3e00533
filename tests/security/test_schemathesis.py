"""Schemathesis over every operation of ``contracts/openapi.yaml``, against the running platform.

Each operation is called with generated requests (schemathesis' examples and fuzzing from the schemas,
derandomized so a finding stays a finding) as a platform admin, an org owner, a member and a viewer in
turn, and every answer must hold to the contract: never a 5xx, a documented status, the documented
content type, a body valid against its schema (problem documents included), and no field in a JSON answer
that its schema does not declare (``no_undeclared_fields``: a handler leaking a field is a finding).
``AIAAS_SCHEMATHESIS_EXAMPLES`` sets the examples per operation and identity (CI: a few; the nightly
profile, ``.ci/contract-nightly``, many more).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from identity_support import Tenant

from .conftest import Platform

pytestmark = [pytest.mark.e2e]

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "openapi.yaml"
EXAMPLES = int(os.environ.get("AIAAS_SCHEMATHESIS_EXAMPLES", "4"))
IDENTITIES = ("platform_admin", "owner", "member", "viewer")
DOC: dict[str, Any] = yaml.load(CONTRACT.read_text(), Loader=yaml.CSafeLoader)


def _deref(schema: Any, doc: dict[str, Any]) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def undeclared(value: Any, schema: Any, doc: dict[str, Any], where: str = "$") -> list[str]:
    """Fields of ``value`` that ``schema`` does not declare (objects with declared properties only)."""
    schema = _deref(schema, doc)
    if not isinstance(schema, dict):
        return []
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        found = [undeclared(value, b, doc, where) for b in branches]
        return [] if any(not f for f in found) else found[0]
    out: list[str] = []
    if isinstance(value, dict) and "properties" in schema and not schema.get("additionalProperties"):
        props = schema["properties"]
        out += [f"{where}.{k}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                out += undeclared(v, props[k], doc, f"{where}.{k}")
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value[:50]):
            out += undeclared(v, schema["items"], doc, f"{where}[{i}]")
    return out


def no_undeclared_fields_in(doc: dict[str, Any]) -> Any:
    """A check: a JSON answer carries no field its schema does not declare (problem documents may carry
    extension members, as RFC 7807 allows)."""

    def no_undeclared_fields(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
        ctype = response.headers.get("content-type", [""])
        ctype = (ctype[0] if isinstance(ctype, list) else ctype).split(";")[0].strip()
        if ctype != "application/json":
            return
        declared = case.operation.definition.raw.get("responses", {})
        entry = declared.get(str(response.status_code)) or declared.get("default") or {}
        schema = ((_deref(entry, doc).get("content") or {}).get("application/json") or {}).get("schema")
        if schema is None:
            return
        extra = undeclared(response.json(), schema, doc)
        if extra:
            raise AssertionError(f"undeclared fields in the {response.status_code} answer: {', '.join(extra[:10])}")

    return no_undeclared_fields


no_undeclared_fields = no_undeclared_fields_in(DOC)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          no_undeclared_fields]
# Routes whose answer is not a JSON document of the contract (scraped text, a CSV stream) or that end the
# caller's session (generated calls would sign the identities of the run out).
SKIP = {("GET", "/metrics"), ("GET", "/v1/usage/requests.csv"), ("POST", "/v1/auth/logout")}

schema = schemathesis.openapi.from_path(CONTRACT)


@pytest.fixture(scope="module")
def sessions(platform: Platform, tenants: tuple[Tenant, Tenant]) -> Any:
    """One HTTP session per identity, and the headers each sends to each role."""
    home, _ = tenants
    made: dict[str, requests.Session] = {}
    tokens = {"platform_admin": (platform.admin.token, platform.admin.key),
              **{r: (home.actors[r].token, home.actors[r].key) for r in ("owner", "member", "viewer")}}
    for who in IDENTITIES:
        made[who] = requests.Session()
    yield platform, tokens, made
    for s in made.values():
        s.close()


# Anthropic's request bodies nest deepest (content blocks of many kinds, tools, thinking), and the explicit
# phase sends every combination of the examples their schemas document: about a thousand requests per
# operation and identity, 20 s each in CI. They get generated requests only (the SDK journeys in
# tests/e2e/inference send the documented shapes).
DEEP_BODIES = ["/v1/messages", "/v1/messages/count_tokens"]
_SETTINGS: dict[str, Any] = {"deadline": None, "derandomize": True, "database": None,
                             "suppress_health_check": list(HealthCheck)}


def _exercise(case: schemathesis.Case, sessions: Any) -> None:
    if (case.method.upper(), case.path) in SKIP:
        pytest.skip("not a JSON operation of the contract")
    platform, tokens, made = sessions
    role = case.operation.definition.raw.get("x-aiaas-role", "api")
    base = platform.streamer if role == "streamer" else platform.api
    # Each generated request is sent as every identity in turn (generating it is the costly part).
    for who in IDENTITIES:
        session_token, key = tokens[who]
        # The streamer takes API keys (a session names no org there); the management API takes sessions.
        credential = key if role == "streamer" else session_token
        headers = {"authorization": f"Bearer {credential}"} if credential else {}
        case.call_and_validate(base_url=base, session=made[who], headers=headers, checks=CHECKS, timeout=30)


@schema.exclude(path=DEEP_BODIES, method="POST").parametrize()
@settings(max_examples=EXAMPLES, phases=[Phase.explicit, Phase.generate], **_SETTINGS)
def test_every_operation_holds_to_the_contract(case: schemathesis.Case, sessions: Any) -> None:
    _exercise(case, sessions)


@schema.include(path=DEEP_BODIES, method="POST").parametrize()
@settings(max_examples=EXAMPLES, phases=[Phase.generate], **_SETTINGS)
def test_deeply_nested_bodies_hold_to_the_contract(case: schemathesis.Case, sessions: Any) -> None:
    _exercise(case, sessions)
