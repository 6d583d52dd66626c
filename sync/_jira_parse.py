"""Jira payloads (REST v2/v3, webhooks) to kb-bot types, and the JQL kb-bot sends. Pure.

Private to :mod:`sync.jira`, which re-exports what others may call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.errors import BadResponse
from sync._atlassian import as_int, as_list, as_map, as_str, as_utc, parse_time
from sync.adf import adf_to_text
from sync.source import SourceDocument
from sync.webhook_events import ChangeKind, WebhookChange
from sync.wiki_markup import wiki_to_text

FIELDS = (
    "summary",
    "description",
    "comment",
    "status",
    "issuetype",
    "project",
    "labels",
    "updated",
    "security",
)

_PREFIX = "jira:"
_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-[1-9][0-9]*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_ORDER_BY_RE = re.compile(r"\border\s+by\b", re.IGNORECASE)


@dataclass(frozen=True)
class Comment:
    author: str
    created: str  # the calendar date as Jira wrote it (the author's zone), or ""
    text: str


@dataclass(frozen=True)
class CommentPage:
    comments: tuple[Comment, ...]
    start_at: int
    total: int


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: Cloud pages by ``next_page_token``/``is_last``, Data Center by
    ``start_at``/``total``."""

    issues: tuple[Mapping[str, Any], ...]
    next_page_token: str | None
    is_last: bool
    start_at: int
    total: int | None


# --- ids ---------------------------------------------------------------------------------


def artifact_id(key: str) -> str:
    return f"{_PREFIX}{key}"


def is_issue_key(value: str) -> bool:
    # fullmatch: ``$`` would also accept a key followed by a newline.
    return bool(_KEY_RE.fullmatch(value))


def key_of(artifact: str) -> str:
    """The issue key of ``jira:<KEY>``; the key pattern also keeps it URL-safe."""
    key = artifact[len(_PREFIX) :] if artifact.startswith(_PREFIX) else ""
    if not is_issue_key(key):
        raise ValueError(f"not a Jira artifact id: {artifact!r}")
    return key


def issue_key(raw: Mapping[str, Any]) -> str | None:
    key = as_str(raw.get("key"))
    return key if key is not None and is_issue_key(key) else None


# --- payloads ----------------------------------------------------------------------------


def parse_search_page(payload: object) -> SearchPage:
    data = as_map(payload)
    issues = data.get("issues")
    if not isinstance(issues, list):
        raise BadResponse("Jira answered a search without an issues list")
    token = as_str(data.get("nextPageToken"))
    is_last = data.get("isLast")
    return SearchPage(
        issues=tuple(as_map(issue) for issue in issues if as_map(issue)),
        next_page_token=token,
        is_last=is_last if isinstance(is_last, bool) else token is None,
        start_at=as_int(data.get("startAt")) or 0,
        total=as_int(data.get("total")),
    )


def parse_comments(payload: object) -> CommentPage:
    """A comment page: ``/issue/{key}/comment`` or an issue's inline ``fields.comment``."""
    data = as_map(payload)
    comments = tuple(_comment(as_map(c)) for c in as_list(data.get("comments")))
    total = as_int(data.get("total"))
    return CommentPage(
        comments=comments,
        start_at=as_int(data.get("startAt")) or 0,
        total=total if total is not None else len(comments),
    )


def inline_comments(raw: Mapping[str, Any]) -> CommentPage:
    return parse_comments(as_map(raw.get("fields")).get("comment"))


def rich_text(value: object) -> str:
    """Description or comment body: ADF (REST v3) or wiki markup (REST v2, webhooks)."""
    if isinstance(value, str):
        return wiki_to_text(value)
    if isinstance(value, Mapping):
        return adf_to_text(value)
    return ""


def parse_jira_time(value: object) -> datetime | None:
    """``2020-01-29T02:42:10.538-0600`` (Jira's form) or any ISO 8601 time."""
    parsed = parse_time(value)
    if parsed is None and isinstance(value, str):
        try:
            parsed = datetime.strptime(value.strip(), "%Y-%m-%dT%H:%M:%S.%f%z")
        except ValueError:
            return None
    return parsed


def parse_issue(
    raw: Mapping[str, Any], *, base_url: str, comments: Sequence[Comment] | None = None
) -> SourceDocument:
    """An issue from a search or ``/issue/{key}``; ``comments`` replaces the inline ones when
    the caller paged them in full."""
    key = issue_key(raw)
    if key is None:
        raise BadResponse("Jira answered an issue without a key")
    fields = as_map(raw.get("fields"))
    summary = as_str(fields.get("summary"))
    labels = tuple(label for label in (as_str(v) for v in as_list(fields.get("labels"))) if label)
    if comments is None:
        comments = inline_comments(raw).comments
    return SourceDocument(
        artifact_id=artifact_id(key),
        source="jira",
        scope_key=as_str(as_map(fields.get("project")).get("key")) or key.rsplit("-", 1)[0],
        title=f"{key}: {summary}" if summary else key,
        url=f"{base_url.rstrip('/')}/browse/{key}",
        version=as_str(fields.get("updated")) or "",
        text=issue_text(
            key,
            summary=summary,
            issue_type=as_str(as_map(fields.get("issuetype")).get("name")),
            status=as_str(as_map(fields.get("status")).get("name")),
            labels=labels,
            description=rich_text(fields.get("description")),
            comments=comments,
        ),
        updated_at=parse_jira_time(fields.get("updated")),
        labels=labels,
        # Any security level means not everyone who can see the project can see the issue.
        restricted=fields.get("security") is not None,
    )


def issue_text(
    key: str,
    *,
    summary: str | None,
    issue_type: str | None,
    status: str | None,
    labels: Sequence[str],
    description: str,
    comments: Sequence[Comment],
) -> str:
    """The indexed text. The key opens it, literally, so an exact-key search finds the issue."""
    head = [f"{key}: {summary}" if summary else key]
    if issue_type:
        head.append(f"Type: {issue_type}")
    if status:
        head.append(f"Status: {status}")
    if labels:
        head.append(f"Labels: {', '.join(labels)}")
    blocks = ["\n".join(head), description]
    for comment in comments:
        if comment.text:
            when = f" ({comment.created})" if comment.created else ""
            blocks.append(f"Comment by {comment.author}{when}: {comment.text}")
    return "\n\n".join(block for block in blocks if block.strip())


def _comment(raw: Mapping[str, Any]) -> Comment:
    author = as_map(raw.get("author"))
    created = as_str(raw.get("created")) or ""
    return Comment(
        author=as_str(author.get("displayName")) or as_str(author.get("name")) or "unknown",
        created=created[:10] if _DATE_RE.match(created) else "",
        text=rich_text(raw.get("body")),
    )


# --- JQL ---------------------------------------------------------------------------------


def jql_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def strip_order_by(jql: str) -> str:
    """``jql`` without a trailing ``ORDER BY`` clause (outside quoted strings), so it can be
    wrapped in parentheses and extended."""
    masked = []
    quote: str | None = None
    escaped = False
    for char in jql:
        if quote is not None:
            masked.append("x")
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "\"'":
            quote = char
            masked.append("x")
        else:
            masked.append(char)
    matches = list(_ORDER_BY_RE.finditer("".join(masked)))
    return (jql[: matches[-1].start()] if matches else jql).strip()


def epoch_ms(since: datetime, overlap: timedelta) -> int:
    """``since - overlap`` as epoch milliseconds: JQL compares it without any time-zone
    interpretation, unlike a date string, which Jira reads in the user's zone."""
    return int((as_utc(since) - overlap).timestamp() * 1000)


def projects_jql(projects: Sequence[str]) -> str:
    return f"project in ({','.join(jql_quote(p) for p in projects)})"


def incremental_jql(bound: str, since: datetime | None, overlap: timedelta) -> str:
    """``bound`` limited to issues updated since ``since`` (oldest first), or all of them."""
    if since is None:
        return f"{bound} ORDER BY key ASC"
    return f"{bound} AND updated >= {epoch_ms(since, overlap)} ORDER BY updated ASC"


# --- webhooks ----------------------------------------------------------------------------

_ISSUE_EVENTS: dict[str, ChangeKind] = {
    "jira:issue_created": "changed",
    "jira:issue_updated": "changed",
    "jira:issue_deleted": "deleted",
    # A comment is part of its issue's indexed text.
    "comment_created": "changed",
    "comment_updated": "changed",
    "comment_deleted": "changed",
}


def parse_jira_webhook(body: Mapping[str, Any]) -> WebhookChange | None:
    """The change a Jira delivery announces, or None when it concerns nothing indexed.

    Issue events map to their issue; comment events to the issue the comment belongs to (a
    Server comment body without ``issue`` names only the numeric issue id, so it gives None;
    Server also sends ``jira:issue_updated`` with ``issue_commented`` for the same comment).
    ``issuelink_*`` gives None: links carry only numeric issue ids and are not indexed text.
    Unknown events give None.
    """
    event = as_str(body.get("webhookEvent"))
    kind = _ISSUE_EVENTS.get(event or "")
    if event is None or kind is None:
        return None
    issue = as_map(body.get("issue"))
    key = issue_key(issue)
    if key is None:
        return None
    return WebhookChange(
        artifact_id=artifact_id(key),
        kind=kind,
        event=event,
        version=as_str(as_map(issue.get("fields")).get("updated")),
    )
