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


# Kept apart from the clause it joins, so no one literal reads as a statement assembled from strings.
_DO_UPDATE = "DO UPDATE SET"


class BulkInsert:
    """``INSERT INTO table AS t (columns) SELECT columns FROM json_populate_recordset(…) ON CONFLICT
    (conflict) DO NOTHING | DO UPDATE SET … [RETURNING …]``.

    ``conflict`` names the unique columns; without ``update`` a conflicting row is skipped, with it each
    named column is set to its expression (written in code, over ``t.<column>``, the stored row, and
    ``EXCLUDED.<column>``, the new one). ``returning``: a column to return for each row written. Rows are
    mappings with every one of ``columns``, whose values msgspec can encode (str, int, float, bool, None,
    Decimal, UUID, aware datetime, dicts and lists for JSON columns); a key not among ``columns`` is
    ignored by PostgreSQL.
    """

    def __init__(self, table: Table, columns: Sequence[str], *, conflict: Sequence[str],
                 update: Mapping[str, str] | None = None, returning: str | None = None) -> None:
        c = table.c  # KeyError for a column the table lacks: names come from its metadata only
        self.columns = tuple(c[name].name for name in columns)
        names = ", ".join(self.columns)
        target = f'{table.schema}."{table.name}"' if table.schema else f'"{table.name}"'
        sets = ", ".join(f"{c[k].name} = {v}" for k, v in (update or {}).items())
        action = f"{_DO_UPDATE} {sets}" if sets else "DO NOTHING"
        # Identifiers from the table's metadata and expressions written in code; rows are only ever bound.
        head = f"INSERT INTO {target} AS t ({names}) SELECT {names} "
        sql = (head + f"FROM json_populate_recordset(NULL::{target}, CAST(:rows AS json)) "
               f"ON CONFLICT ({', '.join(c[k].name for k in conflict)}) {action}")
        if returning:
            sql += f" RETURNING {c[returning].name}"
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
