"""Breaking changes between two versions of the HTTP contract (``aiaas openapi --breaking-from FILE``).

The versioning policy (docs/api-versioning.md): within ``/v1`` a change may add, never take away. This
compares an earlier ``contracts/openapi.yaml`` with the one the code generates and lists every change a
client written against the earlier one could trip over:

- an operation removed (allowed only once the earlier contract marked it ``deprecated``);
- a request parameter or body field added as required, or made required;
- a request parameter removed, or a body field removed (the request Structs refuse unknown fields);
- a type changed, an enum value removed, or a bound (length, range) tightened on what a client sends;
- a success status removed, or a response field removed or given another type.

Schemas are compared after following ``$ref``; the comparison is structural, so renaming a component
without changing its shape is no change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

METHODS = ("get", "put", "post", "delete", "patch")
_TIGHTER = {"minLength": 1, "minimum": 1, "exclusiveMinimum": 1, "minItems": 1,
            "maxLength": -1, "maximum": -1, "exclusiveMaximum": -1, "maxItems": -1}


class _Doc:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def deref(self, schema: Any, seen: frozenset[str] = frozenset()) -> Any:
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if ref in seen:
                return {}
            seen = seen | {ref}
            node: Any = self.doc
            for part in ref.lstrip("#/").split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            schema = node
        return schema

    def operations(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(method, path): op for path, item in self.doc.get("paths", {}).items() if path.startswith("/v1/")
                for method, op in item.items() if method in METHODS and isinstance(op, dict)}


def _types(schema: dict[str, Any], doc: _Doc) -> set[str]:
    schema = doc.deref(schema)
    if not isinstance(schema, dict):
        return set()
    if "anyOf" in schema or "oneOf" in schema:
        return {t for s in schema.get("anyOf", schema.get("oneOf", [])) for t in _types(s, doc)}
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    return {kind} if kind else set()


def _variants(schema: Any, doc: _Doc) -> list[dict[str, Any]]:
    """The object shapes a schema may take (the branches of an anyOf/oneOf, or itself)."""
    schema = doc.deref(schema)
    if not isinstance(schema, dict):
        return []
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return [v for b in branches for v in _variants(b, doc)]
    return [schema]


def _schema(old: Any, new: Any, od: _Doc, nd: _Doc, where: str, *, sent: bool, depth: int = 0) -> Iterator[str]:
    """Changes to one schema that break a client: for what it ``sent``, anything it could send before must
    still be accepted; for what it reads, every field it could read before must still be there, typed alike."""
    if depth > 12:
        return
    o, n = od.deref(old), nd.deref(new)
    if not isinstance(o, dict) or not isinstance(n, dict):
        return
    ot, nt = _types(o, od), _types(n, nd)
    if ot and nt and not (ot <= nt if sent else nt <= ot):
        yield f"{where}: type {sorted(ot)} became {sorted(nt)}"
        return
    if sent:
        if "enum" in o and "enum" in n and set(o["enum"]) - set(n["enum"]):
            yield f"{where}: enum values removed: {sorted(map(str, set(o['enum']) - set(n['enum'])))}"
        for key, direction in _TIGHTER.items():
            if key in n and (key not in o or (n[key] - o[key]) * direction > 0):
                yield f"{where}: {key} tightened from {o.get(key)} to {n[key]}"
        if "pattern" in n and n.get("pattern") != o.get("pattern"):
            yield f"{where}: pattern changed to {n['pattern']!r}"
    o_objs = [v for v in _variants(o, od) if "properties" in v]
    n_objs = [v for v in _variants(n, nd) if "properties" in v]
    if len(o_objs) == 1 and len(n_objs) == 1:
        op, np_ = o_objs[0]["properties"], n_objs[0]["properties"]
        o_req, n_req = set(o_objs[0].get("required", [])), set(n_objs[0].get("required", []))
        for name in sorted(set(op) - set(np_)):
            yield f"{where}.{name}: field removed"
        if sent:
            for name in sorted(n_req - o_req):
                yield f"{where}.{name}: " + ("now required" if name in op else "new required field")
        else:
            for name in sorted((o_req - n_req) & set(np_)):
                yield f"{where}.{name}: no longer always present"
        for name in sorted(set(op) & set(np_)):
            yield from _schema(op[name], np_[name], od, nd, f"{where}.{name}", sent=sent, depth=depth + 1)
    o_items, n_items = o.get("items"), n.get("items")
    if isinstance(o_items, dict) and isinstance(n_items, dict):
        yield from _schema(o_items, n_items, od, nd, f"{where}[]", sent=sent, depth=depth + 1)


def _params(op: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p.get("in", ""), p.get("name", "")): p for p in op.get("parameters", []) if isinstance(p, dict)}


def _body(op: dict[str, Any], doc: _Doc) -> Any:
    content = (doc.deref(op.get("requestBody") or {}) or {}).get("content", {})
    return (content.get("application/json") or {}).get("schema")


def _success(op: dict[str, Any]) -> dict[str, Any]:
    return {code: r for code, r in (op.get("responses") or {}).items() if str(code).startswith("2")}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every change from ``old`` to ``new`` that can break a ``/v1`` client, one line each."""
    od, nd = _Doc(old), _Doc(new)
    out: list[str] = []
    new_ops = nd.operations()
    for (method, path), o_op in sorted(od.operations().items()):
        name = f"{method.upper()} {path}"
        n_op = new_ops.get((method, path))
        if n_op is None:
            if not o_op.get("deprecated"):
                out.append(f"{name}: removed without being deprecated first")
            continue
        o_params, n_params = _params(o_op), _params(n_op)
        for key in sorted(set(o_params) - set(n_params)):
            out.append(f"{name}: {key[0]} parameter {key[1]!r} removed")
        for key, p in sorted(n_params.items()):
            before = o_params.get(key)
            if p.get("required") and (before is None or not before.get("required")):
                change = "now required" if before else "added as required"
                out.append(f"{name}: {key[0]} parameter {key[1]!r} {change}")
            if before is not None:
                out += [f"{name}: {m}" for m in _schema(before.get("schema"), p.get("schema"), od, nd,
                                                         f"{key[0]} {key[1]}", sent=True)]
        o_body, n_body = _body(o_op, od), _body(n_op, nd)
        if o_body is not None and n_body is not None:
            out += [f"{name}: {m}" for m in _schema(o_body, n_body, od, nd, "body", sent=True)]
        elif n_body is not None and (nd.deref(n_op.get("requestBody") or {}) or {}).get("required"):
            out.append(f"{name}: a required request body was added")
        o_ok, n_ok = _success(o_op), _success(n_op)
        for code in sorted(set(o_ok) - set(n_ok)):
            out.append(f"{name}: success status {code} removed")
        for code in sorted(set(o_ok) & set(n_ok)):
            o_schema = ((o_ok[code].get("content") or {}).get("application/json") or {}).get("schema")
            n_schema = ((n_ok[code].get("content") or {}).get("application/json") or {}).get("schema")
            if o_schema is not None and n_schema is None:
                out.append(f"{name}: the {code} response lost its JSON body")
            elif o_schema is not None:
                out += [f"{name}: {m}" for m in _schema(o_schema, n_schema, od, nd, f"{code} response", sent=False)]
    return out
