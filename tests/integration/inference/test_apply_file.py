"""`aiaas apply -f FILE`: reconciles the catalog with a YAML file, idempotently, with a dry run."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

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
