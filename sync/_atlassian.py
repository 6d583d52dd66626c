"""Plumbing shared by the Confluence and Jira clients: one httpx client per site, JSON access.

Everything that talks HTTP goes through :class:`AtlassianHttp`, which uses :func:`core.http.send`
for retries (429 with ``Retry-After``, 5xx, timeouts) and turns every other surprise into a
:class:`~core.errors.BadResponse` naming the service and the path. Credentials live only inside an
``httpx.Auth`` object: never in a URL, a log line or an exception.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar
from urllib.parse import urlsplit

import httpx

from core.errors import AuthError, BadResponse, KbError, SettingsError
from core.http import DEFAULT_POLICY, RetryPolicy, json_body, send
from core.identities import AtlassianSite, Secret
from sync.source import FetchFailure, SourceDocument

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = SourceDocument | FetchFailure
_MAX_DETAIL = 300


class _BearerAuth(httpx.Auth):
    """Data Center personal access token; the value is read only when a request is sent."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request


class AtlassianHttp:
    """One site's HTTP client: auth, timeouts, retries and error wording in one place."""

    def __init__(
        self,
        site: AtlassianSite,
        *,
        service: str,
        setting_prefix: str,
        transport: httpx.BaseTransport | None,
        policy: RetryPolicy,
        timeout: float,
    ) -> None:
        self.service = service
        self.policy = policy
        # Cloud needs both the email and the token right; a Data Center PAT stands alone.
        self.credentials_setting = (
            f"{setting_prefix}_API_TOKEN / {setting_prefix}_EMAIL"
            if site.email is not None
            else f"{setting_prefix}_API_TOKEN"
        )
        self.base_setting = f"{setting_prefix}_BASE_URL"
        auth: httpx.Auth = (
            httpx.BasicAuth(site.email, site.token.reveal())
            if site.email is not None
            else _BearerAuth(site.token)
        )
        self.origin = origin_of(site.base_url)
        self._client = httpx.Client(
            auth=auth,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            # A redirect almost always means a wrong base URL (http vs https, a missing
            # context path); say so instead of following it with credentials attached.
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "kb-bot"},
        )

    def get(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        return self._call("GET", url, params=params, body=None, missing_ok=False)

    def get_or_none(self, url: str, params: Mapping[str, str] | None = None) -> Any | None:
        """Like :meth:`get`, but ``None`` when the resource does not exist (HTTP 404)."""
        return self._call("GET", url, params=params, body=None, missing_ok=True)

    def post(self, url: str, body: Mapping[str, Any]) -> Any:
        return self._call("POST", url, params=None, body=body, missing_ok=False)

    def close(self) -> None:
        self._client.close()

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        missing_ok: bool,
    ) -> Any | None:
        def once() -> httpx.Response:
            return self._client.request(method, url, params=params, json=body)

        response = send(
            once,
            service=self.service,
            credentials_setting=self.credentials_setting,
            policy=self.policy,
        )
        status = response.status_code
        path = response.request.url.path
        log.debug("%s %s %s -> HTTP %s", self.service, method, path, status)
        if status == 404 and missing_ok:
            return None
        if 300 <= status < 400:
            raise BadResponse(
                f"{self.service} redirected {path} elsewhere (HTTP {status}); "
                f"check {self.base_setting}",
                status=status,
            )
        if status >= 400:
            detail = error_detail(response)
            raise BadResponse(
                f"{self.service} answered HTTP {status} for {path}"
                + (f": {detail}" if detail else ""),
                status=status,
            )
        try:
            return json_body(response, service=self.service)
        except BadResponse as exc:
            raise BadResponse(f"{exc} for {path}", status=exc.status) from None


def error_detail(response: httpx.Response) -> str:
    """The human part of an Atlassian error body (v2 ``errors``, v1 ``message``, Jira
    ``errorMessages``), shortened; empty when the body says nothing useful."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    data = as_map(payload)
    parts: list[str] = []
    for error in as_list(data.get("errors")):
        entry = as_map(error)
        text = as_str(entry.get("detail")) or as_str(entry.get("title"))
        if text:
            parts.append(text)
    parts.extend(m for m in (as_str(v) for v in as_list(data.get("errorMessages"))) if m)
    for field, message in as_map(data.get("errors")).items():
        if as_str(message):
            parts.append(f"{field}: {message}")
    if not parts and as_str(data.get("message")):
        parts.append(str(data["message"]))
    return "; ".join(parts)[:_MAX_DETAIL]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def resolve_link(base: str, link: str, *, service: str) -> str:
    """An absolute URL for a ``_links.next``-style link.

    v2 links are relative to the site root and start with the base's own path (``/wiki/api/v2``);
    v1 links are relative to the base (``/rest/api/...``). An absolute link must stay on the
    base's host, or the client would hand its credentials to another server.
    """
    base = base.rstrip("/")
    origin = origin_of(base)
    if "://" in link:
        if origin_of(link) != origin:
            raise BadResponse(f"{service} sent a paging link to another host ({origin_of(link)})")
        return link
    if not link.startswith("/"):
        link = "/" + link
    prefix = urlsplit(base).path.rstrip("/")
    if prefix and (link == prefix or link.startswith(prefix + "/")):
        return origin + link
    return base + link


def in_pool(
    pool: ThreadPoolExecutor, items: Iterable[T], work: Callable[[T], Item | None]
) -> Iterator[Item]:
    """Run ``work`` over ``items`` with the pool's bounded concurrency, yielding in item order.

    Order matters: incremental results come oldest first and the engine advances its cursor
    item by item. ``None`` results (an item that vanished mid-run) are dropped.
    """
    futures = [pool.submit(work, item) for item in items]
    try:
        for future in futures:
            result = future.result()
            if result is not None:
                yield result
    finally:
        for future in futures:
            future.cancel()


def attempt(artifact_id: str, produce: Callable[[], SourceDocument | None]) -> Item | None:
    """``produce()``, or a FetchFailure when this one item could not be fetched or converted.

    Credentials errors are not about the item: they stop the run.
    """
    try:
        return produce()
    except AuthError:
        raise
    except Exception as exc:  # one bad page or issue must not stop the run
        reason = describe(exc)
        log.warning("%s was skipped: %s", artifact_id, reason)
        return FetchFailure(artifact_id=artifact_id, error=reason)


def attempt_listed(
    found: str | None,
    what: str,
    to_id: Callable[[str], str],
    produce: Callable[[str], SourceDocument | None],
) -> Item | None:
    """A listed item by its id (``produce(id)``, see :func:`attempt`); a listing entry without
    an id is skipped with a warning naming ``what`` it was."""
    if found is None:
        log.warning("%s without an id; skipped", what)
        return None
    return attempt(to_id(found), lambda: produce(found))


def describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, KbError):
        return text[:500] or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


# --- JSON access: payloads are untrusted, so every read says what it expects ---------------


def as_map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: object) -> str | None:
    """A non-empty string, or an integer id as text; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)  # ASCII only: int("²") raises although "²".isdigit()
    return None


def parse_time(value: object) -> datetime | None:
    """ISO 8601 (``...Z``, ``...-0600``) or epoch milliseconds, as an aware datetime."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = as_str(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, the engine's convention."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def load_json_text(text: str) -> Any:
    """A JSON document embedded as a string (v2 ``atlas_doc_format`` bodies)."""
    try:
        return json.loads(text)
    except ValueError:
        raise BadResponse("an embedded JSON document is malformed") from None


def site_from(values: Mapping[str, str], prefix: str) -> AtlassianSite | None:
    """``<PREFIX>_BASE_URL``/``_EMAIL``/``_API_TOKEN`` as a site; None without a base URL.

    The one reading of these keys: kb/settings.py calls it (through the spec's ``check``) at
    start, so a bad value stops the process before anything connects."""
    base = values.get(f"{prefix}_BASE_URL", "").strip()
    token = values.get(f"{prefix}_API_TOKEN", "").strip()
    email = values.get(f"{prefix}_EMAIL", "").strip() or None
    if not base:
        if token or email:
            raise SettingsError(f"{prefix}_BASE_URL", f"is not set but {prefix}_API_TOKEN is")
        return None
    parsed = urlsplit(base)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(
            f"{prefix}_BASE_URL", "is not an http(s) URL, e.g. https://example.atlassian.net"
        )
    if not token:
        raise SettingsError(
            f"{prefix}_API_TOKEN",
            f"is not set; {prefix}_BASE_URL needs an API token (Cloud) or a personal access "
            "token (Data Center)",
        )
    return AtlassianSite(base_url=base.rstrip("/"), email=email, token=Secret(token))


def http_options(values: Mapping[str, str], prefix: str) -> ConnectorOptions:
    """``<PREFIX>_TIMEOUT`` (seconds one request may take, default 30) and ``<PREFIX>_ATTEMPTS``
    (tries per request, default 5): how long a hanging or failing site can hold a sync."""
    options = ConnectorOptions()
    timeout = values.get(f"{prefix}_TIMEOUT", "").strip()
    if timeout:
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds <= 600:
            raise SettingsError(f"{prefix}_TIMEOUT", "must be a number of seconds, 0 < s <= 600")
        options["timeout"] = seconds
    attempts = values.get(f"{prefix}_ATTEMPTS", "").strip()
    if attempts:
        if not attempts.isascii() or not attempts.isdigit() or not 1 <= int(attempts) <= 10:
            raise SettingsError(f"{prefix}_ATTEMPTS", "must be a whole number from 1 to 10")
        options["policy"] = replace(DEFAULT_POLICY, attempts=int(attempts))
    return options


def key_list(values: Mapping[str, str], key: str) -> tuple[str, ...]:
    """A comma-separated setting of space or project keys, upper-cased."""
    return tuple(k.strip().upper() for k in values.get(key, "").split(",") if k.strip())


class ConnectorOptions(TypedDict, total=False):
    """Keyword options of both Atlassian connectors (tests shorten retries and page sizes)."""

    transport: httpx.BaseTransport | None
    policy: RetryPolicy
    timeout: float
    max_workers: int
    overlap: timedelta  # how far back an incremental run looks before its cursor
    page_size: int


class PooledConnector:
    """The lifecycle both Atlassian connectors share: one HTTP client and a fetch pool."""

    _http: AtlassianHttp
    _pool: ThreadPoolExecutor
    _page_size: int
    _overlap: timedelta

    def _open_clients(
        self, site: AtlassianSite, service: str, options: ConnectorOptions, *, max_page: int
    ) -> None:
        """The HTTP client, the fetch pool, and the options both connectors take."""
        workers = options.get("max_workers", 4)
        self._page_size = options.get("page_size", 100)
        if workers < 1 or not 1 <= self._page_size <= max_page:
            raise ValueError(f"max_workers must be at least 1 and page_size 1..{max_page}")
        self._overlap = options.get("overlap", timedelta(minutes=10))
        self._http = AtlassianHttp(
            site,
            service=service,
            setting_prefix=service.upper(),
            transport=options.get("transport"),
            policy=options.get("policy", DEFAULT_POLICY),
            timeout=options.get("timeout", 30),
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=service.lower())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
