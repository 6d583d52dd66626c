"""The HTTP server policy of every kb-bot listener: waitress with limits slow clients cannot beat.

waitress reads each request whole in its I/O thread before a worker thread runs the app, so a
slow sender holds a socket, never a thread. Two gaps remain in its defaults, and this module
closes both:

* waitress only drops a connection that has been silent for ``channel_timeout``; a client
  sending one header byte every few seconds is never silent and stays for ever (slow-loris).
  Here a request must finish its headers within ``header_timeout`` and its body within
  ``body_timeout`` of its first byte, or the connection is closed.
* at ``connection_limit`` open sockets (waitress default: 100) it stops accepting, so a few
  hundred slow clients lock everyone out. Here the limit is a few thousand (raising the
  process's open-file soft limit when it allows fewer), and the deadlines above free slots
  steadily.

Build one with :func:`create_server` (a waitress server object: ``.run()``, ``.close()``,
``.effective_port``), with :class:`ServerLimits` to tune it.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Any
from wsgiref.types import WSGIApplication

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

_SPARE_FILES = 64  # descriptors kept for the database pool, logs, outgoing HTTP


@dataclass(frozen=True)
class ServerLimits:
    """What one listener tolerates. The defaults hold 1,000+ slow clients off a 2-core box."""

    threads: int = 8
    connection_limit: int = 4000
    header_timeout: float = 10.0  # first byte of a request to the end of its headers
    body_timeout: float = 30.0  # first byte of a request to the end of its body
    idle_timeout: int = 30  # a keep-alive connection with no request in flight
    max_header_bytes: int = 16 << 10  # 431 beyond
    max_body_bytes: int = 1 << 20  # 413 from Content-Length, before reading the body


class _DeadlineChannel(HTTPChannel):
    """A channel that remembers when the request it is reading began."""

    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.monotonic()
        result: bool = super().received(data)
        if self.request is None:
            self.request_started = None  # nothing half-read: no deadline runs
        return result


class _DeadlineServer(TcpWSGIServer):
    channel_class = _DeadlineChannel
    limits: ServerLimits = ServerLimits()

    def maintenance(self, now: Any) -> None:
        super().maintenance(now)  # the idle timeout (``now`` is time.time())
        clock = time.monotonic()
        channels: Any = self.active_channels  # {fileno: channel}; the stubs say otherwise
        for channel in list(channels.values()):
            started = getattr(channel, "request_started", None)
            if started is None or channel.will_close:
                continue
            request = channel.request
            reading_headers = request is not None and not request.headers_finished
            budget = self.limits.header_timeout if reading_headers else self.limits.body_timeout
            if clock - started > budget:
                # Close without answering: a client this slow would not read a 408 either.
                channel.will_close = True


def create_server(
    app: WSGIApplication,
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    *,
    socket_map: dict[int, Any] | None = None,
) -> Any:
    """A waitress server for ``app`` on ``host:port`` (0: any free port) that enforces
    ``limits``; call ``.run()`` to serve (blocks) and ``.close()`` to stop. ``socket_map``
    is waitress's map of sockets, for callers that stop the loop from another thread.

    Whole requests are buffered in memory, never spilled to a temporary file (bodies may hold
    personal data); tracebacks never reach a response.
    """
    limits = limits or ServerLimits()
    connection_limit = _usable_connections(limits.connection_limit)
    adj = Adjustments(
        host=host,
        port=port,
        threads=limits.threads,
        connection_limit=connection_limit,
        channel_timeout=limits.idle_timeout,
        cleanup_interval=1,  # check the deadlines every second
        max_request_header_size=limits.max_header_bytes,
        max_request_body_size=limits.max_body_bytes,
        inbuf_overflow=limits.max_body_bytes + limits.max_header_bytes,
        asyncore_use_poll=True,  # select() cannot watch more than 1,024 sockets
        expose_tracebacks=False,
        ident="kb-bot",
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map = {} if socket_map is None else socket_map
    servers: list[Any] = []
    listen: Any = adj.listen  # (family, type, proto, address) tuples; the stubs say str
    server_class: Any = _DeadlineServer
    for sockinfo in listen:
        server = server_class(app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
        server.limits = limits
        servers.append(server)
    if len(servers) == 1:
        return servers[0]
    effective = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, effective, dispatcher, servers[-1].log_info)


def _usable_connections(wanted: int) -> int:
    """``wanted``, raising the open-file soft limit towards the hard one when needed; fewer
    when the hard limit forbids it (each connection costs a descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - _SPARE_FILES))
