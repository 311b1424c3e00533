"""Model backends behind one small interface: the OpenAI-compatible HTTP upstream and the embedded model.

A provider either returns a whole response body (``complete``) or opens a stream whose first SSE event
has already arrived (``stream``), so that every failure before the first byte can still be retried on
another deployment. Failures are :class:`UpstreamFailure` with a ``kind`` the router and the metrics use.
"""

from __future__ import annotations

from aiaas.inference.providers.base import EventStream, UpstreamFailure, UpstreamReply

__all__ = ["EventStream", "UpstreamFailure", "UpstreamReply"]
