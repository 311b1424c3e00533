"""Decoding and validating inference request bodies (once, with msgspec) into what the gateway needs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from aiaas.inference.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from aiaas.inference.service.tokens import estimate_tokens
from aiaas.kernel.errors import TOO_DEEP_DETAIL, AppError, BadRequest

ENDPOINTS = ("chat.completions", "completions", "embeddings")
CAPABILITY = {"chat.completions": "chat", "completions": "completions", "embeddings": "embeddings"}

_decoders = {
    "chat.completions": msgspec.json.Decoder(ChatCompletionRequest),
    "completions": msgspec.json.Decoder(CompletionRequest),
    "embeddings": msgspec.json.Decoder(EmbeddingRequest),
}
_raw_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_PROMPT_FIELD = {"chat.completions": "messages", "completions": "prompt", "embeddings": "input"}
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"missing required field `(?P<field>[^`]+)`")
_USAGE_ON = msgspec.Raw(b'{"include_usage":true}')
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Native:
    """A request in a client wire format a deployment may speak itself (``Deployment.native_apis``): its
    body, passed through untranslated to such a deployment, and the client headers that go with it."""

    api: str  # "responses" | "messages"
    raw: dict[str, msgspec.Raw]
    headers: dict[str, str] | None = None

    def upstream_body(self, upstream_model: str) -> bytes:
        """The body for one deployment: the client's own with ``model`` replaced."""
        return msgspec.json.encode({**self.raw, "model": msgspec.Raw(msgspec.json.encode(upstream_model))})


@dataclass(slots=True)
class Parsed:
    """A validated request: what the gateway reads, and the raw fields to forward."""

    endpoint: str
    model: str
    stream: bool
    wants_usage: bool
    max_tokens: int | None
    estimated_prompt_tokens: int
    raw: dict[str, msgspec.Raw]
    choices: int = 1  # completions the upstream generates per request (``n``, or ``best_of``)
    native: Native | None = None  # the untranslated request, for a deployment that speaks its format

    def upstream_body(self, upstream_model: str) -> bytes:
        """The body for one deployment: the client's fields with ``model`` replaced (and usage on for streams)."""
        raw = self.raw
        raw["model"] = msgspec.Raw(msgspec.json.encode(upstream_model))
        return msgspec.json.encode(raw)


def param_of(message: str) -> str | None:
    """The failing field of a msgspec validation message, as OpenAI names it (``messages[0].role``)."""
    field = None
    missing = _MISSING_FIELD.search(message)
    at = _AT.search(message)
    base = at.group("path") if at else ""
    if missing:
        field = f"{base}.{missing.group('field')}" if base else missing.group("field")
    elif base:
        field = base
    return field or None


def _clean(message: str) -> str:
    return _AT.sub("", message)


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes, *, invalid: Callable[[str], AppError]) -> T:
    """Decode a request body: 400 for an empty body, JSON that does not parse or nests deeper than the
    interpreter allows, and ``invalid(msgspec's message)`` when it does not validate."""
    if not body:
        raise BadRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"We could not parse the JSON body of your request: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's answer to JSON nested deeper than the interpreter allows
        raise BadRequest(TOO_DEEP_DETAIL, code="json_too_deep") from None


def parse(endpoint: str, body: bytes) -> Parsed:
    """Validate ``body`` for ``endpoint``; raise ``BadRequest`` (400) naming the failing field."""
    if not body:
        raise BadRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        req = _decoders[endpoint].decode(body)
        raw = _raw_decoder.decode(body)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        param = param_of(msg)
        detail = f"Invalid value for '{param}': {_clean(msg)}" if param else f"Invalid request body: {_clean(msg)}"
        raise BadRequest(detail, param=param) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"We could not parse the JSON body of your request: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's answer to JSON nested deeper than the interpreter allows
        raise BadRequest(TOO_DEEP_DETAIL, code="json_too_deep") from None
    stream = bool(getattr(req, "stream", False))
    wants_usage = False
    if stream:
        opts = req.stream_options  # type: ignore[union-attr]
        wants_usage = bool(opts and opts.include_usage)
        if "stream_options" in raw and not wants_usage:
            merged = msgspec.json.decode(raw["stream_options"]) or {}
            merged["include_usage"] = True
            raw["stream_options"] = msgspec.Raw(msgspec.json.encode(merged))
        elif not wants_usage:
            raw["stream_options"] = _USAGE_ON
    elif "stream_options" in raw:
        raise BadRequest("stream_options is only allowed when stream is true", param="stream_options")
    if isinstance(req, ChatCompletionRequest):
        _check_messages(req)
    max_tokens = getattr(req, "max_completion_tokens", None) or getattr(req, "max_tokens", None)
    choices = max(getattr(req, "n", None) or 1, getattr(req, "best_of", None) or 1)
    prompt = raw.get(_PROMPT_FIELD[endpoint])
    return Parsed(endpoint=endpoint, model=req.model, stream=stream, wants_usage=wants_usage,
                  max_tokens=max_tokens, estimated_prompt_tokens=estimate_tokens(bytes(prompt) if prompt else b""),
                  raw=raw, choices=choices)


# Roles whose message must carry content; an assistant's may be null when it holds tool calls.
_CONTENT_REQUIRED = frozenset({"system", "developer", "user", "tool", "function"})


def _check_messages(req: ChatCompletionRequest) -> None:
    for i, m in enumerate(req.messages):
        if m.content is None and m.role in _CONTENT_REQUIRED:
            raise BadRequest(f"Invalid value for 'messages[{i}].content': a {m.role} message needs content.",
                             param=f"messages[{i}].content")
