"""The seam between the sync engine and the systems it reads: documents and connectors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

SourceName = Literal["confluence", "jira"]


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
    """What the sync engine needs from Confluence or Jira."""

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


class OutsideSelection(Exception):
    """A fetched artifact lies outside the configured selection (spaces, projects, JQL).

    Not a failure: a webhook for it is recorded as ignored, and the artifact is removed if it
    was indexed before, exactly as the next full sync would remove it.
    """
