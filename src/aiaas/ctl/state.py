"""The global options (``--url``, ``--inference-url``, ``--api-key``, ``--org``, ``-o``) and what they
resolve to, accepted before the command (``aiaasctl -o json orgs list``) and after it
(``aiaasctl orgs list -o json``).

Precedence, highest first: the option, the environment (``AIAAS_URL``, ``AIAAS_INFERENCE_URL``,
``AIAAS_API_KEY``, ``AIAAS_ORG``), the config file, the default. An API key, when given, is used instead of
the stored session.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from aiaas.ctl import config
from aiaas.ctl.client import Client
from aiaas.ctl.errors import UNAUTHENTICATED, CtlError, UsageFailure
from aiaas.ctl.output import Format, Output

DEFAULT_URL = "http://127.0.0.1:8000"
GLOBAL_OPTIONS = ("url", "inference_url", "api_key", "org", "output")
_PREFIX = "global_"  # so a command may have an argument of the same name (``orgs show ORG`` beside ``--org``)


def global_options() -> list[Callable[[Any], Any]]:
    """The click options every command (and the root) takes, as decorators."""
    return [
        click.option("--url", f"{_PREFIX}url", metavar="URL", help="Management API base URL (env: AIAAS_URL)."),
        click.option("--inference-url", f"{_PREFIX}inference_url", metavar="URL",
                     help="Inference API base URL (env: AIAAS_INFERENCE_URL; default: the management URL, port "
                          "8000 -> 8001)."),
        click.option("--api-key", f"{_PREFIX}api_key", metavar="KEY",
                     help="API key, used instead of the stored session (env: AIAAS_API_KEY)."),
        click.option("--org", f"{_PREFIX}org", metavar="ORG",
                     help="Organization (id or exact name) instead of the current one (env: AIAAS_ORG)."),
        click.option("--output", "-o", f"{_PREFIX}output", type=click.Choice([f.value for f in Format]),
                     help="Output format: table (default), json or csv."),
    ]


def normalize_url(url: str) -> str:
    """``url`` without a trailing slash; refuses anything but an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageFailure(f"{url!r} is not an http(s) URL with a host, e.g. {DEFAULT_URL}")
    return urlunsplit(parts._replace(path=parts.path.rstrip("/"), query="", fragment=""))


def inference_url_for(url: str) -> str:
    """The inference API's default URL: the same host on port 8001 when the management API is on port
    8000 (the roles' default ports), else the same URL (one ingress routing both)."""
    parts = urlsplit(url)
    if parts.port != 8000:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:8001" if userinfo else f"{host}:8001"
    return urlunsplit(parts._replace(netloc=netloc))


class State:
    """One command's view of its settings, credentials and current org; owns the HTTP clients it opens."""

    def __init__(self, *, url: str | None = None, inference_url: str | None = None, api_key: str | None = None,
                 org: str | None = None, output: Format | None = None, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env
        self.dir: Path = config.config_dir(self.env)
        self.prefs = config.load_preferences(self.dir)
        self.out = Output(output or Format.table)
        self.explicit_url = url or self.env.get("AIAAS_URL") or None
        self.url = normalize_url(self.explicit_url or self.prefs.url or DEFAULT_URL)
        explicit_inference = inference_url or self.env.get("AIAAS_INFERENCE_URL") or None
        self.inference_url = normalize_url(explicit_inference) if explicit_inference else None
        self.api_key = api_key or self.env.get("AIAAS_API_KEY") or None
        self.org = org or self.env.get("AIAAS_ORG") or None
        self._credentials: config.Credentials | bool | None = False  # False: not read yet
        self._clients: dict[tuple[str, str], Client] = {}
        self._org_id: str | None = None

    def set_url(self, url: str) -> None:
        """Use another management URL (``login`` asks for one); before any client is opened."""
        self.url = normalize_url(url)
        self._credentials = False

    @property
    def credentials(self) -> config.Credentials | None:
        """The stored session, if it was issued by this URL (a token never goes to another server)."""
        if self._credentials is False:
            creds = config.load_credentials(self.dir)
            self._credentials = creds if creds is not None and normalize_url(creds.url) == self.url else None
        return self._credentials  # type: ignore[return-value]

    @property
    def auth_kind(self) -> str | None:
        """``api_key``, ``session`` or ``None``: what the management API will be shown."""
        return "api_key" if self.api_key else "session" if self.credentials else None

    def management(self, *, auth: str = "default") -> Client:
        """The management API's client: ``auth`` ``default`` (the API key, else the session), ``session``
        (the stored session only) or ``none``."""
        token = None
        hint = ""
        if auth == "default" and self.api_key:
            token = self.api_key  # the API's own message says what is wrong with a key
        elif auth in ("default", "session") and self.credentials:
            token, hint = self.credentials.token, "the session has ended: run `aiaasctl login`"
        elif auth != "none":
            hint = "not signed in: run `aiaasctl login` or set AIAAS_API_KEY"
        return self._client("management", self.url, token, hint)

    def inference(self) -> Client:
        """The inference API's client, with the API key (the inference API takes no sign-in sessions)."""
        if not self.api_key:
            raise CtlError("the inference API needs an API key: set AIAAS_API_KEY or pass --api-key "
                           "(create one with `aiaasctl keys create NAME`)", exit_code=UNAUTHENTICATED)
        base = self.inference_url or inference_url_for(self.url)
        return self._client("inference", base, self.api_key, "")

    def remember_org(self, org_id: str) -> None:
        """Cache the resolved current org for this command."""
        self._org_id = org_id

    @property
    def resolved_org(self) -> str | None:
        """The current org's id once :func:`aiaas.ctl.resolve.current_org` has found it."""
        return self._org_id

    def close(self) -> None:
        """Close every client this command opened."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _client(self, kind: str, base: str, token: str | None, hint: str) -> Client:
        key = (kind, token or "")
        if key not in self._clients:
            # A long answer may stream for minutes: the inference client waits longer between bytes.
            self._clients[key] = Client(base, token=token, unauthenticated_hint=hint,
                                        timeout=300.0 if kind == "inference" else 30.0)
        return self._clients[key]


def root_options(ctx: click.Context, values: Mapping[str, Any]) -> None:
    """Keep the global options given before the command for :func:`with_state`."""
    ctx.obj = {name: values.get(_PREFIX + name) for name in GLOBAL_OPTIONS}


def with_state(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the global options and pass it a :class:`State` as its first argument; an option
    given after the command wins over the same one given before it."""

    @click.pass_context
    def command(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(_PREFIX + name, None) for name in GLOBAL_OPTIONS}
        root = ctx.find_root().obj or {}
        merged = {name: given[name] if given[name] is not None else root.get(name) for name in GLOBAL_OPTIONS}
        output = merged.pop("output")
        state = State(**merged, output=Format(output) if output else None)
        try:
            return fn(state, *args, **kwargs)
        finally:
            state.close()

    functools.update_wrapper(command, fn)  # the docstring is the command's help
    for option in reversed(global_options()):
        command = option(command)
    return command
