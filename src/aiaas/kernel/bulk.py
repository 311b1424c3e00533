"""Many rows in one statement with one parameter: ``INSERT … SELECT … FROM json_populate_recordset(…)``.

The worker writes every event it takes, a batch of hundreds at a time. An ``executemany`` of a compiled
``INSERT`` hands SQLAlchemy a dictionary per row, which it turns into a bind parameter per cell, and
PostgreSQL then parses and plans a multi-row ``VALUES`` of thousands of parameters: the profile of a
worker draining a backlog put most of its CPU there. An array per column (``unnest``) moves the cost into
asyncpg's encoder, which checks every element against the collection ABCs. Here the batch travels as one
JSON document that msgspec encodes in C and PostgreSQL turns into rows of the table's own type
(``json_populate_recordset``, each field by the column's input function: exact for integers, decimals,
timestamps and UUIDs); the statement text is built once per table at import and is the same for every
batch, so PostgreSQL plans one small statement whatever the batch's size. Idempotency is the caller's
``ON CONFLICT`` clause, as before.

The SQL is made from the table's own metadata and fixed clauses written in code, never from data: the
rows only ever travel as the bound document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession

_encoder = msgspec.json.Encoder(decimal_format="string")


class BulkInsert:
    """``INSERT INTO table AS t (columns) SELECT columns FROM json_populate_recordset(…) <conflict>
    [RETURNING …]``.

    ``conflict`` is the statement's ``ON CONFLICT`` clause (the target table is aliased ``t``);
    ``returning`` an optional ``RETURNING`` list. Rows are mappings with every one of ``columns``, whose
    values msgspec can encode (str, int, float, bool, None, Decimal, UUID, aware datetime, dicts and lists
    for JSON columns); a key not among ``columns`` is ignored by PostgreSQL.
    """

    def __init__(self, table: Table, columns: Sequence[str], *, conflict: str, returning: str | None = None) -> None:
        self.columns = tuple(table.c[name].name for name in columns)  # KeyError for a column it lacks
        names = ", ".join(self.columns)
        target = f'{table.schema}."{table.name}"' if table.schema else f'"{table.name}"'
        # Identifiers from the table's metadata and clauses written in code; rows are only ever bound.
        head = f"INSERT INTO {target} AS t ({names}) SELECT {names} "
        sql = head + f"FROM json_populate_recordset(NULL::{target}, CAST(:rows AS json)) {conflict}"
        if returning:
            sql += f" RETURNING {returning}"
        self.returns = bool(returning)
        self.sql = sql
        self._statement = text(sql)

    @staticmethod
    def parameters(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """The statement's one parameter: ``rows`` as a JSON array of objects."""
        return {"rows": _encoder.encode(rows).decode()}

    async def execute(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Insert ``rows`` in the caller's transaction; returns the first ``RETURNING`` value of each row
        the statement wrote (empty without ``returning``)."""
        if not rows:
            return []
        result = await session.execute(self._statement, self.parameters(rows))
        return list(result.scalars().all()) if self.returns else []
