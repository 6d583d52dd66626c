from __future__ import annotations

import io

from kb.commands import ProgressLine
from store.sync_state import RunCounts


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_shows_the_measured_rate_and_an_eta_for_the_expected_pages() -> None:
    out, clock = _Terminal(), _Clock()
    progress = ProgressLine(out, "confluence", expected=1000, clock=clock)
    clock.now += 50
    progress("ENG", RunCounts(synced=80, unchanged=20))
    shown = out.getvalue()
    assert "100 items" in shown and "2.0 pages/s" in shown
    assert "ETA 7m30s for ~1000" in shown  # 900 left at 2 pages/s


def test_progress_has_no_eta_without_an_estimate_and_is_silent_off_a_terminal() -> None:
    out, clock = _Terminal(), _Clock()
    progress = ProgressLine(out, "jira", clock=clock)
    clock.now += 10
    progress("OPS", RunCounts(synced=5))
    assert "0.5 pages/s" in out.getvalue() and "ETA" not in out.getvalue()
    piped = io.StringIO()
    ProgressLine(piped, "jira", expected=10)("OPS", RunCounts(synced=5))
    assert piped.getvalue() == ""
