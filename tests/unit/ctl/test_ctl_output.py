"""How results are printed: tables for people, the API's JSON and CSV for scripts, secrets labelled."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from aiaas.ctl.output import Column, Format, Output, ago, text, when

ITEMS = [{"id": "01a2", "name": "research", "tags": ["a", "b"], "n": None},
         {"id": "01a3", "name": "[bold]lab[/bold]", "tags": [], "n": 3}]
COLUMNS = [Column("ID", "id"), Column("NAME", "name"), Column("TAGS", "tags"), Column("N", "n", "right")]
NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)


def render(fmt: Format) -> tuple[Output, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Output(fmt, out=out, err=err), out, err


class TestCells:
    @pytest.mark.parametrize(("value", "expected"), [
        (None, "-"), ("", "-"), ([], "-"), (True, "yes"), (False, "no"), (["a", "b"], "a, b"), (3, "3"),
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
    ])
    def test_text(self, value: object, expected: str) -> None:
        assert text(value) == expected

    def test_when(self) -> None:
        assert when("2026-11-03T14:02:59.123456+00:00") == "2026-11-03 14:02 UTC"
        assert when("2026-11-03T16:02:00+02:00") == "2026-11-03 14:02 UTC"
        assert when(None) is None

    @pytest.mark.parametrize(("value", "expected"), [
        (None, "never"), ("2026-11-03T11:57:00Z", "3m ago"), ("2026-11-02T12:00:00Z", "1d ago"),
        ("2026-12-03T12:00:00Z", "in 30d"), ("2026-11-03T12:00:00Z", "just now"),
    ])
    def test_ago(self, value: str | None, expected: str) -> None:
        assert ago(value, now=NOW) == expected


class TestLists:
    def test_table_has_headers_rows_and_no_markup(self) -> None:
        output, out, err = render(Format.table)
        output.items(ITEMS, COLUMNS)
        lines = out.getvalue().splitlines()
        assert lines[0].split() == ["ID", "NAME", "TAGS", "N"]
        assert lines[2].split() == ["01a2", "research", "a,", "b", "-"]
        assert "[bold]lab[/bold]" in lines[3]  # a name from the server is text, never rich markup
        assert "\x1b[" not in out.getvalue() and err.getvalue() == ""

    def test_json_is_the_raw_document(self) -> None:
        output, out, _ = render(Format.json)
        page = {"data": ITEMS, "next_cursor": None, "has_more": False}
        output.items(ITEMS, COLUMNS, raw=page)
        assert json.loads(out.getvalue()) == page

    def test_csv_has_the_table_s_columns(self) -> None:
        output, out, _ = render(Format.csv)
        output.items(ITEMS, COLUMNS)
        rows = list(csv.reader(io.StringIO(out.getvalue())))
        assert rows == [["ID", "NAME", "TAGS", "N"], ["01a2", "research", "a, b", "-"],
                        ["01a3", "[bold]lab[/bold]", "-", "3"]]

    def test_nothing_to_show_goes_to_stderr(self) -> None:
        output, out, err = render(Format.table)
        output.items([], COLUMNS, empty="no keys")
        assert out.getvalue() == "" and err.getvalue() == "no keys\n"


class TestOneRecord:
    def test_fields_aligned(self) -> None:
        output, out, _ = render(Format.table)
        output.record(ITEMS[0], [Column("id", "id"), Column("long name", "name")])
        assert out.getvalue() == "id         01a2\nlong name  research\n"

    def test_json(self) -> None:
        output, out, _ = render(Format.json)
        output.record(ITEMS[0], COLUMNS, raw={"raw": True})
        assert json.loads(out.getvalue()) == {"raw": True}


class TestMessages:
    def test_a_secret_is_labelled_and_alone_on_its_line(self) -> None:
        output, out, _ = render(Format.table)
        output.secret("API key secret", "sk-abc")
        assert out.getvalue() == "API key secret (shown once, store it now):\nsk-abc\n"

    def test_no_secret_text_in_json_mode(self) -> None:
        output, out, _ = render(Format.json)
        output.secret("API key secret", "sk-abc")
        output.line("for people")
        assert out.getvalue() == ""

    def test_done_prints_the_message_or_the_document(self) -> None:
        people, out, _ = render(Format.table)
        people.done("Deleted.", {"deleted": "x"})
        machines, jout, _ = render(Format.json)
        machines.done("Deleted.", {"deleted": "x"})
        assert out.getvalue() == "Deleted.\n" and json.loads(jout.getvalue()) == {"deleted": "x"}

    def test_errors_go_to_stderr_uncoloured_off_a_terminal(self) -> None:
        output, out, err = render(Format.table)
        output.error("boom")
        assert out.getvalue() == "" and err.getvalue() == "error: boom\n"

    def test_no_spinner_off_a_terminal(self) -> None:
        output, _, err = render(Format.table)
        with output.progress("Loading") as update:
            update(3)
        assert err.getvalue() == ""
