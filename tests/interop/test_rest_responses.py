"""The Confluence and Jira REST parsers over every real captured response in ../shared/fixtures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadResponse
from sync import confluence, jira

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
if not FIXTURES.is_dir():
    pytest.skip(
        f"shared fixtures not found at {FIXTURES} (clone without ../shared)",
        allow_module_level=True,
    )

REST = FIXTURES / "rest_responses"
CONFLUENCE = REST / "confluence"
JIRA = REST / "jira"

# Files no kb-bot parser is meant for, with the reason; every other file must be tested here.
NOT_FOR_US = {
    # kb-bot tells Cloud from Data Center by whether JIRA_EMAIL is set, not by asking.
    "jira/cloud_serverInfo_deploymentType__jira-cli.json",
}
COVERED = {
    "confluence/cloud_v1_comments__mcp-atlassian.json",
    "confluence/cloud_v1_content_page_expand_body_storage__mcp-atlassian.json",
    "confluence/cloud_v1_pages_from_space_results__mcp-atlassian.json",
    "confluence/cloud_v1_search_cql__mcp-atlassian.json",
    "confluence/cloud_v1_space_list__mcp-atlassian.json",
    "confluence/cloud_v2_page_create_response_verbatim__marksync-doc.json",
    "confluence/cloud_v2_page_read_atlas_doc_format_verbatim__marksync-doc.json",
    "jira/agile_sprint_issues_startAt_total_v2shape__go-jira.json",
    "jira/cloud_v2_issue_FOO-123_comments__atlassian-python-api.json",
    "jira/cloud_v2_issue_FOO-123_fields_all__atlassian-python-api.json",
    "jira/cloud_v2_issue__mcp-atlassian.json",
    "jira/cloud_v2_issue_comments__mcp-atlassian.json",
    "jira/cloud_v2_issue_expand_renderedFields_domain_rewritten__jira-to-matrix.json",
    "jira/cloud_v2_issue_wiki_markup_comments_domain_rewritten__jira-to-matrix.json",
    "jira/cloud_v2_search_startAt_total__mcp-atlassian.json",
    "jira/cloud_v3_search_jql_isLast_minimal__jira-cli.json",
    "jira/v2_issue_plain_string_description__jira-cli.json",
}


def load(relative: str) -> Any:
    return json.loads((REST / relative).read_text(encoding="utf-8"))


def test_every_rest_fixture_is_covered() -> None:
    present = {str(p.relative_to(REST)) for p in REST.glob("*/*.json")}
    assert present == COVERED | NOT_FOR_US


# --- Confluence -------------------------------------------------------------------------------


def test_v1_page_with_storage_body_and_links_base() -> None:
    raw = load("confluence/cloud_v1_content_page_expand_body_storage__mcp-atlassian.json")
    names = {"user123": "Example User"}
    doc = confluence.parse_v1_content(raw, web_base="https://ignored", user_name=names.get)
    assert doc.artifact_id == "confluence:987654321"
    assert doc.title == "Example Meeting Notes"
    assert doc.scope_key == "PROJ"
    assert doc.version == "1"
    assert doc.updated_at == datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    # _links.base (with /wiki) wins over the caller's base for a single read.
    assert doc.url == (
        "https://example.atlassian.net/wiki/spaces/PROJ/pages/987654321/Example+Meeting+Notes"
    )
    assert doc.restricted is False
    for words in ("Date", "2024-01-01", "Participants", "Goals", "Example goal", "Example User"):
        assert words in doc.text
    assert "ac:" not in doc.text and "&nbsp;" not in doc.text


def test_v1_space_page_results_without_version_or_space_expansion() -> None:
    raw = load("confluence/cloud_v1_pages_from_space_results__mcp-atlassian.json")
    base = "https://example.atlassian.net/wiki"
    docs = [confluence.parse_v1_content(r, web_base=base) for r in confluence.v1_results(raw)]
    assert [d.artifact_id for d in docs] == ["confluence:123456789", "confluence:987654321"]
    assert [d.title for d in docs] == ["Sample Research Paper Title", "Example Meeting Notes"]
    assert [d.scope_key for d in docs] == ["PROJ", "PROJ"]  # from _expandable.space, space.key
    assert [d.version for d in docs] == ["", ""]  # version was not expanded
    assert docs[0].url == f"{base}/spaces/PROJ/pages/123456789/Sample+Research+Paper+Title"
    assert "Sample content with various formatting" in docs[0].text
    assert docs[1].text == "## Meeting Agenda\n\nExample content"


def test_v1_search_wrapper_results_unwrap_to_content() -> None:
    raw = load("confluence/cloud_v1_search_cql__mcp-atlassian.json")
    (item,) = confluence.v1_results(raw)
    doc = confluence.parse_v1_content(item, web_base="https://example.atlassian.net/wiki")
    assert doc.artifact_id == "confluence:123456789"
    assert doc.title == "2024-01-01: Team Progress Meeting 01"
    assert doc.scope_key == "TEAM"
    assert doc.restricted is False  # "restrictions": {}
    assert doc.text == ""  # no body expanded
    assert doc.url.endswith("/wiki/spaces/TEAM/pages/123456789/2024-01-01+Team+Progress+Meeting+01")


def test_v1_comment_content_parses_but_is_not_a_page() -> None:
    raw = load("confluence/cloud_v1_comments__mcp-atlassian.json")
    (item,) = confluence.v1_results(raw)
    doc = confluence.parse_v1_content(item, web_base="https://company.atlassian.net/wiki")
    assert doc.artifact_id == "confluence:456789123"
    assert doc.title == "Re: Technical Design Document"
    assert doc.version == "1"
    assert doc.text == "Comment content here"  # body.view is HTML
    assert item["type"] == "comment"  # listings keep pages only


def test_space_list_maps_keys_to_ids() -> None:
    raw = load("confluence/cloud_v1_space_list__mcp-atlassian.json")
    assert confluence.space_ids(raw) == {"~user1": "11111111", "PROJ": "22222222"}


def test_v2_page_uses_the_wiki_base_for_its_relative_webui() -> None:
    raw = load("confluence/cloud_v2_page_create_response_verbatim__marksync-doc.json")
    meta = confluence.PageMeta(labels=("spike",), restricted=True)
    doc = confluence.parse_v2_page(
        raw, space_key="MARKSYNCTE", web_base="https://acme.atlassian.net/wiki", meta=meta
    )
    assert doc.artifact_id == "confluence:39813121"
    assert doc.title == "MarkSync Spike — Storage"
    assert doc.version == "1"
    assert doc.url == (
        "https://acme.atlassian.net/wiki/spaces/marksyncte/pages/39813121/MarkSync+Spike+Storage"
    )
    assert doc.text == "# Spike Minimal\n\n…"
    assert doc.labels == ("spike",) and doc.restricted is True
    assert doc.updated_at == datetime(2026, 7, 3, 13, 48, 15, 974000, tzinfo=UTC)


def test_v2_atlas_doc_format_body_converts_and_a_body_alone_is_not_a_page() -> None:
    raw = load("confluence/cloud_v2_page_read_atlas_doc_format_verbatim__marksync-doc.json")
    assert confluence.page_body_text(raw["body"]) == "This is just an example hello world page"
    with pytest.raises(BadResponse):
        confluence.parse_v2_page(raw, space_key="X", web_base="https://x")


def test_cql_minute_is_utc_rounded_down_after_the_overlap() -> None:
    since = datetime(2026, 10, 14, 0, 5, 59, tzinfo=timezone(timedelta(hours=-7)))
    assert confluence.cql_minute(since, timedelta(minutes=10)) == "2026-10-14 06:55"
    assert confluence.cql_minute(datetime(2026, 1, 1, 0, 0), timedelta(0)) == "2026-01-01 00:00"


# --- Jira -----------------------------------------------------------------------------------


def test_v2_issue_with_security_and_inline_comment() -> None:
    raw = load("jira/cloud_v2_issue__mcp-atlassian.json")
    doc = jira.parse_issue(raw, base_url="https://example.atlassian.net/")
    assert doc.artifact_id == "jira:PROJ-123"
    assert doc.title == "PROJ-123: Test Issue Summary"
    assert doc.url == "https://example.atlassian.net/browse/PROJ-123"
    assert doc.scope_key == "PROJ"
    assert doc.version == "2024-01-02T15:30:00.000+0000"
    assert doc.updated_at == datetime(2024, 1, 2, 15, 30, tzinfo=UTC)
    assert doc.labels == ("test-label",)
    assert doc.restricted is True  # "security": {"name": "Internal"}
    assert doc.text.startswith("PROJ-123: Test Issue Summary\n")
    assert "Status: In Progress" in doc.text and "Type: Task" in doc.text
    assert "This is a test issue description" in doc.text
    assert "Comment by Commenter User (2024-01-01): This is a test comment" in doc.text


def test_v2_issue_all_fields() -> None:
    doc = jira.parse_issue(
        load("jira/cloud_v2_issue_FOO-123_fields_all__atlassian-python-api.json"),
        base_url="https://sample.atlassian.net",
    )
    assert (doc.artifact_id, doc.title, doc.scope_key) == ("jira:FOO-123", "FOO-123: Sample", "FOO")
    assert doc.version == "2022-07-11T06:25:48.416-0400"
    assert doc.updated_at == datetime(2022, 7, 11, 10, 25, 48, 416000, tzinfo=UTC)
    assert doc.restricted is False and doc.labels == ("sample",)
    assert "Some Issue Description" in doc.text and "Status: Backlog" in doc.text


@pytest.mark.parametrize(
    ("name", "key", "updated"),
    [
        (
            "jira/cloud_v2_issue_expand_renderedFields_domain_rewritten__jira-to-matrix.json",
            "INDEV-6",
            "2018-12-19T17:44:56.712+0300",
        ),
        (
            "jira/cloud_v2_issue_wiki_markup_comments_domain_rewritten__jira-to-matrix.json",
            "BBCOM-1398",
            "2018-12-19T12:36:15.507+0300",
        ),
    ],
)
def test_v2_issues_with_wiki_markup_comments(name: str, key: str, updated: str) -> None:
    doc = jira.parse_issue(load(name), base_url="https://jira.test-example.ru")
    assert doc.artifact_id == f"jira:{key}"
    assert doc.version == updated
    assert doc.title == f"{key}: Prueba de creación de tareas en un proyecto público"
    # The status name is Russian ("To Do"), escaped to keep the source ASCII-unambiguous.
    assert "Status: \u041a \u0432\u044b\u043f\u043e\u043b\u043d\u0435\u043d\u0438\u044e" in doc.text
    author = "Comment by Иванов Иван Иванович (2018-12-19)"
    # The wiki escape "\-" reads as a plain hyphen.
    assert f"{author}: Proyecto privado - no se puede asignar" in doc.text
    assert f"{author}: Proyecto limitada - no se puede asignar" in doc.text
    assert "<p>" not in doc.text  # renderedFields HTML is ignored


def test_v2_plain_string_description() -> None:
    doc = jira.parse_issue(
        load("jira/v2_issue_plain_string_description__jira-cli.json"), base_url="https://j"
    )
    assert doc.artifact_id == "jira:TEST-1"
    assert doc.scope_key == "TEST"  # no project field: from the key
    assert doc.text == "TEST-1: Bug summary\nType: Bug\nStatus: To Do\n\nTest description"


def test_v3_search_jql_page() -> None:
    page = jira.parse_search_page(load("jira/cloud_v3_search_jql_isLast_minimal__jira-cli.json"))
    assert page.is_last is True and page.next_page_token is None and page.total is None
    docs = [jira.parse_issue(i, base_url="https://demo.atlassian.net") for i in page.issues]
    assert [d.artifact_id for d in docs] == ["jira:TEST-1", "jira:TEST-2", "jira:TEST-3"]
    assert [d.title for d in docs] == [
        "TEST-1: Bug summary",
        "TEST-2: Story summary",
        "TEST-3: Task summary",
    ]
    assert docs[1].labels == ("critical", "feature")
    assert all(d.version == "2020-12-03T14:05:20.974+0100" for d in docs)
    assert docs[2].text == "TEST-3: Task summary\nType: Task\nStatus: Done"


def test_v2_search_page_with_start_at_and_total() -> None:
    page = jira.parse_search_page(load("jira/cloud_v2_search_startAt_total__mcp-atlassian.json"))
    assert (page.start_at, page.total) == (0, 34)
    (doc,) = [jira.parse_issue(i, base_url="https://example.atlassian.net") for i in page.issues]
    assert doc.artifact_id == "jira:PROJ-123"
    assert "Comment by Comment User (2024-01-01): This is a test comment" in doc.text


def test_agile_search_page_without_summary() -> None:
    page = jira.parse_search_page(
        load("jira/agile_sprint_issues_startAt_total_v2shape__go-jira.json")
    )
    assert (page.start_at, page.total) == (0, 10)
    (doc,) = [jira.parse_issue(i, base_url="https://example.atlassian.net") for i in page.issues]
    assert (doc.artifact_id, doc.title, doc.scope_key) == ("jira:AR-86", "AR-86", "AR")
    assert doc.version == "2016-02-01T08:17:04.000-0800"
    assert doc.text == "AR-86\nType: Task\nStatus: Ready"


def test_comment_pages() -> None:
    page = jira.parse_comments(
        load("jira/cloud_v2_issue_FOO-123_comments__atlassian-python-api.json")
    )
    assert page.total == 2
    assert [(c.author, c.created, c.text) for c in page.comments] == [
        ("Martyn Bristow", "2022-10-25", "Some Text comment"),
        ("Martyn Bristow", "2022-10-25", "Second Comment"),
    ]
    page = jira.parse_comments(load("jira/cloud_v2_issue_comments__mcp-atlassian.json"))
    assert page.total == 5 and len(page.comments) == 5
    assert [c.author for c in page.comments] == [
        "John Smith",
        "Jane Doe",
        "Robert Johnson",
        "John Smith",
        "Robert Johnson",
    ]
    assert page.comments[4].text.endswith("Issue can be closed.")


def test_jql_helpers() -> None:
    since = datetime(2026, 10, 14, 9, 0, tzinfo=UTC)
    assert jira.epoch_ms(since, timedelta(minutes=10)) == 1791967800000
    assert jira.strip_order_by('project = X AND summary ~ "order by" ORDER BY created DESC') == (
        'project = X AND summary ~ "order by"'
    )
    assert jira.strip_order_by("project = X") == "project = X"
    assert jira.incremental_jql('project in ("OPS")', since, timedelta(0)) == (
        'project in ("OPS") AND updated >= 1791968400000 ORDER BY updated ASC'
    )
