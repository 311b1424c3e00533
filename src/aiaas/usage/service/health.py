"""The limiter's view of Redis for the streamer's ``/ready``: enforced, or down and which policy decides."""

from __future__ import annotations

import time


class LimiterHealth:
    """What the streamer's ``/ready`` reports: whether limits are enforced or Redis is down."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.default_mode = "closed"

    def ok(self) -> None:
        self.down_since = None

    def failed(self) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()

    def state(self) -> dict[str, str]:
        if self.down_since is None:
            return {"limits": "enforced"}
        return self.down_state()

    def down_state(self) -> dict[str, str]:
        return {"limits": f"redis unavailable: not enforced; per-org policy decides: fail-open orgs are served "
                          f"and counted later, fail-closed orgs get 503 (default fail-{self.default_mode})"}


HEALTH = LimiterHealth()
