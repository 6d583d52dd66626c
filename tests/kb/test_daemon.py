from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes.connector import MemoryConnector
from fakes.embedder import HashingEmbedder

from kb.daemon import Daemon
from store import sync_state
from store.cache import DiskAnswerCache, StoreHashes
from store.db import Database
from store.schema import bind_embedder
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.engine import SyncEngine


@pytest.fixture
def daemon(db: Database, tmp_path: Path) -> Iterator[Daemon]:
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    wiki = MemoryConnector("confluence", scopes=("ENG", "OPS"))
    wiki.put("1", "Runbook", "Restart dispatch with kubectl rollout restart.")
    wiki.put("2", "Ops page", "The ops page.", scope="OPS")
    jira = MemoryConnector("jira", scopes=("OPS",))
    jira.put("OPS-1", "OPS-1: outage", "The outage.", scope="OPS")
    cache = DiskAnswerCache(tmp_path / "cache", StoreHashes(db))
    engine = SyncEngine(db, embedder, Chunker(TokenCounter()), clock=lambda: wiki.clock)
    yield Daemon(
        db=db,
        engine=engine,
        connectors={"confluence": wiki, "jira": jira},
        sync_every_minutes=15,
        cache=cache,
        busy_retry_seconds=0.2,
    )
    cache.close()


def _request(db: Database, source: str, scopes: list[str]) -> None:
    with db.connection() as conn:
        conn.execute(
            "INSERT INTO sync_requests (source, scopes, requested_by) VALUES (%s, %s, %s)",
            (
                source,
                scopes,
                json.dumps(
                    {"platform": "slack", "user": "U1", "channel": "C1", "response_url": None}
                ),
            ),
        )


def _results(db: Database) -> list[dict[str, object]]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT payload FROM outbox WHERE kind = 'sync_result' ORDER BY message_id"
        ).fetchall()
    return [r["payload"] for r in rows]


def test_a_queued_sync_request_runs_and_its_result_goes_to_the_asker(daemon: Daemon) -> None:
    _request(daemon.db, "confluence", ["ENG"])
    assert daemon.run_next_request()
    assert not daemon.run_next_request(), "each request runs once"
    (result,) = _results(daemon.db)
    assert result["requested_by"] == {
        "platform": "slack",
        "user": "U1",
        "channel": "C1",
        "response_url": None,
    }
    (report,) = result["reports"]  # type: ignore[misc]
    assert report["source"] == "confluence" and report["status"] == "ok"
    assert report["synced"] == 1, "only the ENG scope was asked for"
    with daemon.db.connection() as conn:
        row = conn.execute("SELECT finished_at, result FROM sync_requests").fetchone()
    assert row is not None and row["finished_at"] is not None


def test_a_request_for_all_sources_runs_each_of_them(daemon: Daemon) -> None:
    _request(daemon.db, "all", [])
    daemon.run_next_request()
    (result,) = _results(daemon.db)
    reports = {r["source"]: r["synced"] for r in result["reports"]}  # type: ignore[attr-defined]
    assert reports == {"confluence": 2, "jira": 1}


def test_a_request_waits_for_a_running_sync_of_the_same_source(daemon: Daemon) -> None:
    _request(daemon.db, "jira", [])
    with daemon.db.connection() as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext('jira'))", (0x6B62_7379,))
        release = threading.Timer(
            0.6,
            lambda: holder.execute(
                "SELECT pg_advisory_unlock(%s, hashtext('jira'))", (0x6B62_7379,)
            ),
        )
        release.start()
        started = time.monotonic()
        daemon.run_next_request()
        release.join()
    assert time.monotonic() - started >= 0.5
    (result,) = _results(daemon.db)
    assert result["reports"][0]["status"] == "ok"  # type: ignore[index]


def test_requests_abandoned_by_a_dead_daemon_are_claimable_again(daemon: Daemon) -> None:
    _request(daemon.db, "jira", [])
    with daemon.db.connection() as conn:
        conn.execute("UPDATE sync_requests SET claimed_at = now() - interval '3 hours'")
        assert sync_state.release_abandoned_requests(conn) == 1
    assert daemon.run_next_request()


def test_the_daemon_syncs_at_start_and_stops_cleanly_when_told(daemon: Daemon) -> None:
    runner = threading.Thread(target=daemon.run)
    runner.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with daemon.db.connection() as conn:
            done = conn.execute(
                "SELECT count(*) AS n FROM sync_runs WHERE trigger = 'schedule' AND status = 'ok'"
            ).fetchone()
        if done and done["n"] == 2:
            break
        time.sleep(0.1)
    daemon.stop.set()
    runner.join(timeout=30)
    assert not runner.is_alive()
    assert done is not None and done["n"] == 2, "one scheduled run per source at start"


def _scheduled_runs(db: Database) -> int:
    with db.connection() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM sync_runs WHERE trigger = 'schedule' AND status = 'ok'"
        ).fetchone()
    return int(row["n"]) if row else 0


def _wait(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_second_daemon_stands_by_runs_no_job_and_takes_over_when_the_first_stops(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    second = dataclasses.replace(daemon, stop=threading.Event(), standby_poll_seconds=0.2)
    first_runner = threading.Thread(target=daemon.run)
    first_runner.start()
    assert _wait(lambda: _scheduled_runs(daemon.db) == 2)
    caplog.set_level(logging.INFO, logger="kb.daemon")
    second_runner = threading.Thread(target=second.run)
    second_runner.start()
    try:
        assert _wait(lambda: "stands by" in caplog.text)
        time.sleep(1.0)
        assert _scheduled_runs(daemon.db) == 2, "the standby ran no scheduled sync"
        daemon.stop.set()
        first_runner.join(timeout=30)
        assert _wait(lambda: "takes over" in caplog.text)
        assert _wait(lambda: _scheduled_runs(daemon.db) == 4), "the new daemon syncs at start"
    finally:
        daemon.stop.set()
        second.stop.set()
        first_runner.join(timeout=30)
        second_runner.join(timeout=30)
    assert not second_runner.is_alive()
