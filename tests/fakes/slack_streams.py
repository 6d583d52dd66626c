"""The fake Slack Web API's streaming methods: ``chat.startStream``, ``chat.appendStream`` and
``chat.stopStream``, as Slack documents them (a stream is a reply in a thread, needs its
recipient in a channel, takes markdown text until it is stopped; ``stopStream`` may add blocks
at the bottom), and what tests read back: each text a stream showed, in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakes.slack_api import FakeSlack

BOT_ID = "BKBBOT"


def answer(slack: FakeSlack, method: str, args: dict[str, Any]) -> dict[str, Any]:
    """One call of a streaming method (under the fake's lock)."""
    channel = str(args.get("channel") or "")
    text = str(args.get("markdown_text") or "")
    if method == "chat.startStream":
        if not slack.streaming:
            return {"ok": False, "error": "not_allowed"}
        if not args.get("thread_ts"):
            return {"ok": False, "error": "invalid_thread_ts"}
        if channel[:1] in ("C", "G") and not (
            args.get("recipient_user_id") and args.get("recipient_team_id")
        ):
            return {"ok": False, "error": "invalid_arguments"}
        ts = slack._next_ts(channel)
        message = {
            "type": "message",
            "ts": ts,
            "user": slack.bot_user,
            "bot_id": BOT_ID,
            "text": text,
            "blocks": [],
            "thread_ts": args["thread_ts"],
            "streaming": True,
        }
        slack.messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": ts}
    found = [m for m in slack.messages.get(channel, []) if m["ts"] == args.get("ts")]
    if not found:
        return {"ok": False, "error": "message_not_found"}
    message = found[0]
    if not message.get("streaming"):
        return {"ok": False, "error": "message_not_in_streaming_state"}
    message["text"] += text
    if method == "chat.stopStream":
        message["streaming"] = False
        message["blocks"] = [*message["blocks"], *(args.get("blocks") or [])]
    return {"ok": True, "channel": channel, "ts": message["ts"]}


def streamed_text(slack: FakeSlack, channel: str, ts: str) -> list[str]:
    """Each text the stream ``ts`` showed, in order: its start, every append and stop."""
    thread = slack.message(channel, ts).get("thread_ts")
    with slack._lock:
        return [
            str(c.args.get("markdown_text") or "")
            for c in slack.calls
            if c.status == 200
            and c.args.get("channel") == channel
            and (
                (c.method == "chat.startStream" and c.args.get("thread_ts") == thread)
                or (c.method in ("chat.appendStream", "chat.stopStream") and c.args.get("ts") == ts)
            )
        ]
