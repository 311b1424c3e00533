"""Deprecating a route within a major version: the headers that announce it, and its mark in the contract.

``@get("/v1/old", **deprecated(sunset=dt.date(2027, 6, 30), successor="/v1/new"))`` makes every response of
the route carry

- ``Deprecation: @<unix time>`` (RFC 9745): since when it is deprecated;
- ``Sunset: <HTTP date>`` (RFC 8594): after when it may be gone;
- ``Link: <successor>; rel="successor-version"`` (RFC 8288, RFC 5829): what to use instead;

and marks the operation ``deprecated: true`` in ``contracts/openapi.yaml``, which is what lets the contract
check (``aiaas openapi --breaking-from``) accept its removal once the sunset has passed. The policy is in
docs/api-versioning.md.
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import Any

from litestar.datastructures import ResponseHeader


def deprecated(*, since: dt.date, sunset: dt.date, successor: str | None = None) -> dict[str, Any]:
    """Route decorator arguments for a route deprecated on ``since`` and removed after ``sunset``."""
    if sunset <= since:
        raise ValueError("a route's sunset must come after its deprecation")
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(sunset, dt.time(23, 59, 59), tzinfo=dt.UTC)
    headers = [
        ResponseHeader(name="Deprecation", value=f"@{int(start.timestamp())}",
                       description="Since when this operation is deprecated (RFC 9745)"),
        ResponseHeader(name="Sunset", value=format_datetime(end, usegmt=True),
                       description="After this moment the operation may be removed (RFC 8594)"),
    ]
    if successor:
        headers.append(ResponseHeader(name="Link", value=f'<{successor}>; rel="successor-version"',
                                      description="The operation to use instead"))
    return {"deprecated": True, "response_headers": headers}
