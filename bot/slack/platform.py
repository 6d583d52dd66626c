"""Slack's delivery side of the chat-platform seam: sending outbox messages through the Web API.

Every message the outbox posts carries Slack message metadata ``kb_outbox`` with its outbox
id, so after a crash or a timeout the deliverer can ask Slack whether it arrived
(``conversations.replies`` / ``conversations.history``) instead of guessing.
"""

from __future__ import annotations

import logging
import socket
import urllib.error
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.platform import (
    DeliveryFailed,
    OpsAlert,
    OpsMessage,
    OpsRecovery,
    Outgoing,
    SourceNotice,
    SyncResult,
)
from bot.slack.blocks import SlackMarkup, render_notice
from bot.wording import ops_text, sync_result_text
from core.identities import Secret

log = logging.getLogger(__name__)

MARKER_EVENT = "kb_outbox"
DEFAULT_RETRY_AFTER = 30.0
# Slack answers these when retrying cannot help: the channel or thread is gone or closed to us.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "thread_not_found",
        "message_not_found",
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "user_not_in_channel",
        "cannot_dm_bot",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "account_inactive",
    }
)
_HISTORY_PAGES = 10


def build_delivery_client(token: Secret, api_url: str) -> WebClient:
    """A Web API client for the outbox: no automatic retries, because a retry after a reset
    connection may post twice; the deliverer retries itself, knowing what it sent."""
    return WebClient(token=token.reveal(), base_url=api_url, timeout=15, retry_handlers=[])


class SlackPlatform:
    """:class:`bot.platform.ChatPlatform` for Slack."""

    def __init__(self, client: WebClient, *, webhook_timeout: float = 15.0) -> None:
        self._client = client
        self._webhook_timeout = webhook_timeout
        self._markup = SlackMarkup()

    @property
    def name(self) -> str:
        return "slack"

    def send_notice(self, notice: SourceNotice, *, message_id: int) -> None:
        blocks, text = render_notice(notice)
        self._call(
            "chat.postMessage",
            lambda: self._client.chat_postMessage(
                channel=notice.channel,
                thread_ts=notice.thread,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                metadata=_marker(message_id),
            ),
        )

    def send_ops(self, channel: str, message: OpsMessage, *, message_id: int) -> None:
        text = ops_text(message, self._markup)
        self._call(
            "chat.postMessage",
            lambda: self._client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
                unfurl_links=False,
                metadata=_marker(message_id),
            ),
        )

    def send_sync_result(self, result: SyncResult, *, message_id: int) -> None:
        text = sync_result_text(result, self._markup)
        asker = result.requested_by
        if asker.response_url:
            try:
                self._respond(asker.response_url, text)
                return
            except DeliveryFailed as exc:
                if not exc.permanent:
                    raise
                # response_url lives 30 minutes and 5 uses; a long sync outlives it.
                log.info("response_url refused the sync result (%s); posting ephemerally", exc)
        self._call(
            "chat.postEphemeral",
            lambda: self._client.chat_postEphemeral(
                channel=asker.channel, user=asker.user, text=text
            ),
        )

    def was_delivered(
        self, message: Outgoing, *, channel: str | None, message_id: int, since: datetime
    ) -> bool | None:
        oldest = f"{since.timestamp() - 120:.6f}"  # two minutes for clock skew
        if isinstance(message, SourceNotice):
            messages = self._pages(
                "conversations.replies",
                lambda cursor: self._client.conversations_replies(
                    channel=message.channel,
                    ts=message.thread,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                ),
            )
        elif isinstance(message, OpsAlert | OpsRecovery) and channel:
            messages = self._pages(
                "conversations.history",
                lambda cursor: self._client.conversations_history(
                    channel=channel,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                ),
            )
        else:
            return None  # ephemeral replies leave no trace we can look up
        wanted = str(message_id)
        return any(
            (m.get("metadata") or {}).get("event_type") == MARKER_EVENT
            and str(((m.get("metadata") or {}).get("event_payload") or {}).get("message_id"))
            == wanted
            for m in messages
        )

    # --- plumbing -----------------------------------------------------------------------------

    def _pages(self, method: str, fetch: Callable[[str | None], Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        for _ in range(_HISTORY_PAGES):
            response = self._call(method, lambda page=cursor: fetch(page))  # type: ignore[misc]
            yield from response.get("messages") or []
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return

    def _call(self, method: str, send: Callable[[], Any]) -> Any:
        try:
            return send()
        except SlackApiError as exc:
            raise _api_failure(method, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise _network_failure(method, exc) from None

    def _respond(self, url: str, text: str) -> None:
        webhook = WebhookClient(url, timeout=int(self._webhook_timeout), retry_handlers=[])
        try:
            response = webhook.send(text=text, response_type="ephemeral", replace_original=False)
        except (urllib.error.URLError, OSError) as exc:
            raise _network_failure("response_url", exc) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 429:
            raise DeliveryFailed(
                "response_url rate limited (HTTP 429)",
                retry_after=_retry_after(response.headers),
                status=status,
            )
        if status >= 500:
            raise DeliveryFailed(f"response_url answered HTTP {status}", ambiguous=True)
        raise DeliveryFailed(
            f"response_url refused it (HTTP {status}, {response.body[:60]!r})",
            permanent=True,
            status=status,
        )


def _marker(message_id: int) -> dict[str, Any]:
    return {"event_type": MARKER_EVENT, "event_payload": {"message_id": str(message_id)}}


def _retry_after(headers: Any) -> float:
    try:
        items = dict(headers or {}).items()
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    for key, value in items:
        if str(key).lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(1.0, float(raw))
            except (TypeError, ValueError):
                return DEFAULT_RETRY_AFTER
    return DEFAULT_RETRY_AFTER


def _api_failure(method: str, exc: SlackApiError) -> DeliveryFailed:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = str(data.get("error")) if isinstance(data, dict) else "unknown_error"
    if status == 429 or error == "ratelimited":
        wait = _retry_after(getattr(response, "headers", None))
        return DeliveryFailed(
            f"Slack {method} rate limited; retry in {wait:.0f} s", retry_after=wait, status=429
        )
    if status >= 500:
        # Slack may have posted before failing; let the deliverer check before resending.
        return DeliveryFailed(f"Slack {method} answered HTTP {status}", ambiguous=True)
    return DeliveryFailed(
        f"Slack {method} failed: {error}", permanent=error in PERMANENT_ERRORS, status=status
    )


def _network_failure(method: str, exc: BaseException) -> DeliveryFailed:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError | socket.gaierror):
        # Nothing reached Slack: safe to send again.
        return DeliveryFailed(f"Slack {method} unreachable ({type(reason).__name__})")
    return DeliveryFailed(
        f"Slack {method}: outcome unknown ({type(reason).__name__})", ambiguous=True
    )
