"""`aiaas serve --role all --workers 2` as a real process: every role answers, metrics aggregate over
workers, and SIGTERM shuts it down cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from aiaas.kernel.config import Settings
from support import env_of, serving_all

# One worker runs the module, so its ``aiaas serve --workers 2`` starts once, not once per test worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve")]

@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    """``aiaas serve --role all --workers 2`` on free ports, without the embedded model."""
    env = {**env, "AIAAS_LOCAL_MODEL_ENABLED": "false"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with serving_all(env, stdout=subprocess.PIPE, workers=2) as served:
        yield served


@pytest.fixture(scope="module")
def running(session_settings: Settings) -> Iterator[dict[str, int]]:
    with serving(env_of(session_settings)) as (proc, ports):
        yield {**ports, "pid": proc.pid}


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


@pytest.mark.parametrize("role", ["api", "streamer", "worker"])
class TestEveryRole:
    def test_health_ready_metrics(self, running: dict[str, int], role: str) -> None:
        base = f"http://127.0.0.1:{running[role]}"
        assert _get(base + "/health")[0] == 200
        status, _, body = _get(base + "/ready")
        assert status == 200, body
        status, ctype, body = _get(base + "/metrics")
        assert status == 200
        assert ctype.startswith("text/plain")
        assert "aiaas_http_requests_total" in body

    def test_unknown_route_is_problem_json(self, running: dict[str, int], role: str) -> None:
        status, ctype, _ = _get(f"http://127.0.0.1:{running[role]}/does-not-exist")
        assert status == 404
        assert ctype.startswith("application/problem+json")


class TestOneOrigin:
    """Role ``all``'s api port also answers the inference routes, as one Ingress host does for split roles."""

    def test_inference_routes_reach_the_streamer(self, running: dict[str, int]) -> None:
        for path in ("/v1/models", "/v1/models/any"):
            status, _, body = _get(f"http://127.0.0.1:{running['api']}{path}")
            assert status == 401, (path, body)
            assert "error" in json.loads(body), body  # OpenAI's error object: the streamer answered

    def test_management_routes_stay_with_the_api(self, running: dict[str, int]) -> None:
        status, _, body = _get(f"http://127.0.0.1:{running['api']}/v1/users/me")
        assert status == 401
        assert "error" not in json.loads(body)  # a plain problem document: the api answered
        assert _get(f"http://127.0.0.1:{running['api']}/health")[0] == 200


class TestMultiprocessMetrics:
    def test_counts_from_both_workers_are_summed(self, running: dict[str, int]) -> None:
        base = f"http://127.0.0.1:{running['api']}"
        for _ in range(40):
            _get(base + "/health")
        body = _get(base + "/metrics")[2]
        line = next(ln for ln in body.splitlines()
                    if ln.startswith("aiaas_http_requests_total") and 'role="api"' in ln and 'route="/health"' in ln)
        assert float(line.rsplit(" ", 1)[1]) >= 40


def test_sigterm_stops_every_process_cleanly(session_env: dict[str, str]) -> None:
    with serving(session_env) as (proc, _):
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 0, (proc.stdout.read() if proc.stdout else b"").decode()[-3000:]
        # The forked workers are gone too: nothing is left in the server's process group.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        pytest.fail("a worker process outlived the server by more than 10 s")
