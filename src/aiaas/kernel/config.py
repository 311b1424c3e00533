"""Typed settings read from ``AIAAS_*`` environment variables.

One frozen msgspec Struct holds every setting. ``load_settings`` reads the environment once at start,
converts the strings to the declared types and fails with an error that names the variable and the
form it expects, so a typo never turns into a confusing failure deep inside a request.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

ENV_PREFIX = "AIAAS_"

CONTEXTS: tuple[str, ...] = ("auth", "orgs", "inference", "usage", "analytics")

Role = Literal["api", "streamer", "worker", "all"]

_Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every setting of the platform; field ``x_y`` is read from ``AIAAS_X_Y``."""

    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    api_port: _Port = 8000
    streamer_port: _Port = 8001
    worker_port: _Port = 8002
    workers: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    graceful_shutdown_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas"
    auth_database_url: str | None = None
    orgs_database_url: str | None = None
    inference_database_url: str | None = None
    usage_database_url: str | None = None
    analytics_database_url: str | None = None
    db_pool_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 10
    db_max_overflow: Annotated[int, msgspec.Meta(ge=0, le=500)] = 10
    db_statement_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 30_000

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_mode: Literal["standalone", "sentinel", "cluster"] = "standalone"
    # Sentinel mode: the sentinels (host:port, comma-separated) and the name of the master they watch.
    redis_sentinels: str = ""
    redis_sentinel_master: str = "mymaster"
    redis_prefix: str = ""
    # How long one Redis command (or pipeline) may take before it counts as Redis being unavailable.
    redis_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"  # pragma: allowlist secret
    broker_prefix: str = ""

    ready_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30)] = 1.0
    max_request_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 8 * 1024 * 1024
    max_request_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024)] = 32 * 1024
    # Comma-separated IPs or CIDR networks of the reverse proxies in front of the app (an ingress, a load
    # balancer); only from those are X-Forwarded-For and X-Forwarded-Proto believed. Empty: from nobody.
    trusted_proxies: str = ""
    # Bearer token /metrics asks for. Unset: /metrics is open in development and test, and refused in
    # production (scrapers then send the token; see docs/security.md).
    metrics_token: str | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    access_log: bool = True
    service_name: str = "aiaas"
    otel_exporter_otlp_endpoint: str | None = None
    otel_sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0

    migrations_dir: str | None = None

    # Identity: passwords, sessions, login throttling, the principal cache.
    bcrypt_rounds: Annotated[int, msgspec.Meta(ge=12, le=16)] = 12
    session_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=30 * 86_400)] = 12 * 3600
    login_max_failures_per_account: Annotated[int, msgspec.Meta(ge=1)] = 5
    login_failure_window_seconds: Annotated[int, msgspec.Meta(ge=1)] = 900
    login_max_attempts_per_address: Annotated[int, msgspec.Meta(ge=1)] = 30
    login_address_window_seconds: Annotated[int, msgspec.Meta(ge=1)] = 60
    login_max_backoff_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 60
    principal_cache_ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 300
    last_used_flush_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    inference_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    inference_retry_budget_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    inference_breaker_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    inference_breaker_cooldown_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 15.0
    inference_catalog_ttl_seconds: Annotated[int, msgspec.Meta(ge=1)] = 3600
    inference_upstream_pool_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    # Below the 5 s idle timeout common to servers, so the upstream rarely closes a connection we reuse.
    inference_upstream_keepalive_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 4.0
    inference_upstream_pool_wait_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    # Egress policy of upstream connections (inference/providers/egress.py): comma-separated IPs or CIDR
    # networks, each optionally with :port. Outside development, internal addresses (loopback, private,
    # link-local) are refused unless allowed here.
    upstream_egress_allow: str = ""
    upstream_egress_deny: str = ""
    # A directory of upstream credentials, one file per credential_ref (a mounted Kubernetes Secret).
    upstream_credentials_dir: str | None = None
    # Days a stored Responses API response (``store: true``) is kept for retrieval and previous_response_id.
    responses_retention_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    local_model_enabled: bool = True
    local_model_path: str | None = None
    local_model_context: Annotated[int, msgspec.Meta(ge=128, le=131_072)] = 2048
    local_model_threads: Annotated[int, msgspec.Meta(ge=1, le=256)] | None = None
    local_model_max_queue: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 16
    local_model_max_tokens: Annotated[int, msgspec.Meta(ge=1, le=131_072)] = 512
    local_model_chat_format: str | None = "gemma"
    event_buffer_size: Annotated[int, msgspec.Meta(ge=10, le=10_000_000)] = 10_000
    event_publish_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    event_linger_ms: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 0.0
    usage_redis_failure_mode: Literal["open", "closed"] = "closed"
    usage_ledger_batch_size: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 200
    usage_consumer_prefetch: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 512
    # Days of usage ledger rows to keep (whole months are dropped once wholly older); None keeps forever.
    usage_ledger_retention_days: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def database_url_for(self, context: str) -> str:
        """The database URL of one bounded context: its own override, else the shared one."""
        if context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r}")
        return getattr(self, f"{context}_database_url") or self.database_url


class ConfigError(ValueError):
    """A setting in the environment is missing its expected form."""


def _env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _expected_form(field: str) -> str:
    info = msgspec.inspect.type_info(Settings)
    for f in info.fields:  # type: ignore[attr-defined]
        if f.name == field:
            return _describe(f.type)
    return "a valid value"


def _describe(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.IntType):
        bounds = []
        if t.ge is not None:
            bounds.append(f">= {t.ge}")
        if t.le is not None:
            bounds.append(f"<= {t.le}")
        return "an integer" + (f" ({', '.join(bounds)})" if bounds else "")
    if isinstance(t, msgspec.inspect.FloatType):
        return "a number" + (f" >= {t.ge}" if t.ge is not None else "")
    if isinstance(t, msgspec.inspect.BoolType):
        return "true or false"
    if isinstance(t, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(repr(v) for v in t.values)
    if isinstance(t, msgspec.inspect.UnionType):
        return " or ".join(_describe(x) for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
    if isinstance(t, msgspec.inspect.StrType):
        return "a string"
    return "a valid value"


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
               "off": False}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read, convert and validate every ``AIAAS_*`` variable; raise ``ConfigError`` naming a bad one."""
    environ = os.environ if environ is None else environ
    known = set(Settings.__struct_fields__)
    raw: dict[str, object] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name[len(ENV_PREFIX):].lower()
        if field not in known:
            # Unknown AIAAS_ variables are ignored rather than fatal: deploy tooling may add its own.
            continue
        if value == "" and field.endswith("_url") and field != "database_url":
            continue
        annotation = Settings.__annotations__.get(field, "")
        if "bool" in str(annotation):
            word = value.strip().lower()
            if word not in _BOOL_WORDS:
                raise ConfigError(f"{name}={value!r} is invalid: expected true or false")
            raw[field] = _BOOL_WORDS[word]
        else:
            raw[field] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        field = _failing_field(str(exc))
        if field is None:
            raise ConfigError(str(exc)) from None
        raise ConfigError(
            f"{_env_name(field)}={raw.get(field)!r} is invalid: expected {_expected_form(field)}"
        ) from None
    _check_urls(settings)
    _check_redis(settings)
    _check_security(settings)
    return settings


def _failing_field(message: str) -> str | None:
    marker = "at `$."
    if marker not in message:
        return None
    rest = message.split(marker, 1)[1]
    return rest.split("`", 1)[0].split(".", 1)[0].split("[", 1)[0]


_URL_SCHEMES = {
    "database_url": ("postgresql+asyncpg://",),
    "redis_url": ("redis://", "rediss://", "unix://"),
    "amqp_url": ("amqp://", "amqps://"),
}


def _check_urls(settings: Settings) -> None:
    for field, schemes in _URL_SCHEMES.items():
        value = getattr(settings, field)
        if not value.startswith(schemes):
            raise ConfigError(f"{_env_name(field)} is invalid: expected a URL starting with {' or '.join(schemes)}")
    for context in CONTEXTS:
        value = getattr(settings, f"{context}_database_url")
        if value is not None and not value.startswith("postgresql+asyncpg://"):
            raise ConfigError(
                f"{_env_name(context + '_database_url')} is invalid: expected a URL starting with "
                "postgresql+asyncpg://"
            )
    if settings.otel_exporter_otlp_endpoint and not settings.otel_exporter_otlp_endpoint.startswith(
        ("http://", "https://")
    ):
        raise ConfigError(f"{_env_name('otel_exporter_otlp_endpoint')} is invalid: expected an http(s) URL")


def _check_redis(settings: Settings) -> None:
    if settings.redis_mode == "sentinel":
        entries = [e.strip() for e in settings.redis_sentinels.split(",") if e.strip()]
        if not entries or not all(e.rpartition(":")[2].isdigit() for e in entries):
            raise ConfigError(f"{_env_name('redis_sentinels')} is invalid: expected host:port[,host:port...] "
                              "(AIAAS_REDIS_MODE is sentinel)")
    if "{" in settings.redis_prefix or "}" in settings.redis_prefix:
        raise ConfigError(f"{_env_name('redis_prefix')} is invalid: braces would break Redis Cluster hash tags")


def _check_security(settings: Settings) -> None:
    for entry in (e.strip() for e in settings.trusted_proxies.split(",")):
        if not entry:
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"{_env_name('trusted_proxies')} is invalid: {entry!r} is not an IP address or "
                              "CIDR network") from None
    if settings.metrics_token is not None and len(settings.metrics_token) < 16:
        raise ConfigError(f"{_env_name('metrics_token')} is invalid: expected at least 16 characters")
