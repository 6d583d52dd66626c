"""A fake Anthropic Messages API on 127.0.0.1, for the real ``anthropic`` client to talk to.

``POST /v1/messages`` answers like the real API: a JSON ``Message``, or with ``"stream": true``
a server-sent event stream (``message_start``, ``content_block_start``, ``ping``,
``content_block_delta`` text deltas, ``content_block_stop``, ``message_delta``,
``message_stop``). Each request takes the next scripted :class:`Reply`; the last one repeats,
so one ``overloaded()`` answers every retry. Requests are validated the way the API would
(key, version header, model, max_tokens, messages, system blocks, cache_control) and
recorded, so tests can assert on exactly what the client sent.

    with fake_anthropic(text("Use the VPN [1].")) as api:
        client = anthropic.Anthropic(api_key=api.key, base_url=api.url, max_retries=1)
        ...
        assert api.bodies[0]["model"] == "claude-test"
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fakes.http import FakeServer, Request, Response, serve

Kind = Literal["text", "error", "malformed", "empty", "stream_error"]

# Retryable errors ask for a 10 ms pause, so the SDK's own backoff keeps tests fast.
FAST_RETRY = {"retry-after-ms": "10"}


@dataclass(frozen=True)
class Reply:
    """One scripted outcome of a ``POST /v1/messages``."""

    kind: Kind
    text: str = ""
    status: int = 200
    error_type: str = ""
    error_message: str = ""
    stop_reason: str = "end_turn"
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    first_token: float = 0.0  # paced: seconds before the first text
    tokens_per_s: float = 0.0  # paced: the rate after it (0: all at once)


def text(answer: str, *, stop_reason: str = "end_turn", delay: float = 0.0) -> Reply:
    """A normal answer (``delay`` seconds late: for client timeouts)."""
    return Reply("text", text=answer, stop_reason=stop_reason, delay=delay)


def error(status: int, error_type: str, message: str, *, retry_fast: bool = True) -> Reply:
    headers = tuple(FAST_RETRY.items()) if retry_fast else ()
    return Reply(
        "error", status=status, error_type=error_type, error_message=message, headers=headers
    )


def overloaded() -> Reply:
    return error(529, "overloaded_error", "Overloaded")


def server_error(status: int = 500) -> Reply:
    return error(status, "api_error", "Internal server error")


def rate_limited() -> Reply:
    return error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit")


def unauthorized() -> Reply:
    return error(401, "authentication_error", "invalid x-api-key", retry_fast=False)


def malformed() -> Reply:
    """A 200 whose body (or event data) is cut-off JSON."""
    return Reply("malformed")


def empty() -> Reply:
    """A well-formed message with no text block at all."""
    return Reply("empty")


def stream_error(
    partial: str = "Partial ", *, first_token: float = 0.0, tokens_per_s: float = 0.0
) -> Reply:
    """A stream that starts, sends ``partial``, then an ``overloaded_error`` event."""
    return Reply(
        "stream_error",
        text=partial,
        error_type="overloaded_error",
        error_message="Overloaded",
        first_token=first_token,
        tokens_per_s=tokens_per_s,
    )


def paced(answer: str, *, first_token: float = 0.8, tokens_per_s: float = 40.0) -> Reply:
    """A model at a realistic pace: the first token after ``first_token`` seconds, then
    ``tokens_per_s`` (a token is four characters). Streamed, the text arrives at that pace;
    not streamed, the whole message comes when the last token would have."""
    return Reply("text", text=answer, first_token=first_token, tokens_per_s=tokens_per_s)


class FakeMessagesAPI:
    """The handler behind the fake server; see the module docstring."""

    def __init__(self, replies: tuple[Reply, ...], *, key: str = "test-key") -> None:
        self.key = key
        self._script: deque[Reply] = deque(replies)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._cached_prefixes: set[str] = set()
        # Set when the test ends, so a deliberately slow reply stops waiting at once.
        self._released = threading.Event()
        self._server: FakeServer | None = None
        self._first_request = 0  # requests before this index belong to an earlier test
        self.first_text_at: list[float] = []  # monotonic: when each paced stream's first text left

    # -- what tests use ------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "use fake_anthropic() to start the server"
        return self._server.url

    @property
    def requests(self) -> list[Request]:
        assert self._server is not None
        seen = self._server.requests[self._first_request :]
        return [r for r in seen if r.path == "/v1/messages"]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests]

    @property
    def last_body(self) -> dict[str, Any]:
        assert self.requests, "the fake Messages API received no request"
        return self.bodies[-1]

    def reset(self) -> None:
        """Forget the script, the recorded requests and the prompt cache: a server shared by
        several tests (stopping one costs half a second) looks fresh to each of them."""
        assert self._server is not None
        self.release()
        with self._lock:
            self._script.clear()
            self._cached_prefixes.clear()
            self._first_request = len(self._server.requests)
        self._released = threading.Event()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @staticmethod
    def system_text(body: dict[str, Any]) -> str:
        system = body.get("system", "")
        if isinstance(system, str):
            return system
        return "\n".join(block["text"] for block in system)

    @staticmethod
    def user_text(body: dict[str, Any]) -> str:
        content = body["messages"][-1]["content"]
        if isinstance(content, str):
            return content
        return "\n".join(block.get("text", "") for block in content)

    # -- the server side -----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/v1/messages":
            return _error(404, "not_found_error", f"Not found: {request.method} {request.path}")
        # SDKs have sent the key as x-api-key and, more recently, as a Bearer token.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.key not in (request.headers.get("x-api-key"), bearer):
            return _error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in request.headers:
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        try:
            body = request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "request body is not valid JSON")
        problem = _invalid(body)
        if problem:
            return _error(400, "invalid_request_error", problem)
        reply = self._next_reply()
        if reply is None:
            return _error(500, "api_error", "fake: no reply scripted", retry=False)
        if reply.delay:
            self._released.wait(reply.delay)
        return self._respond(reply, body)

    def release(self) -> None:
        self._released.set()

    def _next_reply(self) -> Reply | None:
        with self._lock:
            if not self._script:
                return None
            return self._script.popleft() if len(self._script) > 1 else self._script[0]

    def _respond(self, reply: Reply, body: dict[str, Any]) -> Response:
        streaming = bool(body.get("stream"))
        request_id = {"request-id": f"req_fake_{next(self._ids):04d}"}
        if reply.kind == "error":
            response = _error(reply.status, reply.error_type, reply.error_message)
            response.headers.update(dict(reply.headers))
            return response
        if reply.kind == "malformed":
            if streaming:
                return _sse(b'event: message_start\ndata: {"type": "message_start", "mess\n\n')
            return Response(200, b'{"id": "msg_fake", "type": "mess', _json_type(request_id))
        message = self._message(body, reply)
        if not streaming:
            if reply.tokens_per_s:
                tokens = len(_chunks(reply.text, TOKEN_CHARS))
                self._released.wait(reply.first_token + tokens / reply.tokens_per_s)
            return Response(200, json.dumps(message).encode(), _json_type(request_id))
        if reply.tokens_per_s or reply.first_token:
            return _sse(b"", request_id, stream=self._paced(_events(message, reply), reply))
        return _sse(b"".join(_events(message, reply)), request_id)

    def _paced(self, events: Iterator[bytes], reply: Reply) -> Iterator[bytes]:
        """The events with the model's pauses before each text delta."""
        first = True
        for event in events:
            if event.startswith(b"event: content_block_delta"):
                pause = reply.first_token if first else 1 / (reply.tokens_per_s or 1000.0)
                self._released.wait(pause)
                if first:
                    with self._lock:
                        self.first_text_at.append(time.monotonic())
                first = False
            yield event

    def _message(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        words = len(self.user_text(body).split()) + len(self.system_text(body).split())
        created = read = 0
        cached = _cached_prefix(body)
        if cached:
            # Like the API: the first request writes the cached prefix, later ones read it.
            with self._lock:
                hit = cached in self._cached_prefixes
                self._cached_prefixes.add(cached)
            read, created = (len(cached.split()), 0) if hit else (0, len(cached.split()))
        content = [] if reply.kind == "empty" else [{"type": "text", "text": reply.text}]
        return {
            "id": f"msg_fake_{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(words - read - created, 1),
                "cache_creation_input_tokens": created,
                "cache_read_input_tokens": read,
                "output_tokens": max(len(reply.text.split()), 1),
            },
        }


@contextmanager
def fake_anthropic(*replies: Reply, key: str = "test-key") -> Iterator[FakeMessagesAPI]:
    """Serve the fake on a free loopback port for the duration of the ``with``."""
    api = FakeMessagesAPI(replies, key=key)
    with serve(api.handle) as server:
        api._server = server
        try:
            yield api
        finally:
            # Before the server stops: it joins its handler threads, slow ones included.
            api.release()


# -- wire format ---------------------------------------------------------------------------


def _json_type(headers: dict[str, str]) -> dict[str, str]:
    return {"Content-Type": "application/json", **headers}


def _error(status: int, error_type: str, message: str, *, retry: bool | None = None) -> Response:
    headers = _json_type({"request-id": "req_fake_error"})
    if retry is not None:
        headers["x-should-retry"] = "true" if retry else "false"
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return Response(status, json.dumps(body).encode(), headers)


def _sse(
    payload: bytes, headers: dict[str, str] | None = None, *, stream: Iterator[bytes] | None = None
) -> Response:
    return Response(
        200,
        payload,
        {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            **(headers or {}),
        },
        stream=stream,
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


TOKEN_CHARS = 4  # a paced reply's token


def _chunks(answer: str, size: int = 12) -> list[str]:
    return [answer[i : i + size] for i in range(0, len(answer), size)]


def _events(message: dict[str, Any], reply: Reply) -> Iterator[bytes]:
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    yield _event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        yield _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
        if index == 0:
            yield _event("ping", {"type": "ping"})
        for piece in _chunks(block["text"], TOKEN_CHARS if reply.tokens_per_s else 12):
            yield _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        if reply.kind == "stream_error":
            # After all of ``partial``: the model broke off mid-answer.
            yield _event(
                "error",
                {
                    "type": "error",
                    "error": {"type": reply.error_type, "message": reply.error_message},
                },
            )
            return
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


def _cached_prefix(body: dict[str, Any]) -> str:
    """The system text up to and including the last block marked for caching."""
    system = body.get("system")
    if not isinstance(system, list):
        return ""
    marked = [i for i, block in enumerate(system) if block.get("cache_control")]
    return "\n".join(block["text"] for block in system[: marked[-1] + 1]) if marked else ""


def _invalid(body: Any) -> str:
    """What the real API would reject with a 400, as far as these tests can tell."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for message in messages:
        if message.get("role") not in {"user", "assistant"}:
            return "messages: role must be user or assistant"
        content = message.get("content")
        if not content or (isinstance(content, str) and not content.strip()):
            return "messages: text content blocks must be non-empty"
    if messages[0]["role"] != "user":
        return "messages: the first message must use the user role"
    system = body.get("system", "")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system
    for block in blocks if system else []:
        if block.get("type") != "text" or not str(block.get("text", "")).strip():
            return "system: text content blocks must be non-empty"
        control = block.get("cache_control")
        if control is not None and control.get("type") != "ephemeral":
            return "system: cache_control.type must be 'ephemeral'"
    return ""
