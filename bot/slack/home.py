"""Slack's App Home: the :class:`store.app_home.Home` as a ``home`` view for ``views.publish``
(docs/ARCHITECTURE.md, "Slack AI surface").

Slack caps a home view at 100 blocks and a section's text at 3000 characters, whatever the
workspace's size. Each list therefore shows a bounded number of lines, packed into as few
sections as fit, and ends with "…and N more" when it was cut; :func:`fit` cuts the whole view
as a last resort. Text from people (questions) and from the store is escaped and its URLs
defanged: the only live links are the thread permalinks built here from a channel id and a
message ts under the workspace URL Slack's ``auth.test`` reported. A Sync now button carries
the source and the person's DM channel (where the result of the sync is reported), and ends
in :meth:`bot.conversation.Conversation.request_sync`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slack_sdk import WebClient

from bot import wording
from bot.markdown import defang_urls
from bot.slack.blocks import SECTION_LIMIT, escape, link
from store.answer_stats import RatedAnswer
from store.app_home import AdminFigures, Home

log = logging.getLogger(__name__)

Block = dict[str, Any]
VIEW_BLOCK_LIMIT = 100
ACTION_HOME_SYNC = "kb_home_sync"
ACTIONS_ELEMENT_LIMIT = 25  # an actions block holds 25 elements
KNOWLEDGE_SHOWN = 40
HEALTH_SHOWN = 20
SYNC_BUTTONS_SHOWN = 50
NAME_LIMIT = 100  # a source or scope key as shown
QUESTION_LIMIT = 150  # a question as shown among the least helpful answers

_TEAM_URL = re.compile(r"^https://[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)*\.slack\.com/$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,20}$")
_TS = re.compile(r"^\d{9,11}\.\d{6}$")


def render_home(home: Home, dm_channel: str, *, team_url: str | None = None) -> dict[str, Any]:
    """The view for one person; ``team_url`` (``auth.test``'s ``url``) makes thread links."""
    knowledge = [
        wording.home_scope_line(_name(r.source), _name(r.scope_key), r.items, _when(r.last_synced))
        for r in home.knowledge
    ]
    blocks: list[Block] = [_header(wording.HOME_KNOWS)]
    blocks += _lines(knowledge, KNOWLEDGE_SHOWN) or [_section(wording.HOME_KNOWS_NOTHING)]
    blocks.append(_section(wording.HOME_HOW_TO_ASK))
    if home.channels:
        blocks.append(_header(wording.HOME_CHANNELS))
        blocks += _pack([" ".join(f"<#{c}>" for c in home.channels if _CHANNEL.match(c))])
    if home.admin is not None:
        blocks += _admin(home.admin, dm_channel, team_url)
    return {"type": "home", "blocks": fit(blocks)}


def _admin(admin: AdminFigures, dm_channel: str, team_url: str | None) -> list[Block]:
    served = admin.served
    blocks: list[Block] = [{"type": "divider"}, _header(wording.HOME_ADMIN)]
    blocks.append(
        _section(
            wording.home_answers_line(
                served.served, served.from_cache, admin.helpful, admin.not_helpful
            )
        )
    )
    health = [
        wording.home_health_line(
            _name(h.source),
            h.runs,
            h.failed,
            _when(h.last_ok),
            _when(h.last_failure),
            h.dead_webhooks,
        )
        for h in admin.sources
    ]
    blocks += _lines(health, HEALTH_SHOWN)
    blocks.append(_header(wording.HOME_LEAST_HELPFUL))
    worst = [_unhelpful_line(answer, team_url) for answer in admin.least_helpful]
    hidden = max(admin.least_helpful_total - len(worst), 0)
    if hidden:
        worst.append(wording.home_more(hidden))
    blocks += _pack(worst) or [_section(wording.HOME_NO_UNHELPFUL)]
    buttons = [_sync_button(name, label, dm_channel) for name, label in admin.sync_sources]
    shown = buttons[:SYNC_BUTTONS_SHOWN]
    for start in range(0, len(shown), ACTIONS_ELEMENT_LIMIT):
        blocks.append({"type": "actions", "elements": shown[start : start + ACTIONS_ELEMENT_LIMIT]})
    if len(buttons) > len(shown):
        more = wording.home_more(len(buttons) - len(shown))
        blocks.append({"type": "context", "elements": [_mrkdwn(more)]})
    return blocks


def _unhelpful_line(answer: RatedAnswer, team_url: str | None) -> str:
    question = wording.HOME_QUESTION_UNKNOWN
    if answer.question:
        question = "_" + _plain(answer.question, QUESTION_LIMIT) + "_"
    where = wording.HOME_NO_THREAD
    if answer.channel and answer.channel.startswith("D"):
        where = wording.HOME_IN_A_DM  # another person's DM: a link would not open for admins
    elif answer.channel and answer.thread:
        url = permalink(team_url, answer.channel, answer.thread)
        if url is not None:
            where = link(url, wording.HOME_THREAD)
        elif _CHANNEL.match(answer.channel):
            where = f"<#{answer.channel}>"
    return wording.home_unhelpful_line(question, answer.helpful, answer.not_helpful, where)


class WorkspaceUrl:
    """The workspace's URL (``https://<team>.slack.com/``) from ``auth.test``, asked once: Bolt's
    single-workspace authorisation keeps the team id but not the URL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._url: str | None = None

    def get(self, client: WebClient) -> str | None:
        with self._lock:
            if self._url is None:
                try:
                    self._url = str(client.auth_test().get("url") or "") or None
                except Exception as exc:  # the home still renders, with channel names
                    log.info("auth.test for the workspace URL failed: %s", exc)
            return self._url


def permalink(team_url: str | None, channel: str, ts: str) -> str | None:
    """Slack's permalink to a message (the thread's root), built only from well-formed ids."""
    if not team_url or not _TEAM_URL.match(team_url):
        return None
    if not _CHANNEL.match(channel) or not _TS.match(ts):
        return None
    return f"{team_url}archives/{channel}/p{ts.replace('.', '')}"


def fit(blocks: list[Block], limit: int = VIEW_BLOCK_LIMIT) -> list[Block]:
    """At most ``limit`` blocks; the last one then says how many were left out."""
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    hidden = len(blocks) - len(kept)
    return [*kept, {"type": "context", "elements": [_mrkdwn(wording.home_more(hidden))]}]


def _lines(lines: Sequence[str], shown: int) -> list[Block]:
    """The first ``shown`` lines, then "…and N more", in as few sections as fit."""
    kept = list(lines[:shown])
    if len(lines) > shown:
        kept.append(wording.home_more(len(lines) - shown))
    return _pack(kept)


def _pack(lines: Sequence[str]) -> list[Block]:
    """Lines joined into sections of at most SECTION_LIMIT characters (lines are short)."""
    sections: list[Block] = []
    current = ""
    for line in lines:
        if current and len(current) + 1 + len(line) > SECTION_LIMIT:
            sections.append(_section(current))
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        sections.append(_section(current))
    return sections


def read_sync_button(value: object) -> tuple[str, str] | None:
    """(source, DM channel) from a Sync now button's value."""
    try:
        data = json.loads(str(value))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    source, channel = data.get("s"), data.get("c")
    if isinstance(source, str) and isinstance(channel, str) and source:
        return source, channel
    return None


def _sync_button(name: str, label: str, dm_channel: str) -> Block:
    return {
        "type": "button",
        "action_id": f"{ACTION_HOME_SYNC}:{name}",
        "text": {"type": "plain_text", "text": f"{wording.HOME_SYNC_NOW}: {label}"[:75]},
        "value": json.dumps({"s": name, "c": dm_channel}),
    }


def _plain(text: str, limit: int) -> str:
    """Someone's words, one line, cut to ``limit``, never a link or a mention."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return escape(defang_urls(flat))


def _name(text: str) -> str:
    return _plain(text, NAME_LIMIT)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    stamp = int(moment.timestamp())
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{fallback}>"


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text[:SECTION_LIMIT])}


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}
