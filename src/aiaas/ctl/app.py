"""The ``aiaasctl`` command tree and its entry point, which turns every failure into a message and an exit
code (:mod:`aiaas.ctl.errors`), never a traceback."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from aiaas.ctl.client import USER_AGENT
from aiaas.ctl.commands import audit, auth, chat, keys, members, models, orgs, usage
from aiaas.ctl.errors import API_ERROR, OK, CtlError
from aiaas.ctl.output import Output
from aiaas.ctl.state import global_options, root_options


def _with_global_options(fn: Any) -> Any:
    for option in reversed(global_options()):
        fn = option(fn)
    return fn


@click.group("aiaasctl", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Exit codes: 0 ok, 1 API error, 2 usage error, 3 not signed in (401), 4 forbidden (403), "
                    "5 not found (404), 6 network error. Docs: docs/cli.md")
@click.version_option(USER_AGENT.split("/")[1], "--version", prog_name="aiaasctl", message="%(prog)s %(version)s")
@_with_global_options
@click.pass_context
def app(ctx: click.Context, **values: Any) -> None:
    """Command-line client of aiaas: sign in, manage organizations, members and API keys, read usage and the
    audit log, list models and chat. The global options work before or after the command."""
    root_options(ctx, values)


for command in (auth.login, auth.logout, auth.whoami, orgs.app, members.app, keys.app, usage.usage, models.models,
                chat.chat, audit.audit):
    app.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Run ``aiaasctl`` with ``argv`` (default: the process's arguments); returns the exit code."""
    out = Output()
    try:
        # Standalone: click reports its own usage errors (exit 2), --help and aborts, then exits.
        app.main(args=argv, prog_name="aiaasctl")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else OK if exc.code is None else API_ERROR
    except CtlError as exc:
        out.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        out.error("interrupted")
        return API_ERROR
    except BrokenPipeError:
        # The reader went away (`aiaasctl ... | head`): nothing more to say, and nowhere to say it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return OK
    except Exception as exc:
        if os.environ.get("AIAAS_CTL_DEBUG"):
            raise
        out.error(f"unexpected {type(exc).__name__}: {exc} (set AIAAS_CTL_DEBUG=1 for the traceback)")
        return API_ERROR
    return OK


if __name__ == "__main__":
    sys.exit(main())
