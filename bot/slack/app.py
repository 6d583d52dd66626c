"""Slack's inbound side: the Bolt app, translating events, ``/kb-sync`` and button clicks into
calls on :class:`bot.conversation.Inbound` (docs/ARCHITECTURE.md, "Chat behaviour").

Bolt acknowledges events before its listeners run; listeners only translate and hand over,
and the slow part (the answer flow, Slack posts) runs on the conversation's pool, so a burst
of questions can never hold up the 3-second acks that /kb-sync and button clicks need from
Bolt's own workers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import bot_state
from bot._throttle import Throttle
from bot.bot_state import Vote
from bot.conversation import Inbound, Question
from bot.host import Mount
from bot.platform import ACTION_HELPFUL, ACTION_NOT_HELPFUL, ACTION_REFRESH, ActionValue, Requester
from bot.recent_deliveries import ACK_STORE_WAIT, RecentDeliveries
from bot.slack.assistant import PaneContextStore, build_assistant
from bot.slack.blocks import ACTION_FEEDBACK, read_feedback, slack_to_plain
from bot.slack.guard import SlackRequestGuard
from bot.slack.home import ACTION_HOME_SYNC, WorkspaceUrl, read_sync_button, render_home
from bot.slack.replay import delivery_key
from bot.slack.thread import (
    HUMAN_SUBTYPES,
    Click,
    Me,
    SlackAnswerMessage,
    SlackThread,
)
from bot.wording import STALE_BUTTON
from core.errors import AuthError, RemoteError
from core.identities import Secret
from store.db import Database

log = logging.getLogger(__name__)

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
EVENTS_SEEN_TTL = 24 * 3600.0


def is_direct_channel(channel: str) -> bool:
    """Slack's ids for direct-message conversations start with ``D`` (block_actions payloads
    carry no channel type)."""
    return channel.startswith("D")


class SlackApp(App):
    """Bolt's App plus the conversation and ack pool it runs on, so the process can stop
    them cleanly."""

    def __init__(
        self, *, conversation: Inbound, ack_pool: ThreadPoolExecutor, **kwargs: Any
    ) -> None:
        super().__init__(listener_executor=ack_pool, **kwargs)
        self._conversation = conversation
        self._ack_pool = ack_pool

    def close(self) -> None:
        self._ack_pool.shutdown(wait=True)
        self._conversation.close()


def build_slack_app(
    conversation: Inbound,
    db: Database,
    *,
    signing_secret: Secret,
    client: WebClient,
) -> SlackApp:
    """The Bolt app with every kb-bot listener registered (HTTP or Socket Mode alike).
    Bolt calls ``auth.test`` here: call :func:`check_slack_token` first for a failure an
    operator can read."""
    app = SlackApp(
        conversation=conversation,
        ack_pool=ThreadPoolExecutor(8, thread_name_prefix="kb-slack-ack"),
        name="kb-bot",
        client=client,
        signing_secret=signing_secret.reveal(),
        process_before_response=False,
        logger=_bolt_logger(),
    )
    handlers = SlackHandlers(conversation, db)
    app.use(handlers.drop_retries)
    app.assistant(build_assistant(conversation, PaneContextStore()))
    app.event("app_mention")(handlers.on_app_mention)
    app.event("message")(handlers.on_message)
    app.command("/kb-sync")(handlers.on_kb_sync)
    app.action(ACTION_REFRESH)(handlers.on_refresh)
    app.action(ACTION_HELPFUL)(handlers.on_vote)
    app.action(ACTION_NOT_HELPFUL)(handlers.on_vote)
    app.action(ACTION_FEEDBACK)(handlers.on_feedback)
    app.event("app_home_opened")(handlers.on_home_opened)
    app.action(re.compile(f"^{ACTION_HOME_SYNC}:"))(handlers.on_home_sync)
    return app


_REFUSED_TOKEN = {"invalid_auth", "not_authed", "account_inactive", "token_revoked"}


def check_slack_token(token: Secret, api_url: str) -> None:
    """``auth.test`` before Bolt's own (which would end in a page of traceback): a failure is
    one line for the operator, naming what failed and what to check. The SDK's own log lines
    for the attempt (an error per try, its retry) are kept out: that line says it all."""
    quiet = logging.getLogger("kb.slack.auth_check")
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    client = WebClient(token=token.reveal(), base_url=api_url, timeout=30, logger=quiet)
    try:
        client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        if error in _REFUSED_TOKEN or error == "token_expired":
            raise AuthError(
                f"Slack refused the bot token at start (auth.test: {error}); check "
                "SLACK_BOT_TOKEN is the installed app's Bot User OAuth Token (xoxb-…)"
            ) from None
        raise RemoteError(
            f"Slack's auth.test failed at start ({error}); check SLACK_API_URL and Slack's "
            "status, then start kb bot again"
        ) from None
    except (OSError, SlackClientError) as exc:  # refused, DNS, TLS, timeout
        reason = getattr(exc, "reason", None) or exc
        raise RemoteError(
            f"could not reach Slack at {client.base_url} at start ({reason}); check "
            "SLACK_API_URL, DNS and the outbound network or proxy, then start kb bot again"
        ) from None


def slack_client(token: Secret, api_url: str) -> WebClient:
    return WebClient(token=token.reveal(), base_url=api_url, timeout=30)


def slack_mount(app: SlackApp, *, signing_secret: Secret, app_token: Secret | None = None) -> Mount:
    """Slack on the chat host: ``POST /slack/events`` behind the signature and shape gate
    (bot/slack/guard.py), or Socket Mode when ``app_token`` (SLACK_APP_TOKEN) is given."""
    if app_token is None:
        handler = SlackRequestGuard(
            SlackRequestHandler(app, path=EVENTS_PATH), signing_secret.reveal()
        )
        return Mount(PLATFORM, EVENTS_PATH, handler, app.close)
    return Mount(PLATFORM, None, None, app.close, connect=lambda: _socket_mode(app, app_token))


def _socket_mode(app: App, app_token: Secret) -> None:
    # The built-in client needs no extra dependency (no websocket-client, no aiohttp).
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(app, app_token.reveal())
    try:
        handler.start()  # type: ignore[no-untyped-call]  # blocks until interrupted
    finally:
        handler.close()  # type: ignore[no-untyped-call]


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
    """Bolt listeners: read the payload, make the conversation call, ack."""

    def __init__(self, conversation: Inbound, db: Database) -> None:
        self._conversation = conversation
        self._db = db
        self._maybe_prune = Throttle(3600, self._prune)
        self._workspace = WorkspaceUrl()
        self._recent = RecentDeliveries()

    # --- middleware -------------------------------------------------------------------------

    def drop_retries(
        self, body: dict[str, Any], request: BoltRequest, next: Callable[[], Any]
    ) -> BoltResponse | None:
        """Slack redelivers an event it thinks we missed, and a captured signed request can be
        replayed within its window: each delivery (bot.slack.replay) is answered once."""
        event_id = delivery_key(body, request.raw_body)
        if event_id is None:
            return next()  # type: ignore[no-any-return]
        first = self._recent.first_delivery(
            event_id,
            self._db,
            lambda conn: bot_state.first_time_seen(conn, event_id),
            on_repeat=lambda conn: bot_state.bump(conn, "slack_retries_ignored"),
        )
        self._maybe_prune()
        if first:
            return next()  # type: ignore[no-any-return]
        log.info("ignoring a repeated Slack delivery (%s)", event_id)
        return BoltResponse(status=200, body="")

    def _prune(self) -> None:
        try:
            with self._db.connection(timeout=ACK_STORE_WAIT) as conn:
                bot_state.prune_events_seen(conn, EVENTS_SEEN_TTL)
        except Exception as exc:  # housekeeping: the next hour's try will do
            log.info("pruning seen Slack deliveries skipped (%s)", type(exc).__name__)

    # --- events -----------------------------------------------------------------------------

    def on_app_mention(self, event: dict[str, Any], context: BoltContext) -> None:
        if event.get("bot_id") or event.get("subtype") or not event.get("user"):
            return  # other bots mentioning us would make a loop
        ts = str(event.get("ts") or "")
        channel = str(event.get("channel") or "")
        if not ts or not channel or context.client is None:
            return
        thread = str(event.get("thread_ts") or ts)
        text = slack_to_plain(str(event.get("text") or ""), bot_user_id=context.bot_user_id)
        question = Question(channel, thread, text, with_history=thread != ts)
        self._conversation.ask(question, self._thread(context, channel, thread, ts, event))

    def on_message(self, event: dict[str, Any], context: BoltContext) -> None:
        """A person's reply in a thread the bot answered in is a follow-up; a direct message
        to the bot is a question (answered with the DM scope, in a thread under it)."""
        if event.get("subtype") not in HUMAN_SUBTYPES or event.get("bot_id"):
            return
        user, ts, thread = event.get("user"), event.get("ts"), event.get("thread_ts")
        channel = event.get("channel")
        if not user or user == context.bot_user_id or not ts or not channel:
            return
        if context.client is None:
            return
        direct = event.get("channel_type") == "im"
        text = str(event.get("text") or "")
        if not direct and context.bot_user_id and f"<@{context.bot_user_id}" in text:
            return  # Slack also sends app_mention for it; that handler answers
        channel, ts = str(channel), str(ts)
        plain = slack_to_plain(text, bot_user_id=context.bot_user_id)
        if direct and (not thread or thread == ts):
            question = Question(channel, ts, plain, with_history=False, direct=True)
            self._conversation.ask(question, self._thread(context, channel, ts, ts, event))
            return
        if not thread or thread == ts:
            return  # a top-level message in a channel, not a reply
        thread = str(thread)
        if not self._conversation.is_bot_thread(channel, thread):
            return
        question = Question(channel, thread, plain, with_history=True, followup=True, direct=direct)
        self._conversation.ask(question, self._thread(context, channel, thread, ts, event))

    @staticmethod
    def _thread(
        context: BoltContext, channel: str, thread: str, ts: str, event: dict[str, Any]
    ) -> SlackThread:
        assert context.client is not None
        me = Me(context.bot_user_id, context.bot_id)
        asker = str(event.get("user") or "") or None
        team = str(event.get("team") or context.team_id or "") or None
        return SlackThread(context.client, channel, thread, ts, me, asker=asker, team=team)

    # --- /kb-sync ---------------------------------------------------------------------------

    def on_kb_sync(self, ack: Ack, command: dict[str, Any]) -> None:
        requester = Requester(
            platform=PLATFORM,
            user=str(command.get("user_id") or ""),
            channel=str(command.get("channel_id") or ""),
            response_url=command.get("response_url") or None,
        )
        reply = self._conversation.request_sync(requester, str(command.get("text") or ""))
        ack(text=reply, response_type="ephemeral")

    # --- buttons ----------------------------------------------------------------------------

    def on_refresh(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
    ) -> None:
        ack()
        click = Click.read(body, context.client)
        if click is None:
            return
        blocks = (body.get("message") or {}).get("blocks")
        message = SlackAnswerMessage(
            click.client,
            click.channel,
            click.message_ts,
            blocks if isinstance(blocks, list) else None,
            click.user,
        )
        value = ActionValue.decode(action.get("value"))
        direct = is_direct_channel(click.channel)
        if not self._conversation.refresh(
            value, click.channel, click.thread, message, direct=direct
        ):
            click.reply(STALE_BUTTON)

    def on_vote(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
    ) -> None:
        """The Helpful / Not helpful buttons of answers posted before the native thumbs."""
        vote: Vote = "helpful" if action.get("action_id") == ACTION_HELPFUL else "not_helpful"
        self._vote(ack, body, context, ActionValue.decode(action.get("value")), vote)

    def on_feedback(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
    ) -> None:
        """Slack's native thumbs: the same vote as the old buttons, the same private reply."""
        feedback = read_feedback(action.get("value"))
        value = ActionValue(feedback[0], "") if feedback else None
        vote: Vote = "helpful" if feedback and feedback[1] else "not_helpful"
        self._vote(ack, body, context, value, vote)

    def _vote(
        self,
        ack: Ack,
        body: dict[str, Any],
        context: BoltContext,
        value: ActionValue | None,
        vote: Vote,
    ) -> None:
        ack()
        click = Click.read(body, context.client)
        if click is None or not click.user:
            return
        click.reply(self._conversation.vote(value, click.user, vote))

    # --- App Home ---------------------------------------------------------------------------

    def on_home_opened(self, event: dict[str, Any], context: BoltContext) -> None:
        """Rebuilt from Postgres on every open, so it is never stale."""
        user = str(event.get("user") or "")
        if event.get("tab") != "home" or not user or context.client is None:
            return
        home = self._conversation.home(user)
        authorized = context.authorize_result
        team_url = (authorized.url if authorized else None) or self._workspace.get(context.client)
        view = render_home(home, str(event.get("channel") or ""), team_url=team_url)
        context.client.views_publish(user_id=user, view=view)

    def on_home_sync(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
    ) -> None:
        """Sync now: the same request as ``/kb-sync <source>``, same admin check."""
        ack()
        user = str((body.get("user") or {}).get("id") or "")
        target = read_sync_button(action.get("value"))
        client = context.client
        if not user or target is None or client is None:
            return
        source, channel = target
        requester = Requester(platform=PLATFORM, user=user, channel=channel, response_url=None)
        reply = self._conversation.request_sync(requester, source)
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=reply)
        except Exception as exc:
            log.info("could not tell %s about their sync request: %s", user, exc)
