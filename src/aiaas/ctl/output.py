"""How results reach the terminal: tables (rich), the API's JSON, or CSV; notices and errors on stderr.

stdout carries only results, so ``aiaasctl ... -o json | jq`` and ``> file.csv`` work; hints, progress
and errors go to stderr. Values from the server are printed as plain text, never as rich markup.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any

from aiaas.ctl.durations import humanize


class Format(StrEnum):
    """The ``--output`` choices."""

    table = "table"
    json = "json"
    csv = "csv"


@dataclass(frozen=True)
class Column:
    """One column: its header and how to read a cell from an item (a key, or a function)."""

    header: str
    value: str | Callable[[dict[str, Any]], Any]
    justify: str = "left"

    def cell(self, item: dict[str, Any]) -> str:
        """The cell's text for ``item``."""
        raw = item.get(self.value) if isinstance(self.value, str) else self.value(item)
        return text(raw)


def text(value: Any) -> str:
    """A value as table text: ``-`` for nothing, lists joined with commas, booleans as yes/no."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time of the API as an aware datetime (``None`` stays ``None``)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: str | None) -> str | None:
    """An API time as ``2026-11-03 14:02 UTC``."""
    parsed = parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if parsed else None


def ago(value: str | None, *, now: datetime | None = None, never: str = "never") -> str:
    """An API time relative to now: ``3m ago``, ``in 29d``, or ``never`` when there is none."""
    parsed = parse_time(value)
    if parsed is None:
        return never
    delta = (now or datetime.now(UTC)) - parsed
    if abs(delta.total_seconds()) < 1:
        return "just now"
    return f"{humanize(delta)} ago" if delta.total_seconds() > 0 else f"in {humanize(delta)}"


class Output:
    """Renders results in the chosen :class:`Format` to ``out``; talks to the user on ``err``."""

    def __init__(self, fmt: Format = Format.table, *, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.format = fmt
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    @property
    def is_table(self) -> bool:
        """Whether results are for people (not JSON or CSV)."""
        return self.format is Format.table

    def json(self, data: Any) -> None:
        """Print ``data`` as indented JSON."""
        self.out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def items(self, items: Sequence[dict[str, Any]], columns: Sequence[Column], *, raw: Any = None,
              empty: str = "nothing to show") -> None:
        """A list: a table, or CSV of the same columns, or ``raw`` (the API's JSON; ``items`` without)."""
        if self.format is Format.json:
            self.json(items if raw is None else raw)
        elif self.format is Format.csv:
            self.csv([c.header for c in columns], [[c.cell(i) for c in columns] for i in items])
        elif not items:
            self.notice(empty)
        else:
            self._table(columns, [[c.cell(i) for c in columns] for i in items])

    def record(self, item: dict[str, Any], columns: Sequence[Column], *, raw: Any = None) -> None:
        """One object: ``field  value`` lines, or CSV of one row, or ``raw`` (the API's JSON)."""
        if self.format is Format.json:
            self.json(item if raw is None else raw)
        elif self.format is Format.csv:
            self.csv([c.header for c in columns], [[c.cell(item) for c in columns]])
        else:
            width = max(len(c.header) for c in columns)
            for c in columns:
                self.out.write(f"{c.header.ljust(width)}  {c.cell(item)}\n")

    def csv(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Write ``header`` and ``rows`` as CSV."""
        writer = csv.writer(self.out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)

    def line(self, message: str) -> None:
        """One line of result text on stdout (table format only: JSON and CSV stay parseable)."""
        if self.is_table:
            self.out.write(message + "\n")

    def done(self, message: str, data: Any = None) -> None:
        """The outcome of an action: ``message`` for people, or ``data`` (the API's JSON) with ``-o json``."""
        if self.format is Format.json:
            self.json(data if data is not None else {"ok": True})
        else:
            self.out.write(message + "\n")

    def secret(self, label: str, value: str) -> None:
        """A secret shown once, labelled so nobody mistakes it for an id (always on stdout, for capture)."""
        if self.format is Format.json:
            return
        style = ("\x1b[1;33m", "\x1b[0m") if _is_tty(self.out) else ("", "")
        self.out.write(f"{style[0]}{label} (shown once, store it now):{style[1]}\n{value}\n")

    def notice(self, message: str) -> None:
        """A hint or a note for people, on stderr."""
        self.err.write(message + "\n")

    def error(self, message: str) -> None:
        """An error, on stderr (red on a terminal)."""
        style = ("\x1b[31m", "\x1b[0m") if _is_tty(self.err) else ("", "")
        self.err.write(f"{style[0]}error:{style[1]} {message}\n")

    @contextlib.contextmanager
    def progress(self, what: str) -> Iterator[Callable[[int], None]]:
        """A spinner on a terminal's stderr while pages load; yields ``update(count)``."""
        if not _is_tty(self.err):
            yield lambda _count: None
            return
        from rich.console import Console

        with Console(file=self.err).status(f"{what}…") as status:
            yield lambda count: status.update(f"{what}… {count}")

    def _table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        tty = _is_tty(self.out)
        # Off a terminal rich would wrap at 80 columns; a pipe gets full ids and names instead.
        width = None if tty or os.environ.get("COLUMNS") else 250
        console = Console(file=self.out, width=width, highlight=False, soft_wrap=False)
        table = Table(box=box.SIMPLE_HEAD if tty else box.SIMPLE, header_style="bold" if tty else "",
                      pad_edge=False, show_edge=False)
        for c in columns:
            table.add_column(c.header, justify=c.justify, overflow="fold")  # type: ignore[arg-type]
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
