"""Runs the HTTP roles under uvicorn (uvloop + httptools), one or several worker processes.

Every role a process runs is served from one event loop; role ``all`` runs api, streamer and worker
together. With ``--workers N`` the parent binds the listening sockets once, forks N children that serve
them, forwards SIGTERM/SIGINT to them, and restarts none: an orchestrator restarts the pod.

Graceful shutdown: on SIGTERM each server stops accepting, lets in-flight requests and streams finish
for up to ``AIAAS_GRACEFUL_SHUTDOWN_SECONDS``, then runs the apps' shutdown hooks (the worker stops
consuming and finishes the messages it holds before closing the channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from aiaas.kernel import metrics
from aiaas.kernel.config import Settings, gc_thresholds
from aiaas.kernel.http import LoadShedder, RequestContext
from aiaas.kernel.logs import configure_logging
from aiaas.kernel.runtime import freeze_heap, refreeze_after, watch_gc, watch_loop
from aiaas.kernel.server_protocol import protocol_class
from aiaas.kernel.tracing import setup_tracing

log = logging.getLogger("aiaas.serve")

_EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)

ROLES_OF: dict[str, tuple[str, ...]] = {
    "api": ("api",),
    "streamer": ("streamer",),
    "worker": ("worker",),
    "all": ("api", "streamer", "worker"),
}


@dataclass
class Listener:
    role: str
    port: int
    sock: socket.socket


def port_of(settings: Settings, role: str) -> int:
    """The configured port of one role."""
    return {"api": settings.api_port, "streamer": settings.streamer_port, "worker": settings.worker_port}[role]


def build_asgi(role: str, settings: Settings) -> Any:
    """The ASGI app of one role, wrapped with the request-context layer."""
    from aiaas.entrypoints import api, streamer, worker
    from aiaas.entrypoints.bootstrap import Container

    factory = {"api": api.create_app, "streamer": streamer.create_app, "worker": worker.create_app}[role]
    app = factory(Container(settings, role=role))
    if role == "api":
        # The streamer bounds its own work (admission, the embedded model's queue) and holds long streams.
        app = LoadShedder(app, role=role, limit=settings.api_max_in_flight)
    return RequestContext(app, role=role, access_log=settings.access_log)


class OneOrigin:
    """Role ``all``'s api port: the inference routes go to the streamer's app, everything else to the api's.

    Behind the chart's Ingress one host serves both; this gives the single container the same shape, so
    the console (served by the api) reaches the playground's ``/v1/chat/completions`` on its own origin,
    with no CORS. Lifespan events go to the api app only: the streamer's own listener runs its lifespan.
    """

    def __init__(self, api: Any, streamer: Any) -> None:
        from aiaas.entrypoints.streamer import serves

        self.api = api
        self.streamer = streamer
        self.serves = serves

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan" and self.serves(scope["path"]):
            await self.streamer(scope, receive, send)
        else:
            await self.api(scope, receive, send)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us, so several can share one loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def trusted_proxies(settings: Settings) -> list[str]:
    """The addresses and networks (``AIAAS_TRUSTED_PROXIES``) whose forwarded-for headers are believed."""
    return [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, bound before any worker is forked so they can share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def serve_listeners(settings: Settings, listeners: list[Listener]) -> None:
    """Serve every listener from this process's loop until SIGTERM/SIGINT, then shut down gracefully."""
    servers: list[_Server] = []
    apps = {lst.role: build_asgi(lst.role, settings) for lst in listeners}
    if "api" in apps and "streamer" in apps:
        apps["api"] = OneOrigin(apps["api"], apps["streamer"])
    for lst in listeners:
        trusted = trusted_proxies(settings)
        config = uvicorn.Config(
            apps[lst.role],
            loop="none",
            http=protocol_class(max_head_bytes=settings.max_request_header_bytes,
                                openai_errors=lst.role == "streamer"),
            # X-Forwarded-For/-Proto are believed only from the proxies the operator names: from anyone
            # else they would let a client choose its address (and so its login-throttle bucket).
            proxy_headers=bool(trusted),
            forwarded_allow_ips=trusted or None,
            lifespan="on",
            access_log=False,
            log_config=None,
            server_header=False,
            date_header=True,
            timeout_keep_alive=75,
            timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
            backlog=2048,
        )
        servers.append(_Server(config))
    loop = asyncio.get_running_loop()

    def request_exit(sig: int) -> None:
        log.info("received %s; shutting down gracefully", signal.Signals(sig).name)
        for srv in servers:
            if srv.should_exit:
                srv.force_exit = True
            srv.should_exit = True

    for sig in _EXIT_SIGNALS:
        loop.add_signal_handler(sig, request_exit, sig)
    # Held back since start (see ``serve``): one that came while the apps were built is handled now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _EXIT_SIGNALS)
    watch = _watch_after_start(servers, freeze=settings.gc_freeze, thresholds=gc_thresholds(settings))
    monitor = loop.create_task(watch, name="aiaas-runtime-monitor")
    await asyncio.gather(*(srv.serve(sockets=[lst.sock]) for srv, lst in zip(servers, listeners, strict=True)))
    monitor.cancel()
    await _cancel_leftovers(timeout=5.0)
    # A server that failed to start (lifespan error) exits without raising; make that visible.
    if any(not srv.started for srv in servers):
        raise SystemExit(3)


async def _watch_after_start(servers: list[_Server], *, freeze: bool,
                             thresholds: tuple[int, int, int] | None = None) -> None:
    """Once every server has started (apps built, lifespans run), freeze the heap and set the collector's
    thresholds, then sample loop lag."""
    while not all(srv.started for srv in servers):
        if any(srv.should_exit for srv in servers):
            return
        await asyncio.sleep(0.05)
    if freeze:
        log.debug("froze %d objects out of the garbage collector's reach", freeze_heap())
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    watch_gc()  # from here: the pauses of serving, not of importing and starting
    if freeze:  # and again once the first requests have built what they keep
        await asyncio.gather(watch_loop(), refreeze_after())
    else:
        await watch_loop()


async def _cancel_leftovers(*, timeout: float) -> None:
    """Cancel background tasks the apps left running and wait a bounded time for them.

    asyncio's runner would otherwise wait forever at exit for a task that does not finish on cancel.
    """
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in left:
        task.cancel()
    if not left:
        return
    _done, pending = await asyncio.wait(left, timeout=timeout)
    if pending:
        names = ", ".join(sorted(t.get_name() for t in pending))
        log.error("tasks still running %.0fs after shutdown, abandoning them: %s", timeout, names)
        sys.stdout.flush()
        os._exit(0)


def _run_in_process(settings: Settings, listeners: list[Listener], role_label: str) -> None:
    import uvloop

    configure_logging(level=settings.log_level, json_logs=settings.log_json, service=settings.service_name,
                      role=role_label)
    setup_tracing(settings, role_label)
    uvloop.run(serve_listeners(settings, listeners))


def serve(settings: Settings, role: str, *, workers: int | None = None,
          on_bound: Callable[[list[Listener]], None] | None = None) -> int:
    """Run ``role`` (api, streamer, worker or all) with ``workers`` processes; returns an exit code."""
    workers = workers or settings.workers
    # A SIGTERM that arrives while a process is still starting (importing, building its apps) must shut
    # it down gracefully like any other, not kill it with the default action: hold the signals until
    # their handlers are installed. Forked children inherit the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, _EXIT_SIGNALS)
    listeners = [Listener(r, port_of(settings, r), bind(settings.host, port_of(settings, r)))
                 for r in ROLES_OF[role]]
    if on_bound:
        on_bound(listeners)
    if workers == 1:
        _run_in_process(settings, listeners, role)
        return 0
    if not metrics.multiprocess_enabled():
        raise RuntimeError("call prepare_multiprocess_env() before importing aiaas modules when workers > 1")
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                _run_in_process(settings, listeners, role)
            except SystemExit as exc:
                code = int(exc.code or 0)
            except BaseException:
                logging.getLogger("aiaas.serve").exception("worker process crashed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    for lst in listeners:
        lst.sock.close()
    return _supervise(children)


def _supervise(children: list[int]) -> int:
    """Forward termination signals to the children and wait for all of them."""

    def forward(sig: int, _frame: Any) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _EXIT_SIGNALS)
    worst = 0
    remaining = set(children)
    while remaining:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        remaining.discard(pid)
        metrics.mark_process_dead(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            print(f"aiaas: worker {pid} exited with {code}", file=sys.stderr)
            worst = worst or (code if code > 0 else 1)
            # One worker dying means the pod is unhealthy: stop the others so the orchestrator restarts it.
            forward(signal.SIGTERM, None)
    return worst
