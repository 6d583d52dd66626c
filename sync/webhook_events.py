"""What a Confluence or Jira webhook delivery means for the index, independent of its wire shape.

The parsers live beside their REST clients (:func:`sync.confluence.parse_confluence_webhook`,
:func:`sync.jira.parse_jira_webhook`); the listener and the engine only ever see this type.
Webhook bodies are partial or stale, so a change is a prompt to fetch the artifact again, never
content to index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChangeKind = Literal["changed", "deleted"]


@dataclass(frozen=True)
class WebhookChange:
    """One artifact a delivery says has changed or gone.

    ``event`` is the normalised event name (``page_trashed``, ``jira:issue_updated``, ...);
    ``version`` is the source version the body claims (Confluence ``version.number``, Jira
    ``fields.updated``) when it carries one, for logging and de-duplication only.
    """

    artifact_id: str
    kind: ChangeKind
    event: str
    version: str | None = None
