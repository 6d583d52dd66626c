from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from fakes.connector import MemoryConnector
from fakes.embedder import HashingEmbedder
from fakes.listener import RecordingListener

from core.errors import RemoteError
from store.db import Database
from store.schema import bind_embedder
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.engine import Item, SyncEngine


@dataclass
class Rig:
    db: Database
    source: MemoryConnector
    embedder: HashingEmbedder
    listener: RecordingListener
    engine: SyncEngine

    def chunks_of(self, artifact_id: str) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT text FROM chunks WHERE artifact_id = %s ORDER BY ord", (artifact_id,)
            ).fetchall()
        return [r["text"] for r in rows]

    def search(self, word: str) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT artifact_id FROM chunks"
                " WHERE tsv @@ plainto_tsquery('english', %s)",
                (word,),
            ).fetchall()
        return sorted(r["artifact_id"] for r in rows)

    def outbox(self) -> list[tuple[str, dict[str, object]]]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT kind, payload FROM outbox WHERE kind <> 'source_change' ORDER BY message_id"
            ).fetchall()
        return [(r["kind"], r["payload"]) for r in rows]


@pytest.fixture
def rig(db: Database) -> Rig:
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    source = MemoryConnector()
    listener = RecordingListener()
    engine = SyncEngine(db, embedder, Chunker(TokenCounter()), listener, clock=lambda: source.clock)
    return Rig(db, source, embedder, listener, engine)


def _seed(rig: Rig) -> None:
    rig.source.put("1", "VPN on Windows", "Install the Northwind VPN client from the portal.")
    rig.source.put("2", "VPN on macOS", "Use the built-in macOS IKEv2 profile.")
    rig.source.put("3", "On-call", "The on-call engineer answers pages within 5 minutes.")


def test_first_sync_indexes_every_page_and_records_the_run(rig: Rig) -> None:
    _seed(rig)
    report = rig.engine.run(rig.source)
    assert report.status == "ok"
    assert (report.counts.synced, report.counts.failed) == (3, 0)
    assert rig.search("IKEv2") == ["confluence:2"]
    with rig.db.connection() as conn:
        run = conn.execute("SELECT status, synced, finished_at FROM sync_runs").fetchone()
    assert run is not None and run["status"] == "ok" and run["synced"] == 3
    assert run["finished_at"] is not None
    assert rig.listener.changed == [], "new pages cannot be cited by any answer yet"


def test_a_first_sync_embeds_the_texts_of_many_pages_in_one_embedder_call(rig: Rig) -> None:
    for n in range(12):
        rig.source.put(str(n), f"Runbook {n}", f"Restart service {n} first. Then page the lead.")
    report = rig.engine.run(rig.source)
    assert report.counts.synced == 12
    assert rig.embedder.calls == 1, "chunks and sentences of all twelve pages in one call"
    assert rig.search("lead") == sorted(f"confluence:{n}" for n in range(12))


class _BreaksMidway(MemoryConnector):
    """Lists ``good`` pages, then the source goes down."""

    good: int | None = None

    def changed(self, scope_key: str, since: datetime | None) -> Iterator[Item]:
        for n, item in enumerate(super().changed(scope_key, since)):
            if self.good is not None and n == self.good:
                raise RemoteError("the source went down mid-listing")
            yield item


def test_a_listing_that_breaks_midway_keeps_every_page_fetched_before(rig: Rig) -> None:
    source = _BreaksMidway()
    for n in range(40):
        source.put(str(n), f"Runbook {n}", f"Restart service {n} first. Then page the lead.")
    source.good = 35
    engine = SyncEngine(rig.db, rig.embedder, Chunker(TokenCounter()), clock=lambda: source.clock)
    first = engine.run(source)
    assert first.status == "failed" and first.counts.synced == 35
    source.good = None
    second = engine.run(source)
    assert second.status == "ok"
    assert (second.counts.synced, second.counts.unchanged) == (5, 35)


def test_resync_of_unchanged_pages_makes_zero_embedding_calls(rig: Rig) -> None:
    _seed(rig)
    rig.engine.run(rig.source)
    calls = rig.embedder.calls
    report = rig.engine.run(rig.source, full=True)
    assert report.counts.unchanged == 3 and report.counts.synced == 0
    assert rig.embedder.calls == calls


def test_a_version_only_edit_records_the_version_without_re_embedding(rig: Rig) -> None:
    _seed(rig)
    rig.engine.run(rig.source)
    calls = rig.embedder.calls
    rig.source.touch("3")
    report = rig.engine.run(rig.source)
    assert report.counts.unchanged >= 1 and report.counts.synced == 0
    assert rig.embedder.calls == calls
    with rig.db.connection() as conn:
        row = conn.execute(
            "SELECT version FROM artifacts WHERE artifact_id = 'confluence:3'"
        ).fetchone()
    assert row is not None and row["version"] == "2"
    (changed,) = rig.listener.changed
    assert changed[0] == "confluence:3" and changed[2] == "2"
    with rig.db.connection() as conn:
        row = conn.execute(
            "SELECT content_hash FROM artifacts WHERE artifact_id = 'confluence:3'"
        ).fetchone()
    assert row is not None and changed[1] == row["content_hash"], "same hash: the cache skips it"


def test_an_edit_replaces_the_pages_chunks_and_reports_the_new_hash(rig: Rig) -> None:
    _seed(rig)
    rig.engine.run(rig.source)
    with rig.db.connection() as conn:
        row = conn.execute(
            "SELECT content_hash FROM artifacts WHERE artifact_id = 'confluence:1'"
        ).fetchone()
    assert row is not None
    old_hash = row["content_hash"]
    rig.source.put("1", "VPN on Windows", "Install WireGuard; the old client is retired.")
    report = rig.engine.run(rig.source)
    assert report.counts.synced == 1
    assert rig.search("WireGuard") == ["confluence:1"]
    assert rig.search("portal") == []
    assert rig.listener.changed[-1][0] == "confluence:1"
    assert rig.listener.changed[-1][1] != old_hash


def test_a_page_failing_mid_run_keeps_its_previous_version_searchable(rig: Rig) -> None:
    _seed(rig)
    rig.engine.run(rig.source)
    rig.source.put("1", "VPN on Windows", "POISON text the embedder refuses")
    rig.source.put("3", "On-call", "Pages are answered within 10 minutes now.")
    rig.embedder.fail_on = "POISON"
    report = rig.engine.run(rig.source)
    assert report.status == "partial"
    assert (report.counts.synced, report.counts.failed) == (1, 1)
    assert "confluence:1" in report.errors[0]
    assert rig.search("portal") == ["confluence:1"], "the old text is still searchable"
    assert rig.search("10 minutes") == ["confluence:3"]
    kinds = [k for k, _ in rig.outbox()]
    assert kinds == ["ops_alert"]


def test_a_crash_between_embedding_and_commit_loses_nothing_and_resumes(rig: Rig) -> None:
    _seed(rig)
    rig.engine.run(rig.source)
    with rig.db.connection() as conn:  # the write transaction dies for page 2
        conn.execute(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.artifact_id = 'confluence:2' THEN RAISE EXCEPTION 'disk full'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON chunks FOR EACH ROW EXECUTE FUNCTION boom()"
        )
    rig.source.put("2", "VPN on macOS", "Use the Tunnelblick profile instead.")
    rig.source.put("3", "On-call", "Escalate to the incident lead after 15 minutes.")
    first = rig.engine.run(rig.source)
    assert first.counts.failed == 1
    assert rig.search("IKEv2") == ["confluence:2"], "previous version kept"
    assert rig.chunks_of("confluence:2") != []
    with rig.db.connection() as conn:
        conn.execute("DROP TRIGGER boom ON chunks")
    second = rig.engine.run(rig.source)
    assert second.status == "ok"
    assert rig.search("Tunnelblick") == ["confluence:2"]
    assert second.counts.synced == 1, "page 3 was committed by the first run and is not redone"


def test_the_incremental_cursor_advances_only_past_committed_work(rig: Rig) -> None:
    _seed(rig)
    rig.engine.run(rig.source)
    rig.engine.run(rig.source)
    assert rig.source.since_seen[0] is None
    assert rig.source.since_seen[1] is not None
    rig.source.fail_listing = True
    report = rig.engine.run(rig.source)
    assert report.status == "failed"
    rig.source.fail_listing = False
    assert rig.source.since_seen[-1] == rig.source.since_seen[-2], "a failed run moves nothing"


def test_full_sync_tombstones_deleted_and_trashed_pages(rig: Rig) -> None:
    _seed(rig)
    rig.engine.run(rig.source)
    del rig.source.docs["confluence:2"]
    report = rig.engine.run(rig.source, full=True)
    assert report.counts.deleted == 1
    assert rig.search("IKEv2") == []
    assert rig.listener.deleted == ["confluence:2"]
    with rig.db.connection() as conn:
        row = conn.execute(
            "SELECT deleted_at FROM artifacts WHERE artifact_id = 'confluence:2'"
        ).fetchone()
    assert row is not None and row["deleted_at"] is not None
    rig.source.put("2", "VPN on macOS", "Use the built-in macOS IKEv2 profile.")
    rig.engine.run(rig.source)
    assert rig.search("IKEv2") == ["confluence:2"], "a restored page comes back"


def test_restricted_pages_are_not_indexed_and_become_unsearchable_when_restricted(rig: Rig) -> None:
    _seed(rig)
    rig.source.put("9", "Salary bands", "Band L5 pays well.", restricted=True)
    report = rig.engine.run(rig.source)
    assert report.counts.skipped == 1
    assert rig.search("salary") == []
    rig.source.put(
        "3", "On-call", "The on-call engineer answers pages within 5 minutes.", restricted=True
    )
    rig.engine.run(rig.source)
    assert rig.search("on-call") == []
    assert rig.listener.deleted == ["confluence:3"]


def test_restricted_pages_are_indexed_when_the_operator_opts_in(rig: Rig) -> None:
    engine = SyncEngine(
        rig.db,
        rig.embedder,
        Chunker(TokenCounter()),
        include_restricted=True,
        clock=lambda: rig.source.clock,
    )
    rig.source.put("9", "Salary bands", "Band L5 pays well.", restricted=True)
    engine.run(rig.source)
    assert rig.search("salary") == ["confluence:9"]


def test_only_one_runner_per_source_even_when_two_start_together(rig: Rig) -> None:
    for i in range(30):
        rig.source.put(str(i), f"Page {i}", f"text {i} " * 50)
    reports = []
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        reports.append(rig.engine.run(rig.source))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status for r in reports)
    assert statuses in (["busy", "ok"], ["ok", "ok"])  # the second may start after the first ends
    assert sum(r.counts.synced for r in reports) == 30


def test_a_failing_source_alerts_once_an_hour_and_announces_recovery(rig: Rig) -> None:
    _seed(rig)
    rig.source.fail_listing = True
    rig.engine.run(rig.source)
    rig.engine.run(rig.source)
    assert [k for k, _ in rig.outbox()] == ["ops_alert"], "the ongoing failure is not repeated"
    with rig.db.connection() as conn:
        conn.execute("UPDATE ops_alert_state SET last_alert_at = now() - interval '61 minutes'")
    rig.engine.run(rig.source)
    assert [k for k, _ in rig.outbox()] == ["ops_alert", "ops_alert"]
    rig.source.fail_listing = False
    rig.engine.run(rig.source)
    outbox = rig.outbox()
    assert [k for k, _ in outbox] == ["ops_alert", "ops_alert", "ops_recovery"]
    assert "fake source is down" in str(outbox[0][1]["error"])


def test_a_run_left_running_by_a_crashed_process_is_marked_interrupted(rig: Rig) -> None:
    with rig.db.connection() as conn:
        conn.execute(
            "INSERT INTO sync_runs (source, scopes, mode) VALUES ('confluence', '{ENG}', 'full')"
        )
    rig.engine.run(rig.source)
    with rig.db.connection() as conn:
        rows = conn.execute("SELECT status, errors FROM sync_runs ORDER BY run_id").fetchall()
    assert rows[0]["status"] == "failed" and "interrupted" in rows[0]["errors"][0]
    assert rows[1]["status"] == "ok"
