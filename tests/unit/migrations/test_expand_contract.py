"""Migrations follow expand/contract: a release's migration never breaks the previous release's code.

During a rolling upgrade the new release's ``aiaas migrate`` runs while pods of the previous release
still serve (docs/deployment.md, "Migrations"). So an ``upgrade()`` may only *expand*: add tables, add
nullable columns or columns with a server default, add indexes. What the previous code still reads or
writes may be removed or narrowed only in a later release, once no running code uses it (*contract*),
and such a step says so on its line: ``# contract: <why the previous release no longer needs it>``.

No release is tagged yet, so this is checked by reading the migrations (until there is a previous
release whose smoke test can run against the new schema): every operation of every ``upgrade()`` that
could break running code is refused unless it carries that marker.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

VERSIONS = Path(__file__).resolve().parents[3] / "migrations" / "versions"
_MARKER = re.compile(r"#\s*contract:\s*\S")
_DESTRUCTIVE_SQL = re.compile(
    r"\b(DROP\s+(TABLE|COLUMN|SCHEMA|VIEW|TYPE|FUNCTION|AGGREGATE)|RENAME\s+(TO|COLUMN)|"
    r"ALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE|SET\s+NOT\s+NULL|TRUNCATE)\b", re.IGNORECASE)
_ALWAYS = {"drop_table": "drops a table", "drop_column": "drops a column", "rename_table": "renames a table",
           "drop_table_comment": None}


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value == value


def _sql_text(node: ast.expr) -> str:
    """The literal text of a SQL string (the constant parts of an f-string)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return ""


def why_breaking(call: ast.Call) -> str | None:
    """Why this ``op.<name>(...)`` call could break the code of the release before, or None."""
    if not (isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "op"):
        return None
    name = call.func.attr
    if _ALWAYS.get(name):
        return _ALWAYS[name]
    if name == "alter_column":
        if _kw(call, "new_column_name") is not None:
            return "renames a column"
        if _kw(call, "type_") is not None:
            return "changes a column's type"
        if _is(_kw(call, "nullable"), False):
            return "makes a column NOT NULL"
    if name == "add_column" and len(call.args) >= 2 and isinstance(call.args[1], ast.Call):
        column = call.args[1]
        if _is(_kw(column, "nullable"), False) and _kw(column, "server_default") is None:
            return "adds a NOT NULL column without a server default (the previous code's inserts fail)"
    if name == "execute" and call.args and _DESTRUCTIVE_SQL.search(_sql_text(call.args[0])):
        return "runs destructive SQL (" + _DESTRUCTIVE_SQL.search(_sql_text(call.args[0]))[0] + ")"  # type: ignore[index]
    return None


def findings(source: str, filename: str = "<migration>") -> list[str]:
    """Every breaking operation of ``upgrade()`` in ``source`` that is not marked ``# contract:``."""
    tree = ast.parse(source, filename)
    lines = source.splitlines()
    out: list[str] = []
    for fn in tree.body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name == "upgrade"):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and (why := why_breaking(node)):
                # The marker is in the comment block just above the call, or on the call's own lines.
                first = node.lineno - 1
                while first > 0 and lines[first - 1].strip().startswith("#"):
                    first -= 1
                if not any(_MARKER.search(line) for line in lines[first:node.end_lineno]):
                    out.append(f"{filename}:{node.lineno}: upgrade() {why}")
    return out


class TestTheMigrations:
    @pytest.mark.parametrize("path", sorted(VERSIONS.glob("*.py")), ids=lambda p: p.name)
    def test_every_upgrade_only_expands(self, path: Path) -> None:
        assert not findings(path.read_text(), path.name), (
            "a migration would break the release before it while a rolling upgrade runs both: split it into "
            "an expand step now and a contract step in a later release, marked '# contract: <why>'")


PLANTED = '''
import sqlalchemy as sa
from alembic import op

def upgrade() -> None:
    op.add_column("keys", sa.Column("note", sa.Text(), nullable=True))
    op.create_index("ix_x", "keys", ["note"])
    {line}

def downgrade() -> None:
    op.drop_column("keys", "note")
'''


class TestTheLinter:
    @pytest.mark.parametrize("line,why", [
        ('op.drop_column("keys", "name")', "drops a column"),
        ('op.drop_table("keys")', "drops a table"),
        ('op.alter_column("keys", "name", new_column_name="title")', "renames a column"),
        ('op.alter_column("keys", "n", type_=sa.BigInteger())', "changes a column's type"),
        ('op.alter_column("keys", "note", nullable=False)', "NOT NULL"),
        ('op.add_column("keys", sa.Column("x", sa.Text(), nullable=False))', "without a server default"),
        ('op.execute(f"ALTER TABLE {S}.keys RENAME COLUMN a TO b")', "destructive SQL"),
        ('op.execute("DROP TABLE auth.keys")', "destructive SQL"),
    ])
    def test_a_planted_destructive_step_is_found(self, line: str, why: str) -> None:
        (found,) = findings(PLANTED.format(line=line))
        assert why in found and ":8:" in found

    def test_expanding_steps_and_downgrades_pass(self) -> None:
        assert findings(PLANTED.format(line='op.add_column("keys", sa.Column("y", sa.Integer(), nullable=False, '
                                             'server_default="0"))')) == []

    def test_a_marked_contract_step_passes(self) -> None:
        marked = PLANTED.format(line='# contract: nothing reads keys.legacy since 0.3 (removed in 0.3.0)\n'
                                     '    op.drop_column("keys", "legacy")')
        assert findings(marked) == []
