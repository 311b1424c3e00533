"""``aiaasctl`` is a client of the published contract: every request it can make is an operation of
``contracts/openapi.yaml``, on the role that serves it, read statically from the source.

Every request goes through ``Client.call("METHOD", "/path/{template}", name=value, ...)`` on
``st.management()`` or ``st.inference()``; this test reads each such call with ``ast`` and fails on one it
cannot read (a computed method or path, another receiver), so none can hide from it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CTL = ROOT / "src" / "aiaas" / "ctl"
ROLE_OF_CLIENT = {"management": "api", "inference": "streamer"}


@dataclass(frozen=True)
class Call:
    where: str
    method: str
    path: str
    client: str
    path_values: frozenset[str]


def _contract() -> dict[tuple[str, str], str]:
    """(METHOD, path) -> role of every operation of the contract."""
    doc = yaml.safe_load((ROOT / "contracts" / "openapi.yaml").read_text())
    return {(method.upper(), path): op.get("x-aiaas-role", "")
            for path, item in doc["paths"].items() for method, op in item.items()
            if method in {"get", "post", "put", "patch", "delete"}}


def _calls() -> tuple[list[Call], list[str]]:
    """Every ``.call(...)`` of the package, and the places where one is not a readable literal call."""
    found, unreadable = [], []
    for path in sorted(CTL.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "call"):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            receiver = node.func.value
            client = (receiver.func.attr if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute)
                      else None)
            literal = (len(node.args) >= 2 and all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                                                   for a in node.args[:2]))
            if client not in ROLE_OF_CLIENT or not literal:
                unreadable.append(where)
                continue
            method, template = (a.value for a in node.args[:2])  # type: ignore[attr-defined]
            values = frozenset(k.arg for k in node.keywords if k.arg and k.arg not in {"params", "json", "headers",
                                                                                       "stream"})
            found.append(Call(where, method, template, client, values))
    return found, unreadable


CALLS, UNREADABLE = _calls()
CONTRACT = _contract()


def test_every_call_is_readable() -> None:
    assert not UNREADABLE, ("calls whose method and path are not literals on st.management()/st.inference(): "
                            f"{UNREADABLE}")


def test_the_walk_found_the_cli_s_requests() -> None:
    operations = {(c.method, c.path) for c in CALLS}
    assert len(operations) >= 20, operations


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.method} {c.path} ({c.where})")
def test_is_an_operation_of_the_contract_on_its_role(call: Call) -> None:
    assert (call.method, call.path) in CONTRACT, f"{call.where}: {call.method} {call.path} is not in the contract"
    assert CONTRACT[(call.method, call.path)] == ROLE_OF_CLIENT[call.client], (
        f"{call.where}: {call.method} {call.path} is served by role {CONTRACT[(call.method, call.path)]!r}, "
        f"but is sent with the {call.client} client")
    assert call.path_values == set(re.findall(r"{([a-z_]+)}", call.path)), (
        f"{call.where}: path values {sorted(call.path_values)} do not fill {call.path}")


def test_only_the_client_module_speaks_http() -> None:
    offenders = []
    for path in sorted(CTL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in {"httpx", "requests", "urllib3", "aiohttp", "http"} for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [f"{(CTL / 'client.py').relative_to(ROOT)}:{_httpx_line()}"]


def _httpx_line() -> int:
    tree = ast.parse((CTL / "client.py").read_text())
    return next(n.lineno for n in ast.walk(tree) if isinstance(n, ast.Import) and n.names[0].name == "httpx")
