"""Slack's App Home: the :class:`store.app_home.Home` as a ``home`` view for ``views.publish``.

Slack caps a home view at 100 blocks; whatever does not fit is cut and ends with "…and N
more". A Sync now button carries the source and the person's DM channel (where the result of
the sync is reported), and ends in :meth:`bot.conversation.Conversation.request_sync`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot import wording
from bot.slack.blocks import escape
from store.app_home import Home

Block = dict[str, Any]
VIEW_BLOCK_LIMIT = 100
ACTION_HOME_SYNC = "kb_home_sync"


def render_home(home: Home, dm_channel: str) -> dict[str, Any]:
    blocks: list[Block] = [_header(wording.HOME_KNOWS)]
    lines = [
        wording.home_scope_line(
            escape(r.source), escape(r.scope_key), r.items, _when(r.last_synced)
        )
        for r in home.knowledge
    ] or [wording.HOME_KNOWS_NOTHING]
    rows: list[Block] = [_section(line) for line in lines]
    rows.append(_section(wording.HOME_HOW_TO_ASK))
    if home.channels:
        rows.append(_header(wording.HOME_CHANNELS))
        rows.append(_section(" ".join(f"<#{escape(c)}>" for c in home.channels)))
    admin = home.admin
    if admin is not None:
        rows.append({"type": "divider"})
        rows.append(_header(wording.HOME_ADMIN))
        rows.append(
            _section(
                wording.home_answers_line(
                    admin.answers_posted,
                    admin.followups_answered,
                    admin.helpful,
                    admin.not_helpful,
                )
            )
        )
        for health in admin.sources:
            line = wording.home_health_line(
                escape(health.source),
                health.runs,
                health.failed,
                _when(health.last_ok),
                _when(health.last_failure),
                health.dead_webhooks,
            )
            rows.append(_section(line))
        buttons = [_sync_button(name, label, dm_channel) for name, label in admin.sync_sources]
        for start in range(0, len(buttons), 25):  # an actions block holds 25 elements
            rows.append({"type": "actions", "elements": buttons[start : start + 25]})
    return {"type": "home", "blocks": fit(blocks + rows)}


def fit(blocks: list[Block], limit: int = VIEW_BLOCK_LIMIT) -> list[Block]:
    """At most ``limit`` blocks; the last one then says how many were left out."""
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    hidden = len(blocks) - len(kept)
    return [*kept, {"type": "context", "elements": [_mrkdwn(wording.home_more(hidden))]}]


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


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    stamp = int(moment.timestamp())
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{fallback}>"


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text[:3000])}


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}
