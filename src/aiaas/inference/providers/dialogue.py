"""The embedded model's prompt format: a plain dialogue transcript a small *base* model can continue.

The packaged Gemma 3 270M is a pretrained model, not an instruction-tuned one: given Gemma's chat turns it
does not answer, it imitates them (the first answer a new install gave to "Hello" was the prompt and a
stray word, repeated for 512 tokens). What a base model continues well is text it has seen: a short
preamble, two example exchanges, then the conversation as ``User:`` / ``Assistant:`` lines, ending in
``Assistant:``. Generation stops at the next ``User:`` or at a blank line, so answers are short, and the
stops belong to the format (a request's own ``stop`` sequences are added to them by llama-cpp-python).

The preamble and examples are the same for every request, so the model's KV cache keeps them between
requests (llama-cpp-python reuses the longest common token prefix): warming the model with
:data:`PREFIX` at start leaves each request only its own turns to read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

NAME = "aiaas-dialogue"

PREAMBLE = ("A conversation between a curious user and a helpful, knowledgeable assistant. "
            "The assistant answers briefly and accurately.")
EXAMPLES = (
    ("Hi there!", "Hello! How can I help you today?"),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth."),
)
STOPS = ["\nUser:", "\n\n"]
_ROLES = {"user": "User", "assistant": "Assistant"}


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping)
                        and p.get("type") in ("text", "input_text", "output_text"))
    return ""


def _turn(role: str, text: str) -> str:
    # A blank line inside a turn would read as the end of the answer it shows: keep each turn one block.
    body = "\n".join(line for line in text.strip().splitlines() if line.strip())
    return f"{role}: {body}"


def _prefix(preamble: str) -> str:
    shots = "\n\n".join(f"{_turn('User', q)}\n{_turn('Assistant', a)}" for q, a in EXAMPLES)
    return f"{preamble}\n\n{shots}\n\n"


PREFIX = _prefix(PREAMBLE)


def render(messages: Iterable[Mapping[str, Any]]) -> str:
    """The prompt for ``messages``: system (and developer) text replaces the preamble; user and assistant
    turns follow the examples; tool results are shown as the user's words."""
    system: list[str] = []
    turns: list[str] = []
    last = ""
    for m in messages:
        role = str(m.get("role") or "")
        text = _text(m.get("content"))
        if role in ("system", "developer"):
            if text.strip():
                system.append(text.strip())
            continue
        if not text.strip():
            continue
        speaker = _ROLES.get(role, "User")
        # Exchanges are separated by a blank line, as in the examples.
        sep = "" if not turns else "\n\n" if speaker == "User" and last == "Assistant" else "\n"
        turns.append(sep + _turn(speaker, text))
        last = speaker
    preamble = " ".join(system) or PREAMBLE
    return _prefix(preamble) + "".join(turns) + "\nAssistant:"


def chat_handler() -> Any:
    """This format as a llama-cpp-python chat handler (``Llama(chat_handler=...)``; needs the ``local`` extra)."""
    from llama_cpp import llama_chat_format as formats

    def formatter(messages: list[Mapping[str, Any]], **_: Any) -> Any:
        return formats.ChatFormatterResponse(prompt=render(messages), stop=list(STOPS))

    return formats.chat_formatter_to_chat_completion_handler(formatter)
