"""Durations (``30d``, ``1h30m``) and instants (ISO 8601, or a duration meaning "that long ago")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``90`` (seconds), ``45s``, ``15m``, ``1h``, ``30d``, ``2w`` or a sum such as ``1h30m``.

    Raises ``ValueError`` with a message fit for the user on anything else (negative, empty, ``1.5h``).
    """
    value = text.strip().lower()
    if value.isdigit():
        return timedelta(seconds=int(value))
    if not value or _PART.sub("", value):
        raise ValueError(f"{text!r} is not a duration: use a number of seconds or e.g. 45s, 15m, 1h30m, 30d, 2w")
    return timedelta(seconds=sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value)))


def parse_instant(text: str, *, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from ``now``, an ISO 8601 date or date-time (``Z`` allowed; without a zone
    it is taken as UTC) or a duration meaning that long before now (``24h``, ``7d``)."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if value.lower() == "now":
        return now
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 (2026-11-01, 2026-11-01T12:00:00Z), "
                         "a duration ago (24h, 7d) or now") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 with a ``Z``, whole seconds (what the API reads and writes)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def humanize(delta: timedelta) -> str:
    """A short duration in its largest unit, rounded: ``45s``, ``3m``, ``5h``, ``12d``."""
    seconds = round(abs(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{round(seconds / size)}{unit}"
    return f"{seconds}s"
