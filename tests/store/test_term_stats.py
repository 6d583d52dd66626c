"""Term statistics (BM25's document frequencies) kept by the writes themselves (migration
0009): after any mix of inserts, edits, deletes and concurrent writers they equal a full
recompute over the chunks, and a bulk load that bypassed the triggers is caught and rebuilt.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fakes.embedder import HashingEmbedder

from store import term_stats
from store.artifacts import ArtifactRow, ChunkRow, replace, tombstone
from store.db import Database
from store.schema import bind_embedder
from store.search import refresh_term_stats

EMBEDDER = HashingEmbedder()


@pytest.fixture
def store(db: Database) -> Database:
    bind_embedder(db, EMBEDDER.identity)
    return db


def _page(page: str, *texts: str) -> tuple[ArtifactRow, list[ChunkRow], np.ndarray]:  # type: ignore[type-arg]
    row = ArtifactRow(
        f"confluence:{page}", "confluence", "ENG", f"Page {page}", f"https://w/{page}", "1",
        f"hash-{page}-{hash(texts)}", (), "\n\n".join(texts), None,
    )  # fmt: skip
    chunks = [ChunkRow(i, "", text, len(text.split())) for i, text in enumerate(texts)]
    return row, chunks, EMBEDDER.embed(list(texts), purpose="document")


def _write(db: Database, page: str, *texts: str) -> None:
    with db.connection() as conn:
        replace(conn, *_page(page, *texts))


def _kept(db: Database) -> tuple[dict[str, int], tuple[int, float]]:
    with db.connection() as conn:
        terms = {r["lexeme"]: r["ndoc"] for r in conn.execute("SELECT * FROM term_stats")}
        row = conn.execute("SELECT chunks, avg_length FROM corpus_stats").fetchone()
    corpus = (0, 0.0) if row is None else (int(row["chunks"]), round(float(row["avg_length"]), 9))
    return terms, corpus


def _recomputed(db: Database) -> tuple[dict[str, int], tuple[int, float]]:
    with db.connection() as conn:
        terms = {
            r["word"]: r["ndoc"]
            for r in conn.execute("SELECT * FROM ts_stat('SELECT tsv FROM chunks')")
        }
        row = conn.execute(
            "SELECT count(*) AS n, coalesce(avg(length(tsv)), 1) AS a FROM chunks"
        ).fetchone()
    assert row is not None
    n = int(row["n"])
    return terms, (n, round(float(row["a"]), 9) if n else 0.0)


def test_statistics_follow_inserts_edits_and_deletes_without_any_refresh(store: Database) -> None:
    _write(store, "1", "WireGuard connects Mac laptops.", "Windows uses the VPN profile.")
    _write(store, "2", "WireGuard keys rotate monthly.")
    assert _kept(store)[0]["wireguard"] == 2
    _write(store, "1", "Tailscale connects Mac laptops.")  # an edit drops WireGuard from page 1
    with store.connection() as conn:
        tombstone(conn, "confluence:2")
    terms, corpus = _kept(store)
    assert "wireguard" not in terms
    assert terms["tailscal"] == 1
    assert (terms, corpus) == _recomputed(store)


def test_two_writers_at_once_leave_statistics_equal_to_a_full_recompute(
    store: Database,
) -> None:
    # The daemon's webhook worker and a scheduled sync write pages at the same time; pages
    # share most words, so both transactions touch the same term_stats rows.
    failures: list[BaseException] = []

    def writer(prefix: str) -> None:
        try:
            for i in range(15):
                _write(store, f"{prefix}{i % 5}", f"shared words {i} about {prefix}", "vpn mac")
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    assert _kept(store) == _recomputed(store)
    assert _kept(store)[1][0] == 30  # 3 writers x 5 pages x 2 chunks


def test_refresh_rebuilds_statistics_a_bulk_load_bypassed_and_is_a_no_op_otherwise(
    store: Database,
) -> None:
    _write(store, "1", "WireGuard connects Mac laptops.")
    with store.connection() as conn:
        conn.execute("ALTER TABLE chunks DISABLE TRIGGER USER")
        replace(conn, *_page("2", "WireGuard keys rotate monthly.", "Bulk loaded text."))
        conn.execute("ALTER TABLE chunks ENABLE TRIGGER USER")
    assert _kept(store) != _recomputed(store)
    with store.connection() as conn:
        assert term_stats.refresh(conn) is True
    assert _kept(store) == _recomputed(store)
    with store.connection() as conn:
        assert term_stats.refresh(conn) is False
        refresh_term_stats(conn)  # what the sync engine calls after a run
    assert _kept(store) == _recomputed(store)
