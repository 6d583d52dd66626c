"""Bodies of the foreground commands: ``kb sync``, ``kb ask`` and the answer printer."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bot.answers import Answer
from core.errors import SettingsError
from kb import wiring
from kb.runtime import open_runtime
from kb.settings import Settings
from store.sync_state import RunCounts
from sync.engine import RunReport, SyncEngine
from sync.source import SourceConnector


def run_sync(
    settings: Settings, source: str, scopes: Sequence[str], full: bool, out: TextIO
) -> int:
    settings.require_a_source()
    spec = settings.sources.get(source)
    if spec is not None and source not in settings.configured_sources():
        raise SettingsError(spec.enabled_by, f"is not set, so there is no {source} to sync")
    with open_runtime(settings, connectors=True) as runtime:
        chosen = [c for name, c in runtime.connectors.items() if source in ("all", name)]
        engine = runtime.engine()
        # Intents a crashed run left behind are applied before anything new.
        runtime.invalidator.drain()
        reports = sync_sources(engine, chosen, scopes, full, out, trigger="cli")
        runtime.invalidator.drain()
    for report in reports:
        print(report.summary(), file=out)
        for error in report.errors[:5]:
            print(f"  failed: {error}", file=out)
    return 0 if all(r.status == "ok" for r in reports) else 1


def sync_sources(
    engine: SyncEngine,
    connectors: Sequence[SourceConnector],
    scopes: Sequence[str],
    full: bool,
    out: TextIO,
    *,
    trigger: str,
) -> list[RunReport]:
    """One run per connector, limited to ``scopes`` (each must belong to some connector)."""
    wanted = {s.upper() for s in scopes}
    known = {s for c in connectors for s in c.scopes()}
    unknown = wanted - known - {"*"}
    if unknown:
        raise SettingsError(
            "--scope",
            f"{', '.join(sorted(unknown))} is not a configured space or project "
            f"(configured: {', '.join(sorted(known))})",
        )
    reports = []
    for connector in connectors:
        mine = [s for s in connector.scopes() if not wanted or s in wanted]
        if wanted and not mine:
            continue
        progress = ProgressLine(
            out, connector.source, expected=engine.indexed(connector.source, mine)
        )
        reports.append(
            engine.run(connector, scopes=mine, full=full, trigger=trigger, progress=progress)
        )
        progress.done()
    return reports


class ProgressLine:
    """A one-line progress display on a terminal, silent when output is not a TTY: items done,
    the measured rate, and an ETA when the total can be estimated (the pages the store held
    for these scopes after the last run; a first sync has no estimate)."""

    def __init__(
        self,
        out: TextIO,
        source: str,
        *,
        expected: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._source = source
        self._live = out.isatty()
        self._shown = False
        self._expected = expected
        self._clock = clock
        self._started = clock()

    def __call__(self, scope: str, counts: RunCounts) -> None:
        if not self._live:
            return
        done = counts.synced + counts.unchanged + counts.deleted + counts.skipped + counts.failed
        self._out.write(f"\r{self.line(scope, counts, done)} ")
        self._out.flush()
        self._shown = True

    def line(self, scope: str, counts: RunCounts, done: int) -> str:
        elapsed = self._clock() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = (
            f"{self._source} {scope}: {done} items ({counts.synced} synced, "
            f"{counts.unchanged} unchanged, {counts.failed} failed) {rate:.1f} pages/s"
        )
        left = self._expected - done
        if rate > 0 and left > 0:
            text += f", ETA {_duration(left / rate)} for ~{self._expected}"
        return text

    def done(self) -> None:
        if self._shown:
            self._out.write("\n")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_answer(answer: Answer, now: datetime | None = None) -> str:
    lines = [answer.text.strip(), ""]
    if answer.sources:
        lines.append("Sources:")
        lines += [f"  [{s.n}] {s.title} — {s.url}" for s in answer.sources]
    notes = []
    if answer.cached:
        notes.append("answered from cache")
    if answer.sources_checked_at is not None:
        minutes = int(
            ((now or datetime.now(UTC)) - answer.sources_checked_at).total_seconds() // 60
        )
        notes.append(f"sources synced {minutes} min ago" if minutes else "sources just synced")
    if answer.mode == "extractive":
        notes.append("extractive answer: set ANTHROPIC_API_KEY for written answers")
    if notes:
        lines.append(f"({' · '.join(notes)})")
    return "\n".join(lines).strip()


def answer_json(answer: Answer) -> str:
    return json.dumps(
        {
            "answer": answer.text,
            "cached": answer.cached,
            "sources": [
                {"artifact_id": s.artifact_id, "title": s.title, "url": s.url}
                for s in answer.sources
            ],
        }
    )


def run_ask(
    settings: Settings,
    question: str,
    channel: str | None,
    as_json: bool,
    *,
    schema: str = "public",
    cache_dir: Path | None = None,
) -> int:
    """``schema`` and ``cache_dir`` name the demo's for ``kb ask --demo`` (the sample)."""
    with open_runtime(settings, schema=schema, cache_dir=cache_dir) as runtime:
        flow = wiring.build_flow(settings, runtime.db, runtime.embedder, runtime.cache)
        answer = flow.answer(question, scope=settings.scope_for(channel))
    print(answer_json(answer) if as_json else format_answer(answer), file=sys.stdout)
    return 0 if answer.mode != "unavailable" else 1
