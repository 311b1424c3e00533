"""`aiaas bootstrap` as a real process: idempotent, prints the key once, and the key works."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

from litestar.testing import AsyncTestClient

from .conftest import bearer


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiaas", "bootstrap", *args], env=env, capture_output=True,
                          text=True, timeout=120)


class TestBootstrap:
    async def test_idempotent_and_key_works(self, session_env: dict[str, str], api_client: AsyncTestClient[Any],
                                            streamer_client: AsyncTestClient[Any]) -> None:
        email = f"boot-{uuid.uuid4().hex[:8]}@example.com"
        env = {**session_env, "AIAAS_BOOTSTRAP_ADMIN_EMAIL": email, "AIAAS_BOOTSTRAP_ORG": "boot-org"}
        env.pop("AIAAS_BOOTSTRAP_ADMIN_PASSWORD", None)
        first = _run(env, "--json")
        assert first.returncode == 0, first.stderr
        doc = json.loads(first.stdout)
        assert set(doc) == {"api_key", "org_id", "admin_email"}
        assert doc["admin_email"] == email and doc["api_key"].startswith("sk-")
        assert "generated admin password" in first.stderr  # no password given: one was generated, shown once

        r = await api_client.get(f"/v1/orgs/{doc['org_id']}", headers=bearer(doc["api_key"]))
        assert r.status_code == 200 and r.json()["role"] == "owner"
        members = (await api_client.get(f"/v1/orgs/{doc['org_id']}/members",
                                        headers=bearer(doc["api_key"]))).json()["data"]
        assert [m["role"] for m in members] == ["owner"]

        again = _run(env, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == {"api_key": None, "org_id": doc["org_id"], "admin_email": email}
        plain = _run(env)
        assert "already exists" in plain.stdout and "sk-" not in plain.stdout

        fresh = _run(env, "--json", "--new-key")
        new_doc = json.loads(fresh.stdout)
        assert new_doc["org_id"] == doc["org_id"] and new_doc["api_key"] not in (None, doc["api_key"])
        keys = (await api_client.get(f"/v1/orgs/{doc['org_id']}/keys", headers=bearer(new_doc["api_key"]))).json()
        assert [k["name"] for k in keys["data"]] == ["bootstrap", "bootstrap"]
        assert all(set(k["scopes"]) >= {"inference"} for k in keys["data"])

    async def test_password_from_env_logs_in(self, session_env: dict[str, str],
                                             api_client: AsyncTestClient[Any]) -> None:
        email = f"boot-{uuid.uuid4().hex[:8]}@example.com"
        password = "a-long-bootstrap-password"  # pragma: allowlist secret
        env = {**session_env, "AIAAS_BOOTSTRAP_ADMIN_PASSWORD": password}
        r = _run(env, "--email", email, "--org", "other")
        assert r.returncode == 0, r.stderr
        assert "API key (shown once" in r.stdout and password not in r.stdout
        login = await api_client.post("/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200 and login.json()["user"]["platform_admin"] is True


class TestBootstrapInProcess:
    def test_main_prints_json_then_nothing_new(self, session_env: dict[str, str], monkeypatch: Any,
                                               capsys: Any) -> None:
        from aiaas.entrypoints import cli

        for name, value in session_env.items():
            if name.startswith("AIAAS_"):
                monkeypatch.setenv(name, value)
        email = f"inproc-{uuid.uuid4().hex[:8]}@example.com"
        monkeypatch.setenv("AIAAS_BOOTSTRAP_ADMIN_PASSWORD", "in-process-password")  # pragma: allowlist secret
        assert cli.main(["bootstrap", "--json", "--email", email, "--org", "inproc"]) == 0
        first = json.loads(capsys.readouterr().out)
        assert first["admin_email"] == email and first["api_key"].startswith("sk-")
        assert cli.main(["bootstrap", "--email", email, "--org", "inproc"]) == 0
        out = capsys.readouterr().out
        assert "found existing platform admin" in out and first["org_id"] in out and "sk-" not in out
        assert cli.main(["bootstrap", "--email", email, "--org", "inproc", "--new-key"]) == 0
        assert "API key (shown once" in capsys.readouterr().out

    def test_short_password_is_a_clear_error(self, session_env: dict[str, str], monkeypatch: Any,
                                             capsys: Any) -> None:
        from aiaas.entrypoints import cli

        for name, value in session_env.items():
            if name.startswith("AIAAS_"):
                monkeypatch.setenv(name, value)
        email = f"inproc-{uuid.uuid4().hex[:8]}@example.com"
        assert cli.main(["bootstrap", "--email", email, "--password", "x" * 80]) == 1
        assert "72 bytes" in capsys.readouterr().err
