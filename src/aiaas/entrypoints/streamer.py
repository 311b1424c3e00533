"""The OpenAI-compatible inference app (role ``streamer``).

``create_app`` is what the role serves: :class:`~aiaas.inference.asgi.InferenceEdge` answers the
inference POST endpoints itself and hands every other request to the Litestar app of ``create_litestar``
(``/v1/models``, health, metrics, OpenAPI), whose route table and schema the contract is built from.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide

from aiaas.entrypoints.bootstrap import Container, dependencies
from aiaas.inference.asgi import ROUTES, InferenceEdge
from aiaas.inference.http import streamer_handlers
from aiaas.inference.service.gateway import Gateway
from aiaas.kernel.errors import ServiceUnavailable
from aiaas.kernel.web import make_app
from aiaas.usage import api as usage_api

DESCRIPTION = (
    "OpenAI-compatible inference endpoints of aiaas. Errors are RFC 7807 problem documents that also "
    "carry OpenAI's `error` object, so OpenAI SDKs raise their usual exception classes."
)


def serves(path: str) -> bool:
    """Whether ``path`` is one of the streamer's inference routes (not its health, metrics or OpenAPI)."""
    return (path in ROUTES or path == "/v1/models" or path.startswith(("/v1/models/", "/v1/responses/",
                                                                         "/v1/messages/")))


def create_app(container: Container) -> InferenceEdge:
    """The streamer's ASGI app for ``container``'s dependencies: the inference edge in front of Litestar."""
    return InferenceEdge(create_litestar(container), authenticator=container.authenticator,
                         gateway=lambda: container.gateway,
                         max_body_bytes=container.settings.max_request_body_bytes,
                         responses=lambda: container.responses)


def create_litestar(container: Container) -> Litestar:
    """The Litestar part of the streamer: every route except the inference POST endpoints."""

    def _gateway() -> Gateway:
        if container.gateway is None:
            raise ServiceUnavailable("The inference gateway is starting.", code="starting")
        return container.gateway

    deps = dependencies(container)
    deps["gateway"] = Provide(_gateway, sync_to_thread=False)
    deps["responses"] = Provide(lambda: container.responses, sync_to_thread=False)
    return make_app(
        role="streamer",
        settings=container.settings,
        route_handlers=streamer_handlers,
        checks=container.checks("streamer"),
        title="aiaas inference API",
        description=DESCRIPTION,
        openai_errors=True,
        dependencies=deps,
        authenticator=container.authenticator,
        on_startup=[container.start],
        on_shutdown=[container.stop],
        state={"container": container},
        extra_ready_state=usage_api.ready_state,
        # Without Redis the streamer still serves the orgs whose policy fails open (and answers 503 to the
        # others), so a Redis outage degrades it instead of draining it; see docs/runbooks/readiness.md.
        degradable_checks=("redis",),
    )
