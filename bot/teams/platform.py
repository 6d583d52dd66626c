"""Teams' delivery side of the chat-platform seam: the Bot Connector REST client, and proactive
delivery of outbox messages (notices, ops alerts, sync results) into Teams conversations.

A proactive message needs the conversation's service URL, which only an inbound activity
tells us; :mod:`bot.teams.handler` stores it (``teams_conversations``) for every conversation
the bot answers in, and this module reads it back. Replies into a channel thread go to the
conversation id ``<channel>;messageid=<root>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from bot.platform import DeliveryFailed, OpsMessage, Outgoing, SourceNotice, SyncResult
from bot.teams import state as teams_state
from bot.teams.auth import ClientCredentials, TokenUnavailable, retry_after_seconds
from bot.teams.cards import Activity, TeamsMarkup, notice_activity, text_activity
from bot.teams.state import ConversationRef
from bot.wording import ops_text, sync_result_text
from core.identities import TeamsApp
from store.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

PLATFORM = "teams"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# The connector answers these when retrying cannot help: bad payload, bot removed or blocked,
# conversation gone.
PERMANENT_STATUSES = frozenset({400, 403, 404, 410, 413})
INTERACTIVE_ATTEMPTS = 4
INTERACTIVE_MAX_WAIT = 60.0


class ConnectorError(Exception):
    """A connector call that did not (certainly) happen.

    ``retry_after``: throttled (429), wait that long. ``ambiguous``: the request may have been
    processed (timeout after sending, 500/502/504), so sending again may duplicate it.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        permanent: bool = False,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.permanent = permanent
        self.ambiguous = ambiguous


class BotConnector:
    """The few Bot Connector v3 calls the bot makes, authenticated with our app's token.
    ``close()`` closes the HTTP client it was given."""

    def __init__(
        self,
        credentials: ClientCredentials,
        http: httpx.Client,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credentials = credentials
        self._http = http
        self._sleep = sleep

    def send(
        self,
        service_url: str,
        conversation_id: str,
        activity: Activity,
        *,
        reply_to: str | None = None,
    ) -> str:
        """Post ``activity`` into a conversation (into a thread when the id holds
        ``;messageid=``); returns the new activity's id."""
        path = f"/v3/conversations/{quote(conversation_id, safe='')}/activities"
        if reply_to:
            path += f"/{quote(reply_to, safe='')}"
        body = {**activity, "conversation": {"id": conversation_id}}
        if reply_to:
            body["replyToId"] = reply_to
        data = self._call("POST", service_url, path, body)
        return str(data.get("id") or "")

    def update(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Activity
    ) -> None:
        path = (
            f"/v3/conversations/{quote(conversation_id, safe='')}"
            f"/activities/{quote(activity_id, safe='')}"
        )
        body = {**activity, "id": activity_id, "conversation": {"id": conversation_id}}
        self._call("PUT", service_url, path, body)

    def close(self) -> None:
        self._http.close()

    def patiently(self, call: Callable[[], T]) -> T:
        """Run an interactive call, waiting out the connector's 429s (``Retry-After``) a few
        times; a person is waiting, so the outbox's reschedule-later is not an option here."""
        for attempt in range(1, INTERACTIVE_ATTEMPTS + 1):
            try:
                return call()
            except ConnectorError as exc:
                if exc.retry_after is None or attempt == INTERACTIVE_ATTEMPTS:
                    raise
                wait = min(exc.retry_after, INTERACTIVE_MAX_WAIT)
                log.info("Teams connector throttled us (429); retrying in %.0f s", wait)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _call(self, method: str, service_url: str, path: str, body: Activity) -> dict[str, Any]:
        url = service_url.rstrip("/") + path
        for attempt in (1, 2):
            try:
                token = self._credentials.token()
            except TokenUnavailable as exc:
                # Not permanent even when the credentials are refused: queued notices should
                # survive until an operator fixes TEAMS_APP_PASSWORD (backoff, max attempts).
                raise ConnectorError(
                    str(exc), status=exc.status, retry_after=exc.retry_after
                ) from None
            try:
                response = self._http.request(
                    method, url, json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the connector: safe to send again.
                raise ConnectorError(
                    f"Teams connector unreachable ({type(exc).__name__})"
                ) from None
            except httpx.HTTPError as exc:
                raise ConnectorError(
                    f"Teams connector: outcome unknown ({type(exc).__name__})", ambiguous=True
                ) from None
            status = response.status_code
            if status == 401 and attempt == 1:
                # Our token expired early or was revoked: one fresh token, one more try.
                self._credentials.invalidate(token)
                continue
            if 200 <= status < 300:
                try:
                    data = response.json()
                except ValueError:
                    data = {}
                return data if isinstance(data, dict) else {}
            raise _failure(method, response)
        raise AssertionError("unreachable")


def _failure(method: str, response: httpx.Response) -> ConnectorError:
    status = response.status_code
    code = ""
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            code = f", {str(error.get('code'))[:60]}"
    except (ValueError, AttributeError):
        pass
    message = f"Teams connector {method} answered HTTP {status}{code}"
    if status == 429:
        wait = retry_after_seconds(response.headers)
        return ConnectorError(f"{message}; retry in {wait:.0f} s", status=429, retry_after=wait)
    if status in (500, 502, 504):
        return ConnectorError(message, status=status, ambiguous=True)
    return ConnectorError(message, status=status, permanent=status in PERMANENT_STATUSES)


def thread_conversation(ref: ConversationRef, thread: str | None) -> str:
    """Where a message in ``thread`` goes: a channel thread is ``<channel>;messageid=<root>``;
    chats have no threads, the conversation itself is the thread."""
    if ref.conversation_type == "channel" and thread and thread != ref.conversation_id:
        return f"{ref.conversation_id};messageid={thread}"
    return ref.conversation_id


def build_connector(app: TeamsApp) -> BotConnector:
    """A connector client with its own HTTP client; ``close()`` it when done."""
    http = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
    credentials = ClientCredentials(app.client_token_url, app.app_id, app.password, http)
    return BotConnector(credentials, http)


class TeamsPlatform:
    """:class:`bot.platform.ChatPlatform` for Teams (outbox key ``"teams"``).

    The Bot Connector cannot list a conversation's messages, so a send whose outcome is
    unknown cannot be checked afterwards: :meth:`was_delivered` answers ``None`` and the
    deliverer gives that message up rather than risk a duplicate. Only a timeout after
    sending or a 500/502/504 is treated as unknown; refused connections, 429 and 503 are
    retried.
    """

    def __init__(self, db: Database, connector: BotConnector) -> None:
        self._db = db
        self._connector = connector
        self._markup = TeamsMarkup()

    @property
    def name(self) -> str:
        return PLATFORM

    def close(self) -> None:
        self._connector.close()

    def send_notice(self, notice: SourceNotice, *, message_id: int) -> None:
        ref = self._reference(notice.channel)
        self._send(ref, thread_conversation(ref, notice.thread), notice_activity(notice))

    def send_ops(self, channel: str, message: OpsMessage, *, message_id: int) -> None:
        # A channel id without ;messageid= starts a new post in that channel.
        ref = self._reference(channel)
        self._send(ref, ref.conversation_id, text_activity(ops_text(message, self._markup)))

    def send_sync_result(self, result: SyncResult, *, message_id: int) -> None:
        ref = self._reference(result.requested_by.channel)
        text = sync_result_text(result, self._markup)
        self._send(ref, ref.conversation_id, text_activity(text))

    def was_delivered(
        self, message: Outgoing, *, channel: str | None, message_id: int, since: datetime
    ) -> bool | None:
        return None

    def _reference(self, conversation_id: str) -> ConversationRef:
        base = conversation_id.partition(";messageid=")[0]
        with self._db.connection() as conn:
            ref = teams_state.conversation(conn, base)
        if ref is None:
            raise DeliveryFailed(
                f"no Teams conversation {base[:80]!r} is known (the bot has never been "
                "messaged there), so there is no service URL to post to",
                permanent=True,
            )
        return ref

    def _send(self, ref: ConversationRef, target: str, activity: Activity) -> None:
        try:
            self._connector.send(ref.service_url, target, activity)
        except ConnectorError as exc:
            raise DeliveryFailed(
                str(exc),
                retry_after=exc.retry_after,
                permanent=exc.permanent,
                ambiguous=exc.ambiguous,
                status=exc.status,
            ) from None


def build_teams_platform(app: TeamsApp, db: Database) -> TeamsPlatform:
    """The outbox's Teams platform (``OutboxDeliverer(db, {"teams": ...}, ...)``)."""
    return TeamsPlatform(db, build_connector(app))
