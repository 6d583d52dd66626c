"""Issue 13, fault suite: ``kill -9`` of ``kb daemon`` in the middle of a sync.

A real daemon syncs 40 pages from the fake Confluence; one page's restriction lookup hangs, so
the first group of 32 pages is committed and the second is still being fetched when the
daemon is killed. After a restart every page is indexed exactly once (no chunk stored twice),
the pages committed before the kill are not embedded again, and the killed run is recorded as
interrupted rather than left running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.real_processes import World, world

PAGES = 40
FIRST_GROUP = 32  # the engine commits pages in groups of 32 (SyncEngine group_pages)


@pytest.fixture
def here(pg_url: str, tmp_path: Path) -> Iterator[World]:
    # Lists come in pages of one group: the second page is where a run can be held.
    with world(pg_url, tmp_path, limit_cap=FIRST_GROUP) as w:
        yield w


def test_a_daemon_killed_mid_sync_indexes_every_page_once_after_a_restart(here: World) -> None:
    pages = [
        here.wiki.add_page(
            "ENG", f"Runbook {n}", f"<h2>Step {n}</h2><p>Restart service {n} twice.</p>"
        )
        for n in range(PAGES)
    ]
    stuck = pages[FIRST_GROUP + 3]
    here.wiki.slow(f"/rest/api/content/{stuck.id}", seconds=90, times=None)
    # Patient enough that the hang outlasts the kill rather than failing the page first.
    daemon = here.process("daemon", "daemon", CONFLUENCE_TIMEOUT="120")
    daemon.start()
    here.wait(
        "the first group of pages to be committed",
        lambda: here.live_artifacts() >= FIRST_GROUP or not daemon.alive(),
        180,
    )
    here.wait(
        "the stuck page to be asked for",
        lambda: bool(here.wiki.requests_to(f"/rest/api/content/{stuck.id}")),
    )
    assert here.live_artifacts() < PAGES
    daemon.kill9()
    (interrupted,) = here.sql("SELECT run_id, status FROM sync_runs")
    assert interrupted[1] == "running"  # nobody could record the end

    here.wiki.clear_faults()
    here.start_daemon(daemon, synced=PAGES)

    assert here.duplicate_chunks() == 0
    per_page = here.sql(
        "SELECT a.artifact_id, count(c.chunk_id) FROM artifacts a "
        "LEFT JOIN chunks c USING (artifact_id) GROUP BY 1"
    )
    assert len(per_page) == PAGES and all(n >= 1 for _, n in per_page)
    assert f"Restart service {PAGES - 1} twice" in here.chunk_text(pages[-1].id)
    runs = here.sql("SELECT status, synced, unchanged, errors::text FROM sync_runs ORDER BY run_id")
    (killed, resumed) = runs
    assert killed[0] == "failed" and "interrupted" in killed[3]
    assert resumed[0] == "ok"
    # The pages committed before the kill pass the checksum gate: not embedded again.
    assert resumed[1] + resumed[2] == PAGES and resumed[2] >= FIRST_GROUP
    assert daemon.alive() and "Traceback" not in daemon.output(), here.logs()


def test_a_daemon_killed_mid_incremental_sync_indexes_every_edit_after_a_restart(
    here: World,
) -> None:
    pages = [
        here.wiki.add_page("ENG", f"Runbook {n}", f"<p>Restart service {n} once.</p>")
        for n in range(PAGES)
    ]
    daemon = here.process("daemon", "daemon", CONFLUENCE_TIMEOUT="120")
    here.start_daemon(daemon, synced=PAGES)
    daemon.stop()
    for page in pages:  # in order: the incremental run sees them oldest first
        here.wiki.edit_page(page.id, body=f"<p>Restart service {page.title[8:]} twice.</p>")
    here.wiki.stall_later_search_pages = True
    daemon.start()

    def edited() -> int:
        rows = here.sql("SELECT count(*) FROM chunks WHERE strpos(text, 'twice') > 0")
        return int(rows[0][0])

    here.wait("the first group of edits to be committed", lambda: edited() >= FIRST_GROUP, 180)
    assert edited() < PAGES
    daemon.kill9()

    here.wiki.stall_later_search_pages = False
    here.start_daemon(daemon, synced=PAGES)
    assert here.duplicate_chunks() == 0
    missing = [p.title for p in pages if "twice" not in here.chunk_text(p.id)]
    assert missing == [], "every edit is indexed after the restart"
    statuses = [r[0] for r in here.sql("SELECT status FROM sync_runs ORDER BY run_id")]
    assert statuses == ["ok", "failed", "ok"]
    assert daemon.alive() and "Traceback" not in daemon.output(), here.logs()
