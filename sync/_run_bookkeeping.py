"""The run's bookkeeping: what each page came to, the tallies of a run and of a scope, and
the report a run returns (split from sync/engine.py; the engine is the only user)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from store.sync_state import RunCounts

Outcome = Literal["synced", "unchanged", "deleted", "skipped", "failed"]


@dataclass(frozen=True)
class RunReport:
    run_id: int | None
    source: str
    scopes: tuple[str, ...]
    mode: str
    status: Literal["ok", "partial", "failed", "busy"]
    counts: RunCounts
    errors: tuple[str, ...]
    seconds: float

    def summary(self) -> str:
        c = self.counts
        return (
            f"{self.source}: synced {c.synced}, unchanged {c.unchanged}, deleted {c.deleted}, "
            f"skipped {c.skipped}, failed {c.failed} ({self.seconds:.1f} s)"
        )


@dataclass
class Tally:
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(RunCounts.__dataclass_fields__, 0)
    )
    errors: list[str] = field(default_factory=list)
    listing_failed: bool = False

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome] += 1

    def frozen(self) -> RunCounts:
        return RunCounts(**self.counts)


Progress = Callable[[str, RunCounts], None]


@dataclass
class ScopeRun:
    cursor_scope: tuple[str, str]
    ordered: bool  # items arrive in modification order, so the cursor may follow them
    tally: Tally
    clean: bool = True  # no failure yet: the cursor may still advance
