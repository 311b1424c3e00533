"""Options and helpers shared by the command groups: list pagination, confirmations."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from aiaas.ctl.client import Page, paginate
from aiaas.ctl.errors import UsageFailure
from aiaas.ctl.output import Column
from aiaas.ctl.state import State


def list_options(default_limit: int = 20) -> Callable[[Any], Any]:
    """``--limit N`` and ``--all`` (as ``every``) for a list command."""

    def decorate(fn: Any) -> Any:
        fn = click.option("--all", "every", is_flag=True, help="Follow every page (ignores --limit).")(fn)
        return click.option("--limit", type=click.IntRange(min=1), default=default_limit, show_default=True,
                            help="Show at most this many (pages are followed).")(fn)

    return decorate


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def list_all(st: State, fetch: Callable[[str | None, int], Any], *, limit: int, every: bool, what: str,
             max_page: int = 100) -> Page:
    """Gather a list's pages (``fetch(cursor, size)`` returns one), with a spinner on a terminal."""
    with st.out.progress(f"Loading {what}") as update:
        return paginate(fetch, limit=None if every else limit, max_page=max_page, on_page=update)


def show_list(st: State, page: Page, columns: Sequence[Column], *, what: str) -> None:
    """Print a gathered list; on a terminal, say when the server has more."""
    st.out.items(page.data, columns, raw=page.as_json(), empty=f"no {what}")
    if page.has_more and st.out.is_table:
        st.out.notice(f"more {what} on the server: use --limit N or --all")


def confirm(st: State, question: str, *, yes: bool) -> None:
    """Ask ``question`` unless ``--yes``; without a terminal to ask on, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageFailure(f"{question} Pass --yes to confirm (no terminal to ask on)")
    click.confirm(question, abort=True)
