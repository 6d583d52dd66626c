"""Issue 13, fault suite: ``kill -9`` of ``kb daemon`` while it processes webhook deliveries.

Two pages are edited and Confluence's deliveries for both are accepted (202). The worker's
fetch of the first page hangs, so when the daemon is killed one delivery is mid-fetch and the
other still queued. After a restart both are processed: each page's new text is indexed once,
each change has exactly one "source changed" intent (so its notices go out once), and no
delivery is left pending, dead or processed into a second change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.real_processes import World, world


@pytest.fixture
def here(pg_url: str, tmp_path: Path) -> Iterator[World]:
    with world(pg_url, tmp_path) as w:
        yield w


def test_deliveries_accepted_before_a_kill_are_processed_once_after_a_restart(
    here: World,
) -> None:
    first = here.wiki.add_page("ENG", "VPN access", "<p>Use the NWP-AOVPN profile.</p>")
    second = here.wiki.add_page("ENG", "Deploy trains", "<p>Trains leave on Tuesdays.</p>")
    here.wiki.add_page("ENG", "On-call", "<p>Handover on Mondays.</p>")
    daemon = here.process("daemon", "daemon", CONFLUENCE_TIMEOUT="120")
    here.start_daemon(daemon, synced=3)

    here.wiki.edit_page(first.id, body="<p>Use the GlobalConnect client.</p>")
    here.wiki.edit_page(second.id, body="<p>Trains leave on Wednesdays.</p>")
    here.wiki.slow(f"/api/v2/pages/{first.id}", seconds=90, times=None)
    assert here.webhook(daemon, first.id, "delivery-first") == 202
    here.wait(
        "the worker to fetch the first page",
        lambda: bool(here.wiki.requests_to(f"/api/v2/pages/{first.id}")),
    )
    assert here.webhook(daemon, second.id, "delivery-second") == 202
    daemon.kill9()
    assert sorted(r[0] for r in here.sql("SELECT status FROM webhook_events")) == [
        "pending",
        "pending",
    ]

    here.wiki.clear_faults()
    here.start_daemon(daemon, synced=3)
    here.wait(
        "both deliveries to be processed",
        lambda: here.sql("SELECT count(*) FROM webhook_events WHERE status = 'pending'")[0][0] == 0,
    )

    events = here.sql("SELECT delivery_id, status, last_error FROM webhook_events ORDER BY 1")
    assert [(d, s) for d, s, _ in events] == [
        ("id:delivery-first", "done"),
        ("id:delivery-second", "done"),
    ], events
    assert "GlobalConnect" in here.chunk_text(first.id)
    assert "Wednesdays" in here.chunk_text(second.id)
    assert here.duplicate_chunks() == 0
    intents = here.sql(
        "SELECT payload->>'artifact_id', count(*) FROM outbox "
        "WHERE kind = 'source_change' GROUP BY 1 ORDER BY 1"
    )
    assert intents == [(f"confluence:{first.id}", 1), (f"confluence:{second.id}", 1)]
    assert daemon.alive() and "Traceback" not in daemon.output(), here.logs()
