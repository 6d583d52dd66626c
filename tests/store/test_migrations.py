from __future__ import annotations

import threading

import psycopg
import pytest

from core.errors import EmbedderMismatch, MigrationError
from store.cache import PostgresAnswerCache
from store.db import Database
from store.migrate import applied, available, migrate
from store.schema import EmbedderIdentity, bind_embedder, bound_embedder


def _migrate_up_to(db: Database, name: str) -> None:
    """Apply the migrations before the one called ``name``."""
    number = next(m.number for m in available() if m.name == name)
    migrate(db, upto=number - 1)


def _tables(db: Database) -> set[str]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (db.schema,),
        ).fetchall()
    return {r["table_name"] for r in rows}


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    numbers = [m.number for m in available()]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("migration", available(), ids=lambda m: f"{m.number:04d}_{m.name}")
def test_each_migration_applies_on_top_of_the_previous_ones(
    fresh_schema: Database, migration: object
) -> None:
    number = migration.number  # type: ignore[attr-defined]
    migrate(fresh_schema, upto=number - 1)
    done = migrate(fresh_schema, upto=number)
    assert [m.number for m in done] == [number]
    assert applied(fresh_schema)[-1] == number


def test_migrating_twice_applies_nothing_the_second_time(fresh_schema: Database) -> None:
    first = migrate(fresh_schema)
    assert [m.number for m in first] == [m.number for m in available()]
    assert migrate(fresh_schema) == []


def test_first_migration_creates_the_store_tables_and_search_indexes(
    fresh_schema: Database,
) -> None:
    migrate(fresh_schema, upto=1)
    assert {"artifacts", "chunks", "sync_cursors", "sync_runs", "store_meta"} <= _tables(
        fresh_schema
    )
    with fresh_schema.connection() as conn:
        indexes = {
            r["indexname"]: r["indexdef"]
            for r in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s",
                (fresh_schema.schema,),
            )
        }
    assert "USING gin (tsv)" in indexes["chunks_tsv_gin"]


def test_artifact_ids_must_carry_their_source_prefix(db: Database) -> None:
    with pytest.raises(psycopg.errors.CheckViolation), db.connection() as conn:
        conn.execute(
            "INSERT INTO artifacts (artifact_id, source, scope_key, title, url, version,"
            " content_hash, body) VALUES ('OPS-1', 'jira', 'OPS', 't', 'u', '1', 'h', 'b')"
        )


def test_two_starters_migrating_at_once_apply_each_migration_once(fresh_schema: Database) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(fresh_schema)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert applied(fresh_schema) == [m.number for m in available()]


def test_a_failing_migration_names_its_file_and_leaves_the_schema_unchanged(
    fresh_schema: Database,
) -> None:
    migrate(fresh_schema, upto=1)
    with fresh_schema.connection() as conn:
        conn.execute("CREATE TABLE sync_requests (clash integer)")
    if len(available()) < 2:
        pytest.skip("needs a second migration to collide with")
    with pytest.raises(MigrationError, match=r"0002_"):
        migrate(fresh_schema)
    assert applied(fresh_schema) == [1]


def test_binding_an_embedder_fixes_the_dimension_and_builds_the_hnsw_index(db: Database) -> None:
    bind_embedder(db, EmbedderIdentity("local:test", 3))
    with db.connection() as conn:
        indexdef = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            (db.schema, "chunks_embedding_hnsw"),
        ).fetchone()
        column = conn.execute(
            "SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute "
            "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        ).fetchone()
    assert indexdef is not None and "hnsw" in indexdef["indexdef"]
    assert column is not None and column["t"] == "vector(3)"
    assert bound_embedder(db) == EmbedderIdentity("local:test", 3)


def test_a_store_refuses_vectors_from_another_embedder(db: Database) -> None:
    bind_embedder(db, EmbedderIdentity("local:test", 3))
    bind_embedder(db, EmbedderIdentity("local:test", 3))  # same embedder: fine
    with pytest.raises(EmbedderMismatch, match=r"local:test \(3 dimensions\).*openai:x \(5"):
        bind_embedder(db, EmbedderIdentity("openai:x", 5))


def test_the_source_registry_migration_admits_any_source_name_and_change_intents(
    fresh_schema: Database,
) -> None:
    (registry,) = [m for m in available() if m.name == "source_registry_outbox"]
    migrate(fresh_schema, upto=registry.number - 1)
    insert = (
        "INSERT INTO artifacts (artifact_id, source, scope_key, title, url, version,"
        " content_hash, body) VALUES (%s, %s, 'TEAM', 't', 'u', '1', 'h', 'b')"
    )
    with pytest.raises(psycopg.errors.CheckViolation), fresh_schema.connection() as conn:
        conn.execute(insert, ("notes:TEAM/a", "notes"))
    migrate(fresh_schema, upto=registry.number)
    with fresh_schema.connection() as conn:
        conn.execute(insert, ("notes:TEAM/a", "notes"))
        conn.execute(
            "INSERT INTO outbox (kind, dedupe_key, payload) VALUES ('source_change', 'k', '{}')"
        )
    with pytest.raises(psycopg.errors.CheckViolation), fresh_schema.connection() as conn:
        conn.execute(insert, ("Bad Name:x", "Bad Name"))


def test_cached_answers_keep_their_serve_history_and_eviction_order_across_0012(
    fresh_schema: Database,
) -> None:
    _migrate_up_to(fresh_schema, "answer_unit_use")
    insert = (
        "INSERT INTO answer_units (unit_id, scope_key, question_norm, body, embedding, dim, "
        "created_at, served_at, served_count, used_at, size_bytes) VALUES "
        "(%s, '*', %s, %s, '[1,0,0]', 3, now() - interval '2 days', %s, %s, %s, 100)"
    )
    body = '{"question": "q", "answer": "a", "mode": "claude", "citations": []}'
    old, recent = "a" * 32, "b" * 32
    with fresh_schema.connection() as conn:
        conn.execute(insert, (recent, "recent", body, "2026-12-01T10:00Z", 7, "2026-12-01T10:00Z"))
        conn.execute(insert, (old, "old", body, None, 0, "2026-11-01T10:00Z"))
    migrate(fresh_schema)
    cache = PostgresAnswerCache(fresh_schema)
    served = cache.get(recent)
    assert served is not None and served.served_count == 7
    assert served.served_at is not None and served.served_at.day == 1
    with fresh_schema.connection() as conn:
        order = [
            r["unit_id"]
            for r in conn.execute("SELECT unit_id FROM answer_unit_use ORDER BY used_at")
        ]
        columns = {
            r["column_name"]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'answer_units'",
                (fresh_schema.schema,),
            )
        }
    assert order == [old, recent]  # the least recently used is still evicted first
    assert not columns & {"served_at", "served_count", "used_at"}


def test_0013_replaces_the_cache_vector_index_with_a_half_precision_one_queries_use(
    fresh_schema: Database,
) -> None:
    _migrate_up_to(fresh_schema, "answer_units_halfvec_index")
    insert = (
        "INSERT INTO answer_units (unit_id, scope_key, question_norm, body, embedding, dim, "
        "created_at, size_bytes) VALUES (%s, '*', %s, %s, %s::vector, 3, now(), 100)"
    )
    body = '{"question": "q", "answer": "a", "mode": "claude", "citations": []}'
    with fresh_schema.connection() as conn:
        conn.execute(insert, ("a" * 32, "how do i reset the vpn", body, "[1,0,0]"))
        conn.execute(insert, ("b" * 32, "where is the payslip", body, "[0,1,0]"))
        conn.execute(
            "INSERT INTO answer_unit_use (unit_id, used_at) SELECT unit_id, now() FROM answer_units"
        )
        # The full-precision index the cache built on first use before 0013.
        conn.execute(
            "CREATE INDEX answer_units_hnsw_3 ON answer_units USING hnsw "
            "((embedding::vector(3)) vector_cosine_ops) WHERE dim = 3"
        )
    migrate(fresh_schema)
    with fresh_schema.connection() as conn:
        indexes = {
            r["indexname"]: r["indexdef"]
            for r in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
                "AND tablename = 'answer_units' AND indexdef LIKE '%%hnsw%%'",
                (fresh_schema.schema,),
            )
        }
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r["QUERY PLAN"]
            for r in conn.execute(
                "EXPLAIN SELECT unit_id FROM answer_units WHERE dim = 3 "
                "ORDER BY embedding::halfvec(3) <=> '[1,0,0]'::halfvec(3) LIMIT 16"
            )
        )
    assert list(indexes) == ["answer_units_halfvec_3"]
    assert "halfvec_cosine_ops" in indexes["answer_units_halfvec_3"]
    assert "answer_units_halfvec_3" in plan
