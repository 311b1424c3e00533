"""The `aiaas` command line, run in-process: configuration errors, the OpenAPI contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiaas.entrypoints.cli import main

ROOT = Path(__file__).resolve().parents[3]


class TestConfigErrors:
    def test_bad_setting_exits_2_naming_the_variable(self, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setenv("AIAAS_API_PORT", "eighty")
        assert main(["migrate"]) == 2
        assert "AIAAS_API_PORT='eighty' is invalid" in capsys.readouterr().err

    def test_workers_must_be_positive(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["serve", "--role", "api", "--workers", "0"]) == 2
        assert "--workers" in capsys.readouterr().err


class TestOpenApiContract:
    def test_committed_contract_matches_the_app(self) -> None:
        assert main(["openapi", "--check", "--output", str(ROOT / "contracts" / "openapi.yaml")]) == 0

    def test_contract_is_valid_openapi_and_describes_inference_bodies(self) -> None:
        import yaml
        from openapi_spec_validator import validate

        doc = yaml.load((ROOT / "contracts" / "openapi.yaml").read_text(), Loader=yaml.CSafeLoader)
        validate(doc)
        chat = doc["paths"]["/v1/chat/completions"]["post"]
        body = chat["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
        assert {"model", "messages"} <= set(doc["components"]["schemas"]["ChatCompletionRequest"]["required"])
        assert "application/problem+json" in chat["responses"]["429"]["content"]

    def test_check_fails_on_a_stale_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        stale = tmp_path / "openapi.yaml"
        stale.write_text("openapi: 3.1.0\npaths: {}\n")
        assert main(["openapi", "--check", "--output", str(stale)]) == 1
        assert "out of date" in capsys.readouterr().err

    def test_write_then_check(self, tmp_path: Path) -> None:
        out = tmp_path / "c" / "openapi.yaml"
        assert main(["openapi", "--output", str(out)]) == 0
        text = out.read_text()
        assert "/health" in text and "/ready" in text and "/metrics" in text
        assert main(["openapi", "--check", "--output", str(out)]) == 0

    def test_migrate_command(self, session_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
        for k, v in session_env.items():
            if k.startswith("AIAAS_"):
                monkeypatch.setenv(k, v)
        assert main(["migrate"]) == 0
        assert "newest revision" in capsys.readouterr().out
