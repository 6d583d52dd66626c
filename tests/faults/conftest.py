"""Fixtures shared by the fault tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.postgres_outage import StoppablePostgres


@pytest.fixture
def postgres() -> Iterator[StoppablePostgres]:
    """A Postgres of its own that a test may stop and start again (an outage)."""
    server = StoppablePostgres()
    try:
        yield server
    finally:
        server.close()
