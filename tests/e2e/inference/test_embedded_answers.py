"""What a new install's first requests get from the embedded model: short, sensible answers, not a loop.

The streamer runs as an operator runs it (``aiaas serve --role streamer``, default model settings, the
model warmed at start), and the questions are a newcomer's, asked with the official ``openai`` client and
no parameters beyond the model and the message.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import openai
import pytest

from aiaas.kernel.config import Settings
from e2e.inference.conftest import make_identities, with_thread
from support import env_of, free_port, stop_process, wait_http

pytestmark = pytest.mark.e2e

MODEL = "local/gemma-3-270m"


@pytest.fixture(scope="module")
def streamer(session_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Streamer]:
    s = msgspec.structs.replace(session_settings, local_model_warm=True, streamer_port=free_port())
    ids = with_thread(make_identities, s)
    env = {**env_of(s), "AIAAS_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path_factory.mktemp("embedded") / "streamer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "aiaas", "serve", "--role", "streamer"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Ready only once the model is loaded and its prompt prefix read: the first request pays for neither.
        wait_http(f"http://127.0.0.1:{s.streamer_port}/ready", timeout=120)
        yield Streamer(f"http://127.0.0.1:{s.streamer_port}/v1", ids.keys["member"], log)
    finally:
        stop_process(proc)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


class Streamer(NamedTuple):
    base_url: str
    key: str
    log: Path  # the streamer's output: a failed answer's assertion quotes its end

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def _ask(streamer: Streamer, text: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=streamer.base_url, api_key=streamer.key, max_retries=0, timeout=60)
    try:
        return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
    except openai.APIStatusError as exc:
        raise AssertionError(f"{exc}\nthe streamer's log ends:\n{streamer.tail()}") from exc
    finally:
        client.close()


def _most_repeated_line(text: str) -> int:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return max(collections.Counter(lines).values(), default=0)


class TestFirstAnswers:
    @pytest.mark.parametrize("question", ["Hello", "The capital of France is", "What is the boiling point of water?"])
    def test_a_short_answer_that_does_not_loop(self, streamer: Streamer, question: str) -> None:
        r = _ask(streamer, question)
        answer = r.choices[0].message.content or ""
        assert answer.strip(), "an empty answer"
        assert answer == answer.lstrip(), "the answer starts with the transcript's space"
        assert _most_repeated_line(answer) <= 2, answer
        # It ends by itself (the format's stops), well before the default cap of 512 tokens.
        assert r.choices[0].finish_reason == "stop", answer
        assert r.usage is not None and r.usage.completion_tokens < 120, answer

    def test_the_capital_of_france(self, streamer: Streamer) -> None:
        answers = [_ask(streamer, "What is the capital of France?").choices[0].message.content or ""
                   for _ in range(3)]
        assert sum("paris" in a.lower() for a in answers) >= 2, answers

    def test_streamed_usage_is_what_the_model_read(self, streamer: Streamer) -> None:
        base_url, key = streamer.base_url, streamer.key
        messages = [{"role": "user", "content": "Name a colour."}]
        with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60) as client:
            whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
            started = time.perf_counter()
            chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, stream=True,
                                                         stream_options={"include_usage": True}))
        assert time.perf_counter() - started < 30
        assert whole.usage is not None and chunks[-1].usage is not None
        # Metering is exact: a streamed request's prompt is counted as the non-streamed answer counts it.
        assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
