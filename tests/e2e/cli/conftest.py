"""One running platform per module for the ``aiaasctl`` journeys: ``aiaas serve --role all`` as a child
process on free ports (real PostgreSQL, Redis, RabbitMQ), a fake OpenAI upstream behind the model
``cli/chat``, a bootstrapped platform admin with a known password, and two more people.

The CLI itself runs as the installed ``aiaasctl`` script (beside ``sys.executable``), each test with its own
``XDG_CONFIG_HOME``, so nothing but the module's platform is shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aiaas.ctl import config as ctl_config
from aiaas.entrypoints.setup import bootstrap
from aiaas.kernel.config import Settings
from e2e.inference.conftest import with_thread
from fake_upstream import FakeUpstream
from support import Person, free_port, journey_platform, serving_all

AIAASCTL = Path(sys.executable).with_name("aiaasctl")
CHAT_MODEL = "cli/chat"
SLOW_MODEL = "cli/slow"  # streams 20 chunks 50 ms apart: the answer shows before it is complete
PASSWORD = "a long and correct passphrase"  # pragma: allowlist secret


@dataclass(frozen=True)
class Platform:
    """What the module's tests share: URLs, the admin (its org, its all-scopes key, a session) and people."""

    api_url: str
    inference_url: str
    admin: Person
    admin_token: str
    org_id: str
    org_name: str
    api_key: str
    ada: Person
    bob: Person
    server_log: Path
    server: subprocess.Popen[bytes]

    def http(self) -> httpx.Client:
        """An HTTP client of the management API signed in as the admin (for setting the scene only)."""
        return httpx.Client(base_url=self.api_url, headers={"authorization": f"Bearer {self.admin_token}"},
                            timeout=30)


@dataclass
class Ctl:
    """Runs ``aiaasctl`` with one test's config directory and the platform's URLs."""

    home: Path
    platform: Platform
    env_extra: dict[str, str]

    def env(self, **extra: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
        env.update(XDG_CONFIG_HOME=str(self.home), AIAAS_URL=self.platform.api_url,
                   AIAAS_INFERENCE_URL=self.platform.inference_url, COLUMNS="250", NO_COLOR="1")
        env.update(self.env_extra)
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def __call__(self, *args: str, input: str | None = None, check: bool = True, **env: str | None,
                 ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(AIAASCTL), *args], input=input, capture_output=True, text=True, timeout=60,
                              env=self.env(**env), check=False)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check and proc.returncode != 0:
            log = self.platform.server_log.read_bytes()[-3000:].decode(errors="replace")
            state = self.platform.server.poll()
            pytest.fail(f"aiaasctl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n"
                        f"server: {'running' if state is None else f'exited with {state}'}; its log (tail):\n{log}")
        return proc

    def sign_in_as_admin(self) -> None:
        """Store the admin's session as ``aiaasctl login`` would (saves a bcrypt check per test)."""
        ctl_config.save_credentials(self.home / "aiaas", ctl_config.Credentials(
            url=self.platform.api_url, token=self.platform.admin_token, email=self.platform.admin.email,
            user_id=self.platform.admin.user_id))


@pytest.fixture
def ctl(platform: Platform, tmp_path: Path) -> Ctl:
    """``aiaasctl`` with a config directory of this test's own, not signed in."""
    return Ctl(tmp_path / "config", platform, {})


@pytest.fixture
def admin_ctl(ctl: Ctl) -> Ctl:
    """``aiaasctl`` signed in as the platform admin, the bootstrap org current."""
    ctl.sign_in_as_admin()
    ctl_config.save_preferences(ctl.home / "aiaas", ctl_config.Preferences(
        url=ctl.platform.api_url, org_id=ctl.platform.org_id, org_name=ctl.platform.org_name))
    return ctl


def _person(http: httpx.Client, label: str) -> Person:
    email = f"{label}-{uuid.uuid4().hex[:8]}@example.com"
    r = http.post("/v1/admin/users", json={"email": email, "password": PASSWORD, "name": label.title()})
    assert r.status_code == 201, r.text
    return Person(email, PASSWORD, r.json()["id"])


@pytest.fixture(scope="module")
def platform(session_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tag = uuid.uuid4().hex[:6]
    settings, env = journey_platform(session_settings, "cli")
    admin_email, org_name = f"cli-admin-{tag}@example.com", f"cli-{tag}"
    boot = with_thread(lambda: bootstrap(settings, email=admin_email, password=PASSWORD, org_name=org_name,
                                         new_key=True))
    server_log = tmp_path_factory.mktemp("cli-platform") / "server.log"
    upstream = FakeUpstream(free_port(), slow_chunks=20).start()
    try:
        with server_log.open("wb") as log, serving_all(env, stdout=log) as (server, ports):
            api_url = f"http://127.0.0.1:{ports['api']}"
            login = httpx.post(f"{api_url}/v1/auth/login", json={"email": admin_email, "password": PASSWORD},
                               timeout=30).json()
            headers = {"authorization": f"Bearer {login['token']}"}
            with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
                for name, upstream_model in ((CHAT_MODEL, "fake"), (SLOW_MODEL, "slow-stream")):
                    r = http.post("/v1/admin/models", json={"name": name, "capabilities": ["chat"], "deployments": [
                        {"name": "fake", "provider": "openai", "upstream_model": upstream_model,
                         "base_url": upstream.base_url}]})
                    assert r.status_code == 201, r.text
                ada, bob = _person(http, "ada"), _person(http, "bob")
            yield Platform(api_url=api_url, inference_url=f"http://127.0.0.1:{ports['streamer']}",
                           admin=Person(admin_email, PASSWORD, login["user"]["id"]), admin_token=login["token"],
                           org_id=boot.org_id, org_name=org_name, api_key=boot.api_key or "", ada=ada, bob=bob,
                           server_log=server_log, server=server)
    finally:
        upstream.stop()
