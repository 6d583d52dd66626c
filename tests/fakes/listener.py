"""A ChangeListener that records what the sync engine reported, for tests."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingListener:
    changed: list[tuple[str, str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def source_changed(self, artifact_id: str, *, content_hash: str, version: str) -> None:
        self.changed.append((artifact_id, content_hash, version))

    def source_deleted(self, artifact_id: str) -> None:
        self.deleted.append(artifact_id)
