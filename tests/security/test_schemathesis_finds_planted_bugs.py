"""The contract checks of ``test_schemathesis`` find what they are there to find: a small app with a planted
bug of each kind, held to a contract that describes the correct behaviour, fails them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from litestar import Litestar, get, post
from schemathesis.core.failures import FailureGroup

from support import free_port, wait_http

from .test_schemathesis import CHECKS, no_undeclared_fields_in

THING = {"$ref": "#/components/schemas/Thing"}
CONTRACT: dict[str, Any] = {
    "openapi": "3.1.0", "info": {"title": "planted", "version": "1"},
    "paths": {
        "/v1/thing": {"get": {"operationId": "thing", "responses": {"200": {
            "description": "ok", "content": {"application/json": {"schema": THING}}}}}},
        "/v1/echo": {"post": {"operationId": "echo", "requestBody": {"required": False, "content": {
            "application/json": {"schema": {"type": "object"}}}},
            "responses": {"201": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                          "default": {"description": "error"}}}},
        "/health": {"get": {"operationId": "health", "responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {"Thing": {"type": "object", "required": ["id"], "properties": {
        "id": {"type": "string"}}}}},
}


@get("/v1/thing")
async def thing() -> dict[str, str]:
    return {"id": "t1", "owner_password_hash": "leaked"}  # pragma: allowlist secret - the planted leak


@post("/v1/echo")
async def echo(data: dict[str, Any] | None = None) -> dict[str, Any]:
    if not data:
        raise RuntimeError("the planted bug: a 500 on an empty body")
    return data


@get("/health")
async def health() -> dict[str, str]:
    return {"ok": "yes"}


@pytest.fixture(scope="module")
def planted() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Litestar([thing, echo, health], logging_config=None), host="127.0.0.1",
                                           port=port, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True, name="planted-app")
    thread.start()
    wait_http(f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _case(method: str, path: str, **kw: Any) -> schemathesis.Case:
    schema = schemathesis.openapi.from_dict(CONTRACT)
    return schema[path][method].Case(**kw)  # type: ignore[no-any-return]


def _checks() -> list[Any]:
    return [c for c in CHECKS if c.__name__ != "no_undeclared_fields"] + [no_undeclared_fields_in(CONTRACT)]


def _failures(case: schemathesis.Case, base_url: str) -> str:
    with requests.Session() as s, pytest.raises(FailureGroup) as err:
        case.call_and_validate(base_url=base_url, session=s, checks=_checks())
    return " | ".join(f"{type(e).__name__}: {e}" for e in err.value.exceptions)


def test_a_field_the_contract_does_not_declare_is_found(planted: str) -> None:
    assert "owner_password_hash" in _failures(_case("GET", "/v1/thing"), planted)


def test_a_500_on_an_empty_body_is_found(planted: str) -> None:
    assert "ServerError" in _failures(_case("POST", "/v1/echo", body={}), planted)


def test_a_correct_answer_passes(planted: str) -> None:
    with requests.Session() as s:
        _case("POST", "/v1/echo", body={"a": 1}).call_and_validate(base_url=planted, session=s, checks=_checks())
