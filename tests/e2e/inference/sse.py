"""Reading a streamed answer as it came over the wire: each event's ``event:`` name and ``data:`` JSON."""

from __future__ import annotations

import json
from typing import Any

import httpx


def post_sse(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    """POST ``body`` and parse the event stream; a status other than 200 comes back with its JSON body."""
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, [r.json()]
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                doc = json.loads(line[6:])
                assert doc["type"] == name, "the SSE event name is the event's type"
                events.append(doc)
    return 200, events
