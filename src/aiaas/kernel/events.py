"""The envelope every integration event shares.

Events are msgspec Structs with a schema version, a time-ordered event id (UUIDv7, so ids sort by
creation and make good primary keys) and the ``traceparent`` of the span that produced them.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import ClassVar

import msgspec
import uuid_utils

from aiaas.kernel.tracing import current_traceparent


def uuid7_str() -> str:
    """A new UUIDv7 as its canonical string."""
    return str(uuid_utils.uuid7())


@functools.lru_cache(maxsize=8192)
def parse_uuid(value: str) -> uuid.UUID:
    """``uuid.UUID(value)``, memoized (a pure function, so no state): the org, key and user ids of the events
    a worker takes repeat, and parsing them again for every event was a measurable share of its CPU.
    Raises what ``uuid.UUID`` raises (``TypeError`` too for a value that cannot be hashed)."""
    return uuid.UUID(value)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of integration events: subclasses set ``routing_key`` and ``schema_version``."""

    event_id: str = msgspec.field(default_factory=uuid7_str)
    occurred_at: dt.datetime = msgspec.field(default_factory=utcnow)
    schema_version: int = 1
    traceparent: str | None = msgspec.field(default_factory=current_traceparent)

    routing_key: ClassVar[str] = "event"
