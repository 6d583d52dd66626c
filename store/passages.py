"""What retrieval returns: passages of artifacts, best first, ready to quote and cite."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk (or several adjacent chunks of one artifact, joined)."""

    artifact_id: str
    title: str
    url: str
    heading: str
    text: str
    chunk_ids: tuple[int, ...]
    score: float
    content_hash: str
    version: str
    synced_at: datetime | None = None
