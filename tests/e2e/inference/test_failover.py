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


class TestKillOneDeployment:
    def test_no_client_error_and_breaker_recovers(self, running: Running) -> None:
        c = openai.OpenAI(base_url=running.base_url, api_key=running.keys["member"], max_retries=0, timeout=20)
        d = running.upstreams["d"]
        errors: list[BaseException] = []
        done = threading.Event()
        served = [0]

        def load() -> None:
            while not done.is_set():
                try:
                    stream = c.chat.completions.create(model="test/pair", messages=MSG, stream=True)
                    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) \
                        == "Hello from fake"
                    served[0] += 1
                except BaseException as exc:
                    errors.append(exc)

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        eventually(lambda: served[0] > 20)
        d.stop()  # one deployment dies mid-load
        eventually(lambda: served[0] > 80)
        r = redis.Redis.from_url(running.settings.redis_url)
        key = f"{running.settings.redis_prefix}inference:breaker:test/pair"
        assert eventually(lambda: r.get(key), timeout=5), "breaker never recorded the dead deployment"
        d.start()  # it comes back on the same port
        d_before = d.served
        assert eventually(lambda: d.served > d_before, timeout=15), "the recovered deployment got no traffic"
        assert eventually(lambda: r.get(key) is None, timeout=10), "breaker did not close again"
        done.set()
        for w in workers:
            w.join(30)
        r.close()
        assert not errors, errors[:3]
        time.sleep(0)
