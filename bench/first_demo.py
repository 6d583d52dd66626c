"""The first ``kb demo`` on a fresh data dir: seconds to its first answer, phase by phase.

Each run is a new process on a new ``KB_DATA_DIR`` (initdb and the first start of the
embedded Postgres included) asking one question, as a fresh clone's first ``kb demo -q``.
Two variants, interleaved run by run: ``shipped`` (as shipped: the sample's vectors come
from ``kb/sample_kb/vectors.*`` where model and texts match) and ``embed`` (the same demo
with no shipped vectors: the model embeds the whole sample; the same-run baseline). The
child process times its phases by wrapping the functions that do them (a benchmark's
instrument; the demo's code is unchanged).

Run: .venv/bin/python bench/first_demo.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who do I page for a SEV1?"


def child(variant: str) -> None:
    """Runs inside the measured process: ``kb demo -q`` with phase stamps on stderr."""
    spawned = float(os.environ["BENCH_SPAWNED"])
    marks: list[tuple[str, float]] = []

    def mark(what: str) -> None:
        marks.append((what, round(time.time() - spawned, 2)))

    mark("interpreter up")
    sys.path[:0] = [str(ROOT)]
    import kb.cli
    import kb.demo
    import store.db
    from bot.flow import Flow
    from sync.engine import SyncEngine

    mark("imports")

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            mark(label)
            return result

        setattr(owner, name, wrapper)

    timed(store.db, "start_embedded", "postgres initdb + start")
    timed(kb.wiring, "start_embedded", "postgres initdb + start")
    timed(kb.wiring, "open_bound_store", "store open + migrations")
    timed(SyncEngine, "run", "a source synced")
    timed(Flow, "answer", "first answer")
    if variant == "embed":
        kb.demo.sample_vectors = lambda: None  # type: ignore[attr-defined]
    code = kb.cli.main(["demo", "-q", QUESTION])
    mark(f"exit {code}")
    print(json.dumps(marks), file=sys.stderr)


def run_once(variant: str) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="kb-bench-demo-"))
    env = {
        **os.environ,
        "KB_DATA_DIR": str(data_dir),
        "KB_LOG_LEVEL": "ERROR",
        "PYTHONUNBUFFERED": "1",
        "BENCH_SPAWNED": repr(time.time()),
    }
    env.pop("DATABASE_URL", None)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--child", variant],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0 or "Sources:" not in result.stdout:
        raise SystemExit(f"{variant} demo failed:\n{result.stdout}\n{result.stderr}")
    marks = json.loads(result.stderr.strip().splitlines()[-1])
    first: dict[str, float] = {}
    for label, at in marks:
        first.setdefault(label, at)
    return {"variant": variant, "exit_s": round(wall, 2), "marks": marks, **first}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=["shipped", "embed"])
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rows: list[dict[str, Any]] = []
    for _ in range(args.runs):
        for variant in ("shipped", "embed"):
            row = run_once(variant)
            row["load"] = os.getloadavg()[0]
            rows.append(row)
            print(json.dumps({"variant": variant, "load": row["load"], "marks": row["marks"]}))
    for variant in ("shipped", "embed"):
        answers = [r["first answer"] for r in rows if r["variant"] == variant]
        print(
            json.dumps(
                {
                    "variant": variant,
                    "first answer s, median": statistics.median(answers),
                    "runs": answers,
                }
            )
        )
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
                "python": platform.python_version(),
                "load": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
