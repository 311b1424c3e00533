"""The versioning policy's check: every kind of breaking change to /v1 is caught, additions are not."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiaas.entrypoints.contract_diff import breaking_changes

CONTRACT = yaml.load((Path(__file__).resolve().parents[3] / "contracts" / "openapi.yaml").read_text(),
                     Loader=yaml.CSafeLoader)


def base() -> dict[str, Any]:
    return {"paths": {
        "/v1/things": {
            "get": {"operationId": "list", "parameters": [
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "maximum": 100}},
                {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["a", "b"]}}],
                "responses": {"200": {"description": "ok", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Page"}}}}}},
            "post": {"operationId": "create", "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Create"}}}},
                "responses": {"201": {"description": "made"}}},
        },
        "/v1/old": {"get": {"operationId": "old", "deprecated": True, "responses": {"200": {"description": "ok"}}}},
        "/health": {"get": {"operationId": "health", "responses": {"200": {"description": "ok"}}}},
    }, "components": {"schemas": {
        "Page": {"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}},
            "next": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
        "Thing": {"type": "object", "required": ["id", "name"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "size": {"type": "integer"}}},
        "Create": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 200}, "size": {"type": "integer", "minimum": 0}}},
    }}}


def changed(edit: Any) -> list[str]:
    new = copy.deepcopy(base())
    edit(new)
    return breaking_changes(base(), new)


def s(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["components"]["schemas"][name]  # type: ignore[no-any-return]


class TestNoBreak:
    def test_the_same_contract(self) -> None:
        assert breaking_changes(base(), base()) == []

    def test_the_real_contract_against_itself(self) -> None:
        assert breaking_changes(CONTRACT, copy.deepcopy(CONTRACT)) == []

    @pytest.mark.parametrize("edit", [
        lambda d: d["paths"].update({"/v1/new": {"get": {"operationId": "n", "responses": {}}}}),
        lambda d: s(d, "Create")["properties"].update({"colour": {"type": "string"}}),
        lambda d: s(d, "Thing")["properties"].update({"colour": {"type": "string"}}),
        lambda d: d["paths"]["/v1/things"]["get"]["parameters"].append({"name": "q", "in": "query",
                                                                        "schema": {"type": "string"}}),
        lambda d: s(d, "Create")["properties"]["name"].update({"maxLength": 500}),  # looser
        lambda d: d["paths"]["/v1/things"]["get"]["parameters"][1]["schema"]["enum"].append("c"),
        lambda d: d["paths"].pop("/v1/old"),  # deprecated first: may go
        lambda d: d["paths"].pop("/health"),  # not under /v1
    ], ids=["new operation", "new optional field", "new response field", "new optional parameter",
            "looser bound", "new enum value", "deprecated removal", "outside v1"])
    def test_additions_are_allowed(self, edit: Any) -> None:
        assert changed(edit) == []


class TestBreaks:
    @pytest.mark.parametrize(("edit", "expected"), [
        (lambda d: d["paths"].pop("/v1/things"), "GET /v1/things: removed without being deprecated first"),
        (lambda d: s(d, "Create")["required"].append("size"), "POST /v1/things: body.size: now required"),
        (lambda d: (s(d, "Create")["properties"].update({"owner": {"type": "string"}}),
                    s(d, "Create")["required"].append("owner")), "POST /v1/things: body.owner: new required field"),
        (lambda d: s(d, "Create")["properties"].pop("size"), "POST /v1/things: body.size: field removed"),
        (lambda d: s(d, "Create")["properties"]["size"].update({"type": "string"}),
         "POST /v1/things: body.size: type ['integer'] became ['string']"),
        (lambda d: s(d, "Create")["properties"]["name"].update({"maxLength": 50}),
         "POST /v1/things: body.name: maxLength tightened from 200 to 50"),
        (lambda d: d["paths"]["/v1/things"]["get"]["parameters"][1]["schema"]["enum"].remove("b"),
         "GET /v1/things: query kind: enum values removed: ['b']"),
        (lambda d: d["paths"]["/v1/things"]["get"]["parameters"].pop(0),
         "GET /v1/things: query parameter 'limit' removed"),
        (lambda d: d["paths"]["/v1/things"]["get"]["parameters"][0].update({"required": True}),
         "GET /v1/things: query parameter 'limit' now required"),
        (lambda d: s(d, "Thing")["properties"].pop("name"), "GET /v1/things: 200 response.data[].name: field removed"),
        (lambda d: s(d, "Thing")["required"].remove("name"),
         "GET /v1/things: 200 response.data[].name: no longer always present"),
        (lambda d: s(d, "Thing")["properties"]["size"].update({"type": "string"}),
         "GET /v1/things: 200 response.data[].size: type ['integer'] became ['string']"),
        (lambda d: d["paths"]["/v1/things"]["post"]["responses"].update({"202": d["paths"]["/v1/things"]["post"][
            "responses"].pop("201")}), "POST /v1/things: success status 201 removed"),
    ], ids=["operation removed", "made required", "new required", "body field removed", "type changed",
            "tightened", "enum value removed", "parameter removed", "parameter required", "response field removed",
            "response field optional", "response type changed", "status removed"])
    def test_each_break_is_named(self, edit: Any, expected: str) -> None:
        assert expected in changed(edit)

    def test_a_planted_break_in_the_real_contract_is_caught(self) -> None:
        new = copy.deepcopy(CONTRACT)
        new["paths"].pop("/v1/responses")
        assert "POST /v1/responses: removed without being deprecated first" in breaking_changes(CONTRACT, new)
