"""The console is a client of the public API only: every ``call("METHOD", "/v1/…")`` in its source names an
operation of ``contracts/openapi.yaml``, and nothing else in the source talks to the network or breaks the
page's Content-Security-Policy."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "src" / "console" / "src"
CONTRACT = ROOT / "contracts" / "openapi.yaml"
DIST = ROOT / "src" / "aiaas" / "console" / "dist"

CALL = re.compile(r"""\bcall\(\s*(["'`])(?P<method>[A-Z]+)\1\s*,\s*(["'`])(?P<path>[^"'`]+)\3""")
ANY_CALL = re.compile(r"\bcall\(")


def _sources() -> dict[str, str]:
    return {p.relative_to(SOURCE).as_posix(): p.read_text() for p in sorted(SOURCE.rglob("*"))
            if p.suffix in {".js", ".jsx"}}


def _operations() -> set[tuple[str, str]]:
    doc = yaml.load(CONTRACT.read_text(), Loader=yaml.CSafeLoader)
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item
            if method in {"get", "post", "put", "patch", "delete"}}


def _calls() -> list[tuple[str, str, str]]:
    found = []
    for name, text in _sources().items():
        for m in CALL.finditer(text):
            found.append((name, m["method"], m["path"]))
    return found


class TestEveryCallIsAnOperation:
    def test_each_call_names_an_operation_of_the_contract(self) -> None:
        ops = _operations()
        unknown = [c for c in _calls() if (c[1], c[2]) not in ops]
        assert not unknown, f"calls that are no operation of contracts/openapi.yaml: {unknown}"

    def test_the_console_covers_its_journeys(self) -> None:
        distinct = {(m, p) for _, m, p in _calls()}
        assert len(distinct) >= 15, sorted(distinct)
        for needed in [("POST", "/v1/auth/login"), ("POST", "/v1/auth/logout"), ("GET", "/v1/orgs"),
                       ("POST", "/v1/orgs/{org_id}/keys"), ("POST", "/v1/orgs/{org_id}/keys/{key_id}/rotate"),
                       ("DELETE", "/v1/orgs/{org_id}/keys/{key_id}"), ("POST", "/v1/chat/completions"),
                       ("GET", "/v1/analytics/usage"), ("GET", "/v1/usage/requests.csv"),
                       ("GET", "/v1/orgs/{org_id}/audit"), ("GET", "/v1/admin/audit")]:
            assert needed in distinct, needed

    def test_every_call_site_is_literal(self) -> None:
        # call( with a computed method or path would escape the check above; api.js defines call itself.
        loose = []
        for name, text in _sources().items():
            for m in ANY_CALL.finditer(text):
                line = text[text.rfind("\n", 0, m.start()) + 1:m.start()].lstrip()
                if line.startswith(("//", "*", "/*")) or line.endswith("function "):
                    continue  # a comment, or api.js defining call
                if not CALL.match(text, m.start()):
                    loose.append((name, text[m.start():m.start() + 60]))
        assert not loose, f"call() sites without a literal method and path: {loose}"


class TestNoOtherNetwork:
    def test_only_api_js_uses_fetch(self) -> None:
        network = re.compile(r"\b(fetch\(|XMLHttpRequest|WebSocket|EventSource|sendBeacon)")
        users = [name for name, text in _sources().items() if network.search(text) and name != "api.js"]
        assert not users, users

    def test_no_absolute_url_and_no_cookie(self) -> None:
        for name, text in _sources().items():
            assert not re.search(r"""["'`]https?://""", text), name
            assert "document.cookie" not in text, name
            assert "localStorage" not in text, name  # the session lives in sessionStorage only


class TestCspFriendly:
    def test_no_inline_style_or_script_in_source(self) -> None:
        for name, text in _sources().items():
            assert not re.search(r"\bstyle=\{|\bstyle=\"", text), f"{name}: a style attribute (CSP: style-src 'self')"
            assert "setAttribute(\"style\"" not in text and "setAttribute('style'" not in text, name
            assert "innerHTML" not in text and "dangerouslySetInnerHTML" not in text, name
            assert not re.search(r"\beval\(|new Function\(", text), name

    def test_the_built_page_loads_only_its_own_files(self) -> None:
        index = (DIST / "index.html").read_text()
        assert "<style" not in index and "style=" not in index
        scripts = re.findall(r"<script\b[^>]*>", index)
        assert scripts and all(re.search(r'src="assets/app-[0-9a-f]{10}\.js"', s) for s in scripts), scripts
        assert re.search(r'href="assets/app-[0-9a-f]{10}\.css"', index)
        for ref in re.findall(r'(?:src|href)="([^"]+)"', index):
            assert (DIST / ref).is_file(), ref
        assert not list(DIST.rglob("*.map"))
