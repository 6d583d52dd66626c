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
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from core.errors import BadResponse
from core.http import DEFAULT_POLICY, RetryPolicy
from core.identities import AtlassianSite
from sync._atlassian import AtlassianHttp, Item, attempt, in_pool
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
    SourceName,
)

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


class JiraConnector:
    """:class:`~sync.source.SourceConnector` over ``JIRA_PROJECTS`` or ``JIRA_JQL``."""

    def __init__(
        self,
        site: AtlassianSite,
        *,
        projects: tuple[str, ...] = (),
        jql: str | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        timeout: float = 30,
        max_workers: int = 4,
        overlap: timedelta = timedelta(minutes=10),
        page_size: int = 100,
    ) -> None:
        if bool(projects) == bool(jql and jql.strip()):
            raise ValueError("JiraConnector needs either projects or a JQL, not both or neither")
        if page_size < 1 or max_workers < 1:
            raise ValueError("page_size and max_workers must be at least 1")
        self._cloud = site.is_cloud
        self._base = site.base_url.rstrip("/")
        self._api = f"{self._base}/rest/api/{'3' if self._cloud else '2'}"
        self._projects = tuple(projects)
        # The operator's JQL is used verbatim, minus any ORDER BY, which kb-bot sets itself.
        self._jql = strip_order_by(jql) if jql and jql.strip() else None
        if self._jql == "":
            raise ValueError("the JQL has no search condition, only an ORDER BY clause")
        self._overlap = overlap
        self._page_size = page_size
        self._http = AtlassianHttp(
            site,
            service="Jira",
            setting_prefix="JIRA",
            transport=transport,
            policy=policy,
            timeout=timeout,
        )
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="jira")

    # --- SourceConnector -----------------------------------------------------------------

    @property
    def source(self) -> SourceName:
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

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> JiraConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
        key = issue_key(raw)
        if key is None:
            log.warning("Jira listed an issue without a key; skipped")
            return None
        return attempt(
            artifact_id(key),
            lambda: parse_issue(raw, base_url=self._base, comments=self._comments(key, raw)),
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
