"""The one door to the network: :meth:`Client.call`.

Every request of the CLI is ``client.call("METHOD", "/path/{template}", name=value, ...)`` with the method and
the path template as literal strings at the call site, so ``tests/unit/ctl/test_client_only.py`` can read
them all from the source and check each is an operation of ``contracts/openapi.yaml``. Path values are
percent-encoded into the template here, never formatted into it by the caller.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from aiaas.ctl.errors import NetworkFailure, UsageFailure, api_error

USER_AGENT = "aiaasctl/0.1.0"
_PLACEHOLDER = re.compile(r"{([a-z_]+)}")


class Reply:
    """A response whose status is below 400. A streamed one (``stream=True``) must be closed: use it as a
    context manager."""

    def __init__(self, response: httpx.Response, started: float) -> None:
        self._response = response
        self.started = started
        self.status = response.status_code
        self.headers = response.headers

    def json(self) -> Any:
        """The decoded JSON body (``None`` for an empty one, such as a 204)."""
        return self._response.json() if self._response.content else None

    @property
    def text(self) -> str:
        """The body as text."""
        return self._response.text

    def iter_lines(self) -> Iterator[str]:
        """The body line by line as it arrives (for a streamed reply)."""
        try:
            yield from self._response.iter_lines()
        except httpx.TransportError as exc:
            raise NetworkFailure(f"the connection broke while reading the answer: {exc}") from None

    def iter_text(self) -> Iterator[str]:
        """The body in decoded pieces as it arrives (for a streamed reply)."""
        try:
            yield from self._response.iter_text()
        except httpx.TransportError as exc:
            raise NetworkFailure(f"the connection broke while reading the answer: {exc}") from None

    def close(self) -> None:
        """Release the connection."""
        self._response.close()

    def __enter__(self) -> Reply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """An HTTP client of one base URL with one credential (a session token or an API key, or none)."""

    def __init__(self, base_url: str, *, token: str | None = None, unauthenticated_hint: str = "",
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.unauthenticated_hint = unauthenticated_hint
        headers = {"user-agent": USER_AGENT, "accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            self._http = httpx.Client(base_url=self.base_url, headers=headers, follow_redirects=False,
                                      timeout=httpx.Timeout(timeout, connect=10.0), transport=transport)
        except (httpx.InvalidURL, ValueError) as exc:
            raise UsageFailure(f"invalid URL {base_url!r}: {exc}") from None
        self._timeout = timeout

    def call(self, method: str, path: str, /, *, params: Mapping[str, Any] | None = None,
             json: Any = None, headers: Mapping[str, str] | None = None, stream: bool = False,
             **path_values: str) -> Reply:
        """Send ``method`` to ``path`` (a template of the contract, its ``{name}`` parts filled from
        ``path_values``) and return the reply; an error status raises :class:`ApiError`, a network failure
        :class:`NetworkFailure`. ``None`` query values are left out, lists repeat the parameter."""
        url = fill(path, path_values)
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None and v != []}
        started = time.monotonic()
        try:
            request = self._http.build_request(method, url, params=query, json=json, headers=headers)
            response = self._http.send(request, stream=stream)
        except httpx.TimeoutException:
            raise NetworkFailure(f"{self.base_url} did not answer within {self._timeout:g} s") from None
        except httpx.TransportError as exc:
            raise NetworkFailure(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from None
        except httpx.InvalidURL as exc:
            raise UsageFailure(f"invalid URL {self.base_url!r}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.read()
            except httpx.TransportError:
                body = b""
            finally:
                response.close()
            error = api_error(response.status_code, body, reason=response.reason_phrase, headers=response.headers)
            if response.status_code == 401 and self.unauthenticated_hint:
                error.message = f"{error.message}; {self.unauthenticated_hint}"
            raise error
        return Reply(response, started)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` replaced by the percent-encoded ``values[name]`` (a value cannot
    add a path segment or a query); every placeholder must be given and every value used."""
    names = set(_PLACEHOLDER.findall(template))
    if names != set(values):
        raise ValueError(f"{template}: path values {sorted(values)} do not match {sorted(names)}")
    return _PLACEHOLDER.sub(lambda m: quote(str(values[m.group(1)]), safe=""), template)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_query_value(v) for v in value]
    return value


@dataclass(frozen=True)
class Page:
    """Items gathered from one or more pages of a list, and whether the server has more."""

    data: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        """The API's page shape: ``{"data": [...], "next_cursor": ..., "has_more": ...}``."""
        return {"data": self.data, "next_cursor": self.next_cursor, "has_more": self.has_more}


def paginate(fetch: Callable[[str | None, int], Any], *, limit: int | None, max_page: int = 100,
             on_page: Callable[[int], None] | None = None) -> Page:
    """Follow ``next_cursor`` while ``has_more``: ``fetch(cursor, page_size)`` returns one page (a JSON
    object). Stops after ``limit`` items (``None``: every item)."""
    data: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        size = max_page if limit is None else max(1, min(max_page, limit - len(data)))
        page = fetch(cursor, size)
        data.extend(page.get("data") or [])
        cursor = page.get("next_cursor")
        more = bool(page.get("has_more")) and bool(cursor)
        if on_page is not None:
            on_page(len(data))
        if not more:
            return Page(data, False, None)
        if limit is not None and len(data) >= limit:
            return Page(data[:limit], True, cursor)
