"""A separate OS process using the answer cache, driven by test_cache_cross_process.py.

    python cache_worker.py ROLE CONFIG_JSON

Roles: ``bot`` looks up until the daemon is done, checking every hit against the last
invalidation that had returned before the lookup began; ``daemon`` moves the source and
invalidates, then caches a fresh answer, N times; ``flight`` asks once through
get_or_generate with a slow generation. Each writes ``<role>-<name>.json`` with what it saw.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cache_kit import axis, make_unit, toward

from store.cache import DiskAnswerCache, Generated, Hit, PostgresAnswerCache, StoreHashes
from store.cache._core import CacheCore
from store.db import Database
from store.scope import Scope

QUESTION = "How do I request VPN access?"
ARTIFACT = "confluence:1"


def open_cache(config: dict[str, Any], db: Database) -> CacheCore:
    if config["backend"] == "disk":
        return DiskAnswerCache(Path(config["root"]), StoreHashes(db))
    return PostgresAnswerCache(db)


def wait_for(path: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.005)


def read_epoch(work: Path) -> int:
    return int((work / "epoch").read_text())


def write_epoch(work: Path, value: int) -> None:
    tmp = work / f"epoch.{os.getpid()}"
    tmp.write_text(str(value))
    os.replace(tmp, work / "epoch")


def bot(cache: CacheCore, work: Path, config: dict[str, Any]) -> dict[str, Any]:
    seen: Counter[str] = Counter()
    stale_serves: list[str] = []
    lookups = 0
    while not (work / "done").exists() or lookups < 10:
        before = read_epoch(work)
        if lookups % 2:
            result = cache.lookup(QUESTION, Scope.everything(), axis(0))
        else:
            result = cache.lookup("how to get vpn access", Scope.everything(), toward(0, 0.99))
        lookups += 1
        if isinstance(result, Hit):
            built_from = int(result.unit.provenance[ARTIFACT].content_hash[1:])
            seen["hit"] += 1
            if built_from < before:
                stale_serves.append(f"served h{built_from} after invalidation {before} returned")
        else:
            seen[result.reason] += 1
    return {"lookups": lookups, "outcomes": dict(seen), "stale_serves": stale_serves}


def daemon(cache: CacheCore, work: Path, config: dict[str, Any], db: Database) -> dict[str, Any]:
    dirtied = 0
    for i in range(1, int(config["rounds"]) + 1):
        # The sync engine commits the new content first, then invalidates.
        with db.connection() as conn:
            conn.execute(
                "UPDATE artifacts SET content_hash = %s, version = %s WHERE artifact_id = %s",
                (f"h{i}", str(i), ARTIFACT),
            )
        dirtied += cache.source_changed(ARTIFACT, content_hash=f"h{i}", version=str(i)).dirtied
        write_epoch(work, i)
        time.sleep(0.001)
        cache.put(make_unit(QUESTION, {ARTIFACT: (f"h{i}", str(i))}), axis(0))
        time.sleep(0.002)
    (work / "done").touch()
    return {"dirtied": dirtied}


def flight(cache: CacheCore, work: Path, config: dict[str, Any]) -> dict[str, Any]:
    def generate() -> Any:
        with (work / "generations").open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return make_unit(QUESTION, {ARTIFACT: ("h1", "1")}, answer=f"by {os.getpid()}")

    result = cache.get_or_generate(QUESTION, Scope.everything(), axis(0), generate)
    assert isinstance(result, Hit | Generated), result
    return {"kind": type(result).__name__, "unit_id": result.unit.unit_id}


def main() -> None:
    role, config_path = sys.argv[1], Path(sys.argv[2])
    config = json.loads(config_path.read_text())
    work = Path(config["work"])
    name = sys.argv[3] if len(sys.argv) > 3 else role
    db = Database.open(config["pg_url"], schema=config["schema"], max_size=2)
    cache = open_cache(config, db)
    try:
        (work / f"ready-{name}").touch()
        wait_for(work / "go")
        if role == "bot":
            report = bot(cache, work, config)
        elif role == "daemon":
            report = daemon(cache, work, config, db)
        else:
            report = flight(cache, work, config)
        (work / f"{name}.json").write_text(json.dumps(report))
    finally:
        cache.close()
        db.close()


if __name__ == "__main__":
    main()
