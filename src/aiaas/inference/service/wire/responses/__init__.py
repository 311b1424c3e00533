"""OpenAI's Responses API translated to and from chat completions (pure and synchronous: no I/O).

The edge parses the body (:func:`parse_request`), stores :func:`input_items`, sends :func:`chat_request`
to a backend, and answers with :func:`response_object` built from :func:`output_of_completion`, or streams
through a :class:`ResponseStream`.
"""

from __future__ import annotations

from aiaas.inference.service.wire.responses.chat import chat_messages, chat_request
from aiaas.inference.service.wire.responses.items import input_items
from aiaas.inference.service.wire.responses.output import Usage, output_of_completion, response_object
from aiaas.inference.service.wire.responses.request import ResponsesRequest, custom_tool_names, parse_request
from aiaas.inference.service.wire.responses.stream import ResponseStream

__all__ = [
    "ResponseStream",
    "ResponsesRequest",
    "Usage",
    "chat_messages",
    "chat_request",
    "custom_tool_names",
    "input_items",
    "output_of_completion",
    "parse_request",
    "response_object",
]
