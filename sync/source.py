"""The seam between the sync engine and the systems it reads: documents, connectors, and the
spec each source registers (docs/ARCHITECTURE.md, "Sources")."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sync.webhook_events import WebhookChange

SourceName = str  # a registered source name (sync/registry.py)


@dataclass(frozen=True)
class SourceDocument:
    """One page or issue as fetched, converted to normalised text.

    ``artifact_id`` is ``confluence:<page id>`` or ``jira:<ISSUE-KEY>``; ``version`` is
    Confluence ``version.number`` or Jira ``fields.updated``, as text.
    """

    artifact_id: str
    source: SourceName
    scope_key: str
    title: str
    url: str
    version: str
    text: str
    updated_at: datetime | None = None
    labels: tuple[str, ...] = ()
    restricted: bool = False


@dataclass(frozen=True)
class FetchFailure:
    """An item a connector could list but not fetch or convert; the run goes on without it."""

    artifact_id: str
    error: str


@dataclass(frozen=True)
class ScopeListing:
    """Every live artifact id of one scope, for the nightly reconciliation."""

    scope_key: str
    artifact_ids: frozenset[str] = field(default_factory=frozenset)


class SourceConnector(Protocol):
    """What the sync engine needs from a source (Confluence, Jira, ...)."""

    @property
    def source(self) -> SourceName: ...

    def scopes(self) -> tuple[str, ...]:
        """The configured space keys or project keys (``*``: the whole source, for JIRA_JQL)."""
        ...

    def changed(
        self, scope_key: str, since: datetime | None
    ) -> Iterator[SourceDocument | FetchFailure]:
        """Documents of a scope modified at or after ``since`` (all when None).

        With ``since`` set, items come oldest-modified first, so the engine can advance its
        cursor item by item. The connector applies its own overlap window to ``since``.
        """
        ...

    def list_ids(self, scope_key: str) -> ScopeListing:
        """Every live (not trashed, not deleted) artifact id of a scope."""
        ...

    def fetch(self, artifact_id: str) -> SourceDocument | None:
        """One artifact by id, or None when it no longer exists (deleted, trashed, purged).

        Raises :class:`OutsideSelection` when it exists but a scheduled sync would not index
        it (another space or project, or not matched by the JQL).
        """
        ...


# (event named by the route's last segment or None, the JSON body) -> change or None (ignored)
WebhookParser = Callable[[str | None, Mapping[str, Any]], WebhookChange | None]
# the values of the declared keys that are set -> a connector, or None when not configured
ConnectorFactory = Callable[[Mapping[str, str]], SourceConnector | None]
# the same values -> None, or SettingsError naming the first bad key (run once, at start)
SettingsCheck = Callable[[Mapping[str, str]], None]


def _no_check(values: Mapping[str, str]) -> None:
    return None


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class SourceSpec:
    """One source. ``scope_noun`` is what a scope key is (``SPACE``, ``PROJECT``), for help
    texts; ``enabled_by`` is the key whose presence means the operator configured it."""

    name: str
    scope_noun: str
    settings_keys: tuple[str, ...]
    enabled_by: str
    connect: ConnectorFactory
    parse_webhook: WebhookParser
    event_field: str = "event"  # where a body names its event when the route does not
    label: str = ""  # how people name it ("Confluence"); defaults to the name, capitalised
    keys_setting: str | None = None  # the comma-separated scope keys it syncs (spaces, projects)
    query_setting: str | None = None  # a query that selects instead of keys (JIRA_JQL)
    check: SettingsCheck = _no_check  # validates its keys' values when settings are loaded

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name == "all":
            raise ValueError(f"{self.name!r} cannot name a source")
        if self.enabled_by not in self.settings_keys:
            raise ValueError(f"{self.name}: enabled_by must be one of its settings keys")

    def values(self, env: Mapping[str, str]) -> dict[str, str]:
        """The declared keys that are set (non-blank) in ``env``."""
        return {k: env[k] for k in self.settings_keys if env.get(k, "").strip()}

    def configured(self, values: Mapping[str, str]) -> bool:
        return self.enabled_by in values

    @property
    def display_name(self) -> str:
        return self.label or self.name.capitalize()

    def selected_keys(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """The scope keys the operator configured for it, upper-cased, in order."""
        raw = values.get(self.keys_setting, "") if self.keys_setting else ""
        return tuple(k.strip().upper() for k in raw.split(",") if k.strip())

    def selecting_query(self, values: Mapping[str, str]) -> str | None:
        """The setting whose query selects what it syncs, when one is set."""
        if self.query_setting and values.get(self.query_setting, "").strip():
            return self.query_setting
        return None

    def scope_example(self) -> str:
        return f"{self.name}:{self.scope_noun}"

    def event_of(self, path_event: str | None, payload: Mapping[str, Any]) -> str:
        named = path_event or payload.get(self.event_field)
        return named if isinstance(named, str) else ""


class OutsideSelection(Exception):
    """A fetched artifact lies outside the configured selection (spaces, projects, JQL).

    Not a failure: a webhook for it is recorded as ignored, and the artifact is removed if it
    was indexed before, exactly as the next full sync would remove it.
    """
