"""Fake Confluence and Jira servers (Cloud and Data Center) on 127.0.0.1, driven by test data.

They answer in the shapes of ``../shared/fixtures/rest_responses/`` from an in-memory set of
spaces, pages and issues the test controls, check credentials like the real thing, and can be
told to misbehave::

    with FakeConfluence(cloud=True) as confluence:
        page = confluence.add_page("ENG", "Runbook", "<p>Restart it.</p>", labels=["ops"])
        connector = ConfluenceConnector(confluence.site(), ("ENG",), policy=FAST)
        confluence.edit_page(page.id, body="<p>Restart it twice.</p>")   # version 2
        confluence.trash_page(page.id)                                   # gone from listings
        confluence.rate_limit("/api/v2/spaces", retry_after=1)           # next call: 429
        confluence.fail(f"/rest/api/content/{page.id}", times=None)     # 500 for ever
        confluence.requests_to("/api/v2/spaces/")                        # what the client sent

Faults match a substring of the request path (or a compiled regex), optionally a method, and
apply ``times`` times (``None``: for ever), in the order they were added.
"""

from __future__ import annotations

import base64
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Self
from urllib.parse import quote_plus, urlencode

from core.identities import AtlassianSite, Secret
from fakes.http import FakeServer, Request, Response

FAKE_TOKEN = "fake-atlassian-token"
FAKE_EMAIL = "kb-bot@example.com"
UNSET: Any = object()

Route = tuple[frozenset[str], re.Pattern[str], Callable[[Request, re.Match[str]], Response]]


@dataclass
class Fault:
    """One injected misbehaviour: answer ``status`` (after ``delay`` seconds), or, with
    ``status`` None, answer normally after the delay."""

    path: str | re.Pattern[str]
    status: int | None = 500
    times: int | None = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    method: str | None = None
    hits: int = 0

    def matches(self, request: Request) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and request.method != self.method.upper():
            return False
        if isinstance(self.path, str):
            return self.path in request.path
        return self.path.search(request.path) is not None


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _query(request: Request, name: str, default: str | None = None) -> str | None:
    values = request.query.get(name)
    return values[0] if values else default


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status=status, body=body, headers=dict(headers or {}))


def _quoted_values(text: str) -> list[str]:
    quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    if quoted:
        return [v.replace('\\"', '"').replace("\\\\", "\\") for v in quoted]
    return [part.strip() for part in text.split(",") if part.strip()]


class _PromptServer(FakeServer):
    """A FakeServer tuned for many short tests: it stops within ~50 ms instead of its serve
    loop's default 0.5 s poll, and answers without Nagle's algorithm (headers and body go out
    in two writes, which otherwise wait ~40 ms each for a delayed ACK)."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        super().__init__(handler)
        self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        report = self._server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            # A client that timed out on a slow() answer has hung up: expected, not a bug.
            if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
                report(request, client_address)

        self._server.handle_error = handle_error  # type: ignore[method-assign]

    def start(self) -> _PromptServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self


class FakeAtlassian:
    """Shared machinery: server lifecycle, credentials check, fault injection, clock."""

    def __init__(self, *, cloud: bool, token: str, email: str | None, context: str) -> None:
        self.cloud = cloud
        self.token = token
        self.email = email if cloud else None
        self.context = context.rstrip("/")
        self.faults: list[Fault] = []
        self.errors: list[str] = []  # tracebacks of the fake's own bugs, for debugging
        self.lock = threading.RLock()
        self._server: _PromptServer | None = None
        self._last_tick = datetime(2000, 1, 1, tzinfo=UTC)
        self._routes: list[Route] = []

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        self._server = _PromptServer(self._dispatch).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("the fake server is not started")
        return self._server.url

    @property
    def base_url(self) -> str:
        """What an operator would put in ``*_BASE_URL`` (``.../wiki`` for Confluence Cloud)."""
        return self.url + self.context

    def site(self, *, token: str | None = None, email: Any = UNSET) -> AtlassianSite:
        """Settings for a client of this fake; Cloud uses Basic email:token, DC a Bearer PAT."""
        return AtlassianSite(
            base_url=self.base_url,
            email=(self.email if email is UNSET else email) if self.cloud else None,
            token=Secret(token if token is not None else self.token),
        )

    @property
    def requests(self) -> list[Request]:
        return list(self._server.requests) if self._server is not None else []

    def requests_to(self, fragment: str, method: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if fragment in r.path and (method is None or r.method == method.upper())
        ]

    # --- faults ------------------------------------------------------------------------

    def inject(
        self,
        path: str | re.Pattern[str],
        *,
        status: int | None = 500,
        times: int | None = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay: float = 0.0,
        method: str | None = None,
    ) -> Fault:
        fault = Fault(path, status, times, dict(headers or {}), body, delay, method)
        with self.lock:
            self.faults.append(fault)
        return fault

    def fail(
        self, path: str | re.Pattern[str], *, status: int = 500, times: int | None = 1
    ) -> Fault:
        body = {"errorMessages": ["Internal server error"], "statusCode": status}
        return self.inject(path, status=status, times=times, body=body)

    def rate_limit(
        self, path: str | re.Pattern[str], *, retry_after: float = 1, times: int | None = 1
    ) -> Fault:
        return self.inject(
            path,
            status=429,
            times=times,
            headers={"Retry-After": f"{retry_after:g}"},
            body={"message": "Rate limit exceeded", "statusCode": 429},
        )

    def slow(self, path: str | re.Pattern[str], *, seconds: float, times: int | None = 1) -> Fault:
        return self.inject(path, status=None, times=times, delay=seconds)

    def malformed(self, path: str | re.Pattern[str], *, times: int | None = 1) -> Fault:
        return self.inject(
            path,
            status=200,
            times=times,
            headers={"Content-Type": "application/json"},
            body=b'{"results": [ {"id": "1", "title": ',
        )

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    # --- clock ---------------------------------------------------------------------------

    def tick(self, when: datetime | None = None) -> datetime:
        """``when``, or now; without ``when``, strictly after every earlier tick so that
        edits made in one test are ordered even within a millisecond."""
        with self.lock:
            if when is not None:
                moment = when.astimezone(UTC)
            else:
                now = datetime.now(UTC)
                now = now.replace(microsecond=now.microsecond // 1000 * 1000)
                moment = max(now, self._last_tick + timedelta(milliseconds=1))
            self._last_tick = max(self._last_tick, moment)
            return moment

    # --- dispatch ------------------------------------------------------------------------

    def route(
        self, methods: str, pattern: str, handler: Callable[[Request, re.Match[str]], Response]
    ) -> None:
        self._routes.append((frozenset(methods.split("|")), re.compile(pattern + r"\Z"), handler))

    def _dispatch(self, request: Request) -> Response:
        try:
            fault = self._take_fault(request)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.status is not None:
                    return Response(
                        fault.status, fault.body if fault.body is not None else b"", fault.headers
                    )
            if not self._authorised(request):
                return self.unauthorised()
            if self.context and not request.path.startswith(self.context + "/"):
                return self.not_found()
            path = request.path[len(self.context) :]
            for methods, pattern, handler in self._routes:
                match = pattern.match(path)
                if match and request.method in methods:
                    with self.lock:
                        return handler(request, match)
            return self.not_found()
        except Exception:  # a bug in the fake: say so loudly instead of hanging the client
            self.errors.append(traceback.format_exc())
            return Response(599, traceback.format_exc())

    def _take_fault(self, request: Request) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(request):
                    fault.hits += 1
                    return fault
        return None

    def _authorised(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        if self.cloud:
            pair = f"{self.email}:{self.token}".encode()
            return given == "Basic " + base64.b64encode(pair).decode()
        return given == f"Bearer {self.token}"

    def unauthorised(self) -> Response:
        raise NotImplementedError

    def not_found(self, message: str = "Not found") -> Response:
        raise NotImplementedError


# === Confluence ==============================================================================


@dataclass
class FakeSpace:
    id: str
    key: str
    name: str


@dataclass
class FakePage:
    id: str
    space_key: str
    title: str
    body: Any  # storage XHTML; anything that is not a str makes a corrupt body
    version: int
    status: str  # current | trashed | draft | archived
    labels: list[str]
    restricted: bool
    created: datetime
    updated: datetime
    author_id: str = "557058:fake-author"


_CQL_SPACES = re.compile(r"\bspace\s+in\s*\(([^)]*)\)", re.IGNORECASE)
_CQL_SPACE = re.compile(r'\bspace\s*=\s*("(?:[^"\\]|\\.)*"|[^\s)]+)', re.IGNORECASE)
_CQL_SINCE = re.compile(r'\blastmodified\s*>=\s*"(\d{4}-\d{2}-\d{2} \d{2}:\d{2})"', re.IGNORECASE)
_CQL_ORDER = re.compile(r"\border\s+by\s+lastmodified\s+asc\b", re.IGNORECASE)


class FakeConfluence(FakeAtlassian):
    """Confluence Cloud (REST v2 + v1 under ``/wiki``) or Data Center (REST v1, optional
    context path such as ``/confluence``).

    ``limit_cap`` makes list endpoints silently answer at most that many results whatever
    ``limit`` asked for, as Data Center (and Cloud with body expansions) does.
    """

    def __init__(
        self,
        *,
        cloud: bool = True,
        token: str = FAKE_TOKEN,
        email: str = FAKE_EMAIL,
        context: str | None = None,
        limit_cap: int | None = None,
    ) -> None:
        super().__init__(
            cloud=cloud,
            token=token,
            email=email,
            context=("/wiki" if cloud else "") if context is None else context,
        )
        self.limit_cap = limit_cap
        self.spaces: dict[str, FakeSpace] = {}
        self.pages: dict[str, FakePage] = {}
        self.users: dict[str, str] = {}
        self._next_page = 1_000_001
        self._next_space = 98_001
        if cloud:
            self.route("GET", r"/api/v2/spaces", self._v2_spaces)
            self.route("GET", r"/api/v2/spaces/(\d+)", self._v2_space)
            self.route("GET", r"/api/v2/spaces/(\d+)/pages", self._v2_space_pages)
            self.route("GET", r"/api/v2/pages/(\d+)", self._v2_page)
        self.route("GET", r"/rest/api/content", self._v1_list)
        self.route("GET", r"/rest/api/content/search", self._v1_search)
        self.route("GET", r"/rest/api/content/(\d+)", self._v1_content)
        self.route("GET", r"/rest/api/content/(\d+)/restriction/byOperation/read", self._v1_read)
        self.route("GET", r"/rest/api/user", self._v1_user)

    # --- test controls -------------------------------------------------------------------

    def add_space(self, key: str, name: str | None = None) -> FakeSpace:
        with self.lock:
            if key not in self.spaces:
                self.spaces[key] = FakeSpace(str(self._next_space), key, name or f"{key} space")
                self._next_space += 1
            return self.spaces[key]

    def add_page(
        self,
        space_key: str,
        title: str,
        body: Any = "<p>Hello</p>",
        *,
        labels: Iterable[str] = (),
        restricted: bool = False,
        updated: datetime | None = None,
        status: str = "current",
        page_id: str | None = None,
    ) -> FakePage:
        with self.lock:
            self.add_space(space_key)
            if page_id is None:
                page_id = str(self._next_page)
                self._next_page += 1
            when = self.tick(updated)
            page = FakePage(
                page_id, space_key, title, body, 1, status, list(labels), restricted, when, when
            )
            self.pages[page_id] = page
            return page

    def edit_page(
        self,
        page_id: str,
        *,
        title: str | None = None,
        body: Any = UNSET,
        labels: Iterable[str] | None = None,
        restricted: bool | None = None,
        space_key: str | None = None,
        updated: datetime | None = None,
    ) -> FakePage:
        """A new version: every edit bumps ``version.number`` and the modification time."""
        with self.lock:
            page = self.pages[page_id]
            if title is not None:
                page.title = title
            if body is not UNSET:
                page.body = body
            if labels is not None:
                page.labels = list(labels)
            if restricted is not None:
                page.restricted = restricted
            if space_key is not None:
                self.add_space(space_key)
                page.space_key = space_key
            page.version += 1
            page.updated = self.tick(updated)
            return page

    def trash_page(self, page_id: str) -> FakePage:
        with self.lock:
            page = self.pages[page_id]
            page.status = "trashed"
            return page

    def restore_page(self, page_id: str) -> FakePage:
        with self.lock:
            page = self.pages[page_id]
            page.status = "current"
            return page

    def purge_page(self, page_id: str) -> None:
        """Removed for good: every read answers 404."""
        with self.lock:
            del self.pages[page_id]

    delete_page = purge_page

    def corrupt_body(self, page_id: str) -> FakePage:
        """The page's storage body becomes something that is not text."""
        with self.lock:
            page = self.pages[page_id]
            page.body = {"unexpected": ["not", "xhtml"]}
            return page

    def add_user(self, account_id: str, display_name: str) -> None:
        """A user mention target: Cloud account id, or Data Center user key / user name."""
        with self.lock:
            self.users[account_id] = display_name

    def page_url(self, page: FakePage) -> str:
        """The browser URL the client should build for ``page``."""
        return self.base_url + self._webui(page)

    # --- shapes -------------------------------------------------------------------------

    def _webui(self, page: FakePage) -> str:
        slug = quote_plus(page.title)
        if self.cloud:
            return f"/spaces/{page.space_key}/pages/{page.id}/{slug}"
        return f"/display/{page.space_key}/{slug}"

    def _limit(self, request: Request, default: int, maximum: int) -> int:
        asked = int(_query(request, "limit", str(default)) or default)
        limit = max(1, min(asked, maximum))
        return min(limit, self.limit_cap) if self.limit_cap else limit

    def _space_json(self, space: FakeSpace, v2: bool) -> dict[str, Any]:
        return {
            "id": space.id if v2 else int(space.id),
            "key": space.key,
            "name": space.name,
            "type": "global",
            "status": "current",
            "_links": {"webui": f"/spaces/{space.key}"},
        }

    def _v2_json(self, page: FakePage, body: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "parentType": "page",
            "parentId": None,
            "ownerId": page.author_id,
            "createdAt": _iso(page.created),
            "authorId": page.author_id,
            "position": 0,
            "version": {
                "createdAt": _iso(page.updated),
                "message": "",
                "number": page.version,
                "minorEdit": False,
                "authorId": page.author_id,
            },
            "id": page.id,
            "spaceId": self.spaces[page.space_key].id,
            "status": page.status,
            "title": page.title,
            "body": {},
            "_links": {
                "webui": self._webui(page),
                "editui": f"/pages/resumedraft.action?draftId={page.id}",
                "tinyui": f"/x/{page.id}",
            },
        }
        if body:
            out["body"] = {"storage": {"representation": "storage", "value": page.body}}
        return out

    def _v1_json(self, page: FakePage, expand: set[str]) -> dict[str, Any]:
        space = self.spaces[page.space_key]
        author = {"type": "known", "accountId": page.author_id, "displayName": "Fake Author"}
        out: dict[str, Any] = {
            "id": page.id,
            "type": "page",
            "status": page.status,
            "title": page.title,
            "macroRenderedOutput": {},
            "extensions": {"position": 0},
            "_expandable": {
                "container": f"/rest/api/space/{space.key}",
                "restrictions": f"/rest/api/content/{page.id}/restriction/byOperation",
                "history": f"/rest/api/content/{page.id}/history",
            },
            "_links": {
                "webui": self._webui(page),
                "self": f"{self.base_url}/rest/api/content/{page.id}",
                "tinyui": f"/x/{page.id}",
            },
        }
        if "space" in expand:
            out["space"] = self._space_json(space, v2=False)
        else:
            out["_expandable"]["space"] = f"/rest/api/space/{space.key}"
        if "version" in expand:
            out["version"] = {
                "by": author,
                "when": _iso(page.updated),
                "friendlyWhen": "just a moment ago",
                "message": "",
                "number": page.version,
                "minorEdit": False,
            }
        if "body.storage" in expand:
            out["body"] = {
                "storage": {"value": page.body, "representation": "storage", "embeddedContent": []}
            }
        if "metadata.labels" in expand:
            results = [
                {"prefix": "global", "name": name, "id": str(1000 + i), "label": name}
                for i, name in enumerate(page.labels)
            ]
            out["metadata"] = {
                "labels": {"results": results, "start": 0, "limit": 200, "size": len(results)}
            }
        if any(e.startswith("restrictions.read") for e in expand):
            out["restrictions"] = {"read": self._read_restrictions(page)}
        return out

    def _read_restrictions(self, page: FakePage) -> dict[str, Any]:
        users = (
            [{"type": "known", "accountId": page.author_id, "displayName": "Fake Author"}]
            if page.restricted
            else []
        )
        return {
            "operation": "read",
            "restrictions": {
                "user": {"results": users, "start": 0, "limit": 200, "size": len(users)},
                "group": {"results": [], "start": 0, "limit": 200, "size": 0},
            },
        }

    def _list_links(self, next_link: str | None) -> dict[str, Any]:
        links: dict[str, Any] = {"base": self.base_url, "context": self.context}
        if next_link is not None:
            links["next"] = next_link
        return links

    def _sorted_pages(self) -> list[FakePage]:
        return sorted(self.pages.values(), key=lambda p: int(p.id))

    # --- v2 -------------------------------------------------------------------------------

    def _v2_spaces(self, request: Request, _: re.Match[str]) -> Response:
        keys = {k for v in request.query.get("keys", []) for k in v.split(",") if k}
        spaces = [s for s in self.spaces.values() if not keys or s.key in keys]
        return _json({"results": [self._space_json(s, v2=True) for s in spaces], "_links": {}})

    def _v2_space(self, request: Request, match: re.Match[str]) -> Response:
        for space in self.spaces.values():
            if space.id == match.group(1):
                return _json(self._space_json(space, v2=True))
        return self.not_found()

    def _v2_space_pages(self, request: Request, match: re.Match[str]) -> Response:
        space = next((s for s in self.spaces.values() if s.id == match.group(1)), None)
        if space is None:
            return self.not_found()
        statuses = set((_query(request, "status") or "current").split(","))
        limit = self._limit(request, 25, 250)
        cursor = _query(request, "cursor")
        offset = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
        pages = [
            p for p in self._sorted_pages() if p.space_key == space.key and p.status in statuses
        ]
        chunk = pages[offset : offset + limit]
        body = _query(request, "body-format") == "storage"
        next_link = None
        headers: dict[str, str] = {}
        if offset + limit < len(pages):
            params = {k: v[0] for k, v in request.query.items() if k != "cursor"}
            params["cursor"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
            # v2 links are relative to the site root, so they start with /wiki.
            next_link = f"{self.context}/api/v2/spaces/{space.id}/pages?{urlencode(params)}"
            headers["Link"] = f'<{next_link}>; rel="next", <{self.base_url}>; rel="base"'
        payload = {
            "results": [self._v2_json(p, body) for p in chunk],
            "_links": self._list_links(next_link),
        }
        return _json(payload, headers=headers)

    def _v2_page(self, request: Request, match: re.Match[str]) -> Response:
        page = self.pages.get(match.group(1))
        if page is None:
            return self.not_found()
        return _json(self._v2_json(page, _query(request, "body-format") == "storage"))

    # --- v1 -------------------------------------------------------------------------------

    def _expand(self, request: Request) -> set[str]:
        return {e for e in (_query(request, "expand") or "").split(",") if e}

    def _v1_page_of(
        self, request: Request, pages: Sequence[FakePage], path: str, params: dict[str, str]
    ) -> Response:
        limit = self._limit(request, 25, 200)
        cursor = _query(request, "cursor")
        if cursor is not None:
            start = int(base64.urlsafe_b64decode(cursor.encode()).decode())
        else:
            start = int(_query(request, "start", "0") or 0)
        chunk = pages[start : start + limit]
        expand = self._expand(request)
        next_link = None
        if start + len(chunk) < len(pages):
            following = {**params, "limit": str(limit)}
            if expand:
                following["expand"] = ",".join(sorted(expand))
            if self.cloud and path.endswith("/search"):
                token = base64.urlsafe_b64encode(str(start + len(chunk)).encode()).decode()
                following["cursor"] = token
                following["next"] = "true"
            else:
                following["start"] = str(start + len(chunk))
            # v1 links are relative to the base (which holds /wiki or the context path).
            next_link = f"{path}?{urlencode(following)}"
        return _json(
            {
                "results": [self._v1_json(p, expand) for p in chunk],
                "start": start,
                "limit": limit,
                "size": len(chunk),
                "_links": self._list_links(next_link),
            }
        )

    def _v1_list(self, request: Request, _: re.Match[str]) -> Response:
        key = _query(request, "spaceKey")
        statuses = set((_query(request, "status") or "current").split(","))
        pages = [
            p
            for p in self._sorted_pages()
            if (key is None or p.space_key == key) and p.status in statuses
        ]
        params = {"type": "page", "status": ",".join(sorted(statuses))}
        if key is not None:
            params["spaceKey"] = key
        return self._v1_page_of(request, pages, "/rest/api/content", params)

    def _v1_search(self, request: Request, _: re.Match[str]) -> Response:
        cql = _query(request, "cql") or ""
        spaces: set[str] | None = None
        match = _CQL_SPACES.search(cql)
        if match:
            spaces = set(_quoted_values(match.group(1)))
        elif (single := _CQL_SPACE.search(cql)) is not None:
            spaces = set(_quoted_values(single.group(1)))
        since = _CQL_SINCE.search(cql)
        floor = (
            datetime.strptime(since.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            if since
            else None
        )
        pages = [
            p
            for p in self._sorted_pages()
            if p.status == "current"  # CQL finds current content only
            and (spaces is None or p.space_key in spaces)
            and (floor is None or p.updated >= floor)
        ]
        if _CQL_ORDER.search(cql):
            pages.sort(key=lambda p: p.updated)
        return self._v1_page_of(request, pages, "/rest/api/content/search", {"cql": cql})

    def _v1_content(self, request: Request, match: re.Match[str]) -> Response:
        page = self.pages.get(match.group(1))
        statuses = set((_query(request, "status") or "current,archived").split(","))
        if page is None or page.status not in statuses:
            return self.not_found(f"No content found with id: {match.group(1)}")
        out = self._v1_json(page, self._expand(request))
        out["_links"].update({"base": self.base_url, "context": self.context})
        return _json(out)

    def _v1_read(self, request: Request, match: re.Match[str]) -> Response:
        page = self.pages.get(match.group(1))
        if page is None:
            return self.not_found()
        return _json(self._read_restrictions(page))

    def _v1_user(self, request: Request, _: re.Match[str]) -> Response:
        names = ("accountId",) if self.cloud else ("key", "username")
        for name in names:
            key = _query(request, name)
            if key is not None and key in self.users:
                display = self.users[key]
                if self.cloud:
                    user = {"type": "known", "accountId": key, "accountType": "atlassian"}
                else:
                    user = {"type": "known", "username": key, "userKey": key}
                return _json({**user, "publicName": display, "displayName": display})
        return self.not_found("No user found")

    def unauthorised(self) -> Response:
        return _json(
            {"statusCode": 401, "message": "Client must be authenticated to access this resource."},
            status=401,
        )

    def not_found(self, message: str = "Not found") -> Response:
        return _json(
            {
                "statusCode": 404,
                "data": {"authorized": True, "valid": True, "errors": [], "successful": False},
                "message": message,
            },
            status=404,
        )


# === Jira ====================================================================================


@dataclass
class FakeComment:
    id: str
    author: str
    body: Any  # ADF dict (Cloud, REST v3) or wiki markup (Data Center)
    created: datetime


@dataclass
class FakeIssue:
    id: str
    key: str
    project: str
    summary: str
    description: Any  # ADF dict, wiki markup or None
    status: str
    issue_type: str
    labels: list[str]
    security: str | None
    created: datetime
    updated: datetime
    comments: list[FakeComment] = field(default_factory=list)

    @property
    def number(self) -> int:
        return int(self.key.rsplit("-", 1)[1])


_JQL_PROJECTS = re.compile(r"\bproject\s+in\s*\(([^)]*)\)", re.IGNORECASE)
_JQL_PROJECT = re.compile(r'\bproject\s*=\s*("(?:[^"\\]|\\.)*"|[\w-]+)', re.IGNORECASE)
_JQL_KEY = re.compile(r'\b(?:key|issuekey)\s*=\s*("(?:[^"\\]|\\.)*"|[\w-]+)', re.IGNORECASE)
_JQL_UPDATED = re.compile(r"\bupdated\s*>=\s*(\d+)", re.IGNORECASE)
_JQL_LABEL = re.compile(r'\blabels\s*=\s*("(?:[^"\\]|\\.)*"|[\w-]+)', re.IGNORECASE)
_JQL_ORDER = re.compile(r"\border\s+by\s+(\w+)(?:\s+(asc|desc))?", re.IGNORECASE)


class FakeJira(FakeAtlassian):
    """Jira Cloud (``/rest/api/3``, ``search/jql`` with ``nextPageToken``) or Data Center
    (``/rest/api/2``, ``search`` with ``startAt``/``total``).

    ``max_results_cap`` silently caps search pages; ``inline_comments`` is how many comments
    a search or issue read carries inline (the rest are on ``/issue/{key}/comment``); times
    are written in ``zone`` like Jira does (``2026-10-14T03:00:00.000-0600``).
    """

    def __init__(
        self,
        *,
        cloud: bool = True,
        token: str = FAKE_TOKEN,
        email: str = FAKE_EMAIL,
        context: str = "",
        max_results_cap: int | None = None,
        inline_comments: int = 20,
        zone: tzinfo = timezone(timedelta(hours=-6)),
    ) -> None:
        super().__init__(cloud=cloud, token=token, email=email, context=context)
        self.max_results_cap = max_results_cap
        self.inline_comments = inline_comments
        self.zone = zone
        self.issues: dict[str, FakeIssue] = {}
        self.moved: dict[str, str] = {}
        self._numbers: dict[str, int] = {}
        self._next_id = 10_001
        self.api = "3" if cloud else "2"
        if cloud:
            self.route("GET|POST", r"/rest/api/3/search/jql", self._search_cloud)
            self.route("GET|POST", r"/rest/api/[23]/search", self._gone)
        else:
            self.route("GET|POST", r"/rest/api/2/search", self._search_dc)
        self.route("GET", r"/rest/api/[23]/issue/([^/]+)", self._issue)
        self.route("GET", r"/rest/api/[23]/issue/([^/]+)/comment", self._comments)

    # --- test controls -------------------------------------------------------------------

    def add_issue(
        self,
        project: str,
        summary: str,
        description: Any = None,
        *,
        status: str = "To Do",
        issue_type: str = "Task",
        labels: Iterable[str] = (),
        security: str | None = None,
        updated: datetime | None = None,
        comments: Iterable[tuple[str, Any] | tuple[str, Any, datetime]] = (),
    ) -> FakeIssue:
        """A new issue; ``comments`` are ``(author, body)`` or ``(author, body, created)``."""
        with self.lock:
            number = self._numbers.get(project, 0) + 1
            self._numbers[project] = number
            when = self.tick(updated)
            issue = FakeIssue(
                str(self._next_id),
                f"{project}-{number}",
                project,
                summary,
                description,
                status,
                issue_type,
                list(labels),
                security,
                when,
                when,
            )
            self._next_id += 1
            for entry in comments:
                created = entry[2] if len(entry) == 3 else when
                issue.comments.append(self._comment(entry[0], entry[1], created))
            self.issues[issue.key] = issue
            return issue

    def edit_issue(
        self,
        key: str,
        *,
        summary: str | None = None,
        description: Any = UNSET,
        status: str | None = None,
        labels: Iterable[str] | None = None,
        updated: datetime | None = None,
    ) -> FakeIssue:
        with self.lock:
            issue = self.issues[key]
            if summary is not None:
                issue.summary = summary
            if description is not UNSET:
                issue.description = description
            if status is not None:
                issue.status = status
            if labels is not None:
                issue.labels = list(labels)
            issue.updated = self.tick(updated)
            return issue

    def add_comment(
        self, key: str, author: str, body: Any, *, created: datetime | None = None
    ) -> FakeComment:
        with self.lock:
            issue = self.issues[key]
            comment = self._comment(author, body, self.tick(created))
            issue.comments.append(comment)
            issue.updated = comment.created
            return comment

    def secure_issue(self, key: str, level: str | None = "Internal") -> FakeIssue:
        """Give the issue a security level (None removes it); Jira bumps ``updated``."""
        with self.lock:
            issue = self.issues[key]
            issue.security = level
            issue.updated = self.tick()
            return issue

    def delete_issue(self, key: str) -> None:
        with self.lock:
            del self.issues[key]

    def move_issue(self, key: str, project: str) -> FakeIssue:
        """Move to another project: a new key; reads of the old key answer the moved issue."""
        with self.lock:
            issue = self.issues.pop(key)
            number = self._numbers.get(project, 0) + 1
            self._numbers[project] = number
            issue.key, issue.project = f"{project}-{number}", project
            issue.updated = self.tick()
            self.issues[issue.key] = issue
            self.moved[key] = issue.key
            return issue

    def _comment(self, author: str, body: Any, created: datetime) -> FakeComment:
        comment = FakeComment(str(self._next_id), author, body, created)
        self._next_id += 1
        return comment

    # --- shapes -------------------------------------------------------------------------

    def jira_time(self, moment: datetime) -> str:
        local = moment.astimezone(self.zone)
        return (
            local.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{local.microsecond // 1000:03d}"
            + local.strftime("%z")
        )

    def _user(self, name: str) -> dict[str, Any]:
        ident = (
            {"accountId": f"acc-{abs(hash(name)) % 10**8}"}
            if self.cloud
            else {"name": name, "key": name}
        )
        return {**ident, "displayName": name, "active": True, "timeZone": "UTC"}

    def _comment_json(self, issue: FakeIssue, comment: FakeComment) -> dict[str, Any]:
        out = {
            "self": f"{self.base_url}/rest/api/{self.api}/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": self._user(comment.author),
            "body": comment.body,
            "updateAuthor": self._user(comment.author),
            "created": self.jira_time(comment.created),
            "updated": self.jira_time(comment.created),
        }
        if self.cloud:
            out["jsdPublic"] = True
        return out

    def _fields(self, issue: FakeIssue, wanted: set[str] | None) -> dict[str, Any]:
        inline = issue.comments[: self.inline_comments]
        everything: dict[str, Any] = {
            "summary": issue.summary,
            "description": issue.description,
            "comment": {
                "comments": [self._comment_json(issue, c) for c in inline],
                "self": f"{self.base_url}/rest/api/{self.api}/issue/{issue.id}/comment",
                "maxResults": len(inline),
                "total": len(issue.comments),
                "startAt": 0,
            },
            "status": {
                "self": f"{self.base_url}/rest/api/{self.api}/status/1",
                "description": "",
                "name": issue.status,
                "id": "1",
                "statusCategory": {"id": 2, "key": "new", "name": "To Do"},
            },
            "issuetype": {"id": "10001", "name": issue.issue_type, "subtask": False},
            "project": {
                "self": f"{self.base_url}/rest/api/{self.api}/project/{issue.project}",
                "id": str(10_000 + sum(map(ord, issue.project))),
                "key": issue.project,
                "name": f"{issue.project} project",
                "projectTypeKey": "software",
            },
            "labels": list(issue.labels),
            "created": self.jira_time(issue.created),
            "updated": self.jira_time(issue.updated),
            "security": (
                {"self": "", "id": "10001", "name": issue.security, "description": ""}
                if issue.security
                else None
            ),
        }
        if wanted is None:
            return everything
        return {k: v for k, v in everything.items() if k in wanted}

    def _issue_json(self, issue: FakeIssue, wanted: set[str] | None) -> dict[str, Any]:
        return {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog",
            "id": issue.id,
            "self": f"{self.base_url}/rest/api/{self.api}/issue/{issue.id}",
            "key": issue.key,
            "fields": self._fields(issue, wanted),
        }

    @staticmethod
    def _wanted(raw: Any) -> set[str] | None:
        if raw is None:
            return None
        names = raw if isinstance(raw, list) else str(raw).split(",")
        wanted = {str(n).strip() for n in names if str(n).strip()}
        return None if wanted & {"*all", "*navigable"} else wanted

    # --- search ---------------------------------------------------------------------------

    def _matching(self, jql: str) -> list[FakeIssue] | Response:
        issues = list(self.issues.values())
        bounded = False
        for match in _JQL_PROJECTS.finditer(jql):
            allowed = set(_quoted_values(match.group(1)))
            issues = [i for i in issues if i.project in allowed]
            bounded = True
        for match in _JQL_PROJECT.finditer(jql):
            project = _quoted_values(match.group(1))[0]
            issues = [i for i in issues if i.project == project]
            bounded = True
        for match in _JQL_KEY.finditer(jql):
            key = _quoted_values(match.group(1))[0]
            issues = [i for i in issues if i.key == key]
            bounded = True
        for match in _JQL_LABEL.finditer(jql):
            label = _quoted_values(match.group(1))[0]
            issues = [i for i in issues if label in i.labels]
        for match in _JQL_UPDATED.finditer(jql):
            floor = datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
            issues = [i for i in issues if i.updated >= floor]
        if self.cloud and not bounded:
            return _json(
                {
                    "errorMessages": [
                        "Unbounded JQL queries are not allowed here. "
                        "Please add a search restriction to your query."
                    ],
                    "errors": {},
                },
                status=400,
            )
        order = _JQL_ORDER.search(jql)
        field_name = order.group(1).lower() if order else "key"
        descending = bool(order and (order.group(2) or "").lower() == "desc")
        if field_name == "updated":
            issues.sort(key=lambda i: i.updated, reverse=descending)
        elif field_name == "created":
            issues.sort(key=lambda i: i.created, reverse=descending)
        else:
            issues.sort(key=lambda i: (i.project, i.number), reverse=descending)
        return issues

    def _search_args(self, request: Request) -> dict[str, Any]:
        if request.method == "POST":
            return dict(request.json())
        args: dict[str, Any] = {k: v[0] for k, v in request.query.items()}
        return args

    def _page_size(self, asked: Any, default: int) -> int:
        size = max(1, min(int(asked if asked is not None else default), 5000))
        return min(size, self.max_results_cap) if self.max_results_cap else size

    def _search_cloud(self, request: Request, _: re.Match[str]) -> Response:
        args = self._search_args(request)
        found = self._matching(str(args.get("jql", "")))
        if isinstance(found, Response):
            return found
        size = self._page_size(args.get("maxResults"), 50)
        token = args.get("nextPageToken")
        start = int(base64.urlsafe_b64decode(str(token).encode()).decode()) if token else 0
        chunk = found[start : start + size]
        # Cloud's default is ids only: no fields unless asked.
        wanted = self._wanted(args.get("fields")) if args.get("fields") is not None else set()
        payload: dict[str, Any] = {"issues": [self._issue_json(i, wanted) for i in chunk]}
        if start + size < len(found):
            payload["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
            payload["isLast"] = False
        else:
            payload["isLast"] = True
        return _json(payload)

    def _search_dc(self, request: Request, _: re.Match[str]) -> Response:
        args = self._search_args(request)
        found = self._matching(str(args.get("jql", "")))
        if isinstance(found, Response):
            return found
        size = self._page_size(args.get("maxResults"), 50)
        start = int(args.get("startAt") or 0)
        wanted = self._wanted(args.get("fields"))
        return _json(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(found),
                "issues": [self._issue_json(i, wanted) for i in found[start : start + size]],
            }
        )

    def _gone(self, request: Request, _: re.Match[str]) -> Response:
        return _json(
            {"errorMessages": ["The requested API has been removed. Use /rest/api/3/search/jql."]},
            status=410,
        )

    # --- issues ---------------------------------------------------------------------------

    def _find(self, key: str) -> FakeIssue | None:
        key = self.moved.get(key, key)
        return self.issues.get(key) or next((i for i in self.issues.values() if i.id == key), None)

    def _issue(self, request: Request, match: re.Match[str]) -> Response:
        issue = self._find(match.group(1))
        if issue is None:
            return self.not_found()
        return _json(self._issue_json(issue, self._wanted(_query(request, "fields"))))

    def _comments(self, request: Request, match: re.Match[str]) -> Response:
        issue = self._find(match.group(1))
        if issue is None:
            return self.not_found()
        start = int(_query(request, "startAt", "0") or 0)
        size = min(int(_query(request, "maxResults", "50") or 50), 100)
        chunk = issue.comments[start : start + size]
        return _json(
            {
                "startAt": start,
                "maxResults": size,
                "total": len(issue.comments),
                "comments": [self._comment_json(issue, c) for c in chunk],
            }
        )

    def unauthorised(self) -> Response:
        return _json(
            {"errorMessages": ["You are not authenticated. Authentication required."]},
            status=401,
        )

    def not_found(
        self, message: str = "Issue does not exist or you do not have permission to see it."
    ) -> Response:
        return _json({"errorMessages": [message], "errors": {}}, status=404)
