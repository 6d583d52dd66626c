"""The conversation: what kb-bot does and says when people talk to it, on any chat platform.

This is the inbound side of the chat-platform seam (docs/ARCHITECTURE.md, "Chat platforms").
An adapter package (``bot/slack/``, ``bot/teams/``) turns a platform's payload into one call
here and hands over the objects to speak through: a :class:`ChatThread` for a question, an
:class:`AnswerMessage` for a Refresh. Everything between (the scope, the thread's history, the
answer flow, which thread counts as the bot's, votes, ``/kb-sync`` requests, counters, and
which sentence a person reads, worded in :mod:`bot.wording`) is decided once, here. Adapters
render; they never word or decide.

Answers run on this conversation's own pool: an adapter's listener only translates and
returns, so the platform's acknowledgement deadline (Slack's 3 s, Teams' redelivery) never
waits for the model. Things that grow on this seam without copying: a streamed answer comes
from a :class:`StreamingThread`, whose :class:`AnswerStream` the flow feeds as the model writes
(docs/ARCHITECTURE.md, "Streamed answers"); a status line ("is searching…") is what
``working()`` shows; DMs and an assistant pane are new places an adapter builds a
:class:`Question` for; native feedback buttons end in :meth:`Conversation.vote`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot import bot_state, suggestions, wording
from bot.answers import Answer, AnswerFlow, Turn
from bot.bot_state import Vote
from bot.draining import SHUTDOWN_GRACE, DrainingPool
from bot.platform import ActionValue, Requester
from bot.sync_request import SyncArgsError, SyncTargets, parse_sync_request
from store.app_home import Home, read_home
from store.db import Database
from store.scope import Scope

log = logging.getLogger(__name__)

# --- the seam ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatPolicy:
    """What a conversation needs from the deployment's settings, as plain values.

    ``scope_for`` maps a channel (or chat) id to what may be cited there; ``admins`` are the
    platform's user ids allowed to run ``/kb-sync``; ``sync`` names the sources it may ask for;
    ``dm_scope`` is what a direct message may draw on (None: ``scope_for`` decides);
    ``prompts`` are the configured suggested questions (Slack's assistant pane).
    """

    scope_for: Callable[[str], Scope]
    admins: frozenset[str]
    sync: SyncTargets
    dm_scope: Scope | None = None
    prompts: tuple[str, ...] = ()

    def scope(self, channel: str, *, direct: bool = False) -> Scope:
        if direct and self.dm_scope is not None:
            return self.dm_scope
        return self.scope_for(channel)


@dataclass(frozen=True)
class Question:
    """One message to answer. ``channel`` decides the scope, ``thread`` is the conversation it
    belongs to (replies there are follow-ups). ``with_history`` reads the thread so far (a
    mention inside a thread, a follow-up); ``followup`` only decides how it is counted;
    ``direct`` marks a private chat with the bot (answered with the DM scope);
    ``scope_channel`` answers with another channel's scope (the channel in view beside Slack's
    assistant pane, once the adapter checked the bot is in it)."""

    channel: str
    thread: str
    text: str
    with_history: bool
    followup: bool = False
    direct: bool = False
    scope_channel: str | None = None


class ChatThread(Protocol):
    """Where the answer to one :class:`Question` goes; the adapter renders and sends."""

    def working(self) -> AbstractContextManager[object]:
        """Shown while the answer is made (a reaction, typing, a status line), then cleared."""
        ...

    def history(self) -> Sequence[Turn]:
        """The thread so far, oldest first, without the question itself."""
        ...

    def say(self, text: str) -> None:
        """Post a plain sentence (already worded) into the thread."""
        ...

    def post_answer(self, answer: Answer) -> None: ...

    def post_error(self, text: str, question: str | None) -> None:
        """A failure, with a Refresh button for ``question`` when there is one. Must not raise."""
        ...


class AnswerStream(Protocol):
    """One answer shown while it is generated, then finished in place (docs/ARCHITECTURE.md,
    "Streamed answers"). Nothing is posted before the first :meth:`append`, so an answer that
    never streams (a cache hit, a fallback) is posted whole by :meth:`finish`."""

    def append(self, text: str) -> None:
        """Show more of the answer (text already safe to show: bot.streaming). Must not raise:
        a platform that refuses or drops the stream leaves the answer to :meth:`finish`."""
        ...

    def finish(self, answer: Answer) -> None:
        """The final answer (citations renumbered, sources, feedback controls) replaces
        whatever was streamed, or is posted if nothing was."""
        ...

    def fail(self, text: str, question: str | None) -> None:
        """A failure replaces whatever was streamed (or is posted). Must not raise."""
        ...


@runtime_checkable
class StreamingThread(ChatThread, Protocol):
    """A :class:`ChatThread` that can show an answer as it is generated."""

    def open_stream(self) -> AnswerStream | None:
        """A stream for this question's answer, or None where the platform cannot stream
        here (Teams channels): the answer is then posted at the end."""
        ...


class AnswerMessage(Protocol):
    """An answer already posted, that Refresh rewrites in place."""

    def mark_refreshing(self) -> None:
        """Show at once that a refresh is under way (or do nothing)."""
        ...

    def replace(self, answer: Answer) -> None: ...

    def replace_with_error(self, text: str, question: str) -> None:
        """Must not raise."""
        ...


class Inbound(Protocol):
    """What an adapter may call: the inbound half of the seam, implemented by
    :class:`Conversation` (one per platform)."""

    def is_bot_thread(self, channel: str, thread: str) -> bool: ...

    def ask(self, question: Question, thread: ChatThread) -> None: ...

    def refresh(
        self,
        value: ActionValue | None,
        channel: str,
        thread: str,
        message: AnswerMessage,
        *,
        direct: bool = False,
    ) -> bool: ...

    def vote(self, value: ActionValue | None, user: str, vote: Vote) -> str: ...

    def request_sync(self, requester: Requester, text: str) -> str: ...

    def home(self, user: str) -> Home: ...

    def suggested_prompts(self, channel: str, scope_channel: str | None) -> tuple[str, ...]: ...

    def admin_command(self, requester: Requester, text: str) -> str | None: ...

    def count(self, what: str) -> None: ...

    def close(self) -> None: ...


class Conversation:
    """Implements :class:`Inbound`: asking, follow-ups, refresh, votes and ``/kb-sync`` for
    one platform (``platform`` names it in the database: threads, votes, ``<platform>_*``
    counters)."""

    def __init__(
        self,
        platform: str,
        flow: AnswerFlow,
        db: Database,
        policy: ChatPolicy,
        *,
        workers: int = 16,
        shutdown_grace: float = SHUTDOWN_GRACE,
    ) -> None:
        self.platform = platform
        self._flow = flow
        self._db = db
        self._policy = policy
        self._pool = DrainingPool(workers, f"kb-{platform}-answer", grace=shutdown_grace)

    def close(self) -> None:
        """Finish the answers under way within the grace (bot.draining), hand back the rest;
        nothing new is accepted afterwards."""
        self._pool.close()

    # --- questions ----------------------------------------------------------------------------

    def is_bot_thread(self, channel: str, thread: str) -> bool:
        """Whether the bot has answered in this thread, so a plain reply is a follow-up."""
        with self._db.connection() as conn:
            return bot_state.is_bot_thread(conn, self.platform, channel, thread)

    def ask(self, question: Question, thread: ChatThread) -> None:
        """Answer in the background; returns at once."""
        self._pool.submit(
            lambda: self._answer(question, thread), lambda: self._hand_back(question, thread)
        )

    @staticmethod
    def _hand_back(question: Question, thread: ChatThread) -> None:
        """Stopping before this answer was done: say so, with Refresh, and clear the reaction."""
        thread.post_error(wording.RESTARTING, question.text or None)
        with thread.working():  # entering again is harmless; leaving clears the indicator
            pass

    def _answer(self, question: Question, thread: ChatThread) -> None:
        with thread.working():
            stream: AnswerStream | None = None
            try:
                if not question.text:
                    thread.say(wording.EMPTY_QUESTION)
                    return
                history = thread.history() if question.with_history else ()
                scope = self._policy.scope(
                    question.scope_channel or question.channel, direct=question.direct
                )
                if isinstance(thread, StreamingThread):
                    stream = thread.open_stream()
                answer = self._flow.answer(
                    question.text,
                    scope=scope,
                    history=history,
                    on_text=stream.append if stream is not None else None,
                )
                # Known before the reply lands, so a quick reply to the answer is a follow-up.
                self._record_thread(question.channel, question.thread)
                if stream is not None:
                    stream.finish(answer)
                else:
                    thread.post_answer(answer)
                kind = "followups_answered" if question.followup else "answers_posted"
                self._after_post(question.channel, question.thread, answer, kind, scope)
            except Exception:
                text = self._failure_text(question.thread)
                if stream is not None:
                    stream.fail(text, question.text or None)
                else:
                    thread.post_error(text, question.text or None)

    def _failure_text(self, thread: str) -> str:
        """What to tell the asker when answering raised (called in the ``except``): that the
        store is down (the probe logged that once, docs/ARCHITECTURE.md, "Failures: the store
        unreachable"), else that something went wrong, with the traceback in the log."""
        if not self._db.reachable():
            return wording.STORE_DOWN
        log.exception("answering on %s (thread %s) failed", self.platform, thread[:40])
        return wording.SOMETHING_WRONG

    # --- buttons ------------------------------------------------------------------------------

    def refresh(
        self,
        value: ActionValue | None,
        channel: str,
        thread: str,
        message: AnswerMessage,
        *,
        direct: bool = False,
    ) -> bool:
        """Regenerate an answer in place, bypassing the cache; False when the button is stale
        (tell the person :data:`bot.wording.STALE_BUTTON`). ``direct``: in a private chat."""
        if value is None or not value.question:
            return False
        message.mark_refreshing()
        scope = self._policy.scope(channel, direct=direct)
        self._pool.submit(lambda: self._refresh(value.question, channel, thread, message, scope))
        return True

    def _refresh(
        self, question: str, channel: str, thread: str, message: AnswerMessage, scope: Scope
    ) -> None:
        try:
            answer = self._flow.answer(question, scope=scope, fresh=True)
            message.replace(answer)
            self._record_thread(channel, thread)
            self._after_post(channel, thread, answer, "refreshes", scope)
        except Exception:
            message.replace_with_error(self._failure_text(thread), question)

    def vote(self, value: ActionValue | None, user: str, vote: Vote) -> str:
        """Record a person's vote on an answer; the private reply to show them."""
        if value is None or not value.unit_id:
            return wording.STALE_BUTTON
        with self._db.connection() as conn:
            previous = bot_state.record_vote(conn, value.unit_id, self.platform, user, vote)
            if previous != vote:
                bot_state.bump(conn, f"{self.platform}_votes_{vote}")
        return wording.vote_text(vote, previous)

    # --- /kb-sync -----------------------------------------------------------------------------

    def request_sync(self, requester: Requester, text: str) -> str:
        """Queue a sync for the daemon if an admin asked for something that exists; the
        private reply to show the requester."""
        if requester.user not in self._policy.admins:
            return wording.NOT_ADMIN
        try:
            request = parse_sync_request(text, self._policy.sync)
        except SyncArgsError as exc:
            return str(exc)
        asker = {
            "platform": requester.platform,
            "user": requester.user,
            "channel": requester.channel,
            "response_url": requester.response_url,
        }
        try:
            with self._db.connection() as conn:
                request_id = bot_state.queue_sync_request(
                    conn, request.source, list(request.keys), asker
                )
                bot_state.bump(conn, f"{self.platform}_sync_requests")
        except Exception:
            log.exception("could not queue a sync request")
            return wording.QUEUE_FAILED
        log.info("sync request %s queued by %s: %s", request_id, requester.user, request.describe())
        return wording.queued_text(request.describe())

    def admin_command(self, requester: Requester, text: str) -> str | None:
        """``sync …`` typed to the bot by an admin (platforms without slash commands): the
        same request as ``/kb-sync …`` and the reply to show. None when it is not one (anyone
        else's "sync …" is an ordinary question)."""
        verb, _, rest = text.strip().partition(" ")
        if verb.lower() != "sync" or requester.user not in self._policy.admins:
            return None
        return self.request_sync(requester, rest.strip())

    # --- App Home -----------------------------------------------------------------------------

    def home(self, user: str) -> Home:
        """What ``user``'s App Home shows, read now; admins also get the sync and answer
        figures and a Sync now per configured source."""
        admin = user in self._policy.admins
        sources = tuple((s.name, s.label) for s in self._policy.sync.sources if s.configured)
        with self._db.connection() as conn:
            return read_home(conn, self.platform, sync_sources=sources if admin else None)

    # --- suggested prompts ----------------------------------------------------------------------

    def suggested_prompts(self, channel: str, scope_channel: str | None) -> tuple[str, ...]:
        """Questions to suggest in a private pane (``channel``) beside ``scope_channel`` (None:
        no channel in view, or one the adapter found the bot is not in), drawn from the very
        scope the pane would answer with (:mod:`bot.suggestions`)."""
        scope = self._policy.scope(scope_channel or channel, direct=scope_channel is None)
        return suggestions.for_scope(self._db, scope, self._policy.prompts)

    # --- bookkeeping --------------------------------------------------------------------------

    def count(self, what: str) -> None:
        """Bump the counter ``<platform>_<what>`` (shown on the daemon's /metrics)."""
        with self._db.connection() as conn:
            bot_state.bump(conn, f"{self.platform}_{what}")

    def _record_thread(self, channel: str, thread: str) -> None:
        with self._db.connection() as conn:
            bot_state.record_thread(conn, self.platform, channel, thread)

    def _after_post(
        self, channel: str, thread: str, answer: Answer, kind: str, scope: Scope
    ) -> None:
        counter = f"{self.platform}_{kind}"
        bot_state.after_post(
            self._db, self._flow, self.platform, channel, thread, answer, counter, scope
        )
