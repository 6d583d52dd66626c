"""The Postgres answer cache's HNSW path: the scope filter applies inside the index scan, so a
small scope among many units of another is still found, and every dimension gets an index."""

from __future__ import annotations

import numpy as np
from cache_kit import DIM, Store, make_unit, toward

from store.cache import CacheLimits, Hit, PostgresAnswerCache
from store.db import Database
from store.scope import Scope

ENG = Scope.parse("confluence:ENG")
HR = Scope.parse("confluence:HR")


def _noise(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_a_small_scope_among_many_units_of_another_is_found_through_the_index(
    db: Database,
) -> None:
    store = Store(db)
    store.artifact("confluence:1", scope_key="ENG")
    store.artifact("confluence:2", scope_key="HR")
    cache = PostgresAnswerCache(db, limits=CacheLimits(max_units=10_000), exact_scan_limit=0)
    rng = np.random.default_rng(3)
    for i in range(400):
        unit = make_unit(f"engineering question number {i}", scope=ENG)
        cache.put(unit, _noise(rng))
    # Closer to the HR question than any ENG unit is, but in the other scope.
    cache.put(make_unit("how do I see my payslip", scope=ENG), toward(0, 0.99))
    hr_unit = make_unit("where is my payslip", {"confluence:2": ("h1", "1")}, scope=HR)
    cache.put(hr_unit, toward(0, 0.93, away=1))
    found = cache.lookup("where can I find the payslip", HR, toward(0, 0.97, away=2))
    assert isinstance(found, Hit), found
    assert found.unit.unit_id == hr_unit.unit_id
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND indexname = %s",
            (f"answer_units_hnsw_{DIM}",),
        ).fetchall()
    assert len(rows) == 1 and "hnsw" in rows[0]["indexdef"]


def test_serving_a_cached_answer_leaves_its_row_and_vector_index_unwritten(db: Database) -> None:
    # A hit that rewrote the unit's row would insert a new version into the HNSW graph: a
    # graph insertion per served answer, and a graph growing with dead versions.
    store = Store(db)
    store.artifact("confluence:1", scope_key="ENG")
    cache = PostgresAnswerCache(db, exact_scan_limit=0)
    unit = make_unit("how do I reset my VPN token", scope=ENG)
    cache.put(unit, toward(0, 1.0))
    with db.connection() as conn:
        before = conn.execute("SELECT xmin::text AS v FROM answer_units").fetchone()
    for n in range(3):
        found = cache.lookup("how do I reset my VPN token", ENG, toward(0, 1.0))
        assert isinstance(found, Hit) and found.unit.served_count == n + 1
    found = cache.lookup("how can I reset the VPN token", ENG, toward(0, 0.97, away=1))
    assert isinstance(found, Hit) and found.unit.served_count == 4
    with db.connection() as conn:
        after = conn.execute("SELECT xmin::text AS v FROM answer_units").fetchone()
    assert before == after
    assert cache.stats()["hits"] == 4
