"""Issue 13, fault suite: Confluence answering 429, 5xx, an HTML page with 200, or nothing.

One real ``kb daemon`` (``CONFLUENCE_TIMEOUT=2``, ``CONFLUENCE_ATTEMPTS=2``) serves the whole
module. For each fault, a page is edited and then

* a ``/kb-sync`` request (queued as the bot queues it) runs while the search endpoint
  misbehaves: the run fails cleanly, the person who asked is told why in words naming the
  fault, the endpoint was tried a bounded number of times, and the previous version of the
  page stays searchable; once the fault clears, the next request indexes the edit;
* Confluence's webhook for the page arrives while fetching the page misbehaves: the delivery
  is kept pending with the fault as its error (retried later, not lost, not dead), the
  previous version stays searchable; a later delivery, once the fault clears, indexes it.
  The same for Jira's webhook for an issue.

The daemon stays up throughout and logs no traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fakes.atlassian import FakeConfluence, FakeIssue, FakeJira, FakePage
from fakes.real_processes import KbProcess, World, world
from fakes.slack_api import Call

from core.errors import SettingsError
from sync._atlassian import http_options

ATTEMPTS = 2
Inject = Callable[[FakeConfluence | FakeJira, str], object]

FAULTS: dict[str, tuple[Inject, str, int]] = {
    # name: (how Confluence misbehaves, what the error says, requests one call may make)
    "429 with Retry-After": (
        lambda wiki, path: wiki.rate_limit(path, retry_after=1, times=None),
        "kept answering HTTP 429 after 2 attempts",
        ATTEMPTS,
    ),
    "503": (
        lambda wiki, path: wiki.fail(path, status=503, times=None),
        "kept answering HTTP 503 after 2 attempts",
        ATTEMPTS,
    ),
    "an HTML page with 200": (
        lambda wiki, path: wiki.inject(
            path,
            status=200,
            times=None,
            headers={"Content-Type": "text/html"},
            body=b"<html><body><h1>Down for maintenance</h1></body></html>",
        ),
        "not JSON (HTTP 200, text/html)",
        1,
    ),
    "no answer at all": (
        lambda wiki, path: wiki.slow(path, seconds=30, times=None),
        "could not be reached after 2 attempts",
        ATTEMPTS,
    ),
}


class Rig:
    def __init__(self, here: World, daemon: KbProcess, page: FakePage, issue: FakeIssue) -> None:
        self.here, self.daemon, self.page, self.issue = here, daemon, page, issue
        self.edits = 0
        self.requests = 0

    def edit(self, words: str) -> str:
        self.edits += 1
        text = f"Windows laptops use the {words} profile, revision {self.edits}."
        self.here.wiki.edit_page(self.page.id, body=f"<p>{text}</p>")
        return text

    def indexed(self) -> str:
        return self.here.chunk_text(self.page.id)

    def sync(self) -> dict[str, object]:
        """Queue a sync request, wait for its outcome and for the asker to be told."""
        request = self.here.request_sync()
        self.requests += 1
        self.here.wait(f"request {request}", lambda: self.here.sync_result(request) is not None)
        result = self.here.sync_result(request)
        assert result is not None
        (report,) = result["reports"]
        assert isinstance(report, dict)
        self.told(self.requests)
        return report

    def told(self, count: int) -> list[Call]:
        def ephemerals() -> list[Call]:
            return [
                c
                for c in self.here.slack.calls_to("chat.postEphemeral")
                if c.args.get("user") == "UADMIN"
            ]

        self.here.wait("the sync result for the admin", lambda: len(ephemerals()) >= count)
        return ephemerals()

    def healthy(self) -> None:
        assert self.daemon.alive(), self.here.logs()
        assert self.here.healthy(self.daemon)
        assert "Traceback" not in self.daemon.output(), self.here.logs()


@pytest.fixture(scope="module")
def rig(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with world(pg_url, tmp_path_factory.mktemp("atlassian-faults"), jira=True) as here:
        assert here.jira is not None
        page = here.wiki.add_page("ENG", "VPN access for Windows", "<p>Use NWP-AOVPN.</p>")
        here.wiki.add_page("ENG", "Deploy trains", "<p>Trains leave on Tuesdays.</p>")
        issue = here.jira.add_issue("OPS", "VPN outage", "The VPN gateway is down.")
        daemon = here.process("daemon", "daemon")
        here.start_daemon(daemon, synced=3)
        yield Rig(here, daemon, page, issue)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_scheduled_sync_against_a_failing_confluence_fails_cleanly_and_keeps_the_old_text(
    rig: Rig, fault: str
) -> None:
    inject, says, tries = FAULTS[fault]
    wiki = rig.here.wiki
    before = rig.indexed()
    edited = rig.edit(f"broken-{fault}")
    inject(wiki, "/rest/api/content/search")
    calls_before = len(wiki.requests_to("/rest/api/content/search"))

    report = rig.sync()

    assert report["status"] == "failed"
    assert any(says in str(e) for e in report["errors"]), report  # type: ignore[attr-defined]
    assert len(wiki.requests_to("/rest/api/content/search")) - calls_before == tries
    assert rig.indexed() == before, "the previous version stays searchable"
    told = rig.told(rig.requests)[-1]
    assert "finished with problems" in told.args["text"] and says in told.args["text"]
    rig.healthy()

    wiki.clear_faults()
    assert rig.sync()["status"] == "ok"
    assert edited in rig.indexed()
    rig.healthy()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_webhook_fetch_against_a_failing_confluence_is_kept_for_a_retry_not_lost(
    rig: Rig, fault: str
) -> None:
    inject, says, tries = FAULTS[fault]
    here, wiki = rig.here, rig.here.wiki
    before = rig.indexed()
    edited = rig.edit(f"hooked-{fault}")
    path = f"/api/v2/pages/{rig.page.id}"
    inject(wiki, path)
    calls_before = len(wiki.requests_to(path))
    delivery = f"first-{fault}"
    assert here.webhook(rig.daemon, rig.page.id, delivery) == 202

    def attempted() -> list[tuple[object, ...]]:
        return here.sql(
            "SELECT status, attempts, last_error FROM webhook_events "
            "WHERE delivery_id = %s AND attempts > 0",
            f"id:{delivery}",
        )

    here.wait("the failed fetch to be recorded", lambda: bool(attempted()))
    ((status, attempts, error),) = attempted()
    assert (status, attempts) == ("pending", 1), "kept for a retry"
    assert says in str(error)
    assert len(wiki.requests_to(path)) - calls_before == tries
    assert rig.indexed() == before, "the previous version stays searchable"
    rig.healthy()

    wiki.clear_faults()
    assert here.webhook(rig.daemon, rig.page.id, f"second-{fault}") == 202
    here.wait("the page to be re-indexed", lambda: edited in rig.indexed())
    here.wait(
        "no delivery left pending",
        lambda: here.sql("SELECT count(*) FROM webhook_events WHERE status = 'pending'")[0][0] == 0,
    )
    assert here.sql("SELECT count(*) FROM webhook_events WHERE status = 'dead'")[0][0] == 0
    rig.healthy()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_jira_webhook_fetch_against_a_failing_jira_is_kept_for_a_retry_not_lost(
    rig: Rig, fault: str
) -> None:
    inject, says, tries = FAULTS[fault]
    here, jira, key = rig.here, rig.here.jira, rig.issue.key
    assert jira is not None
    artifact = f"jira:{key}"

    def indexed() -> str:
        rows = here.sql("SELECT text FROM chunks WHERE artifact_id = %s ORDER BY ord", artifact)
        return "\n".join(str(r[0]) for r in rows)

    before = indexed()
    edited = f"The VPN gateway is back ({fault})."
    jira.edit_issue(key, description=edited)
    path = f"/rest/api/3/issue/{key}"
    inject(jira, path)
    calls_before = len(jira.requests_to(path))
    delivery = f"jira-first-{fault}"
    assert here.jira_webhook(rig.daemon, rig.issue.id, key, delivery) == 202

    def attempted() -> list[tuple[object, ...]]:
        return here.sql(
            "SELECT status, attempts, last_error FROM webhook_events "
            "WHERE delivery_id = %s AND attempts > 0",
            f"id:{delivery}",
        )

    here.wait("the failed fetch to be recorded", lambda: bool(attempted()))
    ((status, attempts, error),) = attempted()
    assert (status, attempts) == ("pending", 1) and says in str(error)
    assert len(jira.requests_to(path)) - calls_before == tries
    assert indexed() == before, "the previous version stays searchable"
    rig.healthy()

    jira.clear_faults()
    assert here.jira_webhook(rig.daemon, rig.issue.id, key, f"jira-second-{fault}") == 202
    here.wait("the issue to be re-indexed", lambda: edited in indexed())
    here.wait(
        "no delivery left pending",
        lambda: here.sql("SELECT count(*) FROM webhook_events WHERE status = 'pending'")[0][0] == 0,
    )
    rig.healthy()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CONFLUENCE_TIMEOUT", "0"),
        ("CONFLUENCE_TIMEOUT", "soon"),
        ("CONFLUENCE_ATTEMPTS", "0"),
        ("CONFLUENCE_ATTEMPTS", "²"),
        ("CONFLUENCE_ATTEMPTS", "99"),
    ],
)
def test_a_malformed_timeout_or_attempts_setting_is_named(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        http_options({key: value}, "CONFLUENCE")
    assert raised.value.key == key


def test_timeout_and_attempts_settings_reach_the_connector_options() -> None:
    options = http_options({"JIRA_TIMEOUT": "2.5", "JIRA_ATTEMPTS": "3"}, "JIRA")
    assert options["timeout"] == 2.5 and options["policy"].attempts == 3
    assert http_options({}, "JIRA") == {}
