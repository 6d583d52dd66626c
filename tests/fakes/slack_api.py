"""A fake Slack Web API on 127.0.0.1, Slack-style request signing, and a running kb-bot.

:class:`FakeSlack` answers the Web API methods kb-bot calls (``auth.test``, ``chat.*``,
``reactions.*``, ``conversations.replies`` / ``history`` / ``info``, the assistant pane's
``assistant.threads.*``, streaming's ``chat.startStream`` / ``appendStream`` / ``stopStream``)
and ``response_url`` POSTs, records
every call, keeps posted messages so threads can be read back (with message metadata), and
answers 429 with ``Retry-After`` (or any error) when told to.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from bot.answers import AnswerFlow
from bot.host import RunningServer, start_http_server
from fakes import slack_streams
from fakes.http import FakeServer, Request, Response
from fakes.slack_streams import BOT_ID
from kb.chat_wiring import build_slack
from kb.settings import Settings, load_settings
from store.db import Database

BOT_USER = "UKBBOT"
TEAM = "T0KB"
SECRET = "test-signing-secret"
ADMIN = "UADMIN"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` + hex HMAC-SHA256 of ``v0:<timestamp>:<body>``, exactly as Slack signs."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


_triggers = itertools.count(1)


def event_body(event: dict[str, Any], *, bot_user: str, event_id: str | None = None) -> bytes:
    """An Events API envelope around ``event``, as Slack sends it (to be signed)."""
    envelope = {
        "token": "legacy",
        "team_id": TEAM,
        "api_app_id": "AKB",
        "type": "event_callback",
        "event": event,
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:16].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": bot_user, "is_bot": True}],
    }
    return json.dumps(envelope).encode()


def mention_event(
    text: str, *, bot_user: str, ts: str, channel: str = "CGEN", user: str = "UHUMAN"
) -> dict[str, Any]:
    """An ``app_mention`` of the bot asking ``text``."""
    return {
        "type": "app_mention",
        "user": user,
        "text": f"<@{bot_user}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }


def new_trigger_id() -> str:
    """Unique per invocation, as Slack's are (a repeated one is a replay)."""
    return f"{next(_triggers)}.{time.time_ns()}"


def signed_headers(
    body: bytes, *, content_type: str, secret: str = SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(secret, ts, body),
    }


def signed_mention(
    question: str,
    *,
    bot_user: str,
    ts: str,
    channel: str = "CGEN",
    event_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and signed headers of an ``app_mention`` as Slack delivers it over HTTP."""
    event = mention_event(question, bot_user=bot_user, ts=ts, channel=channel)
    body = event_body(event, bot_user=bot_user, event_id=event_id)
    return body, signed_headers(body, content_type="application/json")


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int


def is_notice(call: Call) -> bool:
    """Whether a posted message came from the outbox (it carries ``kb_outbox`` metadata)."""
    return "kb_outbox" in json.dumps(call.args.get("metadata", ""))


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: float | None


@dataclass
class FakeSlack:
    bot_user: str = BOT_USER
    calls: list[Call] = field(default_factory=list)
    responses: list[Call] = field(default_factory=list)  # response_url POSTs
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    response_url_status: int = 200
    member_of: set[str] = field(default_factory=set)  # channels the bot is in (conversations.info)
    # Whether this workspace lets the app stream; without it chat.startStream answers
    # not_allowed and kb-bot posts each answer whole (what suites written before streaming see).
    streaming: bool = False
    _failures: dict[str, deque[_Failure]] = field(default_factory=dict)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _server: FakeServer | None = None

    def start(self) -> FakeSlack:
        self._server = FakeServer(self._handle).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def response_url(self, name: str = "r1") -> str:
        return f"{self.url}/response/{name}"

    # --- scripting ----------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        error: str = "ratelimited",
        retry_after: float | None = 1,
        times: int = 1,
    ) -> None:
        with self._lock:
            queue = self._failures.setdefault(method, deque())
            for _ in range(times):
                queue.append(_Failure(status, error, retry_after if status == 429 else None))

    def add_message(
        self,
        channel: str,
        ts: str,
        text: str,
        *,
        user: str = "UHUMAN",
        thread_ts: str | None = None,
        bot_id: str | None = None,
    ) -> None:
        message: dict[str, Any] = {"type": "message", "ts": ts, "text": text, "user": user}
        if thread_ts:
            message["thread_ts"] = thread_ts
        if bot_id:
            message["bot_id"] = bot_id
        with self._lock:
            self.messages.setdefault(channel, []).append(message)

    # --- inspection ---------------------------------------------------------------------------

    def calls_to(self, method: str, *, ok_only: bool = True) -> list[Call]:
        with self._lock:
            return [
                c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)
            ]

    def notices(self) -> list[Call]:
        """The messages the outbox posted (source-change notices, ops alerts)."""
        return [c for c in self.calls_to("chat.postMessage") if is_notice(c)]

    def thread_answers(self, thread: str) -> list[Call]:
        """What was posted in ``thread`` other than outbox notices."""
        return [
            c
            for c in self.calls_to("chat.postMessage")
            if c.args.get("thread_ts") == thread and not is_notice(c)
        ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    def wait_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        self.wait_for(lambda: len(self.calls_to(method)) >= count, timeout)
        return self.calls_to(method)

    # --- the API ------------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        args = _args(request)
        if request.path.startswith("/response/"):
            with self._lock:
                status = self.response_url_status
                self.responses.append(Call(request.path, args, time.monotonic(), status))
                self._lock.notify_all()
            return Response(status, "ok" if status == 200 else "no_active_hooks")
        method = request.path.strip("/").removeprefix("api/")
        with self._lock:
            failures = self._failures.get(method)
            failure = failures.popleft() if failures else None
            if failure is not None:
                self.calls.append(Call(method, args, time.monotonic(), failure.status))
                self._lock.notify_all()
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(int(failure.retry_after))
                return Response(failure.status, {"ok": False, "error": failure.error}, headers)
            body = self._answer(method, args)
            self.calls.append(Call(method, args, time.monotonic(), 200))
            self._lock.notify_all()
        return Response(200, body)

    def _next_ts(self, channel: str = "") -> str:
        """Later than anything in the channel, as Slack stamps a message on arrival."""
        latest = max((float(m["ts"]) for m in self.messages.get(channel, [])), default=0.0)
        stamp = latest + 0.00001 if latest else time.time() + next(self._ts) * 0.00001
        return f"{stamp:.6f}"

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "user_id": self.bot_user,
                "bot_id": BOT_ID,
                "team_id": TEAM,
                "user": "kb",
                "team": "KB Test",
                "url": "https://kb-test.slack.com/",
            }
        if method == "chat.postMessage":
            ts = self._next_ts(str(args.get("channel")))
            message = {
                "type": "message",
                "ts": ts,
                "user": self.bot_user,
                "bot_id": BOT_ID,
                "text": args.get("text", ""),
                "blocks": args.get("blocks", []),
            }
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            if args.get("metadata"):
                message["metadata"] = args["metadata"]
            self.messages.setdefault(str(args.get("channel")), []).append(message)
            return {"ok": True, "channel": args.get("channel"), "ts": ts, "message": message}
        if method.endswith("Stream") and method.startswith("chat."):
            return slack_streams.answer(self, method, args)
        if method == "chat.update":
            for message in self.messages.get(str(args.get("channel")), []):
                if message["ts"] == args.get("ts"):
                    message.update(text=args.get("text", ""), blocks=args.get("blocks", []))
            return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method in ("reactions.add", "reactions.remove"):
            return {"ok": True}
        if method.startswith("assistant.threads."):
            return {"ok": True}
        if method == "views.publish":
            view = args.get("view")
            return {"ok": True, "view": json.loads(view) if isinstance(view, str) else view}
        if method == "conversations.info":
            channel = str(args.get("channel"))
            if channel.startswith("G") and channel not in self.member_of:
                return {"ok": False, "error": "channel_not_found"}  # private, not a member
            return {"ok": True, "channel": {"id": channel, "is_member": channel in self.member_of}}
        if method in ("conversations.replies", "conversations.history"):
            return self._read(method, args)
        return {"ok": False, "error": "unknown_method"}

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self._lock:
            return next(m for m in self.messages.get(channel, []) if m["ts"] == ts)

    def streamed_text(self, channel: str, ts: str) -> list[str]:
        """Each text the stream ``ts`` showed, in order: its start, every append and stop."""
        return slack_streams.streamed_text(self, channel, ts)

    def _read(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.messages.get(str(args.get("channel")), [])
        oldest = float(args.get("oldest") or 0)
        if method == "conversations.replies":
            thread = str(args.get("ts"))
            found = [m for m in channel if m["ts"] == thread or m.get("thread_ts") == thread]
        else:
            found = [m for m in channel if m.get("thread_ts") in (None, m["ts"])]
        found = sorted((m for m in found if float(m["ts"]) >= oldest), key=lambda m: float(m["ts"]))
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        if not with_metadata:
            found = [{k: v for k, v in m.items() if k != "metadata"} for m in found]
        return {"ok": True, "messages": found, "has_more": False}


def _args(request: Request) -> dict[str, Any]:
    args: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
    content_type = request.headers.get("content-type", "")
    if request.body and "json" in content_type:
        args.update(json.loads(request.body))
    elif request.body:
        args.update(dict(parse_qsl(request.body.decode(), keep_blank_values=True)))
    for key in ("blocks", "metadata", "view", "prompts"):
        if isinstance(args.get(key), str):
            with suppress(ValueError):
                args[key] = json.loads(args[key])
    return args


# --- a database shared by one test module ---------------------------------------------------

BOT_TABLES = (
    "outbox",
    "outbox_claims",
    "sync_requests",
    "ops_alert_state",
    "slack_events_seen",
    "bot_threads",
    "feedback",
    "bot_counters",
    "answers_served",
)


def reset_bot_tables(db: Database) -> Database:
    """Empty every table the bot and the outbox touch, so each test starts clean."""
    with db.connection() as conn:
        conn.execute(f"TRUNCATE {', '.join(BOT_TABLES)} RESTART IDENTITY CASCADE")
    return db


# --- a running bot ------------------------------------------------------------------------------

BASE_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-test-token",
    "SLACK_SIGNING_SECRET": SECRET,
    "KB_ADMINS": ADMIN,
    "KB_OPS_CHANNEL": "COPS",
    "KB_CHANNEL_SCOPES": "CENG=confluence:ENG;CALL=*",
    "KB_DEFAULT_SCOPE": "confluence:*,jira:*",
    "CONFLUENCE_BASE_URL": "https://wiki.example",
    "CONFLUENCE_API_TOKEN": "confluence-token",
    "CONFLUENCE_SPACES": "ENG,DOCS",
    "JIRA_BASE_URL": "https://jira.example",
    "JIRA_API_TOKEN": "jira-token",
    "JIRA_PROJECTS": "OPS,SUP",
}


def bot_settings(slack: FakeSlack, **overrides: str | None) -> Settings:
    env = {**BASE_ENV, "SLACK_API_URL": slack.url + "/"}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return load_settings(env)


@dataclass
class RunningBot:
    slack: FakeSlack
    settings: Settings
    server: RunningServer
    http: httpx.Client

    def post(self, body: bytes, content_type: str, **headers: str) -> httpx.Response:
        signed = signed_headers(body, content_type=content_type)
        signed.update(headers)
        return self.http.post("/slack/events", content=body, headers=signed)

    def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> httpx.Response:
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        body = event_body(event, bot_user=self.slack.bot_user, event_id=event_id)
        return self.post(body, "application/json", **headers)

    def mention(
        self,
        text: str,
        *,
        channel: str = "CGEN",
        ts: str,
        thread_ts: str | None = None,
        user: str = "UHUMAN",
        event_id: str | None = None,
    ) -> httpx.Response:
        event = mention_event(text, bot_user=self.slack.bot_user, ts=ts, channel=channel, user=user)
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.event(event, event_id=event_id)

    def command(
        self, text: str, *, user: str = ADMIN, channel: str = "CGEN", response_url: str = ""
    ) -> httpx.Response:
        form = {
            "token": "legacy",
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": user,
            "command": "/kb-sync",
            "text": text,
            "trigger_id": new_trigger_id(),
            "response_url": response_url or self.slack.response_url("cmd"),
        }
        return self.post(urlencode(form).encode(), "application/x-www-form-urlencoded")

    def action(self, payload: dict[str, Any]) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded")


@contextmanager
def running_bot(
    db: Database,
    flow: AnswerFlow,
    *,
    bot_user: str = BOT_USER,
    streaming: bool = False,
    **env: str | None,
) -> Iterator[RunningBot]:
    """A fake Slack, the real Bolt app as ``kb bot`` builds and mounts it, served over HTTP;
    ``streaming``: the workspace lets answers stream."""
    with FakeSlack(bot_user=bot_user, streaming=streaming) as slack:
        settings = bot_settings(slack, **env)
        mount = build_slack(settings, flow, db)
        server = start_http_server([mount], db)
        try:
            # Plain HTTP on loopback: skip loading the CA bundle (a tenth of a second per bot).
            with httpx.Client(base_url=server.url, timeout=10, verify=False) as http:
                yield RunningBot(slack, settings, server, http)
        finally:
            server.close()
            mount.close()
