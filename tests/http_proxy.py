"""A real forward HTTP proxy on loopback for tests: ``tinyproxy``, as a child process of this one.

Egress proxies are the norm where a gateway is self-hosted, so the platform's upstream traffic is tested
through a proxy people run, not one written for the test. ``HttpProxy`` starts ``tinyproxy`` in the
foreground (never daemonized, so the leak checker sees it) on a free port of 127.0.0.1 with a
configuration and log in a temporary directory of its own, and ``requests()`` reads back from that log
which requests it relayed (``POST http://127.0.0.1:8000/v1/chat/completions``), so a test proves that
its traffic went through the proxy rather than around it. ``stop()`` kills it and removes the directory.

The session fixture ``http_proxy`` skips when ``tinyproxy`` is not installed (``apt-get install
tinyproxy``), and fails instead when ``AIAAS_TEST_REQUIRE_TOOLS=1`` (CI sets it: there a skip would hide
a test that never ran).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from support import free_port, missing_tool, port_open

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+ \S+) HTTP/")


class HttpProxy:
    """One ``tinyproxy`` on a free loopback port; also a context manager."""

    def __init__(self) -> None:
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        assert self._dir is not None, "the proxy is not started"
        return self._dir / "tinyproxy.log"

    def start(self) -> Self:
        binary = shutil.which("tinyproxy")
        if binary is None:
            raise RuntimeError("tinyproxy is not installed")
        self._dir = Path(tempfile.mkdtemp(prefix="aiaas-proxy-"))
        self.port = free_port()
        conf = self._dir / "tinyproxy.conf"
        # Connect-level logging names every relayed request; no Via header, so upstreams see the request
        # as the platform sent it.
        conf.write_text(f"Port {self.port}\nListen {HOST}\nAllow {HOST}\nTimeout 60\nMaxClients 256\n"
                        f"LogLevel Connect\nLogFile \"{self.log}\"\nDisableViaHeader Yes\n")
        self._proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=self._dir)
        deadline = time.monotonic() + START_TIMEOUT
        while not port_open(HOST, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                self.stop()
                raise RuntimeError(f"tinyproxy did not start: {tail}")
            time.sleep(0.05)
        return self

    def requests(self) -> list[str]:
        """``METHOD URL`` of every request relayed so far, oldest first."""
        if not self.log.exists():
            return []
        return _REQUEST.findall(self.log.read_text(errors="replace"))

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@pytest.fixture(scope="session")
def http_proxy() -> Iterator[HttpProxy]:
    """A forward proxy of this session (of this xdist worker); tests share it, so tell requests by URL."""
    if shutil.which("tinyproxy") is None:
        missing_tool("tinyproxy is not installed (apt-get install tinyproxy)")
    with HttpProxy() as proxy:
        yield proxy
