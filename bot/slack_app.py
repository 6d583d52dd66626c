"""The Slack app: @mentions, thread follow-ups, /kb-sync and the answer buttons.

Bolt acknowledges events before its listeners run; listeners only decide and enqueue, and the
slow part (the answer flow, Slack posts) runs on a separate pool, so a burst of questions can
never hold up the 3-second acks that /kb-sync and button clicks need from Bolt's own workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient

from bot import bot_state
from bot._throttle import Throttle
from bot.answers import Answer, AnswerFlow, Turn
from bot.bot_state import Vote
from bot.platform import (
    ACTION_HELPFUL,
    ACTION_NOT_HELPFUL,
    ACTION_REFRESH,
    ActionValue,
    SyncArgsError,
    parse_sync_request,
)
from bot.slack_blocks import (
    render_answer,
    render_error,
    replace_actions_with_note,
    slack_to_plain,
)
from bot.slack_platform import (
    HUMAN_SUBTYPES,
    ephemeral,
    message_location,
    post_quietly,
    react,
    thread_turn,
    update_quietly,
)
from kb.settings import Settings
from store.db import Database

log = logging.getLogger(__name__)

PLATFORM = "slack"
SOMETHING_WRONG = "Something went wrong on my side; the team has the details in the logs."
EMPTY_QUESTION = "Ask me a question after the mention, e.g. “@kb how do I rotate the VPN cert?”"
NOT_ADMIN = (
    "Sorry, only the bot's admins (KB_ADMINS) can run /kb-sync. Ask one of them, or wait for "
    "the next scheduled sync."
)
QUEUE_FAILED = "I couldn't queue the sync just now (the database didn't answer); try again soon."
STALE_BUTTON = "That button no longer works; ask the question again with a mention."
HISTORY_TURNS = 20
EVENTS_SEEN_TTL = 24 * 3600.0


@dataclass(frozen=True)
class AskJob:
    """One question to answer: where it was asked and how to reply."""

    channel: str
    thread: str
    ts: str  # the asking message: gets the working reaction, is left out of the history
    question: str
    with_history: bool
    counter: str
    bot_user_id: str | None
    bot_id: str | None = None


@dataclass(frozen=True)
class RefreshJob:
    channel: str
    thread: str
    message_ts: str
    question: str


class SlackApp(App):
    """Bolt's App plus the pools it runs on, so the process can stop them cleanly."""

    def __init__(
        self, *, answer_pool: ThreadPoolExecutor, ack_pool: ThreadPoolExecutor, **kwargs: Any
    ) -> None:
        super().__init__(listener_executor=ack_pool, **kwargs)
        self._pools = (ack_pool, answer_pool)

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True)


def build_slack_app(
    settings: Settings,
    flow: AnswerFlow,
    db: Database,
    *,
    client: WebClient | None = None,
    answer_workers: int = 16,
) -> App:
    """The Bolt app with every kb-bot listener registered (HTTP or Socket Mode alike)."""
    token, signing_secret = settings.require_slack()
    if client is None:
        client = WebClient(token=token.reveal(), base_url=settings.slack_api_url, timeout=30)
    answer_pool = ThreadPoolExecutor(answer_workers, thread_name_prefix="kb-slack-answer")
    app = SlackApp(
        answer_pool=answer_pool,
        ack_pool=ThreadPoolExecutor(8, thread_name_prefix="kb-slack-ack"),
        name="kb-bot",
        client=client,
        signing_secret=signing_secret.reveal(),
        process_before_response=False,
        logger=_bolt_logger(),
    )
    handlers = SlackHandlers(settings, flow, db, answer_pool)
    app.use(handlers.drop_retries)
    app.event("app_mention")(handlers.on_app_mention)
    app.event("message")(handlers.on_message)
    app.command("/kb-sync")(handlers.on_kb_sync)
    app.action(ACTION_REFRESH)(handlers.on_refresh)
    app.action(ACTION_HELPFUL)(handlers.on_vote)
    app.action(ACTION_NOT_HELPFUL)(handlers.on_vote)
    return app


class _NoTokenSkippedWarning(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN from the environment is unused when it is given a
    client, which is exactly how we build it (so SLACK_API_URL applies); keep starts quiet."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("kb.slack.bolt")
    if not any(isinstance(f, _NoTokenSkippedWarning) for f in logger.filters):
        logger.addFilter(_NoTokenSkippedWarning())
    return logger


class SlackHandlers:
    def __init__(
        self, settings: Settings, flow: AnswerFlow, db: Database, pool: ThreadPoolExecutor
    ) -> None:
        self._settings = settings
        self._flow = flow
        self._db = db
        self._pool = pool
        self._maybe_prune = Throttle(3600, self._prune)

    # --- middleware -------------------------------------------------------------------------

    def drop_retries(self, body: dict[str, Any], next: Callable[[], Any]) -> BoltResponse | None:
        """Slack redelivers an event it thinks we missed; its ``event_id`` is answered once."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not isinstance(event_id, str) or not event_id:
            return next()  # type: ignore[no-any-return]
        with self._db.connection() as conn:
            first = bot_state.first_time_seen(conn, event_id)
            if not first:
                bot_state.bump(conn, "slack_retries_ignored")
        self._maybe_prune()
        if first:
            return next()  # type: ignore[no-any-return]
        log.info("ignoring Slack's redelivery of event %s", event_id)
        return BoltResponse(status=200, body="")

    def _prune(self) -> None:
        with self._db.connection() as conn:
            bot_state.prune_events_seen(conn, EVENTS_SEEN_TTL)

    # --- events -----------------------------------------------------------------------------

    def on_app_mention(self, event: dict[str, Any], context: BoltContext) -> None:
        if event.get("bot_id") or event.get("subtype") or not event.get("user"):
            return  # other bots mentioning us would make a loop
        ts = str(event.get("ts") or "")
        channel = str(event.get("channel") or "")
        if not ts or not channel:
            return
        thread = str(event.get("thread_ts") or ts)
        job = AskJob(
            channel=channel,
            thread=thread,
            ts=ts,
            question=slack_to_plain(str(event.get("text") or ""), bot_user_id=context.bot_user_id),
            with_history=thread != ts,
            counter="slack_answers_posted",
            bot_user_id=context.bot_user_id,
            bot_id=context.bot_id,
        )
        self._pool.submit(self._answer, job, context.client)

    def on_message(self, event: dict[str, Any], context: BoltContext) -> None:
        """A person's reply in a thread the bot answered in is a follow-up."""
        if event.get("subtype") not in HUMAN_SUBTYPES or event.get("bot_id"):
            return
        user, ts, thread = event.get("user"), event.get("ts"), event.get("thread_ts")
        channel = event.get("channel")
        if not user or user == context.bot_user_id or not ts or not channel:
            return
        if not thread or thread == ts:
            return  # a top-level message, not a reply
        text = str(event.get("text") or "")
        if context.bot_user_id and f"<@{context.bot_user_id}" in text:
            return  # Slack also sends app_mention for it; that handler answers
        with self._db.connection() as conn:
            if not bot_state.is_bot_thread(conn, PLATFORM, str(channel), str(thread)):
                return
        job = AskJob(
            channel=str(channel),
            thread=str(thread),
            ts=str(ts),
            question=slack_to_plain(text, bot_user_id=context.bot_user_id),
            with_history=True,
            counter="slack_followups_answered",
            bot_user_id=context.bot_user_id,
            bot_id=context.bot_id,
        )
        self._pool.submit(self._answer, job, context.client)

    def _answer(self, job: AskJob, client: WebClient | None) -> None:
        if client is None:
            return
        reacted = react(client, add=True, channel=job.channel, ts=job.ts)
        try:
            if not job.question:
                client.chat_postMessage(
                    channel=job.channel, thread_ts=job.thread, text=EMPTY_QUESTION
                )
                return
            history = self._history(client, job) if job.with_history else []
            answer = self._flow.answer(
                job.question, scope=self._settings.scope_for(job.channel), history=history
            )
            blocks, text = render_answer(answer)
            # Known before the reply lands, so a quick reply to the answer is a follow-up.
            self._record_thread(job.channel, job.thread)
            client.chat_postMessage(
                channel=job.channel,
                thread_ts=job.thread,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
            self._after_post(job.channel, job.thread, answer, job.counter)
        except Exception:
            log.exception("answering in %s (thread %s) failed", job.channel, job.thread)
            post_quietly(
                client, job.channel, job.thread, *render_error(SOMETHING_WRONG, job.question)
            )
        finally:
            if reacted:
                react(client, add=False, channel=job.channel, ts=job.ts)

    def _history(self, client: WebClient, job: AskJob) -> list[Turn]:
        turns: list[Turn] = []
        cursor: str | None = None
        try:
            for _ in range(5):
                page = client.conversations_replies(
                    channel=job.channel,
                    ts=job.thread,
                    limit=200,
                    include_all_metadata=True,
                    cursor=cursor,
                )
                for message in page.get("messages") or []:
                    turn = thread_turn(message, before_ts=job.ts, me=(job.bot_user_id, job.bot_id))
                    if turn is not None:
                        turns.append(turn)
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except Exception as exc:
            # Without channels:history (or on a hiccup) answer anyway, just without context.
            log.warning("could not read thread %s in %s: %s", job.thread, job.channel, exc)
        return turns[-HISTORY_TURNS:]

    def _record_thread(self, channel: str, thread: str) -> None:
        with self._db.connection() as conn:
            bot_state.record_thread(conn, PLATFORM, channel, thread)

    def _after_post(self, channel: str, thread: str, answer: Answer, counter: str) -> None:
        bot_state.after_post(self._db, self._flow, PLATFORM, channel, thread, answer, counter)

    # --- /kb-sync ---------------------------------------------------------------------------

    def on_kb_sync(self, ack: Ack, command: dict[str, Any]) -> None:
        user = str(command.get("user_id") or "")
        if user not in self._settings.admins:
            ack(text=NOT_ADMIN, response_type="ephemeral")
            return
        try:
            request = parse_sync_request(str(command.get("text") or ""), self._settings)
        except SyncArgsError as exc:
            ack(text=str(exc), response_type="ephemeral")
            return
        asker = {
            "platform": PLATFORM,
            "user": user,
            "channel": command.get("channel_id"),
            "response_url": command.get("response_url"),
        }
        try:
            with self._db.connection() as conn:
                request_id = bot_state.queue_sync_request(
                    conn, request.source, list(request.keys), asker
                )
                bot_state.bump(conn, "slack_sync_requests")
        except Exception:
            log.exception("could not queue a sync request")
            ack(text=QUEUE_FAILED, response_type="ephemeral")
            return
        log.info("sync request %s queued by %s: %s", request_id, user, request.describe())
        ack(
            text=f"Queued a sync of {request.describe()}; I'll tell you here when it's done.",
            response_type="ephemeral",
        )

    # --- buttons ----------------------------------------------------------------------------

    def on_refresh(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
    ) -> None:
        ack()
        client = context.client
        where = message_location(body)
        value = ActionValue.decode(action.get("value"))
        if client is None or where is None:
            return
        channel, message_ts, thread = where
        user = str((body.get("user") or {}).get("id") or "")
        if value is None or not value.question:
            ephemeral(client, channel, user, thread, STALE_BUTTON)
            return
        blocks = (body.get("message") or {}).get("blocks")
        if isinstance(blocks, list):
            note = f"Refreshing… (asked by <@{user}>)" if user else "Refreshing…"
            update_quietly(
                client, channel, message_ts, replace_actions_with_note(blocks, note), note
            )
        self._pool.submit(
            self._refresh, RefreshJob(channel, thread, message_ts, value.question), client
        )

    def _refresh(self, job: RefreshJob, client: WebClient) -> None:
        try:
            answer = self._flow.answer(
                job.question, scope=self._settings.scope_for(job.channel), fresh=True
            )
            blocks, text = render_answer(answer)
            client.chat_update(channel=job.channel, ts=job.message_ts, text=text, blocks=blocks)
            self._record_thread(job.channel, job.thread)
            self._after_post(job.channel, job.thread, answer, "slack_refreshes")
        except Exception:
            log.exception("refreshing %s in %s failed", job.message_ts, job.channel)
            update_quietly(
                client, job.channel, job.message_ts, *render_error(SOMETHING_WRONG, job.question)
            )

    def on_vote(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
    ) -> None:
        ack()
        client = context.client
        where = message_location(body)
        user = str((body.get("user") or {}).get("id") or "")
        if client is None or where is None or not user:
            return
        channel, _, thread = where
        value = ActionValue.decode(action.get("value"))
        if value is None or not value.unit_id:
            ephemeral(client, channel, user, thread, STALE_BUTTON)
            return
        vote: Vote = "helpful" if action.get("action_id") == ACTION_HELPFUL else "not_helpful"
        with self._db.connection() as conn:
            previous = bot_state.record_vote(conn, value.unit_id, PLATFORM, user, vote)
            if previous != vote:
                bot_state.bump(conn, f"slack_votes_{vote}")
        label = "helpful" if vote == "helpful" else "not helpful"
        if previous == vote:
            text = f"You've already marked this answer as {label}."
        elif previous is not None:
            text = f"Changed your vote: this answer is now marked {label}."
        elif vote == "helpful":
            text = "Thanks, noted that this answer was helpful."
        else:
            text = "Thanks, noted. Refresh may give a better answer; the team reviews these."
        ephemeral(client, channel, user, thread, text)
