"""Killing one of two deployments under load: nobody sees an error, the breaker opens, then closes."""

from __future__ import annotations

import threading
import time

import openai
import pytest
import redis

from e2e.inference.conftest import Running, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MSG = [{"role": "user", "content": "hi"}]
# The load stops by itself after this long even if the test's own stop never comes.
LOAD_LIMIT_SECONDS = 120.0


class Load:
    """A few client threads streaming ``test/pair`` in a loop until stopped (or ``LOAD_LIMIT_SECONDS``)."""

    def __init__(self, running: Running, threads: int = 4) -> None:
        self._client = openai.OpenAI(base_url=running.base_url, api_key=running.keys["member"], max_retries=0,
                                     timeout=20)
        self.errors: list[BaseException] = []
        self.served = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._deadline = time.monotonic() + LOAD_LIMIT_SECONDS
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"failover-load-{i}")
                         for i in range(threads)]

    def _run(self) -> None:
        while not self._done.is_set() and time.monotonic() < self._deadline:
            try:
                stream = self._client.chat.completions.create(model="test/pair", messages=MSG, stream=True)
                text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
                if text != "Hello from fake":
                    raise AssertionError(f"unexpected answer {text!r}")
                with self._lock:
                    self.served += 1
            except Exception as exc:
                self.errors.append(exc)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for t in self._threads:
            t.join(30)
        self._client.close()


class TestKillOneDeployment:
    def test_no_client_error_and_breaker_recovers(self, running: Running) -> None:
        d = running.upstreams["d"]
        r = redis.Redis.from_url(running.settings.redis_url)
        assert running.container.gateway is not None
        key = running.container.gateway.breakers.key("test/pair")  # the model's breaker state, however keyed
        try:
            with Load(running) as load:
                assert eventually(lambda: load.served > 20, timeout=60), "the load never got going"
                d.stop()  # one deployment dies mid-load
                before = load.served
                assert eventually(lambda: load.served > before + 60, timeout=60)
                assert eventually(lambda: r.get(key), timeout=30), "breaker never recorded the dead deployment"
                d.start()  # it comes back on the same port
                d_before = d.served
                # The breaker's cool-down is 1 s here: the first probe after it finds the deployment back.
                assert eventually(lambda: d.served > d_before, timeout=30), "the recovered deployment got no traffic"
                assert eventually(lambda: r.get(key) is None, timeout=30), "breaker did not close again"
            assert not load.errors, load.errors[:3]
        finally:
            if not d.running:
                d.start()
            r.close()
