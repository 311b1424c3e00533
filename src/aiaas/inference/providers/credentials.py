"""Upstream credentials: resolved from a namespace of their own, never from the platform's settings.

A deployment's ``credential_ref`` is a name a platform admin writes (``openai-prod``). It resolves to

1. the file ``<AIAAS_UPSTREAM_CREDENTIALS_DIR>/<name>``, when that directory is configured (a Kubernetes
   Secret mounted as a volume: one file per key; re-read at most every ``FILE_TTL_SECONDS``, so a
   rotated secret is picked up without a restart), else
2. the environment variable ``UPSTREAM_CREDENTIAL_<NAME>`` (upper-cased, ``-`` and ``.`` as ``_``).

Nothing else of the process is reachable: a name cannot point at ``AIAAS_DATABASE_URL`` or any other
variable, and it cannot leave the directory (no ``/`` or ``..`` in a name). A value with a control
character (a newline would split the request's headers) or outside Latin-1 is refused as a configuration
error instead of being sent.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from aiaas.inference.schemas import CREDENTIAL_REF_PATTERN

ENV_PREFIX = "UPSTREAM_CREDENTIAL_"
FILE_TTL_SECONDS = 60.0

_NAME = re.compile(CREDENTIAL_REF_PATTERN)
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def env_name(ref: str) -> str:
    """The environment variable a credential reference resolves to."""
    return ENV_PREFIX + re.sub(r"[-.]", "_", ref).upper()


class CredentialResolver:
    """Resolves ``credential_ref`` names to header-safe secrets (see the module's docstring)."""

    def __init__(self, *, directory: str | None = None, environ: Mapping[str, str] | None = None) -> None:
        self._directory = Path(directory) if directory else None
        self._environ = os.environ if environ is None else environ
        self._files: dict[str, tuple[float, bytes | None]] = {}

    def where(self, ref: str) -> str:
        """Where ``ref`` is looked up, for error messages (never the value)."""
        places = [f"the file {self._directory / ref}"] if self._directory else []
        return " or ".join([*places, f"the environment variable {env_name(ref)}"])

    def resolve(self, ref: str) -> bytes | None:
        """The secret of ``ref`` (as header bytes), or None when it is not configured or not usable."""
        if not _NAME.match(ref) or ".." in ref:
            return None
        raw = self._from_file(ref) if self._directory else None
        if raw is None:
            text = self._environ.get(env_name(ref))
            if text is None or not _latin1(text):
                return None
            raw = text.encode("latin-1")
        raw = raw.strip()
        if not raw or _CONTROL.search(raw):
            return None
        return raw

    def _from_file(self, ref: str) -> bytes | None:
        now = time.monotonic()
        cached = self._files.get(ref)
        if cached is not None and now - cached[0] < FILE_TTL_SECONDS:
            return cached[1]
        path = self._directory / ref  # type: ignore[operator]
        try:
            value: bytes | None = path.read_bytes()[:8192]
        except OSError:
            value = None
        self._files[ref] = (now, value)
        return value


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
