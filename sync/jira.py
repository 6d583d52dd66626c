"""Jira Cloud and Data Center: the sync connector and every Jira payload parser.

Cloud (``site.email`` set, Basic email:API token) searches with ``POST /rest/api/3/search/jql``
(``nextPageToken`` until ``isLast``; descriptions and comments in ADF). Data Center (no email,
Bearer personal access token) searches ``/rest/api/2/search`` by ``startAt``/``total``, paging by
what came back (wiki markup). Raw JSON never leaves this module and :mod:`sync._jira_parse`.

HTTP calls per issue: none beyond the search, except for an issue with more comments than
the search inlines, which costs one comment page per 100 comments (on the bounded pool).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Unpack

from core.errors import BadResponse, SettingsError
from core.identities import AtlassianSite
from sync._atlassian import (
    ConnectorOptions,
    Item,
    PooledConnector,
    attempt_listed,
    http_options,
    in_pool,
    key_list,
    site_from,
)
from sync._jira_parse import (
    FIELDS,
    Comment,
    CommentPage,
    SearchPage,
    artifact_id,
    epoch_ms,
    incremental_jql,
    inline_comments,
    issue_key,
    issue_text,
    jql_quote,
    key_of,
    parse_comments,
    parse_issue,
    parse_jira_time,
    parse_jira_webhook,
    parse_search_page,
    projects_jql,
    rich_text,
    strip_order_by,
)
from sync.source import (
    OutsideSelection,
    ScopeListing,
    SourceConnector,
    SourceDocument,
    SourceSpec,
)
from sync.webhook_events import WebhookChange

__all__ = [
    "ALL_SCOPE",
    "FIELDS",
    "Comment",
    "CommentPage",
    "JiraConnector",
    "SearchPage",
    "artifact_id",
    "epoch_ms",
    "incremental_jql",
    "issue_text",
    "key_of",
    "parse_comments",
    "parse_issue",
    "parse_jira_time",
    "parse_jira_webhook",
    "parse_search_page",
    "rich_text",
    "strip_order_by",
]

log = logging.getLogger(__name__)

ALL_SCOPE = "*"  # the single scope of a JIRA_JQL setup
_COMMENT_PAGE = 100
_ID_PAGE_SIZE = 1000  # key-only searches are cheap; Jira caps the page size itself


class JiraConnector(PooledConnector):
    """:class:`~sync.source.SourceConnector` over ``JIRA_PROJECTS`` or ``JIRA_JQL``."""

    def __init__(
        self,
        site: AtlassianSite,
        *,
        projects: tuple[str, ...] = (),
        jql: str | None = None,
        **options: Unpack[ConnectorOptions],
    ) -> None:
        if bool(projects) == bool(jql and jql.strip()):
            raise ValueError("JiraConnector needs either projects or a JQL, not both or neither")
        self._cloud = site.is_cloud
        self._base = site.base_url.rstrip("/")
        self._api = f"{self._base}/rest/api/{'3' if self._cloud else '2'}"
        self._projects = tuple(projects)
        # The operator's JQL is used verbatim, minus any ORDER BY, which kb-bot sets itself.
        self._jql = strip_order_by(jql) if jql and jql.strip() else None
        if self._jql == "":
            raise ValueError("the JQL has no search condition, only an ORDER BY clause")
        self._open_clients(site, "Jira", options, max_page=10_000)

    # --- SourceConnector -----------------------------------------------------------------

    @property
    def source(self) -> str:
        return "jira"

    def scopes(self) -> tuple[str, ...]:
        return (ALL_SCOPE,) if self._jql is not None else self._projects

    def changed(self, scope_key: str, since: datetime | None) -> Iterator[Item]:
        jql = incremental_jql(self._bound(scope_key), since, self._overlap)
        log.debug("Jira JQL: %s", jql)
        for issues in self._search(jql, FIELDS, self._page_size):
            yield from in_pool(self._pool, issues, self._document)

    def list_ids(self, scope_key: str) -> ScopeListing:
        jql = incremental_jql(self._bound(scope_key), None, self._overlap)
        ids = {
            artifact_id(key)
            for issues in self._search(jql, ("key",), _ID_PAGE_SIZE)
            for raw in issues
            if (key := issue_key(raw))
        }
        return ScopeListing(scope_key=scope_key, artifact_ids=frozenset(ids))

    def fetch(self, artifact_id: str) -> SourceDocument | None:
        """The issue, or None when it is gone or was moved to another key (the old id no
        longer exists; the new key is synced under its own id). Raises OutsideSelection when
        a scheduled sync would not index it: its project is not in ``JIRA_PROJECTS``, or
        ``key = KEY AND (<JIRA_JQL>)`` finds nothing (one key-only search). Security levels
        are the engine's to apply, as in a scheduled sync."""
        key = key_of(artifact_id)
        raw = self._http.get_or_none(f"{self._api}/issue/{key}", {"fields": ",".join(FIELDS)})
        if raw is None:
            return None
        found = issue_key(raw)
        if found is None:
            raise BadResponse(f"Jira answered {key} without an issue key")
        if found.upper() != key.upper():
            log.info("jira:%s has moved to %s", key, found)
            return None
        document = parse_issue(raw, base_url=self._base, comments=self._comments(found, raw))
        if self._projects and document.scope_key.upper() not in {p.upper() for p in self._projects}:
            raise OutsideSelection(
                f"{artifact_id} is in project {document.scope_key}, which is not synced"
            )
        if self._jql is not None:
            # The same JQL a scheduled run searches with, narrowed to this one issue.
            matched = next(self._search(f"key = {found} AND ({self._jql})", ("key",), 1), ())
            if not any(issue_key(hit) == found for hit in matched):
                raise OutsideSelection(f"{artifact_id} does not match JIRA_JQL")
        return document

    # --- internals -------------------------------------------------------------------------

    def _bound(self, scope_key: str) -> str:
        """The bounded JQL of a scope (Cloud refuses unbounded searches)."""
        if self._jql is not None:
            bound = f"({self._jql})"
            if scope_key == ALL_SCOPE:
                return bound
            return f"{bound} AND project = {jql_quote(scope_key)}"
        return projects_jql(self._projects if scope_key == ALL_SCOPE else (scope_key,))

    def _search(
        self, jql: str, fields: Sequence[str], page_size: int
    ) -> Iterator[tuple[Mapping[str, Any], ...]]:
        if self._cloud:
            yield from self._search_cloud(jql, fields, page_size)
        else:
            yield from self._search_dc(jql, fields, page_size)

    def _search_cloud(
        self, jql: str, fields: Sequence[str], page_size: int
    ) -> Iterator[tuple[Mapping[str, Any], ...]]:
        # POST: JQL can be long, and a body never ends up in an access log's URL column.
        token: str | None = None
        seen: set[str] = set()
        while True:
            body: dict[str, Any] = {"jql": jql, "fields": list(fields), "maxResults": page_size}
            if token is not None:
                body["nextPageToken"] = token
            page = parse_search_page(self._http.post(f"{self._api}/search/jql", body))
            if page.issues:
                yield page.issues
            if page.is_last or page.next_page_token is None:
                return
            if page.next_page_token in seen:
                raise BadResponse("Jira search paging did not advance (nextPageToken repeated)")
            token = page.next_page_token
            seen.add(token)

    def _search_dc(
        self, jql: str, fields: Sequence[str], page_size: int
    ) -> Iterator[tuple[Mapping[str, Any], ...]]:
        start = 0
        while True:
            params = {
                "jql": jql,
                "startAt": str(start),
                "maxResults": str(page_size),
                "fields": ",".join(fields),
            }
            page: SearchPage = parse_search_page(self._http.get(f"{self._api}/search", params))
            if not page.issues:
                return
            yield page.issues
            # Data Center may cap maxResults silently: advance by what came back.
            start += len(page.issues)
            if page.total is not None and start >= page.total:
                return

    def _document(self, raw: Mapping[str, Any]) -> Item | None:
        return attempt_listed(
            issue_key(raw),
            "a Jira issue",
            artifact_id,
            lambda key: parse_issue(raw, base_url=self._base, comments=self._comments(key, raw)),
        )

    def _comments(self, key: str, raw: Mapping[str, Any]) -> tuple[Comment, ...]:
        """All comments: the inline ones when complete, else every page of ``/comment``."""
        inline = inline_comments(raw)
        if inline.total <= len(inline.comments):
            return inline.comments
        comments: list[Comment] = []
        while True:
            page: CommentPage = parse_comments(
                self._http.get(
                    f"{self._api}/issue/{key}/comment",
                    {"startAt": str(len(comments)), "maxResults": str(_COMMENT_PAGE)},
                )
            )
            if not page.comments:
                break
            comments.extend(page.comments)
            if len(comments) >= page.total:
                break
        return tuple(comments)


if TYPE_CHECKING:
    # mypy proves the connector satisfies the engine's protocol.
    _conforms: type[SourceConnector] = JiraConnector


def connect_jira(values: Mapping[str, str]) -> JiraConnector | None:
    """The connector over JIRA_PROJECTS or JIRA_JQL, or None when JIRA_BASE_URL is not set."""
    site = site_from(values, "JIRA")
    if site is None:
        return None
    jql = values.get("JIRA_JQL", "").strip() or None
    options = http_options(values, "JIRA")
    return JiraConnector(site, projects=key_list(values, "JIRA_PROJECTS"), jql=jql, **options)


def check_jira(values: Mapping[str, str]) -> None:
    """A configured site needs its credentials and either project keys or a JQL, not both."""
    projects = key_list(values, "JIRA_PROJECTS")
    jql = values.get("JIRA_JQL", "").strip()
    if projects and jql:
        raise SettingsError("JIRA_JQL", "set JIRA_PROJECTS or JIRA_JQL, not both")
    if site_from(values, "JIRA") is not None and not projects and not jql:
        raise SettingsError("JIRA_PROJECTS", "is empty; name project keys (or set JIRA_JQL)")


def _parse_webhook(path_event: str | None, body: Mapping[str, Any]) -> WebhookChange | None:
    return parse_jira_webhook(body)  # Jira names the event in the body


JIRA = SourceSpec(
    name="jira",
    scope_noun="PROJECT",
    settings_keys=(
        "JIRA_BASE_URL",
        "JIRA_EMAIL",
        "JIRA_API_TOKEN",
        "JIRA_PROJECTS",
        "JIRA_JQL",
        "JIRA_TIMEOUT",
        "JIRA_ATTEMPTS",
    ),
    enabled_by="JIRA_BASE_URL",
    connect=connect_jira,
    parse_webhook=_parse_webhook,
    event_field="webhookEvent",
    label="Jira",
    keys_setting="JIRA_PROJECTS",
    query_setting="JIRA_JQL",
    check=check_jira,
)
