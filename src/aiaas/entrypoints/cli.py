"""``aiaas``: serve a role, migrate the database, write the OpenAPI contract.

Usage::

    aiaas serve --role api|streamer|worker|all [--workers N]
    aiaas migrate
    aiaas openapi [--check] [--output FILE] [--breaking-from EARLIER.yaml]
    aiaas docs [--check] [--dir DIR]
    aiaas bootstrap [--email E] [--password P] [--org NAME] [--new-key] [--json]
    aiaas apply -f FILE [--dry-run]
    aiaas dlq list|replay|purge [--queue usage.from.inference] [--limit N] [--yes]
    aiaas analytics rebuild|reprice [--from DATE] [--org ID]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Must hold before prometheus_client is imported anywhere (it picks its storage at import time).
_PROM_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_env(workers: int) -> None:
    """With several workers, give prometheus_client a fresh shared directory (stdlib only, pre-import)."""
    if workers <= 1:
        return
    path = Path(os.environ.get(_PROM_ENV) or tempfile.mkdtemp(prefix="aiaas-prom-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[_PROM_ENV] = str(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiaas", description="aiaas: OpenAI-compatible AI gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve one role (or all of them)")
    serve.add_argument("--role", choices=["api", "streamer", "worker", "all"], default="all")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default AIAAS_WORKERS or 1)")

    sub.add_parser("migrate", help="upgrade the database to the newest schema (idempotent, lock-protected)")

    apply = sub.add_parser("apply", help="reconcile the model catalog (and add the prices) of a YAML file "
                           "(idempotent)")
    apply.add_argument("-f", "--file", required=True, help="catalog YAML file")
    apply.add_argument("--dry-run", action="store_true", help="print the changes without applying them")

    openapi = sub.add_parser("openapi", help="write the OpenAPI document of both HTTP roles")
    openapi.add_argument("--output", default="contracts/openapi.yaml")
    openapi.add_argument("--check", action="store_true", help="exit 1 when the file differs from the app")
    openapi.add_argument("--breaking-from", metavar="EARLIER", default=None,
                         help="exit 1 when the app's contract breaks a /v1 client of this earlier contract")
    docs = sub.add_parser("docs", help="write the reference pages generated from the code (configuration, database)")
    docs.add_argument("--dir", default="docs")
    docs.add_argument("--check", action="store_true", help="exit 1 when a page differs from the code")
    boot = sub.add_parser("bootstrap", help="create the first platform admin, an org and an API key (idempotent)")
    boot.add_argument("--email", default=None, help="admin email (default AIAAS_BOOTSTRAP_ADMIN_EMAIL or "
                      "admin@localhost)")
    boot.add_argument("--password", default=None, help="admin password (default AIAAS_BOOTSTRAP_ADMIN_PASSWORD; "
                      "generated and printed once when neither is set)")
    boot.add_argument("--org", default=None, help="org name (default AIAAS_BOOTSTRAP_ORG or 'default')")
    boot.add_argument("--new-key", action="store_true", help="issue a new key even when the admin exists")
    boot.add_argument("--json", action="store_true", help='print {"api_key", "org_id", "admin_email"} only')
    dlq = sub.add_parser("dlq", help="inspect, replay or purge dead-lettered events")
    dlq.add_argument("action", choices=["list", "replay", "purge"])
    dlq.add_argument("--queue", default=None,
                     help="<consumer>.from.<source>, e.g. usage.from.inference (default: every queue)")
    dlq.add_argument("--limit", type=int, default=None, help="at most this many messages (list: default 20)")
    dlq.add_argument("--yes", action="store_true", help="purge without asking")
    from aiaas.entrypoints import analytics_cli

    analytics_cli.add_parser(sub)
    return parser


def _bootstrap(settings: object, args: argparse.Namespace) -> int:
    import asyncio
    import json

    from aiaas.entrypoints.setup import bootstrap
    from aiaas.kernel.errors import AppError

    email = args.email or os.environ.get("AIAAS_BOOTSTRAP_ADMIN_EMAIL") or "admin@localhost"
    password = args.password or os.environ.get("AIAAS_BOOTSTRAP_ADMIN_PASSWORD") or None
    org = args.org or os.environ.get("AIAAS_BOOTSTRAP_ORG") or "default"
    try:
        result = asyncio.run(bootstrap(settings, email=email, password=password, org_name=org,  # type: ignore[arg-type]
                                       new_key=args.new_key))
    except AppError as exc:
        print(f"aiaas: bootstrap failed: {exc.detail}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"api_key": result.api_key, "org_id": result.org_id, "admin_email": result.admin_email}))
        if result.generated_password:
            print(f"aiaas: generated admin password (shown once): {result.generated_password}", file=sys.stderr)
        return 0
    print(("created" if result.created_admin else "found existing") + f" platform admin {result.admin_email}")
    if result.generated_password:
        print(f"generated admin password (shown once, store it now): {result.generated_password}")
    print(("created" if result.created_org else "found existing") + f" org {org!r}: {result.org_id}")
    if result.api_key:
        print(f"API key (shown once, store it now): {result.api_key}")
    else:
        print("the admin already exists; no key printed (run with --new-key to issue another)")
    return 0


def _dlq(settings: object, args: argparse.Namespace) -> int:
    import asyncio
    import json

    from aiaas.entrypoints.bootstrap import Container

    async def run() -> int:
        container = Container(settings, role="worker")  # type: ignore[arg-type]
        subs = container.subscriptions()
        if args.queue:
            subs = [s for s in subs if f"{s.consumer}.from.{s.source}" == args.queue]
            if not subs:
                print(f"aiaas: no such queue {args.queue!r}", file=sys.stderr)
                return 2
        try:
            for s in subs:
                name = f"{s.consumer}.from.{s.source}"
                if args.action == "list":
                    for item in await container.broker.dlq_list(s, limit=args.limit or 20):
                        print(json.dumps({"queue": name, **item}))
                elif args.action == "replay":
                    print(f"{name}: replayed {await container.broker.dlq_replay(s, limit=args.limit)}")
                else:
                    print(f"{name}: purged {await container.broker.dlq_purge(s)}")
        finally:
            await container.broker.close()
            await container.redis.aclose()
            await container.db.dispose()
        return 0

    if args.action == "purge" and not args.yes:
        answer = input("Delete every dead-lettered message? Type 'purge' to confirm: ")
        if answer.strip() != "purge":
            print("aiaas: nothing purged")
            return 1
    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aiaas`` command."""
    args = _parser().parse_args(argv)
    from aiaas.kernel.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"aiaas: configuration error: {exc}", file=sys.stderr)
        return 2

    if args.command == "serve":
        workers = args.workers if args.workers is not None else settings.workers
        if workers < 1:
            print("aiaas: --workers must be at least 1", file=sys.stderr)
            return 2
        prepare_multiprocess_env(workers)
        from aiaas.entrypoints.serve import serve

        return serve(settings, args.role, workers=workers)
    if args.command == "migrate":
        from aiaas.entrypoints.migrate import MigrateThroughPooler, migrate

        try:
            migrate(settings)
        except MigrateThroughPooler as exc:
            print(f"aiaas: {exc}", file=sys.stderr)
            return 2
        print("aiaas: database is at the newest revision")
        return 0
    if args.command == "apply":
        import asyncio

        path = Path(args.file)
        try:
            text = path.read_text()
        except OSError as exc:
            print(f"aiaas: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
        return asyncio.run(_apply(settings, path, text, dry_run=args.dry_run))
    if args.command == "openapi":
        from aiaas.entrypoints.openapi import check_or_write, report_breaking

        if args.breaking_from:
            return report_breaking(settings, Path(args.breaking_from))
        return check_or_write(settings, Path(args.output), check=args.check)
    if args.command == "docs":
        from aiaas.entrypoints.docs import check_or_write as check_or_write_docs

        return check_or_write_docs(Path(args.dir), check=args.check)
    if args.command == "bootstrap":
        return _bootstrap(settings, args)
    if args.command == "dlq":
        return _dlq(settings, args)
    if args.command == "analytics":
        from aiaas.entrypoints import analytics_cli

        return analytics_cli.run(settings, args)
    return 2  # pragma: no cover - argparse rejects unknown commands


async def _apply(settings: object, path: Path, text: str, *, dry_run: bool) -> int:
    from aiaas.analytics.service import price_book
    from aiaas.entrypoints.bootstrap import Container
    from aiaas.inference.service.catalog_file import CatalogFileError, load_yaml, parse_doc, plan_and_apply
    from aiaas.kernel.errors import AppError

    try:
        doc = load_yaml(text)
        prices = price_book.parse_file_section(doc.pop("prices", None))
        file = parse_doc(doc)
    except (CatalogFileError, AppError) as exc:
        print(f"aiaas: {path}: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 2
    container = Container(settings, role="api")  # type: ignore[arg-type]
    try:
        try:
            async with container.db.unit_of_work("inference") as session:
                changes = await plan_and_apply(session=session, file=file, dry_run=dry_run)
            async with container.db.unit_of_work("analytics") as session:
                price_changes = await price_book.apply_file(session, prices, dry_run=dry_run)
                admission = await price_book.admission_prices(session, models={p.model for p in prices})
        except AppError as exc:
            print(f"aiaas: {path}: {exc.detail}", file=sys.stderr)
            return 2
        for line in [*map(str, changes), *price_changes]:
            print(line)
        total = len(changes) + len(price_changes)
        if not total:
            print("aiaas: catalog already matches the file")
        elif dry_run:
            print(f"aiaas: {total} change(s) planned (dry run, nothing applied)")
        else:
            await container.catalog.refresh_models([c.name for c in changes if c.kind == "model"])
            await container.catalog.refresh_access([c.name for c in changes if c.kind == "access"])
            if price_changes:
                await price_book.publish_admission_prices(container.inference_session, container.catalog, admission)
            print(f"aiaas: applied {total} change(s)")
        return 0
    finally:
        await container.redis.aclose()
        await container.db.dispose()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
