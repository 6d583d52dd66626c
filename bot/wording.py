"""Every sentence kb-bot says, written once for every chat platform.

The conversation's replies, the labels under an answer, and the outbox's notices, alerts and
sync reports. Inline markup goes through a :class:`Markup` each adapter supplies; emoji are
written as Slack shortcodes (``:warning:``), which an adapter whose platform shows them raw
(Teams) turns into characters. No adapter words anything itself (docs/ARCHITECTURE.md,
"Chat platforms").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from bot.answers import UNAVAILABLE_TEXT, Answer
from bot.bot_state import Vote
from bot.platform import (
    ACTION_HELPFUL,
    ACTION_NOT_HELPFUL,
    ACTION_REFRESH,
    OpsAlert,
    OpsMessage,
    SourceNotice,
    StoreOutage,
    SyncResult,
)

# --- the conversation's replies -------------------------------------------------------------------

SOMETHING_WRONG = "Something went wrong on my side; the team has the details in the logs."
RESTARTING = "I'm restarting and couldn't finish this answer; press Refresh in a minute."
STORE_DOWN = (
    "I can't reach the knowledge store right now, so I can't answer yet. Press Refresh in a "
    "few minutes, once it's back."
)
EMPTY_QUESTION = "Ask me a question after the mention, e.g. “@kb how do I rotate the VPN cert?”"
STALE_BUTTON = "That button no longer works; ask the question again with a mention."
REFRESHING = "Refreshing… the answer will update in place in a moment."
# A click that arrives a second time (a redelivery or a replay) is acted on once.
ALREADY_RECEIVED = "Got it already; that click was handled once."
NOT_ADMIN = (
    "Sorry, only the bot's admins (KB_ADMINS) can run /kb-sync. Ask one of them, or wait for "
    "the next scheduled sync."
)
QUEUE_FAILED = "I couldn't queue the sync just now (the database didn't answer); try again soon."


def refreshing_note(who: str | None) -> str:
    """The line that replaces an answer's buttons while it is regenerated; ``who`` is the
    platform's mention of the person who pressed Refresh."""
    return f"Refreshing… (asked by {who})" if who else "Refreshing…"


def queued_text(what: str) -> str:
    return f"Queued a sync of {what}; I'll tell you here when it's done."


def vote_text(vote: Vote, previous: Vote | None) -> str:
    label = "helpful" if vote == "helpful" else "not helpful"
    if previous == vote:
        return f"You've already marked this answer as {label}."
    if previous is not None:
        return f"Changed your vote: this answer is now marked {label}."
    if vote == "helpful":
        return "Thanks, noted that this answer was helpful."
    return "Thanks, noted. Refresh may give a better answer; the team reviews these."


# --- labels on an answer --------------------------------------------------------------------------

UNAVAILABLE_WARNING = f":warning: {UNAVAILABLE_TEXT}"
# The answer's first line says why it is quoted (no model configured, or the model failed).
EXTRACTIVE_NOTE = ":information_source: Quoted from the sources without an AI summary."
NO_SOURCES_NOTE = ":mag: Nothing in the sources this channel can use matched the question."


def answer_buttons(*, votes: bool) -> list[tuple[str, str]]:
    """(action id, label) of the buttons under an answer: the votes (when it can be rated)
    and Refresh."""
    refresh = (ACTION_REFRESH, ":arrows_counterclockwise: Refresh")
    if not votes:
        return [refresh]
    return [
        (ACTION_HELPFUL, ":thumbsup: Helpful"),
        (ACTION_NOT_HELPFUL, ":thumbsdown: Not helpful"),
        refresh,
    ]


# The assistant pane: its status line while working (Slack prefixes the app's name) and the
# heading over the suggested prompts.
SEARCHING_STATUS = "is searching Confluence and Jira…"
PANE_PROMPTS_TITLE = "Questions people ask here"
# Suggested when nothing was asked often enough in the scope and none are configured:
# questions most wikis answer, to show how to ask.
DEFAULT_PROMPTS = (
    "Where is the onboarding guide?",
    "How do I get access to a Confluence space?",
    "What is our release process?",
    "How do I report an incident?",
)
PROMPT_TITLE_LIMIT = 75  # a prompt's button; the whole question is sent when pressed

# The App Home.
HOME_KNOWS = "What kb-bot knows"
HOME_KNOWS_NOTHING = "Nothing synced yet."
HOME_HOW_TO_ASK = (
    "*How to ask:* mention @kb in a channel it is in, send it a direct message, or open its "
    "pane (the AI icon at the top right) beside any channel. Answers cite their sources; "
    "use the thumbs to say whether they helped."
)
HOME_CHANNELS = "Channels where kb-bot answers"
HOME_ADMIN = "For admins"
HOME_SYNC_NOW = "Sync now"


def home_more(hidden: int) -> str:
    return f"…and {hidden} more"


def home_scope_line(source: str, key: str, items: int, synced: str) -> str:
    return f"*{source}* `{key}`: {items} items, last synced {synced}"


def home_health_line(
    source: str, runs: int, failed: int, last_ok: str, last_failure: str, dead: int
) -> str:
    return (
        f"*{source}*: {runs} sync runs in 7 days, {failed} failed (last success {last_ok}, "
        f"last failure {last_failure}); {dead} dead webhook events"
    )


def prompt_title(question: str) -> str:
    if len(question) <= PROMPT_TITLE_LIMIT:
        return question
    return question[: PROMPT_TITLE_LIMIT - 1].rstrip() + "…"


def home_answers_line(served: int, from_cache: int, helpful: int, not_helpful: int) -> str:
    hit_rate = f"{100 * from_cache // served}% cache hit rate" if served else "no answers yet"
    rated = helpful + not_helpful
    ratio = f"{100 * helpful // rated}% helpful" if rated else "no votes yet"
    return (
        f"*Last 7 days:* {served} answers served, {from_cache} from the cache ({hit_rate}). "
        f"Votes: {helpful} helpful, {not_helpful} not helpful ({ratio})."
    )


HOME_LEAST_HELPFUL = "Least helpful answers, last 7 days"
HOME_NO_UNHELPFUL = "No answer was voted Not helpful in the last 7 days."
HOME_QUESTION_UNKNOWN = "(question not recorded)"


def home_unhelpful_line(question: str, helpful: int, not_helpful: int, where: str) -> str:
    """``question`` and ``where`` arrive rendered (escaped; ``where`` maybe a link)."""
    return f"• {question} — {not_helpful} not helpful, {helpful} helpful · {where}"


HOME_IN_A_DM = "in a direct message"
HOME_THREAD = "open the thread"
HOME_NO_THREAD = "thread not recorded"


# Native thumbs (Slack's feedback_buttons): short labels, the icons are Slack's own.
FEEDBACK_LABELS = ("Helpful", "Not helpful")


def warns_unreachable(answer: Answer) -> bool:
    """Whether the answer is headed by :data:`UNAVAILABLE_WARNING` ("press Refresh"): only
    when the model could not be reached and the answer has no words of its own. An operator
    fault or a refusal carries its own sentence, and Refresh would not cure it."""
    return answer.mode == "unavailable" and not answer.text.strip()


def answer_notes(answer: Answer, now: datetime) -> list[str]:
    """The small print under an answer: how it was made, and whether it came from the cache.
    (An ``unavailable`` answer is headed by :data:`UNAVAILABLE_WARNING` instead.)"""
    notes: list[str] = []
    if answer.mode == "extractive":
        notes.append(EXTRACTIVE_NOTE)
    elif answer.mode == "no_sources":
        notes.append(NO_SOURCES_NOTE)
    if answer.cached:
        notes.append(cache_note(answer.sources_checked_at, now))
    return notes


class Markup(Protocol):
    """A platform's inline markup, so the wording below is written once."""

    def text(self, value: str) -> str:
        """Escape plain text for the platform."""
        ...

    def bold(self, value: str) -> str: ...

    def link(self, url: str, label: str) -> str: ...


# --- notices, alerts and sync results -------------------------------------------------------------


def age_phrase(then: datetime | None, now: datetime) -> str:
    if then is None:
        return ""
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    minutes = int((now - then).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} hours ago"
    return f"{hours // 24} days ago"


def cache_note(checked_at: datetime | None, now: datetime) -> str:
    """The line under an answer served from the cache."""
    age = age_phrase(checked_at, now)
    return f"Answered from cache · sources checked {age}" if age else "From cache"


def describe_version(version: str | None) -> str:
    """Confluence versions are numbers; Jira's are ``fields.updated`` timestamps."""
    if not version:
        return "?"
    if version.isdigit():
        return version
    try:
        moment = datetime.fromisoformat(version.replace("Z", "+00:00"))
    except ValueError:
        return version[:40]
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def notice_text(notice: SourceNotice, m: Markup) -> str:
    link = m.link(notice.url, notice.title) if notice.url else m.bold(notice.title)
    if notice.change == "deleted":
        return (
            f":wastebasket: {m.bold('Source deleted:')} {link} no longer exists. "
            "The answer above relied on it and may be out of date."
        )
    versions = ""
    if notice.old_version or notice.new_version:
        versions = (
            f" (version {m.text(describe_version(notice.old_version))} → "
            f"{m.text(describe_version(notice.new_version))})"
        )
    return (
        f":arrows_counterclockwise: {m.bold('Source updated:')} {link} changed{versions}. "
        "The answer above may be out of date; press Refresh for a fresh one."
    )


def ops_text(message: OpsMessage, m: Markup) -> str:
    if isinstance(message, StoreOutage):
        return store_outage_text(message, m)
    run = f" (run {message.run_id})" if message.run_id is not None else ""
    if isinstance(message, OpsAlert):
        verb = "is still failing" if message.ongoing else "failed"
        return (
            f":rotating_light: {m.bold(f'Sync of {message.source} {verb}')}{m.text(run)}: "
            f"{m.text(_clip(message.error, 600))}"
        )
    since = ""
    if message.failing_since is not None:
        since = f" It had been failing since {message.failing_since:%Y-%m-%d %H:%M UTC}."
    return (
        f":white_check_mark: {m.bold(f'Sync of {message.source} has recovered')}{m.text(run)}."
        f"{m.text(since)} The last error was: {m.text(_clip(message.last_error, 300))}"
    )


def store_outage_text(message: StoreOutage, m: Markup) -> str:
    since = f"{message.since:%Y-%m-%d %H:%M:%S} UTC"
    if message.back_after is None:
        return (
            f":rotating_light: {m.bold('The knowledge store (Postgres) is unreachable')} "
            f"since {since}. Questions get an apology with a Refresh button; syncs, webhooks "
            "and notices wait for it. Nothing needs a restart once it is back."
        )
    return (
        f":white_check_mark: {m.bold('The knowledge store (Postgres) is reachable again')} "
        f"after {_duration(message.back_after)} (unreachable since {since}); everything resumed."
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def sync_result_text(result: SyncResult, m: Markup) -> str:
    if not result.reports:
        return "Your sync finished, but no source was synced (nothing configured matched)."
    total = sum(r.seconds for r in result.reports)
    failed = any(r.status not in ("ok",) for r in result.reports)
    head = "Your sync finished with problems" if failed else "Your sync finished"
    lines = [f"{m.bold(head)} in {total:.1f} s:"]
    for r in result.reports:
        lines.append(
            f"• {m.bold(r.source.capitalize())}: {m.text(r.status)} — {r.synced} synced, "
            f"{r.unchanged} unchanged, {r.deleted} deleted, {r.skipped} skipped, "
            f"{r.failed} failed ({r.seconds:.1f} s)"
        )
        for error in r.errors[:5]:
            lines.append(f"    ◦ {m.text(_clip(error, 300))}")
        if len(r.errors) > 5:
            lines.append(f"    ◦ …and {len(r.errors) - 5} more (see the daemon's log)")
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
