"""``login``, ``logout`` and ``whoami``."""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime, timedelta

import click

from aiaas.ctl import config
from aiaas.ctl.durations import humanize, iso
from aiaas.ctl.errors import ApiError, CtlError, UsageFailure
from aiaas.ctl.output import Column, ago, when
from aiaas.ctl.state import State, with_state


@click.command("login")
@click.option("--email", metavar="EMAIL", help="Sign in as this email (no prompts but the password).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input "
              "(for scripts).")
@with_state
def login(st: State, email: str | None, password_stdin: bool) -> None:
    """Sign in with email and password; the session token is stored in the config directory (0600).

    Interactive by default: asks for the API URL (unless --url or AIAAS_URL gives it), the email and the
    password (hidden). With --email and --password-stdin nothing is asked.
    """
    if email is None and not st.explicit_url:
        st.set_url(click.prompt("API URL", default=st.url))
    if email is None:
        previous = st.credentials.email if st.credentials else None
        email = click.prompt("Email", default=previous)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageFailure("--password-stdin: standard input had no password")
    else:
        password = click.prompt("Password", hide_input=True)
    session = st.management(auth="none").call("POST", "/v1/auth/login",
                                               json={"email": email, "password": password}).json()
    user = session.get("user") or {}
    expires_in = int(session.get("expires_in") or 0)
    expires_at = iso(datetime.now(UTC) + timedelta(seconds=expires_in)) if expires_in else None
    config.save_credentials(st.dir, config.Credentials(url=st.url, token=session["token"],
                                                       email=user.get("email", email),
                                                       user_id=user.get("id", ""), expires_at=expires_at))
    # The current org belongs to the platform it was picked on.
    prefs = st.prefs if st.prefs.url == st.url else config.Preferences()
    config.save_preferences(st.dir, dataclasses.replace(prefs, url=st.url))
    st.out.done(f"Signed in to {st.url} as {user.get('email', email)}"
                + (f" (session expires in {humanize(timedelta(seconds=expires_in))})." if expires_in else "."),
                {k: v for k, v in session.items() if k != "token"})  # the token stays in the file only


@click.command("logout")
@with_state
def logout(st: State) -> None:
    """End the stored session on the server and delete it from the config directory."""
    creds = st.credentials
    if creds is None:
        st.out.done(f"Not signed in to {st.url}.", {"signed_out": False})
        return
    try:
        st.management(auth="session").call("POST", "/v1/auth/logout")
    except ApiError as exc:
        if exc.status != 401:  # 401: the session had already ended, which is what logout wants
            raise
    except CtlError:
        config.delete_credentials(st.dir)
        st.out.notice("the stored token was deleted, but the server could not be told: the session stays "
                      "valid on the server until it expires")
        raise
    config.delete_credentials(st.dir)
    st.out.done(f"Signed out of {st.url} ({creds.email}).", {"signed_out": True})


@click.command("whoami")
@with_state
def whoami(st: State) -> None:
    """Who the API sees: the signed-in user (or the API key's owner), and how you are signed in."""
    me = st.management().call("GET", "/v1/users/me").json()
    creds = st.credentials
    if st.api_key:
        via = f"API key {st.api_key[:12]}…"
    elif creds is not None:
        via = f"session (expires {ago(creds.expires_at, never='-')})" if creds.expires_at else "session"
    else:
        via = "-"
    org = (st.prefs.org_name or st.prefs.org_id) if st.prefs.url == st.url and not st.api_key else None
    info = {**me, "via": via, "url": st.url, "current_org": org}
    st.out.record(info, [
        Column("email", "email"), Column("name", "name"), Column("id", "id"), Column("kind", "kind"),
        Column("platform admin", "platform_admin"), Column("created", lambda m: when(m.get("created_at"))),
        Column("signed in via", "via"), Column("url", "url"), Column("current org", "current_org"),
    ], raw=me)
