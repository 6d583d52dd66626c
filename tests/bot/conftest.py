"""Fixtures shared by the chat platform tests (Slack, Teams and the seam's test platform)."""

from __future__ import annotations

import pytest
from fakes.flow import FakeFlow


@pytest.fixture
def flow() -> FakeFlow:
    """The answer flow the bots call, scripted per test."""
    return FakeFlow()
