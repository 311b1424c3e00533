"""The console's files as the api role serves them: caching, CSP, compression, and nothing else."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from aiaas.entrypoints import console
from aiaas.kernel.errors import problem_handlers

SCRIPT = b"export const x = 1;\n" * 200


def _dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><script type="module" src="/console/assets/app-1a2b.js">'
                                      "</script>")
    (dist / "assets" / "app-1a2b.js").write_bytes(SCRIPT)
    (dist / "assets" / "app-1a2b.css").write_text("main{color:#111}")
    (dist / "assets" / ".hidden").write_text("not served")
    return dist


@pytest.fixture
def client(tmp_path: Path) -> Any:
    app = Litestar([console.console_router(console.load_dist(_dist(tmp_path)))],
                   exception_handlers=problem_handlers(openai=False), logging_config=None)
    with TestClient(app) as c:
        yield c


class TestIndex:
    def test_the_page_is_revalidated_and_locked_down(self, client: Any) -> None:
        r = client.get("/console/")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-cache"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"

    def test_an_unchanged_page_is_a_304(self, client: Any) -> None:
        etag = client.get("/console/").headers["etag"]
        r = client.get("/console/", headers={"if-none-match": etag})
        assert r.status_code == 304
        assert r.content == b""

    def test_without_a_build_the_page_is_a_problem(self) -> None:
        app = Litestar([console.console_router({})], exception_handlers=problem_handlers(openai=False),
                       logging_config=None)
        with TestClient(app) as c:
            r = c.get("/console/")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")


class TestAssets:
    def test_hashed_assets_are_cached_for_a_year(self, client: Any) -> None:
        r = client.get("/console/assets/app-1a2b.css")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/css")
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "content-security-policy" in r.headers

    def test_compressed_for_a_client_that_accepts_gzip(self, tmp_path: Path) -> None:
        files = console.load_dist(_dist(tmp_path))
        script = files["assets/app-1a2b.js"]
        assert script.gzipped is not None and gzip.decompress(script.gzipped) == SCRIPT
        # The same bytes on every replica (no timestamp in the gzip header), so one ETag fits all.
        assert console.load_dist(_dist(tmp_path / "again"))["assets/app-1a2b.js"] == script

    def test_the_client_gets_the_script_whole(self, client: Any) -> None:
        r = client.get("/console/assets/app-1a2b.js", headers={"accept-encoding": "gzip"})
        assert r.status_code == 200
        assert r.content == SCRIPT  # decoded by the client from content-encoding: gzip
        assert r.headers["content-type"].startswith("application/javascript") or \
            r.headers["content-type"].startswith("text/javascript")

    @pytest.mark.parametrize("name", ["missing.js", ".hidden", "..%2Findex.html", "%2e%2e", "a%00.js"])
    def test_nothing_outside_the_build_is_served(self, client: Any, name: str) -> None:
        r = client.get(f"/console/assets/{name}")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")


class TestAddress:
    def test_without_the_trailing_slash_it_redirects_so_relative_assets_resolve(self, client: Any) -> None:
        r = client.get("/console", follow_redirects=False)
        assert r.status_code == 308
        assert r.headers["location"] == "/console/"
