from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import StoreError
from store.db import Database

_HOLDER = textwrap.dedent(
    """
    import sys, time, pathlib, psycopg
    from store.db import start_embedded
    data, out, release = (pathlib.Path(a) for a in sys.argv[1:4])
    url = start_embedded(data)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS shared (who text)")
        conn.execute("INSERT INTO shared VALUES (%s)", (sys.argv[4],))
        pid = conn.execute("SELECT pg_backend_pid(), (SELECT count(*) FROM shared)").fetchone()
        server_pid = (data / "pg" / "postmaster.pid").read_text().split()[0]
    out.write_text(f"{server_pid} {pid[1]}")
    deadline = time.time() + 60
    while not release.exists() and time.time() < deadline:
        time.sleep(0.05)
    with psycopg.connect(url, autocommit=True) as conn:
        count = conn.execute("SELECT count(*) FROM shared").fetchone()[0]
    out.write_text(out.read_text() + f" {count}")
    """
)


def _wait_for(path: Path, parts: int, timeout: float = 60) -> list[str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().split()) >= parts:
            return path.read_text().split()
        time.sleep(0.05)
    raise AssertionError(f"{path} never got {parts} fields")


def test_two_processes_on_one_data_dir_share_one_embedded_server() -> None:
    # Not pytest's tmp_path: concurrent pytest sessions prune each other's basetemp.
    tmp_path = Path(tempfile.mkdtemp(prefix="kb-two-processes-"))
    data = tmp_path / "kb"
    procs = []
    outs = [tmp_path / "a.out", tmp_path / "b.out"]
    releases = [tmp_path / "a.go", tmp_path / "b.go"]
    procs.append(
        subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(data), str(outs[0]), str(releases[0]), "bot"]
        )
    )
    first = _wait_for(outs[0], 2)
    procs.append(
        subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(data), str(outs[1]), str(releases[1]), "daemon"]
        )
    )
    second = _wait_for(outs[1], 2)
    assert first[0] == second[0], "both processes must talk to the same postmaster"
    assert second[1] == "2", "the second process sees the first one's row"
    # The first process leaves; the server stays up for the second.
    releases[0].touch()
    assert procs[0].wait(60) == 0
    releases[1].touch()
    assert procs[1].wait(60) == 0
    assert _wait_for(outs[1], 3)[2] == "2"
    # The last one out stops the server.
    deadline = time.time() + 30
    while (data / "pg" / "postmaster.pid").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not (data / "pg" / "postmaster.pid").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_pooled_connections_read_and_write_pgvector_values(db: Database) -> None:
    with db.connection() as conn:
        conn.execute("CREATE TABLE v (e vector(3))")
        conn.execute("INSERT INTO v VALUES (%s)", (np.array([1.0, 2.0, 3.0], dtype=np.float32),))
        row = conn.execute(
            "SELECT e, e <=> %s AS d FROM v", (np.array([1.0, 2.0, 3.0]),)
        ).fetchone()
    assert row is not None
    assert row["e"].to_list() == [1.0, 2.0, 3.0]
    assert row["d"] == pytest.approx(0.0, abs=1e-6)


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        Database.open("postgresql://kb:hunter2-secret@127.0.0.1:1/kb")
    message = str(caught.value)
    assert "\n" not in message and "hunter2-secret" not in message
    assert "check DATABASE_URL" in message


def test_the_embedded_server_runs_with_settings_sized_for_a_large_store(pg_url: str) -> None:
    if os.environ.get("KB_TEST_DATABASE_URL"):
        pytest.skip("the tests run on an external Postgres")
    import psycopg

    from store.db import EMBEDDED_SETTINGS

    with psycopg.connect(pg_url) as conn:
        for name in ("shared_buffers", "work_mem", "maintenance_work_mem"):
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None and row[0] == EMBEDDED_SETTINGS[name], name
