"""ConfluenceConnector against fake Confluence Cloud and Data Center servers on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fakes.atlassian import FakeConfluence

from core.errors import AuthError, BadResponse, RemoteError, SettingsError
from core.http import RetryPolicy
from sync.confluence import ConfluenceConnector
from sync.source import FetchFailure, OutsideSelection, SourceDocument

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=2.0)
T0 = datetime(2026, 10, 14, 9, 0, tzinfo=UTC)


@pytest.fixture
def cloud() -> Iterator[FakeConfluence]:
    with FakeConfluence(cloud=True) as fake:
        yield fake


@pytest.fixture
def dc() -> Iterator[FakeConfluence]:
    with FakeConfluence(cloud=False, context="/confluence") as fake:
        yield fake


def connect(fake: FakeConfluence, **kwargs: object) -> ConfluenceConnector:
    options: dict[str, object] = {"policy": FAST, "timeout": 5.0}
    options.update(kwargs)
    return ConfluenceConnector(fake.site(), ("ENG",), **options)  # type: ignore[arg-type]


def documents(items: list[SourceDocument | FetchFailure]) -> list[SourceDocument]:
    assert all(isinstance(i, SourceDocument) for i in items), items
    return [i for i in items if isinstance(i, SourceDocument)]


# --- Cloud ------------------------------------------------------------------------------------


def test_cloud_full_listing_follows_v2_cursors_across_pages(cloud: FakeConfluence) -> None:
    pages = [
        cloud.add_page("ENG", f"Runbook {n}", f"<h1>Step {n}</h1><p>Restart&nbsp;node {n}</p>")
        for n in range(7)
    ]
    cloud.add_page("OPS", "Elsewhere", "<p>not ours</p>")
    with connect(cloud, page_size=3) as connector:
        docs = documents(list(connector.changed("ENG", None)))

    assert [d.artifact_id for d in docs] == [f"confluence:{p.id}" for p in pages]
    listing = cloud.requests_to("/api/v2/spaces/", "GET")
    page_calls = [r for r in listing if r.path.endswith("/pages")]
    assert len(page_calls) == 3
    # The cursor link starts with /wiki: followed from the site root, not doubled.
    assert all(r.path.startswith("/wiki/api/v2/") for r in page_calls)
    assert "cursor" not in page_calls[0].query
    assert page_calls[1].query["cursor"] != page_calls[2].query["cursor"]
    assert page_calls[0].query["body-format"] == ["storage"]
    first = docs[0]
    assert first.source == "confluence"
    assert first.scope_key == "ENG"
    assert first.title == "Runbook 0"
    assert first.version == "1"
    assert first.text == "# Step 0\n\nRestart node 0"
    assert first.url == f"{cloud.url}/wiki/spaces/ENG/pages/{pages[0].id}/Runbook+0"
    assert first.updated_at == pages[0].updated


def test_cloud_basic_auth_and_space_id_resolution(cloud: FakeConfluence) -> None:
    cloud.add_page("ENG", "One")
    with connect(cloud) as connector:
        documents(list(connector.changed("ENG", None)))
        connector.list_ids("ENG")
    lookups = cloud.requests_to("/api/v2/spaces", "GET")
    assert lookups[0].query == {"keys": ["ENG"]}
    assert sum(1 for r in lookups if r.path == "/wiki/api/v2/spaces") == 1  # cached
    assert all(r.headers["authorization"].startswith("Basic ") for r in cloud.requests)


def test_cloud_labels_and_restrictions_come_from_one_v1_read_per_page(
    cloud: FakeConfluence,
) -> None:
    open_page = cloud.add_page("ENG", "Open", labels=["howto", "ops"])
    secret = cloud.add_page("ENG", "Salaries", restricted=True)
    with connect(cloud) as connector:
        docs = {d.artifact_id: d for d in documents(list(connector.changed("ENG", None)))}
    assert docs[f"confluence:{open_page.id}"].labels == ("howto", "ops")
    assert docs[f"confluence:{open_page.id}"].restricted is False
    assert docs[f"confluence:{secret.id}"].restricted is True
    for page in (open_page, secret):
        reads = cloud.requests_to(f"/wiki/rest/api/content/{page.id}", "GET")
        assert len(reads) == 1
        assert "restrictions.read.restrictions.user" in reads[0].query["expand"][0]


def test_user_mentions_become_names_looked_up_once_per_run(cloud: FakeConfluence) -> None:
    cloud.add_user("557058:dana", "Dana Ruiz")
    mention = '<p>Ask <ac:link><ri:user ri:account-id="557058:dana" /></ac:link></p>'
    for n in range(4):
        cloud.add_page("ENG", f"Page {n}", mention)
    cloud.add_page("ENG", "Ghost", '<p>Ask <ac:link><ri:user ri:account-id="gone" /></ac:link></p>')
    with connect(cloud, max_workers=4) as connector:
        docs = documents(list(connector.changed("ENG", None)))
    assert all("Dana Ruiz" in d.text for d in docs[:4])
    assert "@user" in docs[4].text
    dana = [
        r for r in cloud.requests_to("/rest/api/user") if r.query["accountId"] == ["557058:dana"]
    ]
    assert len(dana) == 1


def test_a_failing_user_lookup_falls_back_to_a_placeholder(cloud: FakeConfluence) -> None:
    cloud.add_user("557058:dana", "Dana Ruiz")
    cloud.add_page(
        "ENG", "Page", '<p>Ask <ac:link><ri:user ri:account-id="557058:dana" /></ac:link></p>'
    )
    cloud.fail("/rest/api/user", status=403, times=None)
    with connect(cloud) as connector:
        (doc,) = documents(list(connector.changed("ENG", None)))
    assert doc.text == "Ask @user"


def test_cloud_fetch_reads_v2_and_maps_the_space_id_once(cloud: FakeConfluence) -> None:
    page = cloud.add_page("ENG", "How to deploy", "<p>Run deploy.sh</p>", labels=["deploy"])
    cloud.edit_page(page.id, body="<p>Run deploy.sh --safe</p>")
    with connect(cloud) as connector:
        doc = connector.fetch(f"confluence:{page.id}")
        again = connector.fetch(f"confluence:{page.id}")
    assert doc is not None and again == doc
    assert doc.version == "2"
    assert doc.text == "Run deploy.sh --safe"
    assert doc.labels == ("deploy",)
    assert doc.scope_key == "ENG"
    # v2 gives webui relative to the /wiki base and no _links.base.
    assert doc.url == f"{cloud.url}/wiki/spaces/ENG/pages/{page.id}/How+to+deploy"
    assert len(cloud.requests_to(f"/wiki/api/v2/pages/{page.id}")) == 2
    space_id = cloud.spaces["ENG"].id
    assert len(cloud.requests_to(f"/wiki/api/v2/spaces/{space_id}")) == 1


def test_trashed_and_purged_pages_are_absent_and_fetch_none(cloud: FakeConfluence) -> None:
    kept = cloud.add_page("ENG", "Kept")
    trashed = cloud.add_page("ENG", "Trashed")
    purged = cloud.add_page("ENG", "Purged")
    draft = cloud.add_page("ENG", "Draft", status="draft")
    cloud.trash_page(trashed.id)
    cloud.purge_page(purged.id)
    with connect(cloud) as connector:
        listing = connector.list_ids("ENG")
        assert listing.scope_key == "ENG"
        assert listing.artifact_ids == {f"confluence:{kept.id}"}
        assert connector.fetch(f"confluence:{trashed.id}") is None
        assert connector.fetch(f"confluence:{purged.id}") is None
        assert connector.fetch(f"confluence:{draft.id}") is None
        assert [d.artifact_id for d in connector.changed("ENG", None)] == [f"confluence:{kept.id}"]
        cloud.restore_page(trashed.id)
        assert connector.fetch(f"confluence:{trashed.id}") is not None


def test_fetch_of_a_page_outside_the_synced_spaces_is_outside_the_selection(
    cloud: FakeConfluence,
) -> None:
    page = cloud.add_page("ENG", "Moving")
    cloud.edit_page(page.id, space_key="HR")
    with connect(cloud) as connector:
        with pytest.raises(OutsideSelection, match="space HR"):
            connector.fetch(f"confluence:{page.id}")
        with pytest.raises(ValueError):
            connector.fetch("jira:ENG-1")


def test_cloud_incremental_uses_cql_with_overlapped_utc_minute_oldest_first(
    cloud: FakeConfluence,
) -> None:
    cloud.add_page("ENG", "Old", updated=T0)
    late = cloud.add_page("ENG", "Late", updated=T0 + timedelta(minutes=58))
    early = cloud.add_page("ENG", "Early", updated=T0 + timedelta(minutes=53))
    cloud.add_page("OPS", "Other space", updated=T0 + timedelta(minutes=59))
    since = datetime(2026, 10, 14, 12, 3, 45, tzinfo=timezone(timedelta(hours=2)))  # 10:03:45Z
    with connect(cloud, overlap=timedelta(minutes=10), page_size=1) as connector:
        docs = documents(list(connector.changed("ENG", since)))

    assert [d.title for d in docs] == ["Early", "Late"]
    assert docs[0].artifact_id == f"confluence:{early.id}"
    assert docs[1].version == "1" and docs[1].artifact_id == f"confluence:{late.id}"
    searches = cloud.requests_to("/wiki/rest/api/content/search")
    cql = searches[0].query["cql"][0]
    assert cql == (
        'type=page and space in ("ENG") and lastmodified >= "2026-10-14 09:53" '
        "order by lastmodified asc"
    )
    assert "body.storage" in searches[0].query["expand"][0]
    assert len(searches) == 2  # paged by the cursor link
    assert "cursor" in searches[1].query
    # Search results carry labels and restrictions: no per-page reads.
    assert not cloud.requests_to("/rest/api/content/1")


# --- Data Center ----------------------------------------------------------------------------


def test_dc_pages_by_what_came_back_when_limit_is_silently_capped() -> None:
    with FakeConfluence(cloud=False, context="/confluence", limit_cap=2) as dc:
        pages = [dc.add_page("ENG", f"Page {n}", f"<p>Body {n}</p>") for n in range(5)]
        with connect(dc, page_size=5) as connector:
            docs = documents(list(connector.changed("ENG", None)))
        assert [d.artifact_id for d in docs] == [f"confluence:{p.id}" for p in pages]
        calls = dc.requests_to("/confluence/rest/api/content")
        assert [r.query["start"] for r in calls] == [["0"], ["2"], ["4"]]
        assert all(r.query["limit"] == ["5"] for r in calls)
        assert all(r.headers["authorization"] == "Bearer fake-atlassian-token" for r in calls)


def test_dc_documents_urls_and_restrictions(dc: FakeConfluence) -> None:
    page = dc.add_page(
        "ENG", "Deploy guide", "<p>Use the <strong>blue</strong> button</p>", labels=["deploy"]
    )
    secret = dc.add_page("ENG", "Secret", restricted=True)
    with connect(dc) as connector:
        docs = {d.artifact_id: d for d in documents(list(connector.changed("ENG", None)))}
        fetched = connector.fetch(f"confluence:{page.id}")
    doc = docs[f"confluence:{page.id}"]
    assert doc.url == f"{dc.url}/confluence/display/ENG/Deploy+guide"
    assert doc.text == "Use the blue button"
    assert doc.labels == ("deploy",)
    assert docs[f"confluence:{secret.id}"].restricted is True
    assert fetched == doc
    assert not dc.requests_to("/api/v2")


def test_dc_user_mentions_resolve_by_user_key(dc: FakeConfluence) -> None:
    dc.add_user("ff8080815", "Ada Admin")
    dc.add_page(
        "ENG", "Owners", '<p>Owner: <ac:link><ri:user ri:userkey="ff8080815" /></ac:link></p>'
    )
    with connect(dc) as connector:
        (doc,) = documents(list(connector.changed("ENG", None)))
    assert "Ada Admin" in doc.text


def test_dc_incremental_search_pages_by_start_oldest_first() -> None:
    with FakeConfluence(cloud=False, limit_cap=1) as dc:
        dc.add_page("ENG", "Old", updated=T0)
        dc.add_page("ENG", "B", updated=T0 + timedelta(hours=2))
        dc.add_page("ENG", "A", updated=T0 + timedelta(hours=1))
        with connect(dc) as connector:
            docs = documents(list(connector.changed("ENG", T0 + timedelta(minutes=30))))
        assert [d.title for d in docs] == ["A", "B"]
        searches = dc.requests_to("/rest/api/content/search")
        assert 'lastmodified >= "2026-10-14 09:20"' in searches[0].query["cql"][0]
        assert [r.query["start"] for r in searches] == [["0"], ["1"]]


def test_dc_trashed_page_fetch_is_none(dc: FakeConfluence) -> None:
    page = dc.add_page("ENG", "Soon gone")
    dc.trash_page(page.id)
    with connect(dc) as connector:
        assert connector.fetch(f"confluence:{page.id}") is None
        assert connector.list_ids("ENG").artifact_ids == frozenset()


# --- faults ---------------------------------------------------------------------------------


def test_429_waits_for_retry_after(cloud: FakeConfluence) -> None:
    cloud.add_page("ENG", "One")
    cloud.rate_limit("/wiki/api/v2/spaces", retry_after=1)
    with connect(cloud) as connector:
        started = time.monotonic()
        docs = documents(list(connector.changed("ENG", None)))
        waited = time.monotonic() - started
    assert len(docs) == 1
    assert waited >= 0.9
    assert len(cloud.requests_to("/wiki/api/v2/spaces")) >= 2


def test_500_then_success(cloud: FakeConfluence) -> None:
    cloud.add_page("ENG", "One")
    cloud.fail("/api/v2/spaces/", status=500, times=1)
    with connect(cloud) as connector:
        assert len(documents(list(connector.changed("ENG", None)))) == 1


def test_timeout_then_success(cloud: FakeConfluence) -> None:
    page = cloud.add_page("ENG", "One")
    cloud.slow(f"/api/v2/pages/{page.id}", seconds=1.0, times=1)
    with connect(cloud, timeout=0.3) as connector:
        doc = connector.fetch(f"confluence:{page.id}")
    assert doc is not None and doc.title == "One"
    assert len(cloud.requests_to(f"/api/v2/pages/{page.id}")) == 2


def test_401_names_the_settings_and_never_the_token(
    cloud: FakeConfluence, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "ATATT-sentinel-7f3q9Zx"
    cloud.add_page("ENG", "One")
    connector = ConfluenceConnector(cloud.site(token=token), ("ENG",), policy=FAST)
    with connector, pytest.raises(AuthError) as caught:
        list(connector.changed("ENG", None))
    message = str(caught.value)
    assert "CONFLUENCE_API_TOKEN" in message and "CONFLUENCE_EMAIL" in message
    assert token not in message and token not in repr(caught.value)
    assert "401" in caplog.text  # the logs were captured, and hold no token
    assert token not in caplog.text


def test_dc_401_names_only_the_token_setting(dc: FakeConfluence) -> None:
    with (
        ConfluenceConnector(dc.site(token="wrong-pat"), ("ENG",), policy=FAST) as connector,
        pytest.raises(AuthError) as caught,
    ):
        connector.list_ids("ENG")
    assert "CONFLUENCE_API_TOKEN" in str(caught.value)
    assert "CONFLUENCE_EMAIL" not in str(caught.value)


def test_malformed_json_is_a_bad_response_naming_service_and_path(cloud: FakeConfluence) -> None:
    cloud.add_page("ENG", "One")
    cloud.malformed("/api/v2/spaces/", times=None)
    with connect(cloud) as connector, pytest.raises(BadResponse) as caught:
        list(connector.changed("ENG", None))
    assert "Confluence" in str(caught.value)
    assert "/wiki/api/v2/spaces/" in str(caught.value)


def test_failing_pages_become_fetch_failures_while_others_arrive(cloud: FakeConfluence) -> None:
    good = [cloud.add_page("ENG", f"Good {n}") for n in range(3)]
    corrupt = cloud.add_page("ENG", "Corrupt")
    broken = cloud.add_page("ENG", "Broken")
    last = cloud.add_page("ENG", "Last")
    cloud.corrupt_body(corrupt.id)
    cloud.fail(f"/rest/api/content/{broken.id}", times=None)
    with connect(cloud, page_size=2) as connector:
        items = list(connector.changed("ENG", None))
    assert [i.artifact_id for i in items] == [
        f"confluence:{p.id}" for p in (*good, corrupt, broken, last)
    ]
    failures = {i.artifact_id: i.error for i in items if isinstance(i, FetchFailure)}
    assert set(failures) == {f"confluence:{corrupt.id}", f"confluence:{broken.id}"}
    assert "HTTP 500" in failures[f"confluence:{broken.id}"]
    assert "storage body" in failures[f"confluence:{corrupt.id}"]


def test_dc_corrupt_body_in_search_is_a_fetch_failure(dc: FakeConfluence) -> None:
    ok = dc.add_page("ENG", "Fine", updated=T0)
    bad = dc.add_page("ENG", "Bad", updated=T0 + timedelta(minutes=1))
    dc.corrupt_body(bad.id)
    with connect(dc) as connector:
        items = list(connector.changed("ENG", T0))
    assert isinstance(items[0], SourceDocument) and items[0].artifact_id == f"confluence:{ok.id}"
    assert isinstance(items[1], FetchFailure) and items[1].artifact_id == f"confluence:{bad.id}"


def test_a_paging_link_to_another_host_is_refused(cloud: FakeConfluence) -> None:
    page = cloud.add_page("ENG", "One")
    space_id = cloud.spaces["ENG"].id
    hostile = {
        "results": [
            {
                "id": page.id,
                "status": "current",
                "title": "One",
                "spaceId": space_id,
                "version": {"number": 1},
                "body": {"storage": {"value": "<p>x</p>", "representation": "storage"}},
                "_links": {"webui": "/spaces/ENG/pages/1/One"},
            }
        ],
        "_links": {"next": "https://elsewhere.example/wiki/api/v2/spaces/1/pages?cursor=abc"},
    }
    cloud.inject(f"/api/v2/spaces/{space_id}/pages", status=200, body=hostile)
    with connect(cloud) as connector, pytest.raises(BadResponse, match="another host"):
        list(connector.changed("ENG", None))


def test_a_failing_listing_raises(cloud: FakeConfluence) -> None:
    cloud.add_page("ENG", "One")
    cloud.fail("/api/v2/spaces/", status=503, times=None)
    with connect(cloud) as connector, pytest.raises(RemoteError, match="HTTP 503"):
        list(connector.changed("ENG", None))


def test_an_unknown_space_names_the_setting(cloud: FakeConfluence) -> None:
    with connect(cloud) as connector, pytest.raises(SettingsError) as caught:
        connector.list_ids("NOPE")
    assert caught.value.key == "CONFLUENCE_SPACES"


def test_cloud_base_url_without_wiki_is_completed(cloud: FakeConfluence) -> None:
    page = cloud.add_page("ENG", "One")
    site = cloud.site()
    bare = type(site)(base_url=cloud.url, email=site.email, token=site.token)
    with ConfluenceConnector(bare, ("ENG",), policy=FAST) as connector:
        doc = connector.fetch(f"confluence:{page.id}")
    assert doc is not None and doc.url.startswith(f"{cloud.url}/wiki/spaces/ENG/")


def test_scopes_and_source(cloud: FakeConfluence) -> None:
    connector = ConfluenceConnector(cloud.site(), ("ENG", "OPS"), policy=FAST)
    with connector:
        assert connector.scopes() == ("ENG", "OPS")
        assert connector.source == "confluence"
