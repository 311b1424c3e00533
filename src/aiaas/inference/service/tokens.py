"""Cheap token estimates for admission and for accounting when an upstream reports no usage.

The estimate is the byte length of the prompt's JSON (messages, prompt or input, as the client sent
them) divided by four, rounded up: no parsing beyond what the request decode already did, no tokenizer
on the hot path, and, because the JSON quoting and keys are included, it leans high for English text,
which is the safe side for rate limits and quota reservations. Exact figures come later from the
upstream's usage (or the local tokenizer), and ``usage`` settles against those.
"""

from __future__ import annotations

BYTES_PER_TOKEN = 4


def estimate_tokens(raw: bytes | str | None) -> int:
    """Estimated tokens of a JSON fragment or text: ``ceil(len / 4)``."""
    if not raw:
        return 0
    return -(-len(raw) // BYTES_PER_TOKEN)
