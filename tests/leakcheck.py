"""Fails the test that leaves something running: a thread, a child process, a listening socket or an
asyncio task it started and did not stop.

Each test is checked after its teardown, so what its own fixtures start counts as its own. What a wider
fixture (module, class, session) starts belongs to that fixture instead, and is checked when that fixture
is finalized; so do the processes a process of that fixture starts later (a browser spawns helper
processes when it needs them, whichever test is running then). A leak is reported once, as an error of
the test (or fixture) that left it, naming what leaked; leaked child processes are then killed, so one
broken test cannot slow or poison the rest of the run. Things that stop asynchronously (a thread joining,
a server closing its socket) get a bounded grace period before they count.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
import pytest

# Threads that belong to a longer-lived owner than any test: the default executors of the session's event
# loops (reused by every ``asyncio.to_thread``), pytest-timeout's and xdist's own threads.
_IGNORED_THREADS = re.compile(r"^(asyncio_\d+|ThreadPoolExecutor-\d+_\d+|pytest_timeout.*|execnet.*)$")
GRACE_SECONDS = float(os.environ.get("AIAAS_TEST_LEAK_GRACE_SECONDS", "10"))

_ME = psutil.Process()


@dataclass(frozen=True)
class Snapshot:
    threads: frozenset[tuple[int, str]] = frozenset()
    children: frozenset[tuple[int, float, str]] = frozenset()
    listening: frozenset[tuple[str, int]] = frozenset()
    tasks: frozenset[tuple[int, str]] = frozenset()

    def __sub__(self, other: Snapshot) -> Snapshot:
        return Snapshot(self.threads - other.threads, self.children - other.children,
                        self.listening - other.listening, self.tasks - other.tasks)

    def __or__(self, other: Snapshot) -> Snapshot:
        return Snapshot(self.threads | other.threads, self.children | other.children,
                        self.listening | other.listening, self.tasks | other.tasks)

    def __and__(self, other: Snapshot) -> Snapshot:
        return Snapshot(self.threads & other.threads, self.children & other.children,
                        self.listening & other.listening, self.tasks & other.tasks)

    def __bool__(self) -> bool:
        return bool(self.threads or self.children or self.listening or self.tasks)

    def describe(self) -> str:
        parts = [f"thread {name!r}" for _, name in sorted(self.threads, key=lambda t: t[1])]
        parts += [f"child process {pid} ({cmd})" for pid, _, cmd in sorted(self.children)]
        parts += [f"listening socket {host}:{port}" for host, port in sorted(self.listening)]
        parts += [f"asyncio task {name}" for _, name in sorted(self.tasks, key=lambda t: t[1])]
        return ", ".join(parts)


@dataclass
class _State:
    loops: set[asyncio.AbstractEventLoop] = field(default_factory=set)
    owned: dict[int, Snapshot] = field(default_factory=dict)  # id(fixturedef) -> what its setup started
    reported: Snapshot = field(default_factory=Snapshot)
    before: dict[str, Snapshot] = field(default_factory=dict)


_state = _State()


def _children() -> frozenset[tuple[int, float, str]]:
    out = set()
    try:
        kids = _ME.children(recursive=True)
    except psutil.Error:
        return frozenset()
    for p in kids:
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            out.add((p.pid, p.create_time(), " ".join(p.cmdline()[:6])[:160]))
        except psutil.Error:  # exited while we looked
            continue
    return frozenset(out)


def _listening() -> frozenset[tuple[str, int]]:
    try:
        conns = _ME.net_connections(kind="inet")
    except psutil.Error:
        return frozenset()
    return frozenset((c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN)


def _tasks() -> frozenset[tuple[int, str]]:
    out = set()
    for loop in list(_state.loops):
        if loop.is_closed():
            _state.loops.discard(loop)
            continue
        try:
            tasks = asyncio.all_tasks(loop)
        except RuntimeError:  # the set changed size while we read it from another thread
            continue
        for t in tasks:
            # An async generator dropped unclosed gets an ``aclose()`` task from the loop's finalizer hook;
            # it runs as soon as the loop does, so it is not something a test left running.
            if not t.done() and type(t.get_coro()).__name__ != "async_generator_athrow" and not _gc_close(t):
                out.add((id(t), _describe_task(t)))
    return frozenset(out)


def _gc_close(t: asyncio.Task[object]) -> bool:
    """An aio-pika connection that is garbage-collected unclosed starts its own ``close()`` from
    ``__del__``, on whatever loop runs at that moment: the collection happens in a later, unrelated test,
    which did not start it and cannot stop it (seen: a pure unit test blamed for it). Like the generator
    finalizer above, it is the clean-up, not the leak; it ends on its own."""
    coro = t.get_coro()
    return (getattr(coro, "__qualname__", "").endswith("Connection.close")
            and getattr(getattr(coro, "cr_code", None), "co_filename", "").replace("\\", "/").find("/aio_pika/") >= 0)


def _describe_task(t: asyncio.Task[object]) -> str:
    coro = t.get_coro()
    where = getattr(coro, "__qualname__", None)
    frames = t.get_stack(limit=1)
    if frames:
        f = frames[-1]
        where = f"{where or f.f_code.co_name} at {os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
    return f"{t.get_name()} ({where or repr(coro)[:120]})"


def snapshot() -> Snapshot:
    """What this process has running now."""
    threads = frozenset((t.ident or 0, t.name) for t in threading.enumerate()
                        if t is not threading.main_thread() and t.is_alive() and not _IGNORED_THREADS.match(t.name))
    return Snapshot(threads, _children(), _listening(), _tasks())


def _still_running(suspects: Snapshot) -> Snapshot:
    """The part of ``suspects`` still running after a bounded grace period."""
    deadline = time.monotonic() + GRACE_SECONDS
    while True:
        left = suspects & snapshot()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _kill(children: frozenset[tuple[int, float, str]]) -> None:
    for pid, created, _ in children:
        try:
            p = psutil.Process(pid)
            if p.create_time() == created:
                p.kill()
                p.wait(5)
        except psutil.Error:
            continue


def _owned_by_live_fixtures() -> Snapshot:
    total = Snapshot()
    for s in _state.owned.values():
        total = total | s
    return total


def _adopt(suspects: Snapshot) -> Snapshot:
    """``suspects`` less the child processes whose parent chain reaches a process a live fixture owns; those
    are added to that fixture's own, and checked when it is finalized."""
    if not suspects.children:
        return suspects
    adopted: set[tuple[int, float, str]] = set()
    for key, owned in list(_state.owned.items()):
        pids = {pid for pid, _, _ in owned.children}
        if not pids:
            continue
        mine = set()
        for child in suspects.children - adopted:
            try:
                ancestors = {p.pid for p in psutil.Process(child[0]).parents()}
            except psutil.Error:
                continue
            if ancestors & pids:
                mine.add(child)
        if mine:
            _state.owned[key] = owned | Snapshot(children=frozenset(mine))
            adopted |= mine
    return suspects - Snapshot(children=frozenset(adopted))


def pytest_sessionstart(session: pytest.Session) -> None:
    _state.before["<session>"] = snapshot()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture is gone nothing the run started may be left: fail the run, naming it."""
    before = _state.before.pop("<session>", Snapshot())
    left = _still_running(snapshot() - before)
    if left:
        _kill(left.children)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"leakcheck: still running after the last test: {left.describe()}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
async def _leakcheck_loop() -> None:
    """Remember the event loop tests run on, so tasks left on it can be found."""
    _state.loops.add(asyncio.get_running_loop())


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest) -> Iterator[None]:
    if fixturedef.scope == "function":
        return (yield)
    before = snapshot()
    try:
        return (yield)
    finally:
        # A helper that a wider fixture's process started meanwhile (a browser's network service, say) is
        # that fixture's, not this one's: it started during this setup, not because of it.
        started = _adopt(snapshot() - before)
        if started:
            _state.owned[id(fixturedef)] = started


@pytest.hookimpl(wrapper=True)
def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[object],
                                  request: pytest.FixtureRequest) -> Iterator[None]:
    result = yield
    started = _state.owned.pop(id(fixturedef), None)
    if started:
        left = _still_running(started) - _state.reported
        if left:
            _state.reported = _state.reported | left
            _kill(left.children)
            raise RuntimeError(f"fixture {fixturedef.argname!r} left running after its teardown: {left.describe()}")
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _state.before[item.nodeid] = snapshot()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    before = _state.before.pop(item.nodeid, None)
    if before is None:
        return result
    suspects = _adopt(snapshot() - before - _owned_by_live_fixtures() - _state.reported)
    if suspects:
        left = _still_running(suspects) - _owned_by_live_fixtures()
        if left:
            _state.reported = _state.reported | left
            _kill(left.children)
            raise RuntimeError(f"{item.nodeid} left running after its teardown: {left.describe()}")
    return result
