"""``aiaasctl`` as a user runs it: the installed script against a running platform, every command, with
its failure paths (exit codes and the API's messages, never a traceback).

Each test has its own config directory and, where it changes anything, its own organization.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from e2e.cli.conftest import AIAASCTL, CHAT_MODEL, PASSWORD, SLOW_MODEL, Ctl, Platform
from support import free_port

# One worker runs the whole module (.ci/run distributes by --dist loadgroup): its platform starts once.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("cli")]

SECRET = re.compile(r"secret \(shown once, store it now\):\n(sk-\S+)\n")


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def new_org(c: Ctl) -> tuple[str, str]:
    """A fresh org of the signed-in user, made current; (id, name)."""
    name = unique("org")
    org = json.loads(c("orgs", "create", name, "--use", "-o", "json").stdout)
    return org["id"], name


def new_key(c: Ctl, name: str, *args: str) -> str:
    """A key of the current org; its secret (read from the labelled output)."""
    match = SECRET.search(c("keys", "create", name, *args).stdout)
    assert match, "no labelled secret in the output"
    return match.group(1)


def eventually(check: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    """``check()``'s first truthy result, polled until ``timeout`` (the worker writes usage off the path).
    Polls go straight to the API (a CLI process per poll would only add load); the CLI then reads once."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "condition not met in time"
            return result
        time.sleep(0.3)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


class TestSignIn:
    def test_login_whoami_logout(self, ctl: Ctl, platform: Platform) -> None:
        out = ctl("login", "--email", platform.admin.email, "--password-stdin", input=PASSWORD + "\n")
        assert f"Signed in to {platform.api_url} as {platform.admin.email}" in out.stdout
        creds = ctl.home / "aiaas" / "credentials.json"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        assert stat.S_IMODE(creds.parent.stat().st_mode) == 0o700
        stored = json.loads(creds.read_text())
        assert stored["token"] and stored["url"] == platform.api_url
        assert PASSWORD not in creds.read_text()

        me = as_json(ctl("whoami", "-o", "json"))
        assert me["email"] == platform.admin.email and me["platform_admin"] is True
        assert re.search(r"signed in via\s+session \(expires in 12h\)", ctl("whoami").stdout)

        assert "Signed out" in ctl("logout").stdout
        assert not creds.exists()
        gone = ctl("whoami", check=False)
        assert gone.returncode == 3
        assert "not signed in: run `aiaasctl login`" in gone.stderr
        # The server ended the session too: the old token is refused.
        ctl.home.joinpath("aiaas").mkdir(exist_ok=True)
        creds.write_text(json.dumps(stored))
        assert ctl("whoami", check=False).returncode == 3

    def test_wrong_password_exits_3_with_the_api_message(self, ctl: Ctl, platform: Platform) -> None:
        out = ctl("login", "--email", platform.admin.email, "--password-stdin", input="not the password\n",
                  check=False)
        assert out.returncode == 3
        assert "Email or password is wrong." in out.stderr
        assert out.stderr.startswith("error: ")
        assert not (ctl.home / "aiaas" / "credentials.json").exists()

    def test_interactive_login_types_the_password_at_a_hidden_prompt(self, ctl: Ctl, platform: Platform) -> None:
        env = ctl.env(AIAAS_URL=None)
        pid, fd = pty.fork()
        if pid == 0:  # the child: aiaasctl with the pseudo-terminal as its controlling terminal
            os.execve(str(AIAASCTL), [str(AIAASCTL), "login"], env)  # noqa: S606 - the test's own script
        transcript = b""
        try:
            # "Password: " with its space: getpass prints the space once the terminal stopped echoing (and
            # flushed what was typed before), as a person sees the prompt before typing.
            for prompt, answer in ((b"API URL [http://127.0.0.1:8000]:", platform.api_url),
                                   (b"Email:", platform.admin.email), (b"Password: ", PASSWORD)):
                transcript = _read_until(fd, transcript, prompt)
                os.write(fd, answer.encode() + b"\n")
            transcript = _read_until(fd, transcript, b"Signed in")
            transcript = _read_until(fd, transcript, None)
        finally:
            os.close(fd)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, transcript.decode(errors="replace")
        assert platform.admin.email.encode() in transcript  # typed at a visible prompt: echoed
        assert PASSWORD.encode() not in transcript  # typed at the hidden prompt: never shown
        assert as_json(ctl("whoami", "-o", "json", AIAAS_URL=None))["email"] == platform.admin.email

    def test_an_api_key_is_used_instead_of_a_session(self, ctl: Ctl, platform: Platform) -> None:
        orgs = as_json(ctl("orgs", "list", "-o", "json", AIAAS_API_KEY=platform.api_key))
        assert [o["id"] for o in orgs["data"]] == [platform.org_id]
        who = ctl("whoami", "--api-key", platform.api_key)
        assert re.search(r"signed in via\s+API key sk-", who.stdout) and platform.admin.email in who.stdout
        assert "bootstrap" in ctl("keys", "list", AIAAS_API_KEY=platform.api_key).stdout
        refused = ctl("whoami", AIAAS_API_KEY="sk-not-a-real-key", check=False)
        assert refused.returncode == 3 and "Invalid, expired or revoked API key" in refused.stderr

    def test_an_unreachable_server_exits_6(self, ctl: Ctl) -> None:
        out = ctl("whoami", AIAAS_URL=f"http://127.0.0.1:{free_port()}", check=False)
        assert out.returncode == 6
        assert "cannot reach http://127.0.0.1:" in out.stderr


def _read_until(fd: int, seen: bytes, marker: bytes | None, timeout: float = 10.0) -> bytes:
    """Read the terminal until ``marker`` shows (``None``: until the child closes it)."""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {marker!r}; got {seen.decode(errors='replace')!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child exited and closed the terminal
            chunk = b""
        if not chunk:
            assert marker is None, f"the terminal closed before {marker!r}; got {seen.decode(errors='replace')!r}"
            return seen
        seen += chunk
    return seen


class TestOrgs:
    def test_create_use_show_rename_delete(self, admin_ctl: Ctl) -> None:
        name = unique("org")
        org = as_json(admin_ctl("orgs", "create", name, "-o", "json"))
        assert org["name"] == name and org["role"] == "owner"
        assert "Current organization" in admin_ctl("orgs", "use", name).stdout
        listed = admin_ctl("orgs", "list", "--all").stdout
        assert re.search(rf"^\*\s+{org['id']}\s+{name}\s+owner", listed, re.M), listed
        assert name in admin_ctl("orgs", "show").stdout

        renamed = as_json(admin_ctl("orgs", "rename", name, f"{name}-2", "-o", "json"))
        assert renamed["name"] == f"{name}-2"
        assert as_json(admin_ctl("orgs", "show", org["id"], "-o", "json"))["name"] == f"{name}-2"

        unconfirmed = admin_ctl("orgs", "delete", f"{name}-2", check=False)
        assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
        assert "Deleted organization" in admin_ctl("orgs", "delete", f"{name}-2", "--yes").stdout
        assert admin_ctl("orgs", "show", org["id"], check=False).returncode == 5
        missing = admin_ctl("orgs", "show", unique("no-such-org"), check=False)
        assert missing.returncode == 5 and "no organization" in missing.stderr


class TestMembers:
    def test_add_list_set_role_remove(self, admin_ctl: Ctl, platform: Platform) -> None:
        new_org(admin_ctl)
        ada = platform.ada
        added = as_json(admin_ctl("members", "add", ada.email, "--role", "admin", "-o", "json"))
        assert added["user_id"] == ada.user_id and added["role"] == "admin"
        assert re.search(rf"{ada.user_id}\s+{re.escape(ada.email)}\s+Ada\s+admin", admin_ctl("members", "list").stdout)

        admin_ctl("members", "set-role", ada.email, "--role", "viewer")
        members = as_json(admin_ctl("members", "list", "-o", "json"))["data"]
        assert {m["email"]: m["role"] for m in members}[ada.email] == "viewer"
        viewers = as_json(admin_ctl("members", "list", "--role", "viewer", "-o", "json"))["data"]
        assert [m["user_id"] for m in viewers] == [ada.user_id]

        assert "Removed" in admin_ctl("members", "remove", ada.user_id).stdout
        assert ada.email not in admin_ctl("members", "list").stdout
        unknown = admin_ctl("members", "set-role", "nobody@example.com", "--role", "member", check=False)
        assert unknown.returncode == 5 and "no member 'nobody@example.com'" in unknown.stderr

    def test_a_member_without_the_permission_gets_the_403_detail(self, admin_ctl: Ctl, platform: Platform,
                                                                   tmp_path: Any) -> None:
        org_id, _ = new_org(admin_ctl)
        admin_ctl("members", "add", platform.bob.email, "--role", "member")
        bob = Ctl(tmp_path / "bob", platform, {"AIAAS_ORG": org_id})
        bob("login", "--email", platform.bob.email, "--password-stdin", input=PASSWORD + "\n")

        refused = bob("members", "add", platform.ada.email, check=False)
        assert refused.returncode == 4
        assert refused.stderr == ("error: Permission denied: This action needs the 'members:manage' permission. "
                                  "[HTTP 403]\n")
        assert bob("audit", check=False).returncode == 4
        assert bob("orgs", "delete", org_id, "--yes", check=False).returncode == 4
        # What a member may do still works.
        assert platform.admin.email in bob("members", "list").stdout


class TestKeys:
    def test_create_list_show_rotate_revoke(self, admin_ctl: Ctl, platform: Platform) -> None:
        org_id, _ = new_org(admin_ctl)
        name = unique("notebook")
        secret = new_key(admin_ctl, name, "--scope", "inference", "--model", CHAT_MODEL, "--rpm", "60", "--tpm",
                         "100000", "--expires-in", "30d")
        row = next(ln for ln in admin_ctl("keys", "list").stdout.splitlines() if name in ln)
        assert secret[:12] in row and "60 rpm, 100000 tpm" in row and "never" in row and CHAT_MODEL in row
        shown = as_json(admin_ctl("keys", "show", name, "-o", "json"))
        assert shown["scopes"] == ["inference"] and shown["allowed_models"] == [CHAT_MODEL]
        expires = datetime.fromisoformat(shown["expires_at"].replace("Z", "+00:00"))
        assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)

        assert admin_ctl("chat", CHAT_MODEL, "hi", AIAAS_API_KEY=secret).stdout == "Hello from fake\n"
        # The worker moves last-used stamps to the database every second here.
        with platform.http() as http:
            eventually(lambda: http.get(f"/v1/orgs/{org_id}/keys/{shown['id']}").json()["last_used_at"])
        assert re.search(rf"{name}.*\s\d+[smh] ago\s", admin_ctl("keys", "list").stdout)

        rotated = admin_ctl("keys", "rotate", name, "--grace", "1h")
        successor = SECRET.search(rotated.stdout.replace("New API key secret", "secret"))
        assert successor and successor.group(1) != secret
        assert "keeps working for 1h" in rotated.stderr
        # Old and new are both active during the grace period: the name alone is ambiguous.
        ambiguous = admin_ctl("keys", "revoke", name, check=False)
        assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr
        assert "Revoked key" in admin_ctl("keys", "revoke", successor.group(1)[:12]).stdout

        refused = admin_ctl("chat", CHAT_MODEL, "hi", AIAAS_API_KEY=successor.group(1), check=False)
        assert refused.returncode == 3 and "[HTTP 401]" in refused.stderr
        keys = as_json(admin_ctl("keys", "list", "--include-revoked", "-o", "json"))["data"]
        assert sorted(k["status"] for k in keys if k["name"] == name) == ["active", "revoked"]


class TestInference:
    def test_chat_streams_the_answer_and_reports_usage(self, ctl: Ctl, platform: Platform) -> None:
        out = ctl("chat", CHAT_MODEL, "Hello", AIAAS_API_KEY=platform.api_key)
        assert out.stdout == "Hello from fake\n"
        assert "7 prompt + 3 completion = 10 tokens" in out.stderr
        assert re.search(r"first token \d+ ms · total \d+ ms · request req_", out.stderr)
        piped = ctl("chat", CHAT_MODEL, input="a prompt on stdin", AIAAS_API_KEY=platform.api_key)
        assert piped.stdout == "Hello from fake\n"
        doc = as_json(ctl("chat", CHAT_MODEL, "Hello", "-o", "json", AIAAS_API_KEY=platform.api_key))
        assert doc["choices"][0]["message"]["content"] == "Hello from fake"

        missing = ctl("chat", "cli/no-such-model", "Hello", AIAAS_API_KEY=platform.api_key, check=False)
        assert missing.returncode == 5 and "[HTTP 404]" in missing.stderr
        no_key = ctl("chat", CHAT_MODEL, "Hello", check=False)
        assert no_key.returncode == 3 and "needs an API key" in no_key.stderr

    def test_the_answer_shows_while_it_is_still_streaming(self, ctl: Ctl, platform: Platform) -> None:
        proc = subprocess.Popen([str(AIAASCTL), "chat", SLOW_MODEL, "count"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=ctl.env(AIAAS_API_KEY=platform.api_key))
        try:
            assert proc.stdout is not None
            first = proc.stdout.read1(64)  # type: ignore[attr-defined]
            assert first.startswith(b" t0")
            assert proc.poll() is None  # 19 more chunks to come, 50 ms apart
        finally:
            rest, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert (first + rest).decode().split() == [f"t{i}" for i in range(20)]

    def test_models(self, ctl: Ctl, admin_ctl: Ctl, platform: Platform) -> None:
        assert CHAT_MODEL in ctl("models", AIAAS_API_KEY=platform.api_key).stdout
        catalog = admin_ctl("models", "--catalog").stdout
        assert re.search(rf"{CHAT_MODEL}\s+chat\s+-\s+fake \(openai:fake\)", catalog), catalog
        health = admin_ctl("models", "--health").stdout
        assert re.search(rf"{CHAT_MODEL}\s+fake\s+openai\s+yes\s+1\s+0\s+closed\s+0\s+-", health), health
        assert ctl("models", check=False).returncode == 3


class TestUsage:
    def test_ledger_csv_and_summary(self, admin_ctl: Ctl, platform: Platform) -> None:
        org_id, _ = new_org(admin_ctl)
        secret = new_key(admin_ctl, "metered")
        for _ in range(2):
            admin_ctl("chat", CHAT_MODEL, "hi", AIAAS_API_KEY=secret)
        with platform.http() as http:  # the ledger and the projections are written by the worker
            eventually(lambda: len(http.get("/v1/usage/requests", params={"org_id": org_id}).json()["data"]) == 2)
            day = {"org_id": org_id, "start": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
                   "end": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
            eventually(lambda: sum(r["requests"] for r in http.get("/v1/analytics/usage", params=day).json()["data"])
                       == 2)

        rows = as_json(admin_ctl("usage", "--json"))["data"]
        assert len(rows) == 2
        assert {(r["model"], r["status"], r["total_tokens"]) for r in rows} == {(CHAT_MODEL, "ok", 10)}
        table = admin_ctl("usage", "--key", "metered", "--model", CHAT_MODEL).stdout
        assert len([ln for ln in table.splitlines() if CHAT_MODEL in ln]) == 2
        assert "no requests" in admin_ctl("usage", "--status", "error").stderr
        assert as_json(admin_ctl("usage", "--since", "1h", "--until", "now", "--limit", "1", "-o", "json"))[
            "has_more"] is True

        exported = list(csv.DictReader(io.StringIO(admin_ctl("usage", "--csv").stdout)))
        assert [r["model"] for r in exported] == [CHAT_MODEL, CHAT_MODEL]

        summary = as_json(admin_ctl("usage", "--group-by", "model", "--json"))["data"]
        assert {r["model"] for r in summary} == {CHAT_MODEL}  # (two day buckets if run across midnight UTC)
        assert sum(r["requests"] for r in summary) == 2 and sum(r["total_tokens"] for r in summary) == 20
        by_day = admin_ctl("usage", "--summary", "--granularity", "day", "--since", "2h").stdout
        assert re.search(r"00:00 UTC\s+2\s+0\s+14\s+6\s+20\s+0\s+2", by_day), by_day


class TestAudit:
    def test_org_and_platform_audit_with_filters_and_pages(self, admin_ctl: Ctl, platform: Platform) -> None:
        org_id, _ = new_org(admin_ctl)
        admin_ctl("members", "add", platform.ada.email)
        new_key(admin_ctl, "audited")

        log = admin_ctl("audit").stdout  # newest first
        assert log.index("key.create") < log.index("member.add") < log.index("org.create"), log
        added = as_json(admin_ctl("audit", "--action", "member.add", "-o", "json"))["data"]
        assert [e["target_id"] for e in added] == [platform.ada.user_id]
        assert len(as_json(admin_ctl("audit", "--actor", platform.admin.email, "-o", "json"))["data"]) == 3

        first = admin_ctl("audit", "--limit", "1")
        assert first.stdout.count("org.create") + first.stdout.count("key.create") == 1
        assert "more entries on the server" in first.stderr
        every = as_json(admin_ctl("audit", "--all", "-o", "json"))
        assert len(every["data"]) == 3 and every["has_more"] is False

        platform_log = as_json(admin_ctl("audit", "--platform", "--org", org_id, "--action", "org.create",
                                         "-o", "json"))["data"]
        assert [e["org_id"] for e in platform_log] == [org_id]
