"""The web console's journeys in headless Chromium against a running platform (issue 14's "done when")."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from e2e.console.conftest import (
    MODEL,
    SLOW_CHUNKS,
    BrowserThread,
    Platform,
    Recorded,
    artifacts_dir,
    shoot,
    sign_in,
    with_page,
)

# One worker runs the whole module (.ci/run distributes by --dist loadgroup): its platform and browser
# start once, not once per worker that happens to draw one of its tests.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("console")]

PAGES = ["usage", "keys", "members", "playground", "models", "audit", "users"]


def _wait_until(check: Any, *, timeout: float = 10.0, interval: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


def _go(page: Any, route: str, heading: str) -> None:
    page.evaluate("r => { location.hash = '#/' + r }", route)
    page.get_by_role("heading", level=1, name=heading).wait_for()


class TestJourney:
    def test_admin_from_sign_in_to_sign_out(self, browser: BrowserThread, platform: Platform, recorded: Recorded,
                                            ) -> None:
        def steps(page: Any) -> None:
            response = page.goto(platform.console_url)
            # The page runs under the server's strict policy (the recorder fails the test on any violation).
            assert "script-src 'self'" in response.headers.get("content-security-policy", "")
            page.get_by_role("heading", level=1, name="Sign in to aiaas").wait_for()
            assert page.url.endswith("#/signin")
            shoot(page, "signin")
            sign_in(page, platform, platform.admin)
            page.get_by_role("heading", level=1, name="Usage").wait_for()
            token = page.evaluate("sessionStorage.getItem('aiaas.session.token')")
            assert token
            assert page.context.cookies() == []  # the session is never a cookie

            # A new account, then a member of the org.
            email = f"ada-{int(time.time() * 1000)}@example.com"
            _go(page, "users", "Users")
            page.get_by_label("Email", exact=True).fill(email)
            page.get_by_label("Name").fill("Ada")
            page.get_by_label("Initial password").fill("a long and correct passphrase")
            page.get_by_role("button", name="Create user").click()
            page.get_by_role("status").filter(has_text=f"Created {email}").wait_for()
            shoot(page, "users")

            _go(page, "members", "Members")
            form = page.get_by_role("form", name="Add a member")
            form.get_by_label("Email").fill(email)
            form.get_by_label("Role").select_option("member")
            form.get_by_role("button", name="Add member").click()
            page.get_by_role("status").filter(has_text=f"Added {email} as member").wait_for()
            page.get_by_role("cell", name=email, exact=True).wait_for()
            shoot(page, "members")

            # A key: the secret is shown once, with a copy button.
            _go(page, "keys", "API keys")
            page.get_by_label("Name", exact=True).fill("console-journey")
            page.get_by_label("Requests per minute").fill("600")
            page.get_by_role("button", name="Create key").click()
            secret_box = page.get_by_label("Secret")
            secret_box.wait_for()
            secret = secret_box.input_value()
            assert secret.startswith("sk-")
            page.get_by_role("button", name="Copy").click()
            page.get_by_text("Copied to the clipboard.").wait_for()
            assert page.evaluate("navigator.clipboard.readText()") == secret
            assert page.get_by_role("alert").filter(has_text="shown only this once").is_visible()
            shoot(page, "keys-secret")
            _go(page, "usage", "Usage")
            _go(page, "keys", "API keys")
            page.get_by_role("cell", name="console-journey", exact=True).wait_for()
            assert page.get_by_label("Secret").count() == 0
            assert secret not in page.content()  # not shown again, anywhere
            shoot(page, "keys")

            # The playground streams with that key (kept in memory): the answer grows as tokens arrive.
            _go(page, "playground", "Playground")
            assert page.get_by_label("API key").input_value() == secret
            page.get_by_label("Model").fill(MODEL)
            page.get_by_label("Message").fill("Hello")
            answer = page.get_by_test_id("answer")
            page.get_by_role("button", name="Send").click()
            seen: list[str] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and page.get_by_test_id("stats").count() == 0:
                text = answer.inner_text()
                if text and (not seen or text != seen[-1]):
                    seen.append(text)
                time.sleep(0.03)
            final = answer.inner_text()
            assert final.strip() == "".join(f" t{i}" for i in range(SLOW_CHUNKS)).strip(), final
            partial = [t for t in seen if len(t.strip()) < len(final.strip())]
            assert len(partial) >= 2, f"the answer did not grow while streaming: {seen}"
            assert all(final.strip().startswith(t.strip()) for t in seen), seen  # appended, never replaced
            stats = page.get_by_test_id("stats").inner_text()
            assert re.search(r"Prompt tokens\s+7", stats), stats
            assert re.search(r"Completion tokens\s+3", stats), stats
            assert "First token" in stats and "Total" in stats
            shoot(page, "playground")

            # The request in the usage page (the worker writes the ledger a moment later).
            _go(page, "usage", "Usage")
            table = page.get_by_role("table", name="Recent requests, newest first")

            def request_listed() -> bool:
                page.get_by_role("button", name="Refresh").click()
                page.wait_for_timeout(300)
                return table.get_by_role("cell", name=MODEL, exact=True).count() > 0

            _wait_until(request_listed, timeout=15, what="the playground's request in the recent-requests table")
            with page.expect_download() as download:
                page.get_by_role("button", name="Export CSV").click()
            csv = download.value.path().read_text()
            assert MODEL in csv

            def charted() -> bool:
                page.get_by_role("button", name="Refresh").click()
                page.wait_for_timeout(300)
                return page.get_by_role("img", name=re.compile("^Requests over time")).count() > 0

            _wait_until(charted, timeout=15, what="the requests chart (the analytics projection)")
            shoot(page, "usage")

            # The audit log names the key's creation and the member's addition.
            _go(page, "audit", "Audit log")
            audit = page.get_by_role("table", name="Audit entries, newest first")
            audit.get_by_role("cell", name="key.create", exact=True).first.wait_for()
            audit.get_by_role("cell", name="member.add", exact=True).first.wait_for()
            page.get_by_label("Action").select_option("member.add")
            page.get_by_role("button", name="Filter").click()
            _wait_until(lambda: audit.get_by_role("cell", name="key.create", exact=True).count() == 0,
                        what="the action filter")
            assert audit.get_by_role("cell", name="member.add", exact=True).count() >= 1
            shoot(page, "audit")

            _go(page, "models", "Models")
            page.get_by_role("cell", name=MODEL, exact=True).first.wait_for()
            # Each deployment's breaker as the streamers see it (GET /v1/admin/deployments).
            page.get_by_role("table", name="Deployments of every model").get_by_role(
                "cell", name="closed", exact=True).first.wait_for()
            page.get_by_role("button", name="List models").click()
            page.get_by_role("table", name="Models").get_by_role("cell", name=MODEL, exact=True).wait_for()
            shoot(page, "models")

            # Revoke the key; the next playground call fails with the gateway's error message.
            _go(page, "keys", "API keys")
            page.get_by_role("button", name="Revoke console-journey").click()
            page.get_by_role("button", name="Yes, revoke").click()
            page.get_by_role("status").filter(has_text="Revoked console-journey").wait_for()
            _go(page, "playground", "Playground")
            page.get_by_label("Model").fill(MODEL)
            page.get_by_label("Message").fill("Hello again")
            page.get_by_role("button", name="Send").click()
            alert = page.get_by_role("alert")
            alert.wait_for()
            assert "HTTP 401" in alert.inner_text(), alert.inner_text()
            assert page.get_by_role("button", name="Sign out").is_visible()  # a key's 401 is not the session's
            shoot(page, "playground-revoked")

            # Sign out ends the session on the server too.
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("heading", level=1, name="Sign in to aiaas").wait_for()
            page.get_by_text("You have signed out.").wait_for()
            assert page.evaluate("sessionStorage.getItem('aiaas.session.token')") is None
            r = httpx.get(f"{platform.base_url}/v1/users/me", headers={"authorization": f"Bearer {token}"}, timeout=10)
            assert r.status_code == 401

        with_page(browser, recorded, steps)


class TestRoles:
    def test_a_member_sees_no_admin_actions(self, browser: BrowserThread, platform: Platform, recorded: Recorded,
                                            ) -> None:
        member = platform.person("mia", role="member")

        def steps(page: Any) -> None:
            sign_in(page, platform, member)
            nav = page.get_by_role("navigation", name="Console")
            assert nav.get_by_role("link", name="Audit log").count() == 0
            assert nav.get_by_role("link", name="Users").count() == 0
            _go(page, "members", "Members")
            page.get_by_role("cell", name=member.email, exact=True).wait_for()
            assert page.get_by_role("button", name="Add member").count() == 0
            assert page.get_by_role("button", name=re.compile("^Remove")).count() == 0
            assert page.get_by_role("button", name=re.compile("^Change role")).count() == 0
            assert page.get_by_role("button", name="Create service account").count() == 0
            _go(page, "keys", "API keys")
            assert page.get_by_role("button", name="Create key").count() == 1  # members manage their own keys
            assert page.get_by_label("Owner").count() == 0  # but not keys of service accounts
            _go(page, "models", "Models")
            assert page.get_by_role("heading", name=re.compile("platform admin")).count() == 0
            shoot(page, "members-as-member")

        with_page(browser, recorded, steps)

    def test_a_viewer_sees_no_key_actions_and_a_forced_403_is_shown(self, browser: BrowserThread, platform: Platform,
                                                                    recorded: Recorded) -> None:
        viewer = platform.person("vic", role="viewer")

        def steps(page: Any) -> None:
            sign_in(page, platform, viewer)
            _go(page, "keys", "API keys")
            page.get_by_text("Your role cannot create keys.").wait_for()
            assert page.get_by_role("button", name="Create key").count() == 0
            # The audit log is not offered to a viewer; opened by its address, the API's 403 detail shows.
            _go(page, "audit", "Audit log")
            alert = page.get_by_role("alert")
            alert.wait_for()
            text = alert.inner_text()
            assert "Not allowed" in text and "HTTP 403" in text, text
            assert len(text) > len("Not allowed (HTTP 403): "), text  # the problem's detail, not just a code
            shoot(page, "forbidden")

        with_page(browser, recorded, steps)

    def test_a_revoked_session_returns_to_sign_in(self, browser: BrowserThread, platform: Platform,
                                                  recorded: Recorded) -> None:
        def steps(page: Any) -> None:
            sign_in(page, platform, platform.admin)
            token = page.evaluate("sessionStorage.getItem('aiaas.session.token')")
            with platform.http(token) as http:
                assert http.post("/v1/auth/logout").status_code == 204
            page.evaluate("location.hash = '#/keys'")
            page.get_by_role("heading", level=1, name="Sign in to aiaas").wait_for()
            page.get_by_text("Your session has ended. Sign in again.").wait_for()

        with_page(browser, recorded, steps)


class TestAccessibility:
    @pytest.mark.parametrize("width", [1280, 375])
    def test_no_serious_violation_on_any_page(self, browser: BrowserThread, platform: Platform, axe_source: str,
                                              recorded: Recorded, width: int) -> None:
        found: dict[str, list[dict[str, Any]]] = {}

        def steps(page: Any) -> None:
            page.goto(platform.console_url)
            page.get_by_role("heading", level=1, name="Sign in to aiaas").wait_for()
            found["signin"] = _axe(page, axe_source)
            sign_in(page, platform, platform.admin)
            for route in PAGES:
                page.evaluate("r => { location.hash = '#/' + r }", route)
                page.wait_for_function("() => !document.body.innerText.includes('Loading')")
                page.wait_for_load_state("networkidle")
                found[route] = _axe(page, axe_source)
                if width == 375:
                    shoot(page, f"{route}-375")
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 1, f"{route} scrolls sideways at 375 px ({overflow} px)"

        # bypass_csp for this context only: axe is injected as a script the page's CSP would refuse.
        with_page(browser, recorded, steps, bypass_csp=True, width=width, height=800)
        (artifacts_dir() / f"axe-{width}.json").write_text(json.dumps(found, indent=2))
        bad = {route: [v for v in vs if v["impact"] in {"serious", "critical"}] for route, vs in found.items()}
        bad = {route: vs for route, vs in bad.items() if vs}
        assert not bad, f"serious or critical axe violations at {width} px: {bad}"


def _axe(page: Any, source: str) -> list[dict[str, Any]]:
    """axe-core's violations of the page as it is (every impact; the test fails on serious and critical)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=source)
    results = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return {passed: r.passes.length, violations: r.violations.map(v => ({id: v.id, impact: v.impact,
            help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))};
    }""")
    assert results["passed"] >= 10, results  # axe ran its rules on a rendered page
    return list(results["violations"])
