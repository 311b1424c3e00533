"""``aiaas openapi``: one OpenAPI 3.1 document for both HTTP roles, written to ``contracts/openapi.yaml``.

``--check`` compares the committed file with what the code generates and fails on any difference, so
an endpoint change cannot land without its contract.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from aiaas.kernel.config import Settings
from aiaas.kernel.web import API_VERSION

# libyaml's parser when PyYAML has it: the contract is ~300 KB, ten times faster to read.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def build_document(settings: Settings) -> dict[str, Any]:
    """Merge the api and streamer apps' documents; each operation is tagged with its role's server."""
    from aiaas.entrypoints import api, streamer
    from aiaas.entrypoints.bootstrap import Container

    docs = {
        "api": api.create_app(Container(settings, role="api")).openapi_schema.to_schema(),
        "streamer": streamer.create_litestar(Container(settings, role="streamer")).openapi_schema.to_schema(),
    }
    _add_inference_operations(docs["streamer"])
    merged: dict[str, Any] = {
        "openapi": docs["api"]["openapi"],
        "info": {
            "title": "aiaas",
            "version": API_VERSION,
            "description": (
                "OpenAI-compatible inference (role `streamer`, default port 8001) and the management API "
                "(role `api`, default port 8000). Every error is application/problem+json (RFC 7807); "
                "on the inference endpoints it also carries OpenAI's `error` object, and on the Anthropic-compatible "
                "endpoints (`/v1/messages`) Anthropic's error shape."
            ),
        },
        "servers": [
            {"url": "http://localhost:8000", "description": "api role"},
            {"url": "http://localhost:8001", "description": "streamer role"},
        ],
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {}},
        "security": docs["api"].get("security", []),
    }
    for role, doc in docs.items():
        for path, item in sorted(doc.get("paths", {}).items()):
            if path in merged["paths"]:
                # Observability routes exist on every role; describe them once.
                continue
            if role == "streamer" and not path.startswith("/v1/"):
                continue
            for op in item.values():
                if isinstance(op, dict) and "operationId" in op:
                    op["x-aiaas-role"] = role if path.startswith("/v1/") else "every role"
            merged["paths"][path] = item
        comps = doc.get("components", {})
        merged["components"]["schemas"].update(comps.get("schemas", {}))
        merged["components"]["securitySchemes"].update(comps.get("securitySchemes", {}))
    _describe_inference_bodies(merged)
    _document_errors(merged)
    _closed_objects(merged)
    merged["paths"] = dict(sorted(merged["paths"].items()))
    merged["components"]["schemas"] = dict(sorted(merged["components"]["schemas"].items()))
    return merged


_INFERENCE_HEADERS = {
    "x-request-id": "The request's id (the client's own when it sent a valid one)",
    "openai-processing-ms": "Time the gateway took until the response started",
    "x-ratelimit-limit-requests": "The tightest requests-per-minute limit that applies",
    "x-ratelimit-remaining-requests": "Requests left in the current window",
    "x-ratelimit-reset-requests": "Time until the requests window resets (`20ms`, `1s`, `6m0s`)",
    "x-ratelimit-limit-tokens": "The tightest tokens-per-minute limit that applies",
    "x-ratelimit-remaining-tokens": "Tokens left in the current window",
    "x-ratelimit-reset-tokens": "Time until the tokens window resets",
}
_INFERENCE_ERRORS = {
    "405": "Only POST is served on this path",
    "413": "The request body is over `AIAAS_MAX_REQUEST_BODY_BYTES`",
    "400": "Invalid request (`invalid_request_error`, `param` names the field)",
    "401": "Missing, invalid, expired or revoked API key (`authentication_error`)",
    "403": "The key's role, scope or model allow-list does not permit it (`permission_error`)",
    "404": "Unknown model (`not_found_error`)",
    "429": "Rate limit (`rate_limit_exceeded`) or quota (`insufficient_quota`); see `Retry-After`",
    "503": "Overloaded local model or unavailable limiter (`server_error`); see `Retry-After`",
}


def _add_inference_operations(doc: dict[str, Any]) -> None:
    """The inference POST operations, served in front of Litestar (``inference.asgi.ROUTES``)."""
    from aiaas.inference.asgi import ROUTES

    for path, route in ROUTES.items():
        doc.setdefault("paths", {})[path] = {"post": {
            "tags": ["inference"], "summary": route.summary, "description": route.description,
            "operationId": route.operation_id, "deprecated": False}}


_ANTHROPIC_ERRORS = {
    "405": "Only POST is served on this path",
    "400": "Invalid request (`invalid_request_error`; `param` names the field, `detail` says why)",
    "401": "Missing, invalid, expired or revoked API key (`authentication_error`)",
    "403": "The key's role, scope or model allow-list does not permit it (`permission_error`)",
    "404": "Unknown model (`not_found_error`)",
    "413": "The request body is over `AIAAS_MAX_REQUEST_BODY_BYTES` (`request_too_large`)",
    "429": "Rate limit or quota (`rate_limit_error`); see `Retry-After`",
    "503": "Overloaded local model or unavailable limiter (`overloaded_error`); see `Retry-After`",
}
# Anthropic's error shape, still a problem document: ``type`` is "error" and the problem type URI moves to
# ``problem_type`` (see kernel.errors.encode_anthropic_problem).
_ANTHROPIC_PROBLEM = {
    "type": "object", "required": ["type", "error", "title", "status", "detail", "instance", "problem_type"],
    "properties": {
        "type": {"type": "string", "const": "error"},
        "error": {"type": "object", "required": ["type", "message"], "properties": {
            "type": {"type": "string"}, "message": {"type": "string"}}},
        "problem_type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"}, "instance": {"type": "string"},
        "request_id": {"type": "string"}, "code": {"type": "string"},
    },
}
_BODY_TEXT = {
    "/v1/responses": "OpenAI's Responses request body, translated to a chat completion (or passed through to a "
                     "deployment that speaks the Responses API).",
    "/v1/messages": "Anthropic's request body, translated to a chat completion (or passed through to a "
                    "deployment that speaks Anthropic's API).",
    "/v1/messages/count_tokens": "Anthropic's token-counting body (a Messages request without `max_tokens`).",
}
# What each inference operation answers: (200 description, its JSON schema, its event stream or None).
_INFERENCE_ANSWERS: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "/v1/chat/completions": ("OpenAI's response object, unchanged from the upstream", {"type": "object"},
                             "With `stream: true`: `data: {chunk}` events, then `data: [DONE]`"),
    "/v1/completions": ("OpenAI's response object, unchanged from the upstream", {"type": "object"},
                        "With `stream: true`: `data: {chunk}` events, then `data: [DONE]`"),
    "/v1/embeddings": ("OpenAI's response object, unchanged from the upstream", {"type": "object"}, None),
    "/v1/responses": ("OpenAI's Response object (`object: response`)", {"type": "object"},
                      "With `stream: true`: OpenAI's Responses events (`event: response.created` ... "
                      "`response.completed`), each with its `sequence_number`"),
    "/v1/messages": ("Anthropic's Message object (`type: message`)", {"type": "object"},
                     "With `stream: true`: Anthropic's events (`message_start` ... `message_stop`)"),
    "/v1/messages/count_tokens": ("The estimated input tokens", {
        "type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}},
        None),
}


def _describe_inference_bodies(doc: dict[str, Any]) -> None:
    """Describe the inference request bodies, responses and errors.

    The endpoints decode bodies themselves (once, with msgspec) so unknown fields pass through to the
    upstream; the framework therefore cannot see their types, and the contract takes them from the same
    Structs the decoder uses.
    """
    import msgspec

    from aiaas.inference.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
    from aiaas.inference.service.wire.messages import CountTokensRequest, MessagesRequest
    from aiaas.inference.service.wire.responses import ResponsesRequest
    from aiaas.kernel.errors import Problem

    bodies = {"/v1/chat/completions": ChatCompletionRequest, "/v1/completions": CompletionRequest,
              "/v1/embeddings": EmbeddingRequest, "/v1/responses": ResponsesRequest,
              "/v1/messages": MessagesRequest, "/v1/messages/count_tokens": CountTokensRequest}
    schemas, components = msgspec.json.schema_components(
        [*bodies.values(), Problem], ref_template="#/components/schemas/{name}")
    doc["components"]["schemas"].update(components)
    doc["components"]["schemas"]["AnthropicProblem"] = _ANTHROPIC_PROBLEM
    problem_ref = schemas[-1]
    for (path, _struct), schema in zip(bodies.items(), schemas, strict=False):
        op = doc["paths"].get(path, {}).get("post")
        if op is None:
            continue
        anthropic = path.startswith("/v1/messages")
        op["requestBody"] = {
            "required": True,
            "description": _BODY_TEXT.get(path, "OpenAI's request body; fields the gateway does not interpret "
                                                "are passed through."),
            "content": {"application/json": {"schema": schema}},
        }
        about, answer, events = _INFERENCE_ANSWERS[path]
        ok = op.setdefault("responses", {}).setdefault("200", {"description": "OK"})
        ok["description"] = about
        ok["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                         for name, text in _INFERENCE_HEADERS.items()}
        ok.setdefault("content", {})["application/json"] = {"schema": answer}
        if events is not None:
            ok["content"]["text/event-stream"] = {"schema": {"type": "string", "description": events}}
        errors = _ANTHROPIC_ERRORS if anthropic else _INFERENCE_ERRORS
        error_schema = {"$ref": "#/components/schemas/AnthropicProblem"} if anthropic else problem_ref
        for status, text in errors.items():
            op["responses"].setdefault(status, {"description": text, "content": {
                "application/problem+json": {"schema": dict(error_schema)}}})
        if anthropic:
            op["security"] = [{"ApiKeyHeader": []}, {"bearer": []}]
            doc["components"]["securitySchemes"]["ApiKeyHeader"] = {
                "type": "apiKey", "in": "header", "name": "x-api-key",
                "description": "An API key, as Anthropic's clients send it"}


def _document_errors(doc: dict[str, Any]) -> None:
    """Every error a ``/v1`` operation can answer, as it is sent: a problem document.

    The framework documents its own 400 body (``status_code``, ``detail``, ``extra``), which the problem
    handlers never send; that is replaced, and every operation gets a ``default`` answer (any status it
    does not list: 401, 403, 404, 409, 422, 429, 503, ...), so a client and a contract test can hold each
    answer to its schema.
    """
    problem = {"$ref": "#/components/schemas/Problem"}
    anthropic = {"$ref": "#/components/schemas/AnthropicProblem"}
    for path, item in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "patch") or not isinstance(op, dict):
                continue
            schema = anthropic if path.startswith("/v1/messages") else problem
            responses = op.setdefault("responses", {})
            framework_400 = responses.get("400", {}).get("content", {}).get("application/json")
            if framework_400 is not None:
                responses["400"] = {"description": "Invalid request: a problem document naming the field",
                                    "content": {"application/problem+json": {"schema": dict(schema)}}}
            responses.setdefault("default", {
                "description": "Any other error (401, 403, 404, 409, 422, 429, 503, ...): a problem document",
                "content": {"application/problem+json": {"schema": dict(schema)}}})


def _struct_classes() -> dict[str, type]:
    """Every msgspec Struct of the app by name (they are what the components are named after)."""
    import msgspec

    found: dict[str, type] = {}
    todo = list(msgspec.Struct.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("aiaas."):
            found.setdefault(cls.__name__, cls)
    return found


def _closed_objects(doc: dict[str, Any]) -> None:
    """A body Struct that refuses unknown fields (``forbid_unknown_fields``) says so in the contract
    (``additionalProperties: false``), so a client, and a contract test generating requests, knows an
    extra field is a 422, not ignored."""
    structs = _struct_classes()
    for name, schema in doc["components"]["schemas"].items():
        cls = structs.get(name)
        config = getattr(cls, "__struct_config__", None)
        if config is not None and config.forbid_unknown_fields and schema.get("type") == "object":
            schema["additionalProperties"] = False


def render(settings: Settings) -> str:
    """The document as YAML text, keys in a stable order."""
    return yaml.safe_dump(build_document(settings), sort_keys=False, allow_unicode=True, width=110)


def check_or_write(settings: Settings, output: Path, *, check: bool) -> int:
    """Write the document, or with ``check`` compare it with ``output`` and print a diff."""
    text = render(settings)
    if not check:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        print(f"aiaas: wrote {output}")
        return 0
    current = output.read_text() if output.exists() else ""
    if current == text:
        print(f"aiaas: {output} matches the app")
        return 0
    diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(output), "generated", lineterm="")
    print("\n".join(list(diff)[:200]), file=sys.stderr)
    print(f"aiaas: {output} is out of date; run `aiaas openapi` and commit it", file=sys.stderr)
    return 1


def report_breaking(settings: Settings, earlier: Path, accepted: Path = Path("contracts/breaking-accepted.txt")) -> int:
    """Compare the app's contract with an earlier one; print each breaking change and exit 1 if any.

    A deliberate break (a security fix that refuses what used to be accepted) is tolerated when its line
    is in ``accepted``, each followed by ``  # why``; docs/api-versioning.md says when that is allowed.
    """
    from aiaas.entrypoints.contract_diff import breaking_changes

    allowed = set()
    if accepted.exists():
        allowed = {line.split("  #", 1)[0].strip() for line in accepted.read_text().splitlines()
                   if line.strip() and not line.startswith("#")}
    before = yaml.load(earlier.read_text(), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    changes = [c for c in breaking_changes(before, build_document(settings))
               if c not in allowed]
    for line in changes:
        print(f"breaking: {line}", file=sys.stderr)
    if changes:
        print(f"aiaas: {len(changes)} breaking change(s) to /v1 against {earlier}; see docs/api-versioning.md",
              file=sys.stderr)
        return 1
    print(f"aiaas: no breaking change to /v1 against {earlier}")
    return 0
