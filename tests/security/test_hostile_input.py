"""A generated hostile-input sweep over every operation of ``contracts/openapi.yaml``.

The contract is read at import time and every operation becomes one test case (``"POST /v1/orgs/{org_id}/keys"``).
For each, hypothesis sends requests to the running platform in which exactly one thing is hostile: a path
parameter, a query parameter, one body field (found by following the schema's ``$ref``, nested list items and
objects included), a required field left out, an unknown field added, or the whole body (wrong JSON type, empty,
not JSON, 5000 levels of nesting). Hostile values are huge and negative integers, 1e308, NUL and other C0
control characters, CR/LF header-injection attempts, 100 000-character strings, wrong types and nulls.

Every request is sent with the credentials that reach the handler: the platform admin's session for ``/v1/admin``
and ``/v1/users``, the org owner's session for org routes (with that org's real ids wherever an id is not the
hostile part), the owner's API key on the streamer, nothing for login.

What is asserted, for every request:

- never a 5xx; every error (4xx) is ``application/problem+json`` whose ``status`` is the HTTP status;
- a request the contract says must be refused is a 4xx: a value its schema does not admit (type, range, length,
  pattern, enum, format, required), the whole body of the wrong shape, and any hostile id, email or password
  (an id that names nothing cannot be acted on). A value the schema does admit (CR/LF in a chat ``user``, 2**64
  ``dimensions``, 10**18 for a ``context_length`` without a maximum) may be served, but never with a 5xx;
- a refused write changes nothing: the org's name, members, keys (revoked ones included), service accounts and
  usage policy, and the platform's orgs, users, models and model-access policies read back through the API are
  what they were before. A write that was served is a new baseline.

Hypothesis runs derandomized (the same requests every run, so a finding stays a finding) and without shrinking
(a failing request is reported as it was sent): each operation gets a few fixed examples (deep nesting, non-JSON,
empty body, NUL, 2**64) and ``READ_EXAMPLES`` or ``WRITE_EXAMPLES`` generated ones.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from .conftest import METRICS_TOKEN, PASSWORD, Platform, Tenant

pytestmark = [pytest.mark.e2e]

CONTRACT_PATH = Path(__file__).resolve().parents[2] / "contracts" / "openapi.yaml"
CONTRACT: dict[str, Any] = yaml.load(CONTRACT_PATH.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
OBSERVABILITY = frozenset({"/health", "/metrics", "/ready"})
# Generated examples per operation, on top of the fixed ones. A write reads the whole state back after every
# request (nine GETs), so writes get fewer: the file stays well under a minute and a half on two cores.
READ_EXAMPLES = 25
WRITE_EXAMPLES = 12


def sweep_settings(max_examples: int) -> settings:
    """Bounded, derandomized (the same requests every run), no shrinking (a failure is shown as it was sent)."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


SNAPSHOT_READS = 9  # the reads of Sweep.snapshot, made in parallel
NIL_UUID = "00000000-0000-0000-0000-000000000000"
# httpx refuses URLs over 65 536 characters: a long value in a URL is 60 000 characters (it still goes far past
# the server's 32 KiB head limit); in a body it is 100 000.
URL_LONG = 60_000
BODY_LONG = 100_000


# --- The contract ---------------------------------------------------------------------------------------------

def _resolve(ref: str) -> Any:
    node: Any = CONTRACT
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(schema: Any) -> Any:
    """``schema`` with its ``$ref`` (and the target's own) followed."""
    while isinstance(schema, dict) and "$ref" in schema:
        schema = _resolve(schema["$ref"])
    return schema


@dataclass(frozen=True)
class Operation:
    """One operation of the contract."""

    method: str
    path: str
    spec: dict[str, Any] = field(repr=False, compare=False)
    path_params: tuple[dict[str, Any], ...] = field(repr=False, compare=False, default=())

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def role(self) -> str:
        return str(self.spec.get("x-aiaas-role", "api"))

    @property
    def writes(self) -> bool:
        return self.method != "get"

    def parameters(self, where: str) -> list[dict[str, Any]]:
        params = [deref(p) for p in (*self.path_params, *self.spec.get("parameters", ()))]
        return [p for p in params if p.get("in") == where]

    @property
    def body_schema(self) -> dict[str, Any] | None:
        body = deref(self.spec.get("requestBody"))
        if not body:
            return None
        media = body.get("content", {}).get("application/json")
        return deref(media["schema"]) if media and "schema" in media else None


def operations() -> list[Operation]:
    """Every operation of the contract, in document order."""
    out = []
    for path, item in CONTRACT["paths"].items():
        shared = tuple(item.get("parameters", ()))
        for method in HTTP_METHODS:
            if method in item:
                out.append(Operation(method, path, item[method], shared))
    return out


OPERATIONS = operations()
SWEPT = [op for op in OPERATIONS if op.path not in OBSERVABILITY]
OBSERVED = [op for op in OPERATIONS if op.path in OBSERVABILITY]


# --- What the contract admits (the subset of JSON Schema the document uses) ------------------------------------

def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)


def _format_ok(value: str, fmt: str | None) -> bool:
    if fmt == "uuid":
        return bool(_UUID.match(value))
    if fmt == "date-time":
        if not _RFC3339.match(value):
            return False
        try:
            dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            return False
    return True


def conforms(value: Any, schema: Any) -> bool:
    """Whether ``value`` is admitted by ``schema`` (booleans are not numbers, floats are not integers)."""
    schema = deref(schema)
    if not isinstance(schema, dict) or not schema:
        return True
    if "anyOf" in schema and not any(conforms(value, s) for s in schema["anyOf"]):
        return False
    if "oneOf" in schema and sum(conforms(value, s) for s in schema["oneOf"]) != 1:
        return False
    if "allOf" in schema and not all(conforms(value, s) for s in schema["allOf"]):
        return False
    kinds = schema.get("type")
    if kinds is not None and not any(_is_type(value, k) for k in (kinds if isinstance(kinds, list) else [kinds])):
        return False
    if "enum" in schema and not any(type(value) is type(e) and value == e for e in schema["enum"]):
        return False
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        if not _format_ok(value, schema.get("format")):
            return False
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return False
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            return False
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return False
        if "items" in schema and not all(conforms(v, schema["items"]) for v in value):
            return False
    if isinstance(value, dict):
        if any(name not in value for name in schema.get("required", ())):
            return False
        props = schema.get("properties", {})
        for name, v in value.items():
            if name in props:
                if not conforms(v, props[name]):
                    return False
            elif schema.get("additionalProperties") is False:
                return False
    return True


_NUMERIC = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")


def query_conforms(raw: str, schema: Any) -> bool:
    """Whether a query-string value is admitted by ``schema`` once decoded as its schema's type."""
    candidates: list[Any] = [raw]
    if re.fullmatch(r"-?\d+", raw):
        candidates.append(int(raw))
    if raw in ("true", "false", "1", "0"):  # the usual spellings of a boolean in a query string
        candidates.append(raw in ("true", "1"))
    if raw == "null":  # a nullable parameter may read the word as its null
        candidates.append(None)
    if _NUMERIC.match(raw) and "date-time" in json.dumps(deref(schema)):
        return True  # a number of seconds is a lenient, not a hostile, spelling of an instant
    return any(conforms(c, schema) for c in candidates)


def _branch(schema: Any, want: str) -> dict[str, Any] | None:
    """The branch of a (union) schema of type ``want``, or None."""
    schema = deref(schema)
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == want:
        return schema
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, ()):
            found = _branch(branch, want)
            if found is not None:
                return found
    return None


# --- Hostile values ------------------------------------------------------------------------------------------

class V:
    """A hostile value with a short name (what a failing example prints instead of 100 000 characters)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return self.name


MISSING = object()
AT_MAXIMUM = object()  # the largest value the field's own schema admits (see ``boundary``)
C0 = "".join(chr(c) for c in (1, 2, 7, 8, 11, 12, 14, 27, 31)) + "[2J\x7f"
DEEP_LISTS = b"[" * 5000 + b"]" * 5000
DEEP_OBJECTS = b'{"a":' * 5000 + b"1" + b"}" * 5000

JSON_VALUES = [
    V("NUL", "a\x00b"), V("10**18", 10**18), V("2**64", 2**64), V("CRLF", "a\r\nX-Injected: 1"),
    V("100k-chars", "x" * BODY_LONG), V("null", None), V("2**63", 2**63), V("-1", -1), V("-10**18", -(10**18)),
    V("1e308", 1e308), V("-1e308", -1e308), V("0.5", 0.5), V("bare-NUL", "\x00"), V("C0", C0),
    V("CRLFCRLF", "\r\n\r\n<html>"), V("empty-string", ""), V("lone-surrogate", "\ud800"),
    V("bidi-bom", "\u202e\ufeffx"), V("sql", "' OR '1'='1'; --"), V("traversal", "../../../etc/passwd"),
    V("true", True), V("list", ["x"]), V("empty-list", []), V("object", {"a": 1}), V("empty-object", {}),
    V("nested-list", [[[[["deep"]]]]]), V("2**31", 2**31), V("declared-maximum", AT_MAXIMUM),
]
URL_VALUES = [
    V("NUL", "a\x00b"), V("2**64", str(2**64)), V("CRLF", "a\r\nX-Injected: 1"), V("60k-chars", "x" * URL_LONG),
    V("10**18", str(10**18)), V("2**63", str(2**63)), V("-1", "-1"), V("-10**18", str(-(10**18))),
    V("0", "0"), V("2**31", str(2**31)), V("1e308", "1e308"), V("NaN", "NaN"), V("bare-NUL", "\x00"), V("C0", C0),
    V("20k-chars", "x" * 20_000), V("300-chars", "x" * 300), V("empty", ""), V("null", "null"),
    V("brackets", "[]"), V("braces", "{}"), V("true", "true"), V("sql", "' OR '1'='1"),
    V("traversal", "../../../etc/passwd"), V("percent-00", "%00"), V("nil-uuid", NIL_UUID),
]
REPEATED = [V("repeated", ["1", "2"]), V("repeated-NUL", ["a\x00", "b"])]
BODY_VALUES = [
    V("deep-lists", DEEP_LISTS), V("deep-objects", DEEP_OBJECTS), V("not-json", b"not json"),
    V("empty-body", b""), V("truncated", b'{"name": '), V("binary", b"\x00\xff\xfe\x80"), V("nan", b'{"x": NaN}'),
    V("huge-number", b"9" * 5000), V("json-list", []), V("json-string", "a\x00b"), V("json-int", 2**64),
    V("json-float", 1e308), V("json-null", None), V("json-true", True), V("json-empty-object", {}),
]


@dataclass(frozen=True)
class Target:
    """The one hostile part of a request: ``kind`` is path, query, field, missing, extra or body."""

    kind: str
    where: tuple[Any, ...] = ()

    def __repr__(self) -> str:
        if self.kind in ("path", "query"):
            return f"{self.kind}:{self.where[0]}"
        if self.kind in ("field", "missing"):
            return f"{self.kind}:" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.where)[1:]
        return self.kind

    def values(self) -> list[V]:
        if self.kind == "path":
            return URL_VALUES
        if self.kind == "query":
            return URL_VALUES + REPEATED
        if self.kind == "missing":
            return [V("left-out", MISSING)]
        if self.kind == "body":
            return BODY_VALUES
        return JSON_VALUES


def _field_targets(schema: Any, sample: Any, prefix: tuple[Any, ...]) -> Iterator[Target]:
    obj = _branch(schema, "object")
    if obj is None:
        return
    required = set(obj.get("required", ()))
    for name, sub in obj.get("properties", {}).items():
        here = (*prefix, name)
        yield Target("field", here)
        if name in required:
            yield Target("missing", here)
        arr = _branch(sub, "array")
        if arr is not None:
            yield Target("field", (*here, 0))
            item = sample.get(name) if isinstance(sample, dict) else None
            if isinstance(item, list) and item and isinstance(item[0], dict):
                yield from _field_targets(arr.get("items"), item[0], (*here, 0))


def apply(body: Any, target: Target, value: Any) -> Any:
    """``body`` with the field at ``target`` set to ``value`` (or removed), creating what is missing on the way."""
    body = copy.deepcopy(body)
    if target.kind == "extra":
        body["zz_hostile_unknown_field"] = value
        return body
    node = body
    *parents, last = target.where
    for i, part in enumerate(parents):
        nxt = target.where[i + 1]
        if isinstance(part, int):
            if not node:
                node.append([] if isinstance(nxt, int) else {})
            node = node[0]
        else:
            if not isinstance(node.get(part), list | dict):
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
    if isinstance(last, int):
        if node:
            node[0] = value
        else:
            node.append(value)
    elif value is MISSING:
        node.pop(last, None)
    else:
        node[last] = value
    return body


def boundary(schema: Any) -> Any:
    """The largest value ``schema`` admits, where storage overflows hide: its integer ``maximum`` (2**31 when it
    declares none), a string of ``maxLength`` characters, ``maxItems`` items."""
    schema = deref(schema)
    for kind in ("integer", "number"):
        branch = _branch(schema, kind)
        if branch is not None:
            top = branch.get("maximum", schema.get("maximum"))
            return 2**31 if top is None else (int(top) if kind == "integer" else top)
    for kind, size in (("string", "maxLength"), ("array", "maxItems")):
        branch = _branch(schema, kind)
        if branch is not None and (n := branch.get(size, schema.get(size))):
            return "x" * int(n) if kind == "string" else ["x"] * int(n)
    return 2**31


def encode(doc: Any) -> bytes:
    """JSON with every non-ASCII character escaped (a lone surrogate included), exact big integers."""
    return json.dumps(doc, ensure_ascii=True, allow_nan=False).encode()


# Fields whose hostile value can only be refused: they must name an existing account, or be its password.
CREDENTIALS = {
    "post /v1/auth/login": {"email", "password"},
    "post /v1/orgs/{org_id}/members": {"email"},
    "post /v1/orgs/{org_id}/keys": {"service_account_id"},
}
# Query parameters that choose the org acted in: a hostile one names no org of the caller's.
SCOPING_QUERY = {"/v1/usage/requests": {"org_id"}, "/v1/usage/requests.csv": {"org_id"}}


# --- The platform under attack --------------------------------------------------------------------------------

@dataclass
class Sent:
    """A request as sent and what came back."""

    method: str
    url: str
    content: bytes | None
    response: httpx.Response

    def describe(self) -> str:
        body = "" if self.content is None else f" body={self.content[:200]!r}"
        if self.content is not None and len(self.content) > 200:
            body += f"... ({len(self.content)} bytes)"
        url = self.url if len(self.url) < 300 else f"{self.url[:300]}... ({len(self.url)} chars)"
        r = self.response
        return (f"{self.method} {url}{body} -> {r.status_code} {r.headers.get('content-type')} "
                f"{r.text[:300]!r}")


@dataclass
class Sweep:
    """The platform, the identities and the real ids one sweep substitutes for the parts that are not hostile."""

    platform: Platform
    home: Tenant
    other: Tenant
    chat_model: str
    admin_model: str
    key_id: str
    sa_id: str
    outsider_email: str
    logout_token: str
    original_name: str
    pool: ThreadPoolExecutor
    response_id: str = ""  # a stored Responses API response of the home org
    clients: dict[tuple[str, str | None], httpx.Client] = field(default_factory=dict)
    created_models: list[str] = field(default_factory=list)

    @property
    def org_id(self) -> str:
        return self.home.org_id

    def client(self, base: str, token: str | None) -> httpx.Client:
        if (base, token) not in self.clients:
            self.clients[(base, token)] = self.platform.client(base, token)
        return self.clients[(base, token)]

    @property
    def login_client(self) -> httpx.Client:
        """Unauthenticated, from a loopback address of its own: the sweep's failed sign-ins count against that
        address's login throttle, not against the one every other test signs in from."""
        if ("login", None) not in self.clients:
            source = f"127.{secrets.randbelow(200) + 30}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"
            self.clients[("login", None)] = httpx.Client(
                base_url=self.platform.api, timeout=30, transport=httpx.HTTPTransport(local_address=source))
        return self.clients[("login", None)]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    # the identity each operation is sent with
    def caller(self, op: Operation) -> httpx.Client:
        p = self.platform
        if op.role == "streamer":
            return self.client(p.streamer, self.home.actors["owner"].key)
        if op.path == "/metrics":
            return self.client(p.api, METRICS_TOKEN)
        if op.path == "/v1/auth/login":
            return self.login_client
        if op.path in OBSERVABILITY:
            return self.client(p.api, None)
        if op.path == "/v1/auth/logout":
            return self.client(p.api, self.logout_token)
        if op.path.startswith(("/v1/admin", "/v1/users")):
            return self.client(p.api, p.admin.token)
        return self.client(p.api, self.home.actors["owner"].token)

    @property
    def owner(self) -> httpx.Client:
        return self.client(self.platform.api, self.home.actors["owner"].token)

    @property
    def admin(self) -> httpx.Client:
        return self.client(self.platform.api, self.platform.admin.token)

    # the real, non-hostile parts of a request
    def path_values(self, op: Operation) -> dict[str, str]:
        return {
            "org_id": self.other.org_id if "/model-access/" in op.path else self.org_id,
            "key_id": self.key_id,
            "user_id": self.sa_id if "/service-accounts/" in op.path else self.home.actors["member"].user_id,
            "name": self.admin_model,
            "model": self.chat_model,
            "response_id": self.response_id,
        }

    def query(self, op: Operation) -> list[tuple[str, str]]:
        return [("org_id", self.org_id)] if op.path in SCOPING_QUERY else []

    def deployment(self) -> dict[str, Any]:
        return {"name": "fake", "upstream_model": "fake", "base_url": self.platform.upstream.base_url}

    def baseline(self, op: Operation) -> dict[str, Any] | None:
        """A body the operation would accept, or None when it takes none."""
        if op.body_schema is None:
            return None
        key = f"{op.method} {op.path}"
        bodies: dict[str, Callable[[], dict[str, Any]]] = {
            "put /v1/admin/model-access/{org_id}": lambda: {"models": None},
            "post /v1/admin/prices": lambda: {"model": f"sec-hostile/{uuid.uuid4().hex[:12]}", "input_per_mtok": "1",
                                              "output_per_mtok": "2"},
            "post /v1/admin/models": lambda: {"name": f"sec-hostile/{uuid.uuid4().hex[:12]}", "owned_by": "sec",
                                              "capabilities": ["chat"], "deployments": [self.deployment()]},
            "put /v1/admin/models/{name}": lambda: {"owned_by": "sec", "capabilities": ["chat"],
                                                    "deployments": [self.deployment()]},
            "post /v1/admin/users": lambda: {"email": f"hostile-{uuid.uuid4().hex[:12]}@example.com",
                                             "password": PASSWORD, "name": "n", "platform_admin": False},
            "post /v1/auth/login": lambda: {"email": self.outsider_email, "password": PASSWORD},
            "post /v1/chat/completions": lambda: {"model": self.chat_model,
                                                  "messages": [{"role": "user", "content": "hi"}]},
            "post /v1/completions": lambda: {"model": self.chat_model, "prompt": "hi"},
            "post /v1/embeddings": lambda: {"model": self.chat_model, "input": "hi"},
            "post /v1/responses": lambda: {"model": self.chat_model, "input": "hi"},
            "post /v1/messages": lambda: {"model": self.chat_model, "max_tokens": 16,
                                          "messages": [{"role": "user", "content": "hi"}]},
            "post /v1/messages/count_tokens": lambda: {"model": self.chat_model,
                                                       "messages": [{"role": "user", "content": "hi"}]},
            "post /v1/orgs": lambda: {"name": "sec-hostile"},
            "patch /v1/orgs/{org_id}": lambda: {"name": self.original_name},
            "post /v1/orgs/{org_id}/keys": lambda: {"name": "sec-hostile", "scopes": ["inference"]},
            "post /v1/orgs/{org_id}/keys/{key_id}/rotate": lambda: {"grace_seconds": 60},
            "post /v1/orgs/{org_id}/members": lambda: {"email": self.outsider_email, "role": "viewer"},
            "patch /v1/orgs/{org_id}/members/{user_id}": lambda: {"role": "member"},
            "post /v1/orgs/{org_id}/service-accounts": lambda: {"name": "sec-hostile", "role": "viewer"},
            "put /v1/orgs/{org_id}/usage-policy": lambda: {"redis_failure_mode": "closed"},
        }
        if key not in bodies:
            raise AssertionError(f"no baseline body for {op.id}: add one to Sweep.baseline")
        body = bodies[key]()
        assert conforms(body, op.body_schema), f"the baseline body of {op.id} does not conform to its schema"
        return body

    def targets(self, op: Operation) -> list[Target]:
        out = [Target("path", (p["name"],)) for p in op.parameters("path")]
        out += [Target("query", (p["name"],)) for p in op.parameters("query")]
        if op.body_schema is not None:
            out += [*_field_targets(op.body_schema, self.baseline(op), ()), Target("extra"), Target("body")]
        if not out:  # nothing declared: a hostile query string the operation does not expect
            out.append(Target("query", ("x_hostile",)))
        return out

    # sending
    def send(self, op: Operation, target: Target, hostile: V) -> tuple[Sent, bool]:
        """Send ``op`` with ``hostile`` at ``target``; also say whether the contract makes it a refusal."""
        values: dict[str, str] = self.path_values(op)
        query = self.query(op)
        body = self.baseline(op)
        content: bytes | None = None
        must_refuse = False
        if target.kind == "path":
            name = target.where[0]
            values[name] = hostile.value
            # An empty segment addresses a neighbouring route (GET /v1/orgs/ lists orgs): not a refusal.
            must_refuse = hostile.value != ""
        elif target.kind == "query":
            name = target.where[0]
            spec = next((p for p in op.parameters("query") if p["name"] == name), {"schema": {}})
            query = [q for q in query if q[0] != name]
            raw = hostile.value if isinstance(hostile.value, list) else [hostile.value]
            query += [(name, v) for v in raw]
            if name in SCOPING_QUERY.get(op.path, ()):
                must_refuse = True
            elif isinstance(hostile.value, str) and hostile.value != "":
                must_refuse = not query_conforms(hostile.value, spec.get("schema", {}))
        elif target.kind == "body":
            content = hostile.value if isinstance(hostile.value, bytes) else encode(hostile.value)
            must_refuse = isinstance(hostile.value, bytes) or not conforms(hostile.value, op.body_schema)
        else:
            value = hostile.value
            if value is AT_MAXIMUM:
                value = boundary(schema_at(op.body_schema, target.where) if target.kind == "field" else None)
            body = apply(body, target, value)
            credential = target.kind != "extra" and target.where[0] in CREDENTIALS.get(f"{op.method} {op.path}",
                                                                                       ())
            must_refuse = (credential and value is not None) or not conforms(body, op.body_schema)
        if content is None and body is not None:
            content = encode(body)
        hostile_param = target.where[0] if target.kind == "path" else None

        def segment(m: re.Match[str]) -> str:
            if m.group(1) not in values:
                raise AssertionError(f"no real value for the path parameter {m.group(1)!r} of {op.id}: add one to "
                                     "Sweep.path_values")
            # A real model name keeps its slashes; a hostile value is one segment, its slashes encoded.
            return quote(str(values[m.group(1)]), safe="" if m.group(1) == hostile_param else "/")

        url = re.sub(r"\{(\w+)(?::\w+)?\}", segment, op.path)
        headers = {"content-type": "application/json"} if content is not None else {}
        try:
            r = self.caller(op).request(op.method.upper(), url, params=query or None, content=content,
                                        headers=headers)
        except httpx.HTTPError as exc:  # a connection dropped mid-answer (a stream that failed) is a finding too
            shown = url if len(url) < 300 else f"{url[:300]}... ({len(url)} chars)"
            raise AssertionError(f"no complete HTTP answer ({type(exc).__name__}: {exc}): {op.method.upper()} "
                                 f"{shown} query={str(query)[:200]} body={(content or b'')[:200]!r}") from None
        if r.status_code == 201 and op.path == "/v1/admin/models" and "name" in r.json():
            # A model a hostile-but-admissible name created ("../../../etc/passwd" is a valid model name) would
            # make that name a real id for the sweeps of the model routes: it goes at once.
            gone = self.admin.delete(f"/v1/admin/models/{quote(r.json()['name'], safe='')}")
            if gone.status_code != 204:
                self.created_models.append(r.json()["name"])
        return Sent(op.method.upper(), str(r.request.url), content, r), must_refuse

    # state, read back through the API
    def _all(self, c: httpx.Client, path: str, **params: str) -> list[Any]:
        out: list[Any] = []
        cursor = None
        while True:
            r = c.get(path, params={**params, "limit": "100", **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            page = r.json()
            out += page["data"]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return out

    def _one(self, c: httpx.Client, path: str) -> Any:
        r = c.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()

    def snapshot(self) -> dict[str, Any]:
        """What a refused request must leave as it was (usage stamps and derived key status left out)."""
        org = f"/v1/orgs/{self.org_id}"
        jobs: dict[str, Callable[[], Any]] = {
            "org": lambda: self._one(self.owner, org),
            "members": lambda: self._all(self.owner, f"{org}/members"),
            "keys": lambda: [{k: v for k, v in key.items() if k not in ("last_used_at", "status")}
                             for key in self._all(self.owner, f"{org}/keys", include_revoked="true")],
            "service_accounts": lambda: self._all(self.owner, f"{org}/service-accounts"),
            "usage_policy": lambda: self._one(self.owner, f"{org}/usage-policy"),
            "platform_orgs": lambda: self._all(self.admin, "/v1/admin/orgs"),
            "platform_users": lambda: self._all(self.admin, "/v1/admin/users"),
            "platform_models": lambda: self._one(self.admin, "/v1/admin/models"),
            "platform_model_access": lambda: self._one(self.admin, "/v1/admin/model-access"),
        }
        futures = {name: self.pool.submit(job) for name, job in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    parts = []
    for name in before:
        if before[name] != after[name]:
            parts.append(f"{name}: {json.dumps(before[name])[:300]} -> {json.dumps(after[name])[:300]}")
    return "; ".join(parts)


def answer_problems(sent: Sent, must_refuse: bool) -> list[str]:
    """What is wrong with an answer: a 5xx, an error that is not problem+json with its own status, hostile input
    accepted where the contract demands a refusal."""
    r = sent.response
    out = []
    if r.status_code >= 500:
        out.append("server error")
    if r.status_code >= 400:
        try:
            doc = r.json() if r.headers.get("content-type", "").startswith("application/problem+json") else None
        except ValueError:
            doc = None
        if doc is None:
            out.append("the error is not a problem+json document")
        elif not (isinstance(doc, dict) and isinstance(doc.get("status"), int) and doc["status"] == r.status_code):
            out.append("the problem's status differs from the HTTP status")
    if must_refuse and not 400 <= r.status_code < 500:
        out.append("hostile input was not refused with a 4xx")
    return out


def schema_at(schema: Any, where: tuple[Any, ...]) -> Any:
    """The schema of the field at ``where`` in a body of ``schema`` (None when it declares none)."""
    sub = schema
    for part in where:
        branch = _branch(sub, "array" if isinstance(part, int) else "object")
        if branch is None:
            return None
        sub = branch.get("items") if isinstance(part, int) else branch.get("properties", {}).get(part)
        if sub is None:
            return None
    return sub


def _first(targets: list[Target], kind: str, want: str | None = None, schema: Any = None) -> Target | None:
    for t in targets:
        if t.kind == kind and (want is None or _branch(schema_at(schema, t.where), want) is not None):
            return t
    return None


def fixed_examples(sweep: Sweep, op: Operation) -> list[tuple[Target, V]]:
    """The examples every operation gets, whatever hypothesis draws: the hostile inputs that matter most."""
    targets = sweep.targets(op)
    by_name = {v.name: v for v in JSON_VALUES}
    out: list[tuple[Target, V]] = []
    if op.body_schema is not None:
        out += [(Target("body"), v) for v in BODY_VALUES[:4]]
        if (t := _first(targets, "field", "string", op.body_schema)) is not None:
            out.append((t, by_name["NUL"]))
        if (t := _first(targets, "field", "integer", op.body_schema)) is not None:
            out.append((t, by_name["2**64"]))
        # Every integer field at its declared maximum: what the schema admits, the storage must hold.
        out += [(t, by_name["declared-maximum"]) for t in targets
                if t.kind == "field" and _branch(schema_at(op.body_schema, t.where), "integer") is not None]
    for kind in ("path", "query"):
        if (t := _first(targets, kind)) is not None:
            out.append((t, next(v for v in URL_VALUES if v.name == "NUL")))
    return out


# --- Fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep(platform: Platform, tenants: tuple[Tenant, Tenant]) -> Iterator[Sweep]:
    """Real ids to substitute: two models served by the fake upstream, a key, a service account, an outsider."""
    home, other = tenants
    tag = uuid.uuid4().hex[:8]
    pool = ThreadPoolExecutor(max_workers=SNAPSHOT_READS, thread_name_prefix="sec-snapshot")
    # Start every thread now, so they belong to this fixture (the leak check) rather than to the first test.
    barrier = threading.Barrier(SNAPSHOT_READS)
    for f in [pool.submit(barrier.wait) for _ in range(SNAPSHOT_READS)]:
        f.result(timeout=30)
    with platform.client(token=platform.admin.token) as admin, \
            platform.client(token=home.actors["owner"].token) as owner:
        models = [f"sec-hostile/{tag}-chat", f"sec-hostile/{tag}-admin"]
        for name in models:
            r = admin.post("/v1/admin/models", json={
                "name": name, "owned_by": "sec", "capabilities": ["chat", "completions", "embeddings"],
                "deployments": [{"name": "fake", "upstream_model": "fake", "base_url": platform.upstream.base_url}]})
            assert r.status_code == 201, r.text
        r = owner.post(f"/v1/orgs/{home.org_id}/keys", json={"name": "sweep-target", "scopes": ["inference"]})
        assert r.status_code == 201, r.text
        key_id = r.json()["api_key"]["id"]
        r = owner.post(f"/v1/orgs/{home.org_id}/service-accounts", json={"name": "sweep-target", "role": "viewer"})
        assert r.status_code == 201, r.text
        sa_id = r.json()["id"]
        outsider = f"outsider-{tag}@example.com"
        r = admin.post("/v1/admin/users", json={"email": outsider, "password": PASSWORD})
        assert r.status_code == 201, r.text
        original_name = owner.get(f"/v1/orgs/{home.org_id}").json()["name"]
        with platform.client(platform.streamer, home.actors["owner"].key) as streamer:
            r = streamer.post("/v1/responses", json={"model": models[0], "input": "hi"})
            assert r.status_code == 200, r.text
            response_id = r.json()["id"]
        s = Sweep(platform=platform, home=home, other=other, chat_model=models[0], admin_model=models[1],
                  key_id=key_id, sa_id=sa_id, outsider_email=outsider, logout_token=platform.login(outsider),
                  original_name=original_name, pool=pool, created_models=list(models), response_id=response_id)
        try:
            yield s
        finally:
            s.close()
            pool.shutdown(wait=True)
            # Undo what hostile-but-admissible writes did to what other tests share.
            owner.patch(f"/v1/orgs/{home.org_id}", json={"name": original_name})
            owner.put(f"/v1/orgs/{home.org_id}/usage-policy", json={})
            admin.delete(f"/v1/admin/model-access/{other.org_id}")
            for name in s.created_models:
                admin.delete(f"/v1/admin/models/{quote(name, safe='')}")


# --- Tests ------------------------------------------------------------------------------------------------------

class TestEveryOperationRefusesHostileInput:
    """Every operation of the contract, attacked one part at a time: 4xx problem+json, never 5xx, no state change."""

    @pytest.mark.parametrize("op", SWEPT, ids=[op.id for op in SWEPT])
    def test_hostile_requests(self, sweep: Sweep, op: Operation) -> None:
        targets = sweep.targets(op)
        state: dict[str, Any] = {"before": sweep.snapshot()} if op.writes else {}

        def attack(target: Target, hostile: V) -> None:
            try:
                sent, must_refuse = sweep.send(op, target, hostile)
            except AssertionError:
                if op.writes:  # whatever the broken request did, the next one is compared with what is now
                    state["before"] = sweep.snapshot()
                raise
            problems = answer_problems(sent, must_refuse)
            if op.writes:
                after = sweep.snapshot()
                # Refused, or failed: a 5xx must not have written half of its change either.
                if sent.response.status_code >= 400 and (diff := _diff(state["before"], after)):
                    problems.append(f"a refused request changed state ({diff})")
                state["before"] = after  # a served write is the new baseline
            assert not problems, f"{'; '.join(problems)}: {sent.describe()}"

        run: Any = given(st.sampled_from(targets).flatmap(
            lambda t: st.tuples(st.just(t), st.sampled_from(t.values()))))(lambda pair: attack(*pair))
        for target, hostile in fixed_examples(sweep, op):
            run = example((target, hostile))(run)
        sweep_settings(WRITE_EXAMPLES if op.writes else READ_EXAMPLES)(run)()


class TestObservabilityRoutesSurviveHostileQueries:
    """``/health``, ``/ready`` and ``/metrics`` take no input; a hostile query string there is never a 5xx."""

    @pytest.mark.parametrize("op", OBSERVED, ids=[op.id for op in OBSERVED])
    def test_hostile_query_strings(self, sweep: Sweep, op: Operation) -> None:
        def attack(hostile: V) -> None:
            sent, _ = sweep.send(op, Target("query", ("x_hostile",)), hostile)
            assert sent.response.status_code < 500, f"server error: {sent.describe()}"

        run: Any = given(st.sampled_from(URL_VALUES + REPEATED))(attack)
        sweep_settings(READ_EXAMPLES)(run)()


class TestTheSweepCoversTheContract:
    """The sweep is generated from the document: every operation in it is attacked, and none twice."""

    def test_every_operation_is_swept_once(self) -> None:
        ids = [op.id for op in SWEPT + OBSERVED]
        assert len(ids) == len(set(ids)) == len(OPERATIONS)
        assert len(OPERATIONS) >= 40, "the contract lost operations: is contracts/openapi.yaml the right file?"
