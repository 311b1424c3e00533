"""Fixtures of the usage tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """Engines on this session's database."""
    d = Database(settings, role="test")
    yield d
    await d.dispose()
