"""Business rules of metering, in five parts: Redis keys, admission and settlement, the ledger, its
partitions and retention, org policies. Callers use the names re-exported here."""

from __future__ import annotations

from aiaas.usage.service.admission import (
    ADMISSIONS,
    MAX_ADMITTED_TOKENS,
    MAX_CHOICES,
    RESERVATION_TTL_MS,
    SETTLED_MARKER_TTL_MS,
    admit,
    quota_usage,
    settle,
    spend_usage,
)
from aiaas.usage.service.health import HEALTH, LimiterHealth
from aiaas.usage.service.keys import policy_key, quota_key, quota_keys, window_keys
from aiaas.usage.service.ledger import (
    CSV_COLUMNS,
    PermanentEventError,
    csv_row,
    decode_cursor,
    encode_cursor,
    export_usage,
    ledger_row,
    list_usage,
    record_completions,
    replay_completions,
    validate_filter,
)
from aiaas.usage.service.policies import PolicyStore, SessionFactory, get_policy, put_policy
from aiaas.usage.service.retention import (
    PARTITIONS_DROPPED,
    drop_expired_partitions,
    ensure_ledger_partitions,
    ensure_partitions_for,
)

__all__ = [
    "ADMISSIONS",
    "CSV_COLUMNS",
    "HEALTH",
    "MAX_ADMITTED_TOKENS",
    "MAX_CHOICES",
    "PARTITIONS_DROPPED",
    "RESERVATION_TTL_MS",
    "SETTLED_MARKER_TTL_MS",
    "LimiterHealth",
    "PermanentEventError",
    "PolicyStore",
    "SessionFactory",
    "admit",
    "csv_row",
    "decode_cursor",
    "drop_expired_partitions",
    "encode_cursor",
    "ensure_ledger_partitions",
    "ensure_partitions_for",
    "export_usage",
    "get_policy",
    "ledger_row",
    "list_usage",
    "policy_key",
    "put_policy",
    "quota_key",
    "quota_keys",
    "quota_usage",
    "record_completions",
    "replay_completions",
    "settle",
    "spend_usage",
    "validate_filter",
    "window_keys",
]
