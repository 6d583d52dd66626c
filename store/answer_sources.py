"""Named queries the answer flow reads about the artifacts an answer cites."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from store.db import Connection

SYNCED_AT = "SELECT artifact_id, synced_at FROM artifacts WHERE artifact_id = ANY(%s)"


def synced_at(conn: Connection, artifact_ids: Sequence[str]) -> dict[str, datetime]:
    """When each cited artifact was last synced (what "sources checked N ago" reports)."""
    rows = conn.execute(SYNCED_AT, (list(artifact_ids),)).fetchall()
    return {r["artifact_id"]: r["synced_at"] for r in rows}
