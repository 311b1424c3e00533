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
    api_max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 64

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas"
    auth_database_url: str | None = None
    orgs_database_url: str | None = None
    inference_database_url: str | None = None
    usage_database_url: str | None = None
    analytics_database_url: str | None = None
    db_pool_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 10
    db_max_overflow: Annotated[int, msgspec.Meta(ge=0, le=500)] = 10
    db_statement_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 30_000
    db_pgbouncer: bool = False
    gc_freeze: bool = True
    gc_thresholds: str = ""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_mode: Literal["standalone", "sentinel", "cluster"] = "standalone"
    # Sentinel mode: the sentinels (host:port, comma-separated) and the name of the master they watch.
    redis_sentinels: str = ""
    redis_sentinel_master: str = "mymaster"
    redis_prefix: str = ""
    # How long one Redis command (or pipeline) may take before it counts as Redis being unavailable.
    redis_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    # Connections per process (per node on a Cluster); a command past them waits for one within its deadline.
    redis_max_connections: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 256
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"  # pragma: allowlist secret
    broker_prefix: str = ""
    broker_queue_type: Literal["quorum", "classic"] = "quorum"

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
    local_model_chat_format: str | None = "aiaas-dialogue"
    local_model_repeat_penalty: Annotated[float, msgspec.Meta(ge=1.0, le=2.0)] = 1.1
    local_model_warm: bool = True
    event_buffer_size: Annotated[int, msgspec.Meta(ge=10, le=10_000_000)] = 10_000
    event_publish_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    event_linger_ms: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 0.0
    event_envelope_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    usage_redis_failure_mode: Literal["open", "closed"] = "closed"
    usage_ledger_batch_size: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 200
    usage_ledger_concurrency: Annotated[int, msgspec.Meta(ge=1, le=32)] = 3
    usage_consumer_prefetch: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 128
    analytics_batch_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    worker_consumers: str = "usage,analytics"
    # Days of usage ledger rows to keep (whole months are dropped once wholly older); None keeps forever.
    usage_ledger_retention_days: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def database_url_for(self, context: str) -> str:
        """The database URL of one bounded context: its own override, else the shared one."""
        if context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r}")
        return getattr(self, f"{context}_database_url") or self.database_url


# What each setting means, for the generated reference (docs/configuration.md, `aiaas docs`); a setting
# without an entry fails the docs check, so a new one cannot land undocumented.
DESCRIPTIONS: dict[str, str] = {
    'env': '`development`, `test` or `production`',
    'host': 'bind address (the container image sets `0.0.0.0`)',
    'api_port': 'port of role `api`',
    'api_max_in_flight': (
        'requests the management API handles at once per process; more get a fast 503 + `Retry-After` '
        '(probes and metrics are never refused)'
    ),
    'streamer_port': 'port of role `streamer`',
    'worker_port': "port of the worker's `/health`, `/ready`, `/metrics`",
    'workers': 'server worker processes (`--workers` overrides)',
    'graceful_shutdown_seconds': 'how long in-flight requests and streams may finish after SIGTERM',
    'database_url': 'shared PostgreSQL database',
    'auth_database_url': "the `auth` context's own database (unset: the shared `AIAAS_DATABASE_URL`)",
    'orgs_database_url': "the `orgs` context's own database (unset: the shared `AIAAS_DATABASE_URL`)",
    'inference_database_url': "the `inference` context's own database (unset: the shared `AIAAS_DATABASE_URL`)",
    'usage_database_url': "the `usage` context's own database (unset: the shared `AIAAS_DATABASE_URL`)",
    'analytics_database_url': "the `analytics` context's own database (unset: the shared `AIAAS_DATABASE_URL`)",
    'db_pool_size': 'connections kept open per distinct database URL and process',
    'db_max_overflow': 'connections opened beyond the pool size under load, per distinct database URL and process',
    'db_statement_timeout_ms': "PostgreSQL `statement_timeout` for the app's connections (0 = none)",
    'gc_freeze': (
        'after start, and again 1 and 10 minutes later (what the first requests built), exempt every object '
        "alive then from garbage collection (`gc.freeze()`), so the collector's pauses walk only what requests "
        'allocate'
    ),
    'gc_thresholds': (
        "the garbage collector's thresholds once serving, `gen0,gen1,gen2` (`gc.set_threshold`); unset keeps "
        "Python's (700,10,10). `bench/runtime_pauses.py --thresholds` measures the pauses of each"
    ),
    'db_pgbouncer': (
        'the database URLs lead to PgBouncer in transaction pooling mode: no prepared-statement caches, unique '
        'statement names, no startup parameters but `application_name` (set `jit` and `statement_timeout` '
        'in PgBouncer or on the role: [deployment.md](deployment.md#310-postgresql-through-pgbouncer)); '
        '`aiaas migrate` refuses it and needs a direct or session-pooled URL'
    ),
    'redis_url': (
        'Redis (cache, sessions, counters): `redis://` or `rediss://` (TLS; `?ssl_ca_certs=/path/ca.pem` for '
        'a private CA); in cluster mode any node; in sentinel mode only its password, database and scheme are '
        'used'
    ),
    'redis_mode': '`standalone`, `sentinel` or `cluster` (Redis Cluster: keys used together share a hash slot)',
    'redis_sentinels': 'sentinel mode: the sentinels, `host:port[,host:port…]`',
    'redis_sentinel_master': 'sentinel mode: the name of the master the sentinels watch',
    'redis_prefix': 'prefix of every Redis key (tests use one per test); no braces',
    'redis_timeout_seconds': (
        'longest one Redis command or pipeline may take; then Redis counts as unavailable for that request '
        '(limits fail open or closed per org policy)'
    ),
    'redis_max_connections': (
        'Redis connections per process (per node on a Cluster); standalone: a command past them waits for one '
        'within its deadline instead of failing'
    ),
    'amqp_url': 'RabbitMQ <!-- pragma: allowlist secret -->',
    'broker_prefix': 'prefix of every exchange and queue name',
    'broker_queue_type': (
        'type of the durable queues the platform declares: `quorum` (replicated: a RabbitMQ cluster keeps the '
        'events through the loss of a node) or `classic`; a queue that already exists keeps its type'
    ),
    'ready_timeout_seconds': 'timeout of each dependency check of `/ready`',
    'max_request_body_bytes': 'larger request bodies are refused with 413',
    'max_request_header_bytes': (
        'a larger request line plus headers is refused with 431 (problem+json) before the app sees it'
    ),
    'trusted_proxies': (
        'comma-separated IPs or CIDR networks of the reverse proxies in front of the app; only from them are '
        '`X-Forwarded-For`/`-Proto` believed (empty: from nobody)'
    ),
    'metrics_token': (
        'bearer token `/metrics` asks for (at least 16 characters); unset: `/metrics` is open in development '
        'and test and refused (403) in production'
    ),
    'log_level': '`DEBUG`, `INFO`, `WARNING`, `ERROR`',
    'log_json': 'one JSON object a line; `false` for plain text while developing',
    'access_log': 'one log line per HTTP request (with request, trace and span ids)',
    'service_name': '`service.name` of traces and the `service` field of logs',
    'otel_exporter_otlp_endpoint': 'OTLP/HTTP collector, e.g. `http://otel-collector:4318`; unset = no export',
    'otel_sample_ratio': 'share of new traces sampled (parent decisions are honoured)',
    'migrations_dir': 'where the Alembic scripts live, if not in the package or source tree',
    'bcrypt_rounds': 'bcrypt cost of password hashes (12 to 16)',
    'session_ttl_seconds': 'lifetime of a login session token (kept in Redis)',
    'login_max_failures_per_account': (
        'failed logins of one account from one address within the window before that address is locked out of '
        'it; from this many failures (from anywhere) on, each further attempt waits a backoff'
    ),
    'login_failure_window_seconds': 'window (and lock-out) of the per-account-and-address failure count',
    'login_max_attempts_per_address': 'login attempts from one client address within its window before 429',
    'login_address_window_seconds': 'window of the per-address attempt count',
    'login_max_backoff_seconds': (
        'longest wait the per-account backoff asks for (1, 2, 4 … seconds); an address the owner signed in '
        'from in the last 30 days is exempt'
    ),
    'principal_cache_ttl_seconds': (
        'how long a resolved API-key principal stays in Redis (revocations apply at once regardless)'
    ),
    'last_used_flush_seconds': 'how often the worker moves API-key last-used stamps from Redis to PostgreSQL',
    'inference_max_attempts': 'deployments tried per request before giving up',
    'inference_retry_budget_seconds': 'no new attempt starts after this long',
    'inference_breaker_failures': "consecutive failures that open a deployment's circuit breaker",
    'inference_breaker_cooldown_seconds': 'how long an open breaker keeps a deployment out before a probe',
    'inference_catalog_ttl_seconds': 'TTL of catalog entries cached in Redis (writes refresh them at once)',
    'inference_upstream_pool_size': (
        'open upstream HTTP connections per upstream origin (scheme, host, port) and process; more requests '
        'wait for one'
    ),
    'inference_upstream_keepalive_seconds': (
        'idle upstream connections are kept this long: below the 5 s idle timeout common to servers, so an '
        'upstream rarely closes a connection about to be reused (one it did close is retried once on a new '
        'connection)'
    ),
    'inference_upstream_pool_wait_seconds': (
        'how long a request waits for a free connection of its upstream origin (when `POOL_SIZE` are in use) '
        'before that deployment fails with `timeout` and the next one is tried; not counted in the '
        "deployment's first-byte timeout"
    ),
    'upstream_egress_allow': (
        'IPs or CIDR networks (each optionally `:port`) upstream connections may reach although internal '
        '(outside development loopback, private, link-local, CGNAT, multicast and reserved addresses are '
        'refused); e.g. `10.0.0.0/8` for vLLM inside the cluster'
    ),
    'upstream_egress_deny': 'addresses upstream connections may never reach (same form)',
    'upstream_credentials_dir': (
        'a directory holding one file per `credential_ref` (a mounted Secret); otherwise a reference `NAME` '
        'reads `UPSTREAM_CREDENTIAL_<NAME>`'
    ),
    'responses_retention_days': (
        'days a stored Responses API response (`store: true`) is kept for `GET /v1/responses/{id}` and '
        '`previous_response_id`; the worker deletes expired ones every 5 minutes'
    ),
    'local_model_enabled': 'serve deployments of provider `local` (embedded llama.cpp)',
    'local_model_path': 'GGUF file of the embedded model (default: Gemma 3 270M Q4_K_M from `aiaas[local]`)',
    'local_model_context': 'context length of the embedded model',
    'local_model_threads': 'CPU threads of the embedded model (default: every CPU the process may use)',
    'local_model_max_queue': 'requests that may wait for the embedded model; more get 503 + Retry-After',
    'local_model_max_tokens': 'default and cap of `max_tokens` on the embedded model (more is a 400)',
    'local_model_chat_format': (
        "prompt format of the embedded model: `aiaas-dialogue` (a User/Assistant transcript, for the packaged "
        "base model), a llama-cpp-python chat format name (`gemma`, `chatml`, ...), or empty: the GGUF's own template"
    ),
    'local_model_repeat_penalty': 'repetition penalty of the embedded model (1: none); keeps a small model off loops',
    'local_model_warm': 'load the embedded model and read its prompt prefix at start; readiness waits for it',
    'event_buffer_size': 'events buffered in memory per process before the excess is spilled to Redis',
    'event_publish_timeout_seconds': "how long a publish may wait for RabbitMQ's confirm before the event is spilled",
    'event_linger_ms': (
        'wait this long for events to gather before publishing a batch; 0 publishes at once (batches still '
        'form under load, and at low load lingering only makes bursts that delay later requests)'
    ),
    'event_envelope_size': (
        'most events packed into one AMQP message (one publish, one confirm, one ack); 1 sends each event alone, '
        'as releases before envelopes did (set it while workers of such a release still consume)'
    ),
    'usage_redis_failure_mode': (
        'default for orgs without a policy while Redis is down: `closed` (503) or `open` (serve, count later)'
    ),
    'usage_ledger_batch_size': 'events per ledger transaction in the worker',
    'worker_consumers': (
        'the queues a worker process consumes, comma separated: `usage` (the ledger and quota settlement), '
        '`analytics` (the projections), or both; a large install runs each in processes of its own'
    ),
    'usage_ledger_concurrency': 'ledger transactions a worker process keeps in flight at once while full batches wait',
    'usage_consumer_prefetch': (
        "unacked messages (an envelope counts once) a worker holds per queue: bounds a batch's fill and "
        'redelivery after a crash'
    ),
    'analytics_batch_wait_seconds': (
        'how long the projections wait after an event for more to apply with it (one transaction per batch): '
        'how much later the analytics may show an event, against their fixed cost per transaction at low rates'
    ),
    'usage_ledger_retention_days': (
        "days of `usage.requests` rows to keep (≥ 1); the worker drops a month's partition once the whole "
        'month is older than this, so rows live between this many days and a month more '
        "([metering.md](metering.md#the-ledger-monthly-partitions-and-retention)); analytics' processed-event "
        'records older than it (and than 40 days) are deleted by the same run'
    ),
}

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
    _check_worker(settings)
    _check_gc(settings)
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


WORKER_CONSUMERS = ("usage", "analytics")


def worker_consumers(settings: Settings) -> tuple[str, ...]:
    """The consumers ``AIAAS_WORKER_CONSUMERS`` names, in its order."""
    return tuple(dict.fromkeys(c.strip() for c in settings.worker_consumers.split(",") if c.strip()))


def gc_thresholds(settings: Settings) -> tuple[int, int, int] | None:
    """``AIAAS_GC_THRESHOLDS`` as three integers, None when unset."""
    if not settings.gc_thresholds.strip():
        return None
    a, b, c = (int(x) for x in settings.gc_thresholds.split(","))
    return a, b, c


def _check_gc(settings: Settings) -> None:
    try:
        t = gc_thresholds(settings)
    except ValueError:
        t = (0, 0, 0)
    if t is not None and (t[0] < 1 or t[1] < 1 or t[2] < 1):
        raise ConfigError(f"{_env_name('gc_thresholds')}={settings.gc_thresholds!r} is invalid: expected three "
                          "integers ≥ 1, gen0,gen1,gen2 (for example 700,10,10)")


def _check_worker(settings: Settings) -> None:
    chosen = worker_consumers(settings)
    if not chosen or any(c not in WORKER_CONSUMERS for c in chosen):
        raise ConfigError(f"{_env_name('worker_consumers')}={settings.worker_consumers!r} is invalid: expected "
                          f"one or more of {', '.join(WORKER_CONSUMERS)}, comma separated")


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
