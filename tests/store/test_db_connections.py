"""The store's connection blocks: one transaction by default, autocommit on request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from store.db import Database


@pytest.fixture
def one_connection(pg_url: str) -> Iterator[Database]:
    """A pool of exactly one connection, so every block reuses the same session."""
    database = Database.open(pg_url, schema=f"t_{uuid.uuid4().hex[:16]}", max_size=1)
    with database.connection() as conn:
        conn.execute("CREATE TABLE notes (body text)")
    yield database
    database.drop_schema()
    database.close()


def _count(db: Database) -> int:
    with db.connection() as conn:
        return int(conn.execute("SELECT count(*) AS n FROM notes").fetchone()["n"])  # type: ignore[index]


def test_a_failed_block_writes_nothing_even_after_an_autocommit_read(
    one_connection: Database,
) -> None:
    db = one_connection
    with db.connection(autocommit=True) as conn:
        conn.execute("SELECT 1")
    # The same pooled session again, without autocommit: a block that fails keeps nothing.
    with pytest.raises(psycopg.errors.DivisionByZero), db.connection() as conn:
        conn.execute("INSERT INTO notes VALUES ('half a change')")
        conn.execute("SELECT 1 / 0")
    assert _count(db) == 0


def test_an_autocommit_block_keeps_each_statement_that_succeeded(
    one_connection: Database,
) -> None:
    db = one_connection
    with pytest.raises(psycopg.errors.DivisionByZero), db.connection(autocommit=True) as conn:
        conn.execute("INSERT INTO notes VALUES ('kept')")
        conn.execute("SELECT 1 / 0")
    assert _count(db) == 1
