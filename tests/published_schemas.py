"""Validators for excerpts of the vendors' published API documents kept in ``tests/contracts/``."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

CONTRACTS = Path(__file__).resolve().parent / "contracts"


def _nullable(node: Any) -> Any:
    """OpenAI's 3.1 document still marks some fields with 3.0's ``nullable: true``, which JSON Schema
    ignores; read it as the document means it: null is allowed too."""
    if isinstance(node, list):
        return [_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out or "allOf" in out or "anyOf" in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _document(name: str) -> dict[str, Any]:
    return _nullable(json.loads((CONTRACTS / name).read_text()))  # type: ignore[no-any-return]


@functools.cache
def validator(document: str, schema: str) -> Draft202012Validator:
    """A validator of ``#/components/schemas/<schema>`` of the excerpt ``document``."""
    root = {"$ref": f"#/components/schemas/{schema}", "components": _document(document)["components"]}
    return Draft202012Validator(root)


def errors(document: str, schema: str, value: Any) -> list[str]:
    """Every way ``value`` breaks the published schema (empty when it is valid)."""
    out = []
    for e in validator(document, schema).iter_errors(value):
        # Under a oneOf/anyOf the useful reasons are the deepest ones of the branches.
        causes = sorted(e.context or [e], key=lambda c: len(list(c.absolute_path)), reverse=True)[:3]
        out += [f"{'/'.join(map(str, c.absolute_path))}: {c.message}"[:300] for c in causes]
    return out
