"""The webhook listener of ``kb daemon``: a WSGI app served by waitress.

Routes (docs/ARCHITECTURE.md, "Endpoints"), one pair per registered source (sync/registry.py):

* ``POST /webhooks/{source}`` and ``POST /webhooks/{source}/{event}``. Jira names the event in
  the body's ``webhookEvent``; Confluence Cloud bodies carry no event name, so it comes from the
  path; Data Center bodies carry ``event``. The source's parser decides what it means;
* ``GET /healthz`` (200, or 503 when the store is unreachable) and ``GET /metrics``.

A delivery is answered, in this order: 403 when no ``KB_WEBHOOK_SECRET`` is configured (fail
closed), 413 when it declares or streams more than 1 MiB (never read whole), 401 without a
valid ``X-Hub-Signature`` or ``?token=``, 400 when the body is not a JSON object, 503 when the
store cannot take it (the sender retries). Otherwise it is parsed by the source's parser and
written to ``webhook_events`` *before* the answer: 202 accepted (queued for the worker), 200
duplicate (already stored), 202 ignored (an event that touches nothing indexed; stored as
ignored so it is counted, never processed). The body itself is not stored.

waitress reads a request whole before the app sees it, in its own I/O thread, so slow or
oversized clients never hold a worker thread: its header limit, body limit (checked against
Content-Length before reading, and while de-chunking) and idle timeout are set in
:func:`serve_webhooks`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from wsgiref.types import StartResponse, WSGIEnvironment

import psycopg
from psycopg_pool import PoolTimeout

from core.identities import Secret
from store import webhook_events
from store.db import Database
from store.metrics import (
    CONTENT_TYPE,
    RequestCounters,
    health_report,
    render_prometheus,
    series,
    store_metrics,
)
from sync._webhook_auth import SIGNATURE_HEADER, WebhookAuth, security_warning, sign
from sync._webhook_server import MAX_BODY, WebhookServer, serve_webhooks
from sync.registry import BUILT_IN, SourceRegistry
from sync.source import SourceSpec
from sync.webhook_events import WebhookChange

__all__ = [
    "MAX_BODY",
    "WebhookApp",
    "WebhookServer",
    "build_webhook_app",
    "health_report",
    "render_prometheus",
    "security_warning",
    "series",
    "serve_webhooks",
    "sign",
    "store_metrics",
]

log = logging.getLogger(__name__)

_DELIVERY_HEADER = "HTTP_X_ATLASSIAN_WEBHOOK_IDENTIFIER"
_PATH_EVENT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_STORE_TIMEOUT = 5.0  # seconds to wait for a pooled connection before answering 503


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json(code: int, /, **fields: object) -> _Response:
    return _Response(code, json.dumps(fields).encode())


_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class WebhookApp:
    """The WSGI application; build it with :func:`build_webhook_app`."""

    auth: WebhookAuth
    db: Database
    health: Callable[[], Mapping[str, Any]]
    extra_metrics: Callable[[], Mapping[str, float]] | None = None
    on_stored: Callable[[], None] | None = None
    max_body: int = MAX_BODY
    sources: SourceRegistry = BUILT_IN
    counters: RequestCounters = field(default_factory=RequestCounters)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route, response = "other", _json(500, error="internal error")
        try:
            route, response = self._dispatch(environ)
        except Exception:  # never a traceback to the sender; the log has it
            log.exception("the webhook listener failed on %s", environ.get("PATH_INFO", "?"))
        self.counters.add(route, response.status)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            *response.headers,
        ]
        start_response(f"{response.status} {_REASONS.get(response.status, '')}", headers)
        return [response.body]

    # --- routing ------------------------------------------------------------------------

    def _dispatch(self, environ: WSGIEnvironment) -> tuple[str, _Response]:
        path = str(environ.get("PATH_INFO") or "/")
        if len(path) > 1:
            path = path.rstrip("/")
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        if path in ("/healthz", "/metrics"):
            route = path[1:]
            if method != "GET":
                return route, _method_not_allowed("GET")
            return route, self._healthz() if route == "healthz" else self._metrics()
        name, _, path_event_text = path.removeprefix("/webhooks/").partition("/")
        spec = self.sources.get(name) if path.startswith("/webhooks/") else None
        if spec is None:
            return "other", _json(404, error="unknown route")
        source, path_event = spec.name, path_event_text or None
        if path_event is not None and not _PATH_EVENT.match(path_event):
            return "other", _json(404, error="unknown route")
        if method != "POST":
            return source, _method_not_allowed("POST")
        return source, self._delivery(environ, spec, path_event)

    # --- deliveries ---------------------------------------------------------------------

    def _delivery(
        self, environ: WSGIEnvironment, spec: SourceSpec, path_event: str | None
    ) -> _Response:
        source = spec.name
        if not self.auth.configured:
            return _json(403, error="webhooks are disabled: KB_WEBHOOK_SECRET is not set")
        body = _read_body(environ, self.max_body)
        if isinstance(body, _Response):
            return body
        verdict = self.auth.check(
            body, environ.get(SIGNATURE_HEADER), str(environ.get("QUERY_STRING") or "")
        )
        if verdict != "ok":
            reason = "does not match" if verdict == "bad" else "is missing"
            return _json(401, error=f"the X-Hub-Signature or token {reason}")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return _json(400, error="the body is not JSON")
        if not isinstance(payload, dict):
            return _json(400, error="the body is not a JSON object")
        change, event = _parse(spec, path_event, payload)
        delivery_id = _delivery_id(environ, path_event, body)
        try:
            # Database.connection: 503 at once while the store is known to be down.
            with self.db.connection(timeout=_STORE_TIMEOUT) as conn:
                # Each statement commits on its own (and is durable when it returns): one
                # round trip for a new delivery instead of INSERT + COMMIT.
                conn.autocommit = True
                try:
                    stored = webhook_events.store(
                        conn,
                        source=source,
                        delivery_id=delivery_id,
                        artifact_id=change.artifact_id if change else None,
                        kind=change.kind if change else None,
                        event=_clean(event),
                        version=_clean(change.version) if change and change.version else None,
                        requeue_finished=delivery_id.startswith("sha256:"),
                    )
                finally:
                    conn.autocommit = False
        except (psycopg.Error, PoolTimeout) as exc:
            log.error("could not store a %s webhook delivery: %s", source, type(exc).__name__)
            return _Response(
                503,
                json.dumps({"error": "the store is unavailable; retry later"}).encode(),
                headers=(("Retry-After", "30"),),
            )
        # Committed: only now may the sender be told it was received.
        if stored.status in ("stored", "requeued"):
            log.debug(
                "webhook %s %s for %s queued as event %s",
                source,
                event,
                change.artifact_id if change else "?",
                stored.event_id,
            )
            if self.on_stored is not None:
                try:
                    self.on_stored()
                except Exception:  # stored is stored: the worker's polling will find it
                    log.exception("waking the webhook worker failed")
            return _json(202, status="accepted", event_id=stored.event_id)
        if stored.status == "duplicate":
            return _json(200, status="duplicate", event_id=stored.event_id)
        return _json(202, status="ignored", event_id=stored.event_id, event=event)

    # --- health and metrics ---------------------------------------------------------------

    def _healthz(self) -> _Response:
        try:
            report = dict(self.health())
        except Exception:
            log.exception("the health report failed")
            report = {"ok": False, "error": "the health report failed"}
        return _Response(200 if report.get("ok") else 503, json.dumps(report).encode())

    def _metrics(self) -> _Response:
        samples: dict[str, float] = dict(store_metrics(self.db, self.sources.names))
        samples.update(self.counters.samples())
        if self.extra_metrics is not None:
            try:
                samples.update(self.extra_metrics())
            except Exception:  # a broken collector must not hide the others
                log.exception("an extra metrics collector failed")
        return _Response(200, render_prometheus(samples).encode(), CONTENT_TYPE)


def _method_not_allowed(allowed: str) -> _Response:
    return _Response(
        405, json.dumps({"error": f"use {allowed}"}).encode(), headers=(("Allow", allowed),)
    )


def _read_body(environ: WSGIEnvironment, cap: int) -> bytes | _Response:
    """The body, or the answer refusing it: 413 over ``cap`` (decided from Content-Length
    before reading when it is declared)."""
    too_large = _json(413, error=f"the body is larger than {cap} bytes")
    stream: BinaryIO = environ["wsgi.input"]
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    if declared:
        if not declared.isdigit():
            return _json(400, error="Content-Length is not a number")
        length = int(declared)
        if length > cap:
            return too_large
        return stream.read(length) if length else b""
    if not environ.get("wsgi.input_terminated"):
        return b""  # WSGI: no Content-Length and no terminated stream means no body
    # A de-chunked stream of unknown length: read at most one byte past the cap.
    chunks: list[bytes] = []
    total = 0
    while total <= cap:
        chunk = stream.read(min(64 << 10, cap + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return too_large if total > cap else b"".join(chunks)


def _parse(
    spec: SourceSpec, path_event: str | None, payload: Mapping[str, Any]
) -> tuple[WebhookChange | None, str]:
    """The change (None: nothing indexed is affected) and the event name to record."""
    try:
        change = spec.parse_webhook(path_event, payload)
    except Exception:  # a parser bug must not make the sender retry the delivery for ever
        log.exception("the %s webhook parser failed; the delivery is ignored", spec.name)
        change = None
    if change is not None:
        return change, change.event
    return None, spec.event_of(path_event, payload)


def _delivery_id(environ: WSGIEnvironment, path_event: str | None, body: bytes) -> str:
    """Atlassian's delivery identifier (the same on every retry), else a hash of what was
    sent: the route's event and the body (Confluence Cloud puts the event only in the URL)."""
    given = _clean(str(environ.get(_DELIVERY_HEADER) or ""), 200)
    if given:
        return "id:" + given
    digest = hashlib.sha256((path_event or "").encode() + b"\n" + body).hexdigest()
    return "sha256:" + digest


def _clean(text: str, limit: int = 100) -> str:
    """Sender-chosen text made storable: no control characters (Postgres text cannot hold
    NUL, and a delivery refused for it would be retried for ever), clipped."""
    return "".join(ch for ch in text if ch.isprintable())[:limit].strip()


def build_webhook_app(
    secret: Secret | None,
    db: Database,
    *,
    health: Callable[[], Mapping[str, Any]] | None = None,
    extra_metrics: Callable[[], Mapping[str, float]] | None = None,
    on_stored: Callable[[], None] | None = None,
    max_body: int = MAX_BODY,
    sources: SourceRegistry = BUILT_IN,
) -> WebhookApp:
    """The listener's WSGI app.

    ``secret``: ``settings.webhook_secret`` (None: every delivery is refused with 403).
    ``health``: the /healthz report, a dict whose ``ok`` decides 200 or 503 (default:
    :func:`health_report` of ``db``). ``extra_metrics``: more samples for /metrics, keyed by
    :func:`series` (cache hits and misses, answers dirtied...). ``on_stored``: called after
    each queued event is committed, e.g. ``WebhookWorker.wake``. ``sources``: the registry
    whose names become routes.
    """
    if not 0 < max_body <= MAX_BODY:
        raise ValueError(f"max_body must be 1..{MAX_BODY} bytes")
    return WebhookApp(
        auth=WebhookAuth(secret),
        db=db,
        health=health or (lambda: health_report(db)),
        extra_metrics=extra_metrics,
        on_stored=on_stored,
        max_body=max_body,
        sources=sources,
    )
