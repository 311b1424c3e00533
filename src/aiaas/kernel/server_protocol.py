"""uvicorn's httptools protocol, tuned: a bound on the request head, and problem+json for what the parser refuses.

uvicorn accepts a request head of any size (one of 32 MB was taken in whole) and answers a request its
parser cannot read with a ``text/plain`` 400. This subclass counts the bytes of the request line and
headers as the parser hands them over and answers ``431`` once they pass ``max_head_bytes``, before the
application sees the request; and it answers both that and a malformed request with the same
``application/problem+json`` document as every other error (OpenAI's ``error`` object included on the
streamer). Everything else is uvicorn's own code.
"""

from __future__ import annotations

from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from aiaas.kernel.errors import PROBLEM_JSON, encode_problem, problem_for

DEFAULT_MAX_HEAD_BYTES = 32 * 1024


class _HeadTooLarge(Exception):
    """Raised from a parser callback: the request head is over the bound."""


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a bounded request head and RFC 7807 errors of its own."""

    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    openai_errors: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_too_large = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.max_head_bytes:
            self._head_too_large = True
            raise _HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._head_too_large:
                self.logger.warning("Request head over %d bytes refused.", self.max_head_bytes)
                self._send_problem(431, f"The request line and headers are over {self.max_head_bytes} bytes.",
                                   slug="request-header-fields-too-large", title="Request header fields too large")
            else:
                self.logger.warning("Invalid HTTP request received.")
                self._send_problem(400, "Invalid HTTP request received.", slug="bad-request", title="Bad request")

    def send_400_response(self, msg: str) -> None:
        self._send_problem(400, msg, slug="bad-request", title="Bad request")

    def _send_problem(self, status: int, detail: str, *, slug: str, title: str) -> None:
        body = encode_problem(problem_for(status=status, detail=detail, instance="", request_id=None,
                                          type_slug=slug, title=title, openai=self.openai_errors,
                                          code="invalid_request" if self.openai_errors else None))
        status_line = STATUS_LINE.get(status) or b"HTTP/1.1 %d %s\r\n" % (status, title.encode())
        content = [status_line]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: ", PROBLEM_JSON.encode(), b"\r\n",
                        b"content-length: ", str(len(body)).encode("ascii"), b"\r\n",
                        b"connection: close\r\n\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()


def protocol_class(*, max_head_bytes: int, openai_errors: bool) -> type[ProblemHttpToolsProtocol]:
    """A protocol class for one server (uvicorn takes a class, so the settings become class attributes)."""
    return type("ProblemHttpToolsProtocol", (ProblemHttpToolsProtocol,),
                {"max_head_bytes": max_head_bytes, "openai_errors": openai_errors})
