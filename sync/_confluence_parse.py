"""Confluence payloads (REST v1, REST v2, webhooks) to kb-bot types. Pure functions, no I/O.

Private to :mod:`sync.confluence`, which re-exports what others may call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.errors import BadResponse
from sync._atlassian import as_int, as_list, as_map, as_str, as_utc, load_json_text, parse_time
from sync.adf import adf_to_text
from sync.source import SourceDocument
from sync.storage_format import storage_to_text
from sync.webhook_events import ChangeKind, WebhookChange

UserNames = Callable[[str], str | None]

# Restrictions ride along with every v1 read, so one call says both what a page says and who
# may read it. Only the page's own read restrictions: inherited ones need its ancestors.
RESTRICTIONS_EXPAND = "restrictions.read.restrictions.user,restrictions.read.restrictions.group"
META_EXPAND = f"metadata.labels,{RESTRICTIONS_EXPAND}"
V1_EXPAND = f"body.storage,version,space,{META_EXPAND}"

_PREFIX = "confluence:"
_SPACE_PATH_RE = re.compile(r"/space/([^/?#]+)")
# Readable body representations, best first; view/export_view are HTML, which the storage
# converter reads as well.
_HTML_BODIES = ("storage", "view", "export_view", "styled_view", "editor")


@dataclass(frozen=True)
class PageMeta:
    """What the v2 page list leaves out: labels and whether the page has read restrictions."""

    labels: tuple[str, ...]
    restricted: bool


# --- ids ---------------------------------------------------------------------------------


def artifact_id(page_id: str) -> str:
    return f"{_PREFIX}{page_id}"


def page_id_of(artifact: str) -> str:
    """The page id of ``confluence:<id>``; ids are ASCII digits, which also keeps them URL-safe
    (``str.isdigit`` alone accepts "²" and Arabic-Indic digits)."""
    page_id = artifact[len(_PREFIX) :]
    if not artifact.startswith(_PREFIX) or not (page_id.isascii() and page_id.isdigit()):
        raise ValueError(f"not a Confluence artifact id: {artifact!r}")
    return artifact[len(_PREFIX) :]


def content_id(raw: Mapping[str, Any]) -> str | None:
    """``id`` as text: an int in v1 and older webhooks, a string in v2 and newer ones."""
    value = as_str(raw.get("id"))
    return value if value is not None and value.isascii() and value.isdigit() else None


def content_status(raw: Mapping[str, Any]) -> str:
    return as_str(raw.get("status")) or "current"


def content_type(raw: Mapping[str, Any]) -> str:
    return as_str(raw.get("type")) or as_str(raw.get("contentType")) or "page"


# --- list payloads -----------------------------------------------------------------------


def v1_results(payload: object) -> list[Mapping[str, Any]]:
    """Content objects of a v1 list (``/content``, ``/content/search``, the ``/search``
    wrapper whose entries hold ``content``), or of a bare list of them."""
    if isinstance(payload, list):
        items = payload
    else:
        results = as_map(payload).get("results")
        if not isinstance(results, list):
            raise BadResponse("Confluence answered a list request without a results list")
        items = results
    out: list[Mapping[str, Any]] = []
    for item in items:
        entry = as_map(item)
        if "content" in entry and "id" not in entry:
            entry = as_map(entry["content"])
        if entry:
            out.append(entry)
    return out


def v2_results(payload: object) -> list[Mapping[str, Any]]:
    results = as_map(payload).get("results")
    if not isinstance(results, list):
        raise BadResponse("Confluence answered a v2 list request without a results list")
    return [as_map(item) for item in results if as_map(item)]


def links_base(payload: object) -> str | None:
    """``_links.base``: the browser-facing base URL (with ``/wiki`` on Cloud, the context path
    on Data Center) that ``webui`` links are relative to."""
    return as_str(as_map(as_map(payload).get("_links")).get("base"))


def next_link(payload: object) -> str | None:
    return as_str(as_map(as_map(payload).get("_links")).get("next"))


def space_ids(payload: object) -> dict[str, str]:
    """Space key -> space id from a space list (v1 ids are ints, v2 ids strings)."""
    out: dict[str, str] = {}
    for item in as_list(as_map(payload).get("results")):
        space = as_map(item)
        key, ident = as_str(space.get("key")), as_str(space.get("id"))
        if key and ident:
            out[key] = ident
    return out


def space_key_of(payload: object) -> str | None:
    return as_str(as_map(payload).get("key"))


# --- pages -------------------------------------------------------------------------------


def labels_of(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Label names from v1 ``metadata.labels`` or v2 ``labels`` (``include-labels``)."""
    container = as_map(as_map(raw.get("metadata")).get("labels")) or as_map(raw.get("labels"))
    names = (as_str(as_map(label).get("name")) for label in as_list(container.get("results")))
    return tuple(name for name in names if name)


def is_restricted(raw: Mapping[str, Any]) -> bool:
    """Whether the content has read restrictions of its own.

    Reads v1 ``restrictions.read.restrictions`` or the body of
    ``/content/{id}/restriction/byOperation/read``.
    """
    read = as_map(as_map(raw.get("restrictions")).get("read"))
    if not read and as_str(raw.get("operation")) == "read":
        read = raw
    restrictions = as_map(read.get("restrictions"))
    for kind in ("user", "group"):
        holder = as_map(restrictions.get(kind))
        if as_list(holder.get("results")) or (as_int(holder.get("size")) or 0) > 0:
            return True
    return False


def parse_meta(raw: Mapping[str, Any]) -> PageMeta:
    return PageMeta(labels=labels_of(raw), restricted=is_restricted(raw))


def page_body_text(body: object, user_name: UserNames | None = None) -> str:
    """Plain text of a ``body`` object: storage (or another HTML representation), else ADF.

    An absent body is empty text; a body whose value is not text is a BadResponse, so the
    page becomes a FetchFailure instead of being indexed empty.
    """
    holder = as_map(body)
    for representation in _HTML_BODIES:
        if representation in holder:
            value = as_map(holder[representation]).get("value")
            if not isinstance(value, str):
                raise BadResponse(f"the {representation} body is not text")
            return storage_to_text(value, user_name=user_name)
    if "atlas_doc_format" in holder:
        value = as_map(holder["atlas_doc_format"]).get("value")
        doc = load_json_text(value) if isinstance(value, str) else value
        if not isinstance(doc, Mapping):
            raise BadResponse("the atlas_doc_format body is not a document")
        return adf_to_text(doc)
    return ""


def web_url(base: str, raw: Mapping[str, Any], page_id: str) -> str:
    webui = as_str(as_map(raw.get("_links")).get("webui"))
    if webui is None:
        # Every Confluence, Cloud or Data Center, still answers this form.
        webui = f"/pages/viewpage.action?pageId={page_id}"
    if "://" in webui:
        return webui
    return base.rstrip("/") + ("" if webui.startswith("/") else "/") + webui


def parse_v1_content(
    raw: Mapping[str, Any],
    *,
    web_base: str,
    space_key: str | None = None,
    user_name: UserNames | None = None,
) -> SourceDocument:
    """A v1 content object (``/rest/api/content``, CQL search) expanded with ``V1_EXPAND``.

    ``web_base`` is used when the object carries no ``_links.base`` of its own (list entries
    do not; single reads do); ``space_key`` when it carries neither ``space`` nor a space link.
    """
    page_id = _required_id(raw)
    version = as_map(raw.get("version"))
    history = as_map(raw.get("history"))
    return SourceDocument(
        artifact_id=artifact_id(page_id),
        source="confluence",
        scope_key=_space_key(raw, space_key, page_id),
        title=as_str(raw.get("title")) or "",
        url=web_url(links_base(raw) or web_base, raw, page_id),
        version=as_str(version.get("number")) or "",
        text=page_body_text(raw.get("body"), user_name),
        updated_at=parse_time(version.get("when"))
        or parse_time(as_map(history.get("lastUpdated")).get("when"))
        or parse_time(history.get("createdDate")),
        labels=labels_of(raw),
        restricted=is_restricted(raw),
    )


def parse_v2_page(
    raw: Mapping[str, Any],
    *,
    space_key: str,
    web_base: str,
    meta: PageMeta | None = None,
    user_name: UserNames | None = None,
) -> SourceDocument:
    """A v2 page (``/api/v2/pages/{id}``, ``/api/v2/spaces/{id}/pages``) with its body.

    v2 answers carry ``spaceId`` but no key, no restrictions and (in lists) no labels: the
    caller supplies the key and ``meta``. ``_links.webui`` is relative to the ``/wiki`` base.
    """
    page_id = _required_id(raw)
    version = as_map(raw.get("version"))
    labels = meta.labels if meta is not None else labels_of(raw)
    return SourceDocument(
        artifact_id=artifact_id(page_id),
        source="confluence",
        scope_key=space_key,
        title=as_str(raw.get("title")) or "",
        url=web_url(links_base(raw) or web_base, raw, page_id),
        version=as_str(version.get("number")) or "",
        text=page_body_text(raw.get("body"), user_name),
        updated_at=parse_time(version.get("createdAt")) or parse_time(raw.get("createdAt")),
        labels=labels,
        restricted=meta.restricted if meta is not None else False,
    )


def _required_id(raw: Mapping[str, Any]) -> str:
    page_id = content_id(raw)
    if page_id is None:
        raise BadResponse("Confluence content without a numeric id")
    return page_id


def _space_key(raw: Mapping[str, Any], fallback: str | None, page_id: str) -> str:
    key = as_str(as_map(raw.get("space")).get("key"))
    if key is None:
        # Unexpanded: "_expandable": {"space": "/rest/api/space/KEY"}.
        expandable = as_map(raw.get("_expandable"))
        for link in (expandable.get("space"), expandable.get("container")):
            match = _SPACE_PATH_RE.search(as_str(link) or "")
            if match:
                key = match.group(1)
                break
    key = key or fallback
    if key is None:
        raise BadResponse(f"Confluence page {page_id} came without its space")
    return key


# --- queries -----------------------------------------------------------------------------


def cql_minute(since: datetime, overlap: timedelta) -> str:
    """``since - overlap`` in UTC, rounded down to the minute, as CQL wants it.

    CQL has minute precision and, on some sites, compares in the querying user's time zone;
    the overlap window absorbs that skew and the search index's eventual consistency.
    """
    moment = as_utc(since) - overlap
    return moment.strftime("%Y-%m-%d %H:%M")


def cql_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cql_changed_since(space_key: str, since: datetime, overlap: timedelta) -> str:
    return (
        f"type=page and space in ({cql_quote(space_key)}) and "
        f"lastmodified >= {cql_quote(cql_minute(since, overlap))} order by lastmodified asc"
    )


# --- webhooks ----------------------------------------------------------------------------

_CHANGED_ACTIONS = frozenset({"created", "updated", "restored", "moved"})
_DELETED_ACTIONS = frozenset({"trashed", "removed", "deleted", "purged"})
# Content kinds whose ids are artifact ids; comments, attachments and content properties
# have ids of their own and do not change a page's indexed text.
_INDEXED_TYPES = frozenset({"page", "blogpost", "blog"})


def parse_confluence_webhook(event: str | None, body: Mapping[str, Any]) -> WebhookChange | None:
    """The change a Confluence delivery announces, or None when it concerns nothing indexed.

    ``event`` comes from the URL path for Cloud (Connect bodies carry no event name); Data
    Center bodies carry ``event``. ``page_*``/``blog_*``: trashed/removed -> deleted,
    created/updated/restored/moved -> changed. ``content_*`` counts only for pages and blog
    posts, ``label_*`` means the labelled page changed; comments, attachments, spaces and
    content properties -> None, as are unknown events.
    """
    name = _event_name(event) or _event_name(as_str(body.get("event")))
    if name is None:
        return None
    subject, _, action = name.partition("_")
    if subject in ("page", "blog", "blogpost"):
        target = as_map(body.get("page") or body.get("blog") or body.get("blogpost"))
        if not target:
            target = as_map(body.get("content"))
        if target and content_type(target) not in _INDEXED_TYPES:
            return None
    elif subject == "content":
        target = as_map(body.get("content")) or (body if "id" in body else {})
        if content_type(target) not in _INDEXED_TYPES:
            return None
    elif subject == "label" and action in ("added", "removed", "deleted"):
        target = as_map(body.get("labeled") or body.get("content") or body.get("page"))
        if content_type(target) not in _INDEXED_TYPES:
            return None
        return _change(target, "changed", name)
    else:
        return None
    kind: ChangeKind
    if action in _DELETED_ACTIONS:
        kind = "deleted"
    elif action in _CHANGED_ACTIONS or action == "permissions_updated":
        kind = "changed"
    else:
        return None
    return _change(target, kind, name)


def _event_name(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    # "page-created", "PAGE_CREATED", "/page_created" all name the same event.
    return value.strip().strip("/").lower().replace("-", "_") or None


def _change(target: Mapping[str, Any], kind: ChangeKind, event: str) -> WebhookChange | None:
    page_id = content_id(target)
    if page_id is None:
        return None
    version = target.get("version")
    number = as_str(as_map(version).get("number")) if isinstance(version, Mapping) else None
    return WebhookChange(
        artifact_id=artifact_id(page_id),
        kind=kind,
        event=event,
        version=number or as_str(version),
    )
