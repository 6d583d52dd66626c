"""Serving the Slack app: HTTP mode (waitress, WSGI) or Socket Mode (Slack's built-in client).

HTTP mode routes ``POST /slack/events`` (events, slash commands and interactivity all arrive
there) to Bolt and answers ``GET /healthz`` itself. Socket Mode needs no public URL; it still
serves ``/healthz`` on ``$PORT`` so a container probe works the same in both modes. When Teams
is configured, ``POST /api/messages`` goes to its handler on the same server, in both modes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress import wasyncore
from waitress.server import create_server as waitress_create_server

from kb.settings import Settings
from store.db import Database

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
TEAMS_PATH = "/api/messages"
MAX_BODY = 1024 * 1024  # Slack's payloads are a few kB; refuse anything silly early


class KbWsgi:
    """``/healthz`` answered here, ``/slack/events`` handed to Bolt, ``/api/messages`` to the
    Teams handler when there is one, anything else 404."""

    def __init__(
        self,
        app: App | None,
        db: Database,
        *,
        mode: str,
        teams: WSGIApplication | None = None,
    ) -> None:
        self._bolt = SlackRequestHandler(app, path=EVENTS_PATH) if app is not None else None
        self._db = db
        self._mode = mode
        self._teams = teams

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            status, body = self._health()
            return _reply(start_response, status, body)
        if path == EVENTS_PATH and self._bolt is not None:
            if method != "POST":
                return _reply(start_response, "405 Method Not Allowed", {"error": "POST only"})
            return self._bolt(environ, start_response)
        if path == TEAMS_PATH and self._teams is not None:
            return self._teams(environ, start_response)
        return _reply(start_response, "404 Not Found", {"error": "not found"})

    def _health(self) -> tuple[str, dict[str, Any]]:
        try:
            with self._db.connection() as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            return "503 Service Unavailable", {"status": "unhealthy", "database": "unreachable"}
        return "200 OK", {"status": "ok", "database": "ok", "mode": self._mode}


def _reply(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


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
        self._thread = threading.Thread(target=self._loop, name="kb-slack-http", daemon=True)
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
    return waitress_create_server(
        wsgi,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=MAX_BODY,
        ident="kb-bot",
        clear_untrusted_proxy_headers=True,
    )


def start_http_server(
    app: App | None,
    db: Database,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    mode: str = "http",
    teams: WSGIApplication | None = None,
) -> RunningServer:
    """Serve in a background thread; ``port=0`` picks a free port (see ``.url``)."""
    return RunningServer(create_server(KbWsgi(app, db, mode=mode, teams=teams), host, port), host)


def serve_slack(
    settings: Settings,
    app: App | None,
    db: Database,
    *,
    teams: WSGIApplication | None = None,
) -> None:
    """Run the bot until interrupted: Socket Mode when SLACK_APP_TOKEN is set, else HTTP.

    ``teams`` (``bot.teams.build_teams_handler``) adds ``POST /api/messages``; with no Slack
    ``app`` it is served alone, over HTTP.
    """
    try:
        if app is not None and settings.slack_app_token is not None:
            _serve_socket_mode(settings, app, db, teams)
        else:
            wsgi = KbWsgi(app, db, mode="http", teams=teams)
            server = create_server(wsgi, "0.0.0.0", settings.port)
            routes = [f"POST {EVENTS_PATH}"] if app is not None else []
            routes += [f"POST {TEAMS_PATH}"] if teams is not None else []
            log.info(
                "kb bot listening on port %s (HTTP mode: %s, GET %s)",
                settings.port,
                ", ".join(routes),
                HEALTH_PATH,
            )
            try:
                server.run()
            finally:
                server.close()
    finally:
        for part in (app, teams):
            close = getattr(part, "close", None)
            if callable(close):
                close()


def _serve_socket_mode(
    settings: Settings, app: App, db: Database, teams: WSGIApplication | None
) -> None:
    # The built-in client needs no extra dependency (no websocket-client, no aiohttp).
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    assert settings.slack_app_token is not None
    health = start_http_server(
        None, db, host="0.0.0.0", port=settings.port, mode="socket", teams=teams
    )
    log.info("kb bot connecting in Socket Mode; GET %s on port %s", HEALTH_PATH, health.port)
    handler = SocketModeHandler(app, settings.slack_app_token.reveal())
    try:
        handler.start()  # type: ignore[no-untyped-call]  # blocks until interrupted
    finally:
        handler.close()  # type: ignore[no-untyped-call]
        health.close()
