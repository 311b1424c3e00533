"""``aiaas analytics rebuild|reprice``: recompute the projections from the usage ledger.

``rebuild [--from DATE] [--org ID]`` recomputes them from the ledger (from the UTC day of DATE on; all
history without it); ``reprice --from DATE`` is the same, named for what it is used for: re-rating
requests after a price-book change. Both are idempotent. Run them when the ledger has caught up (its
consumer's queue is empty): a request the projections counted but the ledger has not recorded yet would
be dropped from the rebuilt range.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import AsyncIterator
from typing import Any

# Nothing of the app is imported at module level: ``aiaas`` builds its parser (this module's
# ``add_parser``) before ``serve`` sets up prometheus_client's multiprocess directory, which must come
# before prometheus_client is first imported.


def add_parser(sub: Any) -> None:
    """The ``analytics`` command and its actions."""
    p = sub.add_parser("analytics", help="rebuild or re-price the analytics projections from the usage ledger")
    p.add_argument("action", choices=["rebuild", "reprice"])
    p.add_argument("--from", dest="since", default=None, help="ISO date or instant (UTC day start is used)")
    p.add_argument("--org", default=None, help="one org's projections only")


def _since(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def run(settings: Any, args: argparse.Namespace) -> int:
    """Run one action; 2 on bad arguments."""
    try:
        since = _since(args.since)
    except ValueError:
        print(f"aiaas: --from {args.since!r} is not an ISO date (e.g. 2026-11-01)", file=sys.stderr)
        return 2
    if args.action == "reprice" and since is None:
        print("aiaas: reprice needs --from DATE (the earliest request whose price changed)", file=sys.stderr)
        return 2
    if args.org is not None:
        import uuid

        try:
            uuid.UUID(args.org)
        except ValueError:
            print(f"aiaas: --org {args.org!r} is not an org id", file=sys.stderr)
            return 2
    return asyncio.run(_rebuild(settings, since, args.org))


async def _rebuild(settings: Any, since: dt.datetime | None, org: str | None) -> int:
    from aiaas.analytics import service as analytics_service
    from aiaas.kernel.db import Database
    from aiaas.usage import api as usage_api

    db = Database(settings, role="worker")
    try:
        async def ledger(start: dt.datetime | None) -> AsyncIterator[Any]:
            async with db.unit_of_work("usage") as session:
                async for ev in usage_api.replay_completions(session, since=start, org_id=org):
                    yield ev

        start, applied = await analytics_service.rebuild(lambda: db.unit_of_work("analytics"), ledger,
                                                         since=since, org_id=org)
    finally:
        await db.dispose()
    where = f"from {start.date().isoformat()}" if start else "over all history"
    print(f"aiaas: analytics rebuilt {where}{' for org ' + org if org else ''}: {applied} request(s)")
    return 0
