"""A BEIR-layout corpus (``corpus.jsonl``) as a source connector, for ``kb eval``.

Each corpus entry becomes one page (``confluence:<_id>`` in scope ``EVAL``) and goes through
the same conversion-free text path, checksum gate, chunking, embedding and indexing as a
real sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from core.errors import KbError
from sync.source import FetchFailure, ScopeListing, SourceDocument, SourceName

SCOPE = "EVAL"


class CorpusConnector:
    def __init__(self, path: Path) -> None:
        self._docs: dict[str, SourceDocument] = {}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise KbError(f"cannot read the corpus {path}: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                doc_id, text = str(entry["_id"]), str(entry["text"])
            except (ValueError, KeyError, TypeError):
                raise KbError(
                    f"{path}:{number} is not a BEIR corpus line with _id and text"
                ) from None
            artifact_id = f"confluence:{doc_id}"
            self._docs[artifact_id] = SourceDocument(
                artifact_id=artifact_id,
                source="confluence",
                scope_key=SCOPE,
                title=str(entry.get("title") or doc_id),
                url=f"beir://{doc_id}",
                version="1",
                text=text,
            )

    @property
    def source(self) -> SourceName:
        return "confluence"

    def scopes(self) -> tuple[str, ...]:
        return (SCOPE,)

    def changed(
        self, scope_key: str, since: datetime | None
    ) -> Iterator[SourceDocument | FetchFailure]:
        yield from self._docs.values()

    def list_ids(self, scope_key: str) -> ScopeListing:
        return ScopeListing(scope_key, frozenset(self._docs))

    def fetch(self, artifact_id: str) -> SourceDocument | None:
        return self._docs.get(artifact_id)

    def __len__(self) -> int:
        return len(self._docs)
