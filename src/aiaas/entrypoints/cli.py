"""``aiaas``: serve a role, migrate the database, write the OpenAPI contract.

Usage::

    aiaas serve --role api|streamer|worker|all [--workers N]
    aiaas migrate
    aiaas openapi [--check] [--output FILE]
    aiaas apply -f FILE [--dry-run]
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

    apply = sub.add_parser("apply", help="reconcile the model catalog with a YAML file (idempotent)")
    apply.add_argument("-f", "--file", required=True, help="catalog YAML file")
    apply.add_argument("--dry-run", action="store_true", help="print the changes without applying them")

    openapi = sub.add_parser("openapi", help="write the OpenAPI document of both HTTP roles")
    openapi.add_argument("--output", default="contracts/openapi.yaml")
    openapi.add_argument("--check", action="store_true", help="exit 1 when the file differs from the app")
    return parser


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
        workers = args.workers or settings.workers
        if workers < 1:
            print("aiaas: --workers must be at least 1", file=sys.stderr)
            return 2
        prepare_multiprocess_env(workers)
        from aiaas.entrypoints.serve import serve

        return serve(settings, args.role, workers=workers)
    if args.command == "migrate":
        from aiaas.entrypoints.migrate import migrate

        migrate(settings)
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
        from aiaas.entrypoints.openapi import check_or_write

        return check_or_write(settings, Path(args.output), check=args.check)
    return 2  # pragma: no cover - argparse rejects unknown commands


async def _apply(settings: object, path: Path, text: str, *, dry_run: bool) -> int:
    from aiaas.entrypoints.bootstrap import Container
    from aiaas.inference.service.catalog_file import CatalogFileError, parse_text, plan_and_apply
    from aiaas.kernel.errors import AppError

    try:
        file = parse_text(text)
    except CatalogFileError as exc:
        print(f"aiaas: {path}: {exc}", file=sys.stderr)
        return 2
    container = Container(settings, role="api")  # type: ignore[arg-type]
    try:
        try:
            async with container.db.unit_of_work("inference") as session:
                changes = await plan_and_apply(session=session, file=file, dry_run=dry_run)
        except AppError as exc:
            print(f"aiaas: {path}: {exc.detail}", file=sys.stderr)
            return 2
        for change in changes:
            print(str(change))
        if not changes:
            print("aiaas: catalog already matches the file")
        elif dry_run:
            print(f"aiaas: {len(changes)} change(s) planned (dry run, nothing applied)")
        else:
            await container.catalog.refresh_models([c.name for c in changes if c.kind == "model"])
            await container.catalog.refresh_access([c.name for c in changes if c.kind == "access"])
            print(f"aiaas: applied {len(changes)} change(s)")
        return 0
    finally:
        await container.redis.aclose()
        await container.db.dispose()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
