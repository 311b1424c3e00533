"""`aiaas apply -f FILE`: reconciles the catalog with a YAML file, idempotently, with a dry run."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from aiaas.inference.service.catalog_file import CatalogFileError, parse_text


def _file(tmp: Path, name: str, org: str, *, weight: int = 1, extra: str = "") -> Path:
    path = tmp / "catalog.yaml"
    path.write_text(f"""
models:
  - name: {name}
    owned_by: acme
    capabilities: [chat]
    deployments:
      - name: primary
        upstream_model: up-model
        base_url: http://127.0.0.1:9/v1
        credential_ref: ACME_KEY
        weight: {weight}
{extra}
org_model_access:
  - org_id: {org}
    models: [{name}]
""")
    return path


def _apply(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiaas", "apply", *args], env=env, capture_output=True, text=True,
                          timeout=60)


class TestApply:
    def test_dry_run_then_apply_then_idempotent_then_change(self, session_env: dict[str, str],
                                                            tmp_path: Path) -> None:
        name, org = f"file/{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
        path = _file(tmp_path, name, org)
        dry = _apply(session_env, "-f", str(path), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"+ model {name}" in dry.stdout and "dry run" in dry.stdout
        first = _apply(session_env, "-f", str(path))
        assert f"+ model {name}" in first.stdout and f"+ access {org}" in first.stdout
        again = _apply(session_env, "-f", str(path))
        assert "already matches" in again.stdout, again.stdout
        changed = _apply(session_env, "-f", str(_file(tmp_path, name, org, weight=5)), "--dry-run")
        assert f"~ model {name}: changes deployments" in changed.stdout

    def test_inline_credentials_rejected(self, session_env: dict[str, str], tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text("models:\n  - name: x\n    deployments:\n      - name: a\n        upstream_model: m\n"
                        "        base_url: http://h/v1\n        api_key: sk-123\n")  # pragma: allowlist secret
        r = _apply(session_env, "-f", str(path))
        assert r.returncode == 2 and "api_key" in r.stderr

    def test_missing_file(self, session_env: dict[str, str], tmp_path: Path) -> None:
        r = _apply(session_env, "-f", str(tmp_path / "none.yaml"))
        assert r.returncode == 2 and "cannot read" in r.stderr


class TestParseText:
    @pytest.mark.parametrize("text", ["models: [", "models: 3", "models:\n  - name: a\n    deployments: []\n",
                                      "unknown: 1"])
    def test_invalid(self, text: str) -> None:
        with pytest.raises(CatalogFileError):
            parse_text(text)

    def test_duplicates(self) -> None:
        one = "  - name: a\n    deployments:\n      - name: d\n        upstream_model: m\n        base_url: http://h\n"
        with pytest.raises(CatalogFileError, match="more than once"):
            parse_text("models:\n" + one + one)


class TestPlanAndApplyInProcess:
    async def test_create_update_delete_cycle(self, settings: Any) -> None:
        from aiaas.entrypoints.bootstrap import Container
        from aiaas.inference.service.catalog_file import plan_and_apply

        name, org = f"file/{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
        one = ("  - name: {n}\n    deployments:\n      - name: d\n        upstream_model: m\n"
               "        base_url: http://h/v1\n        weight: {w}\n")
        c = Container(settings, role="api")
        try:
            async def run(text: str, dry: bool = False) -> list[str]:
                async with c.db.unit_of_work("inference") as s:
                    return [str(x) for x in await plan_and_apply(session=s, file=parse_text(text), dry_run=dry)]

            doc = ("models:\n" + one.format(n=name, w=1)
                   + f"org_model_access:\n  - org_id: {org}\n    models: [{name}]\n")
            planned = await run(doc, dry=True)  # other tests' file-managed entries would be deleted too
            assert {f"+ model {name}", f"+ access {org}: models ['{name}']"} <= set(planned)
            assert set(await run(doc)) == set(planned)
            assert await run(doc) == []
            changed = await run(doc.replace("weight: 1", "weight: 2"))
            assert len(changed) == 1 and changed[0].startswith(f"~ model {name}: changes deployments")
            gone = await run("models: []\n")
            assert f"- model {name}" in gone and f"- access {org}" in gone
        finally:
            await c.redis.aclose()
            await c.db.dispose()
