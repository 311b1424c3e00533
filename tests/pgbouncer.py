"""A real PgBouncer on loopback for tests, in transaction pooling mode, as large installs run it.

``PgBouncer`` starts Debian's ``pgbouncer`` in the foreground (a child of this process, so the leak check
sees it) on a free port of 127.0.0.1, in front of the test PostgreSQL, with a configuration of its own in
a temporary directory: ``pool_mode = transaction`` and a small ``default_pool_size``, so concurrent
clients really do share server connections and a prepared statement that outlives its transaction fails.
Run as root (CI), it drops to the ``postgres`` user, since PgBouncer refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from support import free_port, port_open

HOST = "127.0.0.1"


class PgBouncer:
    """One ``pgbouncer`` in transaction mode in front of the server of ``database_url``."""

    def __init__(self, database_url: str, *, pool_size: int = 2) -> None:
        server = urlsplit(database_url)
        self._server = (server.hostname or HOST, server.port or 5432)
        self._user = server.username or "postgres"
        self._pool_size = pool_size
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by this PgBouncer's."""
        u = urlsplit(database_url)
        auth = u.netloc.rsplit("@", 1)[0] + "@" if "@" in u.netloc else ""
        return u._replace(netloc=f"{auth}{HOST}:{self.port}").geturl()

    def start(self) -> Self:
        binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
        if binary is None:
            raise RuntimeError("pgbouncer is not installed")
        self._dir = Path(tempfile.mkdtemp(prefix="aiaas-pgbouncer-"))
        self._dir.chmod(0o755)  # readable by the user it drops to
        self.port = free_port()
        (self._dir / "users.txt").write_text(f'"{self._user}" ""\n')
        host, port = self._server
        (self._dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self._dir / 'users.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self._pool_size}\nmax_client_conn = 500\n"
        )
        for f in self._dir.iterdir():
            f.chmod(0o644)
        cmd = [binary]
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")  # KeyError when the user it needs is missing
            cmd += ["-u", "postgres"]
        self._proc = subprocess.Popen([*cmd, str(self._dir / "pgbouncer.ini")], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not port_open(HOST, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                out = self._proc.stdout.read().decode(errors="replace") if self._proc.stdout else ""
                self.stop()
                raise RuntimeError(f"pgbouncer did not start: {out[-500:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
