"""The web console's static files, served by the api role at ``/console/``.

The console is client-only: a single page that calls the public API (``contracts/openapi.yaml``) with the
session token it keeps in ``sessionStorage``. The server's only part is handing out the built files of
``aiaas/console/dist`` (built from ``src/console`` by ``npm run build``; CI rebuilds and compares):

* ``/console/`` is ``index.html``, revalidated on every load (``no-cache`` with an ETag), so a new release
  is picked up at once;
* ``/console/assets/<name>`` are content-hashed, so they are cached for a year as ``immutable``;
* every answer carries a strict Content-Security-Policy (no inline script or style, no other origin),
  and is served gzip-compressed to a client that accepts it.

The files are read once when the app is built: they are part of the release, like the code.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.response import Redirect

from aiaas.kernel.errors import NotFound

DIST = Path(__file__).resolve().parent.parent / "console" / "dist"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
INDEX_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=31536000, immutable"
_ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
_COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")


@dataclass(frozen=True)
class StaticFile:
    """One built file, with its gzip form when that is smaller."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


def _load(path: Path) -> StaticFile:
    body = path.read_bytes()
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type == "application/javascript":
        media_type += "; charset=utf-8"
    gz = None
    if media_type.startswith(_COMPRESSIBLE) and len(body) > 512:
        # mtime=0: the same file gives the same bytes, so every replica serves the same ETagged answer.
        gz = gzip.compress(body, compresslevel=9, mtime=0)
        if len(gz) >= len(body):
            gz = None
    return StaticFile(body, gz, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def load_dist(dist: Path = DIST) -> dict[str, StaticFile]:
    """The built console: ``"index.html"`` and ``"assets/<name>"`` -> file. Empty when it was not built."""
    files: dict[str, StaticFile] = {}
    index = dist / "index.html"
    if index.is_file():
        files["index.html"] = _load(index)
    assets = dist / "assets"
    if assets.is_dir():
        for path in sorted(assets.iterdir()):
            if path.is_file() and _ASSET_NAME.fullmatch(path.name):
                files[f"assets/{path.name}"] = _load(path)
    return files


def _answer(request: Request[Any, Any, Any], file: StaticFile, cache_control: str) -> Response[bytes]:
    headers = {**SECURITY_HEADERS, "cache-control": cache_control, "etag": file.etag, "vary": "accept-encoding"}
    if file.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(b"", status_code=304, headers=headers)
    body = file.body
    if file.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = file.gzipped
        headers["content-encoding"] = "gzip"
    return Response(body, media_type=file.media_type, headers=headers)


def console_router(files: dict[str, StaticFile] | None = None) -> Router:
    """The ``/console`` routes (public: the sign-in page must load before anyone has a token)."""
    table = load_dist() if files is None else files

    @get("/", sync_to_thread=False)
    def index(request: Request[Any, Any, Any]) -> Response[bytes] | Redirect:
        """The console's single page."""
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        if not raw.split(b"?", 1)[0].endswith(b"/"):
            # The page names its assets relative to itself (so it works under a path prefix too).
            return Redirect(f"{request.scope.get('root_path', '')}/console/", status_code=308)
        page = table.get("index.html")
        if page is None:
            raise NotFound("The console is not built into this installation (see docs/console.md).")
        return _answer(request, page, INDEX_CACHE)

    @get("/assets/{name:str}", sync_to_thread=False)
    def asset(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
        """A content-hashed script, style sheet or image of the console."""
        file = table.get(f"assets/{name}") if _ASSET_NAME.fullmatch(name) else None
        if file is None:
            raise NotFound("No such console file.")
        return _answer(request, file, ASSET_CACHE)

    return Router("/console", route_handlers=[index, asset], include_in_schema=False, opt={"public": True})
