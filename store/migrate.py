"""Numbered SQL migrations (``store/migrations/NNNN_name.sql``), applied in order, each once.

Concurrent starters are serialised by an advisory lock, so ``kb bot`` and ``kb daemon``
starting together apply each migration exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from core.errors import MigrationError
from store.db import Connection, Database

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x6B62_6D69  # "kbmi"


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with the package, in order."""
    found: list[Migration] = []
    for entry in resources.files("store.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must run 1..n without gaps, found {numbers}")
    return found


def _lock_and_ensure_table(conn: Connection) -> None:
    # CREATE TABLE IF NOT EXISTS races with itself in Postgres (a duplicate pg_type row), so
    # the bookkeeping table, like every migration, is created under the advisory lock.
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_LOCK_ID,))
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " number integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def applied(db: Database) -> list[int]:
    with db.connection() as conn:
        _lock_and_ensure_table(conn)
        return [
            r["number"] for r in conn.execute("SELECT number FROM schema_migrations ORDER BY 1")
        ]


def migrate(db: Database, *, upto: int | None = None) -> list[Migration]:
    """Apply pending migrations (up to ``upto``); returns those applied now."""
    done: list[Migration] = []
    with db.connection() as conn:
        _lock_and_ensure_table(conn)
        have = {r["number"] for r in conn.execute("SELECT number FROM schema_migrations")}
        for migration in available():
            if migration.number in have or (upto is not None and migration.number > upto):
                continue
            try:
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (number, name) VALUES (%s, %s)",
                        (migration.number, migration.name),
                    )
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {migration.number:04d}_{migration.name}.sql failed: "
                    f"{exc.diag.message_primary or exc}; the store is left at the previous "
                    "migration, fix the cause and run `kb migrate` again"
                ) from exc
            done.append(migration)
    return done
