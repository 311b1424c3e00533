"""Text a user writes that the platform stores, logs or shows: never NUL or another control character.

PostgreSQL refuses NUL in text (a 500 deep in a query if it got that far); other control characters
corrupt logs, CSV exports and terminals. Names and emails are refused with them at the edge, by the
schema; a NUL anywhere in a management request (path, query or JSON body) is refused before a handler
runs (:func:`contains_nul`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

# ``(?![\s\S])`` is "end of input" in both Python and ECMAScript (the OpenAPI document's regex dialect),
# where ``$`` would also match before a final newline and ``\Z`` is not ECMAScript.
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*(?![\s\S])"

# A JSON ``\u0000`` escape, not the text ``\\u0000`` (an escaped backslash followed by "u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def label(*, max_length: int, min_length: int = 1, description: str | None = None) -> Any:
    """A string type of ``min_length`` to ``max_length`` characters with no control character."""
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length, pattern=NO_CONTROL_CHARS,
                                       description=description)]


def contains_nul(*, path: str, raw_path: bytes, query: bytes, body: bytes = b"") -> bool:
    """Whether a request carries a NUL character anywhere: decoded or %-encoded, or escaped in JSON."""
    if "\x00" in path or b"%00" in raw_path or b"%00" in query or b"\x00" in query:
        return True
    return b"\x00" in body or _JSON_NUL.search(body) is not None
