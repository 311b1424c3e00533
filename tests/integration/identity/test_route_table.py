"""Every route of both HTTP apps declares a permission or is public: the RBAC guard has nothing to guess."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import get

from aiaas.entrypoints import api, streamer
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference import asgi as inference_edge
from aiaas.kernel.config import Settings, load_settings
from aiaas.kernel.guard import route_permissions
from aiaas.kernel.security import Permission
from aiaas.kernel.web import make_app

# The console's static files load before anyone has signed in; every call the page makes is authenticated.
PUBLIC_ALLOWED = {"/health", "/ready", "/metrics", "/v1/auth/login", "/console", "/console/assets/{name:str}"}


def _apps(settings: Settings) -> list[tuple[str, Any]]:
    return [("api", api.create_app(Container(settings, role="api"))),
            ("streamer", streamer.create_litestar(Container(settings, role="streamer")))]


class TestRouteTable:
    @pytest.mark.parametrize("role", ["api", "streamer"])
    def test_every_route_declares_permission_or_public(self, role: str) -> None:
        settings = load_settings({})
        app = dict(_apps(settings))[role]
        table = route_permissions(app)
        if role == "streamer":  # the inference POST endpoints are served in front of Litestar
            table += inference_edge.route_permissions()
        assert table, "the route table is empty"
        missing = [(m, p) for m, p, marker in table if marker is None]
        assert not missing, f"routes without opt['permission'] or opt['public']: {missing}"
        for _method, path, marker in table:
            assert marker == "public" or isinstance(marker, Permission), (path, marker)
            if marker == "public":
                assert path in PUBLIC_ALLOWED or path.startswith("/openapi"), f"unexpected public route {path}"

    def test_a_route_without_permission_is_caught(self) -> None:
        @get("/forgotten", sync_to_thread=False)
        def forgotten() -> str:
            return "x"

        app = make_app(role="t", settings=load_settings({}), route_handlers=[forgotten], checks={}, title="t",
                       description="d")
        assert ("GET", "/forgotten", None) in route_permissions(app)
