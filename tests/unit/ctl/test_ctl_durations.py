"""Durations and instants as the CLI reads them (``--expires-in 30d``, ``--since 24h``, ``--grace 1h``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiaas.ctl.durations import humanize, iso, parse_duration, parse_instant

NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)


class TestParseDuration:
    @pytest.mark.parametrize(("text", "seconds"), [
        ("90", 90), ("0", 0), ("45s", 45), ("15m", 900), ("1h", 3600), ("30d", 30 * 86400), ("2w", 14 * 86400),
        ("1h30m", 5400), ("1d12h", 129600), (" 10M ", 600),
    ])
    def test_accepts(self, text: str, seconds: int) -> None:
        assert parse_duration(text) == timedelta(seconds=seconds)

    @pytest.mark.parametrize("text", ["", "soon", "1.5h", "-1h", "1y", "h", "1h 30m", "30 d", "1hh"])
    def test_refuses_with_a_message(self, text: str) -> None:
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(text)


class TestParseInstant:
    def test_a_duration_means_that_long_ago(self) -> None:
        assert parse_instant("24h", now=NOW) == NOW - timedelta(days=1)

    def test_now(self) -> None:
        assert parse_instant("now", now=NOW) == NOW

    @pytest.mark.parametrize(("text", "expected"), [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T10:00:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-01T12:00:00+02:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
    ])
    def test_iso_8601_in_utc(self, text: str, expected: datetime) -> None:
        parsed = parse_instant(text, now=NOW)
        assert parsed == expected and parsed.tzinfo is UTC

    def test_refuses_with_a_message(self) -> None:
        with pytest.raises(ValueError, match="is not a time"):
            parse_instant("yesterday-ish", now=NOW)


def test_iso_is_utc_with_z_in_whole_seconds() -> None:
    assert iso(datetime(2026, 11, 3, 13, 0, 0, 123456, tzinfo=UTC)) == "2026-11-03T13:00:00Z"
    assert iso(parse_instant("2026-11-03T15:00:00+02:00")) == "2026-11-03T13:00:00Z"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59, "59s"), (60, "1m"), (150, "2m"), (3600, "1h"),
                                               (43199, "12h"), (86400 * 30, "30d"), (-90, "2m")])
def test_humanize(seconds: int, text: str) -> None:
    assert humanize(timedelta(seconds=seconds)) == text
