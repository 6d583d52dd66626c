"""Two real OS processes on one cache: a "bot" reading while a "daemon" invalidates."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cache_kit import Store, axis, make_unit

from store.cache import DiskAnswerCache, PostgresAnswerCache, StoreHashes
from store.cache._core import CacheCore
from store.db import Database

WORKER = Path(__file__).with_name("cache_worker.py")


def run_workers(
    work: Path, config: dict[str, object], roles: list[tuple[str, str]]
) -> dict[str, dict[str, object]]:
    work.mkdir(exist_ok=True)
    (work / "epoch").write_text("0")
    config_path = work / "config.json"
    config_path.write_text(json.dumps({**config, "work": str(work)}))
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), role, str(config_path), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for role, name in roles
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((work / f"ready-{name}").exists() for _, name in roles):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)
        (work / "go").touch()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return {name: json.loads((work / f"{name}.json").read_text()) for _, name in roles}


@pytest.fixture(params=["disk", "postgres"])
def setup(
    request: pytest.FixtureRequest, db: Database, store: Store, pg_url: str, tmp_path: Path
) -> tuple[CacheCore, dict[str, object]]:
    config: dict[str, object] = {
        "backend": request.param,
        "pg_url": pg_url,
        "schema": db.schema,
        "root": str(tmp_path / "answers"),
    }
    cache: CacheCore
    if request.param == "disk":
        cache = DiskAnswerCache(tmp_path / "answers", StoreHashes(db))
    else:
        cache = PostgresAnswerCache(db)
    request.addfinalizer(cache.close)
    return cache, config


def test_a_dirtied_unit_is_never_served_by_the_other_process(
    setup: tuple[CacheCore, dict[str, object]], store: Store, tmp_path: Path
) -> None:
    cache, config = setup
    store.artifact("confluence:1", content_hash="h0", version="0")
    cache.put(make_unit("How do I request VPN access?", {"confluence:1": ("h0", "0")}), axis(0))
    reports = run_workers(
        tmp_path / "work", {**config, "rounds": 150}, [("bot", "bot"), ("daemon", "daemon")]
    )
    bot, daemon = reports["bot"], reports["daemon"]
    assert bot["stale_serves"] == []
    outcomes = bot["outcomes"]
    assert isinstance(outcomes, dict)
    # Not vacuous: the bot served answers, and was refused ones the daemon had just dirtied.
    assert outcomes.get("hit", 0) > 0
    assert daemon["dirtied"] == 150
    assert cache.stats()["dirtied"] == 150


def test_concurrent_identical_misses_in_two_processes_generate_once(
    setup: tuple[CacheCore, dict[str, object]], store: Store, tmp_path: Path
) -> None:
    cache, config = setup
    store.artifact("confluence:1")
    work = tmp_path / "work"
    reports = run_workers(work, config, [("flight", "one"), ("flight", "two")])
    assert len((work / "generations").read_text().splitlines()) == 1
    assert reports["one"]["unit_id"] == reports["two"]["unit_id"]
    assert sorted(str(r["kind"]) for r in reports.values()) == ["Generated", "Hit"]
    assert cache.stats()["generations"] == 1
