"""The Postgres answer cache's HNSW path: the scope filter applies inside the index scan, so a
small scope among many units of another is still found, and every dimension gets an index."""

from __future__ import annotations

import numpy as np
import pytest
from cache_kit import DIM, Store, make_unit, toward

from store.cache import CacheLimits, Hit, PostgresAnswerCache
from store.db import Database
from store.scope import Scope

ENG = Scope.parse("confluence:ENG")
HR = Scope.parse("confluence:HR")


def _index_definition(db: Database, name: str) -> str | None:
    with db.connection() as conn:
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND indexname = %s",
            (name,),
        ).fetchone()
    return None if row is None else str(row["indexdef"])


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
    definition = _index_definition(db, f"answer_units_halfvec_{DIM}")
    assert definition is not None and "hnsw" in definition


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


def test_an_embedder_of_3072_dimensions_is_searched_through_an_index(db: Database) -> None:
    # OpenAI's text-embedding-3-large: past the 2,000 dimensions pgvector indexes at full
    # precision, within the 4,000 it indexes at half.
    wide = 3072
    store = Store(db)
    store.artifact("confluence:1", scope_key="ENG")
    cache = PostgresAnswerCache(db, exact_scan_limit=0)
    rng = np.random.default_rng(5)

    def unit_vector(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v)).astype(np.float32)

    for i in range(30):
        cache.put(
            make_unit(f"engineering question {i}", scope=ENG), unit_vector(rng.normal(size=wide))
        )
    asked = unit_vector(rng.normal(size=wide))
    unit = make_unit("how do I rotate the deploy key", scope=ENG)
    cache.put(unit, asked)
    paraphrase = unit_vector(asked + 0.2 * unit_vector(rng.normal(size=wide)))
    found = cache.lookup("how can I rotate the deploy key", ENG, paraphrase)
    assert isinstance(found, Hit), found
    assert found.unit.unit_id == unit.unit_id
    assert found.similarity == pytest.approx(float(asked @ paraphrase), abs=1e-5)
    definition = _index_definition(db, f"answer_units_halfvec_{wide}")
    assert definition is not None and "halfvec_cosine_ops" in definition


def test_vectors_too_wide_for_any_index_are_searched_exactly_and_the_log_says_why(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    wide = 4096  # past pgvector's 4,000-dimension HNSW limit
    store = Store(db)
    store.artifact("confluence:1", scope_key="ENG")
    cache = PostgresAnswerCache(db, exact_scan_limit=0)
    asked = np.zeros(wide, dtype=np.float32)
    asked[0] = 1.0
    unit = make_unit("how do I rotate the deploy key", scope=ENG)
    cache.put(unit, asked)
    paraphrase = asked.copy()
    paraphrase[1] = 0.2
    with caplog.at_level("WARNING", logger="store.cache"):
        for _ in range(2):
            found = cache.lookup("how can I rotate the deploy key", ENG, paraphrase)
            assert isinstance(found, Hit) and found.unit.unit_id == unit.unit_id
    warnings = [
        r.getMessage() for r in caplog.records if "cannot have an HNSW index" in r.getMessage()
    ]
    assert len(warnings) == 1 and "4096-dimension" in warnings[0]
    assert _index_definition(db, f"answer_units_halfvec_{wide}") is None
