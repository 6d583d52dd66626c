"""JiraConnector against fake Jira Cloud and Data Center servers on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes.atlassian import FakeJira

from core.errors import AuthError, BadResponse, RemoteError
from core.http import RetryPolicy
from sync.jira import JiraConnector
from sync.source import FetchFailure, OutsideSelection, SourceDocument

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=2.0)
T0 = datetime(2026, 10, 14, 15, 0, tzinfo=UTC)


def adf(*paragraphs: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": text}]}
            for text in paragraphs
        ],
    }


@pytest.fixture
def cloud() -> Iterator[FakeJira]:
    with FakeJira(cloud=True) as fake:
        yield fake


@pytest.fixture
def dc() -> Iterator[FakeJira]:
    with FakeJira(cloud=False) as fake:
        yield fake


def connect(fake: FakeJira, projects: tuple[str, ...] = ("OPS",), **kwargs: Any) -> JiraConnector:
    options: dict[str, Any] = {"policy": FAST, "timeout": 5.0}
    options.update(kwargs)
    if "jql" in options:
        return JiraConnector(fake.site(), **options)
    return JiraConnector(fake.site(), projects=projects, **options)


def documents(items: list[SourceDocument | FetchFailure]) -> list[SourceDocument]:
    assert all(isinstance(i, SourceDocument) for i in items), items
    return [i for i in items if isinstance(i, SourceDocument)]


# --- Cloud ------------------------------------------------------------------------------------


def test_cloud_search_pages_with_next_page_token_until_is_last(cloud: FakeJira) -> None:
    issues = [cloud.add_issue("OPS", f"Incident {n}", adf(f"Details {n}")) for n in range(7)]
    cloud.add_issue("HR", "Not synced")
    with connect(cloud, page_size=3) as connector:
        docs = documents(list(connector.changed("OPS", None)))

    assert [d.artifact_id for d in docs] == [f"jira:{i.key}" for i in issues]
    searches = cloud.requests_to("/rest/api/3/search/jql", "POST")
    assert len(searches) == 3
    bodies = [r.json() for r in searches]
    assert "nextPageToken" not in bodies[0]
    assert bodies[1]["nextPageToken"] and bodies[2]["nextPageToken"] != bodies[1]["nextPageToken"]
    assert bodies[0]["jql"] == 'project in ("OPS") ORDER BY key ASC'
    assert bodies[0]["fields"] == [
        "summary",
        "description",
        "comment",
        "status",
        "issuetype",
        "project",
        "labels",
        "updated",
        "security",
    ]
    assert all("startAt" not in b for b in bodies)
    assert all(r.headers["authorization"].startswith("Basic ") for r in searches)


def test_cloud_issue_document_from_adf_with_comments_and_authors(cloud: FakeJira) -> None:
    issue = cloud.add_issue(
        "OPS",
        "Payments API returns 502",
        adf("The gateway times out after 30 s.", "Started after the 2.3 deploy."),
        status="In Progress",
        issue_type="Bug",
        labels=["payments", "sev2"],
        updated=T0,
        comments=[
            ("Dana Ruiz", adf("Rolled back to 2.2."), T0),
            ("Lee Chen", adf("Confirmed fixed."), T0 + timedelta(days=1)),
        ],
    )
    with connect(cloud) as connector:
        (doc,) = documents(list(connector.changed("OPS", None)))

    assert doc.artifact_id == f"jira:{issue.key}"
    assert doc.source == "jira"
    assert doc.scope_key == "OPS"
    assert doc.title == f"{issue.key}: Payments API returns 502"
    assert doc.url == f"{cloud.url}/browse/{issue.key}"
    assert doc.version == "2026-10-14T09:00:00.000-0600"  # fields.updated verbatim
    assert doc.updated_at == T0
    assert doc.labels == ("payments", "sev2")
    assert doc.restricted is False
    assert doc.text == (
        f"{issue.key}: Payments API returns 502\n"
        "Type: Bug\nStatus: In Progress\nLabels: payments, sev2\n\n"
        "The gateway times out after 30 s.\n\nStarted after the 2.3 deploy.\n\n"
        "Comment by Dana Ruiz (2026-10-14): Rolled back to 2.2.\n\n"
        "Comment by Lee Chen (2026-10-15): Confirmed fixed."
    )


def test_comments_beyond_the_inline_ones_are_paged_in() -> None:
    with FakeJira(cloud=True, inline_comments=2) as cloud:
        issue = cloud.add_issue(
            "OPS", "Chatty", comments=[(f"Person {n}", adf(f"note {n}")) for n in range(5)]
        )
        quiet = cloud.add_issue("OPS", "Quiet", comments=[("Solo", adf("only one"))])
        with connect(cloud) as connector:
            docs = documents(list(connector.changed("OPS", None)))
        assert all(f"Comment by Person {n}" in docs[0].text for n in range(5))
        assert "note 4" in docs[0].text
        assert "Comment by Solo" in docs[1].text
        assert len(cloud.requests_to(f"/rest/api/3/issue/{issue.key}/comment")) == 1
        assert not cloud.requests_to(f"/rest/api/3/issue/{quiet.key}/comment")


def test_cloud_incremental_jql_has_the_epoch_ms_bound_and_oldest_first(cloud: FakeJira) -> None:
    cloud.add_issue("OPS", "Old", updated=T0 - timedelta(hours=3))
    late = cloud.add_issue("OPS", "Late", updated=T0 + timedelta(minutes=5))
    early = cloud.add_issue("OPS", "Early", updated=T0 - timedelta(minutes=8))
    since = T0
    with connect(cloud, overlap=timedelta(minutes=10)) as connector:
        docs = documents(list(connector.changed("OPS", since)))

    assert [d.artifact_id for d in docs] == [f"jira:{early.key}", f"jira:{late.key}"]
    bound = int((since - timedelta(minutes=10)).timestamp() * 1000)
    jql = cloud.requests_to("/search/jql")[0].json()["jql"]
    assert jql == f'project in ("OPS") AND updated >= {bound} ORDER BY updated ASC'


def test_jira_jql_is_wrapped_and_the_whole_source_is_one_scope(cloud: FakeJira) -> None:
    runbook = cloud.add_issue("OPS", "Runbook", labels=["runbook"], updated=T0)
    cloud.add_issue("OPS", "Other", updated=T0)
    with connect(
        cloud, jql="project = OPS AND labels = runbook ORDER BY created DESC"
    ) as connector:
        assert connector.scopes() == ("*",)
        docs = documents(list(connector.changed("*", T0)))
        listing = connector.list_ids("*")
    assert [d.artifact_id for d in docs] == [f"jira:{runbook.key}"]
    assert listing.scope_key == "*" and listing.artifact_ids == {f"jira:{runbook.key}"}
    jqls = [r.json()["jql"] for r in cloud.requests_to("/search/jql")]
    assert jqls[0].startswith("(project = OPS AND labels = runbook) AND updated >= ")
    assert jqls[0].endswith(" ORDER BY updated ASC")
    assert "created DESC" not in jqls[0]


def test_secured_issue_is_flagged(cloud: FakeJira) -> None:
    open_issue = cloud.add_issue("OPS", "Open")
    secret = cloud.add_issue("OPS", "Layoffs")
    cloud.secure_issue(secret.key)
    with connect(cloud) as connector:
        docs = {d.artifact_id: d for d in documents(list(connector.changed("OPS", None)))}
        fetched = connector.fetch(f"jira:{secret.key}")
    assert docs[f"jira:{secret.key}"].restricted is True
    assert docs[f"jira:{open_issue.key}"].restricted is False
    assert fetched is not None and fetched.restricted is True


def test_cloud_fetch_list_ids_deleted_moved_and_foreign_issues(cloud: FakeJira) -> None:
    kept = cloud.add_issue("OPS", "Kept", adf("still here"))
    deleted = cloud.add_issue("OPS", "Deleted")
    moved = cloud.add_issue("OPS", "Moved")
    cloud.delete_issue(deleted.key)
    old_key = moved.key
    cloud.move_issue(moved.key, "HR")
    with connect(cloud) as connector:
        listing = connector.list_ids("OPS")
        doc = connector.fetch(f"jira:{kept.key}")
        assert connector.fetch(f"jira:{deleted.key}") is None
        assert connector.fetch(f"jira:{old_key}") is None  # Jira answers with HR-1 now
        with pytest.raises(OutsideSelection, match="project HR"):
            connector.fetch(f"jira:{moved.key}")  # HR is not synced
        with pytest.raises(ValueError):
            connector.fetch("confluence:123")
    assert listing.artifact_ids == {f"jira:{kept.key}"}
    assert cloud.requests_to("/search/jql")[0].json()["fields"] == ["key"]
    assert doc is not None and "still here" in doc.text and doc.version
    issue_reads = cloud.requests_to(f"/rest/api/3/issue/{kept.key}")
    assert issue_reads[0].query["fields"][0].split(",")[0] == "summary"


def test_unbounded_jql_is_reported_with_jiras_reason(cloud: FakeJira) -> None:
    with (
        connect(cloud, jql="labels = runbook") as connector,
        pytest.raises(BadResponse) as caught,
    ):
        list(connector.changed("*", None))
    assert "HTTP 400" in str(caught.value)
    assert "Unbounded JQL" in str(caught.value)
    assert "/rest/api/3/search/jql" in str(caught.value)


# --- Data Center ----------------------------------------------------------------------------


def test_dc_search_pages_by_what_came_back_when_max_results_is_capped() -> None:
    with FakeJira(cloud=False, max_results_cap=2) as dc:
        issues = [dc.add_issue("OPS", f"Issue {n}") for n in range(5)]
        with connect(dc, page_size=5) as connector:
            docs = documents(list(connector.changed("OPS", None)))
        assert [d.artifact_id for d in docs] == [f"jira:{i.key}" for i in issues]
        searches = dc.requests_to("/rest/api/2/search")
        assert [r.query["startAt"] for r in searches] == [["0"], ["2"], ["4"]]
        assert all(r.query["maxResults"] == ["5"] for r in searches)
        assert all(r.headers["authorization"] == "Bearer fake-atlassian-token" for r in searches)


def test_dc_wiki_markup_description_and_comments(dc: FakeJira) -> None:
    issue = dc.add_issue(
        "OPS",
        "Disk full on db-2",
        "h2. Steps\n# Stop *postgres*\n# Run {{vacuumdb --all}}",
        updated=T0,
        comments=[("Dana Ruiz", "Done, freed _40 GB_.", T0)],
    )
    with connect(dc) as connector:
        (doc,) = documents(list(connector.changed("OPS", T0)))
        fetched = connector.fetch(f"jira:{issue.key}")
    assert issue.key in doc.text
    assert "## Steps" in doc.text
    assert "Stop postgres" in doc.text and "vacuumdb --all" in doc.text
    assert "*postgres*" not in doc.text
    assert "Comment by Dana Ruiz (2026-10-14): Done, freed 40 GB." in doc.text
    assert fetched == doc
    jql = dc.requests_to("/rest/api/2/search")[0].query["jql"][0]
    assert jql.endswith("ORDER BY updated ASC")
    assert dc.requests_to(f"/rest/api/2/issue/{issue.key}")


# --- faults ---------------------------------------------------------------------------------


def test_429_waits_for_retry_after(cloud: FakeJira) -> None:
    cloud.add_issue("OPS", "One")
    cloud.rate_limit("/search/jql", retry_after=1)
    with connect(cloud) as connector:
        started = time.monotonic()
        docs = documents(list(connector.changed("OPS", None)))
        waited = time.monotonic() - started
    assert len(docs) == 1 and waited >= 0.9


def test_500_then_success_and_timeout_then_success(dc: FakeJira) -> None:
    issue = dc.add_issue("OPS", "One")
    dc.fail("/rest/api/2/search", status=502, times=1)
    dc.slow(f"/rest/api/2/issue/{issue.key}", seconds=1.0, times=1)
    with connect(dc, timeout=0.3) as connector:
        assert len(documents(list(connector.changed("OPS", None)))) == 1
        doc = connector.fetch(f"jira:{issue.key}")
    assert doc is not None and doc.title == f"{issue.key}: One"
    assert len(dc.requests_to("/rest/api/2/search")) == 2
    assert len(dc.requests_to(f"/rest/api/2/issue/{issue.key}")) == 2


def test_401_names_the_settings_and_never_the_token(
    cloud: FakeJira, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "jira-sentinel-Q9x2LmZ"
    with (
        JiraConnector(cloud.site(token=token), projects=("OPS",), policy=FAST) as connector,
        pytest.raises(AuthError) as caught,
    ):
        list(connector.changed("OPS", None))
    assert "JIRA_API_TOKEN" in str(caught.value) and "JIRA_EMAIL" in str(caught.value)
    assert token not in str(caught.value)
    assert "401" in caplog.text  # the logs were captured, and hold no token
    assert token not in caplog.text


def test_malformed_json_is_a_bad_response(dc: FakeJira) -> None:
    dc.add_issue("OPS", "One")
    dc.malformed("/rest/api/2/search", times=None)
    with connect(dc) as connector, pytest.raises(BadResponse) as caught:
        list(connector.changed("OPS", None))
    assert "Jira" in str(caught.value) and "/rest/api/2/search" in str(caught.value)


def test_an_issue_whose_comments_cannot_be_read_is_a_fetch_failure() -> None:
    with FakeJira(cloud=True, inline_comments=1) as cloud:
        first = cloud.add_issue("OPS", "First")
        broken = cloud.add_issue("OPS", "Broken", comments=[("A", adf("a")), ("B", adf("b"))])
        last = cloud.add_issue("OPS", "Last")
        cloud.fail(f"/issue/{broken.key}/comment", times=None)
        with connect(cloud) as connector:
            items = list(connector.changed("OPS", None))
    assert [i.artifact_id for i in items] == [f"jira:{k.key}" for k in (first, broken, last)]
    assert isinstance(items[1], FetchFailure) and "HTTP 500" in items[1].error
    assert isinstance(items[0], SourceDocument) and isinstance(items[2], SourceDocument)


def test_a_failing_search_raises(cloud: FakeJira) -> None:
    cloud.fail("/search/jql", status=500, times=None)
    with connect(cloud) as connector, pytest.raises(RemoteError):
        connector.list_ids("OPS")


def test_constructor_wants_projects_or_jql(cloud: FakeJira) -> None:
    with pytest.raises(ValueError):
        JiraConnector(cloud.site())
    with connect(cloud, projects=("OPS", "ENG")) as connector:
        assert connector.scopes() == ("OPS", "ENG")
        assert connector.source == "jira"
        list(connector.changed("*", None))
    assert cloud.requests_to("/search/jql")[0].json()["jql"].startswith('project in ("OPS","ENG")')
