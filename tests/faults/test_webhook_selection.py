"""Fault class 1: a webhook indexes exactly what a scheduled sync would, nothing more.

Signed deliveries go through the real listener (waitress, HTTP) into Postgres; the real worker
fetches from FakeConfluence / FakeJira with the real connectors and runs the sync engine. What
lies outside the selection (spaces, projects, JQL, restrictions, security levels) is recorded
as ignored and, if it had been indexed, removed. Ids are ASCII: "²" and "١٠٠٤" are not digits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
from sync.webhooks import build_webhook_app, serve_webhooks, sign

SECRET = "fault-suite-webhook-secret-0123456789"
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.1)


@dataclass
class Rig:
    db: Database
    confluence: FakeConfluence
    jira: FakeJira
    listener: RecordingListener
    worker: WebhookWorker
    client: httpx.Client

    def post(self, path: str, payload: Any) -> None:
        body = json.dumps(payload).encode()
        response = self.client.post(
            path, content=body, headers={"X-Hub-Signature": sign(SECRET, body)}
        )
        assert response.status_code in (200, 202), response.text

    def deliver_page(self, page: FakePage, event: str = "page_updated") -> None:
        self.post(
            f"/webhooks/confluence/{event}",
            {"page": {"id": page.id, "spaceKey": page.space_key, "title": page.title}},
        )
        self.worker.process_due()

    def deliver_issue(self, issue: FakeIssue) -> None:
        self.post(
            "/webhooks/jira",
            {
                "timestamp": time.time_ns() // 1000,
                "webhookEvent": "jira:issue_updated",
                "issue": {"id": issue.id, "key": issue.key, "fields": {"summary": issue.summary}},
            },
        )
        self.worker.process_due()

    def indexed(self) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT a.artifact_id FROM artifacts a JOIN chunks c USING (artifact_id)"
                " WHERE a.deleted_at IS NULL ORDER BY 1"
            ).fetchall()
        return [r["artifact_id"] for r in rows]

    def last_event(self) -> tuple[str, str | None]:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT status, last_error FROM webhook_events ORDER BY event_id DESC LIMIT 1"
            ).fetchone()
        assert row is not None
        return row["status"], row["last_error"]


def _rig(
    db: Database, confluence: FakeConfluence, jira: FakeJira, **jira_selection: Any
) -> Iterator[Rig]:
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    listener = RecordingListener()
    engine = SyncEngine(db, embedder, Chunker(TokenCounter()), listener)
    connectors: dict[str, SourceConnector] = {
        "confluence": ConfluenceConnector(confluence.site(), ("ENG",), policy=FAST),
        "jira": JiraConnector(jira.site(), policy=FAST, **jira_selection),
    }
    worker = WebhookWorker(db, engine, connectors, quiet=0, max_wait=0, retry_base=0)
    server = serve_webhooks(build_webhook_app(Secret(SECRET), db), "127.0.0.1", 0).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield Rig(db, confluence, jira, listener, worker, client)
    finally:
        server.close()
        for connector in connectors.values():
            connector.close()  # type: ignore[attr-defined]


@pytest.fixture
def jql_rig(db: Database) -> Iterator[Rig]:
    with FakeConfluence(cloud=True) as confluence, FakeJira(cloud=True) as jira:
        yield from _rig(db, confluence, jira, jql="project = OPS AND labels = kb")


@pytest.fixture
def projects_rig(db: Database) -> Iterator[Rig]:
    with FakeConfluence(cloud=True) as confluence, FakeJira(cloud=True) as jira:
        yield from _rig(db, confluence, jira, projects=("OPS",))


def test_an_issue_the_jql_does_not_select_is_ignored_not_indexed(jql_rig: Rig) -> None:
    outside = jql_rig.jira.add_issue("HR", "Salary bands for 2026", labels=["kb"])
    jql_rig.deliver_issue(outside)
    assert jql_rig.indexed() == []
    status, reason = jql_rig.last_event()
    assert status == "ignored" and "JIRA_JQL" in (reason or "")

    inside = jql_rig.jira.add_issue("OPS", "Rotate the VPN certificate", labels=["kb"])
    jql_rig.deliver_issue(inside)
    assert jql_rig.indexed() == [f"jira:{inside.key}"]


def test_an_indexed_issue_that_leaves_the_jql_is_removed(jql_rig: Rig) -> None:
    issue = jql_rig.jira.add_issue("OPS", "Restart the ingest node", labels=["kb"])
    jql_rig.deliver_issue(issue)
    assert jql_rig.indexed() == [f"jira:{issue.key}"]
    jql_rig.jira.edit_issue(issue.key, labels=[])
    jql_rig.deliver_issue(issue)
    assert jql_rig.indexed() == []
    assert jql_rig.listener.deleted == [f"jira:{issue.key}"]
    status, reason = jql_rig.last_event()
    assert status == "ignored" and "removed from the index" in (reason or "")


def test_an_issue_in_a_project_not_synced_is_ignored(projects_rig: Rig) -> None:
    issue = projects_rig.jira.add_issue("HR", "Parental leave policy")
    projects_rig.deliver_issue(issue)
    assert projects_rig.indexed() == []
    assert projects_rig.last_event()[0] == "ignored"


def test_an_issue_given_a_security_level_is_removed_and_ignored(projects_rig: Rig) -> None:
    issue = projects_rig.jira.add_issue("OPS", "Incident review")
    projects_rig.deliver_issue(issue)
    assert projects_rig.indexed() == [f"jira:{issue.key}"]
    projects_rig.jira.secure_issue(issue.key)
    projects_rig.deliver_issue(issue)
    assert projects_rig.indexed() == []
    assert projects_rig.last_event()[0] == "ignored"


def test_a_page_moved_out_of_the_synced_spaces_is_removed_and_ignored(projects_rig: Rig) -> None:
    page = projects_rig.confluence.add_page("ENG", "VPN setup", "<p>Use the portal.</p>")
    projects_rig.deliver_page(page, "page_created")
    assert projects_rig.indexed() == [f"confluence:{page.id}"]
    projects_rig.confluence.edit_page(page.id, space_key="HR")
    projects_rig.deliver_page(page, "page_moved")
    assert projects_rig.indexed() == []
    assert projects_rig.listener.deleted == [f"confluence:{page.id}"]
    status, reason = projects_rig.last_event()
    assert status == "ignored" and "space HR" in (reason or "")


def test_a_restricted_page_is_ignored(projects_rig: Rig) -> None:
    page = projects_rig.confluence.add_page("ENG", "Payroll", "<p>Bands.</p>", restricted=True)
    projects_rig.deliver_page(page, "page_created")
    assert projects_rig.indexed() == []
    assert projects_rig.last_event()[0] == "ignored"


@pytest.mark.parametrize(
    "page_id", ["\u00b2", "\u0661\u0660\u0660\u0664", "\uff11\uff12", "7\u00b2"]
)
def test_a_page_id_that_is_not_ascii_digits_is_ignored_unfetched(
    projects_rig: Rig, page_id: str
) -> None:
    projects_rig.post("/webhooks/confluence/page_updated", {"page": {"id": page_id}})
    projects_rig.worker.process_due()
    assert projects_rig.last_event()[0] == "ignored"
    assert not projects_rig.confluence.requests_to("/pages/")


# Escapes, so no look-alike letter hides in the source: a zero-width space, Arabic-Indic and
# superscript digits, and a Cyrillic capital O.
@pytest.mark.parametrize("key", ["OPS-1\u200b", "OPS-\u0661", "OPS-\u00b2", "\u041ePS-1"])
def test_an_issue_key_that_is_not_ascii_is_ignored_unfetched(projects_rig: Rig, key: str) -> None:
    projects_rig.jira.add_issue("OPS", "A real issue")
    projects_rig.post(
        "/webhooks/jira",
        {"webhookEvent": "jira:issue_updated", "issue": {"id": "10000", "key": key}},
    )
    projects_rig.worker.process_due()
    assert projects_rig.last_event()[0] == "ignored"
    assert not projects_rig.jira.requests_to("/issue/")
