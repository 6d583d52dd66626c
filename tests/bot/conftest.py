"""Fixtures shared by the Slack and Teams front-end tests."""

from __future__ import annotations

import pytest
from fakes.flow import FakeFlow


@pytest.fixture
def flow() -> FakeFlow:
    """The answer flow the bots call, scripted per test."""
    return FakeFlow()
