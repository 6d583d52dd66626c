"""Fake Microsoft endpoints for Teams on 127.0.0.1, and a running kb-bot with Teams mounted.

:class:`FakeLogin` plays Microsoft's login side: the Bot Framework's OpenID metadata and
JWKS (test RSA keys, with ``endorsements``), a client-credentials token endpoint, and
:meth:`FakeLogin.sign` to issue the Bearer JWTs the Bot Framework would send. It counts
metadata and key fetches so tests can see the key cache at work.

:class:`FakeConnector` plays the Bot Connector a ``serviceUrl`` points at: it records every
activity posted or updated, checks the bot's Bearer token, and answers 429 with
``Retry-After`` (or any error) when told to.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from bot.answers import AnswerFlow
from bot.conversation import Conversation
from bot.host import RunningServer, start_http_server
from bot.teams.auth import BOT_FRAMEWORK_ISSUER
from bot.teams.handler import TeamsHandler, build_teams_handler, teams_mount
from fakes.http import FakeServer, Request, Response
from fakes.slack_api import BASE_ENV, reset_bot_tables
from kb.chat_wiring import chat_policy
from kb.settings import Settings, load_settings
from store.db import Database

APP_ID = "11111111-2222-3333-4444-555555555555"
APP_PASSWORD = "teams-test-password"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
BOT = f"28:{APP_ID}"
CHANNEL = "19:general0123@thread.tacv2"
SCOPED_CHANNEL = "19:engineering@thread.tacv2"
TEAM = "19:team0123@thread.tacv2"
PERSONAL = "a:1personal-chat-with-alice"
USER = "29:1alice"
USER_AAD = "00000000-0000-0000-0000-0000000a11ce"
TEAMS_TABLES = (
    "teams_conversations",
    "teams_turns",
    "teams_activities_seen",
    "teams_answer_messages",
)


@cache
def signing_key(kid: str) -> RSAPrivateKey:
    """An RSA key per kid, made once per test session (generation takes a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(kid: str, *, endorsements: tuple[str, ...] = ("msteams",)) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(
        jwt.algorithms.RSAAlgorithm.to_jwk(signing_key(kid).public_key())
    )
    jwk.update(kid=kid, use="sig", endorsements=list(endorsements))
    return jwk


@dataclass
class FakeLogin:
    """OpenID metadata + JWKS + token endpoint, and the signer of inbound tokens."""

    kids: list[str] = field(default_factory=lambda: ["key-1"])
    metadata_fetches: int = 0
    key_fetches: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)
    token_lifetime: int = 3600
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: FakeServer | None = None

    def __enter__(self) -> FakeLogin:
        self._server = FakeServer(self._handle).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/v1/.well-known/openidconfiguration"

    @property
    def token_url(self) -> str:
        return f"{self.url}/{TENANT}/oauth2/v2.0/token"

    def sign(
        self,
        service_url: str,
        *,
        kid: str | None = None,
        alg: str = "RS256",
        **claims: Any,
    ) -> str:
        """A Bot Framework token; ``claims`` override (``None`` removes) the defaults."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": BOT_FRAMEWORK_ISSUER,
            "aud": APP_ID,
            "serviceurl": service_url,
            "nbf": now - 10,
            "iat": now - 10,
            "exp": now + 3600,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        kid = kid or self.kids[0]
        if alg == "none":
            return jwt.encode(body, "", algorithm="none", headers={"kid": kid})
        return jwt.encode(body, signing_key(kid), algorithm=alg, headers={"kid": kid})

    def _handle(self, request: Request) -> Response:
        if request.path.endswith("/openidconfiguration"):
            with self._lock:
                self.metadata_fetches += 1
            return Response(
                200,
                {
                    "issuer": BOT_FRAMEWORK_ISSUER,
                    "authorization_endpoint": "https://invalid.example/unused",
                    "jwks_uri": f"{self.url}/v1/.well-known/keys",
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                },
            )
        if request.path.endswith("/keys"):
            with self._lock:
                self.key_fetches += 1
                kids = list(self.kids)
            return Response(200, {"keys": [public_jwk(k) for k in kids]})
        if request.path == f"/{TENANT}/oauth2/v2.0/token" and request.method == "POST":
            form = dict(parse_qsl(request.body.decode()))
            with self._lock:
                self.token_requests.append(form)
            if form.get("client_id") != APP_ID or form.get("client_secret") != APP_PASSWORD:
                return Response(401, {"error": "invalid_client"})
            token = f"bf-token-{uuid.uuid4().hex}"
            with self._lock:
                self.issued.add(token)
            return Response(
                200,
                {"token_type": "Bearer", "expires_in": self.token_lifetime, "access_token": token},
            )
        return Response(404, {"error": "not found"})


@dataclass
class Sent:
    method: str
    conversation: str
    reply_to: str | None
    activity_id: str
    body: dict[str, Any]
    status: int
    at: float

    @property
    def card(self) -> dict[str, Any]:
        """The Adaptive Card's content (the first attachment)."""
        attachment = self.body["attachments"][0]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        content: dict[str, Any] = attachment["content"]
        return content

    @property
    def card_text(self) -> str:
        return "\n".join(b.get("text", "") for b in self.card["body"])


@dataclass
class FakeConnector:
    """A Bot Connector (``serviceUrl``) that records activities and checks our token."""

    login: FakeLogin
    sent: list[Sent] = field(default_factory=list)
    _failures: deque[tuple[int, float | None]] = field(default_factory=deque)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _server: FakeServer | None = None

    def __enter__(self) -> FakeConnector:
        self._server = FakeServer(self._handle).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.stop()

    @property
    def url(self) -> str:
        """The service URL, with the trailing slash Teams sends."""
        assert self._server is not None
        return self._server.url + "/"

    def fail(self, *, status: int = 429, retry_after: float | None = 1, times: int = 1) -> None:
        """Answer the next ``times`` message posts/updates with ``status``."""
        with self._lock:
            for _ in range(times):
                self._failures.append((status, retry_after if status == 429 else None))

    def messages(self, *, ok_only: bool = True) -> list[Sent]:
        """Posted and updated activities other than typing indicators."""
        with self._lock:
            return [
                s
                for s in self.sent
                if s.body.get("type") != "typing" and (s.status < 300 or not ok_only)
            ]

    def wait_messages(self, count: int = 1, timeout: float = 5.0) -> list[Sent]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.messages()) < count and time.monotonic() < deadline:
                self._lock.wait(0.05)
        return self.messages()

    def _handle(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) < 4 or parts[:2] != ["v3", "conversations"] or parts[3] != "activities":
            return Response(404, {"error": {"code": "NotFound"}})
        conversation = unquote(parts[2])
        target = unquote(parts[4]) if len(parts) > 4 else None
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        body = request.json() if request.body else {}
        with self._lock:
            known = bearer in self.login.issued
            # Scripted failures hit messages, not typing indicators (sent first, not retried).
            failing = known and self._failures and body.get("type") != "typing"
            failure = self._failures.popleft() if failing else None
            new_id = f"{int(time.time() * 1000)}{next(self._ids):03d}"
            status = 401 if not known else failure[0] if failure else 200
            self.sent.append(
                Sent(
                    method=request.method,
                    conversation=conversation,
                    reply_to=target if request.method == "POST" else None,
                    activity_id=target if request.method == "PUT" and target else new_id,
                    body=body,
                    status=status,
                    at=time.monotonic(),
                )
            )
            self._lock.notify_all()
        if not known:
            return Response(401, {"error": {"code": "Unauthorized"}})
        if failure is not None:
            headers = {"Retry-After": str(int(failure[1]))} if failure[1] is not None else {}
            return Response(failure[0], {"error": {"code": "Throttled"}}, headers)
        return Response(200 if request.method == "PUT" else 201, {"id": new_id})


# --- activities ---------------------------------------------------------------------------------


def _base(
    service_url: str, conversation: dict[str, Any], text: str, **extra: Any
) -> dict[str, Any]:
    activity: dict[str, Any] = {
        "type": "message",
        "id": extra.pop("id", None) or f"{int(time.time() * 1000)}{uuid.uuid4().int % 1000:03d}",
        "timestamp": "2025-01-01T00:00:00.000Z",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": USER, "name": "Alice", "aadObjectId": USER_AAD},
        "conversation": conversation,
        "recipient": {"id": BOT, "name": "kb"},
        "text": text,
        "textFormat": "plain",
        "locale": "en-US",
        "channelData": {"tenant": {"id": TENANT}},
    }
    activity.update(extra)
    return activity


def mention_entity() -> dict[str, Any]:
    return {"type": "mention", "text": "<at>kb</at>", "mentioned": {"id": BOT, "name": "kb"}}


def channel_message(
    service_url: str,
    text: str,
    *,
    mention: bool = True,
    channel: str = CHANNEL,
    root: str | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    """A channel post (``root=None``: a new thread) or a reply in the thread ``root``."""
    id = id or f"{int(time.time() * 1000)}{uuid.uuid4().int % 1000:03d}"
    conversation = {
        "id": f"{channel};messageid={root or id}",
        "conversationType": "channel",
        "isGroup": True,
        "tenantId": TENANT,
    }
    activity = _base(
        service_url,
        conversation,
        f"<at>kb</at> {text}" if mention else text,
        id=id,
        entities=[mention_entity()] if mention else [],
    )
    activity["channelData"].update(
        teamsChannelId=channel, teamsTeamId=TEAM, channel={"id": channel}, team={"id": TEAM}
    )
    return activity


def personal_message(service_url: str, text: str, *, id: str | None = None) -> dict[str, Any]:
    conversation = {"id": PERSONAL, "conversationType": "personal", "tenantId": TENANT}
    return _base(service_url, conversation, text, id=id)


def card_action(
    service_url: str, verb: str, data: dict[str, Any], *, conversation: str, card_id: str
) -> dict[str, Any]:
    """An ``adaptiveCard/action`` invoke: someone clicked an ``Action.Execute`` button."""
    kind = "channel" if conversation.startswith("19:") else "personal"
    activity = _base(
        service_url,
        {"id": conversation, "conversationType": kind, "tenantId": TENANT},
        "",
        id=f"f:{uuid.uuid4().hex}",  # unique: invokes are deduplicated by id
        type="invoke",
        name="adaptiveCard/action",
        replyToId=card_id,
        value={"action": {"type": "Action.Execute", "verb": verb, "data": data}},
    )
    return activity


def feedback_invoke(
    service_url: str,
    reaction: str,
    *,
    conversation: str,
    message_id: str,
    feedback: str = '{"feedbackText":""}',
) -> dict[str, Any]:
    """A ``message/submitAction`` invoke: someone pressed Teams' own thumbs under the bot's
    message ``message_id`` (and maybe typed a comment in the form that follows)."""
    kind = "channel" if conversation.startswith("19:") else "personal"
    return _base(
        service_url,
        {"id": conversation, "conversationType": kind, "tenantId": TENANT},
        "",
        id=f"f:{uuid.uuid4().hex}",
        type="invoke",
        name="message/submitAction",
        replyToId=message_id,
        value={
            "actionName": "feedback",
            "actionValue": {"reaction": reaction, "feedback": feedback},
        },
    )


# --- a running bot ------------------------------------------------------------------------------


def reset_teams_tables(db: Database) -> Database:
    reset_bot_tables(db)
    with db.connection() as conn:
        conn.execute(f"TRUNCATE {', '.join(TEAMS_TABLES)} RESTART IDENTITY")
    return db


def teams_settings(login: FakeLogin, **overrides: str | None) -> Settings:
    env = {
        **BASE_ENV,
        "TEAMS_APP_ID": APP_ID,
        "TEAMS_APP_PASSWORD": APP_PASSWORD,
        "TEAMS_TENANT_ID": TENANT,
        "TEAMS_OPENID_METADATA_URL": login.metadata_url,
        "TEAMS_TOKEN_URL": login.token_url,
        "KB_CHANNEL_SCOPES": f"CENG=confluence:ENG;{SCOPED_CHANNEL}=confluence:ENG,jira:OPS",
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return load_settings(env)


def teams_handler(settings: Settings, flow: AnswerFlow, db: Database) -> TeamsHandler:
    """The handler as ``kb bot`` builds it, but refetching signing keys without a pause."""
    conversation = Conversation("teams", flow, db, chat_policy(settings, settings.teams_admins))
    return build_teams_handler(settings.require_teams(), conversation, db, min_key_refresh=0.0)


@dataclass
class RunningTeamsBot:
    login: FakeLogin
    connector: FakeConnector
    settings: Settings
    handler: TeamsHandler
    server: RunningServer
    http: httpx.Client
    db: Database

    def post(self, activity: dict[str, Any], *, token: str | None = "sign") -> httpx.Response:
        """POST an activity to /api/messages with a valid token (or ``token`` as given)."""
        headers = {"Content-Type": "application/json"}
        if token == "sign":
            token = self.login.sign(activity["serviceUrl"])
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post("/api/messages", content=json.dumps(activity), headers=headers)


@contextmanager
def running_teams_bot(
    db: Database, flow: AnswerFlow, **env: str | None
) -> Iterator[RunningTeamsBot]:
    """Fake login and connector, the real handler from ``build_teams_handler``, mounted on
    the chat host alone."""
    with FakeLogin() as login, FakeConnector(login) as connector:
        settings = teams_settings(login, **env)
        handler = teams_handler(settings, flow, db)
        server = start_http_server([teams_mount(handler)], db)
        try:
            with httpx.Client(base_url=server.url, timeout=10, verify=False) as http:
                yield RunningTeamsBot(login, connector, settings, handler, server, http, db)
        finally:
            server.close()
            handler.close()
