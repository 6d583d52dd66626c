"""Webhook body parsers over every real captured delivery in ../shared/fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sync.confluence import parse_confluence_webhook
from sync.jira import parse_issue, parse_jira_webhook
from sync.webhook_events import WebhookChange

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
if not FIXTURES.is_dir():
    pytest.skip(
        f"shared fixtures not found at {FIXTURES} (clone without ../shared)",
        allow_module_level=True,
    )

HOOKS = FIXTURES / "atlassian_webhooks"
JIRA_DIR = HOOKS / "jira"
CONFLUENCE_DIR = HOOKS / "confluence"


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def change(artifact: str, kind: str, event: str, version: str | None) -> WebhookChange:
    return WebhookChange(artifact, kind, event, version)  # type: ignore[arg-type]


# file -> expected change (None: nothing indexed is affected).
JIRA_EXPECTED: dict[str, WebhookChange | None] = {
    # Comment events change their issue; zulip's trimmed issue has no fields.updated.
    "cloud_comment_created__zulip.json": change("jira:ZUL-1", "changed", "comment_created", None),
    # Links carry numeric issue ids only and are not part of the indexed text.
    "cloud_issuelink_created__OSBot-Jira_test_handle__issuelink_created.json": None,
    "cloud_issuelink_deleted__OSBot-Jira_test_handle__issuelink_deleted.json": None,
    "cloud_jira_issue_created__OSBot-Jira_test_handle__issue_created.json": change(
        "jira:TASK-27", "changed", "jira:issue_created", "2020-01-30T16:42:49.478-0600"
    ),
    "cloud_jira_issue_deleted__OSBot-Jira_test_direct_invoke_issue_link_deleted.json": change(
        "jira:TASK-23", "deleted", "jira:issue_deleted", "2020-01-29T02:42:10.538-0600"
    ),
    "cloud_jira_issue_deleted__OSBot-Jira_test_handle_issue_deleted.json": change(
        "jira:TASK-27", "deleted", "jira:issue_deleted", "2020-01-30T16:42:49.478-0600"
    ),
    "cloud_jira_issue_updated__OSBot-Jira_test_data.json": change(
        "jira:SQUAD-10", "changed", "jira:issue_updated", "2020-01-28T18:32:34.874-0600"
    ),
    "cloud_jira_issue_updated__OSBot-Jira_test_handle_issue_updated.json": change(
        "jira:TASK-25", "changed", "jira:issue_updated", "2020-01-30T16:20:45.515-0600"
    ),
    # Server's comment_created names the issue only by numeric id in comment.self; the
    # jira:issue_updated (issue_commented) delivery that accompanies it carries the key.
    "server_comment_created__jira-to-matrix.json": None,
    "server_comment_deleted__jira-to-matrix.json": change(
        "jira:INDEV-28", "changed", "comment_deleted", None
    ),
    "server_comment_updated__jira-to-matrix.json": change(
        "jira:INDEV-28", "changed", "comment_updated", None
    ),
    "server_issue_created__jira-to-matrix.json": change(
        "jira:BBCOM-1398", "changed", "jira:issue_created", "2018-01-11T13:08:03.317+0300"
    ),
    "server_issue_updated_commented-changed__jira-to-matrix.json": change(
        "jira:BBCOM-956", "changed", "jira:issue_updated", "2017-11-29T19:34:51.676+0300"
    ),
    "server_issue_updated_commented__jira-to-matrix.json": change(
        "jira:BBCOM-956", "changed", "jira:issue_updated", "2017-11-29T19:34:51.676+0300"
    ),
    "server_issue_updated_description-update__jira-to-matrix.json": change(
        "jira:INDEV-131", "changed", "jira:issue_updated", "2019-02-27T15:40:34.940+0300"
    ),
    "server_issue_updated_generic__jira-to-matrix.json": change(
        "jira:BBCOM-1233", "changed", "jira:issue_updated", "2017-12-25T16:33:21.208+0300"
    ),
    # A move gives the issue a new key; the old key is tombstoned by reconciliation (and
    # JiraConnector.fetch of the old key answers None).
    "server_issue_updated_move-issue__jira-to-matrix.json": change(
        "jira:INDEV-130", "changed", "jira:issue_updated", "2019-02-27T13:30:21.153+0300"
    ),
    "server_issue_updated_status-changed__jira-to-matrix.json": change(
        "jira:INDEV-6", "changed", "jira:issue_updated", "2019-01-30T15:51:33.199+0300"
    ),
}

# file -> (event from the delivery URL, expected change). Cloud bodies carry no event name.
CONFLUENCE_EXPECTED: dict[str, tuple[str, WebhookChange | None]] = {
    "cloud_BlogCreated__taxonomies-for-confluence.json": (
        "blog_created",
        change("confluence:1192525828", "changed", "blog_created", "1"),
    ),
    "cloud_BlogRemoved__taxonomies-for-confluence.json": (
        "blog_removed",
        change("confluence:1192525828", "deleted", "blog_removed", "2"),
    ),
    # Content-property events: the id is the property's, and page text is unchanged.
    "cloud_PageContentCreatedSubject__taxonomies-for-confluence.json": ("content_created", None),
    "cloud_PageCreated__taxonomies-for-confluence.json": (
        "page_created",
        change("confluence:294914", "changed", "page_created", "1"),
    ),
    "cloud_PageUpdated__taxonomies-for-confluence.json": (
        "page_updated",
        change("confluence:294914", "changed", "page_updated", "2"),
    ),
    "cloud_content_created_captured__taxonomies-for-confluence_WEBHOOKS.md.json": (
        "content_created",
        None,
    ),
    "cloud_content_removed_captured__taxonomies-for-confluence_WEBHOOKS.md.json": (
        "content_removed",
        None,
    ),
    "cloud_content_updated_captured__taxonomies-for-confluence_WEBHOOKS.md.json": (
        "content_updated",
        None,
    ),
    "cloud_page_moved_captured__taxonomies-for-confluence_WEBHOOKS.md.json": (
        "page_moved",
        change("confluence:1188560897", "changed", "page_moved", "2"),
    ),
    "cloud_page_removed_captured__taxonomies-for-confluence_WEBHOOKS.md.json": (
        "page_removed",
        change("confluence:1183744007", "deleted", "page_removed", "1"),
    ),
    "cloud_page_restored_captured__taxonomies-for-confluence_WEBHOOKS.md.json": (
        "page_restored",
        change("confluence:1188560897", "changed", "page_restored", "2"),
    ),
    "cloud_page_trashed_captured__taxonomies-for-confluence_WEBHOOKS.md.json": (
        "page_trashed",
        change("confluence:1188560897", "deleted", "page_trashed", "2"),
    ),
    "cloud_page_updated_captured__taxonomies-for-confluence_WEBHOOKS.md.json": (
        "page_updated",
        change("confluence:1188560897", "changed", "page_updated", "2"),
    ),
    # Confluence page comments are not indexed.
    "legacy_userKey_format_comment-created__chathooks.json": ("comment-created", None),
    "legacy_userKey_format_page-created__chathooks.json": (
        "page-created",
        change("confluence:16777227", "changed", "page_created", "1"),
    ),
}


def test_every_captured_delivery_has_an_expectation() -> None:
    assert {p.name for p in JIRA_DIR.glob("*.json")} == set(JIRA_EXPECTED)
    assert {p.name for p in CONFLUENCE_DIR.glob("*.json")} == set(CONFLUENCE_EXPECTED)


@pytest.mark.parametrize("name", sorted(JIRA_EXPECTED))
def test_jira_delivery(name: str) -> None:
    assert parse_jira_webhook(load(JIRA_DIR / name)) == JIRA_EXPECTED[name]


@pytest.mark.parametrize("name", sorted(JIRA_EXPECTED))
def test_jira_delivery_issue_bodies_parse_as_v2_issues(name: str) -> None:
    """Webhook issues are v2-shaped; the REST parser takes them (robustness only)."""
    issue = load(JIRA_DIR / name).get("issue")
    if not isinstance(issue, dict):
        pytest.skip("this delivery carries no issue")
    doc = parse_issue(issue, base_url="https://jira.example.com")
    assert doc.artifact_id == f"jira:{issue['key']}"
    assert issue["key"] in doc.text


@pytest.mark.parametrize("name", sorted(CONFLUENCE_EXPECTED))
def test_confluence_delivery(name: str) -> None:
    event, expected = CONFLUENCE_EXPECTED[name]
    body = load(CONFLUENCE_DIR / name)
    assert parse_confluence_webhook(event, body) == expected
    # Without the URL's event a Cloud body says nothing we can act on.
    assert parse_confluence_webhook(None, body) is None


# --- shapes no fixture covers ---------------------------------------------------------------


def test_data_center_bodies_carry_the_event_and_may_be_id_only() -> None:
    assert parse_confluence_webhook(None, {"event": "page_updated", "page": {"id": 123}}) == (
        change("confluence:123", "changed", "page_updated", None)
    )
    assert parse_confluence_webhook(
        "/page_trashed", {"page": {"id": "456", "version": {"number": 7}}}
    ) == change("confluence:456", "deleted", "page_trashed", "7")
    assert parse_confluence_webhook(
        None, {"event": "blogpost_removed", "blogpost": {"id": 9}}
    ) == change("confluence:9", "deleted", "blogpost_removed", None)


def test_confluence_content_and_label_events_count_for_pages_only() -> None:
    page = {"id": "77", "type": "page", "version": {"number": 3}}
    assert parse_confluence_webhook("content_updated", {"content": page}) == change(
        "confluence:77", "changed", "content_updated", "3"
    )
    assert parse_confluence_webhook("content_trashed", page) == change(
        "confluence:77", "deleted", "content_trashed", "3"
    )
    assert (
        parse_confluence_webhook("content_updated", {"content": {"id": "1", "type": "comment"}})
        is None
    )
    labelled = {"label": {"name": "howto"}, "labeled": {"id": 88, "contentType": "page"}}
    assert parse_confluence_webhook("label_added", labelled) == change(
        "confluence:88", "changed", "label_added", None
    )


@pytest.mark.parametrize(
    ("event", "body"),
    [
        ("space_created", {"space": {"key": "ENG"}}),
        ("page_children_reordered", {"page": {"id": 1}}),
        ("page_updated", {"page": {"id": "not-a-number"}}),
        ("page_updated", {"page": "garbage"}),
        ("page_updated", {}),
        ("attachment_created", {"attachment": {"id": 5}}),
        ("", {"page": {"id": 1}}),
    ],
)
def test_confluence_unknown_or_unusable_deliveries_give_none(event: str, body: Any) -> None:
    assert parse_confluence_webhook(event, body) is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"webhookEvent": "jira:worklog_updated", "issue": {"key": "OPS-1"}},
        {"webhookEvent": "jira:issue_updated"},
        {"webhookEvent": "jira:issue_updated", "issue": {"key": "not a key"}},
        {"webhookEvent": "jira:issue_updated", "issue": ["garbage"]},
        {"webhookEvent": 42, "issue": {"key": "OPS-1"}},
        {"webhookEvent": "sprint_started", "sprint": {"id": 1}},
    ],
)
def test_jira_unknown_or_unusable_deliveries_give_none(body: Any) -> None:
    assert parse_jira_webhook(body) is None


def test_jira_issue_version_is_fields_updated_verbatim() -> None:
    body = {
        "webhookEvent": "jira:issue_updated",
        "issue": {"key": "OPS-12", "fields": {"updated": "2026-10-14T09:00:00.000-0600"}},
    }
    assert parse_jira_webhook(body) == change(
        "jira:OPS-12", "changed", "jira:issue_updated", "2026-10-14T09:00:00.000-0600"
    )
