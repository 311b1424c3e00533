"""The config and credentials files, in ``$XDG_CONFIG_HOME/aiaas/`` (``~/.config/aiaas/`` without it).

- ``config.json``: preferences (the management API's URL, the current org). Nothing secret.
- ``credentials.json``: the session token of the last ``aiaasctl login``, bound to the URL it was issued by
  (a token is never sent to another server).

Both are written atomically (a temporary file renamed over the old one), created with mode 0600 in a
directory of mode 0700, so no other user of the machine can read the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from aiaas.ctl.errors import CtlError

CONFIG_FILE = "config.json"
CREDENTIALS_FILE = "credentials.json"
DIR_MODE = 0o700
FILE_MODE = 0o600

T = TypeVar("T")


@dataclass(frozen=True)
class Preferences:
    """What ``config.json`` holds: the last URL signed in to and the org ``orgs use`` picked."""

    url: str | None = None
    org_id: str | None = None
    org_name: str | None = None


@dataclass(frozen=True)
class Credentials:
    """What ``credentials.json`` holds: a session of ``url``, for ``email``, until ``expires_at``."""

    url: str
    token: str
    email: str = ""
    user_id: str = ""
    expires_at: str | None = None


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/aiaas`` when that is an absolute path (the XDG rule), else ``~/.config/aiaas``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "aiaas"


def load_preferences(directory: Path) -> Preferences:
    """The preferences in ``directory`` (defaults when there is no file)."""
    return _load(directory / CONFIG_FILE, Preferences) or Preferences()


def save_preferences(directory: Path, prefs: Preferences) -> None:
    """Write ``config.json`` (0600, atomically)."""
    write_private(directory / CONFIG_FILE, asdict(prefs))


def load_credentials(directory: Path) -> Credentials | None:
    """The stored session, or ``None``; warns on stderr when the file is readable by others."""
    path = directory / CREDENTIALS_FILE
    creds = _load(path, Credentials)
    if creds is not None and stat.S_IMODE(path.stat().st_mode) & 0o077:
        sys.stderr.write(f"warning: {path} is readable by other users; run: chmod 600 {path}\n")
    return creds


def save_credentials(directory: Path, creds: Credentials) -> None:
    """Write ``credentials.json`` (0600, atomically, in a 0700 directory)."""
    write_private(directory / CREDENTIALS_FILE, asdict(creds))


def delete_credentials(directory: Path) -> bool:
    """Remove ``credentials.json``; whether there was one."""
    try:
        (directory / CREDENTIALS_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def write_private(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path``: mode 0600, its directory 0700, replaced atomically."""
    directory = path.parent
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and leaves an existing directory as it was: set it outright.
    os.chmod(directory, DIR_MODE)
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    # O_EXCL and the mode at creation: the token is never in a file anyone else could open, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(dict(data), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _load(path: Path, kind: type[T]) -> T | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CtlError(f"cannot read {path}: {exc}; fix or delete it") from None
    if not isinstance(raw, dict):
        raise CtlError(f"cannot read {path}: not a JSON object; fix or delete it")
    known = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    try:
        return kind(**{k: v for k, v in raw.items() if k in known})
    except TypeError as exc:
        raise CtlError(f"cannot read {path}: {exc}; fix or delete it") from None
