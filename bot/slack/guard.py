"""The gate in front of Bolt on ``POST /slack/events`` (docs/ARCHITECTURE.md, "Security stance").

The signature is checked on the raw bytes before anything is parsed: an unsigned, forged or
stale request gets 401 and one warning line naming the peer, never its body. A signed body that
does not parse, or whose shape is not one Slack sends (``"event": "x"``, ``actions`` as a
string, ``payload=null``, JSON nested thousands deep, bytes that are not UTF-8), gets an empty
200 so Slack does not retry it, and one warning line; it never reaches Bolt, so no input can
end in a traceback or a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # Slack's payloads are far smaller; the host refuses larger ones too
REPLAY_WINDOW_S = 5 * 60  # Slack's rule: older (or later) timestamps are replays


class SlackRequestGuard:
    """WSGI middleware: verify, then check the shape, then hand the same bytes to ``inner``."""

    def __init__(
        self, inner: WSGIApplication, signing_secret: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._inner = inner
        self._secret = signing_secret.encode()
        self._clock = clock

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self._inner(environ, start_response)
        body = _read_body(environ)
        peer = environ.get("REMOTE_ADDR", "?")
        if body is None or not self._signed(environ, body):
            log.warning("refused an unsigned or stale Slack request from %s", peer)
            return _reply(start_response, "401 Unauthorized")
        problem = shape_problem(body, str(environ.get("CONTENT_TYPE", "")))
        if problem is not None:
            log.warning("ignored a signed Slack request from %s: %s", peer, problem)
            return _reply(start_response, "200 OK")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self._inner(environ, start_response)

    def _signed(self, environ: WSGIEnvironment, body: bytes) -> bool:
        timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""))
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
        if not timestamp.isascii() or not timestamp.isdigit() or not signature:
            return False
        if abs(self._clock() - int(timestamp)) > REPLAY_WINDOW_S:
            return False
        # Slack's scheme over the raw bytes (which need not be UTF-8 to be refused cleanly).
        mac = hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
        return hmac.compare_digest(f"v0={mac.hexdigest()}", signature)


def shape_problem(body: bytes, content_type: str) -> str | None:
    """Why a signed body is not a request Slack sends, or None when it is one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    if content_type.startswith("application/json"):
        return _json_problem(text, _event_problem)
    form = parse_qs(text, keep_blank_values=True)
    if "payload" in form:
        return _json_problem(form["payload"][0], _interaction_problem)
    if "command" in form or "ssl_check" in form:
        return None
    return "a form body with neither a payload nor a command"


def _json_problem(text: str, check: Any) -> str | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return "the JSON does not parse"
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return "the JSON is not an object with a type"
    problem: str | None = check(data)
    return problem


def _event_problem(data: Mapping[str, Any]) -> str | None:
    if data["type"] == "event_callback":
        event = data.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "an event_callback whose event is not an object with a type"
    return None


def _interaction_problem(data: Mapping[str, Any]) -> str | None:
    actions = data.get("actions")
    if "actions" in data and (
        not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions)
    ):
        return "actions is not a list of objects"
    for key in ("user", "channel", "container", "message", "view"):
        if key in data and data[key] is not None and not isinstance(data[key], dict):
            return f"{key} is not an object"
    return None


def _read_body(environ: WSGIEnvironment) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length < 0 or length > MAX_BODY:
        return None
    stream: Any = environ["wsgi.input"]
    body: bytes = stream.read(length) if length else b""
    return body


def _reply(start_response: StartResponse, status: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return [b""]
