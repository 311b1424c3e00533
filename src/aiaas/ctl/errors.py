"""What can go wrong, as one exception type with an exit code, and the message of an API error.

Exit codes (docs/cli.md lists them too):

- 0: success
- 1: the API refused the request (any other 4xx or 5xx), a local file is unusable, or aborted (Ctrl-C, a
  declined confirmation)
- 2: usage error: a missing or invalid option or argument
- 3: not signed in, or the session or API key was refused (401)
- 4: forbidden: your role or the key's scope lacks the permission (403)
- 5: not found (404; also an org, member or key named that does not exist)
- 6: network error: the server could not be reached or did not answer in time
"""

from __future__ import annotations

import json
from typing import Any

OK = 0
API_ERROR = 1
USAGE = 2
UNAUTHENTICATED = 3
FORBIDDEN = 4
NOT_FOUND = 5
NETWORK = 6

_BY_STATUS = {401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND}


class CtlError(Exception):
    """Any failure the CLI reports as one line on stderr and an exit code, never a traceback."""

    def __init__(self, message: str, *, exit_code: int = API_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageFailure(CtlError):
    """The command line asks for something impossible (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=USAGE)


class NetworkFailure(CtlError):
    """The server could not be reached or did not answer in time (exit code 6)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=NETWORK)


class ApiError(CtlError):
    """The API answered an error status; ``message`` comes from its problem document."""

    def __init__(self, status: int, message: str, *, code: str | None = None, request_id: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message, exit_code=exit_code_for_status(status))
        self.status = status
        self.code = code
        self.request_id = request_id
        self.body = body


def exit_code_for_status(status: int) -> int:
    """The exit code for an HTTP error status: 3 for 401, 4 for 403, 5 for 404, else 1."""
    return _BY_STATUS.get(status, API_ERROR)


def api_error(status: int, body: bytes, *, reason: str = "", headers: Any = None) -> ApiError:
    """The :class:`ApiError` for a response: the message is the problem document's ``title`` and
    ``detail`` (RFC 7807), OpenAI's ``error.message`` when the document has no detail (inference
    routes), else the start of the body or the reason phrase."""
    doc: Any = None
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    message = problem_message(doc) if isinstance(doc, dict) else None
    if not message:
        text = body.decode("utf-8", "replace").strip()
        message = text[:200] if text and not text.startswith("<") else (reason or "error")
    retry_after = headers.get("retry-after") if headers is not None else None
    if status == 429 and retry_after:
        message += f" (retry after {retry_after} s)"
    code = request_id = None
    if isinstance(doc, dict):
        error = doc.get("error")
        code = _str(doc.get("code")) or (_str(error.get("code")) if isinstance(error, dict) else None)
        request_id = _str(doc.get("request_id"))
    if request_id is None and headers is not None:
        request_id = headers.get("x-request-id")
    return ApiError(status, f"{message} [HTTP {status}]", code=code, request_id=request_id, body=doc)


def problem_message(doc: dict[str, Any]) -> str | None:
    """``Title: detail`` of a problem document, or OpenAI's (or Anthropic's) ``error.message``."""
    title, detail = _str(doc.get("title")), _str(doc.get("detail"))
    error = doc.get("error")
    error_message = _str(error.get("message")) if isinstance(error, dict) else _str(error)
    if detail and title and detail != title:
        return f"{title}: {detail}"
    if detail or title:
        return detail or title
    return error_message or _str(doc.get("message"))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
