"""The chat host: one waitress server for every registered chat platform, and ``/healthz``.

Each platform adapter contributes a :class:`Mount` (docs/ARCHITECTURE.md, "Chat platforms"):
an HTTP route it answers (Slack's ``POST /slack/events``, Teams' ``POST /api/messages``), or a
connection it opens itself (Slack's Socket Mode). The host routes POSTs to the mounts, answers
``GET /healthz`` itself, and refuses anything else. With a connecting mount it serves HTTP in
the background and runs that connection in the foreground, so a container probe works the
same in both modes. Adding a platform adds one mount to the list the host is given.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from waitress import wasyncore

from core.http_server import ServerLimits
from core.http_server import create_server as create_limited_server
from store.db import Database

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
MAX_BODY = 1024 * 1024  # chat payloads are a few kB; refuse anything silly early
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
_REASONS.update({405: "Method Not Allowed", 501: "Not Implemented", 503: "Service Unavailable"})


@dataclass(frozen=True)
class Mount:
    """One chat platform on the host.

    ``path`` and ``app``: the route it answers (POST only) and the WSGI app behind it. ``connect``
    instead: runs the platform's own connection until interrupted (then ``path`` is None).
    ``close``: stops its pools and clients when the host stops.
    """

    name: str
    path: str | None
    app: WSGIApplication | None
    close: Callable[[], None]
    connect: Callable[[], None] | None = None


def json_reply(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


class ChatHost:
    """The WSGI app: ``/healthz`` answered here, each mount's path handed to its app."""

    def __init__(self, mounts: Sequence[Mount], db: Database, *, mode: str) -> None:
        self._routes = {m.path: m.app for m in mounts if m.path is not None and m.app is not None}
        self._db = db
        self._mode = mode

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            status, body = self._health()
            return json_reply(start_response, status, body)
        app = self._routes.get(path)
        if app is None:
            return json_reply(start_response, 404, {"error": "not found"})
        if method != "POST":
            return json_reply(start_response, 405, {"error": "POST only"})
        return app(environ, start_response)

    def _health(self) -> tuple[int, dict[str, Any]]:
        # A probe with a 0.8 s deadline, never a wait on the pool: a container probe gets its
        # answer within 1 s while Postgres is down. The probe logs the outage once, not once
        # per check (docs/ARCHITECTURE.md, "Failures: the store unreachable").
        if not self._db.reachable():
            return 503, {"status": "unhealthy", "database": "unreachable"}
        return 200, {"status": "ok", "database": "ok", "mode": self._mode}


class RunningServer:
    """A waitress server on a background thread (tests, benches, Socket Mode's /healthz).

    The thread polls the socket map itself and checks a stop flag between polls, so ``close``
    never closes sockets under a ``select`` still running in another thread.
    """

    def __init__(self, server: Any, host: str) -> None:
        self._server = server
        self._stop = threading.Event()
        self.host = host
        self.port = int(server.effective_port)
        # A single-socket server keeps its map in ``_map``; a multi-socket one in ``map``.
        self._map = getattr(server, "map", None) or server._map
        self._thread = threading.Thread(target=self._loop, name="kb-chat-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _loop(self) -> None:
        while not self._stop.is_set():
            wasyncore.loop(timeout=0.05, map=self._map, count=1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._server.close()


def create_server(wsgi: WSGIApplication, host: str, port: int, *, threads: int = 8) -> Any:
    # Header and body deadlines and thousands of connection slots: slow clients cannot
    # starve the endpoint (core/http_server.py).
    return create_limited_server(
        wsgi, host, port, ServerLimits(threads=threads, max_body_bytes=MAX_BODY)
    )


def start_http_server(
    mounts: Sequence[Mount],
    db: Database,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    mode: str = "http",
) -> RunningServer:
    """Serve in a background thread; ``port=0`` picks a free port (see ``.url``)."""
    return RunningServer(create_server(ChatHost(mounts, db, mode=mode), host, port), host)


def serve(mounts: Sequence[Mount], db: Database, *, port: int) -> None:
    """Run the bot until interrupted, then close every mount."""
    try:
        connecting = [m for m in mounts if m.connect is not None]
        routes = [f"POST {m.path}" for m in mounts if m.path is not None]
        if connecting:
            _serve_connected(connecting[0], mounts, db, port)
        else:
            server = create_server(ChatHost(mounts, db, mode="http"), "0.0.0.0", port)
            log.info(
                "kb bot listening on port %s (HTTP mode: %s, GET %s)",
                port,
                ", ".join(routes),
                HEALTH_PATH,
            )
            try:
                server.run()
            finally:
                server.close()
    finally:
        for mount in mounts:
            mount.close()


def _serve_connected(main: Mount, mounts: Sequence[Mount], db: Database, port: int) -> None:
    assert main.connect is not None
    health = start_http_server(mounts, db, host="0.0.0.0", port=port, mode="socket")
    log.info("kb bot connecting (%s); GET %s on port %s", main.name, HEALTH_PATH, health.port)
    try:
        main.connect()  # blocks until interrupted
    finally:
        health.close()
