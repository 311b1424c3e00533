"""Settings come from AIAAS_* variables, typed, with errors that name the variable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.kernel.config import CONTEXTS, ConfigError, Settings, gc_thresholds, load_settings, worker_consumers


class TestDefaults:
    def test_defaults_reach_local_services(self) -> None:
        s = load_settings({})
        assert s.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas"
        assert s.redis_url == "redis://127.0.0.1:6379/0"
        assert s.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"  # pragma: allowlist secret
        assert (s.api_port, s.streamer_port, s.worker_port) == (8000, 8001, 8002)

    def test_unrelated_variables_are_ignored(self) -> None:
        assert load_settings({"PATH": "/bin", "AIAAS_SOMETHING_ELSE": "x"}) == Settings()


class TestConversion:
    def test_strings_become_declared_types(self) -> None:
        s = load_settings({"AIAAS_API_PORT": "9000", "AIAAS_LOG_JSON": "no", "AIAAS_READY_TIMEOUT_SECONDS": "0.5"})
        assert s.api_port == 9000
        assert s.log_json is False
        assert s.ready_timeout_seconds == 0.5

    @pytest.mark.parametrize(
        ("name", "value", "expected"),
        [
            ("AIAAS_API_PORT", "eighty", "AIAAS_API_PORT='eighty' is invalid: expected an integer"),
            ("AIAAS_STREAMER_PORT", "70000", "AIAAS_STREAMER_PORT='70000' is invalid: expected an integer"),
            ("AIAAS_LOG_LEVEL", "LOUD", "AIAAS_LOG_LEVEL='LOUD' is invalid: expected one of"),
            ("AIAAS_LOG_JSON", "maybe", "AIAAS_LOG_JSON='maybe' is invalid: expected true or false"),
            ("AIAAS_REDIS_URL", "http://x", "AIAAS_REDIS_URL is invalid: expected a URL starting with redis://"),
            ("AIAAS_DATABASE_URL", "postgres://x", "AIAAS_DATABASE_URL is invalid: expected a URL"),
            ("AIAAS_USAGE_DATABASE_URL", "mysql://x", "AIAAS_USAGE_DATABASE_URL is invalid"),
            ("AIAAS_OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "AIAAS_OTEL_EXPORTER_OTLP_ENDPOINT"),
            ("AIAAS_WORKER_CONSUMERS", "usage,billing", "one or more of usage, analytics"),
            ("AIAAS_WORKER_CONSUMERS", " , ", "AIAAS_WORKER_CONSUMERS"),
            ("AIAAS_GC_THRESHOLDS", "700,10", "three integers"),
            ("AIAAS_GC_THRESHOLDS", "0,10,10", "AIAAS_GC_THRESHOLDS"),
        ],
    )
    def test_bad_value_names_variable_and_form(self, name: str, value: str, expected: str) -> None:
        with pytest.raises(ConfigError) as err:
            load_settings({name: value})
        assert expected in str(err.value)

    def test_url_errors_do_not_echo_credentials(self) -> None:
        with pytest.raises(ConfigError) as err:
            load_settings({"AIAAS_AMQP_URL": "http://user:hunter2@host/"})  # pragma: allowlist secret
        assert "hunter2" not in str(err.value)


class TestGcThresholds:
    def test_unset_keeps_pythons_and_three_integers_are_taken(self) -> None:
        assert gc_thresholds(load_settings({})) is None
        assert gc_thresholds(load_settings({"AIAAS_GC_THRESHOLDS": "700, 3, 10"})) == (700, 3, 10)


class TestWorkerConsumers:
    def test_both_by_default_and_a_chosen_one_alone(self) -> None:
        assert worker_consumers(load_settings({})) == ("usage", "analytics")
        assert worker_consumers(load_settings({"AIAAS_WORKER_CONSUMERS": " analytics ,analytics"})) == ("analytics",)


class TestPerContextDatabase:
    def test_context_defaults_to_shared_url(self) -> None:
        s = load_settings({"AIAAS_DATABASE_URL": "postgresql+asyncpg://a@h/db"})
        assert {s.database_url_for(c) for c in CONTEXTS} == {"postgresql+asyncpg://a@h/db"}

    def test_context_override(self) -> None:
        s = load_settings({"AIAAS_USAGE_DATABASE_URL": "postgresql+asyncpg://a@h/usage"})
        assert s.database_url_for("usage") == "postgresql+asyncpg://a@h/usage"
        assert s.database_url_for("auth") == s.database_url

    def test_unknown_context_rejected(self) -> None:
        with pytest.raises(ValueError, match="unknown context"):
            Settings().database_url_for("billing")

    @given(st.integers(min_value=1, max_value=65535))
    def test_any_valid_port_round_trips(self, port: int) -> None:
        assert load_settings({"AIAAS_WORKER_PORT": str(port)}).worker_port == port

    @given(st.text(max_size=20).filter(lambda t: not t.strip().lstrip("+-").isdigit()))
    def test_non_numeric_port_always_named(self, text: str) -> None:
        with pytest.raises(ConfigError, match="AIAAS_WORKER_PORT"):
            load_settings({"AIAAS_WORKER_PORT": text})
