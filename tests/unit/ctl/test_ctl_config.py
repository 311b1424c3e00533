"""The config and credentials files: where they live, their permissions, and that a token stays with the
server that issued it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from aiaas.ctl import config
from aiaas.ctl.errors import CtlError
from aiaas.ctl.state import State

CREDS = config.Credentials(url="http://127.0.0.1:8000", token="ses_secret", email="ada@example.com",
                           user_id="u1")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestWhere:
    def test_xdg_config_home(self, tmp_path: Path) -> None:
        assert config.config_dir({"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/nowhere"}) == tmp_path / "aiaas"

    def test_home_dot_config_without_it(self) -> None:
        assert config.config_dir({"HOME": "/home/ada"}) == Path("/home/ada/.config/aiaas")

    def test_a_relative_xdg_config_home_is_ignored(self) -> None:
        # The XDG spec: relative paths are invalid and must be ignored.
        assert config.config_dir({"XDG_CONFIG_HOME": "rel", "HOME": "/home/ada"}) == Path("/home/ada/.config/aiaas")


class TestPermissions:
    def test_credentials_are_0600_in_a_0700_directory(self, tmp_path: Path) -> None:
        directory = tmp_path / "aiaas"
        old = os.umask(0)  # even with a permissive umask
        try:
            config.save_credentials(directory, CREDS)
        finally:
            os.umask(old)
        assert mode(directory / "credentials.json") == 0o600
        assert mode(directory) == 0o700
        assert json.loads((directory / "credentials.json").read_text())["token"] == "ses_secret"

    def test_an_existing_open_directory_is_tightened(self, tmp_path: Path) -> None:
        directory = tmp_path / "aiaas"
        directory.mkdir(mode=0o755)
        config.save_preferences(directory, config.Preferences(url="http://x:8000"))
        assert mode(directory) == 0o700 and mode(directory / "config.json") == 0o600

    def test_rewriting_leaves_no_temporary_file(self, tmp_path: Path) -> None:
        for token in ("one", "two"):
            config.save_credentials(tmp_path, config.Credentials(url="http://x", token=token))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.json"]
        assert config.load_credentials(tmp_path) == config.Credentials(url="http://x", token="two")

    def test_a_file_others_can_read_is_warned_about(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        config.save_credentials(tmp_path, CREDS)
        (tmp_path / "credentials.json").chmod(0o644)
        assert config.load_credentials(tmp_path) == CREDS
        assert "readable by other users" in capsys.readouterr().err


class TestReading:
    def test_missing_files_are_defaults(self, tmp_path: Path) -> None:
        assert config.load_credentials(tmp_path) is None
        assert config.load_preferences(tmp_path) == config.Preferences()

    def test_delete(self, tmp_path: Path) -> None:
        config.save_credentials(tmp_path, CREDS)
        assert config.delete_credentials(tmp_path) is True
        assert config.delete_credentials(tmp_path) is False

    @pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"url": "x"}'])
    def test_a_broken_file_is_an_error_not_a_traceback(self, tmp_path: Path, content: str) -> None:
        (tmp_path / "credentials.json").write_text(content)
        with pytest.raises(CtlError, match="cannot read"):
            config.load_credentials(tmp_path)

    def test_unknown_fields_are_ignored(self, tmp_path: Path) -> None:
        (tmp_path / "config.json").write_text('{"url": "http://x:8000", "future": 1}')
        assert config.load_preferences(tmp_path) == config.Preferences(url="http://x:8000")


class TestTokenStaysWithItsServer:
    def _state(self, tmp_path: Path, **env: str) -> State:
        return State(env={"XDG_CONFIG_HOME": str(tmp_path), **env})

    def test_used_for_the_url_it_was_issued_by(self, tmp_path: Path) -> None:
        config.save_credentials(tmp_path / "aiaas", CREDS)
        st = self._state(tmp_path)
        assert st.url == "http://127.0.0.1:8000" and st.credentials == CREDS and st.auth_kind == "session"

    def test_not_sent_to_another_server(self, tmp_path: Path) -> None:
        config.save_credentials(tmp_path / "aiaas", CREDS)
        st = self._state(tmp_path, AIAAS_URL="https://elsewhere.example")
        assert st.credentials is None and st.auth_kind is None

    def test_an_api_key_wins_over_the_session(self, tmp_path: Path) -> None:
        config.save_credentials(tmp_path / "aiaas", CREDS)
        assert self._state(tmp_path, AIAAS_API_KEY="sk-abc").auth_kind == "api_key"
