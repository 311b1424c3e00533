"""``chat MODEL "prompt"``: one chat completion, streamed to the terminal as it arrives."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import click

from aiaas.ctl.errors import ApiError, UsageFailure
from aiaas.ctl.output import Format
from aiaas.ctl.state import State, with_state


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` of each Server-Sent Event in ``lines`` (multi-line data joined with newlines)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def read_prompt(prompt: str | None) -> str:
    """The prompt argument, or standard input when it is ``-`` or missing (and stdin is not a terminal)."""
    if prompt is not None and prompt != "-":
        return prompt
    if sys.stdin.isatty():
        raise UsageFailure('give a prompt (aiaasctl chat MODEL "Hello") or pipe one on standard input')
    text = sys.stdin.read()
    if not text.strip():
        raise UsageFailure("the prompt on standard input is empty")
    return text


def usage_line(usage: dict[str, Any] | None, *, first_ms: float | None, total_ms: float, request_id: str | None) -> str:
    """The line printed to stderr after an answer: tokens, time to first token, total time."""
    parts = []
    if usage:
        parts.append(f"{usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion = "
                     f"{usage.get('total_tokens', 0)} tokens")
    else:
        parts.append("usage not reported")
    if first_ms is not None:
        parts.append(f"first token {first_ms:.0f} ms")
    parts.append(f"total {total_ms:.0f} ms")
    if request_id:
        parts.append(f"request {request_id}")
    return " · ".join(parts)


@click.command("chat")
@click.argument("model")
@click.argument("prompt", required=False)
@click.option("--system", help="A system message.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens to generate.")
@click.option("--temperature", type=click.FloatRange(0.0, 2.0), help="Sampling temperature.")
@with_state
def chat(st: State, model: str, prompt: str | None, system: str | None, max_tokens: int | None,
         temperature: float | None) -> None:
    """Send PROMPT (or standard input) to MODEL and stream the answer to stdout; usage and latency go to
    stderr after it.

    Needs an API key (AIAAS_API_KEY or --api-key): the inference API does not take sign-in sessions.
    With -o json the answer is not streamed and the API's JSON is printed.
    """
    st.inference()  # no API key: say so before reading a prompt from stdin
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": read_prompt(prompt)}]
    body: dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    if st.out.format is Format.json:
        started = time.monotonic()
        reply = st.inference().call("POST", "/v1/chat/completions", json=body)
        doc = reply.json()
        st.out.json(doc)
        st.out.notice(usage_line(doc.get("usage"), first_ms=None, total_ms=(time.monotonic() - started) * 1000,
                                 request_id=reply.headers.get("x-request-id")))
        return
    body.update(stream=True, stream_options={"include_usage": True})
    out = st.out.out
    usage: dict[str, Any] | None = None
    first_ms: float | None = None
    last = "\n"
    with st.inference().call("POST", "/v1/chat/completions", json=body, stream=True) as reply:
        for data in sse_data(reply.iter_lines()):
            if data.strip() == "[DONE]":
                break
            chunk = json.loads(data)
            if isinstance(chunk.get("error"), dict):  # the upstream failed after the stream started
                raise ApiError(502, f"the stream ended with an error: {chunk['error'].get('message')}")
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if first_ms is None:
                        first_ms = (time.monotonic() - reply.started) * 1000
                    out.write(piece)
                    out.flush()
                    last = piece
        total_ms = (time.monotonic() - reply.started) * 1000
        request_id = reply.headers.get("x-request-id")
    if not last.endswith("\n"):
        out.write("\n")
        out.flush()
    st.out.notice(usage_line(usage, first_ms=first_ms, total_ms=total_ms, request_id=request_id))
