"""The web console in a real browser: ``aiaas serve --role all`` as a child process (real PostgreSQL, Redis
and RabbitMQ; the api port serves the console, the management API and inference), a fake OpenAI upstream
behind the model ``console/chat`` (slow-streaming, so tokens visibly arrive one by one), a bootstrapped
platform admin with a known password, and Debian's Chromium driven by Playwright (no browser download).

Every page a test opens records the requests it makes and the Content-Security-Policy violations it
reports; after the test each ``/v1/…`` request must be an operation of ``contracts/openapi.yaml`` and no
violation may have happened.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aiaas.entrypoints.setup import bootstrap
from aiaas.kernel.config import Settings
from e2e.inference.conftest import with_thread
from fake_upstream import FakeUpstream
from support import Person, free_port, journey_platform, missing_tool, serving_all

ROOT = Path(__file__).resolve().parents[3]
CONTRACT = ROOT / "contracts" / "openapi.yaml"
AXE = ROOT / "src" / "console" / "node_modules" / "axe-core" / "axe.min.js"
MODEL = "console/chat"
PASSWORD = "a long and correct passphrase"  # pragma: allowlist secret
SLOW_CHUNKS = 12  # the fake streams " t0", " t1", … 50 ms apart


def artifacts_dir() -> Path:
    """Where screenshots go (``$AIAAS_TEST_ARTIFACTS/console``, default ``tests/.artifacts/console``)."""
    base = Path(os.environ.get("AIAAS_TEST_ARTIFACTS", ROOT / "tests" / ".artifacts"))
    out = base / "console"
    out.mkdir(parents=True, exist_ok=True)
    return out


def contract_operations() -> list[tuple[str, re.Pattern[str]]]:
    """(METHOD, path regex) of every operation of the contract."""
    doc = yaml.load(CONTRACT.read_text(), Loader=yaml.CSafeLoader)
    ops = []
    for template, item in doc["paths"].items():
        pattern = re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part)
                                     for part in re.split(r"(\{[^}]+\})", template)))
        for method in item:
            if method in {"get", "post", "put", "patch", "delete"}:
                ops.append((method.upper(), pattern))
    return ops


@dataclass(frozen=True)
class Platform:
    """What the module's tests share: the console's URL, the admin and their org."""

    base_url: str
    admin: Person
    admin_token: str
    org_id: str
    org_name: str
    server_log: Path

    @property
    def console_url(self) -> str:
        return f"{self.base_url}/console/"

    def http(self, token: str | None = None) -> httpx.Client:
        """A client of the api port, signed in as the admin unless another token is given."""
        return httpx.Client(base_url=self.base_url, timeout=30,
                            headers={"authorization": f"Bearer {token or self.admin_token}"})

    def person(self, label: str, role: str | None = None) -> Person:
        """A new user (made by the admin), added to the admin's org with ``role`` when given."""
        email = f"{label}-{uuid.uuid4().hex[:8]}@example.com"
        with self.http() as http:
            r = http.post("/v1/admin/users", json={"email": email, "password": PASSWORD, "name": label.title()})
            assert r.status_code == 201, r.text
            user_id = r.json()["id"]
            if role:
                r = http.post(f"/v1/orgs/{self.org_id}/members", json={"email": email, "role": role})
                assert r.status_code == 201, r.text
        return Person(email, PASSWORD, user_id)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing_tool("chromium is not installed (apt-get install chromium)")
    return str(path)


@pytest.fixture(scope="module")
def platform(session_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tag = uuid.uuid4().hex[:6]
    settings, env = journey_platform(session_settings, "console")
    admin_email, org_name = f"console-admin-{tag}@example.com", f"console-{tag}"
    boot = with_thread(lambda: bootstrap(settings, email=admin_email, password=PASSWORD, org_name=org_name,
                                         new_key=False))
    server_log = tmp_path_factory.mktemp("console-platform") / "server.log"
    upstream = FakeUpstream(free_port(), slow_chunks=SLOW_CHUNKS).start()
    try:
        with server_log.open("wb") as log, serving_all(env, stdout=log) as (_, ports):
            base = f"http://127.0.0.1:{ports['api']}"
            login = httpx.post(f"{base}/v1/auth/login", json={"email": admin_email, "password": PASSWORD},
                               timeout=30)
            assert login.status_code == 200, login.text
            token = login.json()["token"]
            with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=30) as http:
                r = http.post("/v1/admin/models", json={"name": MODEL, "capabilities": ["chat"], "deployments": [
                    {"name": "fake", "provider": "openai", "upstream_model": "slow-stream",
                     "base_url": upstream.base_url}]})
                assert r.status_code == 201, r.text
                r = http.post("/v1/admin/prices", json={"model": MODEL, "input_per_mtok": "0.5",
                                                        "output_per_mtok": "1.5",
                                                        "effective_from": "2020-01-01T00:00:00Z"})
                assert r.status_code == 201, r.text
            yield Platform(base_url=base, admin=Person(admin_email, PASSWORD, login.json()["user"]["id"]),
                           admin_token=token, org_id=boot.org_id, org_name=org_name, server_log=server_log)
    finally:
        upstream.stop()


class BrowserThread:
    """Headless Chromium (the system's) driven from a thread of its own.

    Playwright's sync API marks its event loop as running on the thread that uses it, and every test here
    also sets up an async fixture (the leak check's) on pytest's loop in the main thread: the two cannot
    share a thread. So the browser lives on this thread, and ``run(fn)`` runs ``fn(browser)`` there.
    """

    def __init__(self, executable: str) -> None:
        self._executable = executable
        self._jobs: queue.Queue[tuple[Callable[[Any], Any], Future[Any]] | None] = queue.Queue()
        self._started: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name="console-browser", daemon=True)
        self._thread.start()
        self._started.result(timeout=60)

    def _main(self) -> None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            self._started.set_exception(exc)
            return
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=self._executable, args=["--no-sandbox"], headless=True)
                try:
                    # Chromium starts its long-lived helpers (GPU, network, storage) with the first page:
                    # start them now, so they belong to this fixture rather than to the first test.
                    browser.new_page().context.close()
                    self._started.set_result(None)
                    while (job := self._jobs.get()) is not None:
                        fn, done = job
                        try:
                            done.set_result(fn(browser))
                        except BaseException as exc:  # handed to the test's thread, which raises it
                            done.set_exception(exc)
                finally:
                    browser.close()
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)

    def run(self, fn: Callable[[Any], Any], *, timeout: float = 120) -> Any:
        done: Future[Any] = Future()
        self._jobs.put((fn, done))
        return done.result(timeout=timeout)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(30)


@pytest.fixture(scope="module")
def browser(chromium_path: str, platform: Platform) -> Iterator[BrowserThread]:
    """The module's browser, closed (with Playwright's driver) when the module ends, before the platform."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing_tool("playwright is not installed (pip install playwright; no browser download needed)")
    bt = BrowserThread(chromium_path)
    try:
        yield bt
    finally:
        bt.close()


@dataclass
class Recorded:
    requests: list[tuple[str, str]] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def open_page(browser: Any, *, bypass_csp: bool = False, width: int = 1280, height: int = 900,
              recorded: Recorded | None = None) -> tuple[Any, Any]:
    """A new context and page; the page's requests, CSP violations and script errors go to ``recorded``."""
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=bypass_csp,
                                  permissions=["clipboard-read", "clipboard-write"], accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    if recorded is not None:
        page.on("request", lambda r: recorded.requests.append((r.method, r.url)))
        page.on("console", lambda m: recorded.csp.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: recorded.errors.append(str(e)))
    return context, page


@pytest.fixture
def recorded(platform: Platform) -> Iterator[Recorded]:
    """What the test's pages did; checked against the contract and the CSP after the test."""
    rec = Recorded()
    yield rec
    ops = contract_operations()
    prefix = platform.base_url
    unknown = []
    for method, url in rec.requests:
        if not url.startswith(prefix):
            unknown.append((method, url))  # the console talks to its own origin only
            continue
        path = url[len(prefix):].split("?", 1)[0]
        if path.startswith("/v1/") and not any(m == method and p.fullmatch(path) for m, p in ops):
            unknown.append((method, path))
    assert not unknown, f"requests that are no operation of the contract (or leave the origin): {unknown}"
    assert any(url.startswith(prefix + "/v1/") for _, url in rec.requests), "the console called no API"
    assert not rec.csp, f"Content-Security-Policy violations: {rec.csp}"
    assert not rec.errors, f"uncaught script errors: {rec.errors}"


def with_page(browser: BrowserThread, recorded: Recorded, steps: Callable[[Any], None], **kw: Any) -> None:
    """Runs ``steps(page)`` on the browser's thread, in a fresh context (its own sessionStorage)."""
    def run(b: Any) -> None:
        context, page = open_page(b, recorded=recorded, **kw)
        try:
            steps(page)
        finally:
            context.close()

    browser.run(run)


def sign_in(page: Any, platform: Platform, person: Person) -> None:
    """Through the sign-in form; returns on the first page after it."""
    page.goto(platform.console_url)
    page.get_by_label("Email").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()


def shoot(page: Any, name: str) -> None:
    page.screenshot(path=str(artifacts_dir() / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        missing_tool("axe-core is not installed: run npm ci in src/console")
    return AXE.read_text()
