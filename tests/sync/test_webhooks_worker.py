"""Stored webhook events -> fetch from the fake Atlassian servers -> the sync engine's gate.

End to end over real HTTP (waitress listener, httpx senders), a real Postgres schema, the real
connectors against FakeConfluence / FakeJira, the HashingEmbedder, and a recording
ChangeListener in place of the answer cache (which the daemon wires in).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.atlassian import FakeConfluence, FakeIssue, FakeJira, FakePage
from fakes.embedder import HashingEmbedder
from fakes.listener import RecordingListener

from core.http import RetryPolicy
from core.identities import Secret
from store.db import Database
from store.schema import bind_embedder
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.confluence import ConfluenceConnector
from sync.engine import SyncEngine
from sync.jira import JiraConnector
from sync.source import SourceConnector
from sync.webhook_worker import WebhookWorker
from sync.webhooks import WebhookServer, build_webhook_app, serve_webhooks, sign

SECRET = "webhook-test-secret-0123456789abcdef"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.5)
ROOT = Path(__file__).resolve().parents[2]


def adf(text: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


@dataclass
class Rig:
    db: Database
    confluence: FakeConfluence
    jira: FakeJira
    connectors: dict[str, SourceConnector]
    embedder: HashingEmbedder
    listener: RecordingListener
    engine: SyncEngine
    client: httpx.Client
    workers: list[WebhookWorker] = field(default_factory=list)

    # --- workers ---------------------------------------------------------------------------

    def worker(self, **options: Any) -> WebhookWorker:
        """A worker (the newest one is woken by the listener); fast retries unless told."""
        settings: dict[str, Any] = {
            "quiet": 0.0,
            "max_wait": 0.0,
            "retry_base": 0.0,
            "poll_interval": 0.1,
        }
        settings.update(options)
        worker = WebhookWorker(self.db, self.engine, self.connectors, **settings)
        self.workers.append(worker)
        return worker

    def wake(self) -> None:
        if self.workers:
            self.workers[-1].wake()

    @contextmanager
    def running(self, worker: WebhookWorker) -> Iterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=worker.run_forever, args=(stop,))
        thread.start()
        try:
            yield
        finally:
            stop.set()
            worker.wake()
            thread.join(10)
            assert not thread.is_alive()

    def wait_until_processed(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.db.connection() as conn:
                row = conn.execute(
                    "SELECT count(*) AS n FROM webhook_events WHERE status = 'pending'"
                ).fetchone()
            if row is not None and row["n"] == 0:
                return
            time.sleep(0.02)
        raise AssertionError(f"events still pending after {timeout} s: {self.events()}")

    # --- deliveries ----------------------------------------------------------------------------

    def post(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        response = self.client.post(
            path, content=body, headers={"X-Hub-Signature": sign(SECRET, body), **(headers or {})}
        )
        assert response.status_code in (200, 202), response.text
        return response

    def page_body(self, page: FakePage) -> dict[str, Any]:
        """A Confluence Cloud (Connect) body as it stands now: partial, and soon stale."""
        return {
            "userAccountId": "557058:editor",
            "accountType": "customer",
            "page": {
                "id": int(page.id),
                "spaceKey": page.space_key,
                "title": page.title,
                "version": page.version,
                "modificationDate": int(page.updated.timestamp() * 1000),
            },
            "timestamp": time.time_ns() // 1000,
        }

    def deliver_page(
        self, event: str, page: FakePage, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.post(f"/webhooks/confluence/{event}", self.page_body(page), headers)

    def deliver_issue(self, event: str, issue: FakeIssue) -> httpx.Response:
        body = {
            "timestamp": time.time_ns() // 1000,
            "webhookEvent": event,
            "issue": {
                "id": issue.id,
                "key": issue.key,
                "fields": {"summary": issue.summary, "updated": self.jira.jira_time(issue.updated)},
            },
        }
        return self.post("/webhooks/jira", body)

    # --- observations --------------------------------------------------------------------------

    def page_fetches(self, page: FakePage) -> int:
        return len(self.confluence.requests_to(f"/api/v2/pages/{page.id}"))

    def search(self, word: str) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT artifact_id FROM chunks"
                " WHERE tsv @@ plainto_tsquery('english', %s)",
                (word,),
            ).fetchall()
        return sorted(r["artifact_id"] for r in rows)

    def artifact(self, artifact_id: str) -> dict[str, Any]:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT version, content_hash, deleted_at FROM artifacts WHERE artifact_id = %s",
                (artifact_id,),
            ).fetchone()
        assert row is not None
        return row

    def events(self) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return conn.execute(
                "SELECT event_id, artifact_id, event, status, outcome, attempts, last_error"
                " FROM webhook_events ORDER BY event_id"
            ).fetchall()

    def outbox(self) -> list[tuple[str, dict[str, Any]]]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT kind, payload FROM outbox WHERE kind <> 'source_change' ORDER BY message_id"
            ).fetchall()
        return [(r["kind"], r["payload"]) for r in rows]


@pytest.fixture
def rig(db: Database) -> Iterator[Rig]:
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    listener = RecordingListener()
    engine = SyncEngine(db, embedder, Chunker(TokenCounter()), listener)
    with FakeConfluence(cloud=True) as confluence, FakeJira(cloud=True) as jira:
        confluence_connector = ConfluenceConnector(
            confluence.site(), ("ENG",), policy=FAST, timeout=30
        )
        jira_connector = JiraConnector(jira.site(), projects=("OPS",), policy=FAST, timeout=30)
        holder: list[Rig] = []
        app = build_webhook_app(Secret(SECRET), db, on_stored=lambda: holder[0].wake())
        server: WebhookServer = serve_webhooks(app, "127.0.0.1", 0, threads=8).start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
                rig = Rig(
                    db,
                    confluence,
                    jira,
                    {"confluence": confluence_connector, "jira": jira_connector},
                    embedder,
                    listener,
                    engine,
                    client,
                )
                holder.append(rig)
                yield rig
        finally:
            server.close()
            confluence_connector.close()
            jira_connector.close()


def _page(rig: Rig, text: str, title: str = "VPN on Windows") -> tuple[FakePage, str]:
    page = rig.confluence.add_page("ENG", title, f"<p>{text}</p>")
    return page, f"confluence:{page.id}"


# --- end to end --------------------------------------------------------------------------------


def test_a_page_update_webhook_refetches_the_page_and_replaces_its_chunks(rig: Rig) -> None:
    page, aid = _page(rig, "Install the Northwind client from the portal.")
    with rig.running(rig.worker()):
        rig.deliver_page("page_created", page)
        rig.wait_until_processed()
        assert rig.search("portal") == [aid]
        assert rig.listener.changed == [], "a page indexed for the first time dirties nothing"
        first_hash = rig.artifact(aid)["content_hash"]
        rig.confluence.edit_page(page.id, body="<p>Install WireGuard; the old client is gone.</p>")
        rig.deliver_page("page_updated", page)
        rig.wait_until_processed()
    assert rig.search("WireGuard") == [aid]
    assert rig.search("portal") == [], "the old chunks were replaced"
    changed = rig.listener.changed[-1]
    assert changed[0] == aid and changed[2] == "2" and changed[1] != first_hash
    assert rig.artifact(aid)["content_hash"] == changed[1]
    assert [(e["status"], e["outcome"]) for e in rig.events()] == [
        ("done", "synced"),
        ("done", "synced"),
    ]
    assert rig.page_fetches(page) == 2


def test_a_no_op_update_is_reported_unchanged_and_embeds_nothing(rig: Rig) -> None:
    page, aid = _page(rig, "Restart the node twice.")
    worker = rig.worker()
    rig.deliver_page("page_created", page)
    assert worker.process_due() == 1
    calls, first_hash = rig.embedder.calls, rig.artifact(aid)["content_hash"]
    rig.confluence.edit_page(page.id, labels=["ops"])  # version 2, same text
    rig.deliver_page("page_updated", page)
    assert worker.process_due() == 1
    assert rig.embedder.calls == calls, "nothing re-embedded"
    assert rig.listener.changed[-1] == (aid, first_hash, "2"), "same hash: nothing to dirty"
    assert rig.artifact(aid)["version"] == "2"
    assert rig.events()[-1]["outcome"] == "unchanged"


def test_a_trashed_page_is_tombstoned_and_a_restored_one_comes_back(rig: Rig) -> None:
    page, aid = _page(rig, "The Tunnelblick profile is deprecated.")
    worker = rig.worker()
    rig.deliver_page("page_created", page)
    worker.process_due()
    rig.confluence.trash_page(page.id)
    rig.deliver_page("page_trashed", page)
    assert worker.process_due() == 1
    assert rig.listener.deleted == [aid]
    assert rig.artifact(aid)["deleted_at"] is not None
    assert rig.search("Tunnelblick") == []
    assert rig.events()[-1]["outcome"] == "deleted"
    rig.confluence.restore_page(page.id)
    rig.deliver_page("page_restored", page)
    assert worker.process_due() == 1
    assert rig.search("Tunnelblick") == [aid]
    assert rig.artifact(aid)["deleted_at"] is None


def test_a_deletion_delivery_is_verified_by_fetching(rig: Rig) -> None:
    page, aid = _page(rig, "Escalate after fifteen minutes.")
    worker = rig.worker()
    rig.deliver_page("page_created", page)
    worker.process_due()
    rig.deliver_page("page_trashed", page)  # stale: the page was restored before we looked
    assert worker.process_due() == 1
    assert rig.listener.deleted == []
    assert rig.artifact(aid)["deleted_at"] is None
    assert rig.events()[-1]["outcome"] == "unchanged"


def test_out_of_order_deliveries_end_in_the_sources_state(rig: Rig) -> None:
    page, aid = _page(rig, "version one")
    worker = rig.worker()
    rig.deliver_page("page_created", page)
    worker.process_due()
    rig.confluence.edit_page(page.id, body="<p>version two mentions Kestrel</p>")
    stale = rig.page_body(page)
    rig.confluence.edit_page(page.id, body="<p>version three mentions Osprey</p>")
    rig.deliver_page("page_updated", page)  # version 3 arrives first
    assert worker.process_due() == 1
    rig.post("/webhooks/confluence/page_updated", stale)  # then the older version 2
    assert worker.process_due() == 1
    assert rig.search("Osprey") == [aid] and rig.search("Kestrel") == []
    assert rig.artifact(aid)["version"] == "3"
    assert [v for _, _, v in rig.listener.changed] == ["3"], "the stale delivery told nothing"
    assert [e["outcome"] for e in rig.events()] == ["synced", "synced", "unchanged"]


def test_pending_deliveries_for_one_page_are_handled_by_one_fetch_in_order(rig: Rig) -> None:
    page, aid = _page(rig, "first")
    for n in range(2, 5):
        rig.confluence.edit_page(page.id, body=f"<p>edit number {n}</p>")
        rig.deliver_page("page_updated", page)
    worker = rig.worker()
    assert worker.process_due() == 1
    assert rig.page_fetches(page) == 1
    assert [e["status"] for e in rig.events()] == ["superseded", "superseded", "done"]
    assert rig.artifact(aid)["version"] == "4"


def test_a_duplicate_delivery_is_stored_and_processed_once(rig: Rig) -> None:
    page, aid = _page(rig, "Rotate the keys monthly.")
    worker = rig.worker()
    retry = {"X-Atlassian-Webhook-Identifier": "8f2c-delivery"}
    first = rig.deliver_page("page_created", page, retry)
    body = rig.page_body(page)
    again = rig.post("/webhooks/confluence/page_created", body, retry)
    assert (first.status_code, again.status_code) == (202, 200)
    assert worker.process_due() == 1
    assert rig.post("/webhooks/confluence/page_created", body, retry).status_code == 200
    assert worker.process_due() == 0
    assert rig.page_fetches(page) == 1
    assert len(rig.events()) == 1 and rig.search("Rotate") == [aid]


def test_an_identical_unidentified_body_after_processing_is_checked_again(rig: Rig) -> None:
    """Automation rules may send the same body for two edits: re-check, at no embedding cost."""
    page, _ = _page(rig, "Badges open the east door.")
    worker = rig.worker()
    body = {"page": {"id": page.id}}  # what a minimal automation rule sends
    assert rig.post("/webhooks/confluence/page_updated", body).status_code == 202
    assert rig.post("/webhooks/confluence/page_updated", body).json()["status"] == "duplicate"
    assert worker.process_due() == 1
    calls = rig.embedder.calls
    assert rig.post("/webhooks/confluence/page_updated", body).status_code == 202
    assert worker.process_due() == 1
    assert rig.page_fetches(page) == 2 and rig.embedder.calls == calls
    assert [(e["status"], e["outcome"]) for e in rig.events()] == [("done", "unchanged")]


def test_a_burst_of_a_thousand_deliveries_for_one_page_costs_a_few_fetches(rig: Rig) -> None:
    page, aid = _page(rig, "Burst target")
    worker = rig.worker(quiet=0.2, max_wait=1.0)  # the defaults
    with rig.running(worker):

        def send(n: int) -> None:
            body = {"page": {"id": int(page.id), "version": 1 + n // 100}, "timestamp": n}
            rig.post(
                "/webhooks/confluence/page_updated",
                body,
                {"X-Atlassian-Webhook-Identifier": f"b{n}"},
            )

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(1000)))
        burst = time.monotonic() - started
        rig.wait_until_processed()
    statuses = [e["status"] for e in rig.events()]
    assert len(statuses) == 1000 and set(statuses) <= {"done", "superseded"}
    # While deliveries keep coming, the debounce fetches at most once per max_wait (1 s), plus
    # once when the burst goes quiet: a few fetches, however long a loaded machine takes.
    fetches = rig.page_fetches(page)
    assert 1 <= fetches <= 2 + burst / 1.0, (fetches, burst)
    assert fetches <= 50, "a burst never costs a fetch per delivery"
    assert statuses.count("done") == rig.page_fetches(page)
    assert rig.search("Burst") == [aid]


# --- failures ---------------------------------------------------------------------------------


def test_a_failing_fetch_is_retried_then_dead_with_one_ops_alert(rig: Rig) -> None:
    worker = rig.worker(max_attempts=3)
    hour = datetime.now(UTC).hour
    pages = [_page(rig, f"Broken page {n}")[0] for n in range(2)]
    for page in pages:
        rig.confluence.fail(f"/api/v2/pages/{page.id}", times=None)
        rig.deliver_page("page_updated", page)
    for attempt in range(1, 4):
        assert worker.process_due() == 2
        assert {e["attempts"] for e in rig.events()} == {attempt}
    events = rig.events()
    assert [e["status"] for e in events] == ["dead", "dead"]
    assert "500" in (events[0]["last_error"] or "")
    assert worker.process_due() == 0, "dead events are not retried"
    alerts = rig.outbox()
    if datetime.now(UTC).hour == hour:  # one alert per source and hour
        assert len(alerts) == 1
    kind, payload = alerts[0]
    assert kind == "ops_alert"
    assert (payload["source"], payload["run_id"], payload["ongoing"]) == ("confluence", None, False)
    assert f"confluence:{pages[0].id}" in payload["error"] and "3 attempts" in payload["error"]


def test_a_transient_failure_is_retried_until_it_succeeds(rig: Rig) -> None:
    page, aid = _page(rig, "Flaky but fine.")
    worker = rig.worker()
    rig.confluence.fail(f"/api/v2/pages/{page.id}", times=FAST.attempts)  # one whole fetch
    rig.deliver_page("page_created", page)
    assert worker.process_due() == 1
    [event] = rig.events()
    assert (event["status"], event["attempts"]) == ("pending", 1)
    assert worker.process_due() == 1
    [event] = rig.events()
    assert (event["status"], event["outcome"], event["last_error"]) == ("done", "synced", None)
    assert rig.search("Flaky") == [aid]


def test_backoff_postpones_a_retry(rig: Rig) -> None:
    page, _ = _page(rig, "Slow down.")
    worker = rig.worker(retry_base=60.0)
    rig.confluence.fail(f"/api/v2/pages/{page.id}", times=FAST.attempts)
    rig.deliver_page("page_created", page)
    assert worker.process_due() == 1
    assert worker.process_due() == 0, "not due for another minute"
    with rig.db.connection() as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM next_attempt_at - clock_timestamp()) AS wait"
            " FROM webhook_events"
        ).fetchone()
    assert row is not None and 40 < row["wait"] <= 66


# --- Jira and configuration ---------------------------------------------------------------------


def test_jira_issue_and_comment_events_refetch_the_issue(rig: Rig) -> None:
    worker = rig.worker()
    issue = rig.jira.add_issue("OPS", "VPN drops hourly", adf("Restart the tunnel daemon."))
    aid = f"jira:{issue.key}"
    rig.deliver_issue("jira:issue_created", issue)
    assert worker.process_due() == 1
    assert rig.search("tunnel") == [aid]
    rig.jira.add_comment(issue.key, "Ana", adf("Fixed by pinning the MTU to 1380."))
    rig.deliver_issue("comment_created", issue)
    assert worker.process_due() == 1
    assert rig.search("MTU") == [aid]
    rig.jira.delete_issue(issue.key)
    rig.deliver_issue("jira:issue_deleted", issue)
    assert worker.process_due() == 1
    assert rig.search("tunnel") == [] and rig.listener.deleted == [aid]


def test_an_event_for_a_source_the_daemon_does_not_sync_is_ignored(rig: Rig) -> None:
    worker = WebhookWorker(
        rig.db, rig.engine, {"confluence": rig.connectors["confluence"]}, quiet=0, max_wait=0
    )
    issue = rig.jira.add_issue("OPS", "Not synced here")
    rig.deliver_issue("jira:issue_updated", issue)
    assert worker.process_due() == 1
    [event] = rig.events()
    assert (event["status"], event["last_error"]) == ("ignored", "jira is not configured")


def test_an_artifact_being_processed_elsewhere_is_left_alone(rig: Rig) -> None:
    page, _ = _page(rig, "One at a time.")
    rig.deliver_page("page_created", page)
    worker = rig.worker()
    with rig.db.connection() as other:  # another worker's session holds the artifact
        other.execute(
            "SELECT pg_advisory_lock(%s, hashtext(%s))", (0x6B62_7768, f"confluence:{page.id}")
        )
        assert worker.process_due() == 0
        other.execute(
            "SELECT pg_advisory_unlock(%s, hashtext(%s))", (0x6B62_7768, f"confluence:{page.id}")
        )
    assert worker.process_due() == 1


# --- durability --------------------------------------------------------------------------------

_DAEMON = """
import os, threading
from fakes.atlassian import FAKE_EMAIL, FAKE_TOKEN
from fakes.embedder import HashingEmbedder
from core.http import RetryPolicy
from core.identities import AtlassianSite, Secret
from store.db import Database
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.confluence import ConfluenceConnector
from sync.engine import SyncEngine
from sync.webhook_worker import WebhookWorker
from sync.webhooks import build_webhook_app, serve_webhooks

env = os.environ
db = Database.open(env["KB_T_PG_URL"], schema=env["KB_T_SCHEMA"], max_size=4)
site = AtlassianSite(env["KB_T_CONFLUENCE"], FAKE_EMAIL, Secret(FAKE_TOKEN))
connector = ConfluenceConnector(site, ("ENG",), policy=RetryPolicy(attempts=1), timeout=120)
engine = SyncEngine(db, HashingEmbedder(), Chunker(TokenCounter()))
worker = WebhookWorker(db, engine, {"confluence": connector}, quiet=0, max_wait=0)
app = build_webhook_app(Secret(env["KB_T_SECRET"]), db, on_stored=worker.wake)
server = serve_webhooks(app, "127.0.0.1", 0).start()
threading.Thread(target=worker.run_forever, args=(threading.Event(),), daemon=True).start()
print(server.port, flush=True)
threading.Event().wait()
"""


def test_a_daemon_killed_after_accepting_loses_nothing(rig: Rig, tmp_path: Path) -> None:
    """A separate daemon process accepts a delivery and is SIGKILLed in the middle of the
    fetch; the event stays pending and a new worker processes it."""
    page, aid = _page(rig, "The Tunnelblick profile moved.")
    rig.confluence.slow(f"/api/v2/pages/{page.id}", seconds=15)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "KB_T_PG_URL": rig.db.url,
        "KB_T_SCHEMA": rig.db.schema,
        "KB_T_CONFLUENCE": rig.confluence.base_url,
        "KB_T_SECRET": SECRET,
    }
    with (tmp_path / "daemon.log").open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-c", _DAEMON],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert daemon.stdout is not None
        port = daemon.stdout.readline().strip()
        assert port.isdigit(), (tmp_path / "daemon.log").read_text()
        body = json.dumps(rig.page_body(page)).encode()
        response = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/confluence/page_created",
            content=body,
            headers={"X-Hub-Signature": sign(SECRET, body)},
            timeout=30,
        )
        assert response.status_code == 202
        _wait_for(lambda: rig.page_fetches(page) == 1, "the daemon to start fetching")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
    finally:
        daemon.kill()
        daemon.wait(30)
        if daemon.stdout is not None:
            daemon.stdout.close()
    [event] = rig.events()
    assert (event["status"], event["attempts"]) == ("pending", 0)
    worker = rig.worker()
    # The killed session's advisory lock goes when Postgres notices the dead connection.
    _wait_for(lambda: worker.process_due() == 1, "the restarted worker to process the event")
    assert rig.events()[0]["status"] == "done"
    assert rig.search("Tunnelblick") == [aid]


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
