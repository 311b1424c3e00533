"""The generated reference pages match the code, and cannot fall behind it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from aiaas.entrypoints import docs
from aiaas.kernel import config
from aiaas.kernel.deprecation import deprecated

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    """The pages as the code generates them, built once for the module (the contract is large)."""
    return docs.pages(ROOT)


class TestGeneratedPages:
    @pytest.mark.parametrize("name", ["configuration.md", "database.md", "api-reference.md"])
    def test_the_committed_page_is_what_the_code_generates(self, name: str, generated: dict[str, str]) -> None:
        assert (ROOT / "docs" / name).read_text() == generated[name], f"run `aiaas docs` ({name})"

    def test_every_setting_is_in_the_page_with_its_type_default_and_bounds(self) -> None:
        page = docs.configuration()
        for name in config.Settings.__struct_fields__:
            assert f"| `AIAAS_{name.upper()}` |" in page
        assert "| `AIAAS_API_PORT` | integer | `8000` | ≥ 1, ≤ 65535 |" in page

    def test_a_setting_without_a_description_stops_the_generator(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delitem(config.DESCRIPTIONS, "api_port")
        with pytest.raises(SystemExit, match="api_port"):
            docs.configuration()

    def test_a_new_setting_changes_the_page(self, monkeypatch: pytest.MonkeyPatch) -> None:
        class Wider(config.Settings, frozen=True, kw_only=True):
            brand_new_knob: int = 3

        monkeypatch.setattr(docs, "Settings", Wider)
        monkeypatch.setitem(config.DESCRIPTIONS, "brand_new_knob", "a knob")
        assert "`AIAAS_BRAND_NEW_KNOB`" in docs.configuration()
        assert docs.configuration() != (ROOT / "docs" / "configuration.md").read_text()

    def test_every_table_and_column_is_in_the_database_page(self) -> None:
        page = docs.database()
        for context in config.CONTEXTS:
            for table in docs._models(context).Base.metadata.tables.values():
                assert f"### `{table.schema}.{table.name}`" in page
                for column in table.columns:
                    assert f"| `{column.name}` |" in page

    def test_the_check_fails_on_a_stale_page(self, tmp_path: Path) -> None:
        (tmp_path / "docs").mkdir()
        (tmp_path / "contracts").mkdir()
        (tmp_path / "contracts" / "openapi.yaml").write_text((ROOT / "contracts" / "openapi.yaml").read_text())
        assert docs.check_or_write(tmp_path / "docs", check=True) == 1
        assert docs.check_or_write(tmp_path / "docs", check=False) == 0
        assert docs.check_or_write(tmp_path / "docs", check=True) == 0


class TestDeprecation:
    async def test_a_deprecated_route_announces_its_sunset_and_successor(self) -> None:
        @get("/v1/old", **deprecated(since=dt.date(2026, 12, 1), sunset=dt.date(2027, 6, 30), successor="/v1/new"))
        async def old() -> dict[str, str]:
            return {"ok": "yes"}

        app = Litestar([old], logging_config=None)
        async with AsyncTestClient(app) as client:
            r = await client.get("/v1/old")
        assert r.status_code == 200
        assert r.headers["deprecation"] == "@1796083200"
        assert r.headers["sunset"] == "Wed, 30 Jun 2027 23:59:59 GMT"
        assert r.headers["link"] == '</v1/new>; rel="successor-version"'
        op = app.openapi_schema.to_schema()["paths"]["/v1/old"]["get"]
        assert op["deprecated"] is True

    def test_a_sunset_must_follow_the_deprecation(self) -> None:
        with pytest.raises(ValueError, match="sunset"):
            deprecated(since=dt.date(2027, 1, 1), sunset=dt.date(2026, 1, 1))


def test_settings_descriptions_name_only_real_settings() -> None:
    assert set(config.DESCRIPTIONS) == set(config.Settings.__struct_fields__)
    assert msgspec.inspect.type_info(config.Settings)  # the generator's source of types and bounds
