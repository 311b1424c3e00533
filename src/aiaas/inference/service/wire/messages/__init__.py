"""Anthropic's Messages API over chat completions: the request translated in, the answer translated back.

The edge decodes a ``/v1/messages`` body with ``parse_request``, sends ``chat_request`` to a chat backend
and answers with ``message_of_completion`` (whole) or a ``MessageStream`` (SSE). Everything here is pure
and synchronous; the token counts come from the edge, so what a client is told is what was metered.
"""

from __future__ import annotations

from aiaas.inference.service.wire.messages.chat import chat_request, count_text
from aiaas.inference.service.wire.messages.request import (
    CountTokensRequest,
    MessagesRequest,
    parse_request,
    thinking_enabled,
)
from aiaas.inference.service.wire.messages.response import (
    MessageStream,
    Usage,
    message_of_completion,
    stop_reason_of,
    tool_input,
)

__all__ = [
    "CountTokensRequest",
    "MessageStream",
    "MessagesRequest",
    "Usage",
    "chat_request",
    "count_text",
    "message_of_completion",
    "parse_request",
    "stop_reason_of",
    "thinking_enabled",
    "tool_input",
]
