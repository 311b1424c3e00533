"""``usage``: the requests ledger (one row per request), or ``--summary`` (analytics per time bucket)."""

from __future__ import annotations

from typing import Any

import click

from aiaas.ctl.commands.common import list_all, show_list
from aiaas.ctl.durations import iso, parse_instant
from aiaas.ctl.errors import UsageFailure
from aiaas.ctl.output import Column, Format, when
from aiaas.ctl.resolve import current_org, key_id
from aiaas.ctl.state import State, with_state

GRANULARITIES = click.Choice(["minute", "hour", "day"])
# What the summary can be grouped by, and the row field each grouping fills.
_GROUP_FIELDS = {"model": "model", "deployment": "deployment", "api_key": "api_key_id", "user": "user_id",
                 "endpoint": "endpoint", "status": "status", "error_type": "error_type"}

LEDGER_COLUMNS = [
    Column("TIME", lambda r: when(r.get("occurred_at"))), Column("MODEL", "model"), Column("ENDPOINT", "endpoint"),
    Column("STATUS", "status"), Column("HTTP", "http_status", "right"),
    Column("PROMPT", "prompt_tokens", "right"), Column("COMPLETION", "completion_tokens", "right"),
    Column("TOTAL", "total_tokens", "right"),
    Column("TTFB MS", lambda r: _ms(r.get("ttfb_ms")), "right"),
    Column("LATENCY MS", lambda r: _ms(r.get("latency_ms")), "right"), Column("KEY", "key_id"),
    Column("REQUEST ID", "request_id"),
]


def _ms(value: Any) -> str | None:
    return f"{value:.0f}" if isinstance(value, int | float) else None


def _time(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        return iso(parse_instant(value))
    except ValueError as exc:
        raise UsageFailure(f"{option}: {exc}") from None


def _org_param(st: State) -> str | None:
    """A session names the org (``?org_id=``); an API key reads its own unless --org says otherwise."""
    return current_org(st) if st.org or not st.api_key else None


@click.command("usage")
@click.option("--since", metavar="TIME", help="From (ISO 8601, or a duration ago: 24h, 7d).")
@click.option("--until", metavar="TIME", help="Until (ISO 8601, a duration ago, or now).")
@click.option("--model", help="Only this model.")
@click.option("--key", metavar="KEY", help="Only this API key (id, name or prefix).")
@click.option("--status", help="Only this status (ok, error, cancelled, ...).")
@click.option("--user", metavar="USER_ID", help="Only this user (ledger).")
@click.option("--summary", is_flag=True, help="Totals per time bucket (analytics) instead of the requests; implied "
              "by --granularity and --group-by.")
@click.option("--granularity", type=GRANULARITIES, help="Bucket width of the summary (default: day).")
@click.option("--group-by", "group_by", type=click.Choice(list(_GROUP_FIELDS)), multiple=True,
              help="Group the summary by this (repeat for several).")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many (default: 20 requests, 100 "
              "summary rows).")
@click.option("--all", "every", is_flag=True, help="Follow every page (ignores --limit).")
@click.option("--json", "as_json", is_flag=True, help="Same as -o json.")
@click.option("--csv", "as_csv", is_flag=True, help="Same as -o csv.")
@with_state
def usage(st: State, since: str | None, until: str | None, model: str | None, key: str | None, status: str | None,
          user: str | None, summary: bool, granularity: str | None, group_by: tuple[str, ...], limit: int | None,
          every: bool, as_json: bool, as_csv: bool) -> None:
    """The requests ledger, newest first (one row per request: tokens, status, latency), or with --summary
    requests, errors, tokens and cost per time bucket.

    --csv on the ledger streams the server's CSV export of every matching request (--limit does not apply).
    """
    if as_json and as_csv:
        raise UsageFailure("give either --json or --csv, not both")
    if as_json or as_csv:
        st.out.format = Format.json if as_json else Format.csv
    if summary or granularity is not None or group_by:
        _summary(st, start=_time(since or "7d", "--since"), end=_time(until or "now", "--until"),
                 granularity=granularity or "day", groups=list(group_by), model=model,
                 key=key, status=status, limit=limit or 100, every=every)
    else:
        _ledger(st, since=_time(since, "--since"), until=_time(until, "--until"), model=model, key=key,
                status=status, user=user, limit=limit or 20, every=every)


def _ledger(st: State, *, since: str | None, until: str | None, model: str | None, key: str | None,
            status: str | None, user: str | None, limit: int, every: bool) -> None:
    org_id = _org_param(st)
    params: dict[str, Any] = {
        "org_id": org_id, "since": since, "until": until, "model": model,
        "key_id": key_id(st, org_id or current_org(st), key) if key else None, "status": status, "user_id": user,
    }
    if st.out.format is Format.csv:
        with st.management().call("GET", "/v1/usage/requests.csv", params=params, stream=True) as reply:
            for piece in reply.iter_text():
                st.out.out.write(piece)
        return
    page = list_all(st, lambda cursor, size: st.management().call(
        "GET", "/v1/usage/requests", params={**params, "cursor": cursor, "limit": size}).json(),
        limit=limit, every=every, what="requests", max_page=1000)
    show_list(st, page, LEDGER_COLUMNS, what="requests")


def _summary(st: State, *, start: str | None, end: str | None, granularity: str, groups: list[str],
             model: str | None, key: str | None, status: str | None, limit: int, every: bool) -> None:
    org_id = _org_param(st)
    params: dict[str, Any] = {
        "org_id": org_id, "start": start, "end": end,
        "granularity": granularity, "group_by": groups, "model": [model] if model else None,
        "api_key": [key_id(st, org_id or current_org(st), key)] if key else None,
        "status": [status] if status else None,
    }
    page = list_all(st, lambda cursor, size: st.management().call(
        "GET", "/v1/analytics/usage", params={**params, "cursor": cursor, "limit": size}).json(),
        limit=limit, every=every, what="rows", max_page=1000)
    columns = [Column("BUCKET", lambda r: when(r.get("bucket_start"))),
               *(Column(g.upper(), _GROUP_FIELDS[g]) for g in groups),
               Column("REQUESTS", "requests", "right"), Column("ERRORS", "errors", "right"),
               Column("PROMPT", "prompt_tokens", "right"), Column("COMPLETION", "completion_tokens", "right"),
               Column("TOTAL", "total_tokens", "right"), Column("COST USD", "cost_usd", "right"),
               Column("UNPRICED", "unpriced_requests", "right")]
    show_list(st, page, columns, what="rows")
