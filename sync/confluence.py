"""Confluence Cloud and Data Center: the sync connector and every Confluence payload parser.

Cloud (``site.email`` set, Basic email:API token) lists pages with REST v2 and finds changes with
CQL through REST v1 search. Data Center (no email, Bearer personal access token) uses REST v1
for both. Raw JSON never leaves this module and :mod:`sync._confluence_parse`.

HTTP calls per page:

* Cloud full listing: the v2 list carries bodies but neither labels nor restrictions, so each
  page costs one v1 read (``/rest/api/content/{id}?expand=metadata.labels,restrictions...``),
  run on a bounded thread pool.
* Cloud incremental and every Data Center listing: none; the v1 answer is expanded with
  body, version, space, labels and read restrictions.
* ``fetch`` on Cloud: the v2 page plus the v1 read (plus the space key, cached per id).
* Mentioned users: one lookup per distinct user, cached for a run; a failed lookup reads
  ``@user``.

Only a page's own read restrictions are seen; restrictions inherited from an ancestor would
cost a call per ancestor and are not checked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Unpack

from core.errors import BadResponse, KbError, SettingsError
from core.identities import AtlassianSite
from sync._atlassian import (
    ConnectorOptions,
    Item,
    PooledConnector,
    as_map,
    as_str,
    attempt_listed,
    http_options,
    in_pool,
    key_list,
    resolve_link,
    site_from,
)
from sync._confluence_parse import (
    META_EXPAND,
    V1_EXPAND,
    PageMeta,
    artifact_id,
    content_id,
    content_status,
    content_type,
    cql_changed_since,
    cql_minute,
    is_restricted,
    labels_of,
    links_base,
    next_link,
    page_body_text,
    page_id_of,
    parse_confluence_webhook,
    parse_meta,
    parse_v1_content,
    parse_v2_page,
    space_ids,
    space_key_of,
    v1_results,
    v2_results,
)
from sync.source import (
    OutsideSelection,
    ScopeListing,
    SourceConnector,
    SourceDocument,
    SourceName,
    SourceSpec,
)

__all__ = [
    "ConfluenceConnector",
    "PageMeta",
    "artifact_id",
    "cql_changed_since",
    "cql_minute",
    "is_restricted",
    "labels_of",
    "page_body_text",
    "page_id_of",
    "parse_confluence_webhook",
    "parse_meta",
    "parse_v1_content",
    "parse_v2_page",
    "space_ids",
    "v1_results",
    "v2_results",
]

log = logging.getLogger(__name__)

_V2_MAX_LIMIT = 250  # v2 lists answer at most 250 per page
_ID_PAGE_SIZE = 250  # id-only listings are cheap: ask for big pages


class ConfluenceConnector(PooledConnector):
    """:class:`~sync.source.SourceConnector` over the configured Confluence spaces."""

    def __init__(
        self,
        site: AtlassianSite,
        spaces: tuple[str, ...],
        **options: Unpack[ConnectorOptions],
    ) -> None:
        self._cloud = site.is_cloud
        base = site.base_url.rstrip("/")
        if self._cloud and not base.endswith("/wiki"):
            base += "/wiki"  # Cloud serves Confluence (REST and pages) under /wiki
        # REST v1 lives at {base}/rest/api, v2 (Cloud) at {base}/api/v2, pages at {base}/...
        self._base = base
        self._spaces = tuple(spaces)
        self._open_clients(site, "Confluence", options, max_page=_V2_MAX_LIMIT)
        self._lock = threading.Lock()
        self._space_id_by_key: dict[str, str] = {}
        self._space_key_by_id: dict[str, str] = {}
        self._users: dict[str, Future[str | None]] = {}

    # --- SourceConnector -----------------------------------------------------------------

    @property
    def source(self) -> SourceName:
        return "confluence"

    def scopes(self) -> tuple[str, ...]:
        return self._spaces

    def changed(self, scope_key: str, since: datetime | None) -> Iterator[Item]:
        with self._lock:
            self._users.clear()  # display names are cached for one run
        if since is not None:
            yield from self._search(scope_key, cql_changed_since(scope_key, since, self._overlap))
        elif self._cloud:
            yield from self._cloud_listing(scope_key)
        else:
            yield from self._dc_listing(scope_key)

    def list_ids(self, scope_key: str) -> ScopeListing:
        ids: set[str] = set()
        if self._cloud:
            url = f"{self._base}/api/v2/spaces/{self._space_id(scope_key)}/pages"
            params = {"status": "current", "limit": str(_ID_PAGE_SIZE)}
            for payload in self._follow(url, params):
                ids.update(self._current_ids(v2_results(payload)))
        else:
            url = f"{self._base}/rest/api/content"
            params = {"spaceKey": scope_key, "type": "page", "status": "current", "expand": ""}
            for results, _ in self._offsets(url, params, limit=_ID_PAGE_SIZE):
                ids.update(self._current_ids(results))
        return ScopeListing(scope_key=scope_key, artifact_ids=frozenset(ids))

    def fetch(self, artifact_id: str) -> SourceDocument | None:
        """The page, or None when it is gone, not current (trashed, draft, archived) or not a
        page; raises OutsideSelection when it lies outside ``CONFLUENCE_SPACES``. Read
        restrictions are the engine's to apply, as in a scheduled sync."""
        page_id = page_id_of(artifact_id)
        document = self._fetch_cloud(page_id) if self._cloud else self._fetch_dc(page_id)
        if document is None:
            return None
        if document.scope_key.upper() not in {space.upper() for space in self._spaces}:
            raise OutsideSelection(
                f"{artifact_id} is in space {document.scope_key}, which is not synced"
            )
        return document

    # --- listings --------------------------------------------------------------------------

    def _cloud_listing(self, scope_key: str) -> Iterator[Item]:
        space_id = self._space_id(scope_key)
        space_key = self._space_key_by_id.get(space_id, scope_key)
        url = f"{self._base}/api/v2/spaces/{space_id}/pages"
        params = {"body-format": "storage", "status": "current", "limit": str(self._page_size)}
        for payload in self._follow(url, params):
            work = partial(self._cloud_document, space_key=space_key, web_base=links_base(payload))
            yield from in_pool(self._pool, self._current(v2_results(payload)), work)

    def _dc_listing(self, scope_key: str) -> Iterator[Item]:
        url = f"{self._base}/rest/api/content"
        params = {"spaceKey": scope_key, "type": "page", "status": "current", "expand": V1_EXPAND}
        for results, web_base in self._offsets(url, params, limit=self._page_size):
            work = partial(self._v1_document, space_key=scope_key, web_base=web_base)
            yield from in_pool(self._pool, self._current(results), work)

    def _search(self, scope_key: str, cql: str) -> Iterator[Item]:
        url = f"{self._base}/rest/api/content/search"
        params = {"cql": cql, "expand": V1_EXPAND}
        log.debug("Confluence CQL: %s", cql)
        batches: Iterator[tuple[list[Mapping[str, Any]], str | None]]
        if self._cloud:
            # Cloud pages search results with an opaque cursor in _links.next.
            batches = (
                (v1_results(payload), links_base(payload))
                for payload in self._follow(url, {**params, "limit": str(self._page_size)})
            )
        else:
            batches = self._offsets(url, params, limit=self._page_size)
        for results, web_base in batches:
            work = partial(self._v1_document, space_key=scope_key, web_base=web_base)
            yield from in_pool(self._pool, self._current(results), work)

    def _current(self, results: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Current pages only: search can briefly return trashed pages, and blog posts are not
        synced."""
        return [
            raw
            for raw in results
            if content_status(raw) == "current" and content_type(raw) == "page"
        ]

    def _current_ids(self, results: list[Mapping[str, Any]]) -> set[str]:
        return {artifact_id(pid) for raw in self._current(results) if (pid := content_id(raw))}

    def _follow(self, url: str, params: Mapping[str, str]) -> Iterator[Any]:
        """Payloads of a list paged by ``_links.next`` (v2 cursors, Cloud v1 search)."""
        seen = {url}
        current: str | None = url
        query: Mapping[str, str] | None = params
        while current is not None:
            payload = self._http.get(current, query)
            yield payload
            link = next_link(payload)
            if link is None or not as_map(payload).get("results"):
                return
            current = resolve_link(self._base, link, service="Confluence")
            if current in seen:
                raise BadResponse(f"Confluence paging did not advance at {url}")
            seen.add(current)
            query = None  # the link carries every parameter, including the cursor

    def _offsets(
        self, url: str, params: Mapping[str, str], *, limit: int
    ) -> Iterator[tuple[list[Mapping[str, Any]], str | None]]:
        """v1 ``start``/``limit`` pages. Data Center may silently answer fewer than ``limit``,
        so ``start`` advances by what came back; an empty page or no ``_links.next`` ends."""
        start = 0
        while True:
            payload = self._http.get(url, {**params, "start": str(start), "limit": str(limit)})
            results = v1_results(payload)
            if not results:
                return
            yield results, links_base(payload)
            start += len(results)
            if next_link(payload) is None:
                return

    # --- single pages ------------------------------------------------------------------------

    def _cloud_document(
        self, raw: Mapping[str, Any], *, space_key: str, web_base: str | None
    ) -> Item | None:
        def produce(page_id: str) -> SourceDocument | None:
            meta = self._meta(page_id)
            if meta is None:
                return None  # deleted since it was listed
            return parse_v2_page(
                raw,
                space_key=space_key,
                web_base=web_base or self._base,
                meta=meta,
                user_name=self._user_name,
            )

        return attempt_listed(content_id(raw), "a Confluence page", artifact_id, produce)

    def _v1_document(
        self, raw: Mapping[str, Any], *, space_key: str, web_base: str | None
    ) -> Item | None:
        return attempt_listed(
            content_id(raw),
            "a Confluence page",
            artifact_id,
            lambda _: parse_v1_content(
                raw,
                web_base=web_base or self._base,
                space_key=space_key,
                user_name=self._user_name,
            ),
        )

    def _fetch_cloud(self, page_id: str) -> SourceDocument | None:
        payload = self._http.get_or_none(
            f"{self._base}/api/v2/pages/{page_id}", {"body-format": "storage"}
        )
        raw = as_map(payload)
        if payload is None or content_status(raw) != "current":
            return None
        space_id = as_str(raw.get("spaceId"))
        if space_id is None:
            raise BadResponse(f"Confluence page {page_id} came without its spaceId")
        meta = self._meta(page_id)
        if meta is None:
            return None
        return parse_v2_page(
            raw,
            space_key=self._space_key(space_id),
            web_base=self._base,
            meta=meta,
            user_name=self._user_name,
        )

    def _fetch_dc(self, page_id: str) -> SourceDocument | None:
        payload = self._http.get_or_none(
            f"{self._base}/rest/api/content/{page_id}", {"expand": V1_EXPAND}
        )
        raw = as_map(payload)
        if payload is None or content_status(raw) != "current" or content_type(raw) != "page":
            return None
        return parse_v1_content(raw, web_base=self._base, user_name=self._user_name)

    def _meta(self, page_id: str) -> PageMeta | None:
        """Labels and read restrictions of one page (one v1 read); None when it is gone."""
        payload = self._http.get_or_none(
            f"{self._base}/rest/api/content/{page_id}", {"expand": META_EXPAND}
        )
        return None if payload is None else parse_meta(as_map(payload))

    # --- spaces and users ------------------------------------------------------------------

    def _space_id(self, key: str) -> str:
        with self._lock:
            cached = self._space_id_by_key.get(key.upper())
        if cached is not None:
            return cached
        found = space_ids(self._http.get(f"{self._base}/api/v2/spaces", {"keys": key}))
        match = next(((k, i) for k, i in found.items() if k.upper() == key.upper()), None)
        if match is None:
            raise SettingsError(
                "CONFLUENCE_SPACES",
                f"space {key!r} was not found on {self._base} (or the token cannot read it)",
            )
        with self._lock:
            self._space_id_by_key[key.upper()] = match[1]
            self._space_key_by_id[match[1]] = match[0]
        return match[1]

    def _space_key(self, space_id: str) -> str:
        with self._lock:
            cached = self._space_key_by_id.get(space_id)
        if cached is not None:
            return cached
        key = space_key_of(self._http.get(f"{self._base}/api/v2/spaces/{space_id}"))
        if key is None:
            raise BadResponse(f"Confluence space {space_id} came without a key")
        with self._lock:
            self._space_key_by_id[space_id] = key
            self._space_id_by_key[key.upper()] = space_id
        return key

    def _user_name(self, key: str) -> str | None:
        """Display name for a mentioned user (Cloud account id, Data Center user key or
        name); None, read as ``@user``, when the lookup fails.

        One lookup per user per run, even when several pool threads meet the same mention
        at once: the first asks, the others wait for its answer.
        """
        with self._lock:
            answer = self._users.get(key)
            asking = answer is None
            if answer is None:
                answer = self._users[key] = Future()
        if asking:
            name: str | None = None
            try:
                name = self._lookup_user(key)
            finally:
                answer.set_result(name)
        return answer.result()

    def _lookup_user(self, key: str) -> str | None:
        url = f"{self._base}/rest/api/user"
        lookups = [{"accountId": key}] if self._cloud else [{"key": key}, {"username": key}]
        try:
            for params in lookups:
                user = as_map(self._http.get_or_none(url, params))
                name = as_str(user.get("displayName")) or as_str(user.get("publicName"))
                if name:
                    return name
        except KbError as exc:
            # Browsing users may need a permission the token lacks; a mention is not worth
            # failing a page for.
            log.info("a mentioned Confluence user could not be resolved: %s", exc)
        return None


if TYPE_CHECKING:
    # mypy proves the connector satisfies the engine's protocol.
    _conforms: type[SourceConnector] = ConfluenceConnector


def connect_confluence(values: Mapping[str, str]) -> ConfluenceConnector | None:
    """The connector over CONFLUENCE_SPACES, or None when CONFLUENCE_BASE_URL is not set."""
    site = site_from(values, "CONFLUENCE")
    if site is None:
        return None
    options = http_options(values, "CONFLUENCE")
    return ConfluenceConnector(site, key_list(values, "CONFLUENCE_SPACES"), **options)


def check_confluence(values: Mapping[str, str]) -> None:
    """A configured site needs its credentials and at least one space key."""
    if site_from(values, "CONFLUENCE") is not None and not key_list(values, "CONFLUENCE_SPACES"):
        raise SettingsError(
            "CONFLUENCE_SPACES", "is empty; name the space keys to sync, e.g. ENG,OPS"
        )


CONFLUENCE = SourceSpec(
    name="confluence",
    scope_noun="SPACE",
    settings_keys=(
        "CONFLUENCE_BASE_URL",
        "CONFLUENCE_EMAIL",
        "CONFLUENCE_API_TOKEN",
        "CONFLUENCE_SPACES",
        "CONFLUENCE_TIMEOUT",
        "CONFLUENCE_ATTEMPTS",
    ),
    enabled_by="CONFLUENCE_BASE_URL",
    connect=connect_confluence,
    parse_webhook=parse_confluence_webhook,
    label="Confluence",
    keys_setting="CONFLUENCE_SPACES",
    check=check_confluence,
)
