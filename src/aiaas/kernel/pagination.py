"""Cursor pagination shared by every list endpoint.

Lists are ordered by their time-ordered UUIDv7 ids, which gives a stable total order; the cursor is the
opaque, URL-safe encoding of the last id of a page. ``limit`` is 1..100 (default 20).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated

from litestar.params import Parameter

from aiaas.kernel.errors import ValidationFailed

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="Items per page (1-100).")]
Cursor = Annotated[str | None, Parameter(max_length=64, description="`next_cursor` of the previous page.")]


def encode_cursor(last_id: str) -> str:
    """The opaque cursor that continues after ``last_id``."""
    return base64.urlsafe_b64encode(uuid.UUID(last_id).bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The id a cursor continues after; a malformed cursor is a 422, never a 500."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return str(uuid.UUID(bytes=raw))
    except (ValueError, binascii.Error):
        raise ValidationFailed("`cursor` is not a cursor this API returned.", param="cursor",
                               extra={"errors": [{"key": "cursor", "message": "invalid cursor",
                                                  "source": "query"}]}) from None


def next_cursor(ids: list[str], limit: int) -> str | None:
    """Cursor of the next page when a query fetched ``limit + 1`` rows, else None."""
    return encode_cursor(ids[limit - 1]) if len(ids) > limit else None


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a canonical UUID (path ids are checked before they reach a query)."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False
