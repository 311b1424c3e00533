"""docs/permissions.md shows exactly the permission table of the code."""

from __future__ import annotations

from pathlib import Path

from aiaas.kernel.security import ROLE_PERMISSIONS, OrgRole, Permission

DOC = Path(__file__).resolve().parents[3] / "docs" / "permissions.md"


def test_matrix_matches_code() -> None:
    text = DOC.read_text()
    table = text.split("<!-- matrix:start -->")[1].split("<!-- matrix:end -->")[0].strip().splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["permission", "platform admin", "owner", "admin", "member", "viewer"]
    rows = {}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    assert set(rows) == {p.value for p in Permission if p is not Permission.SELF}
    for perm, cells in rows.items():
        assert cells[0] == "✓"
        for role, cell in zip([OrgRole.OWNER, OrgRole.ADMIN, OrgRole.MEMBER, OrgRole.VIEWER], cells[1:], strict=True):
            assert (cell == "✓") is (Permission(perm) in ROLE_PERMISSIONS[role]), (perm, role)
