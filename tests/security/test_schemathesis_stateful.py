"""Schemathesis' stateful run over the API-key lifecycle: links inferred from the contract (the id a create
returns feeds get, rotate and revoke) are followed against the running platform, as an org owner, and
every answer is held to the same checks as the per-operation run."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from identity_support import Tenant

from .conftest import Platform
from .test_schemathesis import CHECKS, CONTRACT

pytestmark = [pytest.mark.e2e]

KEYS = schemathesis.openapi.from_path(CONTRACT).include(path_regex=r"^/v1/orgs/\{org_id\}/keys")
RUN: dict[str, Any] = {}


class KeyLifecycle(KEYS.as_state_machine()):  # type: ignore[misc]
    """Calls go to the management API as the home org's owner, always in that org."""

    def before_call(self, case: schemathesis.Case) -> None:
        case.path_parameters = {**(case.path_parameters or {}), "org_id": RUN["org_id"]}

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        return {"base_url": RUN["api"], "session": RUN["session"], "timeout": 30,
                "headers": {"authorization": f"Bearer {RUN['token']}"}}

    def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
        RUN["seen"].append((case.method.upper(), case.path, response.status_code))

    def validate_response(self, response: schemathesis.Response, case: schemathesis.Case,
                          additional_checks: Any = None, **kwargs: Any) -> None:
        case.validate_response(response, checks=CHECKS)


@pytest.fixture
def lifecycle(platform: Platform, tenants: tuple[Tenant, Tenant]) -> Any:
    home, _ = tenants
    with requests.Session() as session:
        RUN.update(api=platform.api, org_id=home.org_id, token=home.actors["owner"].token, session=session, seen=[])
        yield RUN["seen"]
        RUN.clear()


def test_the_key_lifecycle_follows_its_links(lifecycle: list[tuple[str, str, int]]) -> None:
    KeyLifecycle.run(settings=settings(max_examples=25, stateful_step_count=5, deadline=None, derandomize=True,
                                       database=None, suppress_health_check=list(HealthCheck),
                                       phases=[Phase.generate]))
    done = {(m, p) for m, p, status in lifecycle if 200 <= status < 300}
    # The chain the links describe ran for real: a key created, then rotated and revoked by the id it got.
    assert ("POST", "/v1/orgs/{org_id}/keys") in done
    assert ("POST", "/v1/orgs/{org_id}/keys/{key_id}/rotate") in done
    assert ("DELETE", "/v1/orgs/{org_id}/keys/{key_id}") in done
