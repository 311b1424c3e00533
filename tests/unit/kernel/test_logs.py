"""JSON log lines carry ids and never carry secrets."""

from __future__ import annotations

import io
import json
import logging

from hypothesis import assume, given
from hypothesis import strategies as st

from aiaas.kernel.config import Settings
from aiaas.kernel.logs import JsonFormatter, redact_text, redact_value, request_id_var
from aiaas.kernel.tracing import setup_tracing, tracer

TOKEN_ALPHABET = st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=127)


def _log_line(msg: str, *args: object, **extra: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("aiaas", "test"))
    logger = logging.getLogger("test.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info(msg, *args, extra=extra)
    return json.loads(stream.getvalue())


class TestJsonLines:
    def test_one_object_with_ids(self) -> None:
        setup_tracing(Settings(), "test")
        token = request_id_var.set("req_abc")
        try:
            with tracer("test").start_as_current_span("s") as span:
                line = _log_line("hello %s", "world", route="/x")
                ctx = span.get_span_context()
        finally:
            request_id_var.reset(token)
        assert line["msg"] == "hello world"
        assert line["request_id"] == "req_abc"
        assert line["trace_id"] == format(ctx.trace_id, "032x")
        assert line["span_id"] == format(ctx.span_id, "016x")
        assert line["route"] == "/x"
        assert line["level"] == "INFO"


class TestRedaction:
    def test_secret_fields_replaced(self) -> None:
        line = _log_line("login", password="hunter2", api_key="sk-live-abcdef123456", authorization="Bearer x")
        assert "hunter2" not in json.dumps(line)
        assert line["password"] == line["api_key"] == line["authorization"] == "[REDACTED]"

    def test_tokens_in_messages_masked(self) -> None:
        line = _log_line("header was Authorization: Bearer %s and key %s", "abc.def-ghi", "sk-proj-1234567890")
        assert "abc.def-ghi" not in line["msg"]
        assert "sk-proj-1234567890" not in line["msg"]

    def test_url_credentials_masked(self) -> None:
        assert "pw" not in redact_text("amqp://guest:pw@rabbit:5672/")  # pragma: allowlist secret

    def test_nested_dicts(self) -> None:
        assert redact_value("body", {"token": "t", "name": "n"}) == {"token": "[REDACTED]", "name": "n"}

    @given(st.text(alphabet=TOKEN_ALPHABET, min_size=8, max_size=64))
    def test_any_bearer_token_masked(self, token: str) -> None:
        # A "token" that is part of the words around it (Hypothesis found "Authoriz") is no finding.
        assume(token not in "Authorization: Bearer [REDACTED]")
        assert token not in redact_text(f"Authorization: Bearer {token}")

    @given(st.text(alphabet=TOKEN_ALPHABET, min_size=8, max_size=64))
    def test_any_api_key_masked(self, secret: str) -> None:
        assert secret not in redact_text(f"key=sk-{secret} used")
