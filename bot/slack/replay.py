"""The key a Slack delivery is answered once by.

A signed request stays valid for the 5-minute signature window, so whoever captured one can
replay it; Slack itself redelivers events it thinks we missed. Events carry an ``event_id``;
slash commands and interactive payloads carry a ``trigger_id``, unique per invocation. A body
with neither (an unusual command or payload) is keyed by a hash of its signed bytes, which is
what a replay repeats exactly. Other requests (URL verification, SSL checks) are not keyed.
"""

from __future__ import annotations

import hashlib
from typing import Any

# The interactive payload types a person's click or submission arrives as.
_INTERACTIVE = {
    "block_actions",
    "interactive_message",
    "message_action",
    "shortcut",
    "view_submission",
    "view_closed",
    "block_suggestion",
}


def delivery_key(body: dict[str, Any], raw_body: str) -> str | None:
    """``event_id``, ``trigger:<id>`` or ``body:<sha256>``; None for what is never deduplicated."""
    if body.get("type") == "event_callback":
        event_id = body.get("event_id")
        return event_id if isinstance(event_id, str) and event_id else None
    if "command" not in body and body.get("type") not in _INTERACTIVE:
        return None
    trigger = body.get("trigger_id")
    if isinstance(trigger, str) and trigger:
        return f"trigger:{trigger}"
    return "body:" + hashlib.sha256(raw_body.encode()).hexdigest()
