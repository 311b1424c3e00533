"""A running platform attacked over loopback, as a tenant, an org admin and a platform admin would.

One ``aiaas serve --role all`` process per session (its own Redis and broker prefixes), in
``production`` mode so the production defaults are what is attacked, in front of a fake OpenAI-wire
upstream. Every identity is made through the public HTTP API by the bootstrap admin: nothing here calls a
service directly, so what the tests find is what an attacker on the network would find.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from aiaas.kernel.config import Settings
from fake_upstream import FakeUpstream
from identity_support import Actor, Tenant
from support import env_of, free_port, stop_process, wait_http

PASSWORD = "correct horse battery staple"  # pragma: allowlist secret
ADMIN_PASSWORD = "platform admin password for the security suite"  # pragma: allowlist secret
METRICS_TOKEN = "metrics-token-of-the-security-suite"  # pragma: allowlist secret
ROLES = ("owner", "admin", "member", "viewer")


@dataclass
class Platform:
    """Handles on the running platform."""

    api: str  # base URL of the management API
    streamer: str  # base URL of the inference API
    worker: str
    env: dict[str, str]
    settings: Settings
    upstream: FakeUpstream
    admin: Actor

    def client(self, base: str | None = None, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=base or self.api, headers=headers, timeout=30)

    def login(self, email: str, password: str = PASSWORD) -> str:
        """Sign in from an address of its own (any 127.x.y.z is loopback), so the suite's own sign-ins do
        not use up the per-address login limit the attacks test."""
        source = f"127.{secrets.randbelow(200) + 30}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"
        with httpx.Client(base_url=self.api, transport=httpx.HTTPTransport(local_address=source), timeout=30) as c:
            r = c.post("/v1/auth/login", json={"email": email, "password": password})
            assert r.status_code == 200, r.text
            return str(r.json()["token"])

    def person(self, *, label: str = "u", platform_admin: bool = False) -> Actor:
        """A new person, made by the platform admin, signed in."""
        email = f"{label}-{uuid.uuid4().hex[:10]}@example.com"
        with self.client(token=self.admin.token) as c:
            r = c.post("/v1/admin/users", json={"email": email, "password": PASSWORD,
                                                "platform_admin": platform_admin})
            assert r.status_code == 201, r.text
            uid = r.json()["id"]
        return Actor(email=email, user_id=uid, token=self.login(email))

    def tenant(self) -> Tenant:
        """An org with one person per role (owner, admin, member, viewer); each but the viewer holds a key
        with every scope."""
        owner = self.person(label="owner")
        with self.client(token=owner.token) as c:
            r = c.post("/v1/orgs", json={"name": f"sec-{uuid.uuid4().hex[:8]}"})
            assert r.status_code == 201, r.text
            t = Tenant(org_id=r.json()["id"], actors={"owner": owner})
            for role in ROLES[1:]:
                a = self.person(label=role)
                r = c.post(f"/v1/orgs/{t.org_id}/members", json={"email": a.email, "role": role})
                assert r.status_code == 201, r.text
                t.actors[role] = a
        for a in t.actors.values():
            with self.client(token=a.token) as c:
                r = c.post(f"/v1/orgs/{t.org_id}/keys",
                           json={"name": "all", "scopes": ["inference", "management:read", "management:write"]})
                if r.status_code == 201:
                    a.key, a.key_id = r.json()["key"], r.json()["api_key"]["id"]
        return t


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "aiaas", "serve", "--role", "all"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def platform(session_settings: Settings) -> Iterator[Platform]:
    s = msgspec.structs.replace(session_settings, redis_prefix=f"{session_settings.redis_prefix}sec:",
                                broker_prefix=f"{session_settings.broker_prefix}sec.", env="production",
                                local_model_enabled=False)
    upstream = FakeUpstream(free_port()).start()
    ports = {"api": free_port(), "streamer": free_port(), "worker": free_port()}
    env = {**env_of(s), "AIAAS_API_PORT": str(ports["api"]), "AIAAS_STREAMER_PORT": str(ports["streamer"]),
           "AIAAS_WORKER_PORT": str(ports["worker"]), "AIAAS_LOG_LEVEL": "WARNING",
           "AIAAS_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD, "AIAAS_METRICS_TOKEN": METRICS_TOKEN,
           # The production limit (the session's settings lift it for in-process test clients).
           "AIAAS_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "30",
           # Production denies loopback upstreams: the fake one is allowed by its exact address and port.
           "AIAAS_UPSTREAM_EGRESS_ALLOW": f"127.0.0.1:{upstream.port}"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    boot = subprocess.run([sys.executable, "-m", "aiaas", "bootstrap", "--json", "--email", email], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    proc: subprocess.Popen[bytes] | None = None
    try:
        assert boot.returncode == 0, boot.stderr
        proc = _start(env)
        for port in ports.values():
            wait_http(f"http://127.0.0.1:{port}/health")
        p = Platform(api=f"http://127.0.0.1:{ports['api']}", streamer=f"http://127.0.0.1:{ports['streamer']}",
                     worker=f"http://127.0.0.1:{ports['worker']}", env=env, settings=s, upstream=upstream,
                     admin=Actor(email=email, user_id="", token=""))
        p.admin.token = p.login(email, ADMIN_PASSWORD)
        with p.client(token=p.admin.token) as c:
            p.admin.user_id = c.get("/v1/users/me").json()["id"]
        p.admin.key = json.loads(boot.stdout)["api_key"]
        yield p
    finally:
        if proc is not None:
            _stop(proc)
        upstream.stop()


@pytest.fixture(scope="session")
def tenants(platform: Platform) -> tuple[Tenant, Tenant]:
    """Two orgs, each with an owner, an admin, a member and a viewer."""
    return platform.tenant(), platform.tenant()


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``r`` is an RFC 7807 problem with ``status``; return its document."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    doc = r.json()
    assert doc["status"] == status
    return doc  # type: ignore[no-any-return]
