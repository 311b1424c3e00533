"""The egress policy, upstream URL parsing and the credential namespace: each edge of their rules."""

from __future__ import annotations

import pytest

from aiaas.inference.providers.credentials import CredentialResolver, env_name
from aiaas.inference.providers.egress import EgressDenied, EgressPolicy, parse_entries
from aiaas.inference.schemas import DeploymentSpec, check_base_url


class TestEgressPolicy:
    @pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                    "100.64.0.1", "::1", "fd00::1", "fe80::1", "0.0.0.0", "224.0.0.1",
                                    "::ffff:127.0.0.1", "fe80::1%eth0"])
    def test_internal_addresses_are_refused_by_default(self, ip: str) -> None:
        assert not EgressPolicy().allows(ip, 443)

    @pytest.mark.parametrize("ip", ["8.8.8.8", "2606:4700:4700::1111", "104.18.0.1"])
    def test_public_addresses_are_allowed(self, ip: str) -> None:
        assert EgressPolicy().allows(ip, 443)

    def test_development_allows_internal(self) -> None:
        assert EgressPolicy(deny_internal=False).allows("127.0.0.1", 8000)

    def test_allow_entries_with_and_without_port(self) -> None:
        policy = EgressPolicy(allow=parse_entries("10.0.0.0/8, 127.0.0.1:9000, [fd00::1]:8000"))
        assert policy.allows("10.9.9.9", 1)
        assert policy.allows("127.0.0.1", 9000) and not policy.allows("127.0.0.1", 6379)
        assert policy.allows("fd00::1", 8000) and not policy.allows("fd00::1", 8001)

    def test_deny_wins_over_allow(self) -> None:
        policy = EgressPolicy(allow=parse_entries("10.0.0.0/8"), deny=parse_entries("10.0.0.5"), deny_internal=False)
        assert not policy.allows("10.0.0.5", 80) and policy.allows("10.0.0.6", 80)

    @pytest.mark.parametrize("text", ["10.0.0.0/33", "nope", "1.2.3.4:x", "1.2.3.4:70000", "[::1]8000"])
    def test_malformed_entries_are_named(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"is not|port|expected"):
            parse_entries(text)

    async def test_a_name_is_checked_on_what_it_resolves_to(self) -> None:
        with pytest.raises(EgressDenied):
            await EgressPolicy().resolve("localhost", 80)
        assert await EgressPolicy(allow=parse_entries("127.0.0.0/8")).resolve("localhost", 80)
        assert await EgressPolicy(deny_internal=False).resolve("127.0.0.1", 80) == ["127.0.0.1"]

    async def test_an_unresolvable_name_is_denied(self) -> None:
        with pytest.raises(EgressDenied, match="cannot resolve"):
            await EgressPolicy().resolve("no-such-host.invalid", 80)


class TestBaseUrl:
    @pytest.mark.parametrize("url", ["http://x\r\nX-Injected: 1/", "http://u:p@x/", "http://x/?q=1", "http://x/#f",
                                     "http://x y/", "ftp://x/", "http:///v1", "http://x:99999/", "http://exa_mple/",
                                     "http://x/\x00", "http://é.com/", "http://" + "a" * 2050])
    def test_anything_a_parser_could_read_two_ways_is_refused(self, url: str) -> None:
        with pytest.raises(ValueError):
            check_base_url(url)

    def test_the_spec_refuses_it_as_a_validation_error(self) -> None:
        import msgspec

        with pytest.raises(msgspec.ValidationError, match="base_url"):
            msgspec.convert({"name": "d", "upstream_model": "m", "base_url": "http://u:p@x/"}, DeploymentSpec)


class TestCredentials:
    def test_a_reference_reads_only_its_namespace(self) -> None:
        env = {"AIAAS_DATABASE_URL": "postgresql://secret", "UPSTREAM_CREDENTIAL_OPENAI_PROD": "sk-up"}
        r = CredentialResolver(environ=env)
        assert r.resolve("openai-prod") == b"sk-up"
        assert r.resolve("AIAAS_DATABASE_URL") is None  # reads UPSTREAM_CREDENTIAL_AIAAS_DATABASE_URL
        assert env_name("openai.prod") == "UPSTREAM_CREDENTIAL_OPENAI_PROD"

    @pytest.mark.parametrize("value", ["sk-a\r\nX-Injected: 1", "sk-\x00", "", "   ", "ключ"])
    def test_values_that_would_corrupt_a_header_are_refused(self, value: str) -> None:
        assert CredentialResolver(environ={"UPSTREAM_CREDENTIAL_X": value}).resolve("x") is None

    def test_a_mounted_directory_wins_and_names_cannot_leave_it(self, tmp_path: object) -> None:
        from pathlib import Path

        d = Path(str(tmp_path))
        (d / "openai").write_bytes(b"sk-from-file\n")
        (d.parent / "outside").write_bytes(b"sk-outside")
        r = CredentialResolver(directory=str(d), environ={"UPSTREAM_CREDENTIAL_OPENAI": "sk-env"})
        assert r.resolve("openai") == b"sk-from-file"
        assert r.resolve("../outside") is None and r.resolve("..") is None
        assert "openai" in r.where("openai") and "UPSTREAM_CREDENTIAL_OPENAI" in r.where("openai")

    def test_a_reference_that_looks_like_a_key_is_refused(self) -> None:
        import msgspec

        with pytest.raises(msgspec.ValidationError, match="looks like an API key"):
            msgspec.convert({"name": "d", "upstream_model": "m", "credential_ref": "sk-live-abc"}, DeploymentSpec)


class TestCaBundle:
    BASE = {"name": "d", "upstream_model": "m", "base_url": "https://vllm.internal:8443/v1"}

    def test_an_absolute_path_for_an_https_upstream(self) -> None:
        import msgspec

        spec = msgspec.convert({**self.BASE, "ca_bundle": "/etc/aiaas/ca/internal.pem"}, DeploymentSpec)
        assert spec.ca_bundle == "/etc/aiaas/ca/internal.pem"
        assert msgspec.convert(self.BASE, DeploymentSpec).ca_bundle is None

    @pytest.mark.parametrize("path", ["relative/ca.pem", "ca.pem", "", "/etc/ca.pem\n", "/etc/ca\x00.pem",
                                      "/etc/\x1bca.pem", "/etc/ca.pem\x7f", "/" + "a" * 5000])
    def test_anything_else_is_refused(self, path: str) -> None:
        import msgspec

        with pytest.raises(msgspec.ValidationError, match="ca_bundle"):
            msgspec.convert({**self.BASE, "ca_bundle": path}, DeploymentSpec)

    def test_only_with_an_https_base_url(self) -> None:
        import msgspec

        with pytest.raises(msgspec.ValidationError, match="https"):
            msgspec.convert({**self.BASE, "base_url": "http://vllm.internal/v1", "ca_bundle": "/ca.pem"},
                            DeploymentSpec)


class TestNativeApis:
    BASE = {"name": "d", "upstream_model": "m", "base_url": "https://api.example.com/v1"}

    def test_an_http_upstream_may_speak_the_responses_and_messages_apis(self) -> None:
        import msgspec

        spec = msgspec.convert({**self.BASE, "native_apis": ["messages", "responses"]}, DeploymentSpec)
        assert spec.native_apis == ["messages", "responses"]
        assert msgspec.convert(self.BASE, DeploymentSpec).native_apis == []
        assert b"native_apis" not in msgspec.json.encode(msgspec.convert(self.BASE, DeploymentSpec))

    @pytest.mark.parametrize(("extra", "match"), [
        ({"native_apis": ["embeddings"]}, "native_apis"),
        ({"native_apis": ["messages", "messages"]}, "twice"),
        ({"provider": "local", "base_url": None, "native_apis": ["responses"]}, "HTTP upstream"),
    ])
    def test_anything_else_is_refused(self, extra: dict[str, object], match: str) -> None:
        import msgspec

        with pytest.raises(msgspec.ValidationError, match=match):
            msgspec.convert({**self.BASE, **extra}, DeploymentSpec)


class TestUpstreamHeaders:
    """Which header carries the deployment's credential, and that a passed-through request's own headers
    go with it."""

    def _headers(self, monkeypatch: pytest.MonkeyPatch, endpoint: str,
                 extra: dict[str, str] | None = None) -> dict[str, str] | None:
        from aiaas.inference.providers.base import Call
        from aiaas.inference.providers.http import HttpUpstream
        from aiaas.inference.schemas import Deployment

        monkeypatch.setenv("UPSTREAM_CREDENTIAL_VENDOR", "sk-upstream-secret")  # pragma: allowlist secret
        dep = Deployment(id="1", name="d", provider="openai", upstream_model="m", base_url="https://x/v1",
                         credential_ref="vendor", weight=1, priority=0, connect_timeout=1, first_byte_timeout=1,
                         chunk_timeout=1, total_timeout=1, context_length=None, enabled=True)
        up = HttpUpstream(client=None, credentials=CredentialResolver())  # type: ignore[arg-type]
        return up._headers(dep, Call(endpoint=endpoint, body=b"{}", public_model="m", deadline=0, headers=extra))

    def test_chat_and_responses_send_a_bearer_token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for endpoint in ("chat.completions", "responses"):
            assert self._headers(monkeypatch, endpoint) == {"Authorization": "Bearer sk-upstream-secret"}

    def test_anthropics_api_gets_x_api_key_and_the_clients_version_headers(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        headers = self._headers(monkeypatch, "messages", {"anthropic-version": "2023-06-01", "anthropic-beta": "b1"})
        secret = "sk-upstream-secret"  # pragma: allowlist secret
        assert headers == {"x-api-key": secret, "anthropic-version": "2023-06-01", "anthropic-beta": "b1"}
