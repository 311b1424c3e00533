"""``BulkInsert``: the statement it builds from a table's metadata and the one parameter it binds."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Numeric, String, Table, Uuid
from sqlalchemy.dialects.postgresql import JSONB

from aiaas.kernel.bulk import BulkInsert

_table = Table("things", MetaData(schema="ctx"), Column("id", Uuid, primary_key=True), Column("n", Integer),
               Column("name", String(8)), Column("cost", Numeric(38, 15)), Column("at", DateTime(timezone=True)),
               Column("hist", JSONB))


class TestStatement:
    def test_one_statement_of_the_tables_columns_with_its_conflict_clause(self) -> None:
        bulk = BulkInsert(_table, ("id", "n"), conflict=("id",), returning="id")
        assert bulk.sql == ('INSERT INTO ctx."things" AS t (id, n) SELECT id, n FROM json_populate_recordset('
                            'NULL::ctx."things", CAST(:rows AS json)) ON CONFLICT (id) DO NOTHING RETURNING id')

    def test_an_upsert_sets_each_named_column_to_its_expression(self) -> None:
        bulk = BulkInsert(_table, ("id", "n"), conflict=("id",), update={"n": "t.n + EXCLUDED.n"})
        assert bulk.sql.endswith("ON CONFLICT (id) DO UPDATE SET n = t.n + EXCLUDED.n")

    @pytest.mark.parametrize("where", ["columns", "conflict", "update", "returning"])
    def test_a_column_the_table_lacks_is_refused_when_built(self, where: str) -> None:
        bad = "id; DROP TABLE x"
        kw: dict[str, object] = {"columns": ("id",), "conflict": ("id",), "update": None, "returning": None}
        kw[where] = {bad: "1"} if where == "update" else bad if where == "returning" else (bad,)
        with pytest.raises(KeyError):
            BulkInsert(_table, kw.pop("columns"), **kw)  # type: ignore[arg-type]


class TestParameter:
    def test_the_rows_travel_as_one_json_document_with_exact_values(self) -> None:
        bulk = BulkInsert(_table, ("id", "n", "name", "cost", "at", "hist"), conflict=("id",))
        ident = uuid.uuid4()
        at = dt.datetime(2026, 12, 3, 11, 59, 59, 999_999, tzinfo=dt.UTC)
        row = {"id": ident, "n": 2**62, "name": 'a"\\\u00e9\U0001f600', "cost": Decimal("0.000000000000001"),
               "at": at, "hist": {"3": 1}}
        params = bulk.parameters([row, {**row, "cost": None, "hist": None}])
        assert list(params) == ["rows"]
        decoded = msgspec.json.decode(params["rows"])
        cost = decoded[0].pop("cost")
        assert Decimal(cost) == Decimal("0.000000000000001")  # a decimal string (PostgreSQL reads "1E-15" too)
        assert decoded[0] == {"id": str(ident), "n": 2**62, "name": 'a"\\\u00e9\U0001f600',
                              "at": "2026-12-03T11:59:59.999999Z", "hist": {"3": 1}}
        assert decoded[1]["cost"] is None and decoded[1]["hist"] is None
