"""The process's HTTP client for upstreams: one tuned aiohttp session, with the gateway's rules on top.

aiohttp speaks HTTP/1.1 (framing, keep-alive pooling, TLS, proxies, 1xx responses); this package adds what
every upstream request of the gateway needs and aiohttp does not do the way the gateway needs it:

- **A timeout per phase**, each failing with its own kind: waiting for a free connection of the origin
  (``pool_wait_seconds``, kind ``timeout``), connecting (DNS, TCP, TLS and a proxy's tunnel: the
  deployment's ``connect_timeout``, kind ``connect``), then the first byte (``first_byte_timeout``,
  counted from when the request is sent, kind ``timeout``), and a non-streamed body by the deadline;
  each is cut short by the request's deadline. The connect phase is aiohttp's ``ClientTimeout.connect``
  (no timer at all when an idle connection is reused). The first byte and the body share one
  ``asyncio.Timeout``, which the connector schedules when it hands the connection over, so neither the
  pool wait nor the connect counts toward the first byte. aiohttp's ``ClientTimeout.connect`` would also
  cover the wait for a free connection, so that wait is a semaphore per origin here, sized like
  aiohttp's ``limit_per_host`` (which still bounds the connections, and so never has to queue a request).
- **Stale keep-alive connections never fail a request**: idle connections are dropped after
  ``keepalive_seconds`` (4 s by default, below the 5 s idle timeout common to servers), and a request
  that finds its reused connection closed by the server before any byte of a response arrived (a clean
  close, or a reset on write) is sent again once, transparently, on a new connection. aiohttp retries
  only idempotent methods, and these are POSTs. A failure on a new connection is never retried here.
- **Egress**: every new connection goes to an address :class:`EgressResolver` resolved and the egress
  policy allowed; IP-literal hosts (which aiohttp does not resolve) are checked once per URL. Through a
  proxy, the proxy is the operator's and exempt, and the target host is resolved and checked here before
  anything is sent to the proxy.
- **Proxies** from ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` (aiohttp's own reading of the
  environment, ``get_env_proxy_for_url``), chosen once per URL; a proxy URL aiohttp cannot use (not
  ``http://``) is refused rather than gone around. The session keeps ``trust_env`` off:
  with it, aiohttp would look both the proxy and ``~/.netrc`` up again on a worker thread for every
  request, and send a netrc password as the upstream's ``Authorization``.
- **TLS** with the system's trust store, or a deployment's own CA bundle (``ca_bundle``: loaded on a
  worker thread, re-read when the file changes, checked at most every ``TLS_RECHECK_SECONDS``).
- **Header values are checked** before anything is sent: a name that is not an HTTP token, or a value
  outside printable ASCII (CR, LF, NUL or any other control character), is a ``config`` failure.

Responses are passed on as the upstream's bytes (no decompression; the request asks for ``identity``);
no cookie jar, no redirects. A body read to its end gives its connection back to the pool; a response
closed before its end closes its connection.
"""

from __future__ import annotations

from aiaas.inference.providers.client.session import Response, UpstreamClient
from aiaas.inference.providers.client.targets import EgressResolver, check_headers

__all__ = ["EgressResolver", "Response", "UpstreamClient", "check_headers"]
