"""The command line in-process: usage errors exit 2 before any request, global options work before and
after the command, the inference URL's default, and the chat stream's parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiaas.ctl.app import main
from aiaas.ctl.commands.chat import sse_data, usage_line
from aiaas.ctl.errors import UsageFailure
from aiaas.ctl.state import inference_url_for, normalize_url
from support import free_port


@pytest.fixture(autouse=True)
def _own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("AIAAS_URL", "AIAAS_INFERENCE_URL", "AIAAS_API_KEY", "AIAAS_ORG"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


class TestUsageErrors:
    @pytest.mark.parametrize(("args", "message"), [
        (["keys", "create", "x", "--expires-in", "30d", "--expires-at", "2030-01-01"], "either --expires-in or"),
        (["keys", "create", "x", "--expires-in", "soon"], "is not a duration"),
        (["keys", "create", "x", "--expires-at", "someday"], "is not a time"),
        (["keys", "rotate", "x", "--grace", "1y"], "is not a duration"),
        (["usage", "--json", "--csv"], "either --json or --csv"),
        (["usage", "--since", "last week"], "--since"),
        (["chat", "m", "hi", "--api-key", "sk-x", "--url", "ftp://host"], "is not an http(s) URL"),
    ])
    def test_our_checks(self, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
        code, out, err = run(capsys, *args)
        assert code == 2 and out == ""
        assert err.startswith("error: ") and message in err

    @pytest.mark.parametrize("args", [["orgs", "frobnicate"], ["keys", "create", "x", "--scope", "everything"],
                                      ["members", "add", "a@b.c", "--role", "emperor"], ["whoami", "-o", "xml"],
                                      ["keys", "create", "x", "--rpm", "0"], ["orgs", "rename", "only-one"]])
    def test_click_s_checks(self, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
        assert run(capsys, *args)[0] == 2

    def test_no_command_shows_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = run(capsys)
        assert code == 2 and "login" in out + err

    def test_help_and_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "keys", "create", "--help")
        assert code == 0 and "--expires-in" in out and "--output" in out
        assert run(capsys, "--version") == (0, "aiaasctl 0.1.0\n", "")


class TestGlobalOptions:
    def test_before_the_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        port = free_port()
        code, _, err = run(capsys, "--url", f"http://127.0.0.1:{port}", "whoami")
        assert code == 6 and f"cannot reach http://127.0.0.1:{port}" in err

    def test_after_the_command_wins(self, capsys: pytest.CaptureFixture[str]) -> None:
        first, second = free_port(), free_port()
        code, _, err = run(capsys, "--url", f"http://127.0.0.1:{first}", "whoami", "--url",
                           f"http://127.0.0.1:{second}")
        assert code == 6 and f"127.0.0.1:{second}" in err

    def test_the_environment(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        port = free_port()
        monkeypatch.setenv("AIAAS_URL", f"http://127.0.0.1:{port}/")
        assert f"cannot reach http://127.0.0.1:{port}" in run(capsys, "orgs", "list")[2]

    def test_chat_without_an_api_key_exits_3(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = run(capsys, "chat", "some/model", "hi")
        assert code == 3 and "needs an API key" in err


class TestUrls:
    @pytest.mark.parametrize(("url", "inference"), [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8001"), ("https://user@api.example:8000/base",
                                                             "https://user@api.example:8001/base"),
        ("http://[::1]:8000", "http://[::1]:8001"), ("https://ai.example.com", "https://ai.example.com"),
        ("http://localhost:9000", "http://localhost:9000"),
    ])
    def test_inference_url_default(self, url: str, inference: str) -> None:
        assert inference_url_for(url) == inference

    def test_normalize(self) -> None:
        assert normalize_url(" http://h:8000/ ") == "http://h:8000"
        with pytest.raises(UsageFailure):
            normalize_url("localhost:8000")


class TestChatStream:
    def test_sse_data(self) -> None:
        lines = [": keep-alive", "", "data: {\"a\": 1}", "", "event: x", "data: line1", "data:line2", "",
                 "data: [DONE]"]
        assert list(sse_data(lines)) == ['{"a": 1}', "line1\nline2", "[DONE]"]

    def test_usage_line(self) -> None:
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        assert usage_line(usage, first_ms=12.4, total_ms=40.6, request_id="req_1") == (
            "7 prompt + 3 completion = 10 tokens · first token 12 ms · total 41 ms · request req_1")
        assert usage_line(None, first_ms=None, total_ms=5, request_id=None) == "usage not reported · total 5 ms"
