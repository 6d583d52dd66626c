"""The Teams front end: ``POST /api/messages`` on the same waitress server as Slack.

Bot Framework REST with httpx and PyJWT, synchronous with threads like the rest of ``kb bot``
(see the README for why not the async Teams SDK). A request is authenticated first (see
:mod:`bot.teams_auth`); nothing in it is read before its token checks out, and nothing is
done for it unless the token also vouches for its service URL. Messages are acknowledged at
once and answered from a pool, as Slack's are, because the connector redelivers what is not
acknowledged within seconds; card button clicks (``adaptiveCard/action`` invokes) are
answered in the HTTP response itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from bot import bot_state, teams_state
from bot._throttle import Throttle
from bot.answers import Answer, AnswerFlow, Turn
from bot.bot_state import Vote
from bot.platform import ACTION_HELPFUL, ACTION_NOT_HELPFUL, ACTION_REFRESH
from bot.teams_activity import Incoming, mentions_of, parse_activity, question_text
from bot.teams_auth import (
    MIN_REFRESH_SECONDS,
    BotFrameworkAuth,
    ClientCredentials,
    KeysUnavailable,
    OpenIdKeys,
    Unauthorized,
)
from bot.teams_cards import (
    action_value,
    answer_activity,
    error_activity,
    invoke_message,
    text_activity,
)
from bot.teams_platform import TIMEOUT, BotConnector, ConnectorError
from kb.settings import Settings
from store.db import Database

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

PLATFORM = "teams"
MESSAGES_PATH = "/api/messages"
SOMETHING_WRONG = "Something went wrong on my side; the team has the details in the logs."
EMPTY_QUESTION = "Ask me a question after the mention, e.g. “@kb how do I rotate the VPN cert?”"
STALE_BUTTON = "That button no longer works; ask the question again with a mention."
REFRESHING = "Refreshing… the answer will update in place in a moment."
HISTORY_TURNS = 20
THREAD_WINDOW = 30 * 24 * 3600.0  # a channel thread is one conversation, however long
CHAT_WINDOW = 3600.0  # chats have no threads: an hour's quiet starts a new topic
SEEN_TTL = 24 * 3600.0


@dataclass(frozen=True)
class AskJob:
    service_url: str
    conversation: str  # the chat or the channel, without ;messageid=
    thread: str
    target: str  # where the answer is posted
    reply_to: str | None
    question: str
    history_window: float | None  # None: no history (a new question in a new thread)
    counter: str


@dataclass(frozen=True)
class RefreshJob:
    service_url: str
    conversation: str
    thread: str
    card_conversation: str  # where the card lives, as the invoke named it
    card_id: str
    question: str


class TeamsHandler:
    """The WSGI app for ``POST /api/messages``; ``close()`` stops its pool and clients."""

    def __init__(
        self,
        settings: Settings,
        flow: AnswerFlow,
        db: Database,
        *,
        auth: BotFrameworkAuth,
        connector: BotConnector,
        answer_workers: int = 16,
    ) -> None:
        app = settings.require_teams()
        self._settings = settings
        self._tenant = app.tenant_id
        self._bot_ids = frozenset({f"28:{app.app_id}"})
        self._flow = flow
        self._db = db
        self._auth = auth
        self._connector = connector
        self._pool = ThreadPoolExecutor(answer_workers, thread_name_prefix="kb-teams-answer")
        self._maybe_prune = Throttle(3600, self._prune)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._connector.close()

    # --- HTTP -------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _respond(start_response, 405, {"error": "POST only"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        status, payload = self.handle(environ.get("HTTP_AUTHORIZATION"), body)
        return _respond(start_response, status, payload)

    def handle(self, authorization: str | None, body: bytes) -> tuple[int, Any]:
        """(HTTP status, JSON body) for one request to the messaging endpoint."""
        try:
            token = self._auth.verify(authorization)
        except Unauthorized as exc:
            return self._refused(str(exc))
        except KeysUnavailable as exc:
            log.warning("Teams request turned away: %s", exc)
            return 503, {"error": "signing keys unavailable"}
        try:
            activity = parse_activity(json.loads(body))
        except ValueError as exc:
            return 400, {"error": f"not an activity: {exc}"}
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
        with self._db.connection() as conn:
            teams_state.remember_conversation(conn, activity.reference())
        self._maybe_prune()
        if activity.type == "message":
            self._on_message(activity)
            return 200, {}
        if activity.type == "invoke" and activity.name == "adaptiveCard/action":
            return 200, self._on_action(activity)
        if activity.type == "invoke":
            return 501, {}
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
        with self._db.connection() as conn:
            answered = bot_state.is_bot_thread(conn, PLATFORM, conversation, thread)
        if activity.conversation_type == "personal":
            window: float | None = CHAT_WINDOW
            counter = "teams_followups_answered" if answered else "teams_answers_posted"
        elif mentions:
            window = THREAD_WINDOW if activity.conversation_type == "channel" else CHAT_WINDOW
            counter = "teams_answers_posted"
        elif activity.is_thread_reply and answered:
            window, counter = THREAD_WINDOW, "teams_followups_answered"
        else:
            return  # not for us (RSC delivers every channel message when granted)
        with self._db.connection() as conn:
            if not teams_state.first_time_seen(conn, conversation, activity.id):
                bot_state.bump(conn, "teams_redeliveries_ignored")
                log.info("ignoring a redelivered Teams activity %s", activity.id[:40])
                return
        job = AskJob(
            service_url=activity.service_url,
            conversation=conversation,
            thread=thread,
            target=activity.reply_conversation,
            reply_to=None if activity.conversation_type == "channel" else activity.id,
            question=question_text(activity, mentions),
            history_window=window if answered else None,
            counter=counter,
        )
        self._pool.submit(self._answer, job)

    def _answer(self, job: AskJob) -> None:
        self._typing(job)
        try:
            if not job.question:
                self._post(job, text_activity(EMPTY_QUESTION))
                return
            history: list[Turn] = []
            if job.history_window is not None:
                with self._db.connection() as conn:
                    history = teams_state.recent_turns(
                        conn,
                        job.conversation,
                        job.thread,
                        limit=HISTORY_TURNS,
                        window_seconds=job.history_window,
                    )
            answer = self._flow.answer(
                job.question, scope=self._settings.scope_for(job.conversation), history=history
            )
            # Known before the reply lands, so a quick reply to the answer is a follow-up
            # with the answer in its history.
            with self._db.connection() as conn:
                bot_state.record_thread(conn, PLATFORM, job.conversation, job.thread)
                teams_state.add_turn(conn, job.conversation, job.thread, "user", job.question)
                teams_state.add_turn(conn, job.conversation, job.thread, "bot", answer.text)
            self._post(job, answer_activity(answer))
            self._after_post(job.conversation, job.thread, answer, job.counter)
        except Exception:
            log.exception("answering in Teams conversation (thread %s) failed", job.thread[:40])
            try:
                self._post(job, error_activity(SOMETHING_WRONG, job.question or None))
            except Exception as exc:
                log.warning("could not tell Teams about the failure either: %s", exc)

    def _post(self, job: AskJob, activity: dict[str, Any]) -> None:
        self._connector.patiently(
            lambda: self._connector.send(
                job.service_url, job.target, activity, reply_to=job.reply_to
            )
        )

    def _typing(self, job: AskJob) -> None:
        """The "kb is typing…" hint while it works; cosmetic, so no retries."""
        try:
            self._connector.send(job.service_url, job.target, {"type": "typing"})
        except ConnectorError as exc:
            log.info("typing indicator failed: %s", exc)

    def _record_thread(self, conversation: str, thread: str) -> None:
        with self._db.connection() as conn:
            bot_state.record_thread(conn, PLATFORM, conversation, thread)

    def _after_post(self, conversation: str, thread: str, answer: Answer, counter: str) -> None:
        bot_state.after_post(self._db, self._flow, PLATFORM, conversation, thread, answer, counter)

    # --- card buttons -----------------------------------------------------------------------

    def _on_action(self, activity: Incoming) -> dict[str, Any]:
        value = activity.value if isinstance(activity.value, dict) else {}
        action = value.get("action")
        if not isinstance(action, dict):
            return invoke_message(STALE_BUTTON)
        verb = action.get("verb")
        data = action_value(action.get("data"))
        if verb in (ACTION_HELPFUL, ACTION_NOT_HELPFUL):
            if data is None or not data.unit_id:
                return invoke_message(STALE_BUTTON)
            vote: Vote = "helpful" if verb == ACTION_HELPFUL else "not_helpful"
            return invoke_message(self._vote(data.unit_id, activity.user, vote))
        if verb == ACTION_REFRESH and data is not None and data.question and activity.reply_to_id:
            job = RefreshJob(
                service_url=activity.service_url,
                conversation=activity.base_conversation,
                thread=activity.thread,
                card_conversation=activity.conversation_id,
                card_id=activity.reply_to_id,
                question=data.question,
            )
            self._pool.submit(self._refresh, job)
            return invoke_message(REFRESHING)
        return invoke_message(STALE_BUTTON)

    def _vote(self, unit_id: str, user: str, vote: Vote) -> str:
        with self._db.connection() as conn:
            previous = bot_state.record_vote(conn, unit_id, PLATFORM, user, vote)
            if previous != vote:
                bot_state.bump(conn, f"teams_votes_{vote}")
        label = "helpful" if vote == "helpful" else "not helpful"
        if previous == vote:
            return f"You've already marked this answer as {label}."
        if previous is not None:
            return f"Changed your vote: this answer is now marked {label}."
        if vote == "helpful":
            return "Thanks, noted that this answer was helpful."
        return "Thanks, noted. Refresh may give a better answer; the team reviews these."

    def _refresh(self, job: RefreshJob) -> None:
        try:
            answer = self._flow.answer(
                job.question, scope=self._settings.scope_for(job.conversation), fresh=True
            )
            self._update(job, answer_activity(answer))
            self._record_thread(job.conversation, job.thread)
            self._after_post(job.conversation, job.thread, answer, "teams_refreshes")
        except Exception:
            log.exception("refreshing a Teams card (thread %s) failed", job.thread[:40])
            try:
                self._update(job, error_activity(SOMETHING_WRONG, job.question))
            except Exception as exc:
                log.warning("could not update the Teams card either: %s", exc)

    def _update(self, job: RefreshJob, activity: dict[str, Any]) -> None:
        self._connector.patiently(
            lambda: self._connector.update(
                job.service_url, job.card_conversation, job.card_id, activity
            )
        )

    def _prune(self) -> None:
        with self._db.connection() as conn:
            teams_state.prune(conn, seen_seconds=SEEN_TTL, turns_seconds=THREAD_WINDOW)


def _respond(start_response: StartResponse, status: int, payload: Any) -> list[bytes]:
    reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
    reasons.update({405: "Method Not Allowed", 501: "Not Implemented", 503: "Unavailable"})
    data = json.dumps(payload).encode()
    start_response(
        f"{status} {reasons.get(status, 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def build_teams_handler(
    settings: Settings,
    flow: AnswerFlow,
    db: Database,
    *,
    answer_workers: int = 16,
    min_key_refresh: float = MIN_REFRESH_SECONDS,
) -> TeamsHandler:
    """The ``/api/messages`` WSGI app for ``serve_slack(..., teams=...)``; needs TEAMS_*."""
    app = settings.require_teams()
    # One HTTP client for keys, tokens and the connector (closed with it): thread-safe, and
    # it pools connections to Microsoft's endpoints.
    http = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
    keys = OpenIdKeys(app.openid_metadata_url, http, min_refresh=min_key_refresh)
    credentials = ClientCredentials(app.client_token_url, app.app_id, app.password, http)
    return TeamsHandler(
        settings,
        flow,
        db,
        auth=BotFrameworkAuth(app.app_id, keys),
        connector=BotConnector(credentials, http),
        answer_workers=answer_workers,
    )
