"""Mergeable latency histograms: fixed logarithmic buckets with a bounded relative error.

A value ``x`` (milliseconds) lands in bucket ``i = ceil(log(x) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; the bucket is represented by ``2 * gamma**i / (gamma + 1)``, which
is within ``alpha`` (relative) of every value the bucket holds. The buckets are the same everywhere, so
two histograms merge by adding counts bucket by bucket: the quantiles of any range of time come from the
merged counts, never from averaged percentiles, and stay within ``alpha`` of the true quantile of the
values (the quantile is the value at rank ``floor(q * (n - 1))`` of the sorted values; DDSketch's scheme).

Histograms are stored as ``{bucket index: count}`` maps (sparse: a minute of one model's requests touches
a handful of buckets). Values at or below ``MIN_MS`` share the lowest bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ALPHA = 0.01  # relative error of every quantile: 1%
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_MS = 0.001  # 1 µs: below this every value is the same to us
_MIN_INDEX = math.ceil(math.log(MIN_MS) / _LOG_GAMMA)

Histogram = dict[int, int]


def bucket(value_ms: float) -> int:
    """The bucket of one value (milliseconds); non-positive and tiny values share the lowest bucket."""
    if not value_ms > MIN_MS:  # also catches NaN
        return _MIN_INDEX
    return max(_MIN_INDEX, math.ceil(math.log(value_ms) / _LOG_GAMMA))


def representative(index: int) -> float:
    """The value a bucket stands for: within ``ALPHA`` of every value in it."""
    return 2 * GAMMA**index / (GAMMA + 1)


def of(values: Iterable[float]) -> Histogram:
    """The histogram of some values."""
    h: Histogram = {}
    for v in values:
        i = bucket(v)
        h[i] = h.get(i, 0) + 1
    return h


def merge(*hists: Mapping[int, int]) -> Histogram:
    """The sum of several histograms (any order, any grouping: the result is the same)."""
    out: Histogram = {}
    for h in hists:
        for i, n in h.items():
            out[int(i)] = out.get(int(i), 0) + int(n)
    return out


def count(h: Mapping[int, int]) -> int:
    """How many values a histogram holds."""
    return sum(h.values())


def quantile(h: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 ≤ q ≤ 1) of the values in ``h``, within ``ALPHA``; None when it is empty."""
    if not 0 <= q <= 1:
        raise ValueError("q must be between 0 and 1")
    n = count(h)
    if n == 0:
        return None
    rank = math.floor(q * (n - 1))
    seen = 0
    for i in sorted(h):
        seen += h[i]
        if seen > rank:
            return representative(i)
    return representative(max(h))  # pragma: no cover - the loop always reaches the rank


def to_json(h: Mapping[int, int]) -> dict[str, int]:
    """The stored form (JSON object keys are strings)."""
    return {str(i): int(n) for i, n in h.items() if n}


def from_json(raw: Mapping[str, int] | None) -> Histogram:
    """The histogram of a stored form."""
    return {int(i): int(n) for i, n in (raw or {}).items()}
