"""Teams' inbound side: ``POST /api/messages`` translated into calls on
:class:`bot.conversation.Inbound` (docs/ARCHITECTURE.md, "Chat behaviour").

Bot Framework REST with httpx and PyJWT, synchronous with threads like the rest of ``kb bot``
(see the README for why not the async Teams SDK). A request is authenticated first (see
:mod:`bot.teams.auth`); nothing in it is read before its token checks out, and nothing is
done for it unless the token also vouches for its service URL. Messages are acknowledged at
once and answered on the conversation's pool, as Slack's are, because the connector
redelivers what is not acknowledged within seconds; card button clicks
(``adaptiveCard/action`` invokes) and Teams' own thumbs (``message/submitAction``, see
:mod:`bot.teams.feedback`) are answered in the HTTP response itself.

An activity is acted on once (docs/ARCHITECTURE.md, "Security stance"): its id is recorded
before anything is done for it, so a redelivery, or a replay of the same signed request while
its token is valid, is dropped; messages, card clicks and feedback alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from bot import bot_state
from bot._throttle import Throttle
from bot.bot_state import Vote
from bot.conversation import Inbound, Question
from bot.host import Mount, json_reply
from bot.platform import ACTION_HELPFUL, ACTION_NOT_HELPFUL, ACTION_REFRESH, Requester
from bot.recent_deliveries import ACK_STORE_WAIT, RecentDeliveries
from bot.teams import state
from bot.teams.activity import Incoming, mentions_of, parse_activity, question_text
from bot.teams.auth import (
    MIN_REFRESH_SECONDS,
    BotFrameworkAuth,
    ClientCredentials,
    KeysUnavailable,
    OpenIdKeys,
    Unauthorized,
)
from bot.teams.cards import action_value, invoke_message
from bot.teams.feedback import FEEDBACK_INVOKE, INVOKE_OK, RatedAnswerMessage, feedback_vote
from bot.teams.platform import TIMEOUT, BotConnector
from bot.teams.thread import TeamsAnswerMessage, TeamsThread
from bot.wording import ALREADY_RECEIVED, REFRESHING, STALE_BUTTON, STORE_DOWN
from core.identities import TeamsApp
from store.db import Database

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

PLATFORM = "teams"
MESSAGES_PATH = "/api/messages"
THREAD_WINDOW = 30 * 24 * 3600.0  # a channel thread is one conversation, however long
CHAT_WINDOW = 3600.0  # chats have no threads: an hour's quiet starts a new topic
# Longer than any token stays valid (Bot Framework tokens live about an hour, plus 5 minutes'
# skew), so a replay is still recognised when its token would still pass.
SEEN_TTL = 24 * 3600.0
ANSWER_MESSAGES_TTL = 90 * 24 * 3600.0  # Teams' thumbs under older answers count no more
CARD_ACTION_INVOKE = "adaptiveCard/action"


class TeamsHandler:
    """The WSGI app for ``POST /api/messages``; ``close()`` stops its conversation and clients."""

    def __init__(
        self,
        app: TeamsApp,
        conversation: Inbound,
        db: Database,
        *,
        auth: BotFrameworkAuth,
        connector: BotConnector,
    ) -> None:
        self._tenant = app.tenant_id
        self._bot_ids = frozenset({f"28:{app.app_id}"})
        self._conversation = conversation
        self._db = db
        self._auth = auth
        self._connector = connector
        self._maybe_prune = Throttle(3600, self._prune)
        self._recent = RecentDeliveries()

    def close(self) -> None:
        self._conversation.close()
        self._connector.close()

    # --- HTTP -------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        status, payload = self.handle(environ.get("HTTP_AUTHORIZATION"), body)
        return json_reply(start_response, status, payload)

    def handle(self, authorization: str | None, body: bytes) -> tuple[int, Any]:
        """(HTTP status, JSON body) for one request to the messaging endpoint."""
        try:
            token = self._auth.verify(authorization)
        except Unauthorized as exc:
            return self._refused(str(exc))
        except KeysUnavailable as exc:
            log.warning("Teams request turned away: %s", exc)
            return 503, {"error": "signing keys unavailable"}
        if _outlives_replay_memory(token.claims):
            # Replays are recognised for SEEN_TTL; a token that stays valid longer could be
            # replayed after its activity id was forgotten.
            return self._refused("token valid for longer than replays are remembered")
        try:
            activity = parse_activity(json.loads(body))
        except (ValueError, RecursionError) as exc:
            # Signed but not an activity: acknowledged (a retry would not fix it), one line.
            log.warning("ignored a signed Teams request that is not an activity: %s", exc)
            return 200, {}
        try:
            self._auth.check_activity(
                token, service_url=activity.service_url, channel_id=activity.channel_id
            )
        except Unauthorized as exc:
            return self._refused(str(exc))
        if activity.tenant_id and activity.tenant_id != self._tenant:
            # A single-tenant bot answers its own organisation only.
            log.warning("Teams activity from another tenant ignored")
            return 403, {"error": "tenant not allowed"}
        try:
            # Never the pool's 30 s: Teams redelivers what is not answered promptly, and the
            # asker still gets a reply while the store is down (docs/ARCHITECTURE.md,
            # "Failures: the store unreachable").
            with self._db.connection(timeout=ACK_STORE_WAIT) as conn:
                state.remember_conversation(conn, activity.reference())
            self._maybe_prune()
        except Exception as exc:
            log.info("Teams activity handled without the store (%s)", type(exc).__name__)
        try:
            if activity.type == "message":
                self._on_message(activity)
                return 200, {}
            if activity.type == "invoke":
                return self._on_invoke(activity, body)
        except Exception:
            if self._db.reachable():
                raise
            # A click or a command needs the store: say so rather than answer 500 (a chat
            # message is answered in its thread by the conversation, which says the same).
            log.info("Teams %s not handled: the store is unreachable", activity.type)
            if activity.name == FEEDBACK_INVOKE:
                return 200, INVOKE_OK
            return 200, invoke_message(STORE_DOWN) if activity.type == "invoke" else {}
        return 200, {}  # conversationUpdate, reactions, edits, deletions: nothing to do

    @staticmethod
    def _refused(reason: str) -> tuple[int, Any]:
        # Logged, not counted in the database: unauthenticated traffic gets no writes.
        log.info("Teams request refused (401): %s", reason)
        return 401, {"error": "unauthorized"}

    # --- messages ---------------------------------------------------------------------------

    def _on_message(self, activity: Incoming) -> None:
        if activity.from_is_bot or activity.from_id == activity.recipient_id or not activity.id:
            return  # our own messages and other bots' would make loops
        bot_ids = self._bot_ids | {activity.recipient_id.lower()}
        mentions = mentions_of(activity, bot_ids)
        if not mentions and not activity.text.strip():
            return  # a card submit, a file, a reaction-only message
        conversation, thread = activity.base_conversation, activity.thread
        try:
            answered = self._conversation.is_bot_thread(conversation, thread)
        except Exception:  # the store is down: a mention or a chat is still a question
            answered = False
        if activity.conversation_type == "personal":
            window, followup = CHAT_WINDOW, answered
        elif mentions:
            window = THREAD_WINDOW if activity.conversation_type == "channel" else CHAT_WINDOW
            followup = False
        elif activity.is_thread_reply and answered:
            window, followup = THREAD_WINDOW, True
        else:
            return  # not for us (RSC delivers every channel message when granted)
        if not self._first_time(activity, activity.id):
            return
        text = question_text(activity, mentions)
        reply = TeamsThread(
            connector=self._connector,
            db=self._db,
            service_url=activity.service_url,
            conversation=conversation,
            thread=thread,
            target=activity.reply_conversation,
            reply_to=None if activity.conversation_type == "channel" else activity.id,
            question=text,
            history_window=window,
            streams=activity.conversation_type == "personal",
        )
        asker = Requester(
            platform="teams", user=activity.user, channel=conversation, response_url=None
        )
        command_reply = self._conversation.admin_command(asker, text)
        if command_reply is not None:
            reply.say(command_reply)  # "@kb sync confluence" from a KB_TEAMS_ADMINS member
            return
        question = Question(conversation, thread, text, with_history=answered, followup=followup)
        self._conversation.ask(question, reply)

    def _first_time(self, activity: Incoming, key: str) -> bool:
        """Record the activity as acted on; False (and counted) when it already was. While the
        store cannot be asked, this process's memory of recent activities decides."""
        conversation = activity.base_conversation
        first = self._recent.first_delivery(
            f"{conversation}/{key}",
            self._db,
            lambda conn: state.first_time_seen(conn, conversation, key),
            on_repeat=lambda conn: bot_state.bump(conn, "teams_redeliveries_ignored"),
        )
        if not first:
            log.info("ignoring a redelivered or replayed Teams activity %s", key[:40])
        return first

    # --- invokes: card buttons and Teams' thumbs --------------------------------------------

    def _on_invoke(self, activity: Incoming, body: bytes) -> tuple[int, Any]:
        if activity.name not in (CARD_ACTION_INVOKE, FEEDBACK_INVOKE):
            return 501, {}
        # Invokes carry an id like messages; without one, the signed bytes are what a replay
        # repeats exactly.
        key = activity.id or "sha256:" + hashlib.sha256(body).hexdigest()
        if activity.name == FEEDBACK_INVOKE:
            if self._first_time(activity, key):
                self._on_feedback(activity)
            return 200, INVOKE_OK
        if not self._first_time(activity, key):
            return 200, invoke_message(ALREADY_RECEIVED)
        return 200, self._on_action(activity)

    def _on_feedback(self, activity: Incoming) -> None:
        """A thumbs click (and its optional comment, which is not kept) on an answer."""
        vote = feedback_vote(activity.value)
        if vote is None or not activity.reply_to_id:
            log.info("ignored a Teams message/submitAction that is not a thumbs vote")
            return
        with self._db.connection() as conn:
            value = state.answer_message(conn, activity.base_conversation, activity.reply_to_id)
        # Teams shows its own thanks; the conversation's reply text has nowhere to go.
        self._conversation.vote(value, activity.user, vote)

    # --- card buttons -----------------------------------------------------------------------

    def _on_action(self, activity: Incoming) -> dict[str, Any]:
        value = activity.value if isinstance(activity.value, dict) else {}
        action = value.get("action")
        if not isinstance(action, dict):
            return invoke_message(STALE_BUTTON)
        verb = action.get("verb")
        data = action_value(action.get("data"))
        if verb in (ACTION_HELPFUL, ACTION_NOT_HELPFUL):
            vote: Vote = "helpful" if verb == ACTION_HELPFUL else "not_helpful"
            return invoke_message(self._conversation.vote(data, activity.user, vote))
        if verb == ACTION_REFRESH and activity.reply_to_id:
            card = RatedAnswerMessage(
                TeamsAnswerMessage(
                    connector=self._connector,
                    service_url=activity.service_url,
                    conversation=activity.conversation_id,
                    card_id=activity.reply_to_id,
                ),
                self._db,
                activity.base_conversation,
                activity.reply_to_id,
            )
            started = self._conversation.refresh(
                data, activity.base_conversation, activity.thread, card
            )
            return invoke_message(REFRESHING if started else STALE_BUTTON)
        return invoke_message(STALE_BUTTON)

    def _prune(self) -> None:
        with self._db.connection() as conn:
            state.prune(
                conn,
                seen_seconds=SEEN_TTL,
                turns_seconds=THREAD_WINDOW,
                answers_seconds=ANSWER_MESSAGES_TTL,
            )


def _outlives_replay_memory(claims: Mapping[str, Any]) -> bool:
    expires = claims.get("exp")
    return not isinstance(expires, int | float) or expires - time.time() > SEEN_TTL


def build_teams_handler(
    app: TeamsApp,
    conversation: Inbound,
    db: Database,
    *,
    min_key_refresh: float = MIN_REFRESH_SECONDS,
) -> TeamsHandler:
    """The ``/api/messages`` WSGI app for the Teams app ``app`` (TEAMS_*)."""
    # One HTTP client for keys, tokens and the connector (closed with it): thread-safe, and
    # it pools connections to Microsoft's endpoints.
    http = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
    keys = OpenIdKeys(app.openid_metadata_url, http, min_refresh=min_key_refresh)
    credentials = ClientCredentials(app.client_token_url, app.app_id, app.password, http)
    return TeamsHandler(
        app,
        conversation,
        db,
        auth=BotFrameworkAuth(app.app_id, keys),
        connector=BotConnector(credentials, http),
    )


def teams_mount(handler: TeamsHandler) -> Mount:
    """Teams on the chat host: ``POST /api/messages``."""
    return Mount(PLATFORM, MESSAGES_PATH, handler, handler.close)
