"""The leak check itself: a test that leaves a thread, a child process, a listening socket or a task
running fails, naming what it left; a test that cleans up passes; a session fixture owns what it starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parents[2]

LEAKY = '''
import asyncio, socket, subprocess, sys, threading, time
import pytest

async def test_task():
    LEAK.append(asyncio.get_running_loop().create_task(asyncio.sleep(30), name="forgotten"))

def test_thread():
    threading.Thread(target=time.sleep, args=(30,), daemon=True, name="left-behind").start()

def test_child():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

def test_socket():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); LEAK.append(s)

LEAK = []
'''

CLEAN = '''
import asyncio, os, signal, subprocess, sys, threading, time
import pytest

SPAWNER = (
    "import os, subprocess, sys, time\\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.02)\\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\\n"
    "open(sys.argv[1] + '.spawned', 'w').close()\\n"
    "time.sleep(60)\\n"
)

def _spawner(tmp_path_factory):
    trigger = tmp_path_factory.mktemp("t") / "go"
    p = subprocess.Popen([sys.executable, "-c", SPAWNER, str(trigger)], start_new_session=True)
    yield trigger
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()

def _wake(trigger):
    trigger.write_text("")
    while not os.path.exists(str(trigger) + ".spawned"):
        time.sleep(0.02)

spawner = pytest.fixture(scope="session")(_spawner)
other_spawner = pytest.fixture(scope="session", name="other_spawner")(_spawner)

def test_a_fixture_process_starts_a_helper_during_a_test(spawner):
    _wake(spawner)

@pytest.fixture(scope="module")
def wakes_a_helper(other_spawner):
    _wake(other_spawner)  # the session fixture's process starts its helper while this one is set up
    return "ready"

def test_a_fixture_process_starts_a_helper_during_another_fixtures_setup(wakes_a_helper):
    assert wakes_a_helper == "ready"

@pytest.fixture(scope="session")
def server():
    t = threading.Thread(target=time.sleep, args=(0.5,), name="session-owned")
    t.start()
    yield t
    t.join()

def test_uses_session_fixture(server):
    assert server.is_alive() or True

def test_cleans_up():
    t = threading.Thread(target=time.sleep, args=(0.1,))
    t.start()
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    t.join()

async def test_task_awaited():
    await asyncio.get_running_loop().create_task(asyncio.sleep(0))
'''


def _run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_it=source)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = session\n"
                     "asyncio_default_test_loop_scope = session\n")
    env_path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    pytester._monkeypatch.setenv("PYTHONPATH", env_path)
    pytester._monkeypatch.setenv("AIAAS_TEST_LEAK_GRACE_SECONDS", "0.5")
    return pytester.runpytest_subprocess("-p", "leakcheck", "-p", "no:randomly", "-p", "no:cacheprovider",
                                         "-p", "no:xdist", "-q", timeout=120)


class TestLeakCheck:
    def test_each_kind_of_leak_fails_the_test_that_left_it(self, pytester: pytest.Pytester) -> None:
        result = _run(pytester, LEAKY)
        out = result.stdout.str()
        assert result.ret != 0
        result.assert_outcomes(passed=4, errors=4)
        assert "test_thread left running after its teardown: thread 'left-behind'" in out
        assert "test_child left running after its teardown: child process" in out
        assert "test_socket left running after its teardown: listening socket 127.0.0.1:" in out
        assert "test_task left running after its teardown: asyncio task forgotten" in out

    def test_clean_tests_and_fixture_owned_resources_pass(self, pytester: pytest.Pytester) -> None:
        result = _run(pytester, CLEAN)
        result.assert_outcomes(passed=5)
        assert result.ret == 0


class TestGarbageCollectedConnections:
    async def test_the_close_a_collected_connection_starts_is_nobodys_leak(self) -> None:
        import asyncio

        import aio_pika

        import leakcheck

        conn = aio_pika.RobustConnection("amqp://guest:guest@127.0.0.1/")
        closing = asyncio.get_running_loop().create_task(conn.close())  # what its __del__ would start

        async def close() -> None:  # a test's own task of the same name still counts
            await asyncio.sleep(0)

        own = asyncio.get_running_loop().create_task(close())
        try:
            assert leakcheck._gc_close(closing)
            assert not leakcheck._gc_close(own)
        finally:
            await asyncio.gather(closing, own, return_exceptions=True)
