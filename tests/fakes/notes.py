"""A third source, for tests: plain-text notes in folders, as a team might keep a wiki in git.

It is what adding a source to kb-bot takes: one module with a connector, a webhook parser and
a :class:`~sync.source.SourceSpec`, registered with one line
(``BUILT_IN.with_source(NOTES)``). ``NOTES_DIR/<SCOPE>/<name>.txt`` is the note
``notes:<SCOPE>/<name>``; its first line is the title, the rest the body.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync.source import FetchFailure, ScopeListing, SourceDocument, SourceSpec
from sync.webhook_events import WebhookChange


class NotesConnector:
    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def source(self) -> str:
        return "notes"

    def scopes(self) -> tuple[str, ...]:
        return tuple(sorted(p.name for p in self._root.iterdir() if p.is_dir()))

    def changed(
        self, scope_key: str, since: datetime | None
    ) -> Iterator[SourceDocument | FetchFailure]:
        docs = [self._read(path) for path in sorted((self._root / scope_key).glob("*.txt"))]
        docs.sort(key=lambda d: d.updated_at or datetime.min.replace(tzinfo=UTC))
        yield from (d for d in docs if since is None or (d.updated_at and d.updated_at >= since))

    def list_ids(self, scope_key: str) -> ScopeListing:
        ids = frozenset(self._id(p) for p in (self._root / scope_key).glob("*.txt"))
        return ScopeListing(scope_key, ids)

    def fetch(self, artifact_id: str) -> SourceDocument | None:
        path = self._root / (artifact_id.removeprefix("notes:") + ".txt")
        return self._read(path) if path.is_file() else None

    def _id(self, path: Path) -> str:
        return f"notes:{path.parent.name}/{path.stem}"

    def _read(self, path: Path) -> SourceDocument:
        title, _, body = path.read_text(encoding="utf-8").partition("\n")
        stat = path.stat()
        return SourceDocument(
            artifact_id=self._id(path),
            source="notes",
            scope_key=path.parent.name,
            title=title.strip(),
            url=f"https://notes.example/{path.parent.name}/{path.stem}",
            version=str(stat.st_mtime_ns),
            text=body,
            updated_at=datetime.fromtimestamp(stat.st_mtime, UTC),
        )


def connect_notes(values: Mapping[str, str]) -> NotesConnector | None:
    root = values.get("NOTES_DIR")
    return NotesConnector(Path(root)) if root else None


def parse_notes_webhook(path_event: str | None, body: Mapping[str, Any]) -> WebhookChange | None:
    note = body.get("note")
    if not isinstance(note, str) or "/" not in note:
        return None
    kind = "deleted" if path_event == "note_deleted" else "changed"
    return WebhookChange(f"notes:{note}", kind, path_event or "note_saved")


NOTES = SourceSpec(
    name="notes",
    scope_noun="FOLDER",
    settings_keys=("NOTES_DIR",),
    enabled_by="NOTES_DIR",
    connect=connect_notes,
    parse_webhook=parse_notes_webhook,
)
