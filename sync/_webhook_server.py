"""The webhook listener's server: core.http_server's policy, and running it on a thread.

Slow senders (slow-loris) are held off by :mod:`core.http_server`: header and body deadlines
and thousands of connection slots; the body limits below are the listener's own.
"""

from __future__ import annotations

import threading
from typing import Any
from wsgiref.types import WSGIApplication

from waitress import wasyncore
from waitress.trigger import trigger as Trigger

from core.http_server import ServerLimits, create_server

MAX_BODY = 1 << 20  # the listener's limit: Atlassian bodies are a few KiB, never a page body
# waitress refuses larger bodies itself, from Content-Length before reading them and while
# de-chunking; between MAX_BODY and this the app answers 413 itself (and counts it).
_SERVER_BODY_LIMIT = MAX_BODY + (64 << 10)
_HEADER_LIMIT = 16 << 10


class WebhookServer:
    """A waitress server for the listener, which can run in a thread and be stopped cleanly."""

    def __init__(self, app: WSGIApplication, host: str, port: int, limits: ServerLimits) -> None:
        self._map: dict[int, Any] = {}
        server: Any = create_server(app, host, port, limits, socket_map=self._map)
        self._server = server
        # Stopping must happen on the I/O loop's own thread: a trigger runs it there.
        socket_map: Any = self._map  # the stubs type the trigger's map differently
        self._stopper: Any = Trigger(socket_map)
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._closed = False

    @property
    def port(self) -> int:
        if hasattr(self._server, "effective_port"):
            return int(self._server.effective_port)
        return int(self._server.effective_listen[0][1])

    @property
    def url(self) -> str:
        host = self._server.adj.host if hasattr(self._server, "adj") else "127.0.0.1"
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    def run(self) -> None:
        """Serve until :meth:`close` is called (blocks)."""
        self._running.set()
        try:
            self._server.run()
        finally:
            self._running.clear()

    def start(self) -> WebhookServer:
        """Serve on a daemon thread named ``webhook-listener``."""
        self._thread = threading.Thread(target=self.run, name="webhook-listener", daemon=True)
        self._thread.start()
        return self

    def serve_until(self, stop: threading.Event) -> None:
        """Serve on a thread until ``stop`` is set, then close: a ``kb daemon`` background
        task (``daemon.background.append(server.serve_until)``)."""
        self.start()
        try:
            stop.wait()
        finally:
            self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, let requests in progress finish (up to ``timeout``), free sockets."""
        if self._closed:
            return
        self._closed = True
        if self._running.is_set():
            self._stopper.pull_trigger(lambda: wasyncore.close_all(self._map))
            if self._thread is not None:
                self._thread.join(timeout)
        else:
            wasyncore.close_all(self._map)
        self._server.task_dispatcher.shutdown(timeout=timeout)

    def __enter__(self) -> WebhookServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_webhooks(
    app: WSGIApplication,
    host: str,
    port: int,
    *,
    threads: int = 8,
    connection_limit: int = ServerLimits.connection_limit,
    channel_timeout: int = ServerLimits.idle_timeout,
) -> WebhookServer:
    """A server for ``app`` bound to ``host:port`` (port 0: any free port); call
    ``.start()`` to serve on a thread, or ``.run()`` to block, and ``.close()`` to stop.

    Limits (core.http_server): request headers 16 KiB (431 beyond) within 10 s of a request's
    first byte, the whole request within 30 s; bodies over 1 MiB + 64 KiB refused from
    Content-Length before they are read, and while de-chunking; whole requests buffered in
    memory, never spilled to a temp file (bodies may hold personal data); a connection idle
    for ``channel_timeout`` seconds is closed; up to ``connection_limit`` connections at once.
    Slow senders cost a socket for a bounded time, never a worker thread.
    """
    limits = ServerLimits(
        threads=threads,
        connection_limit=connection_limit,
        idle_timeout=channel_timeout,
        max_header_bytes=_HEADER_LIMIT,
        max_body_bytes=_SERVER_BODY_LIMIT,
    )
    return WebhookServer(app, host, port, limits)
