"""JSON logs on stdout: one object a line, with request, trace and span ids, and no secrets.

Secrets are scrubbed twice: fields whose name says secret (password, token, authorization, api_key, …)
are replaced wholesale, and any text that looks like a bearer token, an ``sk-`` key or credentials in a
URL is masked wherever it appears in the message, the arguments or a traceback.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from typing import Any

import msgspec
from opentelemetry import trace

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("aiaas_request_id", default=None)

_SECRET_FIELD = re.compile(r"pass(word)?|secret|token|authorization|api[_-]?key|cookie|credential", re.I)
_SECRET_TEXT = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), "sk-[REDACTED]"),
    (re.compile(r"(?i)\b(session|token|password|api_key|apikey)=([^\s&'\"]+)"), r"\1=[REDACTED]"),
    (re.compile(r"(\w+://[^:/\s@]*:)[^@\s/]+@"), r"\1[REDACTED]@"),
]

_STD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName", "color_message"}
)


def redact_text(text: str) -> str:
    """Mask anything in ``text`` that looks like a credential."""
    for pattern, repl in _SECRET_TEXT:
        text = pattern.sub(repl, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    """Mask a structured field when its name says it holds a secret, or its text looks like one."""
    if _SECRET_FIELD.search(key):
        return "[REDACTED]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object with ids and any ``extra=`` fields, secrets masked."""

    def __init__(self, service: str, role: str) -> None:
        super().__init__()
        self._service = service
        self._role = role
        self._encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
            "service": self._service,
            "role": self._role,
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            out["trace_id"] = format(ctx.trace_id, "032x")
            out["span_id"] = format(ctx.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = redact_value(key, value)
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        return self._encoder.encode(out).decode()


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(*, level: str, json_logs: bool, service: str, role: str) -> None:
    """Route every logger (ours, uvicorn's, aio-pika's) to one stdout handler."""
    handler = logging.StreamHandler(sys.stdout)
    if json_logs:
        handler.setFormatter(JsonFormatter(service, role))
    else:
        handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Access logs come from our own middleware (with ids); uvicorn's would duplicate them.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("aiormq", "aio_pika", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
