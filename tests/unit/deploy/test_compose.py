"""compose.yaml, the single-host install, read as Compose reads it (no container engine runs here).

What an operator relies on is checked against the code it must match: the ports and probes the roles
really serve, the one-shot migrate + bootstrap the roles wait for, health checks on every dependency,
named volumes, a locked-down container, and no secret anywhere but the git-ignored .env.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiaas.kernel.config import load_settings
from aiaas.kernel.health import observability_handlers

ROOT = Path(__file__).resolve().parents[3]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ROLES = {"aiaas": "all", "api": "api", "streamer": "streamer", "worker": "worker"}
AIAAS = [*ROLES, "init"]
REQUIRED = re.compile(r"\$\{([A-Z_]+):\?[^}]*\}")


def _env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


class TestRoles:
    @pytest.mark.parametrize("name", list(ROLES))
    def test_each_role_serves_its_role_and_probes_its_own_readiness(self, name: str) -> None:
        svc = SERVICES[name]
        assert svc["command"] == ["serve", "--role", ROLES[name]]
        settings = load_settings({})
        port = {"aiaas": settings.api_port, "api": settings.api_port, "streamer": settings.streamer_port,
                "worker": settings.worker_port}[name]
        probe = re.search(r"'http://127\.0\.0\.1:%s(/[a-z]+)'", " ".join(svc["healthcheck"]["test"]))
        assert probe and probe[1] == "/ready", "the probe asks for readiness"
        served = {p for h in observability_handlers(role=ROLES[name], checks={}, timeout=1, extra_state=None,
                                                    degradable=(), metrics_token=None, metrics_open=True)
                  for p in h.paths}
        assert probe[1] in served, f"the app serves no {probe[1]}"
        assert int(_env(name).get("PROBE_PORT", "8000")) == port
        for published in svc.get("ports", []):
            _, container = published.split(":")
            assert int(container) in (settings.api_port, settings.streamer_port), published

    @pytest.mark.parametrize("name", list(ROLES))
    def test_no_role_starts_before_the_schema_and_the_first_admin(self, name: str) -> None:
        deps = SERVICES[name]["depends_on"]
        assert deps["init"] == {"condition": "service_completed_successfully"}
        assert all(deps[s] == {"condition": "service_healthy"} for s in ("postgres", "redis", "rabbitmq"))

    def test_init_migrates_then_bootstraps_once(self) -> None:
        init = SERVICES["init"]
        assert init["entrypoint"][-1] == "aiaas migrate && aiaas bootstrap"
        assert init["restart"] == "no"

    def test_the_split_roles_are_a_profile_and_role_all_is_the_default(self) -> None:
        assert "profiles" not in SERVICES["aiaas"]
        assert all(SERVICES[n]["profiles"] == ["split"] for n in ("api", "streamer", "worker"))
        # The embedded model is on by default wherever inference is served (the first request answers).
        assert "AIAAS_LOCAL_MODEL_ENABLED" not in _env("aiaas") and "AIAAS_LOCAL_MODEL_ENABLED" not in _env("streamer")


class TestContainers:
    @pytest.mark.parametrize("name", AIAAS)
    def test_locked_down(self, name: str) -> None:
        svc = SERVICES[name]
        assert svc["read_only"] is True and svc["tmpfs"] == ["/tmp"]  # noqa: S108 - the container's own tmpfs
        assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"]
        assert _env(name)["AIAAS_ENV"] == "production"

    @pytest.mark.parametrize("name", ["postgres", "redis", "rabbitmq"])
    def test_every_dependency_has_a_health_check_and_a_named_volume(self, name: str) -> None:
        svc = SERVICES[name]
        assert svc["healthcheck"]["test"]
        for volume in svc["volumes"]:
            assert volume.split(":")[0] in COMPOSE["volumes"], volume


class TestSecrets:
    def _walk(self, node: Any, path: str = "") -> list[tuple[str, str]]:
        if isinstance(node, dict):
            return [x for k, v in node.items() for x in self._walk(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [x for i, v in enumerate(node) for x in self._walk(v, f"{path}[{i}]")]
        return [(path, str(node))]

    def test_no_secret_is_written_in_the_file(self) -> None:
        for path, value in self._walk(COMPOSE):
            if re.search(r"PASSWORD|PASS\b|SECRET|TOKEN", path.rsplit(".", 1)[-1]):
                assert REQUIRED.fullmatch(value), f"{path} holds a value, not a reference to .env"
            # Credentials inside URLs come from .env too.
            for cred in re.findall(r"://[^:/@]*:([^@]*)@", value):
                assert REQUIRED.fullmatch(cred), f"{path}: a credential in a URL that is not from .env"

    def test_every_required_variable_is_in_the_committed_template_and_env_is_ignored(self) -> None:
        required = set(REQUIRED.findall((ROOT / "compose.yaml").read_text()))
        template = (ROOT / ".env.example").read_text()
        listed = {line.split("=", 1)[0] for line in template.splitlines() if re.match(r"^[A-Z_]+=", line)}
        assert required and required <= listed, required - listed
        assert all(not line.split("=", 1)[1] for line in template.splitlines()
                   if re.match(r"^[A-Z_]*(PASSWORD|TOKEN)=", line)), "the template must not carry a secret"
        assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
        assert all(svc.get("env_file") == [".env"] for name, svc in SERVICES.items() if name in AIAAS)
